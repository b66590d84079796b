public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: QueueStore {
    public func enqueue(_ items: [QueueItem]) async throws {
        guard !items.isEmpty else { return }
        try await write("enqueue") { db in try Self.insert(db, items) }
    }

    static func insert(_ db: Database, _ items: [QueueItem]) throws {
        let now = StoreDate.text(Date())
        // Hot statements are prepared once per connection (no re-parse).
        let statement = try db.cachedStatement(sql: """
            INSERT INTO task_queue (queue, execution_id, task_key, attempt, priority, ready_at, payload, enqueued_at, tenant)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (execution_id, task_key, attempt) DO NOTHING
            """)
        for item in items {
            if let lease = item.directLease {
                // Leased as it is enqueued: the item must be new (its holder
                // runs it without looking it up), so a duplicate fails the group.
                try db.cachedStatement(sql: """
                    INSERT INTO task_queue (queue, execution_id, task_key, attempt, priority, ready_at, payload, enqueued_at,
                        tenant, lease_token, leased_by, lease_expires_at, deliveries)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                    ON CONFLICT (execution_id, task_key, attempt) DO NOTHING
                    """).execute(arguments: [
                        item.queue, item.executionId, item.taskKey, item.attempt, item.priority, StoreDate.text(item.readyAt),
                        item.payload == .emptyObject ? "{}" : item.payload.jsonText(), now, item.tenant, lease.token, lease.worker,
                        StoreDate.text(lease.expiresAt),
                    ])
                guard db.changesCount == 1 else {
                    throw StoreError.conflict("task \(item.taskKey) attempt \(item.attempt) is already queued")
                }
                continue
            }
            try statement.execute(arguments: [
                item.queue, item.executionId, item.taskKey, item.attempt, item.priority, StoreDate.text(item.readyAt),
                item.payload == .emptyObject ? "{}" : item.payload.jsonText(), now, item.tenant,
            ])
        }
    }

    static func completeLease(_ db: Database, id: Int64, token: String) throws {
        // A token still on the row means nobody else leased the item since,
        // even if the lease ran out: the work is accepted once.
        // By token alone (unique, indexed): leases taken at enqueue have no row id here.
        try db.cachedStatement(sql: "DELETE FROM task_queue WHERE lease_token = ?").execute(arguments: [token])
        guard db.changesCount == 1 else {
            throw StoreError.conflict("the lease was lost (it expired and another worker has the task, or the task was completed)")
        }
    }

    static func releaseLease(_ db: Database, id: Int64, token: String, readyAt: Date) throws {
        try db.cachedStatement(sql: """
            UPDATE task_queue SET lease_token = NULL, leased_by = NULL, lease_expires_at = NULL, ready_at = ?
            WHERE lease_token = ?
            """).execute(arguments: [StoreDate.text(readyAt), token])
        guard db.changesCount == 1 else {
            throw StoreError.conflict("the lease was lost (it expired and another worker has the task)")
        }
    }

    public func lease(queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int) async throws -> [Lease] {
        guard limit > 0 else { return [] }
        return try await write("lease") { db in
            // The writer is serialized, so select-then-update cannot hand one
            // item to two workers. The index is named: the planner would
            // otherwise pick the due-time index and sort the whole backlog on
            // every lease (a task queue walks priority, then the oldest
            // execution first, then FIFO, and stops at `limit`; the timers
            // queue walks due times).
            let nowText = StoreDate.text(now)
            let rows = try Row.fetchAll(
                db.cachedStatement(sql: """
                    SELECT * FROM task_queue \(QueueItem.isDueOrdered(queue) ? "INDEXED BY task_queue_due" : "INDEXED BY task_queue_order")
                    WHERE queue = ? AND ready_at <= ? AND (lease_token IS NULL OR lease_expires_at <= ?)
                    ORDER BY \(QueueItem.isDueOrdered(queue) ? "ready_at" : "priority DESC, execution_id, id") LIMIT ?
                    """),
                arguments: [queue, nowText, nowText, limit])
            return try Self.take(db, rows, worker: worker, now: now, duration: duration)
        }
    }

    /// Leases the selected rows.
    static func take(_ db: Database, _ rows: [Row], worker: String, now: Date, duration: TimeInterval) throws -> [Lease] {
        let expires = now.addingTimeInterval(duration)
        let expiresText = StoreDate.text(expires)
        let update = try db.cachedStatement(sql: """
            UPDATE task_queue SET lease_token = ?, leased_by = ?, lease_expires_at = ?, deliveries = deliveries + 1
            WHERE id = ?
            """)
        return try rows.map { row in
            let token = IDGenerator.make("lse", now: now)
            let id: Int64 = row["id"]
            let deliveries: Int = row["deliveries"]
            let reclaimed = (row["lease_token"] as String?) != nil
            try update.execute(arguments: [token, worker, expiresText, id])
            return Lease(
                id: id, item: Self.queueItem(row), token: token, expiresAt: expires, deliveries: deliveries + 1,
                reclaimed: reclaimed)
        }
    }

    public func leaseFairly(
        queue: String, worker: String, now: Date, duration: TimeInterval, limit: Int, after: String?,
        room: @escaping @Sendable (String) -> Int
    ) async throws -> [Lease] {
        guard limit > 0 else { return [] }
        return try await write("lease") { db in
            let nowText = StoreDate.text(now)
            // The tenants with items in this queue, one index probe each
            // (a skip scan), not a walk of the backlog.
            let tenants = try String.fetchAll(
                db.cachedStatement(sql: """
                    WITH RECURSIVE t(tenant) AS (
                        SELECT (SELECT MIN(tenant) FROM task_queue INDEXED BY task_queue_tenant_order WHERE queue = ?1)
                        UNION ALL
                        SELECT (SELECT MIN(tenant) FROM task_queue INDEXED BY task_queue_tenant_order
                                WHERE queue = ?1 AND tenant > t.tenant)
                        FROM t WHERE t.tenant IS NOT NULL
                    )
                    SELECT tenant FROM t WHERE tenant IS NOT NULL
                    """),
                arguments: [queue])
            let select = try db.cachedStatement(sql: """
                SELECT * FROM task_queue INDEXED BY task_queue_tenant_order
                WHERE queue = ? AND tenant = ? AND ready_at <= ? AND (lease_token IS NULL OR lease_expires_at <= ?)
                ORDER BY priority DESC, execution_id, id LIMIT ?
                """)
            var candidates: [(tenant: String, items: [Row])] = []
            for tenant in tenants {
                let take = min(limit, room(tenant))
                guard take > 0 else { continue }
                let rows = try Row.fetchAll(select, arguments: [queue, tenant, nowText, nowText, take])
                if !rows.isEmpty { candidates.append((tenant, rows)) }
            }
            let chosen = FairShare.interleave(candidates, after: after, limit: limit)
            return try Self.take(db, chosen, worker: worker, now: now, duration: duration)
        }
    }

    public func heartbeat(_ lease: Lease, now: Date, duration: TimeInterval) async throws -> Lease {
        try await write("heartbeat") { db in
            let expires = now.addingTimeInterval(duration)
            try db.execute(
                sql: "UPDATE task_queue SET lease_expires_at = ? WHERE lease_token = ? AND lease_expires_at > ?",
                arguments: [StoreDate.text(expires), lease.token, StoreDate.text(now)])
            guard db.changesCount == 1 else {
                throw StoreError.conflict("the lease on \(lease.item.taskKey) attempt \(lease.item.attempt) was lost")
            }
            var renewed = lease
            renewed.expiresAt = expires
            return renewed
        }
    }

    public func complete(_ lease: Lease) async throws {
        try await write("complete") { db in try Self.completeLease(db, id: lease.id, token: lease.token) }
    }

    public func release(_ lease: Lease, readyAt: Date) async throws {
        try await write("release") { db in try Self.releaseLease(db, id: lease.id, token: lease.token, readyAt: readyAt) }
    }

    public func lease(id: Int64, token: String) async throws -> Lease? {
        try await read("find_lease") { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT * FROM task_queue WHERE id = ? AND lease_token = ?", arguments: [id, token])
            else { return nil }
            return Lease(
                id: id, item: Self.queueItem(row), token: token, expiresAt: row["lease_expires_at"],
                deliveries: row["deliveries"])
        }
    }

    public func releaseAll(queues: [String]) async throws -> Int {
        guard !queues.isEmpty else { return 0 }
        return try await write("release_all") { db in
            try db.execute(
                sql: """
                    UPDATE task_queue SET lease_token = NULL, leased_by = NULL, lease_expires_at = NULL
                    WHERE lease_token IS NOT NULL AND queue IN (\(databaseQuestionMarks(count: queues.count)))
                    """,
                arguments: StatementArguments(queues))
            return db.changesCount
        }
    }

    public func depths(now: Date) async throws -> [QueueDepth] {
        try await read("queue_depths") { db in try Self.depths(db, now: now, queue: nil) }
    }

    /// Ready, delayed and leased items per queue (of one queue, if given).
    static func depths(_ db: Database, now: Date, queue: String?) throws -> [QueueDepth] {
        let time = StoreDate.text(now)
        var arguments: StatementArguments = [time, time, time, time, time, time, time]
        if let queue { arguments += [queue] }
        return try Row.fetchAll(
            db,
            sql: """
                SELECT queue,
                    SUM(CASE WHEN (lease_token IS NULL OR lease_expires_at <= ?) AND ready_at <= ? THEN 1 ELSE 0 END) AS ready,
                    SUM(CASE WHEN (lease_token IS NULL OR lease_expires_at <= ?) AND ready_at > ? THEN 1 ELSE 0 END) AS delayed,
                    SUM(CASE WHEN lease_token IS NOT NULL AND lease_expires_at > ? THEN 1 ELSE 0 END) AS leased,
                    MIN(CASE WHEN (lease_token IS NULL OR lease_expires_at <= ?) AND ready_at <= ? THEN ready_at END) AS oldest_ready
                FROM task_queue \(queue == nil ? "" : "WHERE queue = ?") GROUP BY queue
                """,
            arguments: arguments
        ).map { row in
            QueueDepth(
                queue: row["queue"], ready: row["ready"] ?? 0, delayed: row["delayed"] ?? 0, leased: row["leased"] ?? 0,
                oldestReady: row["oldest_ready"])
        }
    }

    public func depth(queue: String, now: Date) async throws -> (ready: Int, delayed: Int, leased: Int) {
        let depth = try await read("queue_depth") { db in try Self.depths(db, now: now, queue: queue).first }
        return (depth?.ready ?? 0, depth?.delayed ?? 0, depth?.leased ?? 0)
    }

    static func queueItem(_ row: Row) -> QueueItem {
        var item = QueueItem(
            queue: row["queue"], executionId: row["execution_id"], taskKey: row["task_key"], attempt: row["attempt"],
            priority: row["priority"], readyAt: row["ready_at"],
            payload: { (text: String) in text == "{}" ? .emptyObject : (try? JSONValue(jsonText: text)) ?? .emptyObject }(row["payload"]))
        item.tenant = row["tenant"] ?? ""
        return item
    }
}
