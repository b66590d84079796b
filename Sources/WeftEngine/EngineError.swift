/// Why the engine cannot take a request now.
public enum EngineError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `run()` has not started, or the engine has stopped (shutting down).
    case notRunning
    /// Resuming the executions left unfinished by the last run failed.
    case recoveryFailed(String)
    /// The organization runs as many executions as its plan allows.
    case tooManyRunning(limit: Int)

    public var description: String {
        switch self {
        case .notRunning: "the engine is not running (starting or shutting down)"
        case .recoveryFailed(let reason): "cannot resume unfinished executions: \(reason)"
        case .tooManyRunning(let limit):
            "the organization already runs \(limit) executions, its plan's concurrent_executions quota; retry when one finishes"
        }
    }
}
