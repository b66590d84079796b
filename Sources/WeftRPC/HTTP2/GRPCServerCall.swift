import Logging
import NIOCore
import Tracing
import WeftObservability

/// A gRPC call on an HTTP/2 stream: the protocol decisions are the
/// `GRPCCallStateMachine`'s; this type carries them out on the stream (I/O),
/// runs the handler (inline on the event loop, or as a task fed with
/// request messages and writing responses with backpressure), goes through
/// the interceptor chain, and records the call (`CallObservability`).
///
/// Event-loop confined, like its stream; handler tasks reach it only by
/// hopping onto the loop.
final class GRPCServerCall: @unchecked Sendable {
    private let stream: HTTP2Stream
    private var machine: GRPCCallStateMachine
    /// The method called; nil when the router does not know the path. A
    /// `let`, so that reading it needs no retain (see `HTTP2Stream.environment`).
    private let registered: RPCRouter.RegisteredMethod?
    private var observation: CallObservability.GRPCCall?
    /// Kept for `InterceptorChain.completed` (only when an interceptor wants it).
    private var head: CallHead?
    private var context: ServerContext?
    /// What `context` is made of, kept instead while only a fast path that
    /// needs none may run (`contextFreeInlineOrTask`): a call that path
    /// answers never makes one.
    private var contextParts: ContextParts?
    private var responseCompression: GRPCCompression.Algorithm?
    /// The client accepts gzip responses (a handler may ask for them).
    private var acceptsGzip = false
    private var responseHeadersSent = false
    private var timeoutText = ""
    private var deadlineTask: Scheduled<Void>?
    private var requestEnded = false
    /// Made when the handler runs as a task (see `HandlerTask`).
    private var handlerTask: HandlerTask?

    /// What only a call whose handler runs as a task needs: the task, the
    /// request messages it has not taken yet, and writers waiting for room.
    /// Kept apart so that an inline call (the common unary one) neither
    /// allocates nor frees it.
    private final class HandlerTask {
        var task: Task<Void, Never>?
        var pendingRequests: [(message: ArraySlice<UInt8>, framedSize: Int, compressed: Bool)] = []
        var requestWaiter: CheckedContinuation<ArraySlice<UInt8>?, any Error>?
        var writeWaiters: [CheckedContinuation<Void, any Error>] = []
    }

    private struct ContextParts {
        let metadata: Metadata
        let deadline: NIODeadline?
        let requestCompression: GRPCCompression.Algorithm?
        let responseCompression: GRPCCompression.Algorithm?
        let principal: Principal?
        let audit: CallAudit?
    }

    private var taskState: HandlerTask {
        if let handlerTask { return handlerTask }
        let made = HandlerTask()
        handlerTask = made
        return made
    }

    init(stream: HTTP2Stream, method registered: RPCRouter.RegisteredMethod?) {
        self.stream = stream
        self.registered = registered
        self.machine = GRPCCallStateMachine(
            configuration: .init(
                maxMessageSize: stream.environment.config.maxReceiveMessageSize,
                maxHeaderListSize: stream.environment.config.maxHeaderListSize))
    }

    @inline(__always) private var environment: ServerEnvironment { stream.connection.environment }

    /// The request's `:path` (a String only for messages and logs).
    private var path: String { stream.path ?? "" }
    private var connection: HTTP2ServerConnectionHandler { stream.connection }

    // MARK: Head

