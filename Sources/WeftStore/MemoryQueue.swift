import Foundation

/// The rows of `MemoryStore`'s queue and the `QueueStore` rules over them
/// (see `QueueStore` for the contract).
struct MemoryQueue {
    struct Row {
        let id: Int64
        var item: QueueItem
        var token: String?
        var worker: String?
        var expiresAt: Date?
        var deliveries: Int
    }

    var rows: [Int64: Row] = [:]
    /// "execution|task key|attempt" -> row id: an item is queued once.
    var byKey: [String: Int64] = [:]
    var byToken: [String: Int64] = [:]
    private var nextId: Int64 = 1

    static func key(_ item: QueueItem) -> String { "\(item.executionId)|\(item.taskKey)|\(item.attempt)" }

    mutating func insert(_ item: QueueItem) throws {
        let key = Self.key(item)
        if byKey[key] != nil {
            // A direct lease needs a new item (its holder runs it without a lookup).
            if item.directLease != nil {
                throw StoreError.conflict("task \(item.taskKey) attempt \(item.attempt) is already queued")
            }
            return
        }
        let id = nextId
        nextId += 1
        var stored = item
        stored.directLease = nil
        var row = Row(id: id, item: stored, deliveries: 0)
        if let lease = item.directLease {
            row.token = lease.token
            row.worker = lease.worker
            row.expiresAt = lease.expiresAt
            row.deliveries = 1
            byToken[lease.token] = id
        }
        rows[id] = row
        byKey[key] = id
    }

    private func isLeasable(_ row: Row, now: Date) -> Bool {
        row.item.readyAt <= now && (row.token == nil || (row.expiresAt ?? now) <= now)
    }

    mutating func leaseFairly(
        queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int, after: String?, room: (String) -> Int
    ) -> [Lease] {
        let ready = ordered(rows.values.filter { $0.item.queue == queue && isLeasable($0, now: now) }, queue: queue)
        let byTenant = Dictionary(grouping: ready, by: \.item.tenant)
        let candidates = byTenant.map { tenant, items in (tenant: tenant, items: Array(items.prefix(max(0, room(tenant))))) }
        return take(FairShare.interleave(candidates, after: after, limit: limit), worker: worker, now: now, duration: duration)
    }

    private func ordered(_ rows: [Row], queue: String) -> [Row] {
        if QueueItem.isDueOrdered(queue) {
            return rows.sorted { ($0.item.readyAt, $0.id) < ($1.item.readyAt, $1.id) }
        }
        return rows.sorted {
            ($0.item.priority, $1.item.executionId, $1.id) > ($1.item.priority, $0.item.executionId, $0.id)
        }
    }

    mutating func lease(queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int) -> [Lease] {
        let ready = ordered(rows.values.filter { $0.item.queue == queue && isLeasable($0, now: now) }, queue: queue)
        return take(Array(ready.prefix(limit)), worker: worker, now: now, duration: duration)
    }

    private mutating func take(_ chosen: [Row], worker: String, now: Date, duration: TimeInterval) -> [Lease] {
        let expires = now.addingTimeInterval(duration)
        return chosen.map { row in
            let token = IDGenerator.make("lse", now: now)
            let reclaimed = row.token != nil
            if let old = row.token { byToken[old] = nil }
            var leased = row
            leased.token = token
            leased.worker = worker
            leased.expiresAt = expires
            leased.deliveries += 1
            rows[row.id] = leased
            byToken[token] = row.id
            return Lease(
                id: row.id, item: row.item, token: token, expiresAt: expires, deliveries: leased.deliveries,
                reclaimed: reclaimed)
        }
    }

    mutating func removeUnleased(executionId: String, taskKey: String, attempt: Int) {
        let key = "\(executionId)|\(taskKey)|\(attempt)"
        guard let id = byKey[key], let row = rows[id], row.token == nil else { return }
        rows[id] = nil
        byKey[key] = nil
    }

    /// Removes an item, held or not.
    mutating func remove(executionId: String, taskKey: String, attempt: Int) {
        let key = "\(executionId)|\(taskKey)|\(attempt)"
        guard let id = byKey.removeValue(forKey: key), let row = rows.removeValue(forKey: id) else { return }
        if let token = row.token { byToken[token] = nil }
    }

    /// The earliest `readyAt` of an item of `queue` nobody holds.
    func earliestUnleased(queue: String) -> Date? {
        rows.values.filter { $0.item.queue == queue && $0.token == nil }.map(\.item.readyAt).min()
    }

    /// Removes every item of `executionId` on `queue` that nobody holds.
    mutating func removeUnleased(queue: String, executionId: String) {
        for (id, row) in rows where row.item.queue == queue && row.item.executionId == executionId && row.token == nil {
            rows[id] = nil
            byKey[Self.key(row.item)] = nil
        }
    }

    mutating func complete(token: String) throws {
        guard let id = byToken.removeValue(forKey: token), let row = rows.removeValue(forKey: id) else {
            throw StoreError.conflict("the lease was lost (it expired and another worker has the task, or the task was completed)")
        }
        byKey[Self.key(row.item)] = nil
    }

    mutating func release(token: String, readyAt: Date) throws {
        guard let id = byToken.removeValue(forKey: token), rows[id] != nil else {
            throw StoreError.conflict("the lease was lost (it expired and another worker has the task)")
        }
        rows[id]!.token = nil
        rows[id]!.worker = nil
        rows[id]!.expiresAt = nil
        rows[id]!.item.readyAt = readyAt
    }

    mutating func releaseAll(queues: Set<String>) -> Int {
        var released = 0
        for (id, row) in rows where row.token != nil && queues.contains(row.item.queue) {
            byToken[row.token!] = nil
            rows[id]!.token = nil
            rows[id]!.worker = nil
            rows[id]!.expiresAt = nil
            released += 1
        }
        return released
    }

    func depths(now: Date) -> [QueueDepth] {
        var byQueue: [String: QueueDepth] = [:]
        for row in rows.values {
            var depth = byQueue[row.item.queue] ?? QueueDepth(queue: row.item.queue, ready: 0, delayed: 0, leased: 0)
            if row.token != nil, let expires = row.expiresAt, expires > now {
                depth.leased += 1
            } else if row.item.readyAt <= now {
                depth.ready += 1
                depth.oldestReady = min(depth.oldestReady ?? row.item.readyAt, row.item.readyAt)
            } else {
                depth.delayed += 1
            }
            byQueue[row.item.queue] = depth
        }
        return byQueue.values.sorted { $0.queue < $1.queue }
    }

    /// Executions with an item of a task (not only timers) queued.
    func executionsWithTaskItems() -> Set<String> {
        Set(rows.values.filter { !QueueItem.isDueOrdered($0.item.queue) }.map(\.item.executionId))
    }
}
