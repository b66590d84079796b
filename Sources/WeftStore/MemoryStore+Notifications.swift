public import Foundation

extension MemoryStore.State {
    mutating func insertOutbox(_ entry: OutboxEntry) {
        guard outboxIds[entry.deliveryId] == nil else { return }
        let row = nextOutboxRow
        nextOutboxRow += 1
        outboxIds[entry.deliveryId] = row
        outbox[row] = DeliveryRecord(
            rowId: row, entry: entry, state: .pending, attempts: 0, nextAttemptAt: entry.nextAttemptAt, deliveredAt: nil,
            lastError: nil)
    }
}

extension MemoryStore: NotificationStore {
    public func createSubscription(_ subscription: SubscriptionRecord) async throws {
        try state.withLock { state in
            guard state.subscriptions[subscription.id] == nil else {
                throw StoreError.alreadyExists("subscription \(subscription.id) exists")
            }
            state.subscriptions[subscription.id] = subscription
        }
    }

    public func subscription(id: String) async throws -> SubscriptionRecord? {
        state.withLock { $0.subscriptions[id] }
    }

    public func subscriptions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<SubscriptionRecord> {
        state.withLock { state in
            let all = state.subscriptions.values.filter { $0.workflowId == workflowId && $0.id > (cursor ?? "") }
                .sorted { $0.id < $1.id }
            let items = Array(all.prefix(limit))
            return Page(items: items, nextCursor: all.count > limit ? items.last?.id : nil)
        }
    }

    public func allSubscriptions() async throws -> [SubscriptionRecord] {
        state.withLock { Array($0.subscriptions.values).sorted { $0.id < $1.id } }
    }

    @discardableResult
    public func deleteSubscription(id: String, at: Date) async throws -> Bool {
        state.withLock { state in
            guard state.subscriptions.removeValue(forKey: id) != nil else { return false }
            for (row, record) in state.outbox where record.entry.subscriptionId == id && record.state == .pending {
                state.outbox[row]!.state = .skipped
                state.outbox[row]!.lastError = "the subscription was deleted"
            }
            return true
        }
    }

    public func createIntegration(_ integration: IntegrationRecord) async throws {
        try state.withLock { state in
            guard state.integrations[integration.id] == nil else {
                throw StoreError.alreadyExists("integration \(integration.id) exists")
            }
            state.integrations[integration.id] = integration
        }
    }

    public func replaceIntegration(_ integration: IntegrationRecord) async throws {
        try state.withLock { state in
            guard state.integrations[integration.id] != nil else {
                throw StoreError.notFound("integration \(integration.id) not found")
            }
            state.integrations[integration.id] = integration
        }
    }

    public func integration(id: String) async throws -> IntegrationRecord? {
        state.withLock { $0.integrations[id] }
    }

    public func integrations(workflowId: String, limit: Int, cursor: String?) async throws -> Page<IntegrationRecord> {
        state.withLock { state in
            let all = state.integrations.values.filter { $0.workflowId == workflowId && $0.id > (cursor ?? "") }
                .sorted { $0.id < $1.id }
            let items = Array(all.prefix(limit))
            return Page(items: items, nextCursor: all.count > limit ? items.last?.id : nil)
        }
    }

    public func subscriptions(integrationId: String) async throws -> [SubscriptionRecord] {
        state.withLock { state in
            state.subscriptions.values.filter { $0.integrationId == integrationId }.sorted { $0.id < $1.id }
        }
    }

    @discardableResult
    public func deleteIntegration(id: String) async throws -> Bool {
        state.withLock { state in
            guard !state.subscriptions.values.contains(where: { $0.integrationId == id }) else { return false }
            return state.integrations.removeValue(forKey: id) != nil
        }
    }

    public func enqueueOutbox(_ entries: [OutboxEntry]) async throws {
        state.withLock { state in for entry in entries { state.insertOutbox(entry) } }
    }

    public func dueOutbox(now: Date, limit: Int, excluding: Set<Int64>) async throws -> [DeliveryRecord] {
        state.withLock { state in
            let due = state.outbox.values.filter { record in
                record.state == .pending && record.nextAttemptAt <= now && !excluding.contains(record.rowId)
            }.sorted { ($0.nextAttemptAt, $0.rowId) < ($1.nextAttemptAt, $1.rowId) }.prefix(limit)
            return due.map { record in
                var record = record
                record.attemptLog = []
                return record
            }
        }
    }

