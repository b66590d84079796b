import NIOCore

/// A REST (non-gRPC) request on an HTTP/2 stream: the body is gathered up
/// to the size limit, then the shared `HTTPExchange` answers it, and the
/// response goes out on the stream. Event-loop confined, like its stream.
final class HTTP2RESTExchange: @unchecked Sendable {
    private let stream: HTTP2Stream
    private var body: ByteBuffer?
    private var answered = false
    /// A streamed response's head went out.
    private var streaming = false
    private var task: Task<Void, Never>?
    private let start = NIODeadline.now()

    init(stream: HTTP2Stream) {
        self.stream = stream
    }

    private var environment: ServerEnvironment { stream.environment }
    private var method: String { stream.method ?? "GET" }

    func start(headersTooLarge: Bool, contentType: String?) {
        body = stream.connection.allocator.buffer(capacity: 0)
        let path = stream.path ?? "/"
        if headersTooLarge {
            refuse(
                .error(
                    status: 431, code: .resourceExhausted,
                    message: "request headers exceed the limit of \(environment.config.maxHeaderListSize) bytes"),
                route: "unmatched")
        } else if method == "POST", environment.router.hasService(forPath: path) {
            refuse(
                .error(
                    status: 415, code: .invalidArgument,
                    message: "content-type must be application/grpc for gRPC method \(path), got \(contentType ?? "none")"),
                route: "grpc")
        }
    }

    func receiveData(_ data: UnsafeRawBufferPointer) {
        stream.consume(data.count)
        guard !answered, body != nil else { return }
        if body!.readableBytes + data.count > environment.config.maxReceiveMessageSize {
            refuse(
                .error(
                    status: 413, code: .resourceExhausted,
                    message: "request body exceeds the limit of \(environment.config.maxReceiveMessageSize) bytes"),
                route: "unmatched")
            return
        }
        body!.writeBytes(data)
    }

    func endOfRequest() {
        guard !answered, let body else { return }
        self.body = nil
        var request = HTTPRequest(method: method, target: stream.path ?? "/", headers: stream.plainHeaders(), body: body)
        request.streamSink = HTTP2StreamSink(exchange: self, eventLoop: stream.connection.eventLoop)
        request.client = stream.connection.client
        switch HTTPExchange.dispatch(request, environment: environment, peer: stream.connection.peer, peerIdentity: stream.connection.peerIdentity, start: start) {
        case .respond(let response):
            respond(response)
        case .run(let work):
            let eventLoop = stream.connection.eventLoop
            task = Task {
                let response = await work()
                eventLoop.execute {
                    self.respond(response)
                    self.stream.connection.scheduleFlush()
                }
            }
        }
    }

    func streamClosed() {
        task?.cancel()
        body = nil
    }

    /// An answer the transport gives itself (no route ran): recorded here.
    private func refuse(_ response: HTTPResponse, route: String) {
        environment.observability.answeredHTTP(method: method, route: route, response: response, start: start)
        respond(response)
    }

    /// A streamed response: its head (DATA frames follow as chunks come).
    fileprivate func streamHead(status: Int, headers fields: [(name: String, value: String)]) throws {
        guard !answered, !stream.isClosed else { throw HTTPStreamClosed() }
        streaming = true
        var headers = HeaderBlock()
        headers.add(":status", String(status))
        for (name, value) in fields { headers.add(name.lowercased(), value) }
        // A HEAD's answer is this head, ending the stream; the handler's
        // first chunk fails and ends it (RFC 9110 9.3.2: no content).
        if method == "HEAD" { answered = true }
        stream.submit(headers: headers, withBody: method != "HEAD")
        stream.connection.scheduleFlush()
    }

    /// Bytes a streamed response may hold that the client has not taken:
    /// past it the client is not reading, and the stream ends.
    static let maxPendingStreamBytes = 1 << 20

    fileprivate func streamChunk(_ chunk: [UInt8]) throws {
        guard streaming, method != "HEAD", !stream.isClosed, stream.pendingBodyBytes + chunk.count <= Self.maxPendingStreamBytes else {
            throw HTTPStreamClosed()
        }
        stream.appendBody(chunk)
        stream.connection.scheduleFlush()
    }

    private func respond(_ response: HTTPResponse) {
        if response.streamed {
            guard streaming, !answered, !stream.isClosed else { return }
            answered = true
            stream.endBody(trailers: .none)
            return
        }
        guard !answered, !stream.isClosed else { return }
        answered = true
        body = nil
        var headers = HeaderBlock()
        headers.add(":status", String(response.status))
        for (name, value) in response.headers { headers.add(name.lowercased(), value) }
        // A 304 or 204 has no content (RFC 9110 8.6: no length for them).
        if response.status != 204 && response.status != 304 { headers.add("content-length", String(response.body.count)) }
        let body = method == "HEAD" ? [] : response.body
        if body.isEmpty {
            stream.submit(headers: headers, withBody: false)
        } else {
            stream.submit(headers: headers, withBody: true)
            stream.appendBody(body)
            stream.endBody(trailers: .none)
        }
    }
}

/// A streamed response on an HTTP/2 stream: DATA frames as chunks come.
/// (The stream buffers what nghttp2 has not taken yet; flow control paces it.)
struct HTTP2StreamSink: HTTPStreamSink, @unchecked Sendable {
    // Touched only on its event loop.
    let exchange: HTTP2RESTExchange
    let eventLoop: any EventLoop

    func begin(status: Int, headers: [(name: String, value: String)]) async throws {
        let exchange = exchange
        try await eventLoop.submit { try exchange.streamHead(status: status, headers: headers) }.get()
    }

    func write(_ chunk: [UInt8]) async throws {
        let exchange = exchange
        try await eventLoop.submit { try exchange.streamChunk(chunk) }.get()
    }
}
