import Foundation
import Testing
import WeftStore

@Suite("durable task queue")
struct QueueStoreTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func item(_ key: String, priority: Int = 0, readyAt: Date? = nil, queue: String = "default", attempt: Int = 1) -> QueueItem {
        QueueItem(queue: queue, executionId: "exe_1", taskKey: key, attempt: attempt, priority: priority, readyAt: readyAt ?? t0)
    }

    @Test("leases go by priority, then FIFO; delayed items wait; queues are separate; duplicates are ignored")
    func order() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let q = temp.store
        try await q.enqueue([item("a"), item("b"), item("urgent", priority: 5), item("later", readyAt: t0.addingTimeInterval(60)),
                             item("other", queue: "emails")])
        try await q.enqueue([item("a")])
        let leased = try await q.lease(queue: "default", worker: "w1", now: t0, duration: 300, limit: 10)
        #expect(leased.map(\.item.taskKey) == ["urgent", "a", "b"])
        #expect(try await q.depth(queue: "default", now: t0) == (ready: 0, delayed: 1, leased: 3))
        #expect(try await q.lease(queue: "default", worker: "w1", now: t0, duration: 30, limit: 10).isEmpty)
        #expect(try await q.lease(queue: "default", worker: "w1", now: t0.addingTimeInterval(61), duration: 30, limit: 1)
            .map(\.item.taskKey) == ["later"])
        #expect(try await q.lease(queue: "emails", worker: "w1", now: t0, duration: 30, limit: 10).map(\.item.taskKey) == ["other"])
    }

    @Test("an expired lease is delivered again; the old holder can neither heartbeat nor complete")
    func expiry() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let q = temp.store
        try await q.enqueue([item("a")])
        let first = try #require(try await q.lease(queue: "default", worker: "w1", now: t0, duration: 10, limit: 1).first)
        let renewed = try await q.heartbeat(first, now: t0.addingTimeInterval(5), duration: 10)
        #expect(renewed.expiresAt == t0.addingTimeInterval(15))
        #expect(try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(12), duration: 10, limit: 1).isEmpty)
        let second = try #require(
            try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(16), duration: 10, limit: 1).first)
        #expect(second.deliveries == 2 && second.token != first.token)
        await #expect(throws: StoreError.self) { try await q.complete(first) }
        await #expect(throws: StoreError.self) { _ = try await q.heartbeat(first, now: t0.addingTimeInterval(17), duration: 10) }
        try await q.complete(second)
        await #expect(throws: StoreError.self) { try await q.complete(second) }
        #expect(try await q.depth(queue: "default", now: t0.addingTimeInterval(17)) == (ready: 0, delayed: 0, leased: 0))
    }

    @Test("concurrent workers never lease one item twice, and every item is completed once")
    func concurrency() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let q = temp.store
        try await q.enqueue((0..<200).map { item("t\($0)") })
        let keys = try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var done: [String] = []
                    while true {
                        let leases = try await q.lease(queue: "default", worker: "w\(worker)", now: t0, duration: 60, limit: 3)
                        if leases.isEmpty { return done }
                        for lease in leases {
                            try await q.complete(lease)
                            done.append(lease.item.taskKey)
                        }
                    }
                }
            }
            return try await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(keys.count == 200)
        #expect(Set(keys).count == 200)
    }
}
