import Foundation
import WeftStore

/// Turns what the state machine decided into what must be written and what
/// must happen once it is durable: pure (no store, clock, queue or actor),
/// so every rule of a commit is tested without I/O (`CommitPlannerTests`).
///
/// The engine commits `transitions` as one unit of a group commit; only
/// after that succeeds does it act on the rest of the plan (start attempts,
/// wake workers, tell watchers, end the execution).
struct CommitPlanner {
    let costRates: CostRates
    /// Task types whose runners finish at once (no attempt timer is armed for them).
    var instantTypes: Set<TaskType> = []

    /// The fair-share tenant of a task's queue item: its organization, or
    /// `~` + it for an instant task. Instant tasks cannot hold a worker for
    /// long, so they are not bounded by an organization's share of slots
    /// (`WorkerPool`); they still take turns with other organizations.
    func tenant(of key: String, _ state: ExecutionState) -> String {
        guard let action = state.tasks[key]?.action, instantTypes.contains(action) else { return state.orgId }
        return WorkerPool.uncappedPrefix + state.orgId
    }

    /// Why this commit happens besides the effects.
    struct Request {
        var executionId: String
        var at: Date
        var effects: [ExecutionStateMachine.Effect]
        /// A new execution's row and start (`create` false: the row exists).
        var start: (record: ExecutionRecord, create: Bool)?
        /// The lease the commit completes or gives back.
        var lease: LeaseOperation?
        /// Lines instant runners wrote, by task key, logged after the task's
        /// "started" line.
        var taskLines: [String: [LogRecord]] = [:]
        /// Cost of the attempt whose outcome this is, and its task.
        var attemptCost = ExecutionCost()
        var attemptKey: String?
        /// Ends of attempts run inline in this unit (`Engine+Inline.swift`), by task.
        var inlineCosts: [String: ExecutionCost] = [:]
    }

    enum LeaseOperation {
        case complete(Lease)
        case release(Lease, readyAt: Date)
    }

    struct Plan {
        var transitions: [ExecutionTransition] = []
        /// Indices in `transitions` of built-in items queued now, which an
        /// in-process worker with a free slot may lease in this same commit.
        var dispatchable: [Int] = []
        var lines: [LogRecord] = []
        var updates: [ExecutionUpdate] = []
        /// Queues with items ready now, and items that become ready later.
        var wake: Set<String> = []
        var later: [(queue: String, at: Date)] = []
        /// Attempts the commit stops (timeouts, cancel): running jobs are
        /// cancelled, external attempts' spans end.
        var stopped: [AttemptID] = []
        /// Task types of attempts that will be retried (metrics).
        var retried: [TaskType] = []
        /// What this commit adds to the execution's cost.
        var cost = ExecutionCost()
        var finished: (status: ExecutionStatus, error: String?)?
        var isStart = false
        /// Tasks that failed for good or will be retried (notifications).
        var taskEvents: [(key: String, status: TaskStatus, attempt: Int, error: String?)] = []
    }

