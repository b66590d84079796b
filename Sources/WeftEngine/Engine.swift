public import Foundation
public import Logging
import Synchronization
import Tracing
public import WeftObservability
public import WeftStore

/// In-process workers that take tasks straight from the commit that queues
/// them (`WorkerPool`): the item is leased in that same transaction, so no
/// separate lease transaction and no wait for a poll.
public protocol DirectDispatch: AnyObject, Sendable {
    /// Takes a free slot, or returns false when all are busy.
    func reserve() -> Bool
    /// Gives back a slot reserved for a lease that was not committed.
    func cancelReservation()
    /// Runs a committed lease on a reserved slot.
    func run(_ lease: Lease)
}

/// Runs executions: drives each execution's `ExecutionStateMachine`, makes
/// every state change durable (group commit) before acting on it or telling
/// anyone, keeps the durable queue in step, and runs built-in tasks on
/// in-process workers (`WorkerPool`) and external tasks through the worker
/// protocol (`pollExternal`, `completeExternal`, ...).
///
/// Durability rules:
/// - a transition is committed before its effect runs and before watchers
///   hear of it; the queue items it creates and the lease it completes are
///   written in the same transaction (`ExecutionTransition.enqueue`,
///   `.completeLease`), so state and queue never disagree, and one fsync
///   covers many executions (`GroupCommitter`);
/// - an outcome is recorded only under a valid lease: a worker that lost its
///   lease gets an error and its result is dropped (recorded once);
/// - retry backoffs, delays and timeouts are queue items with a later
///   `readyAt` (timeouts on the `timers` queue), so they survive a restart;
/// - `recover()` rebuilds unfinished executions from the store.
///
/// Tasks of instant runners (noop, log, transform, condition) commit their
/// start together with their outcome: nobody can observe the start earlier,
/// so the rule above holds with one transaction per task instead of two.
///
/// Observability: an execution is one span (`weft.execution`), child of the
/// request that started it; each attempt is a `weft.task` span under it. The
/// execution span's W3C context is stored with the execution, so attempts
/// run after a restart still join its trace. Cost (`CostRates`) accrues in
/// the commits that start and end attempts (`ExecutionTransition.cost`).
public actor Engine {
    public static let builtinQueue = "builtin"
    public static let timerQueue = "timers"
    /// External queues are "ext/<owner id>/<name>": per owner, so one
    /// account's workers never see another's tasks.
    public static let externalPrefix = "ext/"

    public static func externalQueue(owner: String, name: String) -> String { "\(externalPrefix)\(owner)/\(name)" }

    let workflows: any WorkflowStore
    let executions: any ExecutionStore
    let queue: any QueueStore
    let committer: GroupCommitter
    let runners: [TaskType: any TaskRunner]
    let now: @Sendable () -> Date
    let leaseDuration: TimeInterval
    let metrics: EngineMetrics?
    let costRates: CostRates
    let logger: Logger
    /// Executions kept in memory at most; others are reloaded from the store
    /// when an event comes (bounds memory with a large backlog).
    let maxLive: Int
    public nonisolated let feed: ExecutionFeed
    public nonisolated let signal: WorkSignal
    public nonisolated let logWriter: LogWriter

    struct Live {
        var machine: ExecutionStateMachine
        var tasks: [String: TaskRecord]
        var input: JSONValue
        var workflowId: String
        var workflowName: String
        var ownerId: String
        var priority: Int
        var createdAt: Date
        var taskExecutionIds: [String: String]
        /// When each task's current attempt started (delays and durations count from it).
        var startedAt: [String: Date] = [:]
        /// W3C context of the execution's span (empty when tracing is off).
        var trace = TraceHeaders()
        /// Cost committed so far.
        var cost = ExecutionCost()

        /// What templates and expressions read: the input, upstream outputs and states.
        var context: Expression.Context {
            Expression.Context(
                input: input, outputs: machine.tasks.compactMapValues(\.output),
                statuses: machine.tasks.mapValues(\.state.rawValue))
        }

        func queueName(of key: String) -> String {
            guard let task = tasks[key], task.action == .external,
                let name = task.config["queue"]?.stringValue
            else { return Engine.builtinQueue }
            return Engine.externalQueue(owner: ownerId, name: name)
        }
    }

    /// What an external worker receives with its lease.
    public struct ExternalTask: Sendable {
        public var lease: Lease
        public var workflowId: String
        public var executionId: String
        public var taskId: String
        public var taskKey: String
        public var attempt: Int
        public var input: JSONValue
        public var config: JSONValue
        /// The W3C context of this attempt's span, for the worker's own spans.
        public var trace: TraceHeaders
    }

    enum LeaseOperation {
        case complete(Lease)
        case release(Lease, readyAt: Date)
    }

    private var live: [String: Live] = [:]
    /// Executions that ended here recently (their final commit may still be
    /// in flight): never reloaded from a store that may not show it yet.
    private var ended: Set<String> = []
    private var endedOrder: [String] = []
    /// Executions an operation is working on (never evicted meanwhile).
    private var pins: [String: Int] = [:]
    /// In-process attempts now running, by "execution|task|attempt".
    private var running: [String: Task<TaskOutcome, Never>] = [:]
    /// The lease each running attempt holds now (heartbeats renew it; a
    /// re-delivery while it still runs hands over the newer token).
    private var heldLeases: [String: Lease] = [:]
    /// In-process workers that take ready built-in tasks at commit time.
    private var dispatcher: (any DirectDispatch)?
    /// Spans of executions started by this process, ended when they end
    /// (after a restart their attempts parent on the stored context).
    private var executionSpans: [String: any Span] = [:]
    /// Spans of attempts leased to external workers, by "execution|task|attempt".
    private var externalSpans: [String: any Span] = [:]
    /// Bounds the span maps: past it, a span ends when its work is handed on.
    static let maxOpenSpans = 100_000

    public init(
        workflows: any WorkflowStore, executions: any ExecutionStore, queue: any QueueStore, logs: any LogStore,
        runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
        leaseDuration: TimeInterval = 60, maxLive: Int = 20_000, metrics: EngineMetrics? = nil,
        costRates: CostRates = CostRates(), logger: Logger = Logger(label: "weft.engine"),
        feed: ExecutionFeed = ExecutionFeed(), signal: WorkSignal = WorkSignal(),
        now: @escaping @Sendable () -> Date = { Date.nowMillis }
    ) {
        self.workflows = workflows
        self.executions = executions
        self.queue = queue
        self.feed = feed
        self.signal = signal
        self.logWriter = LogWriter(store: logs, feed: feed)
        self.metrics = metrics
        self.costRates = costRates
        self.logger = logger
        self.committer = GroupCommitter(store: executions, onBatch: { [metrics] size in metrics?.committed(batch: size) })
        self.runners = Dictionary(uniqueKeysWithValues: runners.map { ($0.action, $0) })
        self.now = now
        self.leaseDuration = leaseDuration
        self.maxLive = max(100, maxLive)
    }

    // MARK: Executions

    /// Starts an execution of the workflow's current version. With an
    /// idempotency key already used on this workflow, returns that execution.
    public func execute(
        _ workflow: WorkflowRecord, input: JSONValue, idempotencyKey: String?, trigger: TriggerKind, actor: String?,
        timeoutMs: Int64? = nil, priority: Int = 0
    ) async throws -> ExecutionRecord {
        let at = now()
        var record = ExecutionRecord(
            executionId: IDGenerator.make(IDGenerator.execution, now: at), workflowId: workflow.id,
            workflowVersion: workflow.version, status: .pending, input: input, idempotencyKey: idempotencyKey,
            trigger: trigger, priority: priority, createdBy: actor, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(
                    taskExecutionId: IDGenerator.make(IDGenerator.taskExecution, now: at), taskId: $0.id, taskKey: $0.key,
                    status: .pending)
            })
        let id = record.executionId
        // Child of the request's span (the task-local context); a new trace
        // when no request started it; none under an untraced request.
        let span = WeftTracing.start(SpanNames.execution)
        if let span {
            span.attributes[SpanKeys.workflowId] = workflow.id
            span.attributes[SpanKeys.workflowName] = workflow.name
            span.attributes[SpanKeys.workflowVersion] = workflow.version
            span.attributes[SpanKeys.executionId] = id
            let headers = WeftTracing.headers(of: span.context)
            record.traceParent = headers.traceparent
            record.traceState = headers.tracestate
        }
        pin(id)
        defer { unpin(id) }
        var machine = ExecutionStateMachine(tasks: workflow.tasks, executionTimeoutMs: timeoutMs)
        let effects = machine.start(at: at)
        evictIfNeeded()
        live[id] = Live(
            machine: machine, tasks: Dictionary(uniqueKeysWithValues: workflow.tasks.map { ($0.key, $0) }), input: input,
            workflowId: workflow.id, workflowName: workflow.name, ownerId: workflow.ownerId, priority: priority,
            createdAt: at,
            taskExecutionIds: Dictionary(uniqueKeysWithValues: record.tasks.map { ($0.taskKey, $0.taskExecutionId) }))
        live[id]?.trace = TraceHeaders(traceparent: record.traceParent, tracestate: record.traceState)
        if let span {
            if executionSpans.count < Self.maxOpenSpans { executionSpans[id] = span } else { span.end() }
        }
        do {
            // The execution row, its start and its first queue items are
            // one share of a group commit.
            try await carryOut(effects, executionId: id, at: at, start: (record, create: true))
        } catch StoreError.alreadyExists {
            // The idempotency key is taken: answer with that execution.
            executionSpans.removeValue(forKey: id)?.end()
            let (existing, _) = try await executions.createExecution(record)
            return existing
        } catch {
            if let span = executionSpans.removeValue(forKey: id) {
                span.recordError(error)
                span.end()
            }
            throw error
        }
        if logger.logLevel <= .debug {
            logTraced(record.traceParent, record.traceState) {
                $0.debug(
                    "execution started",
                    metadata: ["execution_id": "\(id)", "workflow_id": "\(workflow.id)", "trigger": "\(trigger)"])
            }
        }
        var result = record
        result.status = live[id]?.machine.status ?? machine.status
        result.startedAt = at
        return result
    }

    /// Resumes after a restart. Unfinished executions go on by themselves:
    /// their queue items (tasks, retries, delays, timers) are in the store,
    /// written with their state. Leases held by this process's workers before
    /// the restart are ended at once (external workers keep theirs until they
    /// expire). Executions with no task item left (never started, or every
    /// task done but the end not recorded) are rebuilt and moved on here.
    /// Returns how many executions are unfinished.
    public func recover() async throws -> Int {
        try await queue.releaseAll(queues: [Self.builtinQueue, Self.timerQueue])
        let stalled = try await executions.stalledExecutions()
        let at = now()
        for record in stalled {
            let id = record.executionId
            pin(id)
            defer { unpin(id) }
            if record.status == .pending {
                // Created but never started (a crash before the first commit).
                try await startPending(record)
                continue
            }
            guard var state = try await load(id) else { continue }
            // Tasks whose dependencies all finished but that were never
            // queued (a crash between commits) are queued now.
            let resumed = state.machine.resume(at: at)
            if !resumed.isEmpty {
                live[id] = state
                try await carryOut(resumed, executionId: id, at: at)
                guard let current = live[id] else { continue }
                state = current
            }
            // A task Queued or Retrying with no queue item (the store was
            // written by an older version, or by hand) gets one; enqueueing
            // is idempotent, so items that exist are not doubled.
            var items: [QueueItem] = []
            for (key, run) in state.machine.tasks where run.state == .queued || run.state == .retrying {
                items.append(QueueItem(
                    queue: state.queueName(of: key), executionId: id, taskKey: key,
                    attempt: run.state == .queued ? run.attempt : run.attempt + 1, priority: state.priority, readyAt: at))
            }
            try await queue.enqueue(items)
        }
        for name in [Self.builtinQueue, Self.timerQueue] { signal.notify(name) }
        // Started here or not, each counts once as in flight.
        let unfinished = try await executions.unfinishedCount()
        metrics?.setInFlight(unfinished)
        return unfinished
    }

    public enum CancelResult: Sendable, Equatable {
        case cancelled
        case alreadyFinished(status: ExecutionStatus)
        case notFound
    }

    /// Cancels an execution: running attempts are stopped, waiting tasks never start.
    public func cancel(executionId: String, reason: String) async throws -> CancelResult {
        pin(executionId)
        defer { unpin(executionId) }
        guard try await load(executionId) != nil, var state = live[executionId] else {
            guard let record = try await executions.execution(id: executionId) else { return .notFound }
            return .alreadyFinished(status: record.status)
        }
        let at = now()
        let effects = state.machine.cancel(reason: reason, at: at)
        guard !effects.isEmpty else { return .alreadyFinished(status: state.machine.status) }
        live[executionId] = nil
        try await carryOut(effects, executionId: executionId, at: at, machine: state.machine, live: state)
        return .cancelled
    }

    /// Attaches (or, with nil, detaches) the in-process workers that take
    /// ready built-in tasks straight from their commit.
    public func attach(_ dispatcher: (any DirectDispatch)?) { self.dispatcher = dispatcher }

    /// At shutdown: ends the spans of executions and external attempts still
    /// running, marked as interrupted, so what they covered so far is
    /// exported. The executions go on after the next start, under their
    /// stored trace context.
    public func endOpenSpans() {
        for span in executionSpans.values {
            span.attributes[SpanKeys.executionStatus] = "Running"
            span.attributes[SpanKeys.interrupted] = true
            span.end()
        }
        for span in externalSpans.values {
            span.attributes[SpanKeys.interrupted] = true
            span.end()
        }
        executionSpans.removeAll()
        externalSpans.removeAll()
    }

    /// Waits until every log line handed over so far is stored.
    public func flushLogs() async { await logWriter.flush() }

    // MARK: In-process work

    /// Leases and runs up to `limit` ready items of the built-in and timer
    /// queues; returns how many. The leases of a batch run concurrently; a
    /// failure of one does not hold up the others. The first error is rethrown.
    @discardableResult
    public func runReadyTasks(worker: String, limit: Int = 16) async throws -> Int {
        var leases = try await queue.lease(
            queue: Self.timerQueue, worker: worker, now: now(), duration: leaseDuration, limit: limit)
        leases += try await queue.lease(
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

    /// Leases up to `limit` ready items of `queue` for this process's workers.
    func lease(_ queueName: String, worker: String, limit: Int) async throws -> [Lease] {
        try await queue.lease(queue: queueName, worker: worker, now: now(), duration: leaseDuration, limit: limit)
    }

    /// Runs one leased item of the built-in or timer queue.
    /// A worker slot held by the attempt being handled: the commit that
    /// records its outcome may pass the slot on to the next task it queues
    /// (the execution keeps going on the same slot instead of queueing
    /// behind new executions).
    final class Slot {
        var passed = false
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

    func handle(_ lease: Lease, slot: Slot? = nil) async throws {
        if lease.reclaimed { metrics?.leaseExpired(queue: lease.item.queue) }
        if lease.item.queue == Self.timerQueue {
            metrics?.timerFiredLate(Date().timeIntervalSince(lease.item.readyAt))
            return try await fireTimer(lease)
        }
        let executionId = lease.item.executionId
        let key = lease.item.taskKey
        let attempt = lease.item.attempt
        let jobKey = "\(executionId)|\(key)|\(attempt)"
        if running[jobKey] != nil {
            // Still running here though its lease lapsed: the run in progress
            // takes over this newer lease (and its token) instead of a second run.
            heldLeases[jobKey] = lease
            return
        }
        pin(executionId)
        defer { unpin(executionId) }
        guard try await load(executionId) != nil, var state = live[executionId], let task = state.tasks[key] else {
            try await discard(lease)  // the execution ended; nothing to do
            return
        }
        let at = now()
        var effects = startEffects(&state, key: key, attempt: attempt, lease: lease, at: at)
        guard let current = state.machine.tasks[key], current.state == .running, current.attempt == attempt else {
            // Already finished (a re-delivery after its outcome was stored), or stale.
            live[executionId] = state
            try await carryOut(effects, executionId: executionId, at: at, lease: .complete(lease))
            return
        }
        live[executionId] = state
        // The attempt's span ends when its outcome is known, before the
        // commit that records it (which may end the execution and its span).
        let span = taskSpan(state, executionId: executionId, task: task, attempt: attempt)

        if task.action == .delay {
            do {
                try await carryOut(effects, executionId: executionId, at: at)
            } catch {
                span?.end()
                throw error
            }
            span?.end()
            return try await delay(lease, task: task, executionId: executionId, at: at)
        }
        guard let runner = runners[task.action] else {
            let outcome = TaskOutcome.failed(.init(kind: "config", message: "no runner for task type \"\(task.action)\" here"))
            Self.end(span, outcome)
            return try await record(lease, outcome, executionId: executionId, deferred: effects)
        }
        let invocation: TaskInvocation
        do {
            invocation = try TaskInvocation.make(task, executionId: executionId, attempt: attempt, context: state.context)
        } catch {
            let outcome = TaskOutcome.failed(.init(kind: "config", message: "config: \(error.description)"))
            Self.end(span, outcome)
            return try await record(lease, outcome, executionId: executionId, deferred: effects)
        }
        if runner.isInstant {
            // Nothing observable happens between start and outcome: commit
            // both at once. An attempt timeout cannot fire in between.
            effects.removeAll { if case .armTimer(.attemptTimeout, _) = $0 { true } else { false } }
            // Its lines are logged after its "started" line, as for any task.
            let collected = CollectedLines()
            let clock = now
            let outcome = await runner.run(invocation) { level, message in
                collected.add(LogRecord(executionId: executionId, taskId: task.id, level: level, message: message, createdAt: clock()))
            }
            Self.end(span, outcome)
            return try await record(
                lease, outcome, executionId: executionId, deferred: effects, lines: collected.lines, slot: slot)
        }

        do {
            try await carryOut(effects, executionId: executionId, at: at)
        } catch {
            span?.end()
            throw error
        }
        // A timeout or cancel may have ended this attempt while the commit
        // was awaited: then it must not start.
        guard let now = live[executionId]?.machine.tasks[key], now.state == .running, now.attempt == attempt else {
            span?.attributes[SpanKeys.taskOutcome] = "cancelled"
            span?.end()
            try await discard(lease)
            return
        }
        let log = logger(executionId: executionId, taskId: task.id)
        let meter = UsageMeter()
        let spanContext = span?.context
        let job = Task { await Self.run(runner, invocation, log: log, context: spanContext, meter: meter) }
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
        let outcome = await job.value
        heartbeat.cancel()
        running[jobKey] = nil
        Self.end(span, outcome)
        try await finish(lease, outcome, executionId: executionId, usage: meter.reading, slot: slot)
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

    /// A `weft.task` span for an attempt, child of its execution's span
    /// (or of the stored context after a restart); nil when tracing is off.
    private func taskSpan(_ state: Live, executionId: String, task: TaskRecord, attempt: Int) -> (any Span)? {
        guard WeftTracing.isEnabled,
            let parent = executionSpans[executionId]?.context
                ?? (state.trace.isEmpty ? nil : WeftTracing.context(from: state.trace)),
            let span = WeftTracing.startChild(SpanNames.task, context: parent)
        else { return nil }
        span.attributes[SpanKeys.workflowId] = state.workflowId
        span.attributes[SpanKeys.executionId] = executionId
        span.attributes[SpanKeys.taskId] = task.id
        span.attributes[SpanKeys.taskKey] = task.key
        span.attributes[SpanKeys.taskType] = task.action.rawValue
        span.attributes[SpanKeys.taskAttempt] = attempt
        return span
    }

    private static func end(_ span: (any Span)?, _ outcome: TaskOutcome) {
        guard let span else { return }
        defer { span.end() }
        switch outcome {
        case .completed:
            span.attributes[SpanKeys.taskOutcome] = "completed"
        case .failed(let error):
            span.attributes[SpanKeys.taskOutcome] = "failed"
            span.attributes[SpanKeys.taskErrorKind] = error.kind
            span.setStatus(SpanStatus(code: .error, message: error.message))
        }
    }

    /// Logs inside the trace of an execution (its lines carry its trace id).
    private func logTraced(_ traceparent: String?, _ tracestate: String?, _ body: (Logger) -> Void) {
        guard WeftTracing.isEnabled, traceparent != nil else { return body(logger) }
        InstrumentationContext.withValue(
            WeftTracing.context(from: TraceHeaders(traceparent: traceparent, tracestate: tracestate))
        ) { body(logger) }
    }

    /// The effects of an attempt starting (including a retry whose backoff
    /// is over); records its start time and wait.
    private func startEffects(
        _ state: inout Live, key: String, attempt: Int, lease: Lease, at: Date
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
    private func delay(_ lease: Lease, task: TaskRecord, executionId: String, at: Date) async throws {
        guard let state = live[executionId] else { return try await discard(lease) }
        let started = state.startedAt[task.key] ?? at
        let due: Date
        do {
            let config = try Template.resolve(task.config, state.context)
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
            return try await record(lease, .failed(.init(kind: "config", message: "\(error)")), executionId: executionId)
        }
        if due > at {
            heldLeases["\(executionId)|\(task.key)|\(lease.item.attempt)"] = nil
            try await commit([.releaseLease(id: lease.id, token: lease.token, readyAt: due)])
            signal.notify(Self.builtinQueue, at: due)
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

    /// Records an attempt's outcome under its lease; returns false if the
    /// attempt had already ended (timeout, cancel, a result recorded before):
    /// then nothing is recorded. The state is read, changed and written back
    /// with no suspension in between, then committed with the lease's completion.
    @discardableResult
    private func finish(
        _ lease: Lease, _ outcome: TaskOutcome, executionId: String, deferred: [ExecutionStateMachine.Effect] = [],
        lines: [LogRecord] = [], usage: UsageMeter.Reading = .init(), slot: Slot? = nil
    ) async throws -> Bool {
        let key = lease.item.taskKey
        let attempt = lease.item.attempt
        let lease = heldLeases.removeValue(forKey: "\(executionId)|\(key)|\(attempt)") ?? lease
        guard try await load(executionId) != nil, var state = live[executionId] else {
            // The execution ended meanwhile (this attempt was stopped); what
            // it sent and received is still charged (to the stored cost only:
            // its workflow's name for the metric is gone with it).
            let sent = costRates.attemptEnded(type: nil, seconds: 0, usage: usage)
            if !sent.isZero { try? await commit([.cost(executionId: executionId, sent)]) }
            try await discard(lease)
            return false
        }
        let at = now()
        let effects: [ExecutionStateMachine.Effect]
        switch outcome {
        case .completed(let output): effects = state.machine.taskSucceeded(key, attempt: attempt, output: output, at: at)
        case .failed(let error): effects = state.machine.taskFailed(key, attempt: attempt, error: error, at: at)
        }
        guard !effects.isEmpty else {
            // This attempt is over already (stopped by a timeout or cancel,
            // which charged its time); its start (if deferred) and outcome
            // are dropped, the queue item goes. What it sent and received
            // is still charged.
            let sent = costRates.attemptEnded(type: state.tasks[key]?.action, seconds: 0, usage: usage)
            if !sent.isZero {
                try? await commit([.cost(executionId: executionId, sent)])
                metrics?.costAccrued(workflow: state.workflowName, sent)
            }
            try await discard(lease)
            return false
        }
        let type = state.tasks[key]?.action ?? .other("?")
        var cost = ExecutionCost()
        if let started = state.startedAt[key] {
            let outcomeName: String = if case .completed = outcome { "completed" } else { "failed" }
            metrics?.taskFinished(type: type, outcome: outcomeName, at.timeIntervalSince(started))
            cost = costRates.attemptEnded(type: type, seconds: at.timeIntervalSince(started), usage: usage)
        }
        let running = state.machine.status == .running
        live[executionId] = running ? state : nil
        try await carryOut(
            deferred + effects, executionId: executionId, at: at, machine: state.machine, live: state,
            lease: .complete(lease), taskLines: lines, cost: cost, slot: slot)
        return true
    }

    /// `finish` for callers that return nothing.
    private func record(
        _ lease: Lease, _ outcome: TaskOutcome, executionId: String, deferred: [ExecutionStateMachine.Effect] = [],
        lines: [LogRecord] = [], slot: Slot? = nil
    ) async throws {
        try await finish(lease, outcome, executionId: executionId, deferred: deferred, lines: lines, slot: slot)
    }

    /// Completes a lease whose work is moot; losing it meanwhile is fine.
    private func discard(_ lease: Lease) async throws {
        do {
            try await commit([.completeLease(id: lease.id, token: lease.token)])
        } catch is StoreError {
            // Someone else holds it now, or it is gone: nothing to discard.
        }
    }

    // MARK: Timers

    static func timerItem(_ timer: ExecutionStateMachine.Timer) -> (key: String, attempt: Int)? {
        switch timer {
        case .retry: return nil  // retries are the task's own delayed queue item
        case .attemptTimeout(let task, let attempt): return ("~attempt:" + task, attempt)
        case .taskTimeout(let task): return ("~task:" + task, 0)
        case .executionTimeout: return ("~execution", 0)
        }
    }

    static func timer(from item: QueueItem) -> ExecutionStateMachine.Timer? {
        let key = item.taskKey
        if key == "~execution" { return .executionTimeout }
        if key.hasPrefix("~attempt:") { return .attemptTimeout(task: String(key.dropFirst(9)), attempt: item.attempt) }
        if key.hasPrefix("~task:") { return .taskTimeout(task: String(key.dropFirst(6))) }
        return nil
    }

    private func fireTimer(_ lease: Lease) async throws {
        let executionId = lease.item.executionId
        pin(executionId)
        defer { unpin(executionId) }
        guard let timer = Self.timer(from: lease.item), try await load(executionId) != nil, var state = live[executionId]
        else { return try await discard(lease) }
        let at = now()
        let effects = state.machine.timerFired(timer, at: at)
        live[executionId] = state.machine.status == .running ? state : nil
        try await carryOut(effects, executionId: executionId, at: at, machine: state.machine, live: state, lease: .complete(lease))
    }

    // MARK: External workers

    public enum ExternalError: Error, Sendable, Equatable {
        /// The token is not a lease token at all.
        case malformedToken
        /// Lost (expired and taken by another worker), completed, or not the caller's.
        case leaseLost(String)
        /// The attempt ended (timeout, cancel, execution over); nothing recorded.
        case attemptEnded(String)
    }

    /// Leases the next ready task of an external queue and starts it: its
    /// start is committed before the worker hears of it. Returns nil when
    /// nothing is ready (items that turn out moot are skipped).
    public func pollExternal(queue name: String, worker: String, leaseDuration: TimeInterval) async throws -> ExternalTask? {
        for _ in 0..<32 {
            guard let lease = try await queue.lease(
                queue: name, worker: worker, now: now(), duration: leaseDuration, limit: 1
            ).first else { return nil }
            if let task = try await startExternal(lease) { return task }
        }
        return nil
    }

    private func startExternal(_ lease: Lease) async throws -> ExternalTask? {
        if lease.reclaimed { metrics?.leaseExpired(queue: lease.item.queue) }
        let executionId = lease.item.executionId
        let key = lease.item.taskKey
        let attempt = lease.item.attempt
        pin(executionId)
        defer { unpin(executionId) }
        guard try await load(executionId) != nil, var state = live[executionId], let task = state.tasks[key] else {
            try await discard(lease)
            return nil
        }
        let at = now()
        let effects = startEffects(&state, key: key, attempt: attempt, lease: lease, at: at)
        guard let current = state.machine.tasks[key], current.state == .running, current.attempt == attempt else {
            live[executionId] = state
            try await carryOut(effects, executionId: executionId, at: at, lease: .complete(lease))
            return nil
        }
        live[executionId] = state
        let invocation: TaskInvocation
        do {
            invocation = try TaskInvocation.make(task, executionId: executionId, attempt: attempt, context: state.context)
        } catch {
            try await finish(
                lease, .failed(.init(kind: "config", message: "config: \(error.description)")), executionId: executionId,
                deferred: effects)
            return nil
        }
        try await carryOut(effects, executionId: executionId, at: at)
        guard let now = live[executionId]?.machine.tasks[key], now.state == .running, now.attempt == attempt else {
            try await discard(lease)
            return nil
        }
        // The attempt's span runs until the worker reports; the worker gets
        // its context to continue the trace.
        var trace = TraceHeaders()
        if let span = taskSpan(state, executionId: executionId, task: task, attempt: attempt) {
            trace = WeftTracing.headers(of: span.context)
            let jobKey = "\(executionId)|\(key)|\(attempt)"
            if let previous = externalSpans.removeValue(forKey: jobKey) {
                previous.attributes[SpanKeys.taskOutcome] = "lease_expired"
                previous.end()
            }
            if externalSpans.count < Self.maxOpenSpans { externalSpans[jobKey] = span } else { span.end() }
        }
        return ExternalTask(
            lease: lease, workflowId: state.workflowId, executionId: executionId, taskId: task.id, taskKey: key,
            attempt: attempt, input: invocation.config["input"] ?? .emptyObject, config: invocation.config, trace: trace)
    }

    /// The lease behind a worker's token, if the caller (`owner`) holds it.
    private func externalLease(_ handle: String, owner: String) async throws -> Lease {
        guard let (id, token) = Lease.parse(handle: handle) else { throw ExternalError.malformedToken }
        guard let lease = try await queue.lease(id: id, token: token),
            lease.item.queue.hasPrefix(Self.externalQueue(owner: owner, name: ""))
        else {
            throw ExternalError.leaseLost(
                "the lease is no longer held: it expired and the task went to another worker, or its result was already recorded")
        }
        return lease
    }

    /// Extends an external worker's lease while its attempt still runs.
    public func heartbeatExternal(_ handle: String, owner: String, duration: TimeInterval) async throws -> Lease {
        let lease = try await externalLease(handle, owner: owner)
        let executionId = lease.item.executionId
        pin(executionId)
        defer { unpin(executionId) }
        guard try await load(executionId) != nil, let run = live[executionId]?.machine.tasks[lease.item.taskKey],
            run.state == .running, run.attempt == lease.item.attempt
        else {
            try await discard(lease)
            throw ExternalError.attemptEnded(
                "attempt \(lease.item.attempt) of task \(lease.item.taskKey) is over (timed out, cancelled, or the execution ended); stop working on it")
        }
        do {
            return try await queue.heartbeat(lease, now: now(), duration: duration)
        } catch is StoreError {
            throw ExternalError.leaseLost("the lease expired and the task went to another worker")
        }
    }

    /// Records an external worker's outcome under its lease.
    public func completeExternal(_ handle: String, owner: String, outcome: TaskOutcome, logLines: [String]) async throws {
        let lease = try await externalLease(handle, owner: owner)
        let executionId = lease.item.executionId
        pin(executionId)
        defer { unpin(executionId) }
        let taskId = try await load(executionId).flatMap { $0.tasks[lease.item.taskKey]?.id }
        if !logLines.isEmpty {
            let at = now()
            logWriter.append(logLines.map {
                LogRecord(executionId: executionId, taskId: taskId, level: .info, message: $0, createdAt: at)
            })
        }
        let recorded: Bool
        let span = externalSpans.removeValue(forKey: "\(executionId)|\(lease.item.taskKey)|\(lease.item.attempt)")
        Self.end(span, outcome)
        do {
            recorded = try await finish(lease, outcome, executionId: executionId)
        } catch StoreError.conflict {
            throw ExternalError.leaseLost("the lease expired and the task went to another worker; this result was not recorded")
        }
        guard recorded else {
            throw ExternalError.attemptEnded(
                "attempt \(lease.item.attempt) of task \(lease.item.taskKey) was already over (timed out, cancelled, or the execution ended); this result was not recorded")
        }
    }

    // MARK: Internals

    private func pin(_ id: String) { pins[id, default: 0] += 1 }

    private func unpin(_ id: String) {
        if let count = pins[id], count > 1 { pins[id] = count - 1 } else { pins[id] = nil }
    }

    private func logger(executionId: String, taskId: String) -> @Sendable (LogRecord.Level, String) async -> Void {
        let writer = logWriter
        let clock = now
        return { level, message in
            await writer.append([LogRecord(executionId: executionId, taskId: taskId, level: level, message: message, createdAt: clock())])
        }
    }

    /// Definitions executions run on, by "workflow id|version": versions
    /// never change, so reloading an execution (after a restart, or once
    /// evicted) costs one store read, not three.
    private var definitions: [String: (version: WorkflowVersionRecord, ownerId: String)] = [:]

    private func definition(_ workflowId: String, version number: Int) async throws
        -> (version: WorkflowVersionRecord, ownerId: String)?
    {
        let key = "\(workflowId)|\(number)"
        if let hit = definitions[key] { return hit }
        guard let version = try await workflows.workflowVersion(workflowId: workflowId, versionId: String(number)),
            let workflow = try await workflows.workflow(id: workflowId, includeDeleted: true)
        else { return nil }
        if definitions.count >= 1000 { definitions.removeAll(keepingCapacity: true) }
        definitions[key] = (version, workflow.ownerId)
        return (version, workflow.ownerId)
    }

    private func startPending(_ record: ExecutionRecord) async throws {
        guard let (version, ownerId) = try await definition(record.workflowId, version: record.workflowVersion)
        else { return }
        var machine = ExecutionStateMachine(tasks: version.tasks)
        let at = now()
        let effects = machine.start(at: at)
        live[record.executionId] = Live(
            machine: machine, tasks: Dictionary(uniqueKeysWithValues: version.tasks.map { ($0.key, $0) }),
            input: record.input, workflowId: record.workflowId, workflowName: version.name, ownerId: ownerId,
            priority: record.priority, createdAt: record.createdAt,
            taskExecutionIds: Dictionary(uniqueKeysWithValues: record.tasks.map { ($0.taskKey, $0.taskExecutionId) }),
            trace: TraceHeaders(traceparent: record.traceParent, tracestate: record.traceState), cost: record.costBreakdown)
        try await carryOut(effects, executionId: record.executionId, at: at, start: (record, create: false))
    }

    /// The execution in memory, loaded from the store if needed; nil when
    /// unknown or finished.
    private func load(_ executionId: String) async throws -> Live? {
        if let existing = live[executionId] { return existing }
        if ended.contains(executionId) { return nil }
        guard let record = try await executions.execution(id: executionId), !record.isFinished, record.status != .pending,
            let (version, ownerId) = try await definition(record.workflowId, version: record.workflowVersion)
        else { return nil }
        var runs: [String: ExecutionStateMachine.TaskRun] = [:]
        for task in record.tasks {
            runs[task.taskKey] = ExecutionStateMachine.TaskRun(
                state: task.status, attempt: task.attempt,
                output: task.output, error: task.error.map { .init(kind: "restored", message: $0) })
        }
        var restored = Live(
            machine: ExecutionStateMachine(tasks: version.tasks, restoring: runs),
            tasks: Dictionary(uniqueKeysWithValues: version.tasks.map { ($0.key, $0) }), input: record.input,
            workflowId: record.workflowId, workflowName: version.name, ownerId: ownerId,
            priority: record.priority, createdAt: record.createdAt,
            taskExecutionIds: Dictionary(uniqueKeysWithValues: record.tasks.map { ($0.taskKey, $0.taskExecutionId) }),
            trace: TraceHeaders(traceparent: record.traceParent, tracestate: record.traceState), cost: record.costBreakdown)
        // The store keeps a task's first start: it is the current attempt's
        // only for a first attempt (later ones restart their clock when
        // re-delivered, see `startEffects`).
        for task in record.tasks where task.attempt <= 1 { restored.startedAt[task.taskKey] = task.startedAt }
        // Another handler may have loaded it (or ended it) while this one
        // awaited the store.
        if let existing = live[executionId] { return existing }
        if ended.contains(executionId) { return nil }
        evictIfNeeded()
        live[executionId] = restored
        return restored
    }

    /// Drops a tenth of the executions no operation is working on when
    /// memory holds more than `maxLive`; they reload on their next event.
    private func evictIfNeeded() {
        guard live.count >= maxLive else { return }
        var budget = maxLive / 10
        // A running attempt pins its execution (`handle` holds the pin until
        // the outcome is committed), so unpinned means idle.
        for key in live.keys where pins[key] == nil {
            live[key] = nil
            budget -= 1
            if budget == 0 { break }
        }
    }

    private func markEnded(_ executionId: String) {
        ended.insert(executionId)
        endedOrder.append(executionId)
        if endedOrder.count > 20_000 {
            for old in endedOrder.prefix(10_000) { ended.remove(old) }
            endedOrder.removeFirst(10_000)
        }
    }

    private func commit(_ transitions: [ExecutionTransition]) async throws {
        do {
            try await committer.submit(transitions)
        } catch StoreError.alreadyExists(let message) {
            // A repeated idempotency key: an answer, not an engine error.
            throw StoreError.alreadyExists(message)
        } catch {
            metrics?.error(error is StoreError ? "store_conflict" : "store")
            throw error
        }
    }

    /// Commits the effects' state changes with the queue operations they
    /// imply (and `lease`'s completion), then tells workers, watchers and
    /// the log. `machine`/`live`: the state to use when the caller already
    /// removed a finished execution from memory.
    private func carryOut(
        _ effects: [ExecutionStateMachine.Effect], executionId: String, at: Date,
        start: (record: ExecutionRecord, create: Bool)? = nil,
        machine given: ExecutionStateMachine? = nil, live givenLive: Live? = nil, lease: LeaseOperation? = nil,
        taskLines: [LogRecord] = [], cost attemptCost: ExecutionCost = ExecutionCost(), slot: Slot? = nil
    ) async throws {
        guard !effects.isEmpty || start != nil || lease != nil else { return }
        guard let state = givenLive ?? live[executionId] else {
            if let lease, case .complete(let held) = lease { try await discard(held) }
            return
        }
        let machine = given ?? state.machine
        var transitions: [ExecutionTransition] = []
        var lines: [LogRecord] = []
        if let start {
            if start.create { transitions.append(.create(start.record)) }
            transitions.append(.execution(id: executionId, status: .running, at: at))
            lines.append(LogRecord(
                executionId: executionId, taskId: nil, level: .info,
                message: "execution started (workflow version \(start.record.workflowVersion), trigger \(start.record.trigger))",
                createdAt: at))
        }
        var wake: Set<String> = []
        var direct: [Lease] = []
        var reserved = 0
        var passedHere = false
        var later: [(String, Date)] = []
        var updates: [ExecutionUpdate] = []
        var finished: (ExecutionStatus, String?)?
        // Attempts started here, attempts stopped here (timeouts, cancel), and
        // the attempt whose outcome this is (`attemptCost`).
        var cost = attemptCost
        for effect in effects {
            switch effect {
            case .taskState(let key, let taskState, let attempt):
                let run = machine.tasks[key]
                let output = taskState == .completed ? run?.output : nil
                let error = taskState == .failed || taskState == .retrying ? run?.error?.message : nil
                transitions.append(.task(
                    executionId: executionId, taskKey: key, status: taskState, attempt: attempt, at: at,
                    output: output, error: error))
                let task = state.tasks[key]
                if taskState == .retrying { metrics?.retried(type: task?.action ?? .other("?")) }
                if taskState == .running { cost += costRates.attemptStarted() }
                let line = Self.logLine(key: key, state: taskState, attempt: attempt, error: run?.error)
                if let line {
                    lines.append(LogRecord(executionId: executionId, taskId: task?.id, level: line.level, message: line.text, createdAt: at))
                }
                if taskState == .running { lines += taskLines }
                // Watchers subscribe at any moment, so the update is built
                // whether or not anyone watches now. A task changes while the
                // execution runs; its end is a separate update.
                let record = TaskExecutionRecord(
                    taskExecutionId: state.taskExecutionIds[key] ?? "", taskId: task?.id ?? "", taskKey: key,
                    status: taskState, attempt: attempt, output: output, error: error,
                    startedAt: state.startedAt[key], completedAt: taskState.isTerminal ? at : nil)
                updates.append(.state(status: .running, task: record, message: line?.text ?? "", at: at))
            case .enqueue(let key, let attempt):
                let name = state.queueName(of: key)
                var item = QueueItem(
                    queue: name, executionId: executionId, taskKey: key, attempt: attempt, priority: state.priority,
                    readyAt: at)
                let passing = slot.map { !$0.passed } ?? false
                if name == Self.builtinQueue, let dispatcher, passing || dispatcher.reserve() {
                    // A worker slot is free (or the finishing attempt passes
                    // its own on): lease the item in this commit and hand it
                    // over once committed.
                    if passing {
                        slot?.passed = true
                        passedHere = true
                    } else {
                        reserved += 1
                    }
                    let token = IDGenerator.make("lse", now: at)
                    let expires = at.addingTimeInterval(leaseDuration)
                    item.directLease = DirectLease(token: token, worker: "direct", expiresAt: expires)
                    direct.append(Lease(id: 0, item: item, token: token, expiresAt: expires, deliveries: 1))
                } else {
                    wake.insert(name)
                }
                transitions.append(.enqueue(item))
            case .armTimer(.retry(let key, let attempt), let when):
                // The backoff is a delayed queue item: durable like any other.
                let name = state.queueName(of: key)
                transitions.append(.enqueue(QueueItem(
                    queue: name, executionId: executionId, taskKey: key, attempt: attempt, priority: state.priority,
                    readyAt: when)))
                later.append((name, when))
            case .armTimer(let timer, let when):
                guard let (key, attempt) = Self.timerItem(timer) else { continue }
                transitions.append(.enqueue(QueueItem(
                    queue: Self.timerQueue, executionId: executionId, taskKey: key, attempt: attempt, readyAt: when)))
                later.append((Self.timerQueue, when))
            case .stop(let key, let attempt):
                running["\(executionId)|\(key)|\(attempt)"]?.cancel()
                if let span = externalSpans.removeValue(forKey: "\(executionId)|\(key)|\(attempt)") {
                    span.attributes[SpanKeys.taskOutcome] = "stopped"
                    span.end()
                }
                if let started = state.startedAt[key] {
                    cost += costRates.attemptEnded(type: state.tasks[key]?.action, seconds: at.timeIntervalSince(started))
                }
            case .finished(let status, let error):
                transitions.append(.execution(id: executionId, status: status, at: at, error: error))
                finished = (status, error)
            }
        }
        if !cost.isZero {
            transitions.append(.cost(executionId: executionId, cost))
            // Counted in memory before the commit is awaited, so an ending
            // that races with this share still sees it (a failed commit
            // forgets the execution below, cost and all).
            live[executionId]?.cost += cost
        }
        switch lease {
        case .complete(let held)?: transitions.append(.completeLease(id: held.id, token: held.token))
        case .release(let held, let readyAt)?:
            transitions.append(.releaseLease(id: held.id, token: held.token, readyAt: readyAt))
        case nil: break
        }
        let ending = machine.status != .running && !ended.contains(executionId)
        if ending { markEnded(executionId) }
        let dispatcher = self.dispatcher
        do {
            try await commit(transitions)
        } catch {
            // Memory must not run ahead of the store: forget the execution so
            // the next event reloads it from what was actually committed.
            live[executionId] = nil
            if ending { ended.remove(executionId) }
            for _ in 0..<reserved { dispatcher?.cancelReservation() }
            if passedHere { slot?.passed = false }
            throw error
        }
        let visible = Date()
        // Work started from here is not part of the caller's request: the
        // tasks it spawns must not inherit its trace context.
        InstrumentationContext.withValue(nil) {
            for var lease in direct {
                lease.visibleAt = visible
                dispatcher?.run(lease)
            }
            if !lines.isEmpty { logWriter.append(lines) }
        }
        if start != nil { metrics?.executionStarted(workflow: state.workflowName) }
        if !cost.isZero { metrics?.costAccrued(workflow: state.workflowName, cost) }
        for name in wake { signal.notify(name) }
        for (name, when) in later { signal.notify(name, at: when) }
        if feed.hasSubscribers(executionId) { for update in updates { feed.publish(executionId, update) } }
        if let (status, error) = finished {
            live[executionId] = nil
            metrics?.executionFinished(
                workflow: state.workflowName, status: status.rawValue, duration: at.timeIntervalSince(state.createdAt))
            let total = state.cost + cost
            metrics?.executionCosted(total.total)
            executionEnded(executionId, state: state, status: status, error: error, cost: total)
            logWriter.append(
                [LogRecord(
                    executionId: executionId, taskId: nil, level: status == .completed ? .info : .error,
                    message: "execution \(status.rawValue.lowercased())\(error.map { ": \($0)" } ?? "")", createdAt: at)],
                final: executionId)
            feed.publish(
                executionId,
                .state(status: status, task: nil, message: error ?? "execution \(status.rawValue.lowercased())", at: at))
            feed.publish(executionId, .finished(status: status))
        }
    }

    /// Ends an execution's span (if this process started it) and logs its end.
    private func executionEnded(
        _ executionId: String, state: Live, status: ExecutionStatus, error: String?, cost: ExecutionCost
    ) {
        if let span = executionSpans.removeValue(forKey: executionId) {
            span.attributes[SpanKeys.executionStatus] = status.rawValue
            span.attributes[SpanKeys.executionCost] = cost.total
            if status != .completed { span.setStatus(SpanStatus(code: .error, message: error)) }
            span.end()
        }
        if logger.logLevel <= .debug {
            logTraced(state.trace.traceparent, state.trace.tracestate) {
                $0.debug(
                    "execution finished",
                    metadata: [
                        "execution_id": "\(executionId)", "status": "\(status.rawValue)",
                        "cost_dollars": "\(cost.total)",
                    ])
            }
        }
    }

    /// Lines an instant runner writes, kept until its start is committed.
    final class CollectedLines: Sendable {
        private let store = Mutex<[LogRecord]>([])
        func add(_ line: LogRecord) { store.withLock { $0.append(line) } }
        var lines: [LogRecord] { store.withLock { $0 } }
    }

    /// The log line for a task state change (none for Queued: it is implied).
    static func logLine(
        key: String, state: TaskStatus, attempt: Int, error: ExecutionStateMachine.TaskError?
    ) -> (level: LogRecord.Level, text: String)? {
        let reason = error.map { " (\($0.kind)): \($0.message)" } ?? ""
        switch state {
        case .pending, .queued: return nil
        case .running: return (.info, "task \(key) started (attempt \(attempt))")
        case .completed: return (.info, "task \(key) completed (attempt \(attempt))")
        case .retrying: return (.warning, "task \(key) attempt \(attempt) failed\(reason); retrying")
        case .failed: return (.error, "task \(key) failed on attempt \(attempt)\(reason)")
        case .skipped: return (.info, "task \(key) skipped (its branch was not taken)")
        case .cancelled: return (.warning, "task \(key) cancelled")
        }
    }
}
