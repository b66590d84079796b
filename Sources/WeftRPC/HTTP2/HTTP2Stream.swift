import CNghttp2
import NIOCore
import Synchronization

/// One HTTP/2 stream: nghttp2 I/O and flow control only. It collects the
/// request head, hands the exchange to a `GRPCServerCall` (content-type
/// `application/grpc…`) or an `HTTP2RESTExchange` (anything else), and
/// sends what they produce: response headers, the body through nghttp2's
/// data provider, trailers. The one exception: a plain unary call to a
/// context-free method, which it answers itself (`Exchange.plainUnary`).
///
/// All state is touched only on the connection's event loop (nghttp2
/// callbacks, or work hopped there with `eventLoop.execute`); handler tasks
/// reach it only through such hops, which is why it may be captured by them.
final class HTTP2Stream: @unchecked Sendable {
    /// Set again when the connection reuses this object for a new stream
    /// (`reuse(id:)`).
    private(set) var id: Int32
    let connection: HTTP2ServerConnectionHandler
    /// The server's environment, shared by every stream of every connection,
    /// read through the connection rather than stored: a reference stored
    /// per stream or per call is a retain of one object from every event
    /// loop on every call (an atomic write whose cache line moves between
    /// cores), while reading `let`s through `let`s needs none.
    @inline(__always) var environment: ServerEnvironment { connection.environment }

    // Request head. Regular header fields are kept as bytes and turned into
    // Strings only when needed (metadata, plain HTTP), so a typical gRPC call
    // allocates nothing per header.
    private(set) var method: String?
    /// `:path`, kept with the other fields as bytes: the method lookup needs
    /// no String.
    private(set) var pathField: HeaderFields.Index?
    var path: String? { pathField.map { fields.string($0) } }
    private(set) var fields = HeaderFields()
    private var contentType: HeaderFields.Index?
    /// `content-length`, if the request declared one (nghttp2 checked its
    /// form; read as the field arrives, -1 if it were not digits).
    private var declaredContentLength: Int?
    private var timeoutField: HeaderFields.Index?
    private var encodingField: HeaderFields.Index?
    private var acceptEncodingField: HeaderFields.Index?
    private var headerListSize = 0
    private var headersTooLarge = false
    /// Regular fields that are not reserved: gRPC metadata to collect.
    private var metadataFields = 0

    private enum Exchange {
        case head
        /// A call to a context-free unary method with a plain head
        /// (`GRPCCallStateMachine.isPlain`, no interceptor): answered by
        /// the stream itself when its message is all of the DATA frame
        /// that ends the request, the common case. Anything
        /// else (a split, padded or compressed message, a fast path that
        /// declines or throws, a reset) makes the `GRPCServerCall` it would
        /// have had, started with the same head and observation, and hands
        /// it the event. (A health check's call object and what it carried
        /// were more than half of its retains and releases.)
        case plainUnary(RPCRouter.RegisteredMethod)
        case grpc(GRPCServerCall)
        case rest(HTTP2RESTExchange)
        /// Nothing more to hand over: the stream closed (the exchange was
        /// let go: it holds the stream for its handler task, so holding it
        /// here too would be a cycle), or a plain unary call was answered.
        case closed
    }
    private var exchange = Exchange.head
    /// A plain unary call's observation, begun with its head as
    /// `GRPCServerCall.start` begins a call's (started counted, the
    /// handling time and any span from the head's read); handed to the
    /// call if one is made.
    private var plainObservation: CallObservability.GRPCCall?
    /// Bytes received that have not been returned to the flow-control window.
    private var unconsumed = 0
    /// Request body bytes received so far.
    private var bodyReceived = 0
    private(set) var isClosed = false

    // Response body: bytes not yet taken by nghttp2 are
    // `outbound[outboundOffset...]`. A plain array (not a ByteBuffer): one
    // allocation, usually the very array the response was serialized into.
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var outboundEnded = false
    private var pendingTrailers: Trailers = .none
    private var dataDeferred = false
    /// A handler waits for the body to drain (`bodyDrained`): set by the
    /// call when a writer waits, so other calls skip the notice.
    var drainWatched = false

    enum Trailers {
        case none
        /// grpc-status 0 and nothing else: the static set.
        case ok
        case block(HeaderBlock)
    }

    // The connection's `HTTP2StreamList` links (event loop only).
    var listed = false
    var listNext: Unmanaged<HTTP2Stream>?
    var listPrevious: Unmanaged<HTTP2Stream>?

    init(id: Int32, connection: HTTP2ServerConnectionHandler) {
        self.id = id
        self.connection = connection
        #if DEBUG
        Self.live.add(1, ordering: .relaxed)
        Self.made.add(1, ordering: .relaxed)
        #endif
    }

