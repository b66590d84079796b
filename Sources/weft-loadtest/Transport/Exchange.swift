import NIOCore

/// One request as it goes on the wire: its headers (HTTP/2 pseudo-headers
/// included; HTTP/1.1 takes the method, path and the rest), its body, and
/// whether the caller wants the response body back.
struct WireRequest: Sendable {
    var method: String
    var path: String
    /// Regular headers (lower-case names), without pseudo-headers.
    var headers: [(String, String)]
    var body: [UInt8]
    /// gRPC: the response's status is in `grpc-status`, not `:status`.
    var isGRPC: Bool
    /// Keep the response body (a setup call reads it; load calls do not).
    var wantsBody: Bool
}

/// What came back for one request.
struct WireResponse: Sendable {
    var httpStatus = 0
    /// `grpc-status` from the trailers (or a trailers-only response).
    var grpcStatus: Int?
    var grpcMessage: String?
    /// `retry-after` (HTTP) or `retry-after` metadata (gRPC), in seconds.
    var retryAfter: Double?
    var body: [UInt8] = []
    /// The stream was reset, the connection failed or closed first.
    var transportError: String?

    /// The outcome label a report counts it under: `OK`, a gRPC code name,
    /// an HTTP code, or `transport`.
    var outcome: String {
        if transportError != nil { return "transport" }
        if let grpcStatus { return GRPCCode.name(grpcStatus) }
        return String(httpStatus)
    }

    var succeeded: Bool {
        if transportError != nil { return false }
        if let grpcStatus { return grpcStatus == 0 && httpStatus == 200 }
        return (200..<300).contains(httpStatus)
    }

    /// Refused for load (429 / RESOURCE_EXHAUSTED): counted apart from errors.
    var isRefusal: Bool { httpStatus == 429 || grpcStatus == 8 }
}

/// gRPC status code names (as grpc_server_handled_total labels them).
enum GRPCCode {
    static let names = [
        "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
        "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
        "Internal", "Unavailable", "DataLoss", "Unauthenticated",
    ]

    static func name(_ code: Int) -> String { names.indices.contains(code) ? names[code] : "code\(code)" }
}

/// A client connection that takes requests: HTTP/2 (many streams) or
/// HTTP/1.1 (one at a time). Confined to its channel's event loop: every
/// method is called on it, and `completion` runs on it.
protocol ClientConnection: AnyObject {
    /// Requests sent and not answered yet.
    var inFlight: Int { get }
    /// How many requests it may carry at once.
    var capacity: Int { get }
    var isOpen: Bool { get }
    func send(_ request: PreparedRequest, completion: @escaping (WireResponse) -> Void)
    /// Sends what was queued by `send` since the last flush.
    func flush()
    func close()
}

/// gRPC's length-prefixed message framing.
enum GRPCFrame {
    static func wrap(_ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0]
        out.reserveCapacity(payload.count + 5)
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: payload)
        return out
    }

    /// The first message of a response body (nil: none or compressed).
    static func firstMessage(_ body: [UInt8]) -> [UInt8]? {
        guard body.count >= 5, body[0] == 0 else { return nil }
        let length = Int(body[1]) << 24 | Int(body[2]) << 16 | Int(body[3]) << 8 | Int(body[4])
        guard body.count >= 5 + length else { return nil }
        return Array(body[5..<(5 + length)])
    }
}