    /// The head is complete: look the method up, let the state machine
    /// judge the head, run the interceptors, and start a streaming handler.
    /// (The hot path of every call: it copies as little as it can.)
    /// - Parameter begun: the call's observation, when the stream began it
    ///   with the head (a plain unary call that became this call later).
    func start(_ requestHead: GRPCCallStateMachine.RequestHead, observation begun: CallObservability.GRPCCall? = nil) {
        // Read once: each read through stream and connection is a retain and a release.
        let environment = self.environment
        let connection = self.connection
        let lookup: GRPCCallStateMachine.Lookup
        if let registered {
            lookup = .found(registered.descriptor.kind)
        } else if environment.router.hasService(forPath: path) {
            lookup = .unknownMethod
        } else {
            lookup = .unknownService(Self.serviceName(of: path))
        }
        let accepted: GRPCCallStateMachine.Accepted
        switch machine.receiveHead(requestHead, lookup: lookup) {
        case .refuse(let error, let log):
            let metrics = registered?.metrics ?? environment.metrics.unknownMethod
            observation =
                begun
                ?? environment.observability.beginGRPC(
                    metrics, descriptor: nil, metadata: nil,
                    mayAnswerInline: true, received: connection.readTime, countsStarted: !connection.tallyStarted(metrics))
            return log ? reject(error) : finish(error)
        case .accept(let value):
            accepted = value
        }
        guard let registered else { return }  // the machine accepts found methods only
        responseCompression = accepted.responseCompression
        acceptsGzip = accepted.acceptsGzip
        observation =
            begun
            ?? environment.observability.beginGRPC(
                registered.metrics, descriptor: registered.descriptor, metadata: accepted.metadata,
                mayAnswerInline: registered.answersInline, received: connection.readTime,
                countsStarted: !connection.tallyStarted(registered.metrics))
        // The interceptor chain, before any request byte is decoded.
        var principal: Principal?
        var audit: CallAudit?
        if environment.interceptors.applies(to: registered.access) {
            var head = CallHead(
                descriptor: registered.descriptor, access: registered.access, metadata: accepted.metadata, transport: .grpc,
                peer: connection.peer)
            head.peerIdentity = connection.peerIdentity
            do {
                try environment.interceptors.admit(&head)
            } catch {
                return finish(RPCError(from: error))
            }
            principal = head.principal
            audit = head.audit
            if environment.interceptors.wantsCompletion(of: head) { self.head = head }
        }
        var deadline: NIODeadline?
        if let timeout = accepted.deadline {
            deadline = .now() + .nanoseconds(GRPCTimeout.nanoseconds(timeout))
            timeoutText = requestHead.timeout.map { requestHead.fields.string($0) } ?? ""
        }
        let parts = ContextParts(
            metadata: accepted.metadata, deadline: deadline, requestCompression: accepted.requestCompression,
            responseCompression: accepted.responseCompression, principal: principal, audit: audit)
        if registered.contextFreeFast != nil {
            contextParts = consume parts
        } else {
            context = makeContext(parts, descriptor: registered.descriptor)
        }
        if let deadline {
            deadlineTask = connection.eventLoop.scheduleTask(deadline: deadline) { [self] in deadlineExpired() }
        }
        // Streaming requests start the handler at once; single-request calls
        // wait for their message (and END_STREAM).
        if !registered.isSingleRequest, case .task(let body) = registered.body {
            startTask(body, requests: RPCRequestStream(source: StreamRequestSource(call: self, eventLoop: connection.eventLoop)))
        }
    }

    private func makeContext(_ parts: ContextParts, descriptor: RPCMethodDescriptor) -> ServerContext {
        ServerContext(
            descriptor: descriptor, requestMetadata: parts.metadata, deadline: parts.deadline, peer: connection.peer,
            requestEncoding: parts.requestCompression?.rawValue ?? "identity",
            responseEncoding: parts.responseCompression?.rawValue ?? "identity", principal: parts.principal,
            audit: parts.audit, transport: .grpc, peerIdentity: connection.peerIdentity)
    }

    /// The context, made now if only its parts were kept.
    private func contextMadeIfNeeded() -> ServerContext? {
        if let context { return context }
        guard let parts = contextParts, let registered else { return nil }
        let made = makeContext(parts, descriptor: registered.descriptor)
        if machine.singleRequestCompressed { made.noteRequestCompressed(true) }
        contextParts = nil
        context = made
        return made
    }

