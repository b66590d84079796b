import Foundation
import Testing
import WeftStore

extension StoreConformance {
    static func outboxEntry(_ id: String, subscription: String = "sub_1", due: Date = t0, event: NotificationEvent = .executionFailed)
        -> OutboxEntry
    {
        OutboxEntry(
            deliveryId: id, subscriptionId: subscription, workflowId: "wf_1", orgId: "org_1", executionId: "exe_1", event: event,
            channel: .webhook, payload: .object(["status": .string("Failed")]), createdAt: t0, nextAttemptAt: due,
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    }

    static let notifications: [Case] = [
        Case(name: "an outbox row commits with its unit or not at all; a delivery id is written once") { store in
            let user = try await store.user()
            let workflow = try await store.workflow(owner: user.id)
            let execution = ExecutionRecord(
                executionId: IDGenerator.make(IDGenerator.execution, now: t0), workflowId: workflow.id, workflowVersion: 1,
                status: .pending, input: .emptyObject, createdAt: t0)
            let results = try await store.executions.applyEach([
                [.create(execution), .outbox(outboxEntry("dlv_a"))],
                // A failing unit (unknown execution) takes its outbox row with it.
                [.execution(id: "exe_missing", status: .failed, at: t0), .outbox(outboxEntry("dlv_b"))],
                // The same delivery id again adds nothing.
                [.outbox(outboxEntry("dlv_a", due: t0.addingTimeInterval(99)))],
            ])
            #expect(results[0] == nil && results[2] == nil)
            #expect(results[1] != nil)
            #expect(try await store.notifications.delivery(id: "dlv_b") == nil)
            let stored = try #require(try await store.notifications.delivery(id: "dlv_a"))
            #expect(stored.state == .pending && stored.attempts == 0 && stored.nextAttemptAt == t0)
            #expect(stored.entry.payload == .object(["status": .string("Failed")]))
            #expect(stored.entry.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            #expect(try await store.notifications.outboxBacklog(now: t0).pending == 1)
        },
        Case(name: "due rows come oldest due first, leaving out those being delivered; outcomes log attempts and set states") { store in
            try await store.notifications.enqueueOutbox([
                outboxEntry("dlv_1"), outboxEntry("dlv_2", due: t0.addingTimeInterval(1)),
                outboxEntry("dlv_later", due: t0.addingTimeInterval(60)),
            ])
            let due = try await store.notifications.dueOutbox(now: t0.addingTimeInterval(1), limit: 10, excluding: [])
            #expect(due.map(\.entry.deliveryId) == ["dlv_1", "dlv_2"])
            #expect(try await store.notifications.dueOutbox(now: t0.addingTimeInterval(1), limit: 1, excluding: [])
                .map(\.entry.deliveryId) == ["dlv_1"])
            // Rows a dispatcher holds are left out; the limit counts the rest.
            let others = try await store.notifications.dueOutbox(
                now: t0.addingTimeInterval(1), limit: 1, excluding: [due[0].rowId])
            #expect(others.map(\.entry.deliveryId) == ["dlv_2"])
            let again = try await store.notifications.dueOutbox(now: t0.addingTimeInterval(2), limit: 10, excluding: [])
            let one = try #require(again.first { $0.entry.deliveryId == "dlv_1" })
            let two = try #require(again.first { $0.entry.deliveryId == "dlv_2" })
            try await store.notifications.recordOutcomes([
                DeliveryOutcome(
                    rowId: one.rowId,
                    attempt: DeliveryAttemptRecord(attempt: 1, at: t0.addingTimeInterval(3), outcome: "failed", statusCode: 503, detail: "HTTP 503"),
                    state: .pending, nextAttemptAt: t0.addingTimeInterval(10)),
                DeliveryOutcome(
                    rowId: two.rowId,
                    attempt: DeliveryAttemptRecord(attempt: 1, at: t0.addingTimeInterval(3), outcome: "delivered", statusCode: 200, durationMs: 4),
                    state: .delivered),
            ])
            // The failed one is due again at its backoff, not before.
            #expect(try await store.notifications.dueOutbox(now: t0.addingTimeInterval(9), limit: 10, excluding: []).isEmpty)
            let retry = try await store.notifications.dueOutbox(now: t0.addingTimeInterval(10), limit: 10, excluding: [])
            #expect(retry.map(\.entry.deliveryId) == ["dlv_1"] && retry.first?.attempts == 1)
            // A deferral (open circuit) moves it without spending an attempt.
            try await store.notifications.recordOutcomes([
                DeliveryOutcome(
                    rowId: one.rowId,
                    attempt: DeliveryAttemptRecord(attempt: 2, at: t0.addingTimeInterval(10), outcome: DeliveryAttemptRecord.deferred),
                    state: .pending, nextAttemptAt: t0.addingTimeInterval(20))
            ])
            let deferred = try #require(try await store.notifications.delivery(id: "dlv_1"))
            #expect(deferred.attempts == 1 && deferred.nextAttemptAt == t0.addingTimeInterval(20) && deferred.attemptLog.count == 1)
            try await store.notifications.recordOutcomes([
                DeliveryOutcome(
                    rowId: one.rowId,
                    attempt: DeliveryAttemptRecord(attempt: 2, at: t0.addingTimeInterval(21), outcome: "dead", statusCode: 400, detail: "HTTP 400"),
                    state: .dead)
            ])
            let dead = try #require(try await store.notifications.delivery(id: "dlv_1"))
            #expect(dead.state == .dead && dead.attempts == 2 && dead.lastError == "HTTP 400")
            #expect(dead.attemptLog.map(\.outcome) == ["failed", "dead"] && dead.attemptLog.map(\.statusCode) == [503, 400])
            let delivered = try #require(try await store.notifications.delivery(id: "dlv_2"))
            #expect(delivered.state == .delivered && delivered.deliveredAt == t0.addingTimeInterval(3))
            // An outcome for a row that is no longer pending changes nothing.
            try await store.notifications.recordOutcomes([
                DeliveryOutcome(rowId: two.rowId, attempt: DeliveryAttemptRecord(attempt: 2, at: t0, outcome: "failed"), state: .pending)
            ])
            #expect(try await store.notifications.delivery(id: "dlv_2")?.attempts == 1)
            let page = try await store.notifications.deliveries(subscriptionId: "sub_1", state: nil, limit: 2, cursor: nil)
            #expect(page.items.map(\.entry.deliveryId) == ["dlv_later", "dlv_2"] && page.nextCursor != nil)
            let rest = try await store.notifications.deliveries(
                subscriptionId: "sub_1", state: nil, limit: 2, cursor: page.nextCursor.flatMap { Int64($0) })
            #expect(rest.items.map(\.entry.deliveryId) == ["dlv_1"] && rest.nextCursor == nil)
            #expect(try await store.notifications.deliveries(subscriptionId: "sub_1", state: .dead, limit: 10, cursor: nil)
                .items.map(\.entry.deliveryId) == ["dlv_1"])
            // dlv_later (never tried, not due) is not backlog until its time.
            #expect(try await store.notifications.outboxBacklog(now: t0.addingTimeInterval(30)) == (pending: 0, oldest: nil))
            #expect(try await store.notifications.outboxBacklog(now: t0.addingTimeInterval(60)) == (pending: 1, oldest: t0.addingTimeInterval(60)))
            // Retention takes what ended, never what is pending.
            #expect(try await store.notifications.purgeNotifications(before: t0.addingTimeInterval(1)) == 2)
            #expect(try await store.notifications.delivery(id: "dlv_1") == nil)
            #expect(try await store.notifications.delivery(id: "dlv_later")?.state == .pending)
        },
        Case(name: "subscriptions and integrations round-trip; deleting a subscription skips its pending deliveries") { store in
            let user = try await store.user()
            let workflow = try await store.workflow(owner: user.id)
            let subscription = SubscriptionRecord(
                id: "sub_x", workflowId: workflow.id, orgId: workflow.orgId, userId: user.id, eventType: "custom",
                events: [.executionFailed, .executionDeadline], channel: .email, destination: "ops@example.com",
                integrationId: "int_x", filter: "event.trigger == \"schedule\"", deadlineSeconds: 30, createdAt: t0)
            try await store.notifications.createSubscription(subscription)
            #expect(try await store.notifications.subscription(id: "sub_x") == subscription)
            #expect(try await store.notifications.subscriptions(integrationId: "int_x").map(\.id) == ["sub_x"])
            let integration = IntegrationRecord(
                id: "int_x", workflowId: workflow.id, orgId: workflow.orgId, type: "email", name: "mail",
                config: .object(["host": .string("smtp.example.com")]), sealed: "k1:00:ff", secretFields: ["password"],
                displayURL: "smtp://smtp.example.com", createdBy: user.id, createdAt: t0, updatedAt: t0)
            try await store.notifications.createIntegration(integration)
            #expect(try await store.notifications.integration(id: "int_x") == integration)
            var changed = integration
            changed.name = "renamed"
            changed.updatedAt = t0.addingTimeInterval(5)
            try await store.notifications.replaceIntegration(changed)
            #expect(try await store.notifications.integrations(workflowId: workflow.id, limit: 10, cursor: nil).items == [changed])
            // In use by sub_x: not deleted.
            #expect(try await store.notifications.deleteIntegration(id: "int_x") == false)
            try await store.notifications.enqueueOutbox([outboxEntry("dlv_s", subscription: "sub_x")])
            #expect(try await store.notifications.deleteSubscription(id: "sub_x", at: t0))
            #expect(try await store.notifications.deleteSubscription(id: "sub_x", at: t0) == false)
            #expect(try await store.notifications.delivery(id: "dlv_s")?.state == .skipped)
            #expect(try await store.notifications.deleteIntegration(id: "int_x"))
            #expect(try await store.notifications.integration(id: "int_x") == nil)
        },
        Case(name: "in-app notifications are once per delivery, listed newest first, marked read per user") { store in
            func note(_ id: String, user: String, delivery: String) -> NotificationRecord {
                NotificationRecord(
                    id: id, userId: user, workflowId: "wf", executionId: "exe", event: "execution.failed", title: "t", body: "b",
                    link: "l", deliveryId: delivery, createdAt: t0)
            }
            #expect(try await store.notifications.insertNotification(note("ntf_1", user: "u1", delivery: "d1")))
            #expect(try await store.notifications.insertNotification(note("ntf_2", user: "u1", delivery: "d1")) == false)
            #expect(try await store.notifications.insertNotification(note("ntf_3", user: "u1", delivery: "d3")))
            #expect(try await store.notifications.insertNotification(note("ntf_4", user: "u2", delivery: "d4")))
            #expect(try await store.notifications.notifications(userId: "u1", unreadOnly: false, limit: 10, cursor: nil)
                .items.map(\.id) == ["ntf_3", "ntf_1"])
            #expect(try await store.notifications.markRead(userId: "u1", ids: ["ntf_1", "ntf_4"], at: t0) == 1)
            #expect(try await store.notifications.unreadCount(userId: "u1") == 1)
            #expect(try await store.notifications.notifications(userId: "u1", unreadOnly: true, limit: 10, cursor: nil)
                .items.map(\.id) == ["ntf_3"])
            #expect(try await store.notifications.markRead(userId: "u1", ids: [], at: t0) == 1)
            #expect(try await store.notifications.unreadCount(userId: "u2") == 1)
            try await store.notifications.putTemplate(TemplateRecord(
                orgId: "o", event: "execution.failed", subject: "s", text: "t", html: "", updatedAt: t0, updatedBy: "u1"))
            try await store.notifications.putTemplate(TemplateRecord(
                orgId: "o", event: "execution.failed", subject: "s2", text: "t", html: "", updatedAt: t0, updatedBy: "u1"))
            #expect(try await store.notifications.templates(orgId: "o").map(\.subject) == ["s2"])
            #expect(try await store.notifications.deleteTemplate(orgId: "o", event: "execution.failed"))
            #expect(try await store.notifications.templates(orgId: "o").isEmpty)
        },
    ]
}
