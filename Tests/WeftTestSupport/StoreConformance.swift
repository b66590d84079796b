import Foundation
public import Testing
import WeftStore

/// The contract of the store protocols (their documentation states it), as
/// tests that run against any implementation: `WeftStoreTests` runs them on
/// the in-memory store and `WeftSQLiteTests` on SQLite files; a PostgreSQL
/// store would run them too. Behaviour only one backend has (FTS5 ranking,
/// SQL constraints, migrations) is tested with that backend.
public enum StoreConformance {
    public struct Case: Sendable, CustomTestStringConvertible {
        public let name: String
        let body: @Sendable (StoreFixture) async throws -> Void

        public var testDescription: String { name }

        /// Runs the case on a fresh fixture, removed afterwards.
        public func run(on make: () throws -> StoreFixture) async throws {
            let fixture = try make()
            defer { fixture.cleanup() }
            try await body(fixture)
        }
    }

    public static let all: [Case] = users + workflows + executions + queue + logs + organizations + schedules + notifications + analytics

    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func item(_ key: String, priority: Int = 0, readyAt: Date? = nil, queue: String = "default", attempt: Int = 1,
                     execution: String = "exe_1") -> QueueItem {
        QueueItem(queue: queue, executionId: execution, taskKey: key, attempt: attempt, priority: priority, readyAt: readyAt ?? t0)
    }

    // MARK: Users

    static let users: [Case] = [
        Case(name: "emails are unique regardless of case") { store in
            try await store.user("Same@Example.com")
            await #expect(throws: StoreError.alreadyExists("a user with email same@example.com already exists")) {
                try await store.user("same@example.com")
            }
            #expect(try await store.users.user(email: "SAME@example.COM") != nil)
        }
    ]

    // MARK: Logs

    static let logs: [Case] = [
        Case(name: "log append numbers entries per execution; reads filter and page; retention purges old entries") { store in
            let logs = store.logs
            let old = Date().addingTimeInterval(-86_400 * 40)
            let stored = try await logs.append([
                LogRecord(executionId: "e1", taskId: nil, level: .info, message: "started", createdAt: old),
                LogRecord(executionId: "e2", taskId: "t", level: .error, message: "other", createdAt: Date()),
                LogRecord(executionId: "e1", taskId: "t1", level: .warning, message: "slow", createdAt: Date()),
            ])
            #expect(stored.map(\.sequence) == [1, 1, 2])
            try await logs.append([LogRecord(executionId: "e1", taskId: "t1", level: .error, message: "failed", createdAt: Date())])
            let all = try await logs.entries(LogQuery(executionId: "e1", limit: 10))
            #expect(all.map(\.message) == ["started", "slow", "failed"])
            #expect(all.map(\.sequence) == [1, 2, 3])
            #expect(try await logs.entries(LogQuery(executionId: "e1", afterSequence: 1, limit: 1)).map(\.message) == ["slow"])
            #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10, minLevel: .error)).map(\.message) == ["failed"])
            #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10, taskId: "t1")).count == 2)
            #expect(try await logs.purge(olderThan: Date().addingTimeInterval(-86_400 * 30), limit: 0) == 0)
            #expect(try await logs.purge(olderThan: Date().addingTimeInterval(-86_400 * 30), limit: 10) == 1)
            #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10)).map(\.message) == ["slow", "failed"])
            // A purge takes at most `limit`, the oldest first.
            try await logs.append((1...3).map { i in
                LogRecord(executionId: "e3", taskId: nil, level: .info, message: "old \(i)", createdAt: old.addingTimeInterval(Double(i)))
            })
            #expect(try await logs.purge(olderThan: Date().addingTimeInterval(-86_400 * 30), limit: 2) == 2)
            #expect(try await logs.entries(LogQuery(executionId: "e3", limit: 10)).map(\.message) == ["old 3"])
            #expect(try await logs.purge(olderThan: Date().addingTimeInterval(-86_400 * 30), limit: 10) == 1)
        }
    ]
}
