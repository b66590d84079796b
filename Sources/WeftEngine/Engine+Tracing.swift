import Foundation
import Logging
import Tracing
import WeftObservability
import WeftStore

/// Spans the engine holds open: executions started by this process (ended
/// when they end; after a restart their attempts parent on the stored
/// context) and attempts leased to external workers (ended when the worker
/// reports). Bounded: past `limit`, a span ends when its work is handed on.
struct OpenSpans {
    private var executions: [String: any Span] = [:]
    private var external: [AttemptID: any Span] = [:]
    static let limit = 100_000

    func execution(_ id: String) -> (any Span)? { executions[id] }

    mutating func openExecution(_ id: String, _ span: any Span) {
        if executions.count < Self.limit { executions[id] = span } else { span.end() }
    }

    mutating func closeExecution(_ id: String) -> (any Span)? { executions.removeValue(forKey: id) }

    /// Opens an external attempt's span; a previous one of the same attempt
    /// (its lease expired) ends.
    mutating func openExternal(_ id: AttemptID, _ span: any Span) {
        if let previous = external.removeValue(forKey: id) {
            previous.attributes[SpanKeys.taskOutcome] = "lease_expired"
            previous.end()
        }
        if external.count < Self.limit { external[id] = span } else { span.end() }
    }

    mutating func closeExternal(_ id: AttemptID) -> (any Span)? { external.removeValue(forKey: id) }

    /// Everything still open, removed (shutdown).
    mutating func takeAll() -> (executions: [any Span], external: [any Span]) {
        defer {
            executions.removeAll()
            external.removeAll()
        }
        return (Array(executions.values), Array(external.values))
    }
}

extension Engine {
    /// The `weft.execution` span of a new execution: child of the request's
    /// span (the task-local context), a new trace when no request started
    /// it, none under an untraced request.
    func executionSpan(_ workflow: WorkflowRecord, executionId: String) -> (any Span)? {
        guard let span = WeftTracing.start(SpanNames.execution) else { return nil }
        span.attributes[SpanKeys.workflowId] = workflow.id
        span.attributes[SpanKeys.workflowName] = workflow.name
        span.attributes[SpanKeys.workflowVersion] = workflow.version
        span.attributes[SpanKeys.executionId] = executionId
        return span
    }

    /// A `weft.task` span for an attempt, child of its execution's span
    /// (or of the stored context after a restart); nil when tracing is off.
    func taskSpan(_ state: ExecutionState, executionId: String, task: TaskRecord, attempt: Int) -> (any Span)? {
        guard WeftTracing.isEnabled,
            let parent = spans.execution(executionId)?.context
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

    static func end(_ span: (any Span)?, _ outcome: TaskOutcome) {
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
    func logTraced(_ trace: TraceHeaders, _ body: (Logger) -> Void) {
        guard WeftTracing.isEnabled, !trace.isEmpty else { return body(logger) }
        InstrumentationContext.withValue(WeftTracing.context(from: trace)) { body(logger) }
    }

    /// After an execution's final commit: metrics, its span, its last log
    /// line, and its watchers.
    func executionEnded(
        _ executionId: String, state: ExecutionState, status: ExecutionStatus, error: String?, cost: ExecutionCost, at: Date
    ) {
        if let count = running[state.orgId] {
            running[state.orgId] = count > 1 ? count - 1 : nil
            overload.executionFinished()
        }
        metrics?.executionFinished(
            orgId: state.orgId, workflow: state.workflowName, status: status.rawValue, cause: state.machine.cause,
            duration: at.timeIntervalSince(state.createdAt))
        metrics?.executionCosted(cost.total)
        if let span = spans.closeExecution(executionId) {
            span.attributes[SpanKeys.executionStatus] = status.rawValue
            span.attributes[SpanKeys.executionCause] = state.machine.cause.rawValue
            span.attributes[SpanKeys.executionCost] = cost.total
            if status != .completed { span.setStatus(SpanStatus(code: .error, message: error)) }
            span.end()
        }
        if logger.logLevel <= .debug {
            logTraced(state.trace) {
                $0.debug(
                    "execution finished",
                    metadata: [
                        "execution_id": "\(executionId)", "status": "\(status.rawValue)", "cost_dollars": "\(cost.total)",
                    ])
            }
        }
        logWriter.append(
            [LogRecord(
                executionId: executionId, taskId: nil, level: status == .completed ? .info : .error,
                message: "execution \(status.lowercased)\(error.map { ": \($0)" } ?? "")", createdAt: at)],
            final: executionId)
        feed.publish(
            executionId, .state(status: status, task: nil, message: error ?? "execution \(status.lowercased)", at: at))
        feed.publish(executionId, .finished(status: status))
    }

    /// At shutdown: ends the spans of executions and external attempts still
    /// running, marked as interrupted, so what they covered so far is
    /// exported. The executions go on after the next start, under their
    /// stored trace context.
    public func endOpenSpans() {
        let open = spans.takeAll()
        for span in open.executions {
            span.attributes[SpanKeys.executionStatus] = ExecutionStatus.running.rawValue
            span.attributes[SpanKeys.interrupted] = true
            span.end()
        }
        for span in open.external {
            span.attributes[SpanKeys.interrupted] = true
            span.end()
        }
    }
}
