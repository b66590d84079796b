import Logging
import NIOCore
import NIOHTTP1

/// HTTP/1.1 requests (after NIOHTTP1's decoder and pipelining handler, which
/// hands us one request at a time): routed by the shared `HTTPRouter`, with
/// keep-alive.
final class HTTP1ServerHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let environment: ServerEnvironment
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var rejected = false
    private var inFlight = false
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

    init(environment: ServerEnvironment, peer: String, peerIdentity: String? = nil) {
        self.peerIdentity = peerIdentity
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
        // NIOHTTP1's error handler has already answered 400 for parse errors.
        logger.info("closing connection: \(error)")
        environment.metrics.connectionError(error is HTTPParserError ? "http1_parse" : "io")
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        switch unwrapInboundIn(data) {
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
            dispatch(context: context, head: head, body: body!)
            self.body = nil
        }
    }

    private func dispatch(context: ChannelHandlerContext, head: HTTPRequestHead, body: ByteBuffer) {
        let start = NIODeadline.now()
        let method = head.method.rawValue
        var request = HTTPRequest(
            method: method, target: head.uri, headers: head.headers.map { ($0.name.lowercased(), $0.value) }, body: body)
        request.streamSink = HTTP1StreamSink(
            loopBound: NIOLoopBound((self, context), eventLoop: context.eventLoop), version: head.version)
        if head.headers.first(name: "content-type")?.hasPrefix("application/grpc") == true {
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
            // Head and chunks went out through the sink: end the chunked body.
            let done = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
            inFlight = false
            if !head.isKeepAlive || draining {
                let channel = context.channel
                done.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
            return
        }
        let keepAlive = head.isKeepAlive && !draining && !forceClose
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.replaceOrAdd(name: "content-length", value: String(response.body.count))
        if !keepAlive { headers.replaceOrAdd(name: "connection", value: "close") }
        var responseHead = HTTPResponseHead(
            version: head.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)
        responseHead.headers = headers
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if head.method != .HEAD && !response.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: response.body)))), promise: nil)
        }
        inFlight = false
        if keepAlive {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            scheduleFlush(context: context)
        } else {
            // The last answer on this connection: out now, then close; the
            // requests pipelined after it get none.
            closing = true
            let done = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: done)
            let channel = context.channel
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
        if let route {
            environment.observability.answeredHTTP(
                method: head.method.rawValue, route: route, status: response.status, start: start)
        }
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
    fileprivate func streamHead(context: ChannelHandlerContext, status: Int, headers: [(name: String, value: String)], version: HTTPVersion) {
        var fields = HTTPHeaders()
        for (name, value) in headers { fields.add(name: name, value: value) }
        // No content-length: HTTP/1.1 sends the body chunked.
        if draining { fields.replaceOrAdd(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: version, status: HTTPResponseStatus(statusCode: status), headers: fields))),
            promise: nil)
    }

    fileprivate func streamChunk(context: ChannelHandlerContext, _ chunk: [UInt8]) -> EventLoopFuture<Void> {
        let done = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: chunk)))), promise: done)
        return done.futureResult
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