    private static func serviceName(of path: String) -> String {
        path.split(separator: "/").first.map(String.init) ?? path
    }

    // MARK: Request

    /// - Parameters:
    ///   - lastFrameWhole: `data` is the whole DATA frame that ends the
    ///     request (not a chunk of it, not padded).
    ///   - fastResult: what the method's context-free fast path already
    ///     made of this request (the stream ran it before it made this
    ///     call, `HTTP2Stream`'s plain unary exchange): used instead of
    ///     running it again.
    func receiveData(
        _ data: UnsafeRawBufferPointer, lastFrameWhole: Bool, fastResult: Result<GRPCFramedMessage?, any Error>? = nil
    ) {
        guard let registered, !machine.isClosed else { return stream.consume(data.count) }
        if lastFrameWhole, registered.answersInline, let message = machine.wholeRequestInPlace(data) {
            // The common unary call: the handler runs on nghttp2's own
            // buffer, without copying the message anywhere.
            stream.consume(data.count)
            connection.countReceived(registered.metrics, bytes: data.count)
            requestEnded = true
            return runInline(registered, request: message, fastResult: fastResult)
        }
        assert(fastResult == nil, "a fast path's result comes only with a whole request in place")
        // Single-request calls are bounded by the message size limit: their
        // window comes back at once. Streaming requests return it as their
        // handler takes each message (a handler that stops reading stops the client).
        if registered.isSingleRequest { stream.consume(data.count) }
        let failure = machine.receiveData(data) { payload, framedSize, compressed in
            connection.countReceived(registered.metrics, bytes: framedSize)
            guard !registered.isSingleRequest else { return }  // kept by the machine until the end
            let state = taskState
            if let waiter = state.requestWaiter {
                state.requestWaiter = nil
                stream.consume(framedSize)
                context?.noteRequestCompressed(compressed)
                waiter.resume(returning: payload)
            } else {
                state.pendingRequests.append((payload, framedSize, compressed))
            }
        }
        if let failure { reject(failure) }
    }

    func endOfRequest() {
        guard let registered, !requestEnded else { return }
        switch machine.receiveEnd() {
        case .none:
            return
        case .refuse(let error):
            reject(error)
        case .run(let request):
            requestEnded = true
            if machine.singleRequestCompressed { context?.noteRequestCompressed(true) }
            switch registered.body {
            case .inline, .inlineOrTask, .contextFreeInlineOrTask:
                request.withUnsafeBytes { runInline(registered, request: $0) }
            case .task(let body):
                startTask(body, requests: RPCRequestStream(source: SingleRequestSource(message: request)))
            }
        case .endOfMessages:
            requestEnded = true
            if let state = handlerTask, let waiter = state.requestWaiter, state.pendingRequests.isEmpty {
                state.requestWaiter = nil
                waiter.resume(returning: nil)
            }
        }
    }

    /// From a handler task, on the event loop: the next request message.
    func takeRequest(_ continuation: CheckedContinuation<ArraySlice<UInt8>?, any Error>) {
        let state = taskState
        if !state.pendingRequests.isEmpty {
            let (message, size, compressed) = state.pendingRequests.removeFirst()
            stream.consume(size)
            context?.noteRequestCompressed(compressed)
            continuation.resume(returning: message)
        } else if stream.isClosed || machine.isClosed {
            continuation.resume(throwing: RPCError(code: .cancelled, message: "the call has ended"))
        } else if requestEnded {
            continuation.resume(returning: nil)
        } else {
            state.requestWaiter = continuation
        }
    }

    func cancelRequestWait() {
        handlerTask?.requestWaiter?.resume(throwing: CancellationError())
        handlerTask?.requestWaiter = nil
    }

    // MARK: Handler

