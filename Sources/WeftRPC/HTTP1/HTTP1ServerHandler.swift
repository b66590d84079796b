import Logging
import NIOCore
import NIOHTTP1

/// HTTP/1.1 requests (after NIOHTTP1's decoder): routed by the shared
/// `HTTPRouter`, with keep-alive and pipelining. Responses are written as
/// bytes by `HTTP1ResponseEncoder`, one write each, and those written in one
/// turn of the event loop share a flush.
///
/// Pipelining: requests that arrive while one is being answered wait in
/// `pending` and are taken in order once its response is written; while any
/// wait, the handler reads no more from the socket (so a client that
/// pipelines without reading answers is held by TCP, not by our memory).
final class HTTP1ServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// What waits behind the request being answered.
    private enum Pending {
        case part(HTTPServerRequestPart)
        /// The parser failed after these requests: answered 400 in turn.
        case parseError
    }

    private let environment: ServerEnvironment
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var rejected = false
    /// A request has begun and its response is not yet written.
    private var inFlight = false
    /// A whole request was dispatched and its response is not yet written:
    /// what arrives now waits in `pending`.
    private var answering = false
    private var pending = CircularBuffer<Pending>()
    /// A read the channel asked for while requests wait.
    private var heldRead = false
    private var unbuffering = false
    /// The streamed response being written uses chunked framing.
    private var streamChunked = false
    /// The request being answered is a HEAD: a stream sends its head only.
    private var headOnly = false
    /// The request being answered lets the connection stay open.
    private var requestKeepAlive = true
    private var draining = false
    /// A response that closes the connection was written: nothing more is read.
    private var closing = false
    private var context: ChannelHandlerContext?
    private let logger: Logger
    /// The request being answered by a handler task (cancelled if the
    /// connection goes away first).
    private var task: Task<Void, Never>?

    private let peer: String
    private let peerIdentity: String?
    private let client: HTTPClientInfo?

    init(environment: ServerEnvironment, peer: String, peerIdentity: String? = nil, client: HTTPClientInfo? = nil) {
        self.peerIdentity = peerIdentity
        self.client = client
        self.environment = environment
        self.peer = peer
        var logger = environment.logger
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "protocol"] = "http/1.1"
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        environment.metrics.connectionsOpenH1.increment()
        environment.metrics.connectionsAcceptedH1.increment()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        environment.metrics.connectionsOpenH1.decrement()
        task?.cancel()
        task = nil
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After a final response nothing more is answered; and once the
        // decoder failed, what it reads next fails again (its 400 is queued).
        if closing { return }
        if case .dataReceivedInErrorState = error as? ByteToMessageDecoderError,
            pending.contains(where: { if case .parseError = $0 { true } else { false } })
        {
            return
        }
        logger.info("closing connection: \(error)")
        guard error is HTTPParserError else {
            environment.metrics.connectionError("io")
            context.close(promise: nil)
            return
        }
        environment.metrics.connectionError("http1_parse")
        // Answered 400 in turn: after the responses of the requests before it.
        if answering || !pending.isEmpty {
            pending.append(.parseError)
        } else {
            answerParseError(context: context)
        }
    }

    private func answerParseError(context: ChannelHandlerContext) {
        closing = true
        pending.removeAll()
        var buffer = context.channel.allocator.buffer(capacity: 80)
        HTTP1ResponseEncoder.badRequest(into: &buffer)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let part = unwrapInboundIn(data)
        if answering || !pending.isEmpty {
            pending.append(.part(part))
            return
        }
        receive(context: context, part)
    }

    /// Reads wait while requests do: see the type's comment.
    func read(context: ChannelHandlerContext) {
        if pending.isEmpty {
            context.read()
        } else {
            heldRead = true
        }
    }

    /// Takes the waiting requests once the one before them is answered.
    private func unbuffer(context: ChannelHandlerContext) {
        guard !unbuffering else { return }
        unbuffering = true
        defer { unbuffering = false }
        while !answering, !closing, let next = pending.popFirst() {
            switch next {
            case .part(let part): receive(context: context, part)
            case .parseError: answerParseError(context: context)
            }
        }
        if pending.isEmpty && heldRead && !closing {
            heldRead = false
            context.read()
        }
    }

    private func receive(context: ChannelHandlerContext, _ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            self.head = head
            self.body = context.channel.allocator.buffer(capacity: 0)
            self.rejected = false
            self.inFlight = true
        case .body(var chunk):
            guard !rejected else { return }
            if body!.readableBytes + chunk.readableBytes > environment.config.maxReceiveMessageSize {
                rejected = true
                write(
                    context: context,
                    .error(
                        status: 413, code: .resourceExhausted,
                        message: "request body exceeds the limit of \(environment.config.maxReceiveMessageSize) bytes"),
                    head: head!, route: "unmatched", start: .now(), forceClose: true)
                return
            }
            body!.writeBuffer(&chunk)
        case .end:
            guard !rejected, let head else { return }
            answering = true
            dispatch(context: context, head: head, body: body!)
            self.body = nil
        }
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let start = NIODeadline.now()
        headOnly = head.method == .HEAD
        requestKeepAlive = head.isKeepAlive
        let method = head.method.rawValue
        var request = HTTPRequest(
            method: method, target: head.uri, headers: head.headers.map { ($0.name.lowercased(), $0.value) }, body: body)
        request.client = client
        request.streamSink = HTTP1StreamSink(
            loopBound: NIOLoopBound((self, context), eventLoop: context.eventLoop), version: head.version)
        if request.header("content-type")?.hasPrefix("application/grpc") == true {
            write(
                context: context,
                .error(status: 415, code: .invalidArgument, message: "gRPC requires HTTP/2; this is HTTP/1.1"),
                head: head, route: "grpc", start: start)
            return
        }
        switch HTTPExchange.dispatch(request, environment: environment, peer: peer, peerIdentity: peerIdentity, start: start) {
        case .respond(let response):
            write(context: context, response, head: head, route: nil, start: start)
        case .run(let work):
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            task = Task {
                let response = await work()
                loopBound.eventLoop.execute {
                    let (handler, context) = loopBound.value
                    handler.task = nil
                    handler.write(context: context, response, head: head, route: nil, start: start)
                }
            }
        }
    }

    /// Writes a response. `route`: the metric label of an answer the
    /// transport gave itself (routed answers were recorded by the exchange).
    private func write(
        context: ChannelHandlerContext, _ response: HTTPResponse, head: HTTPRequestHead, route: String?,
        start: NIODeadline, forceClose: Bool = false
    ) {
        guard context.channel.isActive else { return }
        if response.streamed {
            // Head and chunks went out through the sink: end the body.
            inFlight = false
            answering = false
            let close = !streamChunked || !head.isKeepAlive || draining
            var buffer = context.channel.allocator.buffer(capacity: 5)
            if streamChunked && !headOnly { HTTP1ResponseEncoder.lastChunk(into: &buffer) }
            if close {
                closing = true
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.write(wrapOutboundOut(buffer), promise: nil)
                scheduleFlush(context: context)
                unbuffer(context: context)
            }
            return
        }
        let keepAlive = head.isKeepAlive && !draining && !forceClose
        let withBody = head.method != .HEAD && !HTTP1ResponseEncoder.hasNoBody(response.status)
        var buffer = context.channel.allocator.buffer(capacity: 160 + (withBody ? response.body.count : 0))
        HTTP1ResponseEncoder.head(
            into: &buffer, version: head.version, status: response.status, headers: response.headers,
            framing: .whole(status: response.status, count: response.body.count), keepAlive: keepAlive)
        if withBody { buffer.writeBytes(response.body) }
        inFlight = false
        answering = false
        if keepAlive {
            context.write(wrapOutboundOut(buffer), promise: nil)
            scheduleFlush(context: context)
        } else {
            // The last answer on this connection: out now, then close; the
            // requests pipelined after it get none.
            closing = true
            pending.removeAll()
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
        }
        if let route {
            environment.observability.answeredHTTP(
                method: head.method.rawValue, route: route, response: response, start: start)
        }
        if keepAlive { unbuffer(context: context) }
    }

    /// One flush for the responses written in this turn of the event loop:
    /// pipelined requests answered inline share a write syscall.
    private var flushScheduled = false

    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        context.eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            if let context = self.context { context.flush() }
        }
    }

    /// Writes a streamed response's head and chunks (on the event loop).
    /// HTTP/1.1 frames the body in chunks; HTTP/1.0 has none, so its body
    /// runs to the close.
    fileprivate func streamHead(context: ChannelHandlerContext, status: Int, headers: [(name: String, value: String)], version: HTTPVersion) {
        streamChunked = version.major == 1 && version.minor >= 1
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTP1ResponseEncoder.head(
            into: &buffer, version: version, status: status, headers: headers,
            framing: streamChunked ? .chunked : .untilClose, keepAlive: streamChunked && requestKeepAlive && !draining)
        context.write(wrapOutboundOut(buffer), promise: nil)
        // A HEAD's answer is this head: out now (the stream ends at its first chunk).
        if headOnly { context.flush() }
    }

    fileprivate func streamChunk(context: ChannelHandlerContext, _ chunk: [UInt8]) -> EventLoopFuture<Void> {
        // HEAD: the client expects no body; ending the stream ends the handler.
        if headOnly { return context.eventLoop.makeFailedFuture(HTTPStreamClosed()) }
        var buffer = context.channel.allocator.buffer(capacity: chunk.count + 12)
        if streamChunked {
            HTTP1ResponseEncoder.chunk(chunk, into: &buffer)
        } else {
            buffer.writeBytes(chunk)
        }
        return context.writeAndFlush(wrapOutboundOut(buffer))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            if !inFlight { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Graceful shutdown: close now if idle, else after the current response.
    func initiateGracefulShutdown() {
        draining = true
        if !inFlight { context?.close(promise: nil) }
    }
}

/// A streamed response on an HTTP/1.1 connection: the head, then one
/// flushed chunk per message; a chunk waits for its write (so a slow
/// client slows the stream, and a gone one ends it).
struct HTTP1StreamSink: HTTPStreamSink {
    let loopBound: NIOLoopBound<(HTTP1ServerHandler, ChannelHandlerContext)>
    let version: HTTPVersion

    func begin(status: Int, headers: [(name: String, value: String)]) async throws {
        let (version, loopBound) = (version, loopBound)
        try await loopBound.eventLoop.submit {
            let (handler, context) = loopBound.value
            guard context.channel.isActive else { throw HTTPStreamClosed() }
            handler.streamHead(context: context, status: status, headers: headers, version: version)
        }.get()
    }

    func write(_ chunk: [UInt8]) async throws {
        let loopBound = loopBound
        try await loopBound.eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            let (handler, context) = loopBound.value
            guard context.channel.isActive else { return loopBound.eventLoop.makeFailedFuture(HTTPStreamClosed()) }
            return handler.streamChunk(context: context, chunk)
        }.get()
    }
}
