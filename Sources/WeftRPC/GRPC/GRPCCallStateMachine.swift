/// The server side of one gRPC call (PROTOCOL-HTTP2.md) as a pure state
/// machine: no sockets, no nghttp2, no clock, no tasks. The transport feeds
/// it the request head, DATA, the end of the request, and asks it before it
/// sends response headers, messages and the status; it answers with what
/// to do. Illegal orders are refused, never ignored: no second status, no
/// message after the status. `GRPCCallStateMachineTests` drives every path.
///
/// What it decides:
/// - the head: POST, `content-type: application/grpc[+proto]`, header-list
///   size, a registered method, `grpc-encoding` (gzip, deflate, identity)
///   and whether to mirror it in responses (`grpc-accept-encoding`),
///   `grpc-timeout`, metadata (`-bin` values base64);
/// - messages: length-prefixed frames split anywhere across DATA frames,
///   the size limit checked on the prefix before the body arrives,
///   decompression bounded by the same limit, exactly one request message
///   for unary and server-streaming calls;
/// - the status: trailers-only before any response headers, trailers after.
struct GRPCCallStateMachine {
    struct Configuration: Sendable {
        var maxMessageSize: Int
        var maxHeaderListSize: Int
    }

    /// The request head as the transport collected it (field bytes, no
    /// Strings but the method).
    struct RequestHead {
        var method: String?
        var fields: HeaderFields
        /// `:path` (a String only when a message needs it).
        var pathField: HeaderFields.Index?
        var contentType: HeaderFields.Index?
        var timeout: HeaderFields.Index?
        var encoding: HeaderFields.Index?
        var acceptEncoding: HeaderFields.Index?
        var headersTooLarge = false
        /// Fields that may be metadata (not reserved), when the transport
        /// counted them; nil: walk the fields to find out.
        var metadataFields: Int? = nil

        var path: String { pathField.map { fields.string($0) } ?? "" }
    }

    /// Whether the router knows the call's path.
    enum Lookup {
        case found(RPCMethodDescriptor.Kind)
        case unknownMethod
        case unknownService(String)
    }

    /// What the transport does with a head.
    enum HeadAction {
        /// The call goes ahead.
        case accept(Accepted)
        /// Refuse with this status (trailers-only). `log`: a client mistake
        /// worth one info line (an unknown method is not: it is routine).
        case refuse(RPCError, log: Bool)
    }

    struct Accepted {
        var metadata: Metadata
        var deadline: Duration?
        var requestCompression: GRPCCompression.Algorithm?
        var responseCompression: GRPCCompression.Algorithm?
        /// The client lists gzip in grpc-accept-encoding: a handler may ask
        /// for compressed responses even when the request was not.
        var acceptsGzip = false
    }

    enum EndAction {
        /// A single-request call: its message, to run the handler with.
        case run(ArraySlice<UInt8>)
        /// A streaming call: the request stream ends here.
        case endOfMessages
        case refuse(RPCError)
        /// Nothing to do (the call is over already).
        case none
    }

    enum SendAction: Equatable {
        /// Response headers go first, then the message.
        case headersThenMessage
        case message
        /// The status is out: the message is refused.
        case refuse
    }

    enum StatusAction: Equatable {
        /// No headers went out yet: one HEADERS frame with `:status`,
        /// `content-type` and `grpc-status`, END_STREAM.
        case trailersOnly
        /// After headers (and messages): a trailing HEADERS frame.
        case trailers
        /// A status was sent already.
        case alreadySent
    }

    private enum Inbound { case idle, open, closed }
    private enum Outbound { case idle, headersSent, closed }

    let configuration: Configuration
    private var inbound = Inbound.idle
    private var outbound = Outbound.idle
    private var kind = RPCMethodDescriptor.Kind.unary
    private var isSingleRequest: Bool { kind.isSingleRequest }
    private var deframer: GRPCMessageDeframer
    private var requestCompression: GRPCCompression.Algorithm?
    /// Whether the single request message came compressed.
    private(set) var singleRequestCompressed = false
    private var singleRequest: ArraySlice<UInt8>?

    init(configuration: Configuration) {
        self.configuration = configuration
        self.deframer = GRPCMessageDeframer(maxMessageSize: configuration.maxMessageSize)
    }

    /// The status went out (or the stream closed): nothing more happens.
    var isClosed: Bool { outbound == .closed }

    // MARK: Request head

