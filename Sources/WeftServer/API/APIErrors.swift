public import WeftEngine
public import WeftRPC
public import WeftStore

extension StoreError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .notFound(let message): return RPCError(code: .notFound, message: message)
        case .alreadyExists(let message): return RPCError(code: .alreadyExists, message: message)
        // AIP-154: a stale etag is ABORTED (HTTP 409).
        case .conflict(let message): return RPCError(code: .aborted, message: message)
        case .invalid(let message): return RPCError(code: .invalidArgument, message: message)
        case .permissionDenied(let message): return RPCError(code: .permissionDenied, message: message)
        }
    }
}

extension DefinitionError: RPCErrorConvertible {
    public var rpcError: RPCError { RPCError(code: .invalidArgument, message: message) }
}

/// The engine is starting or shutting down: a client should retry (on
/// another instance), as with any UNAVAILABLE (HTTP 503).
extension EngineError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .notRunning: RPCError(code: .unavailable, message: description)
        case .recoveryFailed: RPCError(code: .unavailable, message: "the engine could not resume unfinished executions")
        // No time is known when one will finish: a short, honest guess.
        case .tooManyRunning: RPCError.exhausted(description, retryAfter: 5)
        }
    }
}

extension BatchWriterError: RPCErrorConvertible {
    public var rpcError: RPCError { RPCError(code: .unavailable, message: description) }
}

enum APIError {
    static func required(_ field: String) -> RPCError {
        RPCError(code: .invalidArgument, message: "\(field) is required")
    }

    static func workflowNotFound(_ id: String) -> RPCError {
        RPCError(code: .notFound, message: "workflow \(id) not found")
    }
}
