public import Foundation
public import WeftStore

/// What happened, as notifications see it: the facts every channel and
/// template may use. `payload` is what filters (`event.trigger ==
/// "schedule"`) and receivers read.
public struct EventFacts: Sendable {
    public var event: NotificationEvent
    public var workflowId: String
    public var workflowName: String
    public var orgId: String
    /// Empty for a schedule event without an execution.
    public var executionId: String
    public var at: Date
    public var status: String
    public var trigger: String
    public var triggerId: String?
    public var startedAt: Date?
    public var error: String?
    public var taskKey: String?
    public var attempt: Int?
    public var scheduleId: String?
    public var scheduledAt: Date?
    /// Why a tick was skipped, how many were missed.
    public var reason: String?
    public var count: Int?
    public var traceparent: String?

    public init(
        event: NotificationEvent, workflowId: String, workflowName: String, orgId: String, executionId: String, at: Date,
        status: String, trigger: String
    ) {
        self.event = event
        self.workflowId = workflowId
        self.workflowName = workflowName
        self.orgId = orgId
        self.executionId = executionId
        self.at = at
        self.status = status
        self.trigger = trigger
    }

    /// RFC 3339 with milliseconds: receivers measure latency from `at`.
    public static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    public static let maxErrorCharacters = 2000

    /// The JSON receivers get and filters read (field names:
    /// docs/NOTIFICATIONS.md).
    public var payload: JSONValue {
        var fields: [String: JSONValue] = [
            "event": .string(event.rawValue), "workflowId": .string(workflowId), "workflowName": .string(workflowName),
            "executionId": .string(executionId), "status": .string(status), "trigger": .string(trigger),
            "at": .string(StoreDate.rfc3339(at)),
        ]
        if let triggerId { fields["triggerId"] = .string(triggerId) }
        if let startedAt {
            fields["startedAt"] = .string(StoreDate.rfc3339(startedAt))
            fields["durationMs"] = .number((at.timeIntervalSince(startedAt) * 1000).rounded())
        }
        // An error can be long (a response body): notifications carry its start.
        if let error { fields["error"] = .string(error.count > Self.maxErrorCharacters ? String(error.prefix(Self.maxErrorCharacters)) + "…" : error) }
        if let taskKey { fields["task"] = .string(taskKey) }
        if let attempt { fields["attempt"] = .number(Double(attempt)) }
        if let scheduleId { fields["scheduleId"] = .string(scheduleId) }
        if let scheduledAt { fields["scheduledAt"] = .string(StoreDate.rfc3339(scheduledAt)) }
        if let reason { fields["reason"] = .string(reason) }
        if let count { fields["count"] = .number(Double(count)) }
        return .object(fields)
    }
}

/// Turns events into outbox rows (the server's index of subscriptions).
/// The engine and the scheduler ask it while they build a unit, so the
/// notification commits with the change it reports (transactional outbox):
/// it must answer from memory, without I/O.
public protocol EventNotifier: Sendable {
    /// False when no subscription of the workflow could match: the commit
    /// path skips building facts at all.
    func watches(workflowId: String) -> Bool
    /// The rows the event causes (none when nothing matches).
    func entries(for facts: EventFacts) -> [OutboxEntry]
    /// Rows of these entries were committed (metrics, waking the dispatcher).
    func committed(_ entries: [OutboxEntry])
}

extension ExecutionTransition {
    /// The outbox row of this transition, if it is one.
    var outboxEntry: OutboxEntry? {
        if case .outbox(let entry) = self { return entry }
        return nil
    }
}
