public import Foundation

/// One write of the engine's durable state: the vocabulary every
/// `ExecutionStore` applies. A caller's list of transitions is one unit
/// (all or nothing); see `ExecutionStore.applyEach`.
public enum ExecutionTransition: Sendable, Hashable {
    /// Sets the execution's status. `startedAt` is set by the first
    /// `.running`; `completedAt` by a finished status. `output` and `error`
    /// are kept when nil. Fails the unit (`notFound`) for an unknown id.
    case execution(
        id: String, status: ExecutionStatus, at: Date, output: JSONValue? = nil, error: String? = nil)
    /// Sets one task's status and attempt. `startedAt` is set by its first
    /// `.running` (a retry keeps the first start); `completedAt` by a
    /// terminal status. `output` and `error` are kept when nil. Fails the
    /// unit (`notFound`) for an unknown execution or task key. `cost`:
    /// dollars this change adds to the task's cost (its part of the
    /// execution's, for per-task statistics).
    case task(
        executionId: String, taskKey: String, status: TaskStatus, attempt: Int, at: Date, output: JSONValue? = nil,
        error: String? = nil, cost: Double = 0)
    /// Stores a new execution with its task rows; `StoreError.alreadyExists`
    /// if its idempotency key is taken on its workflow.
    case create(ExecutionRecord)
    /// Queue operations folded into the same transaction as the state
    /// changes they follow from, so a state and its queue item never
    /// disagree and one fsync covers both.
    case enqueue(QueueItem)
    /// Removes a leased item; fails the group (`StoreError.conflict`) if the
    /// lease was lost, so an outcome is recorded under a valid lease only.
    case completeLease(id: Int64, token: String)
    /// Gives a leased item back, leasable again at `readyAt`.
    case releaseLease(id: Int64, token: String, readyAt: Date)
    /// Removes a queued item nobody holds (a timer that is moot: its
    /// attempt ended); nothing when it is gone or leased.
    case dequeue(executionId: String, taskKey: String, attempt: Int)
    /// Removes an item whether or not someone holds it (a scheduler wake-up
    /// whose tick was handled: the schedule's guarded advance is what makes
    /// the tick once; the item only woke the scheduler). Nothing when gone.
    case removeQueued(executionId: String, taskKey: String, attempt: Int)
    /// Adds usage and dollars to an execution's cost. On an execution that
    /// finished in an earlier unit the dollars go into its rollups too
    /// (cost charged late).
    case cost(executionId: String, ExecutionCost)
    /// Adds dollars to one task's cost (its part of the execution's, for
    /// per-task statistics) when no `.task` of the unit carries them.
    case taskCost(executionId: String, taskKey: String, dollars: Double)
    /// Moves a schedule on (its next tick, what the tick did), in the unit
    /// that starts the tick's execution; fails the unit (`conflict`) when
    /// its guard does not hold, (`notFound`) when the schedule is gone.
    case schedule(ScheduleUpdate)
    /// A notification of the change this unit records (transactional
    /// outbox); a delivery id already stored adds nothing.
    case outbox(OutboxEntry)
}

public struct ExecutionQuery: Sendable, Hashable {
    public var workflowId: String
    public var limit: Int
    public var cursor: String?
    public var status: ExecutionStatus?
    public var startedAfter: Date?
    public var startedBefore: Date?

    public init(
        workflowId: String, limit: Int, cursor: String? = nil, status: ExecutionStatus? = nil, startedAfter: Date? = nil,
        startedBefore: Date? = nil
    ) {
        self.workflowId = workflowId
        self.limit = limit
        self.cursor = cursor
        self.status = status
        self.startedAfter = startedAfter
        self.startedBefore = startedBefore
    }
}

