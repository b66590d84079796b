/// How a request ended, for service levels: the one classification of gRPC
/// codes and HTTP statuses that the SLI counter (`weft_requests_total`), the
/// spans and the REST mapping share, so a condition counts the same over
/// either transport.
///
/// - `serverError`: Weft failed the request (gRPC Unknown, DeadlineExceeded,
///   Unimplemented, Internal, Unavailable, DataLoss — OpenTelemetry's list of
///   server-span errors — and HTTP 5xx). Spends the availability budget;
///   the span is an error.
/// - `overload`: refused because the server as a whole is past its capacity
///   (admission control, the password-hashing pool): RESOURCE_EXHAUSTED /
///   429 with `retry-after`, marked by the code that refuses
///   (`RPCError.overloaded`). Spends the availability budget: the caller
///   did nothing wrong. The span is not an error (the server chose to
///   refuse) but says `weft.outcome=overload`.
/// - `clientError`: the caller's request or its limits (every other code,
///   HTTP 4xx, and RESOURCE_EXHAUSTED / 429 from a caller's own quota or rate
///   limit or a size limit). A good event for availability.
/// - `ok`.
public enum RequestOutcome: String, Sendable, CaseIterable {
    case ok
    case clientError = "client_error"
    case overload
    case serverError = "server_error"

    /// The outcome of a gRPC status when nothing more is known (a
    /// RESOURCE_EXHAUSTED without `RPCError.overloaded` is a caller's limit).
    public init(code: RPCError.Code) {
        switch code {
        case .ok: self = .ok
        case .unknown, .deadlineExceeded, .unimplemented, .internal, .unavailable, .dataLoss: self = .serverError
        default: self = .clientError
        }
    }

    /// The outcome of an HTTP status when no `RPCError` stands behind it.
    public init(httpStatus: Int) {
        switch httpStatus {
        case ..<400: self = .ok
        case 500...: self = .serverError
        default: self = .clientError
        }
    }

    /// Whether it spends the availability error budget.
    public var spendsBudget: Bool { self == .serverError || self == .overload }
}

/// What kind of user request a method is, for the latency and availability
/// SLIs: each class has its own latency threshold (an execute waits for a
/// commit, a login for a password hash). `none` is not a user request
/// (health checks, reflection, the interop test services, `/metrics`) and
/// is not counted in the SLIs at all.
public enum RequestClass: String, Sendable, CaseIterable {
    case read
    case write
    case execute
    case auth
    /// Server streams and long polls (WatchExecution, TailLogs, PollTask):
    /// counted for availability, not for latency (they last as long as the
    /// caller wants).
    case stream
    /// A request no method took: an unknown path, a malformed request the
    /// transport answered itself.
    case other
    case none

    /// The classes whose requests have a latency SLI.
    public static let timed: [RequestClass] = [.read, .write, .execute, .auth]
    /// The classes counted by `weft_requests_total`.
    public static let counted: [RequestClass] = [.read, .write, .execute, .auth, .stream, .other]

    static let excludedServicePrefixes = ["grpc.health.", "grpc.reflection.", "grpc.testing.", "weft.testing."]
    static let executeMethods: Set<String> = [
        "weft.v1.ExecutionService/ExecuteWorkflow", "weft.v1.EventService/PublishEvent",
        "weft.v1.TriggerService/DeliverWebhook",
    ]
    static let authMethods: Set<String> = [
        "weft.v1.UserService/Register", "weft.v1.UserService/Login", "weft.v1.UserService/Refresh",
        "weft.v1.UserService/Logout", "weft.v1.UserService/ChangePassword",
    ]
    static let longPolls: Set<String> = ["weft.v1.WorkerService/PollTask"]

    /// A method's class, by its service, name and shape (worked out once per method).
    init(service: String, method: String, kind: RPCMethodDescriptor.Kind, isReadOnly: Bool) {
        let name = "\(service)/\(method)"
        if Self.excludedServicePrefixes.contains(where: { service.hasPrefix($0) }) || service == "unknown" {
            self = .none
        } else if kind != .unary || Self.longPolls.contains(name) {
            self = .stream
        } else if Self.executeMethods.contains(name) {
            self = .execute
        } else if Self.authMethods.contains(name) {
            self = .auth
        } else {
            self = isReadOnly ? .read : .write
        }
    }
}
