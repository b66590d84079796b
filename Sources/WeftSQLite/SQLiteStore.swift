import Foundation
public import WeftStore
import GRDB

/// The embedded store: one SQLite database in WAL mode behind a GRDB
/// `DatabasePool` (one writer, concurrent readers). GRDB runs every
/// transaction on its own dispatch queues, so no SQLite call ever runs on a
/// NIO event loop; handlers await it.
public final class SQLiteStore: Sendable {
    public struct Configuration: Sendable {
        public enum Synchronous: String, Sendable, CaseIterable {
            /// fsync the WAL on every commit: a commit survives power loss.
            case full
            /// fsync only at checkpoints: survives a process crash, not power loss.
            case normal
        }

        public var path: String
        public var synchronous: Synchronous
        public var maximumReaders: Int

        public init(path: String, synchronous: Synchronous = .full, maximumReaders: Int = 4) {
            self.path = path
            self.synchronous = synchronous
            self.maximumReaders = maximumReaders
        }
    }

    /// The bytes of the database file that are memory-mapped (the start of a
    /// larger file is mapped, the rest read as before). Mapped pages count in
    /// the process's resident memory while the kernel keeps them.
    static let mmapSize = 1 << 30

    let pool: DatabasePool
    let metrics: StoreMetrics
    /// Every write goes through it: concurrent writes share a commit.
    let commits: GroupCommit
    /// Users' memberships, read by nearly every call (`MembershipCache`).
    let membershipCache = MembershipCache()
    /// Document counts of search phrases, for ranking (`SearchRank`).
    let phraseCounts = PhraseCounts()

    /// Opens (creating if needed) and migrates the database.
    public init(_ configuration: Configuration, metrics: StoreMetrics = .none) throws {
        var config = GRDB.Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(10)
        config.maximumReaderCount = max(1, configuration.maximumReaders)
        let synchronous = configuration.synchronous.rawValue.uppercased()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // Pages of the database file are read through a memory map, not
            // copied by a read(2) each: a search over 100,000 workflows spent
            // a third of its CPU in the kernel copying pages. (SQLite drops a
            // connection's own page cache whenever another one commits, so
            // a larger cache would not help under writes; the map does.)
            try db.execute(sql: "PRAGMA mmap_size = \(Self.mmapSize)")
            try SearchRank.register(db)
        }
        pool = try DatabasePool(path: configuration.path, configuration: config)
        // GRDB puts the writer in WAL mode after `prepareDatabase` ran, and
        // that step sets `synchronous = NORMAL`: set the mode again on the
        // writer, the one connection that commits.
        try pool.barrierWriteWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // The group commit runs each write in a savepoint, and SQLite
            // keeps the pages a savepoint changes in a statement journal
            // that spills to a temporary file past 64 KiB: a batch of
            // creates wrote three times as many bytes there as to the WAL.
            // In memory on the writer only; readers' sorts stay on disk.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
        }
        self.metrics = metrics
        self.commits = GroupCommit(pool: pool) { metrics.grouped($0) }
        try SQLiteMigrations.migrator.migrate(pool)
    }

    /// Names of the migrations applied, in order.
    public func appliedMigrations() throws -> [String] {
        try pool.read { db in try SQLiteMigrations.migrator.appliedMigrations(db) }
    }

    func read<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await metrics.measure(operation, kind: "read") { try await pool.read(body) }
    }

    func write<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await metrics.measure(operation, kind: "write") { try await commits.write(body) }
    }

    static func audit(
        _ db: Database, actor: String, action: String, resourceType: String, resourceId: String, at: Date,
        detail: JSONValue = .emptyObject
    ) throws {
        try db.cachedStatement(sql: """
            INSERT INTO audit_log (at, actor_id, action, resource_type, resource_id, detail)
            VALUES (?, ?, ?, ?, ?, ?)
            """).execute(arguments: [StoreDate.text(at), actor, action, resourceType, resourceId, detail.jsonText()])
    }

    /// Audit entries of one resource, oldest first (for tests and admin tools).
    public func auditEntries(resourceType: String, resourceId: String) async throws -> [(actor: String, action: String)] {
        try await read("audit_entries") { db in
            try Row.fetchAll(
                db,
                sql: "SELECT actor_id, action FROM audit_log WHERE resource_type = ? AND resource_id = ? ORDER BY id",
                arguments: [resourceType, resourceId]
            ).map { (actor: $0["actor_id"], action: $0["action"]) }
        }
    }
}

extension SQLiteStore: UserStore {
    public func createUser(_ user: UserRecord, organization: OrganizationRecord?) async throws {
        try await writeMemberships("create_user") { db in
            do {
                try db.execute(
                    sql: """
                        INSERT INTO users (id, email, password_hash, name, created_at, updated_at)
                        VALUES (?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [user.id, user.email, user.passwordHash, user.name, user.createdAt, user.updatedAt])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
                throw StoreError.alreadyExists("a user with email \(user.email) already exists")
            }
            try Self.audit(db, actor: user.id, action: "register", resourceType: "user", resourceId: user.id, at: user.createdAt)
            if let organization {
                try db.execute(
                    sql: "INSERT INTO organizations (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
                    arguments: [organization.id, organization.name, organization.plan, organization.createdAt])
                try db.execute(
                    sql: "INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES (?, ?, 'admin', ?)",
                    arguments: [organization.id, user.id, user.createdAt])
            }
        }
    }

    public func user(id: String) async throws -> UserRecord? {
        try await read("get_user") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE id = ?", arguments: [id]).map(Self.userRecord)
        }
    }

    public func user(email: String) async throws -> UserRecord? {
        try await read("get_user_by_email") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM users WHERE email = ?", arguments: [email]).map(Self.userRecord)
        }
    }

    static func userRecord(_ row: Row) -> UserRecord {
        UserRecord(
            id: row["id"], email: row["email"], name: row["name"], passwordHash: row["password_hash"],
            createdAt: row["created_at"], updatedAt: row["updated_at"])
    }
}