    /// Runs an inline body (or the fast path of an inline-or-task one; when
    /// that declines, the request is copied and the task runs instead).
    /// Inline bodies run without the span as the current context: they do
    /// no I/O and start no child spans.
    /// (The method, not its body, is passed: a body passed by value was
    /// copied, a retain and a release per closure in it.)
    private func runInline(
        _ registered: RPCRouter.RegisteredMethod, request: UnsafeRawBufferPointer,
        fastResult: Result<GRPCFramedMessage?, any Error>? = nil
    ) {
        // An accepted start left a context, or (context-free fast path) its parts.
        guard context != nil || contextParts != nil else { return }
        do {
            var response: GRPCFramedMessage
            if let fast = registered.contextFreeFast {
                let made: GRPCFramedMessage?
                if let fastResult { made = try fastResult.get() } else { made = try fast(request) }
                guard let fastResponse = made else {
                    guard case .contextFreeInlineOrTask(_, let fallback) = registered.body else { return }
                    return runFallback(fallback, request: request)
                }
                response = fastResponse
            } else {
                guard let context else { return }
                switch registered.body {
                case .inline(let body):
                    response = try body(request, context)
                case .inlineOrTask(let fast, let fallback):
                    guard let fastResponse = try fast(request, context) else {
                        return runFallback(fallback, request: request)
                    }
                    response = fastResponse
                case .task, .contextFreeInlineOrTask:
                    return
                }
            }
            // No context: no preference, the negotiated compression.
            switch context?.responseCompressionPreference {
            case .some(false):
                try sendResponseMessage(try response.takeWireBytes(compressor: nil))
            case .some(true) where responseCompression == nil && acceptsGzip:
                responseCompression = .gzip  // declared with the headers below
                try sendResponseMessage(try response.takeWireBytes(compressor: .gzip))
            default:
                try sendResponseMessage(try response.takeWireBytes(compressor: responseCompression))
            }
            finish(nil)
        } catch {
            finish(RPCError(from: error))
        }
    }

    /// The fast path declined: the request is copied and the task runs.
    private func runFallback(
        _ fallback: @escaping @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void,
        request: UnsafeRawBufferPointer
    ) {
        environment.observability.makeLive(&observation!)
        startTask(fallback, requests: RPCRequestStream(source: SingleRequestSource(message: Array(request)[...])))
    }

    private func startTask(
        _ body: @escaping @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void,
        requests: RPCRequestStream
    ) {
        guard let context = contextMadeIfNeeded(), let observation else { return }
        let eventLoop = connection.eventLoop
        let writer = RPCResponseWriter(
            sink: StreamResponseSink(
                call: self, eventLoop: eventLoop, compressor: responseCompression, context: context,
                mayCompress: acceptsGzip && responseCompression == nil))
        // An untraced call's handler runs under `unsampled`, so what it
        // starts (an execution) is not traced either.
        let spanContext = environment.observability.handlerContext(observation)
        taskState.task = Task {
            let failure: RPCError?
            do {
                try await WeftTracing.withContext(spanContext) { try await body(requests, writer, context) }
                failure = nil
            } catch {
                failure = RPCError(from: error)
            }
            eventLoop.execute {
                self.finish(failure)
                self.connection.scheduleFlush()
            }
        }
    }

    private func deadlineExpired() {
        guard !machine.isClosed else { return }
        context?.markCancelled()
        finish(RPCError(code: .deadlineExceeded, message: "deadline exceeded (grpc-timeout \(timeoutText))"))
        connection.scheduleFlush()
    }

    // MARK: Response

    /// Sends `compressedVariant` (the same message gzip-compressed, which
    /// the handler asked for) when the headers declare gzip or still can,
    /// else `framed`.
    func sendResponseMessage(_ framed: [UInt8], compressedVariant: [UInt8]?) throws {
        guard let compressedVariant else { return try sendResponseMessage(framed) }
        if !responseHeadersSent && responseCompression == nil { responseCompression = .gzip }
        try sendResponseMessage(responseCompression == .gzip ? compressedVariant : framed)
    }

