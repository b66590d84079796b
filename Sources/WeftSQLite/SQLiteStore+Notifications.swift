public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore {
    /// One outbox row; a delivery id already stored adds nothing.
    static func insertOutbox(_ db: Database, _ entry: OutboxEntry) throws {
        try db.cachedStatement(sql: """
            INSERT INTO outbox (delivery_id, subscription_id, workflow_id, org_id, execution_id, event, channel, payload,
                traceparent, created_at, next_attempt_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(delivery_id) DO NOTHING
            """).execute(arguments: [
                entry.deliveryId, entry.subscriptionId, entry.workflowId, entry.orgId, entry.executionId,
                entry.event.rawValue, entry.channel.rawValue, entry.payload.jsonText(), entry.traceparent,
                StoreDate.text(entry.createdAt), StoreDate.text(entry.nextAttemptAt),
            ])
    }

    static func subscriptionRecord(_ row: Row) throws -> SubscriptionRecord {
        let events: String = row["events"]
        return SubscriptionRecord(
            id: row["id"], workflowId: row["workflow_id"], orgId: row["org_id"], userId: row["user_id"],
            eventType: row["event_type"],
            events: Set(try events.split(separator: ",").map { try stored(NotificationEvent.self, String($0)) }),
            channel: try stored(NotificationChannel.self, row["notify_via"]), destination: row["destination"],
            integrationId: row["integration_id"], filter: row["filter"], deadlineSeconds: row["deadline_seconds"],
            createdAt: row["created_at"])
    }

    static func integrationRecord(_ row: Row) throws -> IntegrationRecord {
        let fields: String = row["secret_fields"]
        return IntegrationRecord(
            id: row["id"], workflowId: row["workflow_id"], orgId: row["org_id"], type: row["type"], name: row["name"],
            config: try JSONValue(jsonText: row["config"]), sealed: row["sealed"],
            secretFields: fields.split(separator: ",").map(String.init), displayURL: row["display_url"],
            createdBy: row["created_by"], createdAt: row["created_at"], updatedAt: row["updated_at"])
    }

    static func deliveryRecord(_ row: Row, withLog: Bool = true) throws -> DeliveryRecord {
        let entry = OutboxEntry(
            deliveryId: row["delivery_id"], subscriptionId: row["subscription_id"], workflowId: row["workflow_id"],
            orgId: row["org_id"], executionId: row["execution_id"], event: try stored(NotificationEvent.self, row["event"]),
            channel: try stored(NotificationChannel.self, row["channel"]), payload: try JSONValue(jsonText: row["payload"]),
            createdAt: row["created_at"], nextAttemptAt: row["next_attempt_at"], traceparent: row["traceparent"])
        var record = DeliveryRecord(
            rowId: row["id"], entry: entry, state: try stored(DeliveryState.self, row["state"]), attempts: row["attempts"],
            nextAttemptAt: row["next_attempt_at"], deliveredAt: row["delivered_at"], lastError: row["last_error"])
        if withLog { record.attemptLog = try attemptLog(row["attempt_log"]) }
        return record
    }

    /// The attempt log column: `[{"attempt":1,"at":"…","outcome":"…",…}]`.
    static func attemptLog(_ text: String) throws -> [DeliveryAttemptRecord] {
        guard case .array(let items) = try JSONValue(jsonText: text) else { return [] }
        return items.map { item in
            DeliveryAttemptRecord(
                attempt: Int(item["attempt"]?.numberValue ?? 0),
                at: (item["at"]?.stringValue).flatMap { Date.fromDatabaseValue($0.databaseValue) } ?? Date(timeIntervalSince1970: 0),
                outcome: item["outcome"]?.stringValue ?? "", statusCode: Int(item["statusCode"]?.numberValue ?? 0),
                detail: item["detail"]?.stringValue ?? "", durationMs: Int(item["durationMs"]?.numberValue ?? 0))
        }
    }

    static func attemptJSON(_ attempt: DeliveryAttemptRecord) -> String {
        JSONValue.object([
            "attempt": .number(Double(attempt.attempt)), "at": .string(StoreDate.text(attempt.at)),
            "outcome": .string(attempt.outcome), "statusCode": .number(Double(attempt.statusCode)),
            "detail": .string(attempt.detail), "durationMs": .number(Double(attempt.durationMs)),
        ]).jsonText()
    }

    static func notificationRecord(_ row: Row) -> NotificationRecord {
        NotificationRecord(
            id: row["id"], userId: row["user_id"], workflowId: row["workflow_id"], executionId: row["execution_id"],
            event: row["event"], title: row["title"], body: row["body"], link: row["link"], deliveryId: row["delivery_id"],
            createdAt: row["created_at"], readAt: row["read_at"])
    }
}

