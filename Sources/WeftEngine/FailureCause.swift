import WeftStore

/// Why an execution did not complete, as the `cause` label of
/// `weft_executions_finished_total` says it. The execution-success SLO
/// counts only `system` against Weft: a task that fails (its endpoint
/// answered 500, its template names a field that is not there), a timeout
/// the workflow set, and a cancel someone asked for are the workflow's or
/// the user's doing, and a service that counted them would page its
/// operators for its users' bugs.
public enum FailureCause: String, Sendable, Hashable, CaseIterable {
    /// The execution completed.
    case none
    /// A task failed for good: its own error (HTTP status, connection,
    /// configuration, output too large, egress refused).
    case taskError = "task_error"
    /// A task's attempt or total timeout, or the execution's timeout.
    case timeout
    /// Cancelled through the API.
    case cancelled
    /// Weft itself could not run a task: no runner for its type in this
    /// process, or the secret store failed to open a secret.
    case system

    /// The cause of an execution that ended as `status`, after `error` (the
    /// error of the task that failed it, if one did).
    static func of(_ status: ExecutionStatus, error: ExecutionStateMachine.TaskError?) -> FailureCause {
        switch status {
        case .completed, .pending, .running: .none
        case .cancelled: .cancelled
        case .timedOut: .timeout
        case .failed:
            if error?.system == true { .system } else if error?.kind == "timeout" { .timeout } else { .taskError }
        }
    }
}
