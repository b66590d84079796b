import Foundation
import Logging
import ServiceLifecycle
import Testing
import WeftEngine
import WeftStore
import WeftTestSupport

/// The worker pool and the engine as services in one group, shut down the
/// way SIGTERM does it.
@Suite("worker pool")
struct WorkerPoolTests {
    let logger = Logger(label: "test")

    func setUp(_ store: MemoryStore, runner: GatedRunner) async throws -> WorkflowRecord {
        let user = Records.user()
        try await store.createUser(user)
        return try await store.createWorkflow(
            Records.workflow(owner: user.id, tasks: [
                Records.task("slow", runner.action), Records.task("next", dependsOn: ["slow"]),
            ]),
            actor: user.id)
    }

    @Test("graceful shutdown: the pool stops leasing, lets the running attempt finish, and its outcome is committed")
    func drain() async throws {
        let store = MemoryStore()
        let gated = GatedRunner(gatedCalls: 1)
        let workflow = try await setUp(store, runner: gated)
        // The noop after the gated task must wait in the queue (not run inline).
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: store, runners: [gated, NoopRunner()],
            inlineInstantTasks: false)
        let pool = WorkerPool(engine: engine, slots: 4, drainTimeout: .seconds(3600))
        let group = ServiceGroup(services: [engine, pool], gracefulShutdownSignals: [], logger: logger)
        let started = try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await engine.waitUntilReady()
            let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
            await gated.waitForCall(1)
            await group.triggerGracefulShutdown()
            await pool.waitUntilStopping()
            // Draining: the attempt still holds its slot until it ends.
            #expect(pool.busySlots == 1)
            gated.open()
            try await tasks.waitForAll()
            return started
        }
        let stored = try #require(try await store.execution(id: started.executionId))
        #expect(stored.tasks.map(\.status) == [.completed, .queued], "the outcome is in; the next task waits for the next start")
        #expect(try await store.depth(queue: EngineQueues.builtin, now: .distantFuture) == (ready: 1, delayed: 0, leased: 0))
    }

    @Test("past the drain deadline a running attempt is left to the next start, which runs it again")
    func drainDeadline() async throws {
        let store = MemoryStore()
        let gated = GatedRunner(gatedCalls: 1)
        let workflow = try await setUp(store, runner: gated)
        // The noop after the gated task must wait in the queue (not run inline).
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: store, runners: [gated, NoopRunner()],
            inlineInstantTasks: false)
        let pool = WorkerPool(engine: engine, slots: 4, drainTimeout: .milliseconds(20))
        let group = ServiceGroup(services: [engine, pool], gracefulShutdownSignals: [], logger: logger)
        let started = try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await engine.waitUntilReady()
            let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
            await gated.waitForCall(1)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return started
        }
        // Stopped (cancelled) at the deadline, and nothing of it recorded.
        #expect(gated.cancelled == 1)
        let stopped = try #require(try await store.execution(id: started.executionId))
        #expect(stopped.tasks.map(\.status) == [.running, .pending])
        #expect(try await store.depth(queue: EngineQueues.builtin, now: Date()) == (ready: 0, delayed: 0, leased: 1))
        // The next start releases the lease at once and runs the attempt again.
        // On the real clock of the first run: its durable timers (the
        // server's maximum attempt timeout, an hour away) are not due.
        try await EngineHarness.with(store: store, clock: ManualClock(Date()), runners: [gated, NoopRunner()]) { h in
            let done = try await h.drive(started.executionId)
            #expect(done.status == .completed && done.tasks[0].attempt == 1)
        }
        #expect(gated.calls == 2)
    }

    @Test("one organization's hanging tasks hold at most its share of the slots; another's execution runs at once")
    func fairShare() async throws {
        let store = MemoryStore()
        let gated = GatedRunner(gatedCalls: 1000)
        let user = Records.user()
        try await store.createUser(user)
        var hanging = Records.workflow(owner: user.id, name: "hang", tasks: [Records.task("slow", gated.action)])
        hanging.orgId = "org_flood"
        hanging = try await store.createWorkflow(hanging, actor: user.id)
        var quick = Records.workflow(owner: user.id, name: "quick", tasks: [Records.task("one")])
        quick.orgId = "org_calm"
        quick = try await store.createWorkflow(quick, actor: user.id)
        // The noop after the gated task must wait in the queue (not run inline).
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: store, runners: [gated, NoopRunner()],
            inlineInstantTasks: false)
        let pool = WorkerPool(engine: engine, slots: 4, tenantCap: 2, drainTimeout: .milliseconds(10))
        let group = ServiceGroup(services: [engine, pool], gracefulShutdownSignals: [], logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await engine.waitUntilReady()
            // Priority 100 orders only the flooding organization's own work.
            for _ in 0..<6 {
                _ = try await engine.execute(hanging, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil, priority: 100)
            }
            await gated.waitForCall(2)
            let started = try await engine.execute(quick, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
            var done = try await store.execution(id: started.executionId)
            for _ in 0..<2000 where done?.status != .completed {
                try await Task.sleep(for: .milliseconds(5))
                done = try await store.execution(id: started.executionId)
            }
            #expect(done?.status == .completed, "the calm organization's execution ran while the other's hang")
            #expect(pool.busySlots(tenant: "org_flood") == 2)
            #expect(gated.calls == 2, "the flood never got more than its share")
            #expect(await engine.runningExecutions(orgId: "org_flood") == 6)
            await group.triggerGracefulShutdown()
            gated.open()
            try await tasks.waitForAll()
        }
    }
}
