import WeftStore

/// The queues the engine uses, by name.
public enum EngineQueues {
    /// Built-in task types, run by the in-process workers.
    public static let builtin = "builtin"
    /// Durable timers (attempt, task and execution timeouts), by due time.
    public static let timers = QueueItem.timersQueue
    /// External queues are "ext/<organization id>/<name>" (before
    /// organizations, "ext/<owner id>/<name>"): per organization, so one
    /// account's workers never see another's tasks.
    public static let externalPrefix = "ext/"

    public static func external(owner: String, name: String) -> String { "\(externalPrefix)\(owner)/\(name)" }

    /// Queues whose leases only this process holds (ended at a restart).
    public static let inProcess = [builtin, timers]
}
