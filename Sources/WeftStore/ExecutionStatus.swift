/// Where an execution is in its life. Stored (and shown over REST) as its
/// raw value, the same strings the store has always held, so no data
/// migration goes with the type.
public enum ExecutionStatus: String, Sendable, Hashable, CaseIterable {
    /// Created but not started (a crash before the first commit leaves it so).
    case pending = "Pending"
    case running = "Running"
    case completed = "Completed"
    case failed = "Failed"
    case cancelled = "Cancelled"
    case timedOut = "TimedOut"

    /// No further change can happen.
    public var isFinished: Bool {
        switch self {
        case .pending, .running: false
        case .completed, .failed, .cancelled, .timedOut: true
        }
    }

    /// Lower-case, as log lines say it ("execution timedout").
    public var lowercased: String { rawValue.lowercased() }
}

/// Where one task of an execution is. Stored as its raw value.
public enum TaskStatus: String, Sendable, Hashable, CaseIterable {
    case pending = "Pending"
    case queued = "Queued"
    case running = "Running"
    case completed = "Completed"
    case failed = "Failed"
    /// An attempt failed; the next one waits for its backoff.
    case retrying = "Retrying"
    /// Its branch was not taken (or every dependency was skipped).
    case skipped = "Skipped"
    case cancelled = "Cancelled"

    /// The task will not run again in this execution.
    public var isTerminal: Bool {
        switch self {
        case .completed, .failed, .skipped, .cancelled: true
        case .pending, .queued, .running, .retrying: false
        }
    }
}

/// What started an execution. Stored as its raw value.
public enum TriggerKind: String, Sendable, Hashable, CaseIterable {
    /// By hand, from the dashboard.
    case manual
    /// By an API call (ExecuteWorkflow, POST …/execute).
    case api
    /// By a schedule's tick (live, caught up, or a backfill).
    case schedule
    /// By a call to a webhook trigger's URL.
    case webhook
    /// By a published event a trigger listens for.
    case event
}
