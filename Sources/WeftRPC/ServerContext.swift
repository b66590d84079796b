import Synchronization
public import NIOCore

/// What a handler knows about its call, and where it puts response metadata.
/// One per call; handlers may use it from any task.
public final class ServerContext: Sendable {
    public let descriptor: RPCMethodDescriptor
    /// Application metadata of the request (reserved gRPC/HTTP headers removed).
    public let requestMetadata: Metadata
    /// When the caller gives up (`grpc-timeout`), if it said.
    public let deadline: NIODeadline?
    /// The peer's address, for logs.
    public let peer: String
    /// `grpc-encoding` of the request messages ("identity" if none).
    public let requestEncoding: String
    /// The encoding the server uses for response messages ("identity" if none).
    public let responseEncoding: String
    /// Who calls, as the interceptor chain established it (nil for public
    /// methods called without credentials).
    public let principal: Principal?
    /// Present when the call is audited: what the handler notes here goes
    /// into its audit event.
    public let audit: CallAudit?
    /// How the call came (gRPC, REST, in process), when the transport says.
    public let transport: CallHead.Transport?
    /// The subject CN of the client's verified TLS certificate (mutual TLS).
    public let peerIdentity: String?

    private let responseMetadata = Mutex<(headers: Metadata, trailers: Metadata)>((Metadata(), Metadata()))
    /// Set (after the lock) once a handler adds response metadata: most
    /// calls add none, and their transport then takes no lock for it.
    private let hasResponseMetadata = Atomic<Bool>(false)
    private let cancelled = Atomic<Bool>(false)
    /// 0: no preference, 1: compress responses, 2: do not.
    private let compressionPreference = Atomic<UInt8>(0)
    private let requestCompressed = Atomic<Bool>(false)

    public init(
        descriptor: RPCMethodDescriptor,
        requestMetadata: Metadata,
        deadline: NIODeadline?,
        peer: String,
        requestEncoding: String,
        responseEncoding: String,
        principal: Principal? = nil,
        audit: CallAudit? = nil,
        transport: CallHead.Transport? = nil,
        peerIdentity: String? = nil
    ) {
        self.peerIdentity = peerIdentity
        self.principal = principal
        self.audit = audit
        self.transport = transport
        self.descriptor = descriptor
        self.requestMetadata = requestMetadata
        self.deadline = deadline
        self.peer = peer
        self.requestEncoding = requestEncoding
        self.responseEncoding = responseEncoding
    }

    /// The authenticated caller. Non-public methods always have one (the
    /// chain refused the call otherwise); this throws UNAUTHENTICATED when
    /// there is none, so a handler can never run as nobody.
    public var caller: Principal {
        get throws {
            guard let principal else {
                throw RPCError(code: .unauthenticated, message: "this call needs credentials")
            }
            return principal
        }
    }

    /// Adds response header metadata. Takes effect if called before the first
    /// response message is written (or before a unary handler returns).
    public func addResponseHeader(_ key: String, _ value: String) {
        addResponseMetadata { $0.headers.add(key, value) }
    }

    public func addResponseHeader(_ key: String, binary: [UInt8]) {
        addResponseMetadata { $0.headers.add(key, binary: binary) }
    }

    /// Adds trailing metadata, sent with the status.
    public func addResponseTrailer(_ key: String, _ value: String) {
        addResponseMetadata { $0.trailers.add(key, value) }
    }

    public func addResponseTrailer(_ key: String, binary: [UInt8]) {
        addResponseMetadata { $0.trailers.add(key, binary: binary) }
    }

    private func addResponseMetadata(_ change: (inout (headers: Metadata, trailers: Metadata)) -> Void) {
        responseMetadata.withLock { change(&$0) }
        hasResponseMetadata.store(true, ordering: .releasing)
    }

    /// Asks for the next response messages to be compressed (true), sent
    /// uncompressed (false), or left to the call's negotiation (nil: mirror
    /// a compressed request). Compression needs the client to accept gzip;
    /// gRPC only (REST ignores it).
    public func setResponseCompression(_ enabled: Bool?) {
        compressionPreference.store(enabled.map { $0 ? 1 : 2 } ?? 0, ordering: .relaxed)
    }

    var responseCompressionPreference: Bool? {
        switch compressionPreference.load(ordering: .relaxed) {
        case 1: return true
        case 2: return false
        default: return nil
        }
    }

    /// Whether the request message the handler took last came compressed
    /// (the gRPC compressed flag).
    public var lastRequestCompressed: Bool { requestCompressed.load(ordering: .relaxed) }

    func noteRequestCompressed(_ value: Bool) { requestCompressed.store(value, ordering: .relaxed) }

    /// True once the call is over from the caller's side: cancelled, reset,
    /// deadline passed or connection lost. Async handlers are also cancelled
    /// as Swift tasks; this flag serves code that polls.
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    func markCancelled() { cancelled.store(true, ordering: .relaxed) }

    func takeResponseHeaders() -> Metadata {
        guard hasResponseMetadata.load(ordering: .acquiring) else { return Metadata() }
        return responseMetadata.withLock { state in
            let headers = state.headers
            state.headers = Metadata()
            return headers
        }
    }

    func takeResponseTrailers() -> Metadata {
        guard hasResponseMetadata.load(ordering: .acquiring) else { return Metadata() }
        return responseMetadata.withLock { state in
            let trailers = state.trailers
            state.trailers = Metadata()
            return trailers
        }
    }
}
