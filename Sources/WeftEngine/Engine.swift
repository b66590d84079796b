public import Foundation
public import WeftStore

/// Runs executions: drives each execution's `ExecutionStateMachine`, makes
/// every state change durable (group commit) before acting on it, puts ready
/// tasks on the durable queue, and runs built-in tasks on in-process workers.
///
/// Durability rules:
/// - a transition is committed before its effect (enqueue, next task) runs;
/// - a retry's backoff is a queue item with a later `readyAt`, so it survives
///   a restart like any queued task;
/// - a worker completes its lease only after the task's outcome is
///   committed, so a crash in between re-delivers the task, and the state
///   machine ignores outcomes it already has (at-least-once delivery, result
///   recorded once);
/// - `recover()` rebuilds unfinished executions from the store.
///
/// Timeouts (per attempt, per execution) and cancellation run on in-memory
/// timers and stop in-process attempts by cancelling their Swift task.
/// Not yet here (Step 3 work in progress): re-arming timeouts after a
/// restart, http/delay/external runners, metrics.
public actor Engine {
    public static let builtinQueue = "builtin"

    let workflows: any WorkflowStore
    let executions: any ExecutionStore
    let queue: any QueueStore
    let logs: any LogStore
    let committer: GroupCommitter
    let runners: [String: any TaskRunner]
    let now: @Sendable () -> Date
    let leaseDuration: TimeInterval

    struct Live {
        var machine: ExecutionStateMachine
        var tasks: [String: TaskRecord]
        var input: JSONValue
        /// When each task's current attempt started (delays count from it).
        var startedAt: [String: Date] = [:]

        /// What templates and expressions read: the input, upstream outputs and states.
        var context: Expression.Context {
            Expression.Context(
                input: input, outputs: machine.tasks.compactMapValues(\.output),
                statuses: machine.tasks.mapValues(\.state.rawValue))
        }
    }

    private var live: [String: Live] = [:]
    /// In-process attempts now running, by "execution|task|attempt".
    private var running: [String: Task<TaskOutcome, Never>] = [:]
    /// The lease each running attempt holds now (heartbeats renew it; a
    /// re-delivery while it still runs hands over the newer token).
    private var heldLeases: [String: Lease] = [:]

    public init(
        workflows: any WorkflowStore, executions: any ExecutionStore, queue: any QueueStore, logs: any LogStore,
        runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
        leaseDuration: TimeInterval = 60, now: @escaping @Sendable () -> Date = { Date.nowMillis }
    ) {
        self.workflows = workflows
        self.executions = executions
        self.queue = queue
        self.logs = logs
        self.committer = GroupCommitter(store: executions)
        self.runners = Dictionary(uniqueKeysWithValues: runners.map { ($0.action, $0) })
        self.now = now
        self.leaseDuration = leaseDuration
    }

    /// Starts an execution of the workflow's current version. With an
    /// idempotency key already used on this workflow, returns that execution.
    public func execute(
        _ workflow: WorkflowRecord, input: JSONValue, idempotencyKey: String?, trigger: String, actor: String?,
        timeoutMs: Int64? = nil
    ) async throws -> ExecutionRecord {
        let at = now()
        let record = ExecutionRecord(
            executionId: IDGenerator.make(IDGenerator.execution, now: at), workflowId: workflow.id,
            workflowVersion: workflow.version, status: "Pending", input: input, idempotencyKey: idempotencyKey,
            trigger: trigger, createdBy: actor, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(
                    taskExecutionId: IDGenerator.make(IDGenerator.taskExecution, now: at), taskId: $0.id, taskKey: $0.key,
                    status: "Pending")
            })
        let (stored, created) = try await executions.createExecution(record)
        guard created else { return stored }
        var machine = ExecutionStateMachine(tasks: workflow.tasks, executionTimeoutMs: timeoutMs)
        live[stored.executionId] = Live(
            machine: machine, tasks: Dictionary(uniqueKeysWithValues: workflow.tasks.map { ($0.key, $0) }), input: input)
        let effects = machine.start(at: at)
        live[stored.executionId]?.machine = machine
        try await carryOut(effects, executionId: stored.executionId, at: at, starting: true)
        return try await executions.execution(id: stored.executionId) ?? stored
    }

    /// Rebuilds every unfinished execution from the store (after a restart).
    /// Their queued items are still in the queue; expired leases come back.
    public func recover() async throws -> Int {
        let unfinished = try await executions.unfinishedExecutions()
        let at = now()
        for record in unfinished {
            if record.status == "Pending" {
                // Created but never started (a crash before the first commit):
                // start it now.
                try await startPending(record)
                continue
            }
            guard var state = try await load(record.executionId) else { continue }
            // Tasks whose dependencies all finished but that were never
            // queued (a crash between commits) are queued now.
            let resumed = state.machine.resume(at: at)
            if !resumed.isEmpty {
                live[record.executionId] = state
                try await carryOut(resumed, executionId: record.executionId, at: at)
            }
            // A crash between a commit and its enqueue leaves a task Queued
            // (or Retrying) with no queue item: put them back. Enqueueing is
            // idempotent, so items that did make it are not doubled.
            var items: [QueueItem] = []
            for (key, run) in state.machine.tasks {
                if run.state == .queued {
                    items.append(QueueItem(
                        queue: Self.builtinQueue, executionId: record.executionId, taskKey: key, attempt: run.attempt, readyAt: at))
                } else if run.state == .retrying {
                    items.append(QueueItem(
                        queue: Self.builtinQueue, executionId: record.executionId, taskKey: key, attempt: run.attempt + 1,
                        readyAt: at))
                }
            }
            try await queue.enqueue(items)
        }
        return unfinished.count
    }

    /// Cancels an execution: running attempts are stopped, waiting tasks never
    /// start. Returns false if it is unknown or already finished.
    @discardableResult
    public func cancel(executionId: String, reason: String) async throws -> Bool {
        guard var state = try await load(executionId) else { return false }
        let at = now()
        let effects = state.machine.cancel(reason: reason, at: at)
        guard !effects.isEmpty else { return false }
        live[executionId] = state
        try await carryOut(effects, executionId: executionId, at: at)
        live[executionId] = nil
        return true
    }

    private func startPending(_ record: ExecutionRecord) async throws {
        guard let version = try await workflows.workflowVersion(
            workflowId: record.workflowId, versionId: String(record.workflowVersion))
        else { return }
        var machine = ExecutionStateMachine(tasks: version.tasks)
        let at = now()
        let effects = machine.start(at: at)
        live[record.executionId] = Live(
            machine: machine, tasks: Dictionary(uniqueKeysWithValues: version.tasks.map { ($0.key, $0) }), input: record.input)
        try await carryOut(effects, executionId: record.executionId, at: at, starting: true)
    }

    /// Leases and runs up to `limit` ready built-in tasks; returns how many ran.
    /// The leases of a batch run concurrently; a failure of one (e.g. a lost
    /// lease) does not hold up the others. The first error is rethrown.
    @discardableResult
    public func runReadyTasks(worker: String, limit: Int = 16) async throws -> Int {
        let leases = try await queue.lease(
            queue: Self.builtinQueue, worker: worker, now: now(), duration: leaseDuration, limit: limit)
        var firstError: (any Error)?
        await withTaskGroup(of: (any Error)?.self) { group in
            for lease in leases {
                group.addTask {
                    do {
                        try await self.handle(lease)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            for await error in group where firstError == nil { firstError = error }
        }
        if let firstError { throw firstError }
        return leases.count
    }

    // MARK: Internals

    private func load(_ executionId: String) async throws -> Live? {
        if let existing = live[executionId] { return existing }
        guard let record = try await executions.execution(id: executionId), !record.isFinished,
            let version = try await workflows.workflowVersion(
                workflowId: record.workflowId, versionId: String(record.workflowVersion))
        else { return nil }
        var runs: [String: ExecutionStateMachine.TaskRun] = [:]
        for task in record.tasks {
            runs[task.taskKey] = ExecutionStateMachine.TaskRun(
                state: ExecutionStateMachine.TaskState(rawValue: task.status) ?? .pending, attempt: task.attempt,
                output: task.output, error: task.error.map { .init(kind: "restored", message: $0) })
        }
        var restored = Live(
            machine: ExecutionStateMachine(tasks: version.tasks, restoring: runs),
            tasks: Dictionary(uniqueKeysWithValues: version.tasks.map { ($0.key, $0) }), input: record.input)
        for task in record.tasks { restored.startedAt[task.taskKey] = task.startedAt }
        // Another handler may have loaded it while this one awaited the store.
        if let existing = live[executionId] { return existing }
        live[executionId] = restored
        return restored
    }

    private func handle(_ lease: Lease) async throws {
        let executionId = lease.item.executionId
        let key = lease.item.taskKey
        let attempt = lease.item.attempt
        if running["\(executionId)|\(key)|\(attempt)"] != nil {
            // Still running here though its lease lapsed: the run in progress
            // takes over this newer lease (and its token) instead of a second run.
            heldLeases["\(executionId)|\(key)|\(attempt)"] = lease
            return
        }
        guard var state = try await load(executionId), let task = state.tasks[key],
            let run = state.machine.tasks[key]
        else {
            try await queue.complete(lease)  // the execution ended; nothing to do
            return
        }
        let at = now()
        var effects: [ExecutionStateMachine.Effect] = []
        if run.state == .retrying, run.attempt + 1 == attempt {
            effects += state.machine.timerFired(.retry(task: key, attempt: attempt), at: at)
        }
        effects += state.machine.taskStarted(key, attempt: attempt, at: at)
        let current = state.machine.tasks[key]!
        guard current.state == .running, current.attempt == attempt else {
            // Already finished (a re-delivery after its outcome was stored), or stale.
            live[executionId] = state
            try await carryOut(effects, executionId: executionId, at: at)
            try await queue.complete(lease)
            return
        }
        if run.state != .running { state.startedAt[key] = at }
        live[executionId] = state
        try await carryOut(effects, executionId: executionId, at: at)
        // A timeout or cancel may have ended this attempt while the commit
        // was awaited: then it must not start.
        guard let now = live[executionId]?.machine.tasks[key], now.state == .running, now.attempt == attempt else {
            try await queue.complete(lease)
            return
        }

        if task.action == "delay" {
            try await delay(lease, task: task, executionId: executionId, at: at)
            return
        }

        let context = state.context
        let outcome: TaskOutcome
        if let runner = runners[task.action] {
            do {
                let invocation = try TaskInvocation.make(task, executionId: executionId, attempt: attempt, context: context)
                let logs = self.logs
                let job = Task {
                    await runner.run(invocation) { level, message in
                        _ = try? await logs.append([
                            LogRecord(executionId: executionId, taskId: task.id, level: level, message: message, createdAt: Date())
                        ])
                    }
                }
                let jobKey = "\(executionId)|\(key)|\(attempt)"
                running[jobKey] = job
                // Keep the lease while the attempt runs, so a long task is not
                // delivered to another worker.
                heldLeases[jobKey] = lease
                let interval = Int64(leaseDuration * 1000 / 3)
                let heartbeat = Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(interval))
                        if Task.isCancelled { return }
                        await self.renew(jobKey)
                    }
                }
                outcome = await job.value
                heartbeat.cancel()
                running[jobKey] = nil
            } catch {
                outcome = .failed(.init(kind: "config", message: error.description))
            }
        } else {
            outcome = .failed(.init(kind: "config", message: "no runner for task type \"\(task.action)\""))
        }

        try await finish(lease, outcome, executionId: executionId, taskId: task.id)
    }

    /// A `delay` task holds no worker while it waits: its queue item goes
    /// back with `readyAt` = the due time (durable across restarts), and the
    /// task completes when it is delivered again at or after that time.
    private func delay(_ lease: Lease, task: TaskRecord, executionId: String, at: Date) async throws {
        guard let state = live[executionId] else {
            try await queue.complete(lease)
            return
        }
        let context = state.context
        let started = state.startedAt[task.key] ?? at
        let due: Date
        do {
            let config = try Template.resolve(task.config, context)
            if let until = config["until"]?.stringValue {
                guard let date = RFC3339.parse(until) else {
                    throw ExpressionError(message: "config.until \"\(until)\" is not an RFC 3339 time", offset: 0)
                }
                due = date
            } else if let text = config["duration"]?.stringValue, let ms = DurationText.milliseconds(text) {
                due = started.addingTimeInterval(Double(ms) / 1000)
            } else {
                throw ExpressionError(message: "a delay needs config.duration or config.until", offset: 0)
            }
        } catch {
            try await finish(lease, .failed(.init(kind: "config", message: "\(error)")), executionId: executionId)
            return
        }
        if due > at {
            try await queue.release(lease, readyAt: due)
        } else {
            let waited = Int64((at.timeIntervalSince(started) * 1000).rounded())
            try await finish(lease, .completed(.object(["waitedMs": .number(Double(waited))])), executionId: executionId)
        }
    }

    private func renew(_ jobKey: String) async {
        guard let current = heldLeases[jobKey],
            let renewed = try? await queue.heartbeat(current, now: now(), duration: leaseDuration)
        else { return }
        if heldLeases[jobKey]?.token == renewed.token { heldLeases[jobKey] = renewed }
    }

    /// Records an attempt's outcome. The state is read, changed and written
    /// back with no suspension in between (other handlers of the same
    /// execution run while this actor awaits), then committed.
    private func finish(_ lease: Lease, _ outcome: TaskOutcome, executionId: String, taskId: String? = nil) async throws {
        let key = lease.item.taskKey
        let attempt = lease.item.attempt
        let at = now()
        let lease = heldLeases.removeValue(forKey: "\(executionId)|\(key)|\(attempt)") ?? lease
        guard var state = live[executionId] else {
            try await queue.complete(lease)  // cancelled or timed out meanwhile
            return
        }
        let effects: [ExecutionStateMachine.Effect]
        switch outcome {
        case .completed(let output): effects = state.machine.taskSucceeded(key, attempt: attempt, output: output, at: at)
        case .failed(let error): effects = state.machine.taskFailed(key, attempt: attempt, error: error, at: at)
        }
        if !effects.isEmpty { live[executionId] = state.machine.status == .running ? state : nil }
        try await carryOut(effects, executionId: executionId, at: at, machine: state.machine)
        try await queue.complete(lease)
        if case .failed(let error) = outcome {
            _ = try? await logs.append([
                LogRecord(executionId: executionId, taskId: taskId, level: .error,
                          message: "attempt \(attempt) failed (\(error.kind)): \(error.message)", createdAt: at)
            ])
        }
    }

    /// In-memory timers for timeouts (retries use delayed queue items).
    private func schedule(_ timer: ExecutionStateMachine.Timer, at when: Date, executionId: String) {
        let delay = max(0, when.timeIntervalSince(now()))
        Task {
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            try? await self.fire(timer, executionId: executionId)
        }
    }

    private func fire(_ timer: ExecutionStateMachine.Timer, executionId: String) async throws {
        guard var state = live[executionId] else { return }
        let at = now()
        let effects = state.machine.timerFired(timer, at: at)
        guard !effects.isEmpty else { return }
        live[executionId] = state
        try await carryOut(effects, executionId: executionId, at: at)
        if state.machine.status != .running { live[executionId] = nil }
    }

    /// Commits the effects' state changes, then enqueues what became ready.
    private func carryOut(
        _ effects: [ExecutionStateMachine.Effect], executionId: String, at: Date, starting: Bool = false,
        machine given: ExecutionStateMachine? = nil
    ) async throws {
        guard !effects.isEmpty || starting else { return }
        var transitions: [ExecutionTransition] = starting ? [.execution(id: executionId, status: "Running", at: at)] : []
        var items: [QueueItem] = []
        var logLines: [LogRecord] = []
        let machine = given ?? live[executionId]?.machine
        for effect in effects {
            switch effect {
            case .taskState(let key, let state, let attempt):
                let run = machine?.tasks[key]
                transitions.append(.task(
                    executionId: executionId, taskKey: key, status: state.rawValue, attempt: attempt, at: at,
                    output: state == .completed ? run?.output : nil,
                    error: state == .failed || state == .retrying ? run?.error?.message : nil))
            case .enqueue(let key, let attempt):
                items.append(QueueItem(
                    queue: Self.builtinQueue, executionId: executionId, taskKey: key, attempt: attempt, readyAt: at))
            case .armTimer(.retry(let key, let attempt), let when):
                // The backoff is a delayed queue item: durable like any other.
                items.append(QueueItem(
                    queue: Self.builtinQueue, executionId: executionId, taskKey: key, attempt: attempt, readyAt: when))
            case .armTimer(let timer, let when):
                schedule(timer, at: when, executionId: executionId)
            case .stop(let key, let attempt):
                running["\(executionId)|\(key)|\(attempt)"]?.cancel()
            case .finished(let status, let error):
                transitions.append(.execution(id: executionId, status: status.rawValue, at: at, error: error))
                logLines.append(LogRecord(
                    executionId: executionId, taskId: nil, level: status == .completed ? .info : .error,
                    message: "execution \(status.rawValue.lowercased())\(error.map { ": \($0)" } ?? "")", createdAt: at))
            }
        }
        do {
            try await committer.submit(transitions)
            try await queue.enqueue(items)
        } catch {
            // Memory must not run ahead of the store: forget the execution so
            // the next event reloads it from what was actually committed.
            live[executionId] = nil
            throw error
        }
        if !logLines.isEmpty { _ = try? await logs.append(logLines) }
    }
}
