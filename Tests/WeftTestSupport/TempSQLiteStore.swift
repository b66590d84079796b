import Foundation
public import WeftSQLite
public import WeftStore

/// A fresh pair of SQLite files (main database and log store) per test,
/// deleted by `cleanup()`.
public struct TempSQLiteStore: Sendable {
    public let directory: TemporaryDirectory
    public let store: SQLiteStore
    public let logs: SQLiteLogStore

    public init(synchronous: SQLiteStore.Configuration.Synchronous = .normal) throws {
        directory = try TemporaryDirectory("weft-store")
        store = try SQLiteStore(.init(path: directory.path("weft.sqlite"), synchronous: synchronous))
        logs = try SQLiteLogStore(path: directory.path("logs.sqlite"))
    }

    public var path: String { directory.path("weft.sqlite") }

    /// Opens the same files again (a restart).
    public func reopen() throws -> SQLiteStore { try SQLiteStore(.init(path: path, synchronous: .normal)) }

    public func cleanup() { directory.remove() }

    /// Stores a new account.
    @discardableResult
    public func user(_ email: String? = nil) async throws -> UserRecord {
        let user = Records.user(email: email)
        try await store.createUser(user)
        return user
    }

    public func workflow(owner: String, name: String = "Flow", description: String = "", taskNames: [String] = ["first"])
        -> WorkflowRecord
    {
        Records.workflow(owner: owner, name: name, description: description, taskNames: taskNames)
    }
}