    /// Appends one framed message, sending the response headers first.
    func sendResponseMessage(_ framed: [UInt8]) throws {
        switch machine.sendMessage() {
        case .refuse:
            throw RPCError(code: .internal, message: "response after status")
        case .headersThenMessage:
            responseHeadersSent = true
            // Optional, not `?? Metadata()`: a call without a context (or
            // metadata) makes no empty value to test and let go.
            let metadata = context?.takeResponseHeaders()
            if responseCompression == nil && metadata?.isEmpty ?? true {
                stream.submit(StaticHeaders.grpcResponse)
            } else {
                var headers = HeaderBlock()
                headers.add(":status", "200")
                headers.add("content-type", "application/grpc")
                if let responseCompression { headers.add("grpc-encoding", responseCompression.rawValue) }
                headers.add("grpc-accept-encoding", GRPCCompression.acceptEncodingHeader)
                if let metadata { headers.add(metadata) }
                stream.submit(headers: headers, withBody: true)
            }
        case .message:
            break
        }
        if let metrics = registered?.metrics { connection.countSent(metrics, bytes: framed.count) }
        stream.appendBody(framed)
    }

    /// From a handler task, on the event loop: queue a message or wait.
    func enqueueResponse(
        _ framed: [UInt8], compressedVariant: [UInt8]? = nil, continuation: CheckedContinuation<Void, any Error>
    ) {
        guard !machine.isClosed, !stream.isClosed else {
            continuation.resume(throwing: RPCError(code: .cancelled, message: "the call has ended"))
            return
        }
        do {
            try sendResponseMessage(framed, compressedVariant: compressedVariant)
        } catch {
            continuation.resume(throwing: error)
            return
        }
        connection.scheduleFlush()
        if stream.pendingBodyBytes > environment.config.streamWriteBufferHighWater {
            taskState.writeWaiters.append(continuation)
            stream.drainWatched = true
        } else {
            continuation.resume()
        }
    }

