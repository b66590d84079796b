import Foundation
import Synchronization
import Testing
import WeftEngine
import WeftStore
import WeftTestSupport

/// The engine on the in-memory store with a manual clock: executions run
/// through the durable queue and built-in runners, step by step
/// (`EngineHarness`), and survive a restart (a new engine on the same store).
/// Time passes only when a test moves the clock; nothing sleeps or polls.
@Suite("engine")
struct EngineTests {
    @Test("a branching workflow runs end to end: outputs, skips, logs, idempotency")
    func endToEnd() async throws {
        try await EngineHarness.with { h in
            let workflow = try await h.workflow([
                ("start", .log, [], .object(["message": .string("order {{ input.orderId }}")])),
                ("check", .condition, ["start"], .object([
                    "expression": .string("input.total > 100"), "then": .array([.string("big")]),
                    "else": .array([.string("small")]),
                ])),
                ("big", .transform, ["check"], .object(["output": .object(["tier": .string("gold"), "id": .string("{{ input.orderId }}")])])),
                ("small", .noop, ["check"], .emptyObject),
                ("join", .transform, ["big", "small"], .object(["output": .string("{{ tasks.big.output.tier }}")])),
            ])
            let input = JSONValue.object(["orderId": .string("o-9"), "total": .number(250)])
            let started = try await h.execute(workflow, input: input, key: "k1")
            // Every task is instant: they all ran in the unit that started it.
            #expect(started.status == .completed)
            let again = try await h.execute(workflow, input: input, key: "k1")
            #expect(again.executionId == started.executionId)
            let done = try await h.drive(started.executionId)
            #expect(done.status == .completed)
            let byKey = Dictionary(uniqueKeysWithValues: done.tasks.map { ($0.taskKey, $0) })
            #expect(byKey["big"]?.output == .object(["tier": .string("gold"), "id": .string("o-9")]))
            #expect(byKey["small"]?.status == .skipped)
            #expect(byKey["join"]?.output == .string("gold"))
            #expect(byKey["check"]?.output?["branch"] == .string("then"))
            let lines = try await h.logLines(started.executionId)
            #expect(lines.first == "execution started (workflow version 1, trigger api)")
            #expect(lines.contains("order o-9"))
            #expect(lines.contains("task check completed (attempt 1)"))
            #expect(lines.contains("task small skipped (its branch was not taken)"))
            #expect(lines.last == "execution completed")
            #expect(try await h.depth() == (ready: 0, delayed: 0, leased: 0))
        }
    }