    mutating func receiveHead(_ head: RequestHead, lookup: Lookup) -> HeadAction {
        guard inbound == .idle else { return .refuse(.protocolViolation(.internal, "a second request head"), log: true) }
        inbound = .open
        let fields = head.fields
        guard head.method == "POST" else {
            return .refuse(.protocolViolation(.unimplemented, "gRPC requires POST, got \(head.method ?? "no method")"), log: true)
        }
        if let contentType = head.contentType {
            guard fields.withValue(contentType, Self.takesContentType) else {
                return .refuse(
                    .protocolViolation(
                        .unimplemented,
                        "content-type \(fields.string(contentType)) is not supported; use application/grpc+proto"),
                    log: true)
            }
        }
        guard !head.headersTooLarge else {
            return .refuse(
                RPCError(
                    code: .resourceExhausted,
                    message: "request headers exceed the limit of \(configuration.maxHeaderListSize) bytes"),
                log: true)
        }
        switch lookup {
        case .unknownMethod:
            return .refuse(RPCError(code: .unimplemented, message: "unknown method \(head.path)"), log: false)
        case .unknownService(let service):
            return .refuse(
                RPCError(code: .unimplemented, message: "unknown service \(service) (method \(head.path))"), log: false)
        case .found(let kind):
            self.kind = kind
        }
        var accepted = Accepted(metadata: Metadata())
        if let encoding = head.encoding, !fields.withValue(encoding, Self.namesNoCompression) {
            let name = fields.string(encoding)
            guard let algorithm = GRPCCompression.Algorithm(rawValue: name) else {
                return .refuse(.protocolViolation(.unimplemented, "grpc-encoding \(name) is not supported"), log: true)
            }
            accepted.requestCompression = algorithm
            requestCompression = algorithm
            // Mirror the request's compression when the client accepts it.
            if let accept = head.acceptEncoding,
                fields.string(accept).split(separator: ",").contains(where: { $0.filter { $0 != " " } == name })
            {
                accepted.responseCompression = algorithm
            }
        }
        if let accept = head.acceptEncoding {
            let value = fields.value(accept)
            accepted.acceptsGzip = value.count >= 4 && value.indices.dropLast(3).contains { value[$0...].starts(with: Self.gzip) }
        }
        if let timeout = head.timeout {
            guard let duration = GRPCTimeout.parse(fields.value(timeout)) else {
                return .refuse(RPCError(code: .invalidArgument, message: "malformed grpc-timeout \(fields.string(timeout))"), log: true)
            }
            accepted.deadline = duration
        }
        if head.metadataFields != 0 {
            for index in fields.indices where !HeaderName.isReserved(fields.name(index)) {
                let name = String(decoding: fields.name(index), as: UTF8.self)
                if name.hasSuffix("-bin") {
                    guard let bytes = Base64.decode(fields.value(index)) else {
                        return .refuse(RPCError(code: .invalidArgument, message: "metadata \(name) is not valid base64"), log: true)
                    }
                    accepted.metadata.add(key: name, value: .binary(bytes))
                } else {
                    accepted.metadata.add(key: name, value: .string(fields.string(index)))
                }
            }
        }
        return .accept(accepted)
    }

    private static let gzip: [UInt8] = Array("gzip".utf8)

