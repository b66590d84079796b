/// The type of a task (the seed's `action`): which runner executes it.
/// Stored and sent as its raw value ("http", "noop", ...).
public enum TaskType: Sendable, Hashable, CustomStringConvertible {
    case noop
    case log
    case http
    case delay
    case transform
    case condition
    /// Runs in a worker outside the server (the worker protocol).
    case external
    /// A name this build has no built-in runner for. Definitions saved
    /// through the API never hold one (validation refuses it, naming the
    /// known types); a runner registered in code (tests, embedders) may
    /// take it.
    case other(String)

    /// The built-in types, in the order the API lists them.
    public static let builtin: [TaskType] = [.noop, .log, .http, .delay, .transform, .condition, .external]

    public init(rawValue: String) {
        switch rawValue {
        case "noop": self = .noop
        case "log": self = .log
        case "http": self = .http
        case "delay": self = .delay
        case "transform": self = .transform
        case "condition": self = .condition
        case "external": self = .external
        default: self = .other(rawValue)
        }
    }

    public var rawValue: String {
        switch self {
        case .noop: "noop"
        case .log: "log"
        case .http: "http"
        case .delay: "delay"
        case .transform: "transform"
        case .condition: "condition"
        case .external: "external"
        case .other(let name): name
        }
    }

    public var isBuiltin: Bool {
        if case .other = self { false } else { true }
    }

    public var description: String { rawValue }
}
