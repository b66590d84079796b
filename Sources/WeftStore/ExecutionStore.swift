public import Foundation

/// One execution of a workflow, pinned to the version it started on.
public struct ExecutionRecord: Sendable, Hashable {
    public var executionId: String
    public var workflowId: String
    public var workflowVersion: Int
    /// "Pending", "Running", "Completed", "Failed", "Cancelled", "TimedOut".
    public var status: String
    public var input: JSONValue
    public var output: JSONValue?
    public var error: String?
    public var idempotencyKey: String?
    /// "manual", "api", "schedule", "webhook".
    public var trigger: String
    /// Total cost in dollars (`costBreakdown.total`).
    public var cost: Double { costBreakdown.total }
    public var costBreakdown: ExecutionCost
    /// W3C trace context of the execution's span (nil when tracing was off).
    public var traceParent: String?
    public var traceState: String?
    /// Queue priority of its tasks (higher first).
    public var priority: Int
    public var createdBy: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var completedAt: Date?
    public var tasks: [TaskExecutionRecord]

    public init(
        executionId: String, workflowId: String, workflowVersion: Int, status: String, input: JSONValue,
        output: JSONValue? = nil, error: String? = nil, idempotencyKey: String? = nil, trigger: String = "api",
        costBreakdown: ExecutionCost = ExecutionCost(), priority: Int = 0, createdBy: String? = nil, createdAt: Date,
        startedAt: Date? = nil, completedAt: Date? = nil, tasks: [TaskExecutionRecord] = [],
        traceParent: String? = nil, traceState: String? = nil
    ) {
        self.executionId = executionId
        self.workflowId = workflowId
        self.workflowVersion = workflowVersion
        self.status = status
        self.input = input
        self.output = output
        self.error = error
        self.idempotencyKey = idempotencyKey
        self.trigger = trigger
        self.costBreakdown = costBreakdown
        self.traceParent = traceParent
        self.traceState = traceState
        self.priority = priority
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.tasks = tasks
    }

    public static let finishedStatuses: Set<String> = ["Completed", "Failed", "Cancelled", "TimedOut"]
    public var isFinished: Bool { Self.finishedStatuses.contains(status) }
}

/// The state of one task within an execution.
public struct TaskExecutionRecord: Sendable, Hashable {
    public var taskExecutionId: String
    public var taskId: String
    /// The task's key (from its definition row).
    public var taskKey: String
    /// "Pending", "Queued", "Running", "Completed", "Failed", "Retrying", "Skipped", "Cancelled".
    public var status: String
    public var attempt: Int
    public var output: JSONValue?
    public var error: String?
    public var startedAt: Date?
    public var completedAt: Date?

    public init(
        taskExecutionId: String, taskId: String, taskKey: String, status: String, attempt: Int = 0,
        output: JSONValue? = nil, error: String? = nil, startedAt: Date? = nil, completedAt: Date? = nil
    ) {
        self.taskExecutionId = taskExecutionId
        self.taskId = taskId
        self.taskKey = taskKey
        self.status = status
        self.attempt = attempt
        self.output = output
        self.error = error
        self.startedAt = startedAt
        self.completedAt = completedAt
    }
}

/// A state change to persist. Transitions are applied in order, many per
/// transaction (see `GroupCommitter`).
public enum ExecutionTransition: Sendable, Hashable {
    case execution(
        id: String, status: String, at: Date, output: JSONValue? = nil, error: String? = nil)
    case task(
        executionId: String, taskKey: String, status: String, attempt: Int, at: Date, output: JSONValue? = nil,
        error: String? = nil)
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
    /// Adds usage and dollars to an execution's cost.
    case cost(executionId: String, ExecutionCost)
}

/// Usage an execution is charged for and its dollars, by part (see
/// docs/COST.md); sums of what each task attempt added.
public struct ExecutionCost: Sendable, Hashable {
    public var taskAttempts = 0
    public var attemptsDollars = 0.0
    public var workerSeconds = 0.0
    public var computeDollars = 0.0
    public var requests = 0
    public var requestsDollars = 0.0
    public var egressBytes = 0
    public var egressDollars = 0.0

    public init(
        taskAttempts: Int = 0, attemptsDollars: Double = 0, workerSeconds: Double = 0, computeDollars: Double = 0,
        requests: Int = 0, requestsDollars: Double = 0, egressBytes: Int = 0, egressDollars: Double = 0
    ) {
        self.taskAttempts = taskAttempts
        self.attemptsDollars = attemptsDollars
        self.workerSeconds = workerSeconds
        self.computeDollars = computeDollars
        self.requests = requests
        self.requestsDollars = requestsDollars
        self.egressBytes = egressBytes
        self.egressDollars = egressDollars
    }

    public var total: Double { attemptsDollars + computeDollars + requestsDollars + egressDollars }
    public var isZero: Bool { self == ExecutionCost() }

    public static func + (lhs: ExecutionCost, rhs: ExecutionCost) -> ExecutionCost {
        ExecutionCost(
            taskAttempts: lhs.taskAttempts + rhs.taskAttempts, attemptsDollars: lhs.attemptsDollars + rhs.attemptsDollars,
            workerSeconds: lhs.workerSeconds + rhs.workerSeconds, computeDollars: lhs.computeDollars + rhs.computeDollars,
            requests: lhs.requests + rhs.requests, requestsDollars: lhs.requestsDollars + rhs.requestsDollars,
            egressBytes: lhs.egressBytes + rhs.egressBytes, egressDollars: lhs.egressDollars + rhs.egressDollars)
    }

    public static func += (lhs: inout ExecutionCost, rhs: ExecutionCost) { lhs = lhs + rhs }
}

public struct ExecutionQuery: Sendable, Hashable {
    public var workflowId: String
    public var limit: Int
    public var cursor: String?
    public var status: String?
    public var startedAfter: Date?
    public var startedBefore: Date?

    public init(
        workflowId: String, limit: Int, cursor: String? = nil, status: String? = nil, startedAfter: Date? = nil,
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

/// Executions and their tasks' states.
public protocol ExecutionStore: Sendable {
    /// Stores a new execution with its task rows. With an idempotency key
    /// already used on this workflow, returns that execution instead
    /// (`created` false) and stores nothing.
    func createExecution(_ execution: ExecutionRecord) async throws -> (execution: ExecutionRecord, created: Bool)
    func execution(id: String) async throws -> ExecutionRecord?
    /// Newest first, keyset-paginated by execution id.
    func listExecutions(_ query: ExecutionQuery) async throws -> Page<ExecutionRecord>
    /// Applies transitions in order, in one transaction.
    func apply(_ transitions: [ExecutionTransition]) async throws
    /// Applies several callers' transitions in one transaction; each group
    /// succeeds or fails alone (its error at its index, nil on success).
    func applyEach(_ groups: [[ExecutionTransition]]) async throws -> [StoreError?]
    /// Executions not finished (for recovery after a restart).
    func unfinishedExecutions() async throws -> [ExecutionRecord]
    /// How many executions are not finished.
    func unfinishedCount() async throws -> Int
    /// Unfinished executions with no task item on any queue (only timers,
    /// or nothing): nothing will move them, so recovery must look at them.
    /// Written with state and queue in one transaction, an execution gets
    /// here only if it was Pending (written by an older version) or ended
    /// up with every task finished before its own end was recorded.
    func stalledExecutions() async throws -> [ExecutionRecord]
}
