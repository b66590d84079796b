import Foundation
import WeftStore

/// What running instant tasks inline added to a unit.
struct InlineRun {
    /// Lines the runners wrote, by task key.
    var lines: [String: [LogRecord]] = [:]
    /// Each inline attempt's end (its start is charged by the planner).
    var costs: [String: ExecutionCost] = [:]
    var ran = 0
}

extension Engine {
    /// At most this many attempts run inline in one unit; the rest are
    /// queued as usual (a bound on the time the actor spends in one unit,
    /// and on retries of a failing instant task with no backoff).
    static let maxInlineAttempts = 256

    /// Runs the instant tasks (noop, log, transform, condition) that
    /// `effects` queue right here, inside the unit that queues them, and
    /// those their outcomes make ready, and so on: their starts and
    /// outcomes replace the queue items in `effects`, and `state` moves with
    /// them.
    ///
    /// Why this is safe: an instant task does no I/O and nobody can observe
    /// it between being queued and finishing, so nothing is lost by not
    /// writing its queue item, its lease and its outcome in separate units.
    /// If the unit does not commit, none of it happened (the caller's
    /// commit error covers all of it, as for any unit). A 3-task workflow of
    /// such tasks is then one unit instead of four (Step 13).
    ///
    /// Not inlined: tasks whose config reads secrets (revealing them is I/O),
    /// runners that cannot run synchronously, and anything once
    /// `maxInlineAttempts` ran.
    func runInline(_ effects: inout [ExecutionStateMachine.Effect], state: inout ExecutionState, executionId: String, at: Date)
        -> InlineRun
    {
        var result = InlineRun()
        var work = effects
        var out: [ExecutionStateMachine.Effect] = []
        out.reserveCapacity(work.count * 2)
        var index = 0
        while index < work.count {
            let effect = work[index]
            index += 1
            guard case .enqueue(let key, let attempt) = effect, result.ran < Self.maxInlineAttempts,
                let task = state.tasks[key], let runner = runners[task.action] as? any InlineRunner,
                state.queueName(of: key) == EngineQueues.builtin, Template.secretNames(in: task.config).isEmpty
            else {
                out.append(effect)
                continue
            }
            var started = state.machine.taskStarted(key, attempt: attempt, at: at)
            guard !started.isEmpty else {
                out.append(effect)
                continue
            }
            // Nothing can happen between its start and its end: no attempt timer.
            started.removeAll { if case .armTimer(.attemptTimeout, _) = $0 { true } else { false } }
            state.startedAt[key] = at
            metrics?.taskWaited(type: task.action, 0)
            let span = taskSpan(state, executionId: executionId, task: task, attempt: attempt)
            var lines: [LogRecord] = []
            var outcome: TaskOutcome
            do {
                let invocation = try TaskInvocation.make(
                    task, executionId: executionId, attempt: attempt, context: state.context,
                    maxBytes: limits.maxTemplateBytes, maxTimeoutMs: limits.maxAttemptTimeoutMs)
                outcome = runner.runNow(invocation) { level, message in
                    lines.append(LogRecord(
                        executionId: executionId, taskId: task.id, level: level, message: message, createdAt: at))
                }
            } catch {
                outcome = .failed(Self.invocationError(error))
            }
            outcome = capped(outcome, state: &state, key: key)
            Self.end(span, outcome)
            result.ran += 1
            out += started
            if !lines.isEmpty { result.lines[key, default: []] += lines }
            let ended: [ExecutionStateMachine.Effect]
            switch outcome {
            case .completed(let output):
                ended = state.machine.taskSucceeded(key, attempt: attempt, output: output, at: at)
                metrics?.taskFinished(type: task.action, outcome: "completed", 0)
            case .failed(let error):
                ended = state.machine.taskFailed(key, attempt: attempt, error: error, at: at)
                metrics?.taskFinished(type: task.action, outcome: "failed", 0)
            }
            result.costs[key, default: ExecutionCost()] += costRates.attemptEnded(type: task.action, seconds: 0)
            // What its end makes ready runs next, before the rest of the unit.
            work.insert(contentsOf: ended, at: index)
        }
        guard result.ran > 0 else { return result }
        // Timers of what already ended in this unit would only fire for nothing.
        let finished = state.machine.status != .running
        out.removeAll { effect in
            guard case .armTimer(let timer, _) = effect else { return false }
            switch timer {
            case .taskTimeout(let key): return state.machine.tasks[key]?.state.isTerminal ?? false
            case .executionTimeout: return finished
            default: return false
            }
        }
        effects = out
        return result
    }
}