    func plan(_ request: Request, state: ExecutionState) -> Plan {
        let executionId = request.executionId
        let at = request.at
        let machine = state.machine
        var plan = Plan()
        plan.cost = request.attemptCost
        // Each task's share of the cost rides on its first `.task` write of
        // this unit (no extra row write); see `attachTaskCosts`.
        var taskCosts: [String: Double] = [:]
        if let key = request.attemptKey, !request.attemptCost.isZero { taskCosts[key, default: 0] += request.attemptCost.total }
        for (key, cost) in request.inlineCosts where !cost.isZero {
            plan.cost += cost
            taskCosts[key, default: 0] += cost.total
        }
        if let start = request.start {
            plan.isStart = true
            if start.create { plan.transitions.append(.create(start.record)) }
            plan.transitions.append(.execution(id: executionId, status: .running, at: at))
            plan.lines.append(LogRecord(
                executionId: executionId, taskId: nil, level: .info,
                message: "execution started (workflow version \(start.record.workflowVersion), trigger \(start.record.trigger.rawValue))",
                createdAt: at))
        }
        for effect in request.effects {
            switch effect {
            case .taskState(let key, let status, let attempt):
                // The attempt is over: its timeout timer is moot; removed now
                // rather than left to fire for nothing (the server's maximum
                // arms one for every attempt).
                if status != .running, status != .queued, status != .pending, attempt > 0,
                    let action = state.tasks[key]?.action, !instantTypes.contains(action),
                    machine.attemptTimeoutMs(key) != nil
                {
                    let timer = TimerItem.attemptTimeout(task: key, attempt: attempt).queueItem(executionId: executionId, due: at)
                    plan.transitions.append(.dequeue(executionId: executionId, taskKey: timer.taskKey, attempt: attempt))
                }
                let run = machine.tasks[key]
                let output = status == .completed ? run?.output : nil
                let error = status == .failed || status == .retrying ? run?.error?.message : nil
                plan.transitions.append(.task(
                    executionId: executionId, taskKey: key, status: status, attempt: attempt, at: at, output: output,
                    error: error))
                let task = state.tasks[key]
                if status == .retrying { plan.retried.append(task?.action ?? .other("?")) }
                if status == .retrying || status == .failed { plan.taskEvents.append((key, status, attempt, error)) }
                if status == .running {
                    let started = costRates.attemptStarted()
                    plan.cost += started
                    taskCosts[key, default: 0] += started.total
                }
                let line = Self.logLine(key: key, status: status, attempt: attempt, error: run?.error)
                if let line {
                    plan.lines.append(LogRecord(
                        executionId: executionId, taskId: task?.id, level: line.level, message: line.text, createdAt: at))
                }
                if status == .running, let lines = request.taskLines[key] { plan.lines += lines }
                // Watchers subscribe at any moment, so the update is built
                // whether or not anyone watches now. A task changes while the
                // execution runs; its end is a separate update.
                let record = TaskExecutionRecord(
                    taskExecutionId: state.taskExecutionIds[key] ?? "", taskId: task?.id ?? "", taskKey: key,
                    status: status, attempt: attempt, output: output, error: error, startedAt: state.startedAt[key],
                    completedAt: status.isTerminal ? at : nil)
                plan.updates.append(.state(status: .running, task: record, message: line?.text ?? "", at: at))
            case .enqueue(let key, let attempt):
                let queue = state.queueName(of: key)
                if queue == EngineQueues.builtin {
                    plan.dispatchable.append(plan.transitions.count)
                } else {
                    plan.wake.insert(queue)
                }
                var item = QueueItem(
                    queue: queue, executionId: executionId, taskKey: key, attempt: attempt, priority: state.priority,
                    readyAt: at)
                item.tenant = tenant(of: key, state)
                plan.transitions.append(.enqueue(item))
            case .armTimer(.retry(let key, let attempt), let due):
                // The backoff is a delayed queue item: durable like any other.
                let queue = state.queueName(of: key)
                var item = QueueItem(
                    queue: queue, executionId: executionId, taskKey: key, attempt: attempt, priority: state.priority,
                    readyAt: due)
                item.tenant = tenant(of: key, state)
                plan.transitions.append(.enqueue(item))
                plan.later.append((queue, due))
            case .armTimer(let timer, let due):
                guard let item = TimerItem(timer) else { continue }
                plan.transitions.append(.enqueue(item.queueItem(executionId: executionId, due: due)))
                plan.later.append((EngineQueues.timers, due))
            case .stop(let key, let attempt):
                plan.stopped.append(AttemptID(executionId: executionId, taskKey: key, attempt: attempt))
                if let started = state.startedAt[key] {
                    let ended = costRates.attemptEnded(type: state.tasks[key]?.action, seconds: at.timeIntervalSince(started))
                    plan.cost += ended
                    taskCosts[key, default: 0] += ended.total
                }
            case .finished(let status, let error):
                plan.transitions.append(.execution(id: executionId, status: status, at: at, error: error))
                plan.finished = (status, error)
            }
        }
        if !plan.cost.isZero { plan.transitions.append(.cost(executionId: executionId, plan.cost)) }
        Self.attachTaskCosts(taskCosts, executionId: executionId, to: &plan.transitions)
        switch request.lease {
        case .complete(let held)?: plan.transitions.append(.completeLease(id: held.id, token: held.token))
        case .release(let held, let readyAt)?: plan.transitions.append(.releaseLease(id: held.id, token: held.token, readyAt: readyAt))
        case nil: break
        }
        return plan
    }

    /// Puts each task's dollars on the unit's first `.task` write of that
    /// task, or in a `.taskCost` of its own when the unit has none.
    static func attachTaskCosts(_ costs: [String: Double], executionId: String, to transitions: inout [ExecutionTransition]) {
        var left = costs.filter { $0.value != 0 }
        guard !left.isEmpty else { return }
        for index in transitions.indices {
            guard case .task(let id, let key, let status, let attempt, let at, let output, let error, let cost) = transitions[index],
                let add = left.removeValue(forKey: key)
            else { continue }
            transitions[index] = .task(
                executionId: id, taskKey: key, status: status, attempt: attempt, at: at, output: output, error: error,
                cost: cost + add)
            if left.isEmpty { return }
        }
        for (key, dollars) in left.sorted(by: { $0.key < $1.key }) {
            transitions.append(.taskCost(executionId: executionId, taskKey: key, dollars: dollars))
        }
    }

    /// The log line of a task state change (none for Queued: it is implied).
    static func logLine(key: String, status: TaskStatus, attempt: Int, error: ExecutionStateMachine.TaskError?)
        -> (level: LogRecord.Level, text: String)?
    {
        let reason = error.map { " (\($0.kind)): \($0.message)" } ?? ""
        switch status {
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
