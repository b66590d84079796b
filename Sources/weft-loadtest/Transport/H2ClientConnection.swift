import CNghttp2
import NIOCore

/// An HTTP/2 client connection on nghttp2's client session (the same C
/// library as the server's side), for gRPC and REST over h2c or TLS.
///
/// nghttp2 is the protocol state machine and does no I/O: bytes read from
/// the channel go into `nghttp2_session_mem_recv`, and what it wants to send
/// comes out of `nghttp2_session_mem_send` and is written once per read
/// burst or per `flush()`. Confined to the channel's event loop.
final class H2ClientConnection: ChannelInboundHandler, ClientConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// One request's state, reached from nghttp2's callbacks through the
    /// stream's user data (no dictionary lookup per header); retained by
    /// the session from submit to stream close.
    private final class Stream {
        var response = WireResponse()
        let completion: (WireResponse) -> Void
        let body: [UInt8]
        var sent = 0
        let wantsBody: Bool
        let isGRPC: Bool

        init(completion: @escaping (WireResponse) -> Void, body: [UInt8], wantsBody: Bool, isGRPC: Bool) {
            self.completion = completion
            self.body = body
            self.wantsBody = wantsBody
            self.isGRPC = isGRPC
        }
    }

    private var session: OpaquePointer!
    private var context: ChannelHandlerContext?
    /// Streams open now, by id (for failing them all when the connection ends).
    private var streams: [Int32: Stream] = [:]
    let capacity: Int
    private(set) var isOpen = false
    /// Why the connection ended (completes requests sent after that).
    private var closedReason: String?

    var inFlight: Int { streams.count }

    /// - Parameter capacity: concurrent streams this connection carries
    ///   (the server's MAX_CONCURRENT_STREAMS also applies: nghttp2 holds
    ///   requests past it until a stream ends).
    init(capacity: Int) {
        self.capacity = capacity
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { session, frame, name, nameLength, value, valueLength, _, _ in
            guard let stream = H2ClientConnection.stream(session, frame!.pointee.hd.stream_id) else { return 0 }
            H2ClientConnection.header(
                stream, name: UnsafeRawBufferPointer(start: name, count: nameLength),
                value: UnsafeRawBufferPointer(start: value, count: valueLength))
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { session, _, id, data, length, _ in
            guard let stream = H2ClientConnection.stream(session, id), stream.wantsBody else { return 0 }
            stream.response.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, id, code, user in
            let connection = Unmanaged<H2ClientConnection>.fromOpaque(user!).takeUnretainedValue()
            connection.streamClosed(id, code: code)
            return 0
        }
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        defer { nghttp2_option_del(option) }
        // A load generator must not be stopped by its own peer's caps.
        nghttp2_option_set_peer_max_concurrent_streams(option, UInt32(max(capacity, 100)))
        var session: OpaquePointer?
        nghttp2_session_client_new2(&session, callbacks, nil, option)
        self.session = session
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        // Large windows: responses are never held back by flow control.
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: 1 << 24),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 1 << 26)
    }

    deinit { nghttp2_session_del(session) }

    // MARK: Requests

    func send(_ request: PreparedRequest, completion: @escaping (WireResponse) -> Void) {
        guard isOpen else {
            completion(WireResponse(transportError: closedReason ?? "connection not open"))
            return
        }
        let wire = request.wire
        let stream = Stream(completion: completion, body: wire.body, wantsBody: wire.wantsBody, isGRPC: wire.isGRPC)
        var id: Int32
        if wire.body.isEmpty {
            id = request.nva.withUnsafeBufferPointer {
                nghttp2_submit_request(session, nil, $0.baseAddress, $0.count, nil, Unmanaged.passUnretained(stream).toOpaque())
            }
        } else {
            var provider = nghttp2_data_provider(
                source: nghttp2_data_source(ptr: nil),
                read_callback: { _, id, buffer, length, flags, _, user in
                    let connection = Unmanaged<H2ClientConnection>.fromOpaque(user!).takeUnretainedValue()
                    return connection.readBody(stream: id, into: buffer!, length: length, flags: flags!)
                })
            id = request.nva.withUnsafeBufferPointer {
                nghttp2_submit_request(session, nil, $0.baseAddress, $0.count, &provider, Unmanaged.passUnretained(stream).toOpaque())
            }
        }
        guard id > 0 else {
            completion(WireResponse(transportError: "cannot submit: \(String(cString: nghttp2_strerror(id)))"))
            return
        }
        // `streams` holds the reference the stream user data points at.
        streams[id] = stream
    }

    private static func stream(_ session: OpaquePointer?, _ id: Int32) -> Stream? {
        guard let pointer = nghttp2_session_get_stream_user_data(session, id) else { return nil }
        return Unmanaged<Stream>.fromOpaque(pointer).takeUnretainedValue()
    }

    private func readBody(stream id: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = Self.stream(session, id) else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let n = min(length, stream.body.count - stream.sent)
        let sent = stream.sent
        stream.body.withUnsafeBufferPointer { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress! + sent, byteCount: n) }
        stream.sent += n
        if stream.sent == stream.body.count { flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
        return n
    }

    // MARK: Responses

    private static let status = Array(":status".utf8)
    private static let grpcStatus = Array("grpc-status".utf8)
    private static let grpcMessage = Array("grpc-message".utf8)
    private static let retryAfter = Array("retry-after".utf8)

    private static func header(_ stream: Stream, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        if name.elementsEqual(Self.status) {
            stream.response.httpStatus = Self.integer(value) ?? 0
        } else if name.elementsEqual(Self.grpcStatus) {
            stream.response.grpcStatus = Self.integer(value)
        } else if name.elementsEqual(Self.grpcMessage) {
            stream.response.grpcMessage = String(decoding: value, as: UTF8.self).removingPercentEncoding()
        } else if name.elementsEqual(Self.retryAfter) {
            stream.response.retryAfter = Double(String(decoding: value, as: UTF8.self))
        }
    }

    private static func integer(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var n = 0
        for byte in bytes {
            guard byte >= 0x30 && byte <= 0x39 else { return nil }
            n = n * 10 + Int(byte - 0x30)
        }
        return n
    }

    private func streamClosed(_ id: Int32, code: UInt32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        if stream.response.httpStatus == 0 {
            stream.response.transportError = code == 0 ? "stream closed without a response" : "stream reset (HTTP/2 error \(code))"
        } else if stream.isGRPC, stream.response.grpcStatus == nil {
            stream.response.transportError = "gRPC response without grpc-status (HTTP \(stream.response.httpStatus))"
        }
        stream.completion(stream.response)
    }

    // MARK: Channel

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { activate() }
    }

    func channelActive(context: ChannelHandlerContext) {
        activate()
        context.fireChannelActive()
    }

    private func activate() {
        guard !isOpen, closedReason == nil else { return }
        isOpen = true
        flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let rc = buffer.withUnsafeReadableBytes { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
        if rc < 0 { fail("HTTP/2 protocol error: \(String(cString: nghttp2_strerror(Int32(rc))))") }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush()
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            fail("the server ended the HTTP/2 session (GOAWAY)")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("the server closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("connection error: \(error)")
    }

    func flush() {
        guard isOpen, let context else { return }
        var buffer: ByteBuffer?
        while true {
            var pointer: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &pointer)
            if n < 0 {
                fail("HTTP/2 send error: \(String(cString: nghttp2_strerror(Int32(n))))")
                return
            }
            guard n > 0, let pointer else { break }
            if buffer == nil { buffer = context.channel.allocator.buffer(capacity: max(n, 16 * 1024)) }
            buffer!.writeBytes(UnsafeRawBufferPointer(start: pointer, count: n))
        }
        if let buffer { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
    }

    func close() {
        guard let context else { return }
        if isOpen {
            nghttp2_session_terminate_session(session, 0)
            flush()
        }
        context.close(promise: nil)
    }

    /// Ends the connection: every stream still open completes with `reason`.
    private func fail(_ reason: String) {
        guard closedReason == nil else { return }
        closedReason = reason
        isOpen = false
        let open = streams
        streams = [:]
        for (_, stream) in open { stream.completion(WireResponse(transportError: reason)) }
        context?.close(promise: nil)
    }
}

extension String {
    /// grpc-message is percent-encoded (PROTOCOL-HTTP2.md).
    func removingPercentEncoding() -> String {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == 0x25, let high = iterator.next(), let low = iterator.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            {
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
