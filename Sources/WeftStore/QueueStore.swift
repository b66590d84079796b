public import Foundation

/// One unit of work on a queue: an attempt of a task of an execution.
public struct QueueItem: Sendable, Hashable {
    /// The queue of durable timers (timeouts), taken by due time.
    public static let timersQueue = "timers"
    /// The scheduler's wake-ups (one per schedule), taken by due time too.
    public static let schedulesQueue = "schedules"

    /// Queues whose items are taken by due time (`readyAt`), not priority.
    public static func isDueOrdered(_ queue: String) -> Bool { queue == timersQueue || queue == schedulesQueue }

    public var queue: String
    public var executionId: String
    public var taskKey: String
    public var attempt: Int
    /// Higher first; among equal priorities the oldest execution first, FIFO within it.
    /// Under fair leasing it orders only its tenant's items.
    public var priority: Int
    /// The organization whose work it is ("" for none): fair leasing shares
    /// workers between tenants round-robin.
    public var tenant: String = ""
    /// Not leasable before this time (delayed retries, durable timers).
    public var readyAt: Date
    /// What the worker needs to run it (resolved inputs), as JSON.
    public var payload: JSONValue
    /// Set when the item is leased as it is enqueued (the engine hands it
    /// straight to an in-process worker with a free slot).
    public var directLease: DirectLease?

    public init(
        queue: String, executionId: String, taskKey: String, attempt: Int, priority: Int = 0, readyAt: Date,
        payload: JSONValue = .emptyObject
    ) {
        self.queue = queue
        self.executionId = executionId
        self.taskKey = taskKey
        self.attempt = attempt
        self.priority = priority
        self.readyAt = readyAt
        self.payload = payload
    }
}

/// A lease taken in the transaction that enqueues the item.
public struct DirectLease: Sendable, Hashable {
    public var token: String
    public var worker: String
    public var expiresAt: Date

    public init(token: String, worker: String, expiresAt: Date) {
        self.token = token
        self.worker = worker
        self.expiresAt = expiresAt
    }
}

/// An item a worker holds until `expiresAt`; `token` proves it still does.
public struct Lease: Sendable, Hashable {
    public var id: Int64
    public var item: QueueItem
    public var token: String
    public var expiresAt: Date
    /// How many times this item was leased (1 on the first lease).
    public var deliveries: Int
    /// The item was taken over from a holder whose lease had expired.
    public var reclaimed: Bool
    /// For a lease taken in the commit that queued the item: when that
    /// commit returned (the item became durable and visible). Task wait is
    /// measured from here, else from `item.readyAt`.
    public var visibleAt: Date?

    public init(id: Int64, item: QueueItem, token: String, expiresAt: Date, deliveries: Int, reclaimed: Bool = false) {
        self.id = id
        self.item = item
        self.token = token
        self.expiresAt = expiresAt
        self.deliveries = deliveries
        self.reclaimed = reclaimed
    }

    /// What an external worker holds: the row id and the token in one string.
    public var handle: String { "\(id).\(token)" }

    /// Splits a `handle` back into row id and token; nil if malformed.
    public static func parse(handle: String) -> (id: Int64, token: String)? {
        guard let dot = handle.firstIndex(of: "."), let id = Int64(handle[..<dot]), id > 0 else { return nil }
        let token = String(handle[handle.index(after: dot)...])
        guard !token.isEmpty, token.utf8.count <= 64 else { return nil }
        return (id, token)
    }
}

/// The round-robin order of fair leasing: `candidates` are each tenant's
/// ready items in its own order, at most its room; tenants take turns
/// (one item each per round), starting after `after`.
public enum FairShare {
    public static func interleave<T>(_ candidates: [(tenant: String, items: [T])], after: String?, limit: Int) -> [T] {
        let ordered = candidates.sorted { $0.tenant < $1.tenant }
        let start = after.flatMap { last in ordered.firstIndex { $0.tenant > last } } ?? 0
        let rotated = Array(ordered[start...] + ordered[..<start])
        var picked: [T] = []
        var round = 0
        while picked.count < limit {
            var any = false
            for entry in rotated where round < entry.items.count {
                picked.append(entry.items[round])
                any = true
                if picked.count == limit { break }
            }
            if !any { break }
            round += 1
        }
        return picked
    }
}

