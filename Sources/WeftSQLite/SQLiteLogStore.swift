public import Foundation
import GRDB
public import WeftStore

/// Execution logs in their own SQLite file (the design's "NoSQL" log store):
/// append-only rows keyed by (execution, sequence), so heavy log traffic never
/// contends with the main database's writer, and retention is one range delete.
public final class SQLiteLogStore: LogStore, Sendable {
    let pool: DatabasePool
    let metrics: StoreMetrics

    public init(path: String, synchronous: SQLiteStore.Configuration.Synchronous = .normal, metrics: StoreMetrics = .none) throws {
        var config = GRDB.Configuration()
        config.busyMode = .timeout(10)
        let synchronous = synchronous.rawValue.uppercased()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
        }
        pool = try DatabasePool(path: path, configuration: config)
        // After GRDB's WAL set-up, which sets NORMAL (see `SQLiteStore`).
        try pool.barrierWriteWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = \(synchronous)") }
        self.metrics = metrics
        try Self.migrator.migrate(pool)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-logs") { db in
            // The seed's `logs` table, keyed for append and per-execution reads.
            try db.execute(sql: """
                CREATE TABLE logs (
                    log_id       INTEGER PRIMARY KEY AUTOINCREMENT,
                    execution_id TEXT NOT NULL,
                    sequence     INTEGER NOT NULL,
                    task_id      TEXT,
                    log_level    INTEGER NOT NULL CHECK (log_level IN (1, 2, 3)),
                    message      TEXT NOT NULL,
                    created_at   DATETIME NOT NULL,
                    UNIQUE (execution_id, sequence)
                );
                CREATE INDEX logs_by_time ON logs(created_at);
                """)
        }
        return migrator
    }

    @discardableResult
    public func append(_ entries: [LogRecord]) async throws -> [LogRecord] {
        guard !entries.isEmpty else { return [] }
        return try await metrics.measure("append_logs", kind: "write") {
            try await pool.write { db -> [LogRecord] in
                var next: [String: Int64] = [:]
                var stored = entries
                let lastSequence = try db.cachedStatement(sql: "SELECT MAX(sequence) FROM logs WHERE execution_id = ?")
                let insert = try db.cachedStatement(sql: """
                    INSERT INTO logs (execution_id, sequence, task_id, log_level, message, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """)
                for index in stored.indices {
                    let execution = stored[index].executionId
                    if next[execution] == nil {
                        let last = try Int64.fetchOne(lastSequence, arguments: [execution]) ?? 0
                        next[execution] = last + 1
                    }
                    stored[index].sequence = next[execution]!
                    next[execution]! += 1
                    let entry = stored[index]
                    try insert.execute(arguments: [
                        entry.executionId, entry.sequence, entry.taskId, entry.level.rawValue, entry.message,
                        StoreDate.text(entry.createdAt),
                    ])
                }
                return stored
            }
        }
    }

    public func entries(_ query: LogQuery) async throws -> [LogRecord] {
        try await metrics.measure("read_logs", kind: "read") {
            try await pool.read { db -> [LogRecord] in
                var sql = "SELECT * FROM logs WHERE execution_id = ? AND sequence > ?"
                var arguments: StatementArguments = [query.executionId, query.afterSequence]
                if let task = query.taskId {
                    sql += " AND task_id = ?"
                    arguments += [task]
                }
                if let level = query.minLevel {
                    sql += " AND log_level >= ?"
                    arguments += [level.rawValue]
                }
                sql += " ORDER BY sequence LIMIT ?"
                arguments += [query.limit]
                return try Row.fetchAll(db, sql: sql, arguments: arguments).map { row in
                    LogRecord(
                        executionId: row["execution_id"], sequence: row["sequence"], taskId: row["task_id"],
                        level: LogRecord.Level(rawValue: row["log_level"]) ?? .info, message: row["message"],
                        createdAt: row["created_at"])
                }
            }
        }
    }

    @discardableResult
    public func purge(olderThan date: Date, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await metrics.measure("purge_logs", kind: "write") {
            try await pool.write { db in
                // The oldest `limit` by the time index, deleted by key.
                try db.cachedStatement(sql: """
                    DELETE FROM logs WHERE log_id IN
                        (SELECT log_id FROM logs WHERE created_at < ? ORDER BY created_at LIMIT ?)
                    """).execute(arguments: [date, limit])
                return db.changesCount
            }
        }
    }
}
