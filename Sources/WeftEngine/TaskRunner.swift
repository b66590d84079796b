public import WeftStore

/// One attempt of one task, as a runner sees it: the config with its
/// templates already resolved, and the context expressions read.
public struct TaskInvocation: Sendable {
    public var executionId: String
    public var taskKey: String
    public var attempt: Int
    public var action: TaskType
    /// The task's config after `Template.resolve` (a condition's
    /// `expression` is left as written: it is evaluated, not interpolated).
    public var config: JSONValue
    public var context: Expression.Context
    /// The task's per-attempt timeout, if it has one.
    public var timeoutMs: Int64?
    /// Hides the values of the secrets this attempt read (runners use it on
    /// what they log or put in spans).
    public var redactor = SecretRedactor()

    public init(
        executionId: String, taskKey: String, attempt: Int, action: TaskType, config: JSONValue, context: Expression.Context,
        timeoutMs: Int64? = nil
    ) {
        self.timeoutMs = timeoutMs
        self.executionId = executionId
        self.taskKey = taskKey
        self.attempt = attempt
        self.action = action
        self.config = config
        self.context = context
    }

    /// Builds the invocation of `task`: resolves the templates of its config
    /// against the execution's input and upstream outputs.
    public static func make(
        _ task: TaskRecord, executionId: String, attempt: Int, context: Expression.Context, maxBytes: Int = .max,
        maxTimeoutMs: Int64? = nil
    ) throws(ExpressionError) -> TaskInvocation {
        var config = task.config
        if task.action == .condition, case .object(var object) = config {
            let expression = object.removeValue(forKey: "expression")
            config = try Template.resolve(.object(object), context, maxBytes: maxBytes)
            if let expression, case .object(var resolved) = config {
                resolved["expression"] = expression
                config = .object(resolved)
            }
        } else {
            config = try Template.resolve(config, context, maxBytes: maxBytes)
        }
        return TaskInvocation(
            executionId: executionId, taskKey: task.key, attempt: attempt, action: task.action, config: config,
            // The task's own timeout, capped by the server's; none stays none
            // (a runner's default applies, itself capped by the server).
            context: context, timeoutMs: task.timeoutMs.map { own in maxTimeoutMs.map { min(own, $0) } ?? own })
    }
}

/// How an attempt ended.
public enum TaskOutcome: Sendable, Equatable {
    case completed(JSONValue)
    case failed(ExecutionStateMachine.TaskError)
}

/// Runs the tasks of one type. Runners never throw: every failure is an
/// outcome with an error kind the retry policy can match.
public protocol TaskRunner: Sendable {
    var action: TaskType { get }
    /// Finishes at once without I/O (noop, log, transform, condition): the
    /// engine then commits the attempt's start together with its outcome.
    var isInstant: Bool { get }
    func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async
        -> TaskOutcome
}

extension TaskRunner {
    /// Runners do I/O unless they say otherwise.
    public var isInstant: Bool { false }
}

/// A built-in runner whose attempts finish at once, on the caller's thread:
/// the engine runs them inside the commit that queues them
/// (`Engine+Inline.swift`); `run` is the same work for the worker path.
protocol InlineRunner: TaskRunner {
    func runNow(_ invocation: TaskInvocation, log: (LogRecord.Level, String) -> Void) -> TaskOutcome
}

extension InlineRunner {
    public var isInstant: Bool { true }

    public func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async
        -> TaskOutcome
    {
        var lines: [(LogRecord.Level, String)] = []
        let outcome = runNow(invocation) { lines.append(($0, $1)) }
        for (level, message) in lines { await log(level, message) }
        return outcome
    }
}

/// `noop`: passes `config.output` (or `{}`) through; used by benchmarks.
public struct NoopRunner: InlineRunner {
    public let action = TaskType.noop
    public init() {}

    func runNow(_ invocation: TaskInvocation, log: (LogRecord.Level, String) -> Void) -> TaskOutcome {
        .completed(invocation.config["output"] ?? .emptyObject)
    }
}

/// `log`: writes `config.message` (default: the task key) at `config.level`.
public struct LogRunner: InlineRunner {
    public let action = TaskType.log
    public init() {}

    func runNow(_ invocation: TaskInvocation, log: (LogRecord.Level, String) -> Void) -> TaskOutcome {
        let message = invocation.config["message"]?.stringValue ?? "task \(invocation.taskKey)"
        let level: LogRecord.Level
        switch invocation.config["level"]?.stringValue {
        case "Warning": level = .warning
        case "Error": level = .error
        default: level = .info
        }
        log(level, message)
        return .completed(.object(["message": .string(message)]))
    }
}

/// `transform`: its output is `config.output` with templates resolved.
public struct TransformRunner: InlineRunner {
    public let action = TaskType.transform
    public init() {}

    func runNow(_ invocation: TaskInvocation, log: (LogRecord.Level, String) -> Void) -> TaskOutcome {
        .completed(invocation.config["output"] ?? .null)
    }
}

/// `condition`: evaluates `config.expression`; the output names the branch
/// (`{"result": true, "branch": "then"}`) and the state machine skips the
/// other one.
public struct ConditionRunner: InlineRunner {
    public let action = TaskType.condition
    public init() {}

    func runNow(_ invocation: TaskInvocation, log: (LogRecord.Level, String) -> Void) -> TaskOutcome {
        guard let text = invocation.config["expression"]?.stringValue else {
            return .failed(.init(kind: "config", message: "config.expression is missing"))
        }
        do {
            let result = try WorkflowDefinition.conditionExpression(text).evaluate(invocation.context).isTruthy
            log(.info, "condition \(text) is \(result); taking \"\(result ? "then" : "else")\"")
            return .completed(.object(["result": .bool(result), "branch": .string(result ? "then" : "else")]))
        } catch {
            return .failed(.init(kind: "config", message: "config.expression: \(error.description)"))
        }
    }
}