/// Depth of one queue at one moment.
public struct QueueDepth: Sendable, Hashable {
    public var queue: String
    public var ready: Int
    public var delayed: Int
    public var leased: Int
    /// The due time (`readyAt`) of the longest-waiting ready item, nil when
    /// none is ready: now minus it is how long the queue's head has waited.
    public var oldestReady: Date?

    public init(queue: String, ready: Int, delayed: Int, leased: Int, oldestReady: Date? = nil) {
        self.queue = queue
        self.ready = ready
        self.delayed = delayed
        self.leased = leased
        self.oldestReady = oldestReady
    }
}

/// The durable task queue with leases (at-least-once delivery).
///
/// The contract every implementation keeps (checked by the conformance
/// suite that runs against each store):
///
/// - **Items** are keyed by (execution, task key, attempt): enqueueing a key
///   that is queued already adds nothing. An item is leasable once its
///   `readyAt` has passed and it is not under a live lease.
/// - **Order.** A lease takes the highest priority first, then the oldest
///   execution's (ids sort by creation time), then the order items were
///   queued. The queue named `QueueItem.timersQueue` is taken by due time
///   (`readyAt`) instead: its items are timers.
/// - **Leases.** A lease holds an item until `expiresAt`; its `token`
///   proves it. A lease whose time ran out makes the item leasable again
///   (`Lease.reclaimed` on the next lease), and the next lease gets a new
///   token. Heartbeats extend only a lease that has not run out.
/// - **Completion.** `complete` (and `.completeLease`) removes the item if
///   its row still holds that token, even after `expiresAt`, as long as
///   nobody leased it since: a slow worker's result is accepted once and
///   only once. Otherwise it fails with `StoreError.conflict`.
/// - **Direct leases.** An item enqueued with `directLease` is leased by the
///   same write (the engine hands it straight to an in-process worker);
///   such an item must be new: a duplicate fails its unit with `conflict`.
/// - **Time** is what the caller passes as `now`; stores read no clock for
///   lease decisions, so a manual clock drives them in tests.
public protocol QueueStore: Sendable {
    /// Adds items; an item already queued (same execution, task, attempt) is
    /// not added twice.
    func enqueue(_ items: [QueueItem]) async throws
    /// Leases up to `limit` ready items of `queue`: highest priority first,
    /// then the oldest execution's, then in the order they were queued.
    /// Items whose lease expired are ready again.
    func lease(queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int) async throws -> [Lease]
    /// Leases up to `limit` ready items of `queue` shared fairly between
    /// tenants: round-robin, one item per tenant per round (deficit round
    /// robin with a quantum of one attempt), starting with the tenant after
    /// `after`; a tenant gets at most `room(tenant)` items. Within a tenant
    /// the order is `lease`'s: priority, then oldest execution, then FIFO.
    func leaseFairly(
        queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int, after: String?,
        room: @escaping @Sendable (String) -> Int
    ) async throws -> [Lease]
    /// Extends a lease; throws `StoreError.conflict` if it was lost.
    func heartbeat(_ lease: Lease, now: Date, duration: TimeInterval) async throws -> Lease
    /// Removes a completed item; throws `StoreError.conflict` if the lease
    /// was lost (another worker holds the item now, or it is gone).
    func complete(_ lease: Lease) async throws
    /// Gives an item back unfinished, leasable again at `readyAt` (durable
    /// timers: a waiting task holds no worker). Throws `StoreError.conflict`
    /// if the lease was lost.
    func release(_ lease: Lease, readyAt: Date) async throws
    /// Items leasable now, waiting for a later `readyAt` (retry backoffs,
    /// delays), and leased now.
    func depth(queue: String, now: Date) async throws -> (ready: Int, delayed: Int, leased: Int)
    /// The depth of every queue that has items.
    func depths(now: Date) async throws -> [QueueDepth]
    /// The item currently leased with this id and token; nil once the lease
    /// was lost or the item completed.
    func lease(id: Int64, token: String) async throws -> Lease?
    /// Ends every lease on these queues at once (after a restart the
    /// in-process holders are gone; waiting for expiry would only add delay).
    /// Returns how many were released.
    @discardableResult
    func releaseAll(queues: [String]) async throws -> Int
}
