import CNghttp2
import Logging
import NIOCore

/// One HTTP/2 connection: a NIO handler that owns an nghttp2 server session.
/// Bytes read go into `nghttp2_session_mem_recv`; after each read burst,
/// `nghttp2_session_mem_send` output is gathered into as few buffers as
/// possible and flushed once. Everything here runs on the channel's event
/// loop; nghttp2 calls back into it through `user_data`.
final class HTTP2ServerConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let environment: ServerEnvironment
    let logger: Logger
    /// `environment.config.maxHeaderListSize`, read per header field.
    let maxHeaderListSize: Int
    private(set) var session: OpaquePointer?
    /// The session's memory (`session_pool.h`): freed after the session.
    private var pool: UnsafeMutablePointer<weft_pool>?
    private(set) var context: ChannelHandlerContext?
    /// Owns the open streams, linked through the streams themselves
    /// (insertion and removal without hashing); nghttp2 holds each one's
    /// pointer as its stream user data, which is how callbacks reach a
    /// stream without a lookup here.
    private var streams = HTTP2StreamList()
    /// The stream whose request head is being received: header fields of a
    /// HEADERS frame (and its CONTINUATIONs, which nothing may interleave
    /// with) go to it without a lookup in nghttp2's stream map per field.
    private(set) var receivingHead: Unmanaged<HTTP2Stream>?
    /// The payload length of the DATA frame being received, -1 when it is
    /// padded (set when the frame begins: see `NGHTTP2Callbacks`).
    var dataFramePayload = -1
    #if DEBUG
    /// gRPC call objects made for this connection's streams (tests: a plain
    /// unary call answered in place makes none).
    var grpcCallsMade = 0
    #endif
    /// The method this connection called last (checked before the router).
    var lastMethod: RPCRouter.RegisteredMethod?
    /// Closed streams nothing else holds, kept for this connection's next
    /// ones: a busy connection then allocates (and frees) no stream object
    /// and no header room per request. At most `spareStreamLimit`; let go
    /// when the connection goes idle or closes (each holds the connection).
    private var spareStreams: [HTTP2Stream] = []
    static let spareStreamLimit = 32
    let peer: String
    /// The verified client certificate's subject CN (mutual TLS).
    let peerIdentity: String?
    /// Scheme and client address of the connection (REST spans).
    let client: HTTPClientInfo?

    private var inReadBurst = false
    /// Counter increments of the current read burst (`CallTally`); nil
    /// outside one, when calls count directly.
    private var tally: CallTally?
    /// When the current read returned: the start of the handling time of the
    /// calls whose heads it carried (one clock reading per read, not per call).
    private(set) var readTime: NIODeadline?
    private var flushScheduled = false
    private var readHeld = false
    private var draining = false
    private var goawaySent = false
    private var closing = false
    private var fatalReason: String?
    /// A GOAWAY with an error was logged: the connection's one line is out.
    private var loggedGoAway = false

    init(environment: ServerEnvironment, peer: String, peerIdentity: String? = nil, client: HTTPClientInfo? = nil) {
        self.environment = environment
        self.maxHeaderListSize = environment.config.maxHeaderListSize
        self.peer = peer
        self.peerIdentity = peerIdentity
        self.client = client
        var logger = environment.logger
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "protocol"] = "h2"
        self.logger = logger
    }

    deinit {
        // Torn down already when its channel closed; not if the channel was
        // dropped without closing (tests).
        if let session { nghttp2_session_del(session) }
        weft_pool_destroy(pool)
    }

    var eventLoop: any EventLoop { context!.eventLoop }
    var allocator: ByteBufferAllocator { context!.channel.allocator }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        environment.metrics.connectionsOpenH2.increment()
        environment.metrics.connectionsAcceptedH2.increment()
        let config = environment.config
        let options = NGHTTP2Callbacks.makeOptions(config)
        defer { nghttp2_option_del(options) }
        var session: OpaquePointer?
        let userData = Unmanaged.passUnretained(self).toOpaque()
        guard let pool = weft_pool_create() else { fatalError("out of memory for an HTTP/2 session pool") }
        self.pool = pool
        var mem = weft_pool_mem(pool)
        let rc = nghttp2_session_server_new3(&session, NGHTTP2Callbacks.shared.pointer, userData, options, &mem)
        precondition(rc == 0, "nghttp2_session_server_new3 failed: \(rc)")
        self.session = session
        let settings: [nghttp2_settings_entry] = [
            .init(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(config.maxConcurrentStreams)),
            .init(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(config.initialWindowSize)),
            .init(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(config.maxHeaderListSize)),
            .init(settings_id: Int32(NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES.rawValue), value: 1),
        ]
        _ = settings.withUnsafeBufferPointer {
            nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress, $0.count)
        }
        // A connection window for many streams at once (each stream has its own).
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, 16 * 1024 * 1024)
        if context.channel.isActive { flushOutput() }
    }

    func channelActive(context: ChannelHandlerContext) {
        flushOutput()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        tearDown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        tearDown()
        self.context = nil
    }

    private func tearDown() {
        guard let session else { return }
        // nghttp2 does not call on_stream_close when a session is deleted:
        // close every stream ourselves so handlers are cancelled.
        receivingHead = nil
        spareStreams.removeAll()
        let open = streams.removeAll()
        for stream in open { stream.closed(errorCode: UInt32(NGHTTP2_CANCEL.rawValue)) }
        flushTally()
        environment.metrics.streamsActive.decrement(by: Double(open.count))
        nghttp2_session_del(session)
        self.session = nil
        weft_pool_destroy(pool)
        pool = nil
        environment.metrics.connectionsOpenH2.decrement()
    }

    // MARK: Input

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !closing else { return }
        inReadBurst = true
        if tally == nil { tally = CallTally() }
        readTime = .now()
        let buffer = unwrapInboundIn(data)
        let rv = buffer.withUnsafeReadableBytes { raw in
            nghttp2_session_mem_recv(session, raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count)
        }
        if rv < 0 {
            let reason = String(cString: nghttp2_strerror(Int32(rv)))
            fail(reason: rv == Int(NGHTTP2_ERR_FLOODED.rawValue) ? "flood" : "protocol",
                 message: "closing connection: \(reason)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        readTime = nil
        flushOutput()  // streams that close here are still tallied
        flushTally()
        context.fireChannelReadComplete()
    }

    /// Reading pauses while the socket cannot take more output, so a client
    /// that does not read cannot make the server buffer without bound.
    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readHeld = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            flushOutput()
            if readHeld {
                readHeld = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            spareStreams.removeAll()
            if streams.isEmpty {
                logger.debug("closing idle connection")
                goAway(errorCode: UInt32(NGHTTP2_NO_ERROR.rawValue), lastStreamID: lastProcessedStreamID)
                closeWhenFlushed()
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error: \(error)")
        context.close(promise: nil)
    }

    // MARK: Output

    /// Moves everything nghttp2 has queued onto the socket: one write per
    /// ~64 KiB and one flush for the lot.
    ///
    /// nghttp2 hands out one frame at a time (a gRPC call is three), and a
    /// `ByteBuffer` append per frame (capacity, uniqueness and index checks)
    /// was a visible part of a health check's cost. So frames are gathered
    /// with a plain copy in a small stack buffer, which goes into the
    /// `ByteBuffer` a kilobyte at a time. 1 KiB: the standard library puts
    /// temporary allocations up to that size on the stack without asking
    /// the thread for its stack bounds.
    func flushOutput() {
        guard let session, let context, context.channel.isActive else { return }
        var out: ByteBuffer? = nil
        var wrote = false
        // Writability changes only when something is written: read it once
        // per write, not once per frame (each read goes through the channel
        // existential and an atomic).
        var writable = context.channel.isWritable
        var failure: Int32?
        withUnsafeTemporaryAllocation(byteCount: 1024, alignment: 16) { gather in
            let base = gather.baseAddress!
            var used = 0
            /// `last`: nothing more comes, so the buffer can be the exact size.
            func spill(last: Bool = false) {
                guard used > 0 else { return }
                if out == nil { out = context.channel.allocator.buffer(capacity: last ? used : 8 * 1024) }
                out!.writeBytes(UnsafeRawBufferPointer(start: base, count: used))
                used = 0
            }
            /// Writes `out` once it holds 64 KiB. Called only when nothing
            /// taken from nghttp2 waits in `gather`, so that frames keep
            /// their order even if the write re-enters this function.
            func writeIfFull() {
                guard let full = out, full.readableBytes >= 64 * 1024 else { return }
                out = nil
                context.write(wrapOutboundOut(full), promise: nil)
                wrote = true
                // A failed write can close the channel and end the session.
                writable = self.session != nil && context.channel.isWritable
            }
            while writable {
                var pointer: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &pointer)
                if n < 0 {
                    failure = Int32(n)
                    return
                }
                if n == 0 { break }
                let frame = UnsafeRawBufferPointer(start: pointer, count: n)
                if used + n <= gather.count {
                    (base + used).copyMemory(from: frame.baseAddress!, byteCount: n)
                    used += n
                    continue
                }
                spill()
                if n <= gather.count {
                    writeIfFull()
                    if self.session == nil { return }  // `frame` went with the session
                    base.copyMemory(from: frame.baseAddress!, byteCount: n)
                    used = n
                } else {
                    if out == nil { out = context.channel.allocator.buffer(capacity: n) }
                    out!.writeBytes(frame)
                    writeIfFull()
                }
            }
            spill(last: true)
        }
        if let failure {
            return fail(reason: "internal", message: "nghttp2_session_mem_send: \(String(cString: nghttp2_strerror(failure)))")
        }
        if let out, out.readableBytes > 0 {
            context.write(wrapOutboundOut(out), promise: nil)
            wrote = true
        }
        if wrote { context.flush() }
        // A write that failed may have closed the channel, which ends (frees)
        // the session: look again rather than use the pointer taken above.
        guard let live = self.session else { return }
        if nghttp2_session_want_read(live) == 0 && nghttp2_session_want_write(live) == 0 {
            // GOAWAY exchanged and no stream left, or a fatal error: done.
            closing = true
            context.close(promise: nil)
        } else if draining && goawaySent && streams.isEmpty {
            closing = true
            context.close(promise: nil)
        }
    }

    /// Called after work done outside a read burst (a handler finished on
    /// another thread): flushes once after all work already queued on the loop.
    func scheduleFlush() {
        guard !inReadBurst, !flushScheduled, let context else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            self.flushOutput()
        }
    }

    private func closeWhenFlushed() {
        flushOutput()
        closing = true
        context?.close(promise: nil)
    }

    private func fail(reason: String, message: String) {
        guard fatalReason == nil else { return }
        fatalReason = message
        if !loggedGoAway {
            logger.warning("\(message)")
            environment.metrics.connectionError(reason)
            loggedGoAway = true  // the GOAWAY flushed below needs no second line
        }
        // Let nghttp2 send the GOAWAY it queued for the error, then close.
        flushOutput()
        closing = true
        context?.close(promise: nil)
    }

    /// Blocks nghttp2 took from the session's pool, and how many of them were
    /// reused (tests).
    var poolCounts: (allocations: UInt64, reused: UInt64) {
        guard let pool else { return (0, 0) }
        return (pool.pointee.allocations, pool.pointee.reused)
    }

    var lastProcessedStreamID: Int32 {
        guard let session else { return 0 }
        return nghttp2_session_get_last_proc_stream_id(session)
    }

    private func goAway(errorCode: UInt32, lastStreamID: Int32) {
        guard let session, !goawaySent else { return }
        goawaySent = true
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), lastStreamID, errorCode, nil, 0)
    }

    /// Graceful shutdown: a GOAWAY announcing shutdown now, the final GOAWAY
    /// (with the last stream we will process) a round trip later, then close
    /// once in-flight streams finish. The server closes whatever is left at
    /// its drain deadline.
    func initiateGracefulShutdown() {
        guard let session, !draining else { return }
        draining = true
        _ = nghttp2_submit_shutdown_notice(session)
        flushOutput()
        context?.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(100)) { [self] in
            goAway(errorCode: UInt32(NGHTTP2_NO_ERROR.rawValue), lastStreamID: lastProcessedStreamID)
            flushOutput()
        }
    }

    // MARK: nghttp2 callbacks (event loop, inside mem_recv / mem_send)

    func onBeginHeaders(_ session: OpaquePointer, _ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        guard frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
            frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
        else { return 0 }
        let id = frame.pointee.hd.stream_id
        let stream: HTTP2Stream
        if let spare = spareStreams.popLast() {
            spare.reuse(id: id)
            stream = spare
        } else {
            stream = HTTP2Stream(id: id, connection: self)
        }
        streams.insert(stream)
        receivingHead = Unmanaged.passUnretained(stream)
        _ = nghttp2_session_set_stream_user_data(session, id, Unmanaged.passUnretained(stream).toOpaque())
        if tally != nil { tally!.streamOpened() } else { environment.metrics.streamsActive.increment() }
        return 0
    }

    func onFrameReceived(_ session: OpaquePointer, _ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let type = UInt32(frame.pointee.hd.type)
        guard type == NGHTTP2_HEADERS.rawValue || type == NGHTTP2_DATA.rawValue,
            let pointer = nghttp2_session_get_stream_user_data(session, frame.pointee.hd.stream_id)
        else { return 0 }
        let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        let isRequestHead = type == NGHTTP2_HEADERS.rawValue && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
        if isRequestHead { receivingHead = nil }
        Unmanaged<HTTP2Stream>.fromOpaque(pointer)._withUnsafeGuaranteedRef { stream in
            if isRequestHead { stream.headersComplete() }
            if endStream { stream.endOfRequest() }
        }
        return 0
    }

    func onStreamClosed(_ session: OpaquePointer, streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let pointer = nghttp2_session_get_stream_user_data(session, streamID) else { return 0 }
        var stream = Unmanaged<HTTP2Stream>.fromOpaque(pointer).takeUnretainedValue()
        if receivingHead?.toOpaque() == pointer { receivingHead = nil }
        streams.remove(stream)
        if tally != nil { tally!.streamClosed() } else { environment.metrics.streamsActive.decrement() }
        stream.closed(errorCode: errorCode)
        // Kept for reuse only when nothing else (a handler task, through its
        // call) can still reach it.
        if spareStreams.count < Self.spareStreamLimit, !closing, isKnownUniquelyReferenced(&stream) {
            spareStreams.append(stream)
        }
        return 0
    }

    /// nghttp2 sent a GOAWAY with an error: one log line per connection.
    func onGoAwaySent(errorCode: UInt32, debug: String) {
        let name = String(cString: nghttp2_http2_strerror(errorCode))
        guard !loggedGoAway else { return }
        loggedGoAway = true
        logger.warning("closing connection: GOAWAY \(name)\(debug.isEmpty ? "" : " (\(debug))")")
        environment.metrics.connectionError(errorCode == UInt32(NGHTTP2_ENHANCE_YOUR_CALM.rawValue) ? "flood" : "protocol")
    }

    func onInvalidFrame(_ frame: UnsafePointer<nghttp2_frame>, libraryError: Int32) -> Int32 {
        logger.debug(
            "invalid frame: \(String(cString: nghttp2_strerror(libraryError)))",
            metadata: ["stream": "\(frame.pointee.hd.stream_id)"])
        return 0
    }

    func onLibraryError(_ code: Int32, message: String) -> Int32 {
        // Details of what the GOAWAY (logged on send) was about.
        logger.debug("nghttp2: \(message)")
        return 0
    }

    // MARK: Used by streams

    /// Adds the burst's tally to the shared counters; calls count directly until the next read.
    private func flushTally() {
        guard tally != nil else { return }
        tally!.flush(environment.metrics)
        tally = nil
    }

    /// Counts a call's start, message or status: tallied within a read
    /// burst, else straight to the counters. Each returns whether it tallied.
    func tallyStarted(_ metrics: RPCMethodMetrics) -> Bool {
        guard tally != nil else { return false }
        tally!.started(metrics)
        return true
    }

    func countReceived(_ metrics: RPCMethodMetrics, bytes: Int) {
        if tally != nil {
            tally!.received(metrics, bytes: bytes)
        } else {
            metrics.messagesReceived.increment()
            metrics.bytesReceived.increment(by: Int64(bytes))
        }
    }

    func countSent(_ metrics: RPCMethodMetrics, bytes: Int) {
        if tally != nil {
            tally!.sent(metrics, bytes: bytes)
        } else {
            metrics.messagesSent.increment()
            metrics.bytesSent.increment(by: Int64(bytes))
        }
    }

    func tallyHandledOK(_ metrics: RPCMethodMetrics) -> Bool {
        guard tally != nil else { return false }
        tally!.handledOK(metrics)
        return true
    }

    func consumeConnection(_ count: Int) {
        guard count > 0, let session else { return }
        _ = nghttp2_session_consume_connection(session, count)
    }

    func consume(streamID: Int32, _ count: Int) {
        guard count > 0, let session else { return }
        _ = nghttp2_session_consume(session, streamID, count)
    }
}