/// Executions and their tasks' states, and the queue operations that go
/// with them.
///
/// The contract every implementation keeps (the SQLite store and the
/// in-memory store run one conformance suite, `StoreConformance` in
/// WeftTestSupport; a PostgreSQL store must pass it too):
///
/// - **Transactions.** `apply` writes its transitions in order in one
///   transaction: all of them or none. `applyEach` writes several callers'
///   units in one transaction (one fsync: group commit) and isolates them:
///   a unit that fails is rolled back alone (a savepoint each in SQL) and
///   its error returned at its index; the others commit. Only a failure of
///   the transaction itself (I/O) throws, and then nothing is written.
/// - **Durability.** When `apply`/`applyEach` returns, what it reported as
///   written survives a crash of the process (and, with synchronous
///   commits, of the machine). The engine acts on a change only after that.
/// - **Idempotency keys.** At most one execution per (workflow, key).
///   `createExecution` returns the existing one instead (`created` false);
///   the `.create` transition fails its unit with `alreadyExists`.
/// - **Queue items in the same unit.** `.enqueue`, `.completeLease` and
///   `.releaseLease` follow the `QueueStore` rules and commit or roll back
///   with the state changes of their unit, so a task's state and its queue
///   item never disagree. A lost lease fails the unit with `conflict`.
/// - **Reads** see committed data only, never part of a unit.
public protocol ExecutionStore: Sendable {
    /// Stores a new execution with its task rows. With an idempotency key
    /// already used on this workflow, returns that execution instead
    /// (`created` false) and stores nothing.
    func createExecution(_ execution: ExecutionRecord) async throws -> (execution: ExecutionRecord, created: Bool)
    func execution(id: String) async throws -> ExecutionRecord?
    /// Newest first, keyset-paginated by execution id (ids sort by creation
    /// time); `nextCursor` is the last id of a full page.
    func listExecutions(_ query: ExecutionQuery) async throws -> Page<ExecutionRecord>
    /// Applies transitions in order, in one transaction (all or nothing).
    func apply(_ transitions: [ExecutionTransition]) async throws
    /// Applies several callers' units in one transaction; each unit succeeds
    /// or fails alone (its error at its index, nil on success).
    func applyEach(_ groups: [[ExecutionTransition]]) async throws -> [StoreError?]
    /// Executions not finished (Pending or Running), oldest first.
    func unfinishedExecutions() async throws -> [ExecutionRecord]
    /// How many executions are not finished.
    func unfinishedCount() async throws -> Int
    /// Executions started and not finished, by the organization of their
    /// workflow (the `concurrent_executions` quota after a restart).
    func unfinishedCountsByOrganization() async throws -> [String: Int]
    /// Unfinished executions with no task item on any queue (only timer
    /// items, or nothing): nothing will move them, so recovery must look at
    /// them. With state and queue written in one unit, an execution gets
    /// here only if it was Pending (a crash before its first commit) or had
    /// every task finished before its own end was recorded.
    func stalledExecutions() async throws -> [ExecutionRecord]
}

extension ExecutionTransition {
    /// The unit with every change to an execution it creates folded into
    /// that `.create` (status, times, outputs, errors, costs): the rows come
    /// out as the separate writes would leave them, written once (an
    /// execution whose instant tasks all ran in its first unit is one insert
    /// per row instead of an insert and several updates). `finished`: the
    /// created executions the fold finished (their rollups are due).
    /// Changes that name no known task are left as they are (they fail the
    /// unit when applied, as before).
    public static func foldingIntoCreates(_ transitions: [ExecutionTransition])
        -> (transitions: [ExecutionTransition], finished: [String])
    {
        guard transitions.contains(where: { if case .create = $0 { true } else { false } }) else { return (transitions, []) }
        var out: [ExecutionTransition] = []
        out.reserveCapacity(transitions.count)
        /// Each created execution's row, changed in place, and its `.create`'s place in `out`.
        var created: [String: (index: Int, row: ExecutionRecord)] = [:]
        var finished: [String] = []
        /// Applies `change` to the row of a created execution (to its task `key`
        /// when given); false when the unit did not create it or it has no such task.
        func fold(_ id: String, task key: String? = nil, _ change: (inout ExecutionRecord, Int?) -> Void) -> Bool {
            // No copy of the row is held: the change below mutates it in place.
            guard created[id] != nil else { return false }
            var task: Int?
            if let key {
                guard let found = created[id]?.row.tasks.firstIndex(where: { $0.taskKey == key }) else { return false }
                task = found
            }
            change(&created[id]!.row, task)
            return true
        }
        for transition in transitions {
            let folded: Bool
            switch transition {
            case .create(let record):
                created[record.executionId] = (out.count, record)
                out.append(transition)
                folded = true
            case .execution(let id, let status, let at, let output, let error):
                folded = fold(id) { row, _ in
                    row.status = status
                    if status == .running, row.startedAt == nil { row.startedAt = at }
                    if status.isFinished {
                        if row.completedAt == nil { finished.append(id) }
                        row.completedAt = at
                    }
                    if let output { row.output = output }
                    if let error { row.error = error }
                }
            case .task(let id, let key, let status, let attempt, let at, let output, let error, let cost):
                folded = fold(id, task: key) { row, index in
                    let index = index!
                    row.tasks[index].status = status
                    row.tasks[index].attempt = attempt
                    if status == .running, row.tasks[index].startedAt == nil { row.tasks[index].startedAt = at }
                    if status.isTerminal { row.tasks[index].completedAt = at }
                    if let output { row.tasks[index].output = output }
                    if let error { row.tasks[index].error = error }
                    row.tasks[index].cost += cost
                }
            case .cost(let id, let add):
                folded = fold(id) { row, _ in row.costBreakdown = row.costBreakdown + add }
            case .taskCost(let id, let key, let dollars):
                folded = fold(id, task: key) { row, index in row.tasks[index!].cost += dollars }
            default:
                folded = false
            }
            if !folded { out.append(transition) }
        }
        for (index, row) in created.values { out[index] = .create(row) }
        return (out, finished)
    }
}
