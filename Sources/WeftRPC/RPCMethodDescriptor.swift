/// Names one RPC: `/service/method` on the wire.
public struct RPCMethodDescriptor: Hashable, Sendable, CustomStringConvertible {
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

    public init(service: String, method: String, kind: Kind) {
        self.service = service
        self.method = method
        self.kind = kind
        self.spanName = "\(service)/\(method)"
    }

    /// The HTTP/2 `:path`, e.g. `/grpc.health.v1.Health/Check`.
    public var path: String { "/\(service)/\(method)" }
    public var description: String { path }
}