    /// nghttp2 took body bytes: writers waiting for room go on.
    func bodyDrained(remaining: Int) {
        guard let state = handlerTask, !state.writeWaiters.isEmpty,
            remaining <= environment.config.streamWriteBufferHighWater / 2
        else { return }
        let waiters = state.writeWaiters
        state.writeWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// The transport refuses a malformed or over-limit call: one log line
    /// (the client's mistake, so info, not error), then the status.
    private func reject(_ error: RPCError) {
        connection.logger.info("rejected call: \(error.code) \(error.message)", metadata: ["grpc.method": "\(path)"])
        finish(error)
    }

    /// Sends the status (once). Any error ends a still-running handler.
    private func finish(_ error: RPCError?) {
        guard !stream.isClosed else { return }
        let framing = machine.sendStatus()
        guard framing != .alreadySent else { return }
        deadlineTask?.cancel()
        deadlineTask = nil
        let code = error?.code ?? .ok
        let environment = self.environment
        if observation != nil {
            let tallied = code == .ok && !observation!.ended && connection.tallyHandledOK(observation!.metrics)
            environment.observability.end(&observation!, code: code, error: error, path: path, countsOK: !tallied)
        }
        if let head { environment.interceptors.completed(head, code: code) }
        if let error, code != .ok {
            if let cause = error.cause {
                // Server faults are errors; a client's bad input is information.
                let serverFault = code == .internal || code == .unknown || code == .dataLoss
                connection.logger.log(
                    level: serverFault ? .error : .info, "call failed: \(error.code) \(error.message)",
                    metadata: ["grpc.method": "\(path)", "cause": "\(String(reflecting: cause))"])
            }
            if let task = handlerTask?.task {
                context?.markCancelled()
                task.cancel()
            }
        }
        if handlerTask != nil { failWaiters { RPCError(code: .cancelled, message: "the call has ended") } }
        let trailingMetadata = context?.takeResponseTrailers()
        if framing == .trailers && error == nil && trailingMetadata?.isEmpty ?? true {
            return stream.endBody(trailers: .ok)
        }
        var trailers = HeaderBlock()
        if framing == .trailersOnly {
            trailers.add(":status", "200")
            trailers.add("content-type", "application/grpc")
            trailers.add("grpc-accept-encoding", GRPCCompression.acceptEncodingHeader)
        }
        trailers.add("grpc-status", String(code.rawValue))
        if let error, !error.message.isEmpty { trailers.add("grpc-message", GRPCStatusMessage.encode(error.message)) }
        if let error { trailers.add(error.metadata) }
        if let trailingMetadata { trailers.add(trailingMetadata) }
        if framing == .trailersOnly {
            stream.submit(headers: trailers, withBody: false)
        } else {
            stream.endBody(trailers: .block(trailers))
        }
    }

    /// Resumes a waiting handler with an error; the error is only built when
    /// someone waits (almost never on the unary path).
    private func failWaiters(_ error: () -> any Error) {
        guard let state = handlerTask, state.requestWaiter != nil || !state.writeWaiters.isEmpty else { return }
        let error = error()
        state.requestWaiter?.resume(throwing: error)
        state.requestWaiter = nil
        let waiters = state.writeWaiters
        state.writeWaiters.removeAll()
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// The stream is gone: a call still running is cancelled and counted as such.
    func streamClosed() {
        if machine.streamClosed() {
            deadlineTask?.cancel()
            if observation != nil { environment.observability.end(&observation!, code: .cancelled, error: nil, path: path) }
            if let head { environment.interceptors.completed(head, code: .cancelled) }
        }
        context?.markCancelled()
        if let state = handlerTask {
            state.task?.cancel()
            failWaiters { CancellationError() }
            state.pendingRequests.removeAll()
        }
    }
}

/// The one request message of a unary or server-streaming call, already in hand.
private final class SingleRequestSource: RPCRequestSource, @unchecked Sendable {
    // Read once by the handler task that owns it.
    private var message: ArraySlice<UInt8>?

    init(message: ArraySlice<UInt8>) { self.message = message }

    func next() async throws -> ArraySlice<UInt8>? {
        defer { message = nil }
        return message
    }
}

/// Request messages of a client- or bidi-streaming call, taken from the
/// call on its event loop; taking one returns its bytes to the flow-control
/// window, so a handler that stops reading stops the client.
private struct StreamRequestSource: RPCRequestSource {
    let call: GRPCServerCall
    let eventLoop: any EventLoop

    func next() async throws -> ArraySlice<UInt8>? {
        let call = self.call
        let eventLoop = self.eventLoop
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                eventLoop.execute { call.takeRequest(continuation) }
            }
        } onCancel: {
            eventLoop.execute { call.cancelRequestWait() }
        }
    }
}

/// Response messages of a call: framed (and compressed) on the handler's
/// task, queued on the event loop; `write` returns once the stream's buffer
/// is below its high-water mark.
private struct StreamResponseSink: RPCResponseSink {
    let call: GRPCServerCall
    let eventLoop: any EventLoop
    let compressor: GRPCCompression.Algorithm?
    let context: ServerContext
    /// The call negotiated no compression but the client accepts gzip.
    let mayCompress: Bool

    func write(_ message: GRPCFramedMessage) async throws {
        try Task.checkCancellation()
        let framed: [UInt8]
        var compressedVariant: [UInt8]?
        switch context.responseCompressionPreference {
        case .some(false):
            framed = try message.wireBytes(compressor: nil)
        case .some(true) where mayCompress:
            // Whether gzip is declared is known only on the event loop
            // (with the first message's headers): both forms go there.
            compressedVariant = try message.wireBytes(compressor: .gzip)
            framed = try message.wireBytes(compressor: nil)
        default:
            framed = try message.wireBytes(compressor: compressor)
        }
        let call = self.call
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            eventLoop.execute { [compressedVariant] in
                call.enqueueResponse(framed, compressedVariant: compressedVariant, continuation: continuation)
            }
        }
    }
}