extension SQLiteStore: NotificationStore {
    public func createSubscription(_ s: SubscriptionRecord) async throws {
        try await write("create_subscription") { db in
            try db.execute(
                sql: """
                    INSERT INTO subscriptions (id, workflow_id, org_id, user_id, event_type, events, notify_via, destination,
                        integration_id, filter, deadline_seconds, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    s.id, s.workflowId, s.orgId, s.userId, s.eventType, s.events.map(\.rawValue).sorted().joined(separator: ","),
                    s.channel.rawValue, s.destination, s.integrationId, s.filter, s.deadlineSeconds, StoreDate.text(s.createdAt),
                ])
        }
    }

    public func subscription(id: String) async throws -> SubscriptionRecord? {
        try await read("get_subscription") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM subscriptions WHERE id = ?", arguments: [id]).map(Self.subscriptionRecord)
        }
    }

    public func subscriptions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<SubscriptionRecord> {
        try await read("list_subscriptions") { db in
            var rows = try Row.fetchAll(
                db, sql: "SELECT * FROM subscriptions WHERE workflow_id = ? AND id > ? ORDER BY id LIMIT ?",
                arguments: [workflowId, cursor ?? "", limit + 1]
            ).map(Self.subscriptionRecord)
            var next: String?
            if rows.count > limit {
                rows.removeLast()
                next = rows.last?.id
            }
            return Page(items: rows, nextCursor: next)
        }
    }

    public func allSubscriptions() async throws -> [SubscriptionRecord] {
        try await read("all_subscriptions") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM subscriptions ORDER BY id").map(Self.subscriptionRecord)
        }
    }

    @discardableResult
    public func deleteSubscription(id: String, at: Date) async throws -> Bool {
        try await write("delete_subscription") { db in
            try db.execute(sql: "DELETE FROM subscriptions WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { return false }
            try db.execute(
                sql: """
                    UPDATE outbox SET state = 'skipped', last_error = 'the subscription was deleted'
                    WHERE subscription_id = ? AND state = 'pending'
                    """, arguments: [id])
            return true
        }
    }

    public func createIntegration(_ i: IntegrationRecord) async throws {
        try await write("create_integration") { db in
            try db.execute(
                sql: """
                    INSERT INTO integrations (id, workflow_id, org_id, type, name, config, sealed, secret_fields, display_url,
                        created_by, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    i.id, i.workflowId, i.orgId, i.type, i.name, i.config.jsonText(), i.sealed,
                    i.secretFields.joined(separator: ","), i.displayURL, i.createdBy, StoreDate.text(i.createdAt),
                    StoreDate.text(i.updatedAt),
                ])
        }
    }

