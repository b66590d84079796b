import Foundation
import Testing
import WeftStore

extension StoreConformance {
    static let queue: [Case] = [
        Case(name: "fair leasing takes tenants in turn, each within its room, priority ordering only its own items") { store in
            let q = store.queue
            var items: [QueueItem] = []
            for n in 0..<5 {
                var flood = item("a\(n)", priority: 100, execution: "exe_a\(n)")
                flood.tenant = "org_a"
                items.append(flood)
            }
            for n in 0..<2 {
                var calm = item("b\(n)", execution: "exe_b\(n)")
                calm.tenant = "org_b"
                items.append(calm)
            }
            var other = item("c0", execution: "exe_c0")
            other.tenant = "org_c"
            items.append(other)
            try await q.enqueue(items)
            let first = try await q.leaseFairly(
                queue: "default", worker: "w", now: t0, duration: 60, limit: 4, after: nil, room: { _ in 10 })
            #expect(first.map(\.item.taskKey) == ["a0", "b0", "c0", "a1"])
            #expect(first.map(\.item.tenant) == ["org_a", "org_b", "org_c", "org_a"])
            // org_a at its room: only the others are served; the turn starts after the last served.
            let second = try await q.leaseFairly(
                queue: "default", worker: "w", now: t0, duration: 60, limit: 4, after: "org_a",
                room: { $0 == "org_a" ? 0 : 10 })
            #expect(second.map(\.item.taskKey) == ["b1"])
            let third = try await q.leaseFairly(
                queue: "default", worker: "w", now: t0, duration: 60, limit: 10, after: "org_b", room: { _ in 2 })
            #expect(third.map(\.item.taskKey) == ["a2", "a3"])
            #expect(try await q.depth(queue: "default", now: t0) == (ready: 1, delayed: 0, leased: 7))
        },
        Case(name: "leases go by priority, then the oldest execution, then FIFO; delayed items wait; queues are separate; duplicates are ignored") {
            store in
            let q = store.queue
            try await q.enqueue([
                item("a", execution: "exe_2"), item("b", execution: "exe_2"), item("old", execution: "exe_1"),
                item("urgent", priority: 5, execution: "exe_3"), item("later", readyAt: t0.addingTimeInterval(60)),
                item("other", queue: "emails"),
            ])
            try await q.enqueue([item("a", execution: "exe_2")])
            let leased = try await q.lease(queue: "default", worker: "w1", now: t0, duration: 300, limit: 10)
            #expect(leased.map(\.item.taskKey) == ["urgent", "old", "a", "b"])
            #expect(leased.allSatisfy { $0.deliveries == 1 && !$0.reclaimed && $0.expiresAt == t0.addingTimeInterval(300) })
            #expect(try await q.depth(queue: "default", now: t0) == (ready: 0, delayed: 1, leased: 4))
            #expect(try await q.lease(queue: "default", worker: "w1", now: t0, duration: 30, limit: 10).isEmpty)
            #expect(try await q.lease(queue: "default", worker: "w1", now: t0.addingTimeInterval(61), duration: 30, limit: 1)
                .map(\.item.taskKey) == ["later"])
            #expect(try await q.lease(queue: "emails", worker: "w1", now: t0, duration: 30, limit: 10)
                .map(\.item.taskKey) == ["other"])
            let depths = try await q.depths(now: t0.addingTimeInterval(61))
            #expect(Set(depths.map(\.queue)) == ["default", "emails"])
        },
        Case(name: "depths say when the longest-waiting ready item became due; leased and delayed ones do not count") {
            store in
            let q = store.queue
            try await q.enqueue([
                item("old", readyAt: t0), item("newer", readyAt: t0.addingTimeInterval(10)),
                item("later", readyAt: t0.addingTimeInterval(100)), item("mail", readyAt: t0.addingTimeInterval(5), queue: "emails"),
            ])
            func oldest(_ queue: String, at seconds: Double) async throws -> Date? {
                try await q.depths(now: t0.addingTimeInterval(seconds)).first { $0.queue == queue }?.oldestReady
            }
            #expect(try await oldest("default", at: 20) == t0)
            #expect(try await oldest("emails", at: 20) == t0.addingTimeInterval(5))
            #expect(try await oldest("emails", at: 1) == nil, "not due yet")
            let leased = try await q.lease(queue: "default", worker: "w", now: t0.addingTimeInterval(20), duration: 30, limit: 1)
            #expect(leased.map(\.item.taskKey) == ["old"])
            #expect(try await oldest("default", at: 20) == t0.addingTimeInterval(10))
            // Its lease expired: it is ready again, due since its ready time.
            #expect(try await oldest("default", at: 60) == t0)
        },
        Case(name: "the timers queue is taken by due time, whatever the priority") { store in
            let q = store.queue
            let timers = QueueItem.timersQueue
            try await q.enqueue([
                item("~late", priority: 9, readyAt: t0.addingTimeInterval(2), queue: timers, execution: "exe_1"),
                item("~early", readyAt: t0.addingTimeInterval(1), queue: timers, execution: "exe_2"),
            ])
            let leased = try await q.lease(queue: timers, worker: "w", now: t0.addingTimeInterval(5), duration: 10, limit: 5)
            #expect(leased.map(\.item.taskKey) == ["~early", "~late"])
        },
        Case(name: "an expired lease is delivered again; the old holder can neither heartbeat nor complete") { store in
            let q = store.queue
            try await q.enqueue([item("a")])
            let first = try #require(try await q.lease(queue: "default", worker: "w1", now: t0, duration: 10, limit: 1).first)
            let renewed = try await q.heartbeat(first, now: t0.addingTimeInterval(5), duration: 10)
            #expect(renewed.expiresAt == t0.addingTimeInterval(15))
            #expect(try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(12), duration: 10, limit: 1).isEmpty)
            // A heartbeat after the lease ran out does not revive it.
            await #expect(throws: StoreError.self) { _ = try await q.heartbeat(first, now: t0.addingTimeInterval(16), duration: 10) }
            let second = try #require(
                try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(16), duration: 10, limit: 1).first)
            #expect(second.deliveries == 2 && second.token != first.token && second.reclaimed)
            await #expect(throws: StoreError.self) { try await q.complete(first) }
            await #expect(throws: StoreError.self) { _ = try await q.heartbeat(first, now: t0.addingTimeInterval(17), duration: 10) }
            #expect(try await q.lease(id: first.id, token: first.token) == nil)
            #expect(try await q.lease(id: second.id, token: second.token)?.item.taskKey == "a")
            try await q.complete(second)
            await #expect(throws: StoreError.self) { try await q.complete(second) }
            #expect(try await q.lease(id: second.id, token: second.token) == nil)
            #expect(try await q.depth(queue: "default", now: t0.addingTimeInterval(17)) == (ready: 0, delayed: 0, leased: 0))
        },
        Case(name: "a slow holder's result is accepted once after its lease ran out, if nobody leased the item since") {
            store in
            let q = store.queue
            try await q.enqueue([item("a")])
            let lease = try #require(try await q.lease(queue: "default", worker: "w1", now: t0, duration: 10, limit: 1).first)
            // Past the expiry, but nobody took the item: completion still counts.
            try await store.executions.apply([.completeLease(id: lease.id, token: lease.token)])
            await #expect(throws: StoreError.self) {
                try await store.executions.apply([.completeLease(id: lease.id, token: lease.token)])
            }
            #expect(try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(60), duration: 10, limit: 1).isEmpty)
        },
        Case(name: "release gives an item back for later; releaseAll ends every lease of the named queues") { store in
            let q = store.queue
            try await q.enqueue([item("a"), item("b"), item("c", queue: "other")])
            let leases = try await q.lease(queue: "default", worker: "w1", now: t0, duration: 60, limit: 2)
            let other = try #require(try await q.lease(queue: "other", worker: "w1", now: t0, duration: 60, limit: 1).first)
            try await q.release(leases[0], readyAt: t0.addingTimeInterval(30))
            await #expect(throws: StoreError.self) { try await q.release(leases[0], readyAt: t0) }
            #expect(try await q.depth(queue: "default", now: t0) == (ready: 0, delayed: 1, leased: 1))
            #expect(try await q.releaseAll(queues: ["default"]) == 1)
            // The released lease's token is dead; the other queue's lease lives on.
            await #expect(throws: StoreError.self) { try await q.complete(leases[1]) }
            #expect(try await q.lease(id: other.id, token: other.token) != nil)
            let again = try await q.lease(queue: "default", worker: "w2", now: t0.addingTimeInterval(30), duration: 60, limit: 5)
            #expect(again.map(\.item.taskKey) == ["a", "b"])
        },
        Case(name: "an item leased in the write that queues it is new: a duplicate fails its unit") { store in
            let workflow = try await twoTaskWorkflow(store)
            let execution = try await store.executions.createExecution(Records.execution(of: workflow)).execution
            var direct = item("k0", queue: "builtin", execution: execution.executionId)
            direct.directLease = DirectLease(token: "lse_direct", worker: "direct", expiresAt: t0.addingTimeInterval(60))
            try await store.executions.apply([.enqueue(direct)])
            #expect(try await store.queue.depth(queue: "builtin", now: t0) == (ready: 0, delayed: 0, leased: 1))
            await #expect(throws: StoreError.self) {
                try await store.executions.apply([
                    .execution(id: execution.executionId, status: .running, at: t0), .enqueue(direct),
                ])
            }
            #expect(try await store.executions.execution(id: execution.executionId)?.status == .pending)
            // Its holder completes it by token.
            try await store.executions.apply([.completeLease(id: 0, token: "lse_direct")])
            #expect(try await store.queue.depth(queue: "builtin", now: t0) == (ready: 0, delayed: 0, leased: 0))
        },
        Case(name: "concurrent workers never lease one item twice, and every item is completed once") { store in
            let q = store.queue
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
        },
    ]
}
