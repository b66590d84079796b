import Foundation
import Synchronization
import Tracing
import WeftObservability
import WeftStore

/// Attempts run in this process: leases of the built-in queue (instant
/// runners, runners that do I/O, delays), due timers, heartbeats, and the
/// recording of outcomes.
extension Engine {
    /// Leases and runs up to `limit` ready items of the timer and built-in
    /// queues; returns how many. The leases of a batch run concurrently; a
    /// failure of one does not hold up the others. The first error is
    /// rethrown. (The worker pool does this continuously; tests call it to
    /// drive the engine one step at a time.)
    @discardableResult
    public func runReadyTasks(worker: String, limit: Int = 16) async throws -> Int {
        try requireRunning()
        var leases = try await lease(EngineQueues.timers, worker: worker, limit: limit)
        leases += try await lease(EngineQueues.builtin, worker: worker, limit: limit)
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

    /// Leases up to `limit` ready items of `queue` for this process's workers.
    func lease(_ queueName: String, worker: String, limit: Int) async throws -> [Lease] {
        try await queue.lease(queue: queueName, worker: worker, now: now(), duration: leaseDuration, limit: limit)
    }

    /// Leases up to `limit` ready items of `queue` shared fairly between
    /// organizations (`QueueStore.leaseFairly`).
    nonisolated func leaseFairly(
        _ queueName: String, worker: String, limit: Int, after: String?, room: @escaping @Sendable (String) -> Int
    ) async throws -> [Lease] {
        let leases = try await queue.leaseFairly(
            queue: queueName, worker: worker, now: now(), duration: leaseDuration, limit: limit, after: after, room: room)
        // Admission control watches the items that waited in the ready
        // queue for a slot (not the ones handed to a free slot at commit,
        // nor the next task an attempt passes its slot to): the shortest
        // wait of a batch taken from the queue.
        // Fewer items than room: the queue has drained, no backlog stands.
        if queueName == EngineQueues.builtin {
            let at = Date()
            let shortest = leases.map { at.timeIntervalSince($0.visibleAt ?? $0.item.readyAt) }.min() ?? 0
            overload.observeTaskWait(max(0, shortest), drained: leases.count < limit)
        }
        return leases
    }

    /// Runs a lease on a worker slot; returns whether the slot was passed on
    /// to a task queued by the attempt's commit (then the caller keeps it
    /// busy), and the error, if any.
    func handleOnSlot(_ lease: Lease) async -> (passed: Bool, error: (any Error)?) {
        let slot = Slot()
        do {
            try await handle(lease, slot: slot)
            return (slot.passed, nil)
        } catch {
            return (slot.passed, error)
        }
    }

    /// Runs one leased item of the built-in or timer queue.
    func handle(_ lease: Lease, slot: Slot? = nil) async throws {
        if lease.reclaimed { metrics?.leaseExpired(queue: lease.item.queue) }
        if lease.item.queue == EngineQueues.timers {
            metrics?.timerFiredLate(Date().timeIntervalSince(lease.item.readyAt))
            return try await fireTimer(lease)
        }
        let id = AttemptID(lease.item)
        if attempts.isRunning(id) {
            // Still running here though its lease lapsed: the run in progress
            // takes over this newer lease (and its token) instead of a second run.
            attempts.takeOver(id, lease: lease)
            return
        }
        try await pinned(id.executionId) { try await start(lease, id: id, slot: slot) }
    }

    private func start(_ lease: Lease, id: AttemptID, slot: Slot?) async throws {
        // Secrets its config reads are fetched first (the only await before
        // the state is read for good), and only for this attempt.
        let revealed: Result<[String: String], any Error> = await reveal(id)
        guard var state = try await load(id.executionId), let task = state.tasks[id.taskKey] else {
            return try await discard(lease)  // the execution ended; nothing to do
        }
        let at = now()
        var effects = startEffects(&state, key: id.taskKey, attempt: id.attempt, lease: lease, at: at)
        guard state.isRunning(id.taskKey, attempt: id.attempt) else {
            // Already finished (a re-delivery after its outcome was stored), or stale.
            try await carryOut(effects, executionId: id.executionId, at: at, state: state, lease: .complete(lease))
            return
        }
        // In memory now, committed below (for an instant runner: with its outcome).
        cache[id.executionId] = state
        // The attempt's span ends when its outcome is known, before the
        // commit that records it (which may end the execution and its span).
        let span = taskSpan(state, executionId: id.executionId, task: task, attempt: id.attempt)
        if task.action == .delay {
            do {
                try await carryOut(effects, executionId: id.executionId, at: at)
            } catch {
                span?.end()
                throw error
            }
            span?.end()
            return try await delay(lease, task: task, at: at)
        }
        guard let runner = runners[task.action] else {
            let outcome = TaskOutcome.failed(.init(
                kind: "config", message: "no runner for task type \"\(task.action)\" here", system: true))
            Self.end(span, outcome)
            return try await record(lease, outcome, deferred: effects)
        }
        var invocation: TaskInvocation
        do {
            var context = state.context
            context.secrets = try revealed.get()
            invocation = try TaskInvocation.make(
                task, executionId: id.executionId, attempt: id.attempt, context: context,
                maxBytes: limits.maxTemplateBytes, maxTimeoutMs: limits.maxAttemptTimeoutMs)
            invocation.redactor = SecretRedactor(context.secrets)
        } catch {
            let outcome = TaskOutcome.failed(Self.invocationError(error))
            Self.end(span, outcome)
            return try await record(lease, outcome, deferred: effects)
        }
        let redactor = invocation.redactor
        if runner.isInstant {
            // Nothing observable happens between start and outcome: commit
            // both at once. An attempt timeout cannot fire in between.
            effects.removeAll { if case .armTimer(.attemptTimeout, _) = $0 { true } else { false } }
            // Its lines are logged after its "started" line, as for any task.
            let collected = CollectedLines()
            let clock = now
            let outcome = redactor.redact(await runner.run(invocation) { level, message in
                collected.add(LogRecord(
                    executionId: id.executionId, taskId: task.id, level: level, message: redactor.redact(message),
                    createdAt: clock()))
            })
            Self.end(span, outcome)
            return try await record(lease, outcome, deferred: effects, lines: collected.lines, slot: slot)
        }
        do {
            try await carryOut(effects, executionId: id.executionId, at: at)
        } catch {
            span?.end()
            throw error
        }
        // A timeout or cancel may have ended this attempt while the commit
        // was awaited: then it must not start.
        guard isCurrent(id) else {
            span?.attributes[SpanKeys.taskOutcome] = "cancelled"
            span?.end()
            return try await discard(lease)
        }
        let meter = UsageMeter()
        let log = Self.redacting(logger(executionId: id.executionId, taskId: task.id), redactor)
        let job = Task { [context = span?.context] in
            let outcome = await Self.run(runner, invocation, log: log, context: context, meter: meter)
            return redactor.redact(outcome)
        }
        // The lease is kept while the attempt runs (the worker pool's
        // heartbeats renew it), so a long task is not delivered to another worker.
        attempts.started(id, job: job, lease: lease)
        // The job is this call's: cancelling the call stops it too.
        let outcome = await withTaskCancellationHandler { await job.value } onCancel: { job.cancel() }
        attempts.ended(id)
        Self.end(span, outcome)
        try await finish(lease, outcome, usage: meter.reading, slot: slot)
    }

    /// Runs an attempt inside its span (so outbound calls are its children
    /// and carry its context) with a meter for what it sends and receives.
    private static func run(
        _ runner: any TaskRunner, _ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void,
        context: InstrumentationContext?, meter: UsageMeter
    ) async -> TaskOutcome {
        await UsageMeter.$current.withValue(meter) {
            await WeftTracing.withContext(context) { await runner.run(invocation, log: log) }
        }
    }

    private func logger(executionId: String, taskId: String) -> @Sendable (LogRecord.Level, String) async -> Void {
        let writer = logWriter
        let clock = now
        return { level, message in
            writer.append([LogRecord(executionId: executionId, taskId: taskId, level: level, message: message, createdAt: clock())])
        }
    }

    /// Renews the lease of every attempt running here (the worker pool's
    /// heartbeat, every third of the lease). A lease lost meanwhile stays
    /// lost: the item went to another worker, whose result will count.
    public func renewHeldLeases() async {
        for lease in attempts.leases.values {
            guard let renewed = try? await queue.heartbeat(lease, now: now(), duration: leaseDuration) else { continue }
            attempts.renewed(renewed)
        }
    }

    /// At the end of the drain at shutdown: attempts still running are left
    /// to the next start (their leases are released then); their outcomes,
    /// if they come, are not recorded.
    public func abandonRunningAttempts() { abandoning = true }

    /// The effects of an attempt starting (including a retry whose backoff
    /// is over); records its start time and wait.
    func startEffects(
        _ state: inout ExecutionState, key: String, attempt: Int, lease: Lease, at: Date
    ) -> [ExecutionStateMachine.Effect] {
        guard let run = state.machine.tasks[key] else { return [] }
        var effects: [ExecutionStateMachine.Effect] = []
        if run.state == .retrying, run.attempt + 1 == attempt {
            // The retry's queue item is the one being handled: not queued again.
            effects += state.machine.timerFired(.retry(task: key, attempt: attempt), at: at).filter {
                $0 != .enqueue(task: key, attempt: attempt)
            }
        }
        effects += state.machine.taskStarted(key, attempt: attempt, at: at)
        if run.state == .running, run.attempt == attempt, state.tasks[key]?.action != .delay {
            // A re-delivery of a running attempt (after a restart, or an
            // expired lease): the attempt runs again from now. (A delay is
            // re-delivered when due and keeps its start.)
            state.startedAt[key] = at
        }
        if run.state != .running, state.machine.tasks[key]?.state == .running {
            state.startedAt[key] = at
            // Queued → started (Temporal's schedule-to-start): from when the
            // item became durable and visible, on the precise clock.
            let queued = lease.visibleAt ?? lease.item.readyAt
            metrics?.taskWaited(type: state.tasks[key]?.action ?? .other("?"), Date().timeIntervalSince(queued))
        }
        return effects
    }

    /// A `delay` task holds no worker while it waits: its queue item goes
    /// back with `readyAt` = the due time (durable across restarts), and the
    /// task completes when it is delivered again at or after that time.
    private func delay(_ lease: Lease, task: TaskRecord, at: Date) async throws {
        guard let state = cache[lease.item.executionId] else { return try await discard(lease) }
        let started = state.startedAt[task.key] ?? at
        let due: Date
        do {
            let config = try Template.resolve(task.config, state.context, maxBytes: limits.maxTemplateBytes)
            if let until = config["until"]?.stringValue {
                guard let date = RFC3339.parse(until) else {
                    throw ExpressionError(message: "config.until \"\(until)\" is not an RFC 3339 time", offset: -1)
                }
                due = date
            } else if let text = config["duration"]?.stringValue, let ms = DurationText.milliseconds(text) {
                due = started.addingTimeInterval(Double(ms) / 1000)
            } else {
                throw ExpressionError(message: "a delay needs config.duration or config.until", offset: -1)
            }
        } catch {
            return try await record(lease, .failed(.init(kind: "config", message: "\(error)")))
        }
        if due > at {
            _ = attempts.releaseLease(AttemptID(lease.item))
            try await commit([.releaseLease(id: lease.id, token: lease.token, readyAt: due)])
            signal.notify(EngineQueues.builtin, at: due)
        } else {
            let waited = Int64((at.timeIntervalSince(started) * 1000).rounded())
            try await finish(lease, .completed(.object(["waitedMs": .number(Double(waited))])))
        }
    }

    /// A due timer (attempt, task or execution timeout).
    private func fireTimer(_ lease: Lease) async throws {
        let executionId = lease.item.executionId
        try await pinned(executionId) {
            guard let timer = TimerItem(lease.item), var state = try await load(executionId) else {
                return try await discard(lease)
            }
            let at = now()
            let effects = state.machine.timerFired(timer.timer, at: at)
            try await carryOut(effects, executionId: executionId, at: at, state: state, lease: .complete(lease))
        }
    }

    /// Records an attempt's outcome under its lease; returns false if the
    /// attempt had already ended (timeout, cancel, a result recorded before):
    /// then nothing is recorded. The state is read, changed and written back
    /// with no suspension in between, then committed with the lease's completion.
    @discardableResult
    func finish(
        _ lease: Lease, _ outcome: TaskOutcome, deferred: [ExecutionStateMachine.Effect] = [], lines: [LogRecord] = [],
        usage: UsageMeter.Reading = .init(), slot: Slot? = nil
    ) async throws -> Bool {
        let id = AttemptID(lease.item)
        let lease = attempts.releaseLease(id) ?? lease
        // Past the drain deadline at shutdown: the item is delivered again
        // after the next start; nothing of this run is recorded.
        guard !abandoning else { return false }
        guard var state = try await load(id.executionId) else {
            // The execution ended meanwhile (this attempt was stopped); what
            // it sent and received is still charged (to the stored cost only:
            // its workflow's name for the metric is gone with it).
            let sent = costRates.attemptEnded(type: nil, seconds: 0, usage: usage)
            if !sent.isZero {
                try? await commit([
                    .cost(executionId: id.executionId, sent),
                    .taskCost(executionId: id.executionId, taskKey: id.taskKey, dollars: sent.total),
                ])
            }
            try await discard(lease)
            return false
        }
        let at = now()
        let outcome = capped(outcome, state: &state, key: id.taskKey)
        let effects: [ExecutionStateMachine.Effect]
        switch outcome {
        case .completed(let output): effects = state.machine.taskSucceeded(id.taskKey, attempt: id.attempt, output: output, at: at)
        case .failed(let error): effects = state.machine.taskFailed(id.taskKey, attempt: id.attempt, error: error, at: at)
        }
        let type = state.tasks[id.taskKey]?.action
        guard !effects.isEmpty else {
            // This attempt is over already (stopped by a timeout or cancel,
            // which charged its time); its start (if deferred) and outcome
            // are dropped, the queue item goes. What it sent and received
            // is still charged.
            let sent = costRates.attemptEnded(type: type, seconds: 0, usage: usage)
            if !sent.isZero {
                try? await commit([
                    .cost(executionId: id.executionId, sent),
                    .taskCost(executionId: id.executionId, taskKey: id.taskKey, dollars: sent.total),
                ])
                metrics?.costAccrued(orgId: state.orgId, workflow: state.workflowName, sent)
            }
            try await discard(lease)
            return false
        }
        var cost = ExecutionCost()
        if let started = state.startedAt[id.taskKey] {
            let outcomeName: String = if case .completed = outcome { "completed" } else { "failed" }
            metrics?.taskFinished(type: type ?? .other("?"), outcome: outcomeName, at.timeIntervalSince(started))
            cost = costRates.attemptEnded(type: type, seconds: at.timeIntervalSince(started), usage: usage)
        }
        try await carryOut(
            deferred + effects, executionId: id.executionId, at: at, state: state, lease: .complete(lease),
            taskLines: lines.isEmpty ? [:] : [id.taskKey: lines], cost: cost, costKey: id.taskKey, slot: slot)
        return true
    }

    /// The outcome, or `output_too_large` when a completed attempt's output
    /// passes the task cap or would take the execution past its cap. Keeps
    /// the execution's count of stored output bytes.
    func capped(_ outcome: TaskOutcome, state: inout ExecutionState, key: String) -> TaskOutcome {
        guard case .completed(let output) = outcome else { return outcome }
        let size = output.encodedSize(limit: limits.maxTaskOutputBytes)
        if size > limits.maxTaskOutputBytes {
            return .failed(.init(
                kind: "output_too_large",
                message: "output_too_large: the task's output is larger than the cap of \(limits.maxTaskOutputBytes) bytes",
                retryable: false))
        }
        let stored = state.storedBytes ?? state.countStoredBytes()
        if stored + size > limits.maxExecutionBytes {
            state.storedBytes = stored
            return .failed(.init(
                kind: "output_too_large",
                message: "output_too_large: the execution's outputs would pass its cap of \(limits.maxExecutionBytes) bytes",
                retryable: false))
        }
        state.storedBytes = stored + size
        return outcome
    }

    /// `log` with secret values hidden (itself when the attempt read none).
    static func redacting(
        _ log: @escaping @Sendable (LogRecord.Level, String) async -> Void, _ redactor: SecretRedactor
    ) -> @Sendable (LogRecord.Level, String) async -> Void {
        if redactor.isEmpty { return log }
        return { level, message in await log(level, redactor.redact(message)) }
    }

    /// The values of the secrets `id`'s task config reads, from the secret
    /// source; none when it reads none. A failure to get them fails the
    /// attempt (kind `secret`), as a template error would.
    func reveal(_ id: AttemptID, forRedaction: Bool = false) async -> Result<[String: String], any Error> {
        var found = cache[id.executionId]
        if found == nil { found = try? await load(id.executionId) }
        // A delay's config is a duration or a time: it has no use for secrets.
        guard let peek = found, let task = peek.tasks[id.taskKey], task.action != .delay else { return .success([:]) }
        let names = Template.secretNames(in: task.config)
        guard !names.isEmpty else { return .success([:]) }
        guard let secrets else {
            return .failure(ExpressionError(message: "secrets.\(names.sorted()[0]): this server has no secret store", offset: -1))
        }
        do {
            return .success(try await secrets.reveal(
                orgId: peek.orgId, names: names,
                for: SecretUse(
                    executionId: id.executionId, workflowId: peek.workflowId, taskKey: id.taskKey, attempt: id.attempt,
                    forRedaction: forRedaction)))
        } catch {
            return .failure(error)
        }
    }

    /// A task whose config cannot be resolved fails its attempt: a size cap
    /// as `output_too_large` (never retried), anything else as `config`.
    static func invocationError(_ error: any Error) -> ExecutionStateMachine.TaskError {
        guard let error = error as? ExpressionError else {
            // The source throws only when the store fails to read or open a
            // secret (a missing name is simply absent): Weft's failure.
            return .init(kind: "secret", message: "secrets: \(error)", system: true)
        }
        if error.sizeLimit != nil { return .init(kind: "output_too_large", message: error.message, retryable: false) }
        return .init(kind: "config", message: "config: \(error.description)")
    }

    /// `finish` for callers that return nothing.
    private func record(
        _ lease: Lease, _ outcome: TaskOutcome, deferred: [ExecutionStateMachine.Effect] = [], lines: [LogRecord] = [],
        slot: Slot? = nil
    ) async throws {
        try await finish(lease, outcome, deferred: deferred, lines: lines, slot: slot)
    }
}

/// Lines an instant runner writes, kept until its start is committed.
final class CollectedLines: Sendable {
    private let store = Mutex<[LogRecord]>([])
    func add(_ line: LogRecord) { store.withLock { $0.append(line) } }
    var lines: [LogRecord] { store.withLock { $0 } }
}