    public func recordOutcomes(_ outcomes: [DeliveryOutcome]) async throws {
        state.withLock { state in
            for outcome in outcomes {
                guard var record = state.outbox[outcome.rowId], record.state == .pending else { continue }
                if outcome.attempt.outcome == DeliveryAttemptRecord.deferred {
                    record.nextAttemptAt = outcome.nextAttemptAt ?? outcome.attempt.at
                    state.outbox[outcome.rowId] = record
                    continue
                }
                record.attempts += 1
                record.attemptLog.append(outcome.attempt)
                record.state = outcome.state
                if outcome.state == .delivered { record.deliveredAt = outcome.attempt.at }
                if outcome.attempt.outcome != "delivered" { record.lastError = outcome.attempt.detail }
                if let next = outcome.nextAttemptAt { record.nextAttemptAt = next }
                state.outbox[outcome.rowId] = record
            }
        }
    }

    public func delivery(id: String) async throws -> DeliveryRecord? {
        state.withLock { state in state.outboxIds[id].flatMap { state.outbox[$0] } }
    }

    public func deliveries(subscriptionId: String, state wanted: DeliveryState?, limit: Int, cursor: Int64?) async throws
        -> Page<DeliveryRecord>
    {
        state.withLock { state in
            let all = state.outbox.values.filter { record in
                record.entry.subscriptionId == subscriptionId && (wanted.map { record.state == $0 } ?? true)
                    && record.rowId < (cursor ?? .max)
            }.sorted { $0.rowId > $1.rowId }
            let items = Array(all.prefix(limit))
            return Page(items: items, nextCursor: all.count > limit ? items.last.map { String($0.rowId) } : nil)
        }
    }

    public func outboxBacklog(now: Date) async throws -> (pending: Int, oldest: Date?) {
        state.withLock { state in
            let pending = state.outbox.values.filter { $0.state == .pending && ($0.attempts > 0 || $0.nextAttemptAt <= now) }
            // Age from when it was due: a deadline alert from its deadline.
            return (pending.count, pending.map { $0.attempts == 0 ? $0.nextAttemptAt : $0.entry.createdAt }.min())
        }
    }

    @discardableResult
    public func purgeNotifications(before date: Date) async throws -> Int {
        state.withLock { state in
            let old = state.outbox.values.filter { $0.state != .pending && $0.entry.createdAt < date }
            for record in old {
                state.outbox[record.rowId] = nil
                state.outboxIds[record.entry.deliveryId] = nil
            }
            let notes = state.notifications.values.filter { $0.createdAt < date }
            for note in notes { state.notifications[note.id] = nil }
            return old.count + notes.count
        }
    }

    public func insertNotification(_ notification: NotificationRecord) async throws -> Bool {
        state.withLock { state in
            guard !state.notificationDeliveries.contains(notification.deliveryId) else { return false }
            state.notificationDeliveries.insert(notification.deliveryId)
            state.notifications[notification.id] = notification
            return true
        }
    }

    public func notifications(userId: String, unreadOnly: Bool, limit: Int, cursor: String?) async throws
        -> Page<NotificationRecord>
    {
        state.withLock { state in
            let all = state.notifications.values.filter { record in
                record.userId == userId && (!unreadOnly || record.readAt == nil)
                    && (cursor.map { record.id < $0 } ?? true)
            }.sorted { $0.id > $1.id }
            let items = Array(all.prefix(limit))
            return Page(items: items, nextCursor: all.count > limit ? items.last?.id : nil)
        }
    }

    public func unreadCount(userId: String) async throws -> Int {
        state.withLock { state in state.notifications.values.count { $0.userId == userId && $0.readAt == nil } }
    }

    public func markRead(userId: String, ids: [String], at: Date) async throws -> Int {
        state.withLock { state in
            let wanted = Set(ids)
            var marked = 0
            for (id, record) in state.notifications
            where record.userId == userId && record.readAt == nil && (wanted.isEmpty || wanted.contains(id)) {
                state.notifications[id]!.readAt = at
                marked += 1
            }
            return marked
        }
    }

    public func templates(orgId: String) async throws -> [TemplateRecord] {
        state.withLock { state in state.templates.values.filter { $0.orgId == orgId }.sorted { $0.event < $1.event } }
    }

    public func putTemplate(_ template: TemplateRecord) async throws {
        state.withLock { $0.templates[template.orgId + "|" + template.event] = template }
    }

    @discardableResult
    public func deleteTemplate(orgId: String, event: String) async throws -> Bool {
        state.withLock { $0.templates.removeValue(forKey: orgId + "|" + event) != nil }
    }
}
