import Foundation
import Synchronization
public import WeftEngine
public import WeftStore

/// The subscriptions in memory, by workflow: what the engine asks while it
/// builds a unit (`EventNotifier`), so deciding who to notify costs a
/// dictionary lookup and no I/O. Loaded from the store at start, kept in
/// step by the API (create and delete go through it after the store).
public final class NotificationIndex: EventNotifier, Sendable {
    /// A subscription with its filter parsed once.
    struct Entry: Sendable {
        let record: SubscriptionRecord
        let filter: WeftEngine.Expression?
    }

    private let byWorkflow = Mutex<[String: [Entry]]>([:])
    private let byId = Mutex<[String: SubscriptionRecord]>([:])
    /// Told when rows commit: the dispatcher wakes, metrics count. (In a
    /// struct: a bare closure type read out of a Mutex gets a reabstraction
    /// thunk written back on every read, a chain that grows without end.)
    private struct Listener: Sendable {
        let body: @Sendable ([OutboxEntry]) -> Void
    }

    private let onCommit = Mutex<Listener?>(nil)

    public init() {}

    /// Replaces the index with the store's subscriptions.
    public func load(_ subscriptions: [SubscriptionRecord]) {
        var index: [String: [Entry]] = [:]
        for record in subscriptions { index[record.workflowId, default: []].append(Self.entry(record)) }
        byWorkflow.withLock { $0 = index }
        byId.withLock { $0 = Dictionary(subscriptions.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last }) }
    }

    /// A live subscription (nil once deleted).
    func subscription(id: String) -> SubscriptionRecord? {
        byId.withLock { $0[id] }
    }

    func add(_ record: SubscriptionRecord) {
        let entry = Self.entry(record)
        byId.withLock { $0[record.id] = record }
        byWorkflow.withLock { $0[record.workflowId, default: []].append(entry) }
    }

    func remove(id: String, workflowId: String) {
        byId.withLock { $0[id] = nil }
        byWorkflow.withLock { index in
            index[workflowId]?.removeAll { $0.record.id == id }
            if index[workflowId]?.isEmpty == true { index[workflowId] = nil }
        }
    }

    func onCommit(_ body: @escaping @Sendable ([OutboxEntry]) -> Void) {
        onCommit.withLock { $0 = Listener(body: body) }
    }

    static func entry(_ record: SubscriptionRecord) -> Entry {
        // Filters are checked when the subscription is created; one that no
        // longer parses (a future grammar change) matches nothing.
        let filter = record.filter.flatMap { try? WeftEngine.Expression.parseEventFilter($0) }
        return Entry(record: record, filter: record.filter == nil ? nil : filter ?? .literal(.bool(false)))
    }

    public func watches(workflowId: String) -> Bool {
        byWorkflow.withLock { $0[workflowId] != nil }
    }

    public func entries(for facts: EventFacts) -> [OutboxEntry] {
        let candidates = byWorkflow.withLock { $0[facts.workflowId] ?? [] }
        guard !candidates.isEmpty else { return [] }
        var payload: JSONValue?
        var entries: [OutboxEntry] = []
        for candidate in candidates where candidate.record.events.contains(facts.event) {
            let subscription = candidate.record
            var due = facts.at
            if facts.event == .executionDeadline {
                guard let seconds = subscription.deadlineSeconds, seconds > 0 else { continue }
                due = facts.at.addingTimeInterval(TimeInterval(seconds))
            }
            let body = payload ?? facts.payload
            payload = body
            if let filter = candidate.filter, !filter.evaluate(WeftEngine.Expression.Context(input: body)).isTruthy { continue }
            entries.append(OutboxEntry(
                deliveryId: Self.deliveryId(subscription: subscription.id, facts: facts), subscriptionId: subscription.id,
                workflowId: facts.workflowId, orgId: facts.orgId, executionId: facts.executionId, event: facts.event,
                channel: subscription.channel, payload: body, createdAt: facts.at, nextAttemptAt: due,
                traceparent: facts.traceparent))
        }
        return entries
    }

    public func committed(_ entries: [OutboxEntry]) {
        guard !entries.isEmpty, let listener = onCommit.withLock({ $0 }) else { return }
        listener.body(entries)
    }

    /// The same event for the same subscription always gets the same id:
    /// a unit written again (recovery ending an execution a second time)
    /// adds no second notification, and receivers dedupe by it.
    static func deliveryId(subscription: String, facts: EventFacts) -> String {
        var key = [subscription, facts.event.rawValue, facts.executionId, facts.taskKey ?? "", facts.attempt.map(String.init) ?? ""]
        if facts.executionId.isEmpty {
            key.append(facts.scheduleId ?? "")
            key.append(facts.scheduledAt.map { String($0.timeIntervalSince1970) } ?? "")
        }
        return "dlv_" + Hex.encode(Crypto.sha256(Array(key.joined(separator: "\u{1f}").utf8)).prefix(16))
    }
}
