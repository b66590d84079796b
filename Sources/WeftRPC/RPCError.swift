/// The one error type of Weft's RPC layer: a gRPC status code, a message for the
/// caller, metadata sent as trailers, and an optional cause that is logged but
/// never sent. Every code maps to exactly one gRPC status and one HTTP status.
public struct RPCError: Error, Sendable, CustomStringConvertible {
    public var code: Code
    public var message: String
    public var metadata: Metadata
    public var cause: (any Error)?
    /// A more precise HTTP status than the code's own, for errors only HTTP
    /// can tell apart (415 wrong content-type, 413 body too large). gRPC
    /// callers still see `code`.
    public var httpStatusOverride: Int?
    /// Set when the code alone would classify it wrongly: a RESOURCE_EXHAUSTED
    /// because the whole server is past its capacity is `overload`, not a
    /// caller's limit (`overloaded(_:retryAfter:)`).
    public var outcomeOverride: RequestOutcome?
    /// Thrown by the REST bridge's request decoding (counted apart).
    public var decodeFailed = false

    public init(
        code: Code, message: String, metadata: Metadata = Metadata(), cause: (any Error)? = nil,
        httpStatus: Int? = nil
    ) {
        self.code = code
        self.message = message
        self.metadata = metadata
        self.cause = cause
        self.httpStatusOverride = httpStatus
    }

    /// The HTTP status of this error on the REST bridge.
    public var httpStatus: Int { httpStatusOverride ?? code.httpStatus }

    /// How the request ended for the service levels (`RequestOutcome`).
    public var outcome: RequestOutcome { outcomeOverride ?? RequestOutcome(code: code) }

    /// RESOURCE_EXHAUSTED (HTTP 429) with `retry-after` (whole seconds, at
    /// least 1) in its metadata: gRPC sends it as a trailer, REST as the header.
    public static func exhausted(_ message: String, retryAfter seconds: Double) -> RPCError {
        var metadata = Metadata()
        metadata.add("retry-after", String(max(1, Int(seconds.rounded(.up)))))
        return RPCError(code: .resourceExhausted, message: message, metadata: metadata)
    }

    /// The status the gRPC protocol prescribes for a client that broke it
    /// (no POST, a content-type or encoding the server does not speak, a
    /// truncated frame: UNIMPLEMENTED or INTERNAL), counted as the client's
    /// fault for the service levels, not the server's.
    public static func protocolViolation(_ code: Code, _ message: String) -> RPCError {
        var error = RPCError(code: code, message: message)
        error.outcomeOverride = .clientError
        return error
    }

    /// `exhausted`, because the server as a whole is past its capacity (not
    /// the caller's own limit): it counts as `overload`, against the
    /// availability SLO.
    public static func overloaded(_ message: String, retryAfter seconds: Double) -> RPCError {
        var error = exhausted(message, retryAfter: seconds)
        error.outcomeOverride = .overload
        return error
    }

    public var description: String { "\(code): \(message)" }

    /// A gRPC status code. A struct over a raw value (not a closed enum) so that
    /// codes received from peers that this build does not know survive.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: Int

        public init?(rawValue: Int) {
            guard (0...16).contains(rawValue) else { return nil }
            self.rawValue = rawValue
        }

        private init(_ raw: Int) { self.rawValue = raw }

        public static let ok = Code(0)
        public static let cancelled = Code(1)
        public static let unknown = Code(2)
        public static let invalidArgument = Code(3)
        public static let deadlineExceeded = Code(4)
        public static let notFound = Code(5)
        public static let alreadyExists = Code(6)
        public static let permissionDenied = Code(7)
        public static let resourceExhausted = Code(8)
        public static let failedPrecondition = Code(9)
        public static let aborted = Code(10)
        public static let outOfRange = Code(11)
        public static let unimplemented = Code(12)
        public static let `internal` = Code(13)
        public static let unavailable = Code(14)
        public static let dataLoss = Code(15)
        public static let unauthenticated = Code(16)

        /// Go's names (`codes.Code.String()`), which go-grpc-prometheus puts in
        /// the `grpc_code` label and which dashboards and alerts match on.
        public static let names = [
            "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
            "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
            "Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
            "Unauthenticated",
        ]

        /// The canonical upper-snake name (`NOT_FOUND`), as used in JSON error bodies.
        public static let canonicalNames = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
            "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
            "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
            "UNAUTHENTICATED",
        ]

        public var name: String { Self.names[rawValue] }
        public var canonicalName: String { Self.canonicalNames[rawValue] }
        public var description: String { canonicalName }

        /// The HTTP status for this code (google.rpc.Code's documented mapping,
        /// as used by grpc-gateway).
        public var httpStatus: Int {
            switch rawValue {
            case 0: return 200
            case 1: return 499
            case 2: return 500
            case 3: return 400
            case 4: return 504
            case 5: return 404
            case 6: return 409
            case 7: return 403
            case 8: return 429
            case 9: return 400
            case 10: return 409
            case 11: return 400
            case 12: return 501
            case 13: return 500
            case 14: return 503
            case 15: return 500
            default: return 401
            }
        }
    }
}

/// Errors that know which `RPCError` they are (e.g. a store's "not found").
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension RPCError {
    /// The status to send for any thrown error. Errors that are not `RPCError`
    /// or `RPCErrorConvertible` become INTERNAL with a generic message so that
    /// internals (paths, SQL, stack details) never reach the caller.
    public init(from error: any Error) {
        switch error {
        case let rpc as RPCError:
            self = rpc
        case let convertible as any RPCErrorConvertible:
            self = convertible.rpcError
        case is CancellationError:
            self = RPCError(code: .cancelled, message: "the call was cancelled", cause: error)
        default:
            self = RPCError(code: .internal, message: "internal error", cause: error)
        }
    }
}
