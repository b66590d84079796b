public import Foundation
public import Logging
public import ServiceLifecycle
import Tracing
import WeftObservability
public import WeftStore

/// Runs executions: drives each execution's `ExecutionStateMachine`, makes
/// every state change durable (group commit) before acting on it or telling
/// anyone, keeps the durable queue in step, and runs built-in tasks on
/// in-process workers (`WorkerPool`) and external tasks through the worker
/// protocol (`Engine+ExternalWorkers.swift`).
///
/// The pieces: `CommitPlanner` (pure: effects in, writes and after-commit
/// actions out), `ExecutionCache` (what is in memory), `RunningAttempts`
/// (in-process jobs and their leases), `TimerItem` (timers as queue items),
/// two `BatchWriter`s (state commits, execution log) and the `WakeTimer` of
/// `WorkSignal`, whose loops `run()` owns.
///
/// ## Durability
/// - A transition is committed before its effect runs and before watchers
///   hear of it; the queue items it creates and the lease it completes are
///   written in the same unit (`ExecutionTransition.enqueue`,
///   `.completeLease`), so state and queue never disagree, and one fsync
///   covers many executions (group commit).
/// - An outcome is recorded only under a valid lease: a worker that lost its
///   lease gets an error and its result is dropped (recorded once).
/// - Retry backoffs, delays and timeouts are queue items with a later
///   `readyAt` (timeouts on the timers queue), so they survive a restart.
/// - `recover()` (run at start) rebuilds unfinished executions from the store.
/// - Tasks of instant runners (noop, log, transform, condition) commit their
///   start together with their outcome: nobody can observe the start
///   earlier, so one transaction per task instead of two.
///
/// ## Reentrancy
/// The engine is an actor: its methods run one at a time, but every `await`
/// (a commit, a store read, a runner) lets other calls in. Its rules:
/// 1. A read-modify-write of an execution's state has no `await` inside:
///    `update(_:_:)` takes a synchronous closure, so it cannot suspend.
/// 2. State read before an `await` is stale after it: re-read it from the
///    cache (`isCurrent(_:)`), never act on an old copy.
/// 3. An operation that awaits while working on an execution pins it
///    (`pinned(_:_:)`), so eviction cannot drop it between its reads.
/// 4. Memory runs ahead of the store only while a commit is in flight:
///    the planned state is cached before the commit is awaited (so the next
///    event of the execution plans on it), and when that commit fails the
///    execution is dropped from memory and rebuilt from what was committed.
///    (A later unit of the same execution planned on the failed one may
///    still commit; that window is known and not closed yet.)
/// 5. An execution that ended here is never reloaded from the store (its
///    final commit may still be in flight).
///
/// ## Observability
/// An execution is one span (`weft.execution`), child of the request that
/// started it; each attempt is a `weft.task` span under it. The execution
/// span's W3C context is stored with the execution, so attempts run after a
/// restart still join its trace. Cost (`CostRates`) accrues in the commits
/// that start and end attempts.
public actor Engine: Service {
    let workflows: any WorkflowStore
    let executions: any ExecutionStore
    let queue: any QueueStore
    /// The durable queue (the scheduler leases its wake-ups from it).
    public nonisolated var queueStore: any QueueStore { queue }
    let runners: [TaskType: any TaskRunner]
    let now: @Sendable () -> Date
    let leaseDuration: TimeInterval
    let metrics: EngineMetrics?
    /// Which organizations and workflows the metrics name; told of creations.
    public nonisolated var workflowLabels: WorkflowLabels? { metrics?.labels }
    let costRates: CostRates
    /// Size and time caps every execution is held to.
    public nonisolated let limits: EngineLimits
    /// Organization secrets for `{{ secrets.NAME }}` (nil: none).
    let secrets: (any SecretSource)?
    /// Instant tasks run inside the unit that queues them
    /// (`Engine+Inline.swift`); off, they go through the queue and a worker
    /// like any task (tests that step through tasks one at a time).
    let inlineInstantTasks: Bool
    let planner: CommitPlanner
    let logger: Logger
    /// The group commit of state changes: one unit per caller.
    let commits: BatchWriter<[ExecutionTransition]>
    public nonisolated let feed: ExecutionFeed
    public nonisolated let signal: WorkSignal
    /// Subscriptions' index: events become outbox rows in their own unit.
    public nonisolated let notifier: (any EventNotifier)?
    public nonisolated let logWriter: LogWriter
    /// Admission control: the API asks it before starting an execution.
    public nonisolated let overload: OverloadGuard

    var cache: ExecutionCache
    /// Executions started and not finished, by organization (the
    /// `concurrent_executions` quota); rebuilt from the store by `recover`.
    var running: [String: Int] = [:]
    var attempts = RunningAttempts()
    var spans = OpenSpans()
    /// In-process workers that take ready built-in tasks at commit time.
    var dispatcher: (any DirectDispatch)?
    /// After the drain deadline at shutdown: outcomes of attempts still
    /// running are dropped (their items are delivered again after a restart).
    var abandoning = false
    /// `carryOut` calls past their commit whose after-commit actions (log
    /// lines, the end of an execution) have not run yet; the shutdown waits
    /// for them before it flushes the execution log.
    var carryingOut = 0
    var carryOutWaiters: [CheckedContinuation<Void, Never>] = []

    /// `run()` started: API calls are taken (recovery runs first inside it).
    nonisolated let started = Latch()
    /// Recovery finished: the worker pool may lease.
    nonisolated let ready = Latch()
    /// Graceful shutdown reached the engine (or `stop()`).
    nonisolated let stopping = Latch()
    private var recovery: Result<Int, EngineError>?

    public init(
        workflows: any WorkflowStore, executions: any ExecutionStore, queue: any QueueStore, logs: any LogStore,
        runners: [any TaskRunner] = [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner()],
        leaseDuration: TimeInterval = 60, maxLive: Int = 20_000, commitBatch: Int = 1000,
        metrics: EngineMetrics? = nil, costRates: CostRates = CostRates(), limits: EngineLimits = EngineLimits(),
        secrets: (any SecretSource)? = nil, admission: AdmissionLimits = AdmissionLimits(), inlineInstantTasks: Bool = true,
        logger: Logger = Logger(label: "weft.engine"), feed: ExecutionFeed = ExecutionFeed(),
        signal: WorkSignal = WorkSignal(), notifier: (any EventNotifier)? = nil,
        now: @escaping @Sendable () -> Date = { Date.nowMillis }
    ) {
        self.notifier = notifier
        self.workflows = workflows
        self.executions = executions
        self.queue = queue
        self.feed = feed
        self.signal = signal
        self.logWriter = LogWriter(store: logs, feed: feed) { [metrics, logger] lines, error in
            metrics?.error("log_write")
            logger.error("execution log: \(lines) lines could not be stored: \(error)")
        }
        self.metrics = metrics
        self.costRates = costRates
        self.limits = limits
        self.secrets = secrets
        self.inlineInstantTasks = inlineInstantTasks
        var planner = CommitPlanner(costRates: costRates)
        planner.instantTypes = Set(runners.filter(\.isInstant).map(\.action))
        self.planner = planner
        self.logger = logger
        let overload = OverloadGuard(limits: admission)
        self.overload = overload
        self.commits = BatchWriter(
            name: "commit", maxBatchWeight: commitBatch, weight: { $0.count },
            queueWait: { overload.observeCommitWait($0) }
        ) {
            [metrics] units in
            let outcomes = try await executions.applyEach(units)
            metrics?.committed(batch: units.reduce(0) { $0 + $1.count })
            return outcomes
        }
        self.runners = Dictionary(runners.map { ($0.action, $0) }, uniquingKeysWith: { _, last in last })
        self.now = now
        self.leaseDuration = leaseDuration
        self.cache = ExecutionCache(capacity: maxLive)
    }

    // MARK: Service

    /// Runs the engine's own loops (group commit, log writer, wake timer),
    /// resumes the executions left unfinished by the last run, and serves
    /// until graceful shutdown (or `stop()`). Then it writes what is still
    /// pending, ends the spans of executions still running (marked
    /// interrupted) and returns. Throws `EngineError.recoveryFailed` if the
    /// unfinished executions cannot be resumed.
    public nonisolated func run() async throws {
        started.open()
        let recovery = await withDiscardingTaskGroup { group -> Result<Int, EngineError> in
            group.addTask { await self.commits.run() }
            group.addTask { await self.logWriter.run() }
            group.addTask { await self.signal.runTimer() }
            let recovery: Result<Int, EngineError>
            do {
                recovery = .success(try await self.recover())
            } catch {
                recovery = .failure(.recoveryFailed("\(error)"))
            }
            await self.finishRecovery(recovery)
            if case .success = recovery { await self.waitForShutdown() }
            // Writers finish in order: the last commits log lines.
            self.commits.finish()
            await self.commits.flush()
            // The callers whose commits just returned still append their log lines.
            await self.carryOutsFinished()
            await self.logWriter.flush()
            self.logWriter.finish()
            self.signal.finishTimer()
            return recovery
        }
        await endOpenSpans()
        if case .failure(let error) = recovery { throw error }
    }

    /// Starts a graceful stop (what a SIGTERM does under a service group).
    public nonisolated func stop() { stopping.open() }

    /// Returns once recovery is done (the worker pool waits for it: leases
    /// it took before recovery released the old ones would be released too).
    /// Throws if recovery failed.
    public func waitUntilReady() async throws {
        await ready.wait()
        if case .failure(let error)? = recovery { throw error }
    }

    /// How many unfinished executions recovery found (nil before it ran).
    public var recovered: Int? { try? recovery?.get() }

    private func finishRecovery(_ result: Result<Int, EngineError>) {
        recovery = result
        ready.open()
        switch result {
        case .success(let count) where count > 0: logger.info("engine: resumed \(count) unfinished executions")
        case .failure(let error): logger.critical("\(error)")
        default: break
        }
    }

    private nonisolated func waitForShutdown() async {
        await stopping.openAtGracefulShutdown()
    }

    /// API calls before `run()` starts would wait for writers that never run.
    func requireRunning() throws {
        guard started.isOpen, !commits.isStopped else { throw EngineError.notRunning }
    }

    // MARK: Admission

    /// Whether a new execution may start now (nil), or why not: admission
    /// control's refusal, counted by reason and `source` (api, webhook,
    /// event). Callers ask before doing any work for the request.
    public nonisolated func admit(source: String) -> OverloadGuard.Refusal? {
        guard let refusal = overload.check() else { return nil }
        metrics?.admissionRejected(reason: refusal.reason.rawValue, source: source)
        return refusal
    }

    // MARK: Executions

    /// Executions of the organization started and not finished.
    public func runningExecutions(orgId: String) -> Int { running[orgId] ?? 0 }

    /// Executions started and not finished, by organization.
    public func runningByOrganization() -> [String: Int] { running }

    /// Starts an execution of the workflow's current version. With an
    /// idempotency key already used on this workflow, returns that execution.
    /// `maxRunning` (0: none) is the organization's concurrent_executions
    /// quota: checked and counted here, with no suspension in between.
    public func execute(
        _ workflow: WorkflowRecord, input: JSONValue, idempotencyKey: String?, trigger: TriggerKind, actor: String?,
        timeoutMs: Int64? = nil, priority: Int = 0, maxRunning: Int = 0
    ) async throws -> ExecutionRecord {
        try await start(
            workflow, input: input, idempotencyKey: idempotencyKey, trigger: trigger, actor: actor, timeoutMs: timeoutMs,
            priority: priority, maxRunning: maxRunning
        ).record
    }

    /// What started an execution, beyond its kind.
    public struct Origin: Sendable {
        /// The new execution's id (nil: a new one), for callers that write
        /// it in `alongside`.
        public var executionId: String?
        /// A schedule, webhook trigger or event id.
        public var triggerId: String?
        /// The schedule tick it runs for.
        public var scheduledAt: Date?
        /// Written in the unit that creates the execution (a schedule's
        /// guarded advance): the execution and these commit together or not
        /// at all. When the idempotency key names an earlier execution they
        /// are not written (`created` is false).
        public var alongside: [ExecutionTransition]

        public init(
            executionId: String? = nil, triggerId: String? = nil, scheduledAt: Date? = nil, alongside: [ExecutionTransition] = []
        ) {
            self.executionId = executionId
            self.triggerId = triggerId
            self.scheduledAt = scheduledAt
            self.alongside = alongside
        }
    }

    /// `execute`, telling whether the execution is new (`created`) or the
    /// one an idempotency key named before.
    public func start(
        _ workflow: WorkflowRecord, input: JSONValue, idempotencyKey: String?, trigger: TriggerKind, actor: String?,
        timeoutMs: Int64? = nil, priority: Int = 0, maxRunning: Int = 0, origin: Origin = Origin()
    ) async throws -> (record: ExecutionRecord, created: Bool) {
        try requireRunning()
        let org = workflow.orgId
        if maxRunning > 0, running[org, default: 0] >= maxRunning { throw EngineError.tooManyRunning(limit: maxRunning) }
        running[org, default: 0] += 1
        overload.executionStarted()
        var counted = true
        defer {
            // Not started after all (a failed commit, or an idempotency key
            // that names an execution started before).
            if !counted, let count = running[org] {
                running[org] = count > 1 ? count - 1 : nil
                overload.executionNotStarted()
            }
        }
        let at = now()
        var record = ExecutionRecord(
            executionId: origin.executionId ?? IDGenerator.make(IDGenerator.execution, now: at), workflowId: workflow.id,
            workflowVersion: workflow.version, status: .pending, input: input, idempotencyKey: idempotencyKey,
            trigger: trigger, priority: priority, createdBy: actor, createdAt: at,
            tasks: workflow.tasks.map {
                TaskExecutionRecord(
                    taskExecutionId: IDGenerator.make(IDGenerator.taskExecution, now: at), taskId: $0.id, taskKey: $0.key,
                    status: .pending)
            })
        record.triggerId = origin.triggerId
        record.scheduledAt = origin.scheduledAt
        let id = record.executionId
        // Child of the request's span (the task-local context); a new trace
        // when no request started it; none under an untraced request.
        let span = executionSpan(workflow, executionId: id)
        if let span {
            let headers = WeftTracing.headers(of: span.context)
            record.traceParent = headers.traceparent
            record.traceState = headers.tracestate
        }
        var machine = ExecutionStateMachine(tasks: workflow.tasks, executionTimeoutMs: timeoutMs)
        machine.maxAttemptTimeoutMs = limits.maxAttemptTimeoutMs
        let effects = machine.start(at: at)
        return try await pinned(id) {
            // Set when the first unit already ended it (instant tasks only).
            var ended: ExecutionStatus?
            cache[id] = ExecutionState(
                machine: machine, version: workflow.tasks, record: record, workflowName: workflow.name,
                ownerId: workflow.ownerId, orgId: workflow.orgId)
            if let span { spans.openExecution(id, span) }
            do {
                // The execution row, its start and its first queue items are
                // one unit of a group commit.
                ended = try await carryOut(
                    effects, executionId: id, at: at, start: (record, create: true), alongside: origin.alongside)
            } catch StoreError.alreadyExists {
                // The idempotency key is taken: answer with that execution.
                counted = false
                spans.closeExecution(id)?.end()
                return (try await executions.createExecution(record).execution, false)
            } catch {
                counted = false
                if let span = spans.closeExecution(id) {
                    span.recordError(error)
                    span.end()
                }
                throw error
            }
            if logger.logLevel <= .debug {
                logTraced(TraceHeaders(traceparent: record.traceParent, tracestate: record.traceState)) {
                    $0.debug(
                        "execution started",
                        metadata: [
                            "execution_id": "\(id)", "workflow_id": "\(workflow.id)", "trigger": "\(trigger.rawValue)",
                            "trigger_id": "\(origin.triggerId ?? "")",
                        ])
                }
            }
            var result = record
            result.status = ended ?? cache[id]?.machine.status ?? machine.status
            result.startedAt = at
            if ended != nil { result.completedAt = at }
            return (result, true)
        }
    }

    public enum CancelResult: Sendable, Equatable {
        case cancelled
        case alreadyFinished(status: ExecutionStatus)
        case notFound
    }

    /// Cancels an execution: running attempts are stopped, waiting tasks never start.
    public func cancel(executionId: String, reason: String) async throws -> CancelResult {
        try requireRunning()
        return try await pinned(executionId) {
            guard var state = try await load(executionId) else {
                guard let record = try await executions.execution(id: executionId) else { return .notFound }
                return .alreadyFinished(status: record.status)
            }
            let at = now()
            let effects = state.machine.cancel(reason: reason, at: at)
            guard !effects.isEmpty else { return .alreadyFinished(status: state.machine.status) }
            try await carryOut(effects, executionId: executionId, at: at, state: state)
            return .cancelled
        }
    }

    /// Resumes after a restart. Unfinished executions go on by themselves:
    /// their queue items (tasks, retries, delays, timers) are in the store,
    /// written with their state. Leases held by this process's workers before
    /// the restart are ended at once (external workers keep theirs until they
    /// expire). Executions with no task item left (never started, or every
    /// task done but the end not recorded) are rebuilt and moved on here.
    /// Returns how many executions were unfinished.
    func recover() async throws -> Int {
        try await queue.releaseAll(queues: EngineQueues.inProcess)
        // Counted first: recovery may finish some (a pending execution of
        // instant tasks ends in its first unit).
        let found = try await executions.unfinishedCount()
        let stalled = try await executions.stalledExecutions()
        let at = now()
        for record in stalled {
            let id = record.executionId
            try await pinned(id) {
                if record.status == .pending {
                    // Created but never started (a crash before the first commit).
                    return try await startPending(record)
                }
                guard var state = try await load(id) else { return }
                // Tasks whose dependencies all finished but that were never
                // queued (a crash between commits) are queued now.
                let resumed = state.machine.resume(at: at)
                if !resumed.isEmpty {
                    try await carryOut(resumed, executionId: id, at: at, state: state)
                    guard let current = cache[id] else { return }
                    state = current
                }
                // A task Queued or Retrying with no queue item (the store was
                // written by an older version, or by hand) gets one;
                // enqueueing is idempotent, so items that exist are not doubled.
                var items: [QueueItem] = []
                for (key, run) in state.machine.tasks where run.state == .queued || run.state == .retrying {
                    var item = QueueItem(
                        queue: state.queueName(of: key), executionId: id, taskKey: key,
                        attempt: run.state == .queued ? run.attempt : run.attempt + 1, priority: state.priority,
                        readyAt: at)
                    item.tenant = planner.tenant(of: key, state)
                    items.append(item)
                }
                try await queue.enqueue(items)
            }
        }
        for name in EngineQueues.inProcess { signal.notify(name) }
        // Started here or not, each counts once as in flight.
        let unfinished = try await executions.unfinishedCount()
        metrics?.setInFlight(unfinished)
        running = try await executions.unfinishedCountsByOrganization()
        overload.setInFlight(running.values.reduce(0, +))
        return found
    }

    private func startPending(_ record: ExecutionRecord) async throws {
        guard let (version, ownerId, orgId) = try await definition(record.workflowId, version: record.workflowVersion)
        else { return }
        var machine = ExecutionStateMachine(tasks: version.tasks)
        machine.maxAttemptTimeoutMs = limits.maxAttemptTimeoutMs
        let at = now()
        let effects = machine.start(at: at)
        cache[record.executionId] = ExecutionState(
            machine: machine, version: version.tasks, record: record, workflowName: version.name, ownerId: ownerId, orgId: orgId)
        try await carryOut(effects, executionId: record.executionId, at: at, start: (record, create: false))
    }

    /// Attaches (or, with nil, detaches) the in-process workers that take
    /// ready built-in tasks straight from their commit.
    public func attach(_ dispatcher: (any DirectDispatch)?) { self.dispatcher = dispatcher }

    /// Waits until every log line handed over so far is stored.
    public func flushLogs() async { await logWriter.flush() }

    // MARK: Memory (see the reentrancy rules above)

    /// Runs `body` with the execution pinned in memory.
    func pinned<T>(_ id: String, _ body: () async throws -> T) async rethrows -> T {
        cache.pin(id)
        defer { cache.unpin(id) }
        return try await body()
    }

    /// Changes an execution's state in place, with no suspension between
    /// the read and the write; nil when it is not in memory.
    @discardableResult
    func update<T>(_ id: String, _ change: (inout ExecutionState) -> T) -> T? {
        guard var state = cache[id] else { return nil }
        let result = change(&state)
        cache[id] = state
        return result
    }

    /// Whether `attempt` is still the running attempt of its task (after an
    /// await: a timeout or cancel may have ended it meanwhile).
    func isCurrent(_ attempt: AttemptID) -> Bool {
        cache[attempt.executionId]?.isRunning(attempt.taskKey, attempt: attempt.attempt) ?? false
    }

    /// The execution in memory, loaded from the store if needed; nil when
    /// unknown or finished.
    func load(_ executionId: String) async throws -> ExecutionState? {
        if let existing = cache[executionId] { return existing }
        if cache.hasEnded(executionId) { return nil }
        guard let record = try await executions.execution(id: executionId), !record.isFinished, record.status != .pending,
            let (version, ownerId, orgId) = try await definition(record.workflowId, version: record.workflowVersion)
        else { return nil }
        // Another call may have loaded it (or ended it) while this one
        // awaited the store.
        if let existing = cache[executionId] { return existing }
        if cache.hasEnded(executionId) { return nil }
        var restored = ExecutionState(restoring: record, version: version, ownerId: ownerId, orgId: orgId)
        restored.machine.maxAttemptTimeoutMs = limits.maxAttemptTimeoutMs
        cache[executionId] = restored
        return restored
    }

    /// The definition an execution runs on (cached: versions never change).
    func definition(_ workflowId: String, version number: Int) async throws
        -> (version: WorkflowVersionRecord, ownerId: String, orgId: String)?
    {
        if let hit = cache.definition(workflowId, version: number) { return hit }
        guard let version = try await workflows.workflowVersion(workflowId: workflowId, versionId: String(number)),
            let workflow = try await workflows.workflow(id: workflowId, includeDeleted: true)
        else { return nil }
        cache.remember(version, ownerId: workflow.ownerId, orgId: workflow.orgId)
        return (version, workflow.ownerId, workflow.orgId)
    }
}
