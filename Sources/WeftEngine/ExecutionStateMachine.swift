public import Foundation
public import WeftStore

/// The life of one execution of a workflow DAG, as a pure state machine: no
/// clock, queue, store or socket. The caller feeds it events (a task started,
/// succeeded, failed; a timer fired; cancel) with the time they happened, and
/// carries out the effects it returns (enqueue a task, arm a timer, tell a
/// worker to stop, persist a state change, finish). Persisting every effect
/// before acting on it is what makes an execution durable; replaying the
/// recorded events rebuilds the same state after a crash.
///
/// Scheduling rules:
/// - a task becomes ready when every dependency is finished (completed or
///   skipped) and at least one completed, or when it has no dependencies;
///   if all its dependencies were skipped it is skipped too (so a join after
///   a condition's branches runs on whichever branch ran);
/// - a condition task's output chooses a branch: `{"branch": "then"|"else"}`
///   or `{"result": true|false}`; the tasks of the other branch are skipped;
/// - a failed attempt is retried per the task's retry policy (backoff with
///   jitter, retryable error kinds); a task that fails for good fails the
///   execution: running tasks are told to stop, waiting ones are cancelled;
/// - per-attempt timeouts count as a failure of kind `timeout`; the
///   execution timeout ends everything as `TimedOut`.
public struct ExecutionStateMachine: Sendable {
    /// Why an attempt failed; `kind` is matched against `retryableErrors`.
    public struct TaskError: Sendable, Equatable {
        public var kind: String
        public var message: String
        /// False: fail for good whatever the retry policy says.
        public var retryable: Bool
        /// Weft's own failure, not the task's (`FailureCause.system`): no
        /// runner for the task's type, a secret the store could not open.
        public var system: Bool

        public init(kind: String, message: String, retryable: Bool = true, system: Bool = false) {
            self.kind = kind
            self.message = message
            self.retryable = retryable
            self.system = system
        }
    }

    public enum Timer: Sendable, Hashable {
        case retry(task: String, attempt: Int)
        case attemptTimeout(task: String, attempt: Int)
        /// The task's total time (all attempts and backoffs) is up.
        case taskTimeout(task: String)
        case executionTimeout
    }

    public enum Effect: Sendable, Equatable {
        /// Put the task's attempt on the queue.
        case enqueue(task: String, attempt: Int)
        case armTimer(Timer, at: Date)
        /// Tell the worker running this attempt to stop.
        case stop(task: String, attempt: Int)
        /// A task changed state (persist it, tell watchers).
        case taskState(task: String, state: TaskStatus, attempt: Int)
        /// The execution ended.
        case finished(ExecutionStatus, error: String?)
    }

    public struct TaskRun: Sendable, Equatable {
        public var state: TaskStatus
        /// 0 until the first attempt is queued, then 1, 2, ...
        public var attempt: Int
        public var output: JSONValue?
        public var error: TaskError?

        public init(state: TaskStatus, attempt: Int, output: JSONValue? = nil, error: TaskError? = nil) {
            self.state = state
            self.attempt = attempt
            self.output = output
            self.error = error
        }
    }

    public private(set) var status: ExecutionStatus = .running
    /// Why it ended (`none` while running or once completed).
    public private(set) var cause: FailureCause = .none
    public private(set) var tasks: [String: TaskRun]
    /// Task keys in definition order.
    public let order: [String]
    private let definitions: [String: TaskRecord]
    private let dependents: [String: [String]]
    private let executionTimeoutMs: Int64?
    /// The server's maximum attempt timeout (`EngineLimits`): caps a task's
    /// own timeout and applies to tasks without one (not to delays, which
    /// hold no worker).
    public var maxAttemptTimeoutMs: Int64?
    /// Random numbers in [0, 1) for retry jitter (injected for tests).
    private let random: @Sendable () -> Double
    private var started = false
    /// The time of the event being handled (timers armed while handling it
    /// count from it).
    private var eventTime = Date(timeIntervalSince1970: 0)