    /// Makes this closed stream, held by nothing but its connection, the
    /// stream `id` (a new request head): everything of the old one is
    /// forgotten; the header bytes' room is kept.
    func reuse(id: Int32) {
        precondition(isClosed && !listed, "only a closed, unlisted stream is reused")
        self.id = id
        method = nil
        pathField = nil
        fields.removeAll()
        contentType = nil
        declaredContentLength = nil
        bodyReceived = 0
        timeoutField = nil
        encodingField = nil
        acceptEncodingField = nil
        headerListSize = 0
        headersTooLarge = false
        metadataFields = 0
        exchange = .head
        // Closing took it (answered, or handed to the call it became).
        assert(plainObservation == nil, "a closed stream's observation was ended")
        plainObservation = nil
        unconsumed = 0
        isClosed = false
        outbound = []
        outboundOffset = 0
        outboundEnded = false
        pendingTrailers = .none
        dataDeferred = false
        drainWatched = false
    }

    #if DEBUG
    /// Streams alive (debug builds): tests check none outlives its exchange.
    static let live = Atomic<Int>(0)
    /// Stream objects ever made (debug builds): tests see reuse in it.
    static let made = Atomic<Int>(0)

    deinit { Self.live.subtract(1, ordering: .relaxed) }
    #endif

    // MARK: Request