    /// A `content-type` starting with `application/grpc` (the transport's
    /// test, not repeated here) whose rest is nothing, `+proto…` or
    /// parameters: the protobuf codec, the only one served.
    static func takesContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        let prefix = HeaderName.applicationGRPC.count
        guard value.count > prefix else { return true }
        return value[prefix] == UInt8(ascii: ";") || bytesHavePrefix(UnsafeRawBufferPointer(rebasing: value[prefix...]), "+proto")
    }

    /// A `grpc-encoding` of `identity`: no compression at all.
    static func namesNoCompression(_ value: UnsafeRawBufferPointer) -> Bool { bytesEqual(value, "identity") }

    /// A head `receiveHead` accepts (for a found method) with nothing to
    /// carry: POST, a content-type it takes, within the header-list limit,
    /// no compression (`grpc-encoding` absent or `namesNoCompression`,
    /// which the transport tells), no `grpc-timeout`, no metadata (so no trace
    /// context either): empty metadata, no deadline, no compression in
    /// the `Accepted` it gets. The transport may answer such a call to a
    /// context-free method without a call object (`HTTP2Stream`'s plain
    /// unary exchange), whose uncompressed answer needs nothing else of
    /// the head.
    static func isPlain(
        method: String?, contentType: UnsafeRawBufferPointer, hasEncoding: Bool, hasTimeout: Bool, metadataFields: Int,
        headersTooLarge: Bool
    ) -> Bool {
        method == "POST" && !headersTooLarge && !hasEncoding && !hasTimeout && metadataFields == 0 && takesContentType(contentType)
    }

    /// The whole request of a single-request call in `data`, which the
    /// transport knows to be all of the DATA frame that ends the request:
    /// one uncompressed message within the size limit. Returns its
    /// payload, a view of `data`.
    static func wholeUncompressedMessage(_ data: UnsafeRawBufferPointer, maxMessageSize: Int) -> UnsafeRawBufferPointer? {
        guard data.count >= 5, data[0] == 0 else { return nil }
        let length = Int(data[1]) << 24 | Int(data[2]) << 16 | Int(data[3]) << 8 | Int(data[4])
        guard length == data.count - 5, length <= maxMessageSize else { return nil }
        return UnsafeRawBufferPointer(rebasing: data[5...])
    }

    // MARK: Request messages

    /// The common unary call: the whole request is one uncompressed message,
    /// all of the last DATA frame. Returns that message's bytes (a view of
    /// `data`: no copy) and closes the request side, or nil when the call
    /// does not qualify (it then takes `receiveData`).
    mutating func wholeRequestInPlace(_ data: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard inbound == .open, outbound != .closed, isSingleRequest, singleRequest == nil, deframer.bufferedBytes == 0,
            let message = Self.wholeUncompressedMessage(data, maxMessageSize: configuration.maxMessageSize)
        else { return nil }
        inbound = .closed
        return message
    }

    /// Request bytes. Each complete message goes to `deliver` (its payload,
    /// decompressed, and its size as framed); a single-request call's
    /// message is also kept for `receiveEnd`. Returns the error that ends
    /// the call, if any.
    mutating func receiveData(
        _ data: UnsafeRawBufferPointer, deliver: (ArraySlice<UInt8>, Int, Bool) -> Void
    ) -> RPCError? {
        guard inbound == .open, outbound != .closed else { return nil }
        deframer.append(data)
        while true {
            let message: GRPCMessageDeframer.Message
            do {
                guard let next = try deframer.next() else { return nil }
                message = next
            } catch .messageTooLarge(let announced, let limit) {
                return RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(announced) bytes exceeds the limit of \(limit) bytes")
            } catch {
                return RPCError(code: .internal, message: "malformed gRPC message frame: \(error)")
            }
            let framedSize = 5 + message.bytes.count
            var payload = message.bytes
            if message.compressed {
                guard let algorithm = requestCompression else {
                    return RPCError(code: .internal, message: "compressed message without grpc-encoding")
                }
                do {
                    payload = try message.bytes.withUnsafeBytes {
                        try GRPCCompression.decompress($0, algorithm: algorithm, limit: configuration.maxMessageSize)
                    }[...]
                } catch GRPCCompression.CompressionError.tooLarge(let limit) {
                    return RPCError(
                        code: .resourceExhausted, message: "decompressed request message exceeds the limit of \(limit) bytes")
                } catch {
                    return RPCError(code: .internal, message: "cannot decompress request message (\(algorithm.rawValue))")
                }
            }
            if isSingleRequest {
                guard singleRequest == nil else {
                    return RPCError(code: .internal, message: "more than one request message for a \(kind.rawValue) call")
                }
                singleRequest = payload
                singleRequestCompressed = message.compressed
            }
            deliver(payload, framedSize, message.compressed)
        }
    }

    /// The client ended the request (END_STREAM).
    mutating func receiveEnd() -> EndAction {
        guard inbound == .open, outbound != .closed else { return .none }
        inbound = .closed
        do {
            try deframer.finish()
        } catch {
            return .refuse(.protocolViolation(.internal, "request ended inside a gRPC message frame (\(error))"))
        }
        guard isSingleRequest else { return .endOfMessages }
        guard let request = singleRequest else {
            return .refuse(.protocolViolation(.internal, "the call ended without a request message"))
        }
        singleRequest = nil
        return .run(request)
    }

    // MARK: Response

    mutating func sendMessage() -> SendAction {
        switch outbound {
        case .idle:
            outbound = .headersSent
            return .headersThenMessage
        case .headersSent:
            return .message
        case .closed:
            return .refuse
        }
    }

    mutating func sendStatus() -> StatusAction {
        switch outbound {
        case .idle:
            outbound = .closed
            return .trailersOnly
        case .headersSent:
            outbound = .closed
            return .trailers
        case .closed:
            return .alreadySent
        }
    }

    /// The stream is gone (reset, or the connection closed): whether the
    /// call was still open, so it counts as cancelled.
    mutating func streamClosed() -> Bool {
        inbound = .closed
        guard outbound != .closed else { return false }
        outbound = .closed
        return true
    }
}