    public init(
        tasks: [TaskRecord], executionTimeoutMs: Int64? = nil,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        order = tasks.map(\.key)
        definitions = Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, $0) })
        var dependents: [String: [String]] = [:]
        for task in tasks {
            for dependency in task.dependsOn { dependents[dependency, default: []].append(task.key) }
        }
        self.dependents = dependents
        self.tasks = Dictionary(
            uniqueKeysWithValues: tasks.map { ($0.key, TaskRun(state: .pending, attempt: 0, output: nil, error: nil)) })
        self.executionTimeoutMs = executionTimeoutMs
        self.random = random
    }

    /// Rebuilds a machine from stored task states (after a restart): the
    /// execution is under way, so `start` does nothing more.
    public init(
        tasks: [TaskRecord], restoring runs: [String: TaskRun], executionTimeoutMs: Int64? = nil,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }
    ) {
        self.init(tasks: tasks, executionTimeoutMs: executionTimeoutMs, random: random)
        for (key, run) in runs where self.tasks[key] != nil { self.tasks[key] = run }
        started = true
    }

    /// The timeout of `key`'s attempts: its own, capped by the server's.
    func attemptTimeoutMs(_ key: String) -> Int64? {
        let own = definitions[key]!.timeoutMs
        guard let cap = maxAttemptTimeoutMs, definitions[key]!.action != .delay else { return own }
        return min(own ?? cap, cap)
    }

    // MARK: Events

    public mutating func start(at now: Date) -> [Effect] {
        guard !started else { return [] }
        eventTime = now
        started = true
        var effects: [Effect] = []
        if let timeout = executionTimeoutMs {
            effects.append(.armTimer(.executionTimeout, at: now.addingTimeInterval(Double(timeout) / 1000)))
        }
        for key in order where definitions[key]!.dependsOn.isEmpty {
            queue(key, into: &effects)
        }
        finishIfDone(into: &effects)
        return effects
    }

    public mutating func taskStarted(_ key: String, attempt: Int, at now: Date) -> [Effect] {
        guard status == .running, var run = tasks[key], run.attempt == attempt, run.state == .queued else { return [] }
        eventTime = now
        run.state = .running
        tasks[key] = run
        var effects: [Effect] = [.taskState(task: key, state: .running, attempt: attempt)]
        if let timeout = attemptTimeoutMs(key) {
            effects.append(
                .armTimer(.attemptTimeout(task: key, attempt: attempt), at: now.addingTimeInterval(Double(timeout) / 1000)))
        }
        return effects
    }

    public mutating func taskSucceeded(_ key: String, attempt: Int, output: JSONValue, at now: Date) -> [Effect] {
        guard status == .running, var run = tasks[key], run.attempt == attempt, run.state == .running else { return [] }
        eventTime = now
        run.state = .completed
        run.output = output
        tasks[key] = run
        var effects: [Effect] = [.taskState(task: key, state: .completed, attempt: attempt)]
        let definition = definitions[key]!
        if definition.action == .condition {
            let chosen = Self.branch(of: output)
            let skippedBranch = chosen == "then" ? "else" : "then"
            for target in definition.config[skippedBranch]?.arrayValue?.compactMap(\.stringValue) ?? [] {
                skip(target, into: &effects)
            }
        }
        advance(after: key, into: &effects)
        finishIfDone(into: &effects)
        return effects
    }

    public mutating func taskFailed(_ key: String, attempt: Int, error: TaskError, at now: Date) -> [Effect] {
        guard status == .running, var run = tasks[key], run.attempt == attempt, run.state == .running else { return [] }
        eventTime = now
        run.error = error
        var effects: [Effect] = []
        if let delay = retryDelay(for: definitions[key]!, failedAttempt: attempt, error: error) {
            run.state = .retrying
            tasks[key] = run
            effects.append(.taskState(task: key, state: .retrying, attempt: attempt))
            effects.append(.armTimer(.retry(task: key, attempt: attempt + 1), at: now.addingTimeInterval(delay)))
            return effects
        }
        tasks[key] = run
        failForGood(key, error: error, into: &effects)
        return effects
    }

    /// A task that will not be retried: it fails the execution, unless its
    /// policy says to continue (then its dependents run as after a success).
    private mutating func failForGood(_ key: String, error: TaskError, into effects: inout [Effect]) {
        guard var run = tasks[key] else { return }
        run.state = .failed
        run.error = error
        tasks[key] = run
        effects.append(.taskState(task: key, state: .failed, attempt: run.attempt))
        if definitions[key]!.retry?.continueOnFailure == true {
            advance(after: key, into: &effects)
            finishIfDone(into: &effects)
        } else {
            end(.failed, error: "task \"\(key)\" failed: \(error.message)", cause: .of(.failed, error: error), into: &effects)
        }
    }

    public mutating func timerFired(_ timer: Timer, at now: Date) -> [Effect] {
        guard status == .running else { return [] }
        eventTime = now
        switch timer {
        case .retry(let key, let attempt):
            guard var run = tasks[key], run.state == .retrying, run.attempt + 1 == attempt else { return [] }
            run.state = .queued
            run.attempt = attempt
            tasks[key] = run
            return [.taskState(task: key, state: .queued, attempt: attempt), .enqueue(task: key, attempt: attempt)]
        case .attemptTimeout(let key, let attempt):
            guard let run = tasks[key], run.state == .running, run.attempt == attempt else { return [] }
            let timeout = attemptTimeoutMs(key) ?? 0
            return [.stop(task: key, attempt: attempt)]
                + taskFailed(
                    key, attempt: attempt,
                    error: TaskError(kind: "timeout", message: "attempt \(attempt) timed out after \(timeout) ms"), at: now)
        case .taskTimeout(let key):
            guard let run = tasks[key], !run.state.isTerminal, run.state != .pending else { return [] }
            var effects: [Effect] = []
            if run.state == .running { effects.append(.stop(task: key, attempt: run.attempt)) }
            let total = definitions[key]!.retry?.totalTimeoutMs ?? 0
            failForGood(
                key,
                error: TaskError(kind: "timeout", message: "the task timed out after \(total) ms (attempt \(run.attempt))"),
                into: &effects)
            return effects
        case .executionTimeout:
            var effects: [Effect] = []
            end(.timedOut, error: "the execution timed out after \(executionTimeoutMs ?? 0) ms", into: &effects)
            return effects
        }
    }

    public mutating func cancel(reason: String, at now: Date) -> [Effect] {
        guard status == .running else { return [] }
        eventTime = now
        var effects: [Effect] = []
        end(.cancelled, error: reason.isEmpty ? "cancelled" : reason, into: &effects)
        return effects
    }

    /// After a restore: queues (or skips) every pending task whose
    /// dependencies have all finished, and finishes the execution if nothing
    /// is left, in case a crash came between a commit and the next.
    public mutating func resume(at now: Date) -> [Effect] {
        guard status == .running else { return [] }
        eventTime = now
        var effects: [Effect] = []
        for key in order where tasks[key]?.state == .pending {
            let deps = definitions[key]!.dependsOn
            if deps.isEmpty {
                queue(key, into: &effects)
                continue
            }
            switch readiness(of: key) {
            case .ready: queue(key, into: &effects)
            case .skip: skip(key, into: &effects)
            case .waiting: continue
            }
        }
        finishIfDone(into: &effects)
        return effects
    }

    // MARK: Rules

    private mutating func queue(_ key: String, into effects: inout [Effect]) {
        guard var run = tasks[key], run.state == .pending else { return }
        run.state = .queued
        run.attempt = 1
        tasks[key] = run
        effects.append(.taskState(task: key, state: .queued, attempt: 1))
        effects.append(.enqueue(task: key, attempt: 1))
        if let total = definitions[key]!.retry?.totalTimeoutMs, total > 0 {
            effects.append(.armTimer(.taskTimeout(task: key), at: eventTime.addingTimeInterval(Double(total) / 1000)))
        }
    }

    enum Readiness { case ready, skip, waiting }

    /// A pending task is ready when every dependency finished (completed,
    /// skipped, or failed with continue-on-failure) and at least one of them
    /// ran; skipped when all of them were skipped.
    func readiness(of key: String) -> Readiness {
        let states = definitions[key]!.dependsOn.map { tasks[$0]!.state }
        guard states.allSatisfy({ $0 == .completed || $0 == .skipped || $0 == .failed }) else { return .waiting }
        return states.contains(where: { $0 != .skipped }) || states.isEmpty ? .ready : .skip
    }

    private mutating func skip(_ key: String, into effects: inout [Effect]) {
        guard var run = tasks[key], run.state == .pending else { return }
        run.state = .skipped
        tasks[key] = run
        effects.append(.taskState(task: key, state: .skipped, attempt: run.attempt))
        advance(after: key, into: &effects)
    }

    /// Re-evaluates the dependents of a task that just finished.
    private mutating func advance(after key: String, into effects: inout [Effect]) {
        for dependent in dependents[key] ?? [] {
            guard tasks[dependent]?.state == .pending else { continue }
            switch readiness(of: dependent) {
            case .ready: queue(dependent, into: &effects)
            case .skip: skip(dependent, into: &effects)
            case .waiting: continue
            }
        }
    }

    private mutating func finishIfDone(into effects: inout [Effect]) {
        guard status == .running, order.allSatisfy({ tasks[$0]!.state.isTerminal }) else { return }
        status = .completed
        effects.append(.finished(.completed, error: nil))
    }

    /// Ends the execution: running attempts are told to stop, everything not
    /// finished is cancelled.
    private mutating func end(
        _ final: ExecutionStatus, error: String, cause: FailureCause? = nil, into effects: inout [Effect]
    ) {
        status = final
        self.cause = cause ?? .of(final, error: nil)
        for key in order {
            guard var run = tasks[key], !run.state.isTerminal else { continue }
            if run.state == .running { effects.append(.stop(task: key, attempt: run.attempt)) }
            run.state = .cancelled
            tasks[key] = run
            effects.append(.taskState(task: key, state: .cancelled, attempt: run.attempt))
        }
        effects.append(.finished(final, error: error))
    }

    /// Seconds to wait before the next attempt, or nil when the task has
    /// used its attempts or the error is not retryable.
    func retryDelay(for task: TaskRecord, failedAttempt: Int, error: TaskError) -> TimeInterval? {
        guard error.retryable, let policy = task.retry, failedAttempt < policy.maxAttempts else { return nil }
        let kinds = policy.retryableErrors
        guard kinds.isEmpty || kinds.contains("any") || kinds.contains(error.kind) else { return nil }
        let multiplier = policy.backoffMultiplier >= 1 ? policy.backoffMultiplier : 1
        var delay = Double(policy.initialBackoffMs) * pow(multiplier, Double(failedAttempt - 1))
        if policy.jitter > 0 { delay *= 1 + policy.jitter * (random() * 2 - 1) }
        // The cap applies after jitter, and a day bounds any policy.
        let cap = policy.maxBackoffMs > 0 ? Double(policy.maxBackoffMs) : Double(WorkflowDefinition.maxBackoffMs)
        delay = min(delay.isFinite ? delay : cap, cap)
        return max(0, delay) / 1000
    }

    /// "then" or "else" from a condition task's output.
    static func branch(of output: JSONValue) -> String {
        if let branch = output["branch"]?.stringValue { return branch == "else" ? "else" : "then" }
        if case .bool(let result)? = output["result"] { return result ? "then" : "else" }
        return "then"
    }
}
