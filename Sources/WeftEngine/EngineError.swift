/// Why the engine cannot take a request now.
public enum EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `run()` has not started, or the engine has stopped (shutting down).
    case notRunning
    /// Resuming the executions left unfinished by the last run failed.
    case recoveryFailed(String)

    public var description: String {
        switch self {
        case .notRunning: "the engine is not running (starting or shutting down)"
        case .recoveryFailed(let reason): "cannot resume unfinished executions: \(reason)"
        }
    }
}
