import Foundation
import WeftObservability
import WeftStore

/// What the engine keeps in memory of one unfinished execution: its state
/// machine and what it needs to act on its effects. Always rebuildable
/// from the store (`ExecutionState(restoring:)`): memory is a cache.
struct ExecutionState: Sendable {
    var machine: ExecutionStateMachine
    /// Definitions of the version it runs, by task key.
    var tasks: [String: TaskRecord]
    var input: JSONValue
    var workflowId: String
    var workflowName: String
    var ownerId: String
    /// The organization whose work it is (its fair share and quotas).
    var orgId: String
    /// The user who started it (external workers are told).
    var startedBy: String?
    var priority: Int
    var createdAt: Date
    var taskExecutionIds: [String: String]
    /// When each task's current attempt started (delays and durations count from it).
    var startedAt: [String: Date] = [:]
    /// W3C context of the execution's span (empty when tracing is off).
    var trace = TraceHeaders()
    /// Cost committed so far.
    var cost = ExecutionCost()
    /// Bytes of its input and task outputs (about, as JSON), counted when
    /// first needed (`EngineLimits.maxExecutionBytes`).
    var storedBytes: Int?
    /// What started it (notifications say so, filters read it).
    var trigger: TriggerKind
    var triggerId: String?
    var scheduledAt: Date?

    init(
        machine: ExecutionStateMachine, version tasks: [TaskRecord], record: ExecutionRecord, workflowName: String,
        ownerId: String, orgId: String
    ) {
        self.machine = machine
        self.tasks = Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, $0) })
        self.input = record.input
        self.workflowId = record.workflowId
        self.workflowName = workflowName
        self.ownerId = ownerId
        self.orgId = orgId
        self.startedBy = record.createdBy
        self.priority = record.priority
        self.createdAt = record.createdAt
        self.taskExecutionIds = Dictionary(uniqueKeysWithValues: record.tasks.map { ($0.taskKey, $0.taskExecutionId) })
        self.trace = TraceHeaders(traceparent: record.traceParent, tracestate: record.traceState)
        self.cost = record.costBreakdown
        self.trigger = record.trigger
        self.triggerId = record.triggerId
        self.scheduledAt = record.scheduledAt
    }

    /// An unfinished execution as the store has it (after a restart, or
    /// once evicted from memory).
    init(restoring record: ExecutionRecord, version: WorkflowVersionRecord, ownerId: String, orgId: String) {
        var runs: [String: ExecutionStateMachine.TaskRun] = [:]
        for task in record.tasks {
            runs[task.taskKey] = ExecutionStateMachine.TaskRun(
                state: task.status, attempt: task.attempt, output: task.output,
                error: task.error.map { .init(kind: "restored", message: $0) })
        }
        self.init(
            machine: ExecutionStateMachine(tasks: version.tasks, restoring: runs), version: version.tasks, record: record,
            workflowName: version.name, ownerId: ownerId, orgId: orgId)
        // The store keeps a task's first start: it is the current attempt's
        // only for a first attempt (later ones restart their clock when
        // re-delivered, see `Engine.startEffects`).
        for task in record.tasks where task.attempt <= 1 { startedAt[task.taskKey] = task.startedAt }
    }

    /// Counts the bytes of the input and of every output so far.
    func countStoredBytes() -> Int {
        machine.tasks.values.reduce(input.encodedSize()) { $0 + ($1.output?.encodedSize() ?? 0) }
    }

    /// What templates and expressions read: the input, upstream outputs and states.
    var context: Expression.Context {
        Expression.Context(
            input: input, outputs: machine.tasks.compactMapValues(\.output),
            statuses: machine.tasks.mapValues(\.state.rawValue))
    }

    /// The queue a task's attempts go to.
    func queueName(of key: String) -> String {
        guard let task = tasks[key], task.action == .external, let name = task.config["queue"]?.stringValue else {
            return EngineQueues.builtin
        }
        // Queues belong to the organization (its admins grant who may use them).
        return EngineQueues.external(owner: orgId.isEmpty ? ownerId : orgId, name: name)
    }

    /// Whether `attempt` of `key` is the task's current, running attempt.
    func isRunning(_ key: String, attempt: Int) -> Bool {
        guard let run = machine.tasks[key] else { return false }
        return run.state == .running && run.attempt == attempt
    }
}
