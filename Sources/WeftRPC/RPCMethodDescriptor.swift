/// Names one RPC: `/service/method` on the wire.
///
/// A class, made once per method at registration: every call passes it
/// along (context, interceptors, observability), and a reference is one
/// retain where a struct of three strings was three.
public final class RPCMethodDescriptor: Hashable, Sendable, CustomStringConvertible {
    /// The streaming shape, named as go-grpc-prometheus's `grpc_type` label.
    public enum Kind: String, Sendable {
        case unary = "unary"
        case serverStreaming = "server_stream"
        case clientStreaming = "client_stream"
        case bidiStreaming = "bidi_stream"

        /// Whether the request side carries exactly one message.
        var isSingleRequest: Bool { self == .unary || self == .serverStreaming }
    }

    /// Fully qualified service name, e.g. `grpc.health.v1.Health`.
    public let service: String
    public let method: String
    public let kind: Kind
    /// `service/method`, the name of the call's span (made once, not per call).
    public let spanName: String
    /// The method only reads, by its name (AIP-131 ff.: Get, List, Search,
    /// Watch, Tail, Check, Heartbeat, Poll, ...): interceptors that act on
    /// changes (audit) skip it without looking at strings per call.
    public let isReadOnly: Bool
    /// Its class for the service-level indicators (`none`: not a user request).
    public let requestClass: RequestClass

    static let readPrefixes = ["Get", "List", "Search", "Watch", "Tail", "Check", "Heartbeat", "Poll", "Echo", "Server", "Predict"]

    public init(service: String, method: String, kind: Kind) {
        self.service = service
        self.method = method
        self.kind = kind
        self.spanName = "\(service)/\(method)"
        self.isReadOnly = Self.readPrefixes.contains { method.hasPrefix($0) }
        self.requestClass = RequestClass(service: service, method: method, kind: kind, isReadOnly: isReadOnly)
    }

    /// The HTTP/2 `:path`, e.g. `/grpc.health.v1.Health/Check`.
    public var path: String { "/\(service)/\(method)" }
    public var description: String { path }

    public static func == (lhs: RPCMethodDescriptor, rhs: RPCMethodDescriptor) -> Bool {
        lhs === rhs || (lhs.service == rhs.service && lhs.method == rhs.method && lhs.kind == rhs.kind)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(service)
        hasher.combine(method)
        hasher.combine(kind)
    }
}