    public func replaceIntegration(_ i: IntegrationRecord) async throws {
        try await write("replace_integration") { db in
            try db.execute(
                sql: """
                    UPDATE integrations SET name = ?, config = ?, sealed = ?, secret_fields = ?, display_url = ?, updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [
                    i.name, i.config.jsonText(), i.sealed, i.secretFields.joined(separator: ","), i.displayURL,
                    StoreDate.text(i.updatedAt), i.id,
                ])
            guard db.changesCount == 1 else { throw StoreError.notFound("integration \(i.id) not found") }
        }
    }

    public func integration(id: String) async throws -> IntegrationRecord? {
        try await read("get_integration") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM integrations WHERE id = ?", arguments: [id]).map(Self.integrationRecord)
        }
    }

    public func integrations(workflowId: String, limit: Int, cursor: String?) async throws -> Page<IntegrationRecord> {
        try await read("list_integrations") { db in
            var rows = try Row.fetchAll(
                db, sql: "SELECT * FROM integrations WHERE workflow_id = ? AND id > ? ORDER BY id LIMIT ?",
                arguments: [workflowId, cursor ?? "", limit + 1]
            ).map(Self.integrationRecord)
            var next: String?
            if rows.count > limit {
                rows.removeLast()
                next = rows.last?.id
            }
            return Page(items: rows, nextCursor: next)
        }
    }

    public func subscriptions(integrationId: String) async throws -> [SubscriptionRecord] {
        try await read("subscriptions_of_integration") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM subscriptions WHERE integration_id = ? ORDER BY id", arguments: [integrationId]
            ).map(Self.subscriptionRecord)
        }
    }

    @discardableResult
    public func deleteIntegration(id: String) async throws -> Bool {
        try await write("delete_integration") { db in
            try db.execute(
                sql: "DELETE FROM integrations WHERE id = ? AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE integration_id = ?)",
                arguments: [id, id])
            return db.changesCount > 0
        }
    }

    public func enqueueOutbox(_ entries: [OutboxEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await write("enqueue_outbox") { db in for entry in entries { try Self.insertOutbox(db, entry) } }
    }

    public func dueOutbox(now: Date, limit: Int, excluding: Set<Int64>) async throws -> [DeliveryRecord] {
        // A read (a reader connection, beside the engine's writer): what is
        // being delivered is held by the dispatcher in memory.
        try await read("due_outbox") { db in
            try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT id, delivery_id, subscription_id, workflow_id, org_id, execution_id, event, channel, payload,
                        traceparent, created_at, state, attempts, next_attempt_at, delivered_at, last_error
                    FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?
                    ORDER BY next_attempt_at, id LIMIT ?
                    """), arguments: [StoreDate.text(now), limit + excluding.count]
            ).lazy.filter { !excluding.contains($0["id"]) }.prefix(limit).map { try Self.deliveryRecord($0, withLog: false) }
        }
    }

    public func recordOutcomes(_ outcomes: [DeliveryOutcome]) async throws {
        guard !outcomes.isEmpty else { return }
        try await write("record_deliveries") { db in
            let update = try db.cachedStatement(sql: """
                UPDATE outbox SET state = ?, attempts = attempts + 1,
                    next_attempt_at = COALESCE(?, next_attempt_at),
                    delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END,
                    last_error = CASE WHEN ? = 'delivered' THEN last_error ELSE ? END,
                    attempt_log = json_insert(attempt_log, '$[#]', json(?))
                WHERE id = ? AND state = 'pending'
                """)
            let deferral = try db.cachedStatement(sql: """
                UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND state = 'pending'
                """)
            for outcome in outcomes {
                let a = outcome.attempt
                if a.outcome == DeliveryAttemptRecord.deferred {
                    try deferral.execute(arguments: [StoreDate.text(outcome.nextAttemptAt ?? a.at), outcome.rowId])
                    continue
                }
                try update.execute(arguments: [
                    outcome.state.rawValue, outcome.nextAttemptAt.map(StoreDate.text), a.outcome, StoreDate.text(a.at),
                    a.outcome, a.detail, Self.attemptJSON(a), outcome.rowId,
                ])
            }
        }
    }

    public func delivery(id: String) async throws -> DeliveryRecord? {
        try await read("get_delivery") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM outbox WHERE delivery_id = ?", arguments: [id]).map { try Self.deliveryRecord($0) }
        }
    }

    public func deliveries(subscriptionId: String, state: DeliveryState?, limit: Int, cursor: Int64?) async throws
        -> Page<DeliveryRecord>
    {
        try await read("list_deliveries") { db in
            var rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM outbox WHERE subscription_id = ? AND id < ? AND (? IS NULL OR state = ?)
                    ORDER BY id DESC LIMIT ?
                    """,
                arguments: [subscriptionId, cursor ?? Int64.max, state?.rawValue, state?.rawValue, limit + 1]
            ).map { try Self.deliveryRecord($0) }
            var next: String?
            if rows.count > limit {
                rows.removeLast()
                next = rows.last.map { String($0.rowId) }
            }
            return Page(items: rows, nextCursor: next)
        }
    }

    public func outboxBacklog(now: Date) async throws -> (pending: Int, oldest: Date?) {
        try await read("outbox_backlog") { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) AS n, MIN(CASE WHEN attempts = 0 THEN next_attempt_at ELSE created_at END) AS oldest FROM outbox
                    WHERE state = 'pending' AND (attempts > 0 OR next_attempt_at <= ?)
                    """, arguments: [StoreDate.text(now)])
            let oldest: Date? = row?["oldest"]
            return (row?["n"] ?? 0, oldest)
        }
    }

    @discardableResult
    public func purgeNotifications(before date: Date) async throws -> Int {
        try await write("purge_notifications") { db in
            let cutoff = StoreDate.text(date)
            try db.execute(sql: "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?", arguments: [cutoff])
            var purged = db.changesCount
            try db.execute(sql: "DELETE FROM notifications WHERE created_at < ?", arguments: [cutoff])
            purged += db.changesCount
            return purged
        }
    }

    public func insertNotification(_ n: NotificationRecord) async throws -> Bool {
        try await write("insert_notification") { db in
            try db.execute(
                sql: """
                    INSERT INTO notifications (id, user_id, workflow_id, execution_id, event, title, body, link, delivery_id,
                        created_at, read_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(delivery_id) DO NOTHING
                    """,
                arguments: [
                    n.id, n.userId, n.workflowId, n.executionId, n.event, n.title, n.body, n.link, n.deliveryId,
                    StoreDate.text(n.createdAt), n.readAt.map(StoreDate.text),
                ])
            return db.changesCount == 1
        }
    }

    public func notifications(userId: String, unreadOnly: Bool, limit: Int, cursor: String?) async throws
        -> Page<NotificationRecord>
    {
        try await read("list_notifications") { db in
            var rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM notifications WHERE user_id = ? AND (? IS NULL OR id < ?) AND (NOT ? OR read_at IS NULL)
                    ORDER BY id DESC LIMIT ?
                    """,
                arguments: [userId, cursor, cursor, unreadOnly, limit + 1]
            ).map(Self.notificationRecord)
            var next: String?
            if rows.count > limit {
                rows.removeLast()
                next = rows.last?.id
            }
            return Page(items: rows, nextCursor: next)
        }
    }

    public func unreadCount(userId: String) async throws -> Int {
        try await read("count_unread") { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM notifications WHERE user_id = ? AND read_at IS NULL", arguments: [userId]) ?? 0
        }
    }

    public func markRead(userId: String, ids: [String], at: Date) async throws -> Int {
        try await write("mark_read") { db in
            let time = StoreDate.text(at)
            if ids.isEmpty {
                try db.execute(
                    sql: "UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL", arguments: [time, userId])
                return db.changesCount
            }
            var marked = 0
            let statement = try db.cachedStatement(
                sql: "UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL")
            for id in ids {
                try statement.execute(arguments: [time, id, userId])
                marked += db.changesCount
            }
            return marked
        }
    }

    public func templates(orgId: String) async throws -> [TemplateRecord] {
        try await read("list_templates") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM notification_templates WHERE org_id = ? ORDER BY event", arguments: [orgId])
                .map { row in
                    TemplateRecord(
                        orgId: row["org_id"], event: row["event"], subject: row["subject"], text: row["text"],
                        html: row["html"], updatedAt: row["updated_at"], updatedBy: row["updated_by"])
                }
        }
    }

    public func putTemplate(_ t: TemplateRecord) async throws {
        try await write("put_template") { db in
            try db.execute(
                sql: """
                    INSERT INTO notification_templates (org_id, event, subject, text, html, updated_at, updated_by)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(org_id, event) DO UPDATE SET subject = excluded.subject, text = excluded.text,
                        html = excluded.html, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                    """,
                arguments: [t.orgId, t.event, t.subject, t.text, t.html, StoreDate.text(t.updatedAt), t.updatedBy])
        }
    }

    @discardableResult
    public func deleteTemplate(orgId: String, event: String) async throws -> Bool {
        try await write("delete_template") { db in
            try db.execute(
                sql: "DELETE FROM notification_templates WHERE org_id = ? AND event = ?", arguments: [orgId, event])
            return db.changesCount > 0
        }
    }
}
