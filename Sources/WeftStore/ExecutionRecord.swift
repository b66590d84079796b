public import Foundation

/// One execution of a workflow, pinned to the version it started on.
public struct ExecutionRecord: Sendable, Hashable {
    public var executionId: String
    public var workflowId: String
    public var workflowVersion: Int
    public var status: ExecutionStatus
    public var input: JSONValue
    public var output: JSONValue?
    public var error: String?
    public var idempotencyKey: String?
    public var trigger: TriggerKind
    /// What started it: a schedule id, a webhook trigger id, "<event>/<event id>".
    public var triggerId: String?
    /// A schedule's tick (before jitter) this execution ran for.
    public var scheduledAt: Date?
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
        executionId: String, workflowId: String, workflowVersion: Int, status: ExecutionStatus, input: JSONValue,
        output: JSONValue? = nil, error: String? = nil, idempotencyKey: String? = nil, trigger: TriggerKind = .api,
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

    public var isFinished: Bool { status.isFinished }
}

/// The state of one task within an execution.
public struct TaskExecutionRecord: Sendable, Hashable {
    public var taskExecutionId: String
    public var taskId: String
    /// The task's key (from its definition row).
    public var taskKey: String
    public var status: TaskStatus
    public var attempt: Int
    public var output: JSONValue?
    public var error: String?
    public var startedAt: Date?
    public var completedAt: Date?
    /// Dollars of its attempts (a part of the execution's cost).
    public var cost: Double

    public init(
        taskExecutionId: String, taskId: String, taskKey: String, status: TaskStatus, attempt: Int = 0,
        output: JSONValue? = nil, error: String? = nil, startedAt: Date? = nil, completedAt: Date? = nil, cost: Double = 0
    ) {
        self.cost = cost
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
