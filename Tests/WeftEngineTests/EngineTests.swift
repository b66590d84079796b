import Foundation
import Synchronization
import Testing
import WeftEngine
import WeftStore
import WeftSQLite

/// The engine on real SQLite files: executions run through the durable queue
/// and built-in runners, and survive a restart (a new Engine on the same files).
@Suite("engine")
struct EngineTests {
    struct Env {
        let directory: URL
        let store: SQLiteStore
        let logs: SQLiteLogStore

        init() throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-engine-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            store = try SQLiteStore(.init(path: directory.appendingPathComponent("weft.sqlite").path, synchronous: .normal))
            logs = try SQLiteLogStore(path: directory.appendingPathComponent("logs.sqlite").path)
        }

        func engine(
            runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
            leaseDuration: TimeInterval = 60
        ) -> Engine {
            Engine(workflows: store, executions: store, queue: store, logs: logs, runners: runners, leaseDuration: leaseDuration)
        }

        func cleanup() { try? FileManager.default.removeItem(at: directory) }

        func workflow(_ tasks: [(String, String, [String], JSONValue)], retry: RetryPolicyRecord? = nil) async throws -> WorkflowRecord {
            let now = Date.nowMillis
            let user = UserRecord(id: IDGenerator.make(IDGenerator.user), email: "\(UUID().uuidString)@x.io", name: "u",
                                  passwordHash: "x", createdAt: now, updatedAt: now)
            try await store.createUser(user)
            let id = IDGenerator.make(IDGenerator.workflow)
            let records = tasks.map { key, action, deps, config in
                TaskRecord(id: IDGenerator.make(IDGenerator.task), workflowId: id, key: key, name: key, description: "",
                           action: TaskType(rawValue: action), config: config, dependsOn: deps, retry: retry, createdAt: now, updatedAt: now)
            }
            return try await store.createWorkflow(
                WorkflowRecord(id: id, ownerId: user.id, name: "w", description: "", version: 1, createdAt: now,
                               updatedAt: now, tasks: records), actor: user.id)
        }
    }

    /// Runs a worker pool (built-in tasks and timers) until the execution
    /// ends (bounded: 10 s).
    func drive(_ engine: Engine, _ store: SQLiteStore, _ executionId: String) async throws -> ExecutionRecord {
        let pool = WorkerPool(engine: engine, slots: 4, idlePoll: .milliseconds(20))
        let workers = Task { await pool.run() }
        defer { workers.cancel() }
        for _ in 0..<2000 {
            if let record = try await store.execution(id: executionId), record.isFinished {
                await engine.flushLogs()
                return record
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw CancellationError()
    }

    @Test("a branching workflow runs end to end: outputs, skips, logs, idempotency")
    func endToEnd() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([
            ("start", "log", [], .object(["message": .string("order {{ input.orderId }}")])),
            ("check", "condition", ["start"], .object([
                "expression": .string("input.total > 100"), "then": .array([.string("big")]), "else": .array([.string("small")]),
            ])),
            ("big", "transform", ["check"], .object(["output": .object(["tier": .string("gold"), "id": .string("{{ input.orderId }}")])])),
            ("small", "noop", ["check"], .emptyObject),
            ("join", "transform", ["big", "small"], .object(["output": .string("{{ tasks.big.output.tier }}")])),
        ])
        let engine = env.engine()
        let input = JSONValue.object(["orderId": .string("o-9"), "total": .number(250)])
        let started = try await engine.execute(workflow, input: input, idempotencyKey: "k1", trigger: .api, actor: nil)
        #expect(started.status == .running)
        let again = try await engine.execute(workflow, input: input, idempotencyKey: "k1", trigger: .api, actor: nil)
        #expect(again.executionId == started.executionId)
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .completed)
        let byKey = Dictionary(uniqueKeysWithValues: done.tasks.map { ($0.taskKey, $0) })
        #expect(byKey["big"]?.output == .object(["tier": .string("gold"), "id": .string("o-9")]))
        #expect(byKey["small"]?.status == .skipped)
        #expect(byKey["join"]?.output == .string("gold"))
        #expect(byKey["check"]?.output?["branch"] == .string("then"))
        let lines = try await env.logs.entries(LogQuery(executionId: started.executionId, limit: 100)).map(\.message)
        #expect(lines.first == "execution started (workflow version 1, trigger api)")
        #expect(lines.contains("order o-9"))
        #expect(lines.contains("task check completed (attempt 1)"))
        #expect(lines.contains("task small skipped (its branch was not taken)"))
        #expect(lines.last == "execution completed")
        #expect(try await env.store.depth(queue: Engine.builtinQueue, now: Date()) == (ready: 0, delayed: 0, leased: 0))
    }

    struct Flaky: TaskRunner {
        let action = TaskType.other("flaky")
        let failures: Int
        let calls = Calls()
        final class Calls: Sendable { let count = Mutex(0) }

        func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async -> TaskOutcome {
            let n = calls.count.withLock { count -> Int in
                count += 1
                return count
            }
            return n <= failures ? .failed(.init(kind: "http_5xx", message: "503 (call \(n))")) : .completed(.number(Double(n)))
        }
    }

    @Test("a failing task is retried through delayed queue items until it succeeds, or fails the execution")
    func retries() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let policy = RetryPolicyRecord(
            maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: [])
        let workflow = try await env.workflow([("call", "flaky", [], .emptyObject), ("after", "noop", ["call"], .emptyObject)], retry: policy)
        let succeeds = try await env.engine(runners: [Flaky(failures: 2), NoopRunner()])
            .execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let engine = env.engine(runners: [Flaky(failures: 2), NoopRunner()])
        _ = try await engine.recover()
        let done = try await drive(engine, env.store, succeeds.executionId)
        #expect(done.status == .completed)
        #expect(done.tasks.first { $0.taskKey == "call" }?.attempt == 3)

        let failing = env.engine(runners: [Flaky(failures: 5), NoopRunner()])
        let doomed = try await failing.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let failed = try await drive(failing, env.store, doomed.executionId)
        #expect(failed.status == .failed)
        #expect(failed.error?.contains("503 (call 3)") == true)
        #expect(failed.tasks.first { $0.taskKey == "after" }?.status == .cancelled)
    }

    @Test("a restart in the middle: a new engine on the same files finishes every execution once")
    func recovery() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([
            ("a", "noop", [], .object(["output": .string("A")])), ("b", "transform", ["a"], .object(["output": .string("{{ tasks.a.output }}!")])),
        ])
        let first = env.engine()
        var ids: [String] = []
        for _ in 0..<5 {
            ids.append(try await first.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil).executionId)
        }
        // Run a little, then "crash": drop the engine without finishing.
        _ = try await first.runReadyTasks(worker: "w1", limit: 3)
        let second = env.engine()
        #expect(try await second.recover() == 5)
        for id in ids {
            let done = try await drive(second, env.store, id)
            #expect(done.status == .completed)
            #expect(done.tasks.first { $0.taskKey == "b" }?.output == .string("A!"))
        }
    }

    /// Sleeps `delay` on its first `slowCalls` calls (noting if it was
    /// cancelled), then answers at once.
    struct Sleepy: TaskRunner {
        let action = TaskType.other("sleepy")
        let slowCalls: Int
        var sleep: Duration = .seconds(5)
        let state = State()
        final class State: Sendable {
            let calls = Mutex(0)
            let cancelled = Mutex(0)
        }

        func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async -> TaskOutcome {
            let n = state.calls.withLock { count -> Int in
                count += 1
                return count
            }
            if n <= slowCalls {
                do {
                    try await Task.sleep(for: sleep)
                } catch {
                    state.cancelled.withLock { $0 += 1 }
                    return .failed(.init(kind: "cancelled", message: "stopped"))
                }
            }
            return .completed(.number(Double(n)))
        }
    }

    @Test("an attempt that outlives its timeout is stopped and retried")
    func attemptTimeout() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let policy = RetryPolicyRecord(
            maxAttempts: 2, initialBackoffMs: 1, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: ["timeout"])
        let now = Date.nowMillis
        let workflowRecord = try await env.workflow([("slow", "sleepy", [], .emptyObject)], retry: policy)
        var workflow = workflowRecord
        workflow.tasks[0].timeoutMs = 100
        // The timeout lives in the definition the engine runs from: store it.
        workflow = try await env.store.replaceWorkflow(workflow, expectedVersion: nil, actor: workflow.ownerId)
        let sleepy = Sleepy(slowCalls: 1)
        let engine = env.engine(runners: [sleepy])
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .completed)
        #expect(done.tasks[0].attempt == 2)
        // Stopped while it ran, or (if the timeout fired while its start was
        // being committed) never started: either way not waited for.
        #expect(sleepy.state.cancelled.withLock { $0 } <= 1)
        #expect(Date().timeIntervalSince(now) < 4, "the first attempt must be stopped, not awaited")
    }

    @Test("cancel stops the running attempt and ends the execution as Cancelled")
    func cancel() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([("slow", "sleepy", [], .emptyObject), ("next", "noop", ["slow"], .emptyObject)])
        let sleepy = Sleepy(slowCalls: 10)
        let engine = env.engine(runners: [sleepy, NoopRunner()])
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let worker = Task { try await engine.runReadyTasks(worker: "w1") }
        while sleepy.state.calls.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try await engine.cancel(executionId: started.executionId, reason: "operator said so") == .cancelled)
        _ = try await worker.value
        let done = try #require(try await env.store.execution(id: started.executionId))
        #expect(done.status == .cancelled && done.error == "operator said so")
        #expect(done.tasks.map(\.status) == [.cancelled, .cancelled])
        #expect(sleepy.state.cancelled.withLock { $0 } == 1)
        #expect(try await engine.cancel(executionId: started.executionId, reason: "again") == .alreadyFinished(status: .cancelled))
        #expect(try await env.store.depth(queue: Engine.builtinQueue, now: Date()) == (ready: 0, delayed: 0, leased: 0))
    }

    @Test("the execution timeout ends a stuck execution as TimedOut")
    func executionTimeout() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([("slow", "sleepy", [], .emptyObject)])
        let sleepy = Sleepy(slowCalls: 10)
        let engine = env.engine(runners: [sleepy])
        let begin = Date()
        let started = try await engine.execute(
            workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil, timeoutMs: 100)
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .timedOut)
        #expect(sleepy.state.cancelled.withLock { $0 } <= 1)
        #expect(Date().timeIntervalSince(begin) < 4, "the running attempt must be stopped, not awaited")
    }

    @Test("a delay holds no worker while it waits, survives a restart, and completes after its due time")
    func delay() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let waiting = try await env.workflow([
            ("pause", "delay", [], .object(["duration": .string("1500ms")])), ("after", "noop", ["pause"], .emptyObject),
        ])
        let quick = try await env.workflow([("only", "noop", [], .emptyObject)])
        let first = env.engine()
        let begin = Date()
        let slow = try await first.execute(waiting, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        _ = try await first.runReadyTasks(worker: "w1")  // starts the delay and gives the item back
        #expect(try await env.store.execution(id: slow.executionId)?.tasks.first?.status == .running)
        #expect(try await env.store.depth(queue: Engine.builtinQueue, now: Date()) == (ready: 0, delayed: 1, leased: 0))
        // The worker is free: another execution runs to the end meanwhile
        // (well before the delay is due, even with the other tests running).
        let fast = try await first.execute(quick, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        #expect(try await drive(first, env.store, fast.executionId).status == .completed)
        #expect(try await env.store.execution(id: slow.executionId)?.isFinished == false)
        // Restart before it is due; the new engine finishes it on time.
        let second = env.engine()
        _ = try await second.recover()
        let done = try await drive(second, env.store, slow.executionId)
        #expect(done.status == .completed)
        #expect(Date().timeIntervalSince(begin) >= 1.5)
        let waited = done.tasks.first { $0.taskKey == "pause" }?.output?["waitedMs"]?.numberValue ?? 0
        #expect(waited >= 1500)
    }

    @Test("an execution created but never started (crash before its first commit) is started by recovery")
    func pendingRecovery() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([("a", "noop", [], .emptyObject), ("b", "noop", ["a"], .emptyObject)])
        let at = Date.nowMillis
        let record = ExecutionRecord(
            executionId: IDGenerator.make(IDGenerator.execution), workflowId: workflow.id, workflowVersion: 1,
            status: .pending, input: .emptyObject, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(taskExecutionId: IDGenerator.make(IDGenerator.taskExecution), taskId: $0.id,
                                    taskKey: $0.key, status: .pending)
            })
        _ = try await env.store.createExecution(record)
        let engine = env.engine()
        #expect(try await engine.recover() == 1)
        #expect(try await drive(engine, env.store, record.executionId).status == .completed)
    }

    @Test("renaming a task while an execution runs does not disturb it (states follow the pinned version)")
    func renameMidRun() async throws {
        let env = try Env()
        defer { env.cleanup() }
        var workflow = try await env.workflow([("a", "noop", [], .emptyObject), ("b", "noop", ["a"], .emptyObject)])
        let engine = env.engine()
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        workflow.tasks[0].key = "renamed"
        workflow.tasks[1].dependsOn = ["renamed"]
        _ = try await env.store.replaceWorkflow(workflow, expectedVersion: nil, actor: workflow.ownerId)
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .completed)
        #expect(Set(done.tasks.map(\.taskKey)) == ["a", "b"])
    }

    @Test("two workers on one engine: a retried task and a parallel branch both land; the join runs")
    func concurrentWorkers() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let policy = RetryPolicyRecord(
            maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: [])
        let workflow = try await env.workflow([
            ("a", "noop", [], .emptyObject), ("b", "flaky", ["a"], .emptyObject), ("c", "sleepy", ["a"], .emptyObject),
            ("d", "noop", ["b", "c"], .emptyObject),
        ], retry: policy)
        let engine = env.engine(runners: [NoopRunner(), Flaky(failures: 1), Sleepy(slowCalls: 0)])
        var ids: [String] = []
        for _ in 0..<10 {
            ids.append(try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil).executionId)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<2 {
                group.addTask {
                    for _ in 0..<400 {
                        if try await engine.runReadyTasks(worker: "w\(worker)", limit: 2) == 0 {
                            try await Task.sleep(for: .milliseconds(2))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        for id in ids {
            let done = try #require(try await env.store.execution(id: id))
            #expect(done.status == .completed, "\(id): \(done.tasks.map { "\($0.taskKey)=\($0.status)" })")
        }
    }

    @Test("a task that outlives its lease keeps it by heartbeat and runs once, even with a second worker polling")
    func heartbeats() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([("long", "sleepy", [], .emptyObject)])
        var sleepy = Sleepy(slowCalls: 1)
        sleepy.sleep = .milliseconds(900)
        let engine = env.engine(runners: [sleepy], leaseDuration: 0.3)
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<2 {
                group.addTask {
                    for _ in 0..<150 {
                        if try await env.store.execution(id: started.executionId)?.isFinished == true { return }
                        if try await engine.runReadyTasks(worker: "w\(worker)") == 0 { try await Task.sleep(for: .milliseconds(10)) }
                    }
                }
            }
            try await group.waitForAll()
        }
        let done = try #require(try await env.store.execution(id: started.executionId))
        #expect(done.status == .completed)
        #expect(sleepy.state.calls.withLock { $0 } == 1)
        #expect(try await env.store.depth(queue: Engine.builtinQueue, now: Date()) == (ready: 0, delayed: 0, leased: 0))
    }

    @Test("external tasks: per-owner queues, resolved input, heartbeat, complete once, stale and foreign tokens refused")
    func externalWorkers() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([
            ("ext", "external", [], .object(["queue": .string("q"), "input": .object(["id": .string("{{ input.id }}")])])),
            ("after", "transform", ["ext"], .object(["output": .string("{{ tasks.ext.output.done }}")])),
        ])
        let engine = env.engine()
        let queue = Engine.externalQueue(owner: workflow.ownerId, name: "q")
        let started = try await engine.execute(
            workflow, input: .object(["id": .number(7)]), idempotencyKey: nil, trigger: .api, actor: nil)
        // Another account's queue of the same name sees nothing.
        #expect(try await engine.pollExternal(
            queue: Engine.externalQueue(owner: "usr_other", name: "q"), worker: "w", leaseDuration: 60) == nil)
        let task = try #require(try await engine.pollExternal(queue: queue, worker: "w", leaseDuration: 60))
        #expect(task.input == .object(["id": .number(7)]))
        #expect(task.attempt == 1 && task.taskKey == "ext" && task.executionId == started.executionId)
        let running = try #require(try await env.store.execution(id: started.executionId))
        #expect(running.tasks[0].status == .running, "the start is committed before the worker hears of it")
        _ = try await engine.heartbeatExternal(task.lease.handle, owner: workflow.ownerId, duration: 30)
        await #expect(throws: Engine.ExternalError.malformedToken) {
            try await engine.completeExternal("garbage", owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
        }
        await #expect(throws: Engine.ExternalError.self) {
            try await engine.completeExternal(
                task.lease.handle, owner: "usr_other", outcome: .completed(.emptyObject), logLines: [])
        }
        try await engine.completeExternal(
            task.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["done": .bool(true)])),
            logLines: ["worker says hi"])
        await #expect(throws: Engine.ExternalError.self) {
            try await engine.completeExternal(
                task.lease.handle, owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
        }
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .completed)
        #expect(done.tasks.map(\.output) == [.object(["done": .bool(true)]), .bool(true)])
        let lines = try await env.logs.entries(LogQuery(executionId: started.executionId, limit: 100)).map(\.message)
        #expect(lines.filter { $0 == "worker says hi" }.count == 1)
    }

    @Test("external tasks: an expired lease goes to the next poller; the first worker's result is refused")
    func externalLeaseExpiry() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([("ext", "external", [], .object(["queue": .string("q")]))])
        let engine = env.engine()
        let queue = Engine.externalQueue(owner: workflow.ownerId, name: "q")
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let first = try #require(try await engine.pollExternal(queue: queue, worker: "w1", leaseDuration: 0.05))
        try await Task.sleep(for: .milliseconds(120))
        let second = try #require(try await engine.pollExternal(queue: queue, worker: "w2", leaseDuration: 60))
        #expect(second.attempt == first.attempt && second.lease.handle != first.lease.handle)
        await #expect(throws: Engine.ExternalError.self) {
            try await engine.completeExternal(
                first.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["by": .string("w1")])), logLines: [])
        }
        try await engine.completeExternal(
            second.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["by": .string("w2")])), logLines: [])
        let done = try #require(try await env.store.execution(id: started.executionId))
        #expect(done.status == .completed && done.tasks[0].output == .object(["by": .string("w2")]))
    }

    @Test("external tasks: after an attempt timeout the worker's heartbeat and result are refused as over")
    func externalAttemptTimeout() async throws {
        let env = try Env()
        defer { env.cleanup() }
        var workflow = try await env.workflow([("ext", "external", [], .object(["queue": .string("q")]))])
        workflow.tasks[0].timeoutMs = 100
        workflow = try await env.store.replaceWorkflow(workflow, expectedVersion: nil, actor: workflow.ownerId)
        let engine = env.engine()
        let queue = Engine.externalQueue(owner: workflow.ownerId, name: "q")
        let started = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        let task = try #require(try await engine.pollExternal(queue: queue, worker: "w1", leaseDuration: 60))
        let done = try await drive(engine, env.store, started.executionId)
        #expect(done.status == .failed && done.tasks[0].status == .failed)
        #expect(done.error?.contains("timed out") == true)
        await #expect(throws: Engine.ExternalError.self) {
            try await engine.completeExternal(task.lease.handle, owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
        }
        let after = try #require(try await env.store.execution(id: started.executionId))
        #expect(after.tasks[0].status == .failed && after.tasks[0].output == nil)
    }

    @Test("with more executions than fit in memory, evicted ones reload from the store and finish")
    func eviction() async throws {
        let env = try Env()
        defer { env.cleanup() }
        let workflow = try await env.workflow([
            ("a", "noop", [], .object(["output": .string("A")])),
            ("b", "transform", ["a"], .object(["output": .string("{{ tasks.a.output }}+{{ input.n }}")])),
        ])
        let engine = Engine(workflows: env.store, executions: env.store, queue: env.store, logs: env.logs, maxLive: 100)
        var ids: [String] = []
        for n in 0..<250 {
            let started = try await engine.execute(
                workflow, input: .object(["n": .number(Double(n))]), idempotencyKey: nil, trigger: .api, actor: nil)
            ids.append(started.executionId)
        }
        // Nothing ran yet: 250 executions went through a memory of 100.
        for (n, id) in ids.enumerated() {
            let done = try await drive(engine, env.store, id)
            #expect(done.status == .completed)
            #expect(done.tasks.last?.output == .string("A+\(n)"))
        }
    }
}
