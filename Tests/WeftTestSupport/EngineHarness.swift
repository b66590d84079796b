public import Foundation
public import WeftEngine
public import WeftStore

/// An engine on the in-memory store (or any store) with a manual clock,
/// driven step by step: `runUntilIdle` runs every ready task and due timer
/// until nothing is ready at the current time, and `advance` moves the
/// clock. Nothing sleeps and nothing polls: a test states exactly when time
/// passes. The engine's own loops (group commit, log writer) run for the
/// harness's lifetime: use `EngineHarness.with`, which stops them.
public struct EngineHarness: Sendable {
    public let store: MemoryStore
    public let clock: ManualClock
    public let engine: Engine

    /// Runs `body` with a running engine on `store`, then stops the engine
    /// (writing what is pending), also when `body` throws.
    public static func with<T: Sendable>(
        store: MemoryStore = MemoryStore(), clock: ManualClock = ManualClock(),
        runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
        leaseDuration: TimeInterval = 60, maxLive: Int = 20_000, limits: EngineLimits = EngineLimits(),
        secrets: (any SecretSource)? = nil, notifier: (any EventNotifier)? = nil, inlineInstantTasks: Bool = true,
        _ body: (EngineHarness) async throws -> T
    ) async throws -> T {
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: store, runners: runners,
            leaseDuration: leaseDuration, maxLive: maxLive, limits: limits, secrets: secrets,
            // Admission control watches wall-clock waits: on a machine busy
            // with parallel tests it would refuse calls these tests do not
            // expect (its own tests drive OverloadGuard directly).
            admission: .off, inlineInstantTasks: inlineInstantTasks, notifier: notifier,
            now: clock.reader)
        let harness = EngineHarness(store: store, clock: clock, engine: engine)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await engine.run() }
            do {
                try await engine.waitUntilReady()
                let result = try await body(harness)
                engine.stop()
                try await group.waitForAll()
                return result
            } catch {
                engine.stop()
                try? await group.waitForAll()
                throw error
            }
        }
    }

    /// Runs ready built-in tasks and due timers until none is ready now;
    /// returns how many items it handled.
    @discardableResult
    public func runUntilIdle(worker: String = "test") async throws -> Int {
        var handled = 0
        while true {
            let count = try await engine.runReadyTasks(worker: worker)
            if count == 0 { return handled }
            handled += count
        }
    }

    /// Moves the clock, then runs what became ready.
    public func advance(by seconds: TimeInterval) async throws {
        clock.advance(by: seconds)
        try await runUntilIdle()
    }

    /// Runs until the execution has ended, moving the clock by `step`
    /// whenever nothing is ready (backoffs, delays, timeouts); at most
    /// `maxSteps` moves. Returns the stored execution.
    public func drive(_ executionId: String, step: TimeInterval = 0.001, maxSteps: Int = 100_000) async throws
        -> ExecutionRecord
    {
        for _ in 0..<maxSteps {
            try await runUntilIdle()
            if let record = try await store.execution(id: executionId), record.isFinished {
                await engine.flushLogs()
                return record
            }
            clock.advance(by: step)
        }
        throw HarnessError.notFinished(executionId)
    }

    public enum HarnessError: Error { case notFinished(String) }

    /// Stores a user and a workflow of these tasks (key, type, dependsOn, config).
    public func workflow(
        _ tasks: [(String, TaskType, [String], JSONValue)], retry: RetryPolicyRecord? = nil, timeoutMs: Int64? = nil
    ) async throws -> WorkflowRecord {
        let user = Records.user()
        try await store.createUser(user)
        let records = tasks.map { key, type, dependsOn, config in
            Records.task(key, type, dependsOn: dependsOn, config: config, retry: retry, timeoutMs: timeoutMs)
        }
        return try await store.createWorkflow(Records.workflow(owner: user.id, name: "w", tasks: records), actor: user.id)
    }

    /// Starts an execution the way the API does.
    public func execute(
        _ workflow: WorkflowRecord, input: JSONValue = .emptyObject, key: String? = nil, timeoutMs: Int64? = nil
    ) async throws -> ExecutionRecord {
        try await engine.execute(
            workflow, input: input, idempotencyKey: key, trigger: .api, actor: nil, timeoutMs: timeoutMs)
    }

    public func depth(_ queue: String = EngineQueues.builtin) async throws -> (ready: Int, delayed: Int, leased: Int) {
        try await store.depth(queue: queue, now: clock.now)
    }

    public func logLines(_ executionId: String) async throws -> [String] {
        await engine.flushLogs()
        return try await store.entries(LogQuery(executionId: executionId, limit: 1000)).map(\.message)
    }
}
