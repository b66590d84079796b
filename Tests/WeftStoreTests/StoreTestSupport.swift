import Foundation
import GRDB
import WeftStore

/// A fresh SQLite file per test, deleted afterwards.
struct TempStore {
    let directory: URL
    let store: SQLiteStore

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try SQLiteStore(.init(path: directory.appendingPathComponent("weft.sqlite").path, synchronous: .normal))
    }

    var path: String { directory.appendingPathComponent("weft.sqlite").path }

    func cleanup() { try? FileManager.default.removeItem(at: directory) }

    @discardableResult
    func user(_ email: String = "u\(UUID().uuidString.prefix(8))@example.com") async throws -> UserRecord {
        let now = Date.nowMillis
        let user = UserRecord(
            id: IDGenerator.make(IDGenerator.user), email: email, name: "User", passwordHash: "x", createdAt: now,
            updatedAt: now)
        try await store.createUser(user)
        return user
    }

    func workflow(owner: String, name: String = "Flow", description: String = "", taskNames: [String] = ["first"]) -> WorkflowRecord {
        let now = Date.nowMillis
        let id = IDGenerator.make(IDGenerator.workflow)
        let tasks = taskNames.enumerated().map { index, name in
            TaskRecord(
                id: IDGenerator.make(IDGenerator.task), workflowId: id, key: "k\(index)", name: name, description: "",
                action: "noop", createdAt: now, updatedAt: now)
        }
        return WorkflowRecord(
            id: id, ownerId: owner, name: name, description: description, version: 1, createdAt: now, updatedAt: now,
            tasks: tasks)
    }
}