    /// Fails its first `failures` calls with a retryable error.
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
        let store = MemoryStore()
        let clock = ManualClock()
        let policy = Records.retry(maxAttempts: 3, backoffMs: 1)
        // Started by one engine, finished by the next (retries are durable).
        let (workflow, succeeds) = try await EngineHarness.with(store: store, clock: clock, runners: [Flaky(failures: 2), NoopRunner()]) { h in
            let workflow = try await h.workflow([("call", .other("flaky"), [], .emptyObject), ("after", .noop, ["call"], .emptyObject)], retry: policy)
            return (workflow, try await h.execute(workflow))
        }
        try await EngineHarness.with(store: store, clock: clock, runners: [Flaky(failures: 2), NoopRunner()]) { h in
            #expect(await h.engine.recovered == 1)
            let done = try await h.drive(succeeds.executionId)
            #expect(done.status == .completed)
            #expect(done.tasks.first { $0.taskKey == "call" }?.attempt == 3)
        }
        try await EngineHarness.with(store: store, clock: clock, runners: [Flaky(failures: 5), NoopRunner()]) { h in
            let doomed = try await h.execute(workflow)
            // The backoff is 1 ms: nothing retries until the clock moves.
            try await h.runUntilIdle()
            #expect(try await store.execution(id: doomed.executionId)?.tasks[0].status == .retrying)
            #expect(try await h.depth() == (ready: 0, delayed: 1, leased: 0))
            let failed = try await h.drive(doomed.executionId)
            #expect(failed.status == .failed)
            #expect(failed.error?.contains("503 (call 3)") == true)
            #expect(failed.tasks.first { $0.taskKey == "after" }?.status == .cancelled)
        }
    }

    @Test("a restart in the middle: a new engine on the same store finishes every execution once")
    func recovery() async throws {
        let store = MemoryStore()
        let clock = ManualClock()
        // Instant tasks go through the queue here, so the run can stop between them.
        let (_, ids) = try await EngineHarness.with(store: store, clock: clock, inlineInstantTasks: false) { h in
            let workflow = try await h.workflow([
                ("a", .noop, [], .object(["output": .string("A")])),
                ("b", .transform, ["a"], .object(["output": .string("{{ tasks.a.output }}!")])),
            ])
            var ids: [String] = []
            for _ in 0..<5 { ids.append(try await h.execute(workflow).executionId) }
            // Run a little, then stop without finishing.
            #expect(try await h.engine.runReadyTasks(worker: "w1", limit: 3) == 3)
            return (workflow, ids)
        }
        try await EngineHarness.with(store: store, clock: clock) { h in
            #expect(await h.engine.recovered == 5)
            for id in ids {
                let done = try await h.drive(id)
                #expect(done.status == .completed)
                #expect(done.tasks.first { $0.taskKey == "b" }?.output == .string("A!"))
                let lines = try await h.logLines(id)
                #expect(lines.filter { $0 == "execution completed" }.count == 1)
            }
        }
    }

    @Test("an attempt that outlives its timeout is stopped and retried")
    func attemptTimeout() async throws {
        let gated = GatedRunner(gatedCalls: 1)
        try await EngineHarness.with(runners: [gated]) { h in
            let policy = Records.retry(maxAttempts: 2, backoffMs: 1, retryable: ["timeout"])
            let workflow = try await h.workflow([("slow", gated.action, [], .emptyObject)], retry: policy, timeoutMs: 100)
            let started = try await h.execute(workflow)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                // The attempt runs; its timeout is due at +100 ms.
                try await h.advance(by: 0.099)
                #expect(gated.cancelled == 0)
                try await h.advance(by: 0.001)
                try await group.waitForAll()
            }
            #expect(gated.cancelled == 1, "the running attempt was stopped, not awaited")
            let done = try await h.drive(started.executionId)
            #expect(done.status == .completed)
            #expect(done.tasks[0].attempt == 2)
            #expect(gated.calls == 2)
        }
    }

    @Test("cancel stops the running attempt and ends the execution as Cancelled")
    func cancel() async throws {
        let gated = GatedRunner(gatedCalls: 10)
        try await EngineHarness.with(runners: [gated, NoopRunner()]) { h in
            let workflow = try await h.workflow([("slow", gated.action, [], .emptyObject), ("next", .noop, ["slow"], .emptyObject)])
            let started = try await h.execute(workflow)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                #expect(try await h.engine.cancel(executionId: started.executionId, reason: "operator said so") == .cancelled)
                try await group.waitForAll()
            }
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .cancelled && done.error == "operator said so")
            #expect(done.tasks.map(\.status) == [.cancelled, .cancelled])
            #expect(gated.cancelled == 1)
            #expect(try await h.engine.cancel(executionId: started.executionId, reason: "again") == .alreadyFinished(status: .cancelled))
            #expect(try await h.depth() == (ready: 0, delayed: 0, leased: 0))
        }
    }

    @Test("the execution timeout ends a stuck execution as TimedOut")
    func executionTimeout() async throws {
        let gated = GatedRunner(gatedCalls: 10)
        try await EngineHarness.with(runners: [gated]) { h in
            let workflow = try await h.workflow([("slow", gated.action, [], .emptyObject)])
            let started = try await h.execute(workflow, timeoutMs: 100)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                try await h.advance(by: 0.1)
                try await group.waitForAll()
            }
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .timedOut)
            #expect(done.error == "the execution timed out after 100 ms")
            #expect(gated.cancelled == 1, "the running attempt was stopped, not awaited")
        }
    }

    @Test("a delay holds no worker while it waits, survives a restart, and completes at its due time")
    func delay() async throws {
        let store = MemoryStore()
        let clock = ManualClock()
        let slow = try await EngineHarness.with(store: store, clock: clock) { h in
            let waiting = try await h.workflow([
                ("pause", .delay, [], .object(["duration": .string("1500ms")])), ("after", .noop, ["pause"], .emptyObject),
            ])
            let quick = try await h.workflow([("only", .noop, [], .emptyObject)])
            let slow = try await h.execute(waiting)
            try await h.runUntilIdle()  // starts the delay and gives the item back
            #expect(try await store.execution(id: slow.executionId)?.tasks.first?.status == .running)
            #expect(try await h.depth() == (ready: 0, delayed: 1, leased: 0))
            // The worker is free: another execution runs to the end meanwhile.
            let fast = try await h.execute(quick)
            try await h.runUntilIdle()
            #expect(try await store.execution(id: fast.executionId)?.status == .completed)
            #expect(try await store.execution(id: slow.executionId)?.isFinished == false)
            return slow
        }
        // Restart before it is due; the new engine finishes it on time.
        try await EngineHarness.with(store: store, clock: clock) { h in
            try await h.advance(by: 1.499)
            #expect(try await store.execution(id: slow.executionId)?.isFinished == false)
            try await h.advance(by: 0.001)
            let done = try #require(try await store.execution(id: slow.executionId))
            #expect(done.status == .completed)
            #expect(done.tasks.first { $0.taskKey == "pause" }?.output?["waitedMs"]?.numberValue == 1500)
        }
    }

    @Test("an execution created but never started (crash before its first commit) is started by recovery")
    func pendingRecovery() async throws {
        let store = MemoryStore()
        let user = Records.user()
        try await store.createUser(user)
        let workflow = try await store.createWorkflow(
            Records.workflow(owner: user.id, tasks: [Records.task("a"), Records.task("b", dependsOn: ["a"])]), actor: user.id)
        let record = Records.execution(of: workflow)
        _ = try await store.createExecution(record)
        try await EngineHarness.with(store: store) { h in
            #expect(await h.engine.recovered == 1)
            let done = try await h.drive(record.executionId)
            #expect(done.status == .completed)
        }
    }

    @Test("renaming a task while an execution runs does not disturb it (states follow the pinned version)")
    func renameMidRun() async throws {
        try await EngineHarness.with { h in
            var workflow = try await h.workflow([("a", .noop, [], .emptyObject), ("b", .noop, ["a"], .emptyObject)])
            let started = try await h.execute(workflow)
            workflow.tasks[0].key = "renamed"
            workflow.tasks[1].dependsOn = ["renamed"]
            _ = try await h.store.replaceWorkflow(workflow, expectedVersion: nil, actor: workflow.ownerId)
            let done = try await h.drive(started.executionId)
            #expect(done.status == .completed)
            #expect(Set(done.tasks.map(\.taskKey)) == ["a", "b"])
        }
    }

    @Test("two workers on one engine: a retried task and a parallel branch both land; the join runs")
    func concurrentWorkers() async throws {
        let gated = GatedRunner(gatedCalls: 0)
        try await EngineHarness.with(runners: [NoopRunner(), Flaky(failures: 1), gated]) { h in
            let workflow = try await h.workflow([
                ("a", .noop, [], .emptyObject), ("b", .other("flaky"), ["a"], .emptyObject), ("c", gated.action, ["a"], .emptyObject),
                ("d", .noop, ["b", "c"], .emptyObject),
            ], retry: Records.retry(maxAttempts: 3, backoffMs: 0))
            var ids: [String] = []
            for _ in 0..<10 { ids.append(try await h.execute(workflow).executionId) }
            // Each worker stops when it finds nothing ready; every item the
            // other one still produces is then found by that other one.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<2 { group.addTask { try await h.runUntilIdle(worker: "w\(worker)") } }
                try await group.waitForAll()
            }
            for id in ids {
                let done = try #require(try await h.store.execution(id: id))
                #expect(done.status == .completed, "\(id): \(done.tasks.map { "\($0.taskKey)=\($0.status)" })")
            }
        }
    }

    @Test("a task that outlives its lease keeps it by heartbeat and runs once, even with a second worker polling")
    func heartbeats() async throws {
        let gated = GatedRunner(gatedCalls: 1)
        try await EngineHarness.with(runners: [gated], leaseDuration: 0.3) { h in
            let workflow = try await h.workflow([("long", gated.action, [], .emptyObject)])
            let started = try await h.execute(workflow)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                h.clock.advance(by: 0.2)
                await h.engine.renewHeldLeases()  // what the worker pool does every lease/3
                h.clock.advance(by: 0.2)  // past the first lease's end, within the renewed one
                #expect(try await h.engine.runReadyTasks(worker: "w2") == 0)
                #expect(try await h.depth() == (ready: 0, delayed: 0, leased: 1))
                gated.open()
                try await group.waitForAll()
            }
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .completed)
            #expect(gated.calls == 1)
            #expect(try await h.depth() == (ready: 0, delayed: 0, leased: 0))
        }
    }

    @Test("without heartbeats an expired lease is delivered again; the running attempt takes it over instead of a second run")
    func leaseTakeOver() async throws {
        let gated = GatedRunner(gatedCalls: 1)
        try await EngineHarness.with(runners: [gated], leaseDuration: 0.3) { h in
            let workflow = try await h.workflow([("long", gated.action, [], .emptyObject)])
            let started = try await h.execute(workflow)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                h.clock.advance(by: 0.4)
                // Re-delivered to this process, which is still running it.
                #expect(try await h.engine.runReadyTasks(worker: "w2") == 1)
                gated.open()
                try await group.waitForAll()
            }
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .completed && gated.calls == 1)
            #expect(try await h.depth() == (ready: 0, delayed: 0, leased: 0))
        }
    }

    @Test("with more executions than fit in memory, evicted ones reload from the store and finish")
    func eviction() async throws {
        try await EngineHarness.with(maxLive: 100) { h in
            let workflow = try await h.workflow([
                ("a", .noop, [], .object(["output": .string("A")])),
                ("b", .transform, ["a"], .object(["output": .string("{{ tasks.a.output }}+{{ input.n }}")])),
            ])
            var ids: [String] = []
            for n in 0..<250 {
                ids.append(try await h.execute(workflow, input: .object(["n": .number(Double(n))])).executionId)
            }
            // Nothing ran yet: 250 executions went through a memory of 100.
            for (n, id) in ids.enumerated() {
                let done = try await h.drive(id)
                #expect(done.status == .completed)
                #expect(done.tasks.last?.output == .string("A+\(n)"))
            }
        }
    }

    @Test("an engine that is not running refuses work instead of waiting forever")
    func notRunning() async throws {
        let store = MemoryStore()
        let engine = Engine(workflows: store, executions: store, queue: store, logs: store)
        let workflow = Records.workflow(owner: "usr_x", tasks: [Records.task("a")])
        await #expect(throws: EngineError.notRunning) {
            _ = try await engine.execute(workflow, input: .emptyObject, idempotencyKey: nil, trigger: .api, actor: nil)
        }
    }

    @Test("instant tasks run in the unit that queues them, with the same rows, logs and cost as through the queue")
    func inlineMatchesQueued() async throws {
        let tasks: [(String, TaskType, [String], JSONValue)] = [
            ("start", .log, [], .object(["message": .string("order {{ input.orderId }}")])),
            ("check", .condition, ["start"], .object([
                "expression": .string("input.total > 100"), "then": .array([.string("big")]),
                "else": .array([.string("small")]),
            ])),
            ("big", .transform, ["check"], .object(["output": .object(["tier": .string("gold")])])),
            ("small", .noop, ["check"], .emptyObject),
            ("pause", .delay, ["big", "small"], .object(["duration": .string("1s")])),
            ("end", .transform, ["pause"], .object(["output": .string("{{ tasks.big.output.tier }}")])),
        ]
        let input = JSONValue.object(["orderId": .string("o-1"), "total": .number(250)])
        func run(inline: Bool) async throws -> (ExecutionRecord, [String], handledFirst: Int) {
            try await EngineHarness.with(clock: ManualClock(), inlineInstantTasks: inline) { h in
                let workflow = try await h.workflow(tasks)
                let started = try await h.execute(workflow, input: input)
                #expect(started.status == .running)
                // Inline: only the delay's item is left to a worker now.
                let handledFirst = try await h.runUntilIdle()
                let done = try await h.drive(started.executionId)
                return (done, try await h.logLines(started.executionId), handledFirst)
            }
        }
        let (inline, inlineLines, inlineHandled) = try await run(inline: true)
        let (queued, queuedLines, queuedHandled) = try await run(inline: false)
        #expect(inlineHandled == 1 && queuedHandled == 4)
        #expect(inline.status == .completed && queued.status == .completed)
        func summary(_ record: ExecutionRecord) -> [String] {
            record.tasks.map { "\($0.taskKey) \($0.status) \($0.attempt) \($0.cost)" }
        }
        #expect(summary(inline) == summary(queued))
        #expect(inline.tasks.map(\.output) == queued.tasks.map(\.output))
        #expect(inline.costBreakdown == queued.costBreakdown && inline.costBreakdown.taskAttempts == 5)
        #expect(inlineLines == queuedLines)
        #expect(inlineLines.contains("order o-1") && inlineLines.last?.hasPrefix("execution completed") == true)
    }
}