    func receiveHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        // SETTINGS_MAX_HEADER_LIST_SIZE accounting (RFC 9113 6.5.2): name +
        // value + 32 per field. Past the limit, further fields are dropped and
        // the exchange is refused once the head is complete.
        headerListSize += name.count + value.count + 32
        if headerListSize > connection.maxHeaderListSize {
            headersTooLarge = true
            return
        }
        if name.first == UInt8(ascii: ":") {
            if bytesEqual(name, ":path") {
                pathField = fields.append(name: name, value: value)
            } else if bytesEqual(name, ":method") {
                // gRPC's method without decoding it (a literal is free).
                method = bytesEqual(value, "POST") ? "POST" : String(decoding: value, as: UTF8.self)
            }
            return
        }
        let index = fields.append(name: name, value: value)
        switch name.count {
        case 12 where bytesEqual(name, "content-type"): contentType = index
        case 12 where bytesEqual(name, "grpc-timeout"): timeoutField = index
        case 13 where bytesEqual(name, "grpc-encoding"): encodingField = index
        case 20 where bytesEqual(name, "grpc-accept-encoding"): acceptEncodingField = index
        case 14 where bytesEqual(name, "content-length"): declaredContentLength = Self.decimal(value)
        default:
            // Counted here, on the bytes nghttp2 hands over: a call whose
            // fields are all reserved skips the metadata walk.
            if !HeaderName.isReserved(name) { metadataFields += 1 }
        }
    }

    func headersComplete() {
        guard case .head = exchange else { return }
        if let contentType, fields.withValue(contentType, { bytesHavePrefix($0, "application/grpc") }) {
            var registered: RPCRouter.RegisteredMethod?
            if let pathField {
                // The connection's previous method first: no router access, no
                // hash, and the path compared where it lies.
                if let last = connection.lastMethod,
                    fields.withValue(pathField, { path in last.pathBytes.withUnsafeBytes { bytesEqual(path, $0) } })
                {
                    registered = last
                } else {
                    registered = environment.router.lookup(path: fields.value(pathField))
                    if let registered { connection.lastMethod = registered }
                }
            }
            if let registered, answersInPlace(registered, contentType: contentType) {
                // As `GRPCServerCall.start` begins an accepted call's (a plain
                // head has no metadata, so no trace context).
                let metrics = registered.metrics
                plainObservation = environment.observability.beginGRPC(
                    metrics, descriptor: registered.descriptor, metadata: Metadata(), mayAnswerInline: true,
                    received: connection.readTime, countsStarted: !connection.tallyStarted(metrics))
                exchange = .plainUnary(registered)
                return
            }
            startCall(registered)
        } else {
            let rest = HTTP2RESTExchange(stream: self)
            exchange = .rest(rest)
            rest.start(headersTooLarge: headersTooLarge, contentType: contentType.map { fields.string($0) })
        }
    }

    /// A call to `registered` with this head may be answered here
    /// (`Exchange.plainUnary`): a context-free unary method, no interceptor
    /// for it, and a head the state machine calls plain.
    private func answersInPlace(_ registered: RPCRouter.RegisteredMethod, contentType: HeaderFields.Index) -> Bool {
        guard registered.contextFreeFast != nil, registered.isSingleRequest,
            !environment.interceptors.applies(to: registered.access)
        else { return false }
        let compressed = encodingField.map { !fields.withValue($0, GRPCCallStateMachine.namesNoCompression) } ?? false
        return fields.withValue(contentType) {
            GRPCCallStateMachine.isPlain(
                method: method, contentType: $0, hasEncoding: compressed, hasTimeout: timeoutField != nil,
                metadataFields: metadataFields, headersTooLarge: headersTooLarge)
        }
    }

    /// The gRPC call of this head (`fields` and the rest, as received).
    @discardableResult
    private func startCall(_ registered: RPCRouter.RegisteredMethod?) -> GRPCServerCall {
        let call = GRPCServerCall(stream: self, method: registered)
        #if DEBUG
        connection.grpcCallsMade += 1
        #endif
        exchange = .grpc(call)
        let begun = plainObservation.take()
        call.start(
            GRPCCallStateMachine.RequestHead(
                method: method, fields: fields, pathField: pathField, contentType: contentType, timeout: timeoutField,
                encoding: encodingField, acceptEncoding: acceptEncodingField, headersTooLarge: headersTooLarge,
                metadataFields: metadataFields),
            observation: begun)
        return call
    }

    /// - Parameter lastFrameWhole: `data` is the whole of the DATA frame
    ///   that ends the request (END_STREAM; not a chunk, not padded);
    ///   `endOfRequest` still follows from the frame callback.
    func receiveData(_ data: UnsafeRawBufferPointer, lastFrameWhole: Bool) {
        unconsumed += data.count
        bodyReceived += data.count
        // A request answered from its last chunk must agree with its
        // content-length first: nghttp2 finds a body shorter than declared
        // only after handing that chunk over (it then resets the stream).
        let lastFrameWhole = lastFrameWhole && (declaredContentLength == nil || declaredContentLength == bodyReceived)
        switch exchange {
        case .grpc(let call): call.receiveData(data, lastFrameWhole: lastFrameWhole)
        case .plainUnary(let registered):
            if lastFrameWhole,
                let message = GRPCCallStateMachine.wholeUncompressedMessage(
                    data, maxMessageSize: environment.config.maxReceiveMessageSize)
            {
                answerPlainUnary(registered, data: data, request: message)
            } else {
                startCall(registered).receiveData(data, lastFrameWhole: lastFrameWhole)
            }
        case .rest(let rest): rest.receiveData(data)
        case .head, .closed: consume(data.count)
        }
    }

    /// A non-negative decimal, or -1 (nothing else matches a body length).
    private static func decimal(_ value: UnsafeRawBufferPointer) -> Int {
        guard !value.isEmpty, value.count <= 18 else { return -1 }
        var number = 0
        for digit in value {
            guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return -1 }
            number = number * 10 + Int(digit - UInt8(ascii: "0"))
        }
        return number
    }

    /// The plain unary call's whole request is `data` (`request` its
    /// payload): the fast path answers it here, with the metrics and frames
    /// a `GRPCServerCall` would have made: HEADERS (static), the message,
    /// `grpc-status: 0` trailers. When the fast path declines or throws,
    /// the call is made and told what it returned (it does not run twice).
    private func answerPlainUnary(
        _ registered: RPCRouter.RegisteredMethod, data: UnsafeRawBufferPointer, request: UnsafeRawBufferPointer
    ) {
        let result = Result { () throws -> [UInt8]? in
            guard var response = try registered.contextFreeFast!(request) else { return nil }
            return try response.takeWireBytes(compressor: nil)
        }
        guard case .success(let made) = result, let framed = made else {
            return startCall(registered).receiveData(
                data, lastFrameWhole: true, fastResult: result.map { _ -> GRPCFramedMessage? in nil })
        }
        consume(data.count)
        let connection = self.connection
        let metrics = registered.metrics
        // As `GRPCServerCall` sends a single message and ends OK: counted
        // and tallied in the read burst, the observation begun with the head.
        connection.countReceived(metrics, bytes: data.count)
        connection.countSent(metrics, bytes: framed.count)
        submit(StaticHeaders.grpcResponse)
        appendBody(framed)
        exchange = .closed
        let tallied = connection.tallyHandledOK(metrics)
        if var observation = plainObservation.take() {
            environment.observability.end(&observation, code: .ok, error: nil, path: self.path ?? "", countsOK: !tallied)
        }
        endBody(trailers: .ok)
    }

    func endOfRequest() {
        switch exchange {
        case .grpc(let call): call.endOfRequest()
        case .plainUnary(let registered): startCall(registered).endOfRequest()
        case .rest(let rest): rest.endOfRequest()
        case .head, .closed: break
        }
    }

    /// Returns `count` received bytes to the stream's flow-control window
    /// (the exchange consumed them).
    func consume(_ count: Int) {
        guard count > 0 else { return }
        unconsumed -= count
        connection.consume(streamID: id, count)
    }

    /// The request headers as (lower-case name, value) pairs, pseudo-headers left out.
    func plainHeaders() -> [(name: String, value: String)] {
        fields.indices.filter { fields.name($0).first != UInt8(ascii: ":") }.map {
            (fields.string(name: $0).lowercased(), fields.string($0))
        }
    }

    /// The stream is gone (finished, reset by the client, or the connection
    /// closed): the exchange is told, and every unreturned byte goes back
    /// to the connection's window.
    func closed(errorCode: UInt32) {
        guard !isClosed else { return }
        isClosed = true
        switch exchange {
        case .grpc(let call): call.streamClosed()
        // Counted as the cancelled call it was (started, then cancelled).
        case .plainUnary(let registered): startCall(registered).streamClosed()
        case .rest(let rest): rest.streamClosed()
        case .head, .closed: break
        }
        exchange = .closed
        if unconsumed > 0 {
            connection.consumeConnection(unconsumed)
            unconsumed = 0
        }
    }

    // MARK: Response

    /// Submits response headers; with a body, nghttp2 pulls it from
    /// `readResponseData` as it is appended.
    func submit(headers: HeaderBlock, withBody: Bool) {
        guard let session = connection.session else { return }
        let rv: Int32 = headers.withNVs { nva, count in
            if withBody {
                var provider = dataProvider
                return nghttp2_submit_response(session, id, nva, count, &provider)
            } else {
                return nghttp2_submit_response(session, id, nva, count, nil)
            }
        }
        if rv != 0 { connection.logger.debug("nghttp2_submit_response: \(String(cString: nghttp2_strerror(rv)))") }
    }

    func submit(_ headers: StaticHeaders) {
        guard let session = connection.session else { return }
        var provider = dataProvider
        let rv = nghttp2_submit_response(session, id, headers.pointer, headers.count, &provider)
        if rv != 0 { connection.logger.debug("nghttp2_submit_response: \(String(cString: nghttp2_strerror(rv)))") }
    }

    /// Appends response body bytes (taken as they are when nothing is pending).
    func appendBody(_ bytes: [UInt8]) {
        if outboundOffset == outbound.count {
            outbound = bytes
            outboundOffset = 0
        } else {
            if outboundOffset > outbound.count / 2 {
                outbound.removeFirst(outboundOffset)
                outboundOffset = 0
            }
            outbound.append(contentsOf: bytes)
        }
        resumeData()
    }

    /// Response body bytes not yet taken by nghttp2.
    var pendingBodyBytes: Int { outbound.count - outboundOffset }

    /// The body ends after what is pending, followed by `trailers`.
    func endBody(trailers: Trailers) {
        pendingTrailers = trailers
        outboundEnded = true
        resumeData()
    }

    /// The response body source: this stream, unretained (the connection's
    /// stream table keeps it alive until nghttp2 closes the stream).
    private var dataProvider: nghttp2_data_provider {
        nghttp2_data_provider(
            source: nghttp2_data_source(ptr: Unmanaged.passUnretained(self).toOpaque()),
            read_callback: NGHTTP2Callbacks.readCallback)
    }

    private func resumeData() {
        guard dataDeferred, let session = connection.session else { return }
        dataDeferred = false
        _ = nghttp2_session_resume_data(session, id)
    }

    /// nghttp2 pulls the body (within the peer's flow-control window): copies
    /// from `outbound`, defers when it is empty, and at the end sends the
    /// trailers (gRPC) or END_STREAM (plain HTTP).
    func readResponseData(into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let n = min(length, outbound.count - outboundOffset)
        if n > 0 {
            outbound.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(buffer).copyMemory(from: raw.baseAddress! + outboundOffset, byteCount: n)
            }
            outboundOffset += n
            if outboundOffset == outbound.count {
                // Let go (the array may be a prepared response's, shared:
                // emptying it in place would allocate a copy).
                outbound = []
                outboundOffset = 0
            }
        }
        let remaining = outbound.count - outboundOffset
        if remaining == 0 {
            if outboundEnded {
                flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                if let session = connection.session {
                    switch pendingTrailers {
                    case .none:
                        break
                    case .ok:
                        flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                        _ = nghttp2_submit_trailer(session, id, StaticHeaders.grpcOK.pointer, StaticHeaders.grpcOK.count)
                    case .block(let trailers):
                        flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                        _ = trailers.withNVs { nva, count in nghttp2_submit_trailer(session, id, nva, count) }
                    }
                    pendingTrailers = .none
                }
            } else if n == 0 {
                dataDeferred = true
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
        }
        if drainWatched, case .grpc(let call) = exchange { call.bodyDrained(remaining: remaining) }
        return n
    }
}
