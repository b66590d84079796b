import CNghttp2
import Logging
import NIOCore
import Tracing
import WeftObservability

/// One HTTP/2 stream: a gRPC call or a plain HTTP exchange. All mutable state
/// is touched only on the connection's event loop (nghttp2 callbacks, or work
/// hopped there with `eventLoop.execute`); handler tasks reach it only through
/// such hops, which is why the class may be captured by them.
final class HTTP2Stream: @unchecked Sendable {
    let id: Int32
    let connection: HTTP2ServerConnectionHandler
    private let environment: ServerEnvironment

    // Request head. Regular header fields are kept as bytes and turned into
    // Strings only when needed (metadata, plain HTTP), so a typical gRPC call
    // allocates nothing per header.
    private var method: String?
    /// `:path`, kept with the other fields as bytes: the method lookup needs
    /// no String.
    private var pathField: HeaderFields.Index?
    private var path: String? { pathField.map { fields.string($0) } }
    private var fields = HeaderFields()
    private var contentType: HeaderFields.Index?
    private var timeoutField: HeaderFields.Index?
    private var encodingField: HeaderFields.Index?
    private var acceptEncodingField: HeaderFields.Index?
    private var headerListSize = 0
    private var headersTooLarge = false

    private enum Mode {
        case head
        case grpc
        case http
        /// Answered already; whatever else arrives is dropped.
        case done
    }
    private var mode: Mode = .head
    /// Bytes received that have not been returned to the flow-control window.
    private var unconsumed = 0
    private var isClosed = false

    // gRPC call.
    private var registered: RPCRouter.RegisteredMethod?
    private var methodMetrics: RPCMethodMetrics?
    private var context: ServerContext?
    private var startNanos: UInt64 = 0
    private var deframer: GRPCMessageDeframer?
    private var requestAlgorithm: GRPCCompression.Algorithm?
    private var responseAlgorithm: GRPCCompression.Algorithm?
    private var machine = GRPCServerStreamStateMachine()
    private var singleRequest: ArraySlice<UInt8>?
    private var pendingRequests: [(message: ArraySlice<UInt8>, framedSize: Int)] = []
    private var requestWaiter: CheckedContinuation<ArraySlice<UInt8>?, any Error>?
    private var requestEnded = false
    private var statusSent = false
    private var task: Task<Void, Never>?
    /// The call's SERVER span (tracing on only); ended with the status.
    private var span: (any Span)?
    /// The span of a call answered inline, recorded and shipped at the end.
    private var deferredSpan: DeferredSpan?
    private var deadlineTask: Scheduled<Void>?

    // Plain HTTP exchange.
    private var httpBody: ByteBuffer?

    // Response.
    /// Response bytes not yet taken by nghttp2: `outbound[outboundOffset...]`.
    /// A plain array (not a ByteBuffer): one allocation, usually the very
    /// array the response was serialized into.
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var outboundEnded = false
    private var pendingTrailers: Trailers = .none
    private var dataDeferred = false
    private var writeWaiters: [CheckedContinuation<Void, any Error>] = []

    private enum Trailers {
        case none
        /// grpc-status 0 and nothing else: the static set.
        case ok
        case block(HeaderBlock)
    }

    init(id: Int32, connection: HTTP2ServerConnectionHandler) {
        self.id = id
        self.connection = connection
        self.environment = connection.environment
    }

    // MARK: Request head

    func receiveHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        // SETTINGS_MAX_HEADER_LIST_SIZE accounting (RFC 9113 6.5.2): name +
        // value + 32 per field. Past the limit, further fields are dropped and
        // the call is refused once the head is complete.
        headerListSize += name.count + value.count + 32
        if headerListSize > environment.config.maxHeaderListSize {
            headersTooLarge = true
            return
        }
        if name.first == UInt8(ascii: ":") {
            if bytesEqual(name, HeaderName.path) {
                pathField = fields.append(name: name, value: value)
            } else if bytesEqual(name, HeaderName.method) {
                method = String(decoding: value, as: UTF8.self)
            }
            return
        }
        let index = fields.append(name: name, value: value)
        switch name.count {
        case 12 where bytesEqual(name, HeaderName.contentType): contentType = index
        case 12 where bytesEqual(name, HeaderName.grpcTimeout): timeoutField = index
        case 13 where bytesEqual(name, HeaderName.grpcEncoding): encodingField = index
        case 20 where bytesEqual(name, HeaderName.grpcAcceptEncoding): acceptEncodingField = index
        default: break
        }
    }

    func headersComplete() {
        guard mode == .head else { return }
        machine.receiveHeaders()
        if let contentType, bytesHavePrefix(fields.value(contentType), HeaderName.applicationGRPC) {
            startGRPC(contentType: contentType)
        } else {
            startHTTP()
        }
    }

    // MARK: gRPC

    private func startGRPC(contentType: HeaderFields.Index) {
        mode = .grpc
        startNanos = NIODeadline.now().uptimeNanoseconds
        let registered = pathField.flatMap { environment.router.lookup(path: fields.value($0)) }
        let metrics = registered?.metrics ?? environment.metrics.unknownMethod
        methodMetrics = metrics
        metrics.started.increment()

        guard method == "POST" else {
            reject(RPCError(code: .unimplemented, message: "gRPC requires POST, got \(method ?? "no method")"))
            return
        }
        let subtype = fields.value(contentType).dropFirst(HeaderName.applicationGRPC.count)
        guard subtype.isEmpty || subtype.starts(with: "+proto".utf8) || subtype.first == UInt8(ascii: ";") else {
            reject(RPCError(
                code: .unimplemented,
                message: "content-type \(fields.string(contentType)) is not supported; use application/grpc+proto"))
            return
        }
        guard !headersTooLarge else {
            reject(RPCError(
                code: .resourceExhausted,
                message: "request headers exceed the limit of \(environment.config.maxHeaderListSize) bytes"))
            return
        }
        guard let registered else {
            let path = self.path ?? ""
            let message =
                environment.router.hasService(forPath: path)
                ? "unknown method \(path)"
                : "unknown service \(Self.serviceName(of: path)) (method \(path))"
            finish(RPCError(code: .unimplemented, message: message))
            return
        }
        self.registered = registered

        if let encodingField, !bytesEqual(fields.value(encodingField), HeaderName.identity) {
            let name = fields.string(encodingField)
            guard let algorithm = GRPCCompression.Algorithm(rawValue: name) else {
                reject(RPCError(code: .unimplemented, message: "grpc-encoding \(name) is not supported"))
                return
            }
            requestAlgorithm = algorithm
            // Mirror the request's compression when the client accepts it.
            if let acceptEncodingField,
                fields.string(acceptEncodingField).split(separator: ",").contains(where: { $0.filter { $0 != " " } == name })
            {
                responseAlgorithm = algorithm
            }
        }

        var deadline: NIODeadline?
        if let timeoutField {
            guard let timeout = GRPCTimeout.parse(fields.value(timeoutField)) else {
                reject(RPCError(code: .invalidArgument, message: "malformed grpc-timeout \(fields.string(timeoutField))"))
                return
            }
            let (seconds, attoseconds) = timeout.components
            deadline = .now() + .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }

        var metadata = Metadata()
        for index in fields.indices where !HeaderName.isReserved(fields.name(index)) {
            let name = String(decoding: fields.name(index), as: UTF8.self)
            if name.hasSuffix("-bin") {
                guard let bytes = Base64.decode(fields.value(index)) else {
                    reject(RPCError(code: .invalidArgument, message: "metadata \(name) is not valid base64"))
                    return
                }
                metadata.add(key: name, value: .binary(bytes))
            } else {
                metadata.add(key: name, value: .string(fields.string(index)))
            }
        }
        context = ServerContext(
            descriptor: registered.handler.descriptor,
            requestMetadata: metadata,
            deadline: deadline,
            peer: connection.peer,
            requestEncoding: requestAlgorithm?.rawValue ?? "identity",
            responseEncoding: responseAlgorithm?.rawValue ?? "identity")
        if WeftTracing.isEnabled { startSpan(registered.handler.descriptor, metadata: metadata) }
        deframer = GRPCMessageDeframer(maxMessageSize: environment.config.maxReceiveMessageSize)
        if let deadline {
            deadlineTask = connection.eventLoop.scheduleTask(deadline: deadline) { [self] in
                deadlineExpired()
            }
        }
        // Streaming requests start the handler at once; single-request calls
        // wait for their message (and END_STREAM).
        if case .task(let body) = registered.handler.body, !registered.handler.descriptor.kind.isSingleRequest {
            startTask(body, requests: RPCRequestStream(source: StreamRequestSource(stream: self)))
        }
    }

    /// One SERVER span per call (OpenTelemetry RPC conventions), child of
    /// the caller's `traceparent` metadata when it has a valid one.
    ///
    /// Calls that may be answered inline only record their span (shipped in
    /// a batch when they end; see `DeferredSpan`); a fallback to the task
    /// path makes it live.
    private func startSpan(_ descriptor: RPCMethodDescriptor, metadata: Metadata) {
        let headers = TraceHeaders(traceparent: metadata[string: "traceparent"], tracestate: metadata[string: "tracestate"])
        if case .task = registered?.handler.body {
            span = WeftTracing.startServer(descriptor.spanName, headers: headers)
        } else {
            deferredSpan = WeftTracing.deferServer(descriptor.spanName, headers: headers)
        }
        span?.attributes = Self.rpcAttributes(descriptor)
        deferredSpan?.attributes = Self.rpcAttributes(descriptor)
    }

    private static func rpcAttributes(_ descriptor: RPCMethodDescriptor) -> SpanAttributes {
        var attributes = SpanAttributes()
        attributes[SpanKeys.rpcSystem] = "grpc"
        attributes[SpanKeys.rpcService] = descriptor.service
        attributes[SpanKeys.rpcMethod] = descriptor.method
        return attributes
    }

    /// The inline call continues as a task: its span must exist now.
    private func makeSpanLive() {
        guard let deferred = deferredSpan else { return }
        deferredSpan = nil
        span = WeftTracing.start(deferred)
    }

    private static func isServerFault(_ code: RPCError.Code) -> Bool {
        switch code {
        case .unknown, .deadlineExceeded, .unimplemented, .internal, .unavailable, .dataLoss: true
        default: false
        }
    }

    /// Ends the call's span with its status; server faults mark it as an
    /// error (the OpenTelemetry list for gRPC servers).
    private func endSpan(_ code: RPCError.Code, _ error: RPCError?) {
        if var deferred = deferredSpan {
            deferredSpan = nil
            deferred.attributes[SpanKeys.rpcGRPCStatusCode] = Int(code.rawValue)
            if Self.isServerFault(code) {
                deferred.attributes[SpanKeys.errorType] = "\(code)"
                deferred.errorMessage = error?.message ?? "\(code)"
            }
            WeftTracing.ship(deferred)
            logCall(code)
            return
        }
        guard let span else { return }
        self.span = nil
        span.attributes[SpanKeys.rpcGRPCStatusCode] = Int(code.rawValue)
        if Self.isServerFault(code) {
            span.attributes[SpanKeys.errorType] = "\(code)"
            span.setStatus(SpanStatus(code: .error, message: error?.message))
        }
        if connection.logger.logLevel <= .debug { InstrumentationContext.withValue(span.context) { logCall(code) } }
        span.end()
    }

    /// The access line of a call (debug level).
    private func logCall(_ code: RPCError.Code) {
        guard connection.logger.logLevel <= .debug else { return }
        connection.logger.debug("request", metadata: ["grpc.method": "\(path ?? "")", "grpc.code": "\(code)"])
    }

    private static func serviceName(of path: String) -> String {
        let parts = path.split(separator: "/")
        return parts.first.map(String.init) ?? path
    }

    /// - Parameter endStream: the DATA frame ends the request (its
    ///   END_STREAM flag; `endOfRequest` still follows from the frame callback).
    func receiveData(_ data: UnsafeRawBufferPointer, endStream: Bool) {
        unconsumed += data.count
        if endStream, mode == .grpc, !statusSent, runInlineInPlace(data) { return }
        switch mode {
        case .grpc where !statusSent:
            deframer!.append(data)
            if registered!.isSingleRequest {
                // Bounded by the message size limit: return the window at once.
                consume(data.count)
            }
            drainRequestMessages()
        case .http:
            consume(data.count)
            if httpBody!.readableBytes + data.count > environment.config.maxReceiveMessageSize {
                respondHTTP(
                    .error(
                        status: 413, code: .resourceExhausted,
                        message: "request body exceeds the limit of \(environment.config.maxReceiveMessageSize) bytes"),
                    route: "unmatched", method: method ?? "")
                return
            }
            httpBody!.writeBytes(data)
        default:
            consume(data.count)
        }
    }

    /// The common unary call: the whole request is one uncompressed message
    /// in the last DATA frame and the handler is inline. It runs on nghttp2's
    /// own buffer, without copying the message into the deframer. Returns
    /// false when the call does not qualify (it then takes the usual path).
    private func runInlineInPlace(_ data: UnsafeRawBufferPointer) -> Bool {
        guard let registered, deframer?.bufferedBytes == 0, singleRequest == nil, data.count >= 5, data[0] == 0
        else { return false }
        switch registered.handler.body {
        case .inline, .inlineOrTask: break
        case .task: return false
        }
        let length = Int(data[1]) << 24 | Int(data[2]) << 16 | Int(data[3]) << 8 | Int(data[4])
        guard length == data.count - 5, length <= environment.config.maxReceiveMessageSize else { return false }
        consume(data.count)
        methodMetrics!.messagesReceived.increment()
        methodMetrics!.bytesReceived.increment(by: Int64(data.count))
        try? machine.receiveEnd()
        requestEnded = true
        runInline(registered.handler.body, request: UnsafeRawBufferPointer(rebasing: data[5...]))
        return true
    }

    private func drainRequestMessages() {
        while !statusSent {
            let message: GRPCMessageDeframer.Message
            do {
                guard let next = try deframer!.next() else { return }
                message = next
            } catch .messageTooLarge(let announced, let limit) {
                reject(RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(announced) bytes exceeds the limit of \(limit) bytes"))
                return
            } catch {
                reject(RPCError(code: .internal, message: "malformed gRPC message frame: \(error)"))
                return
            }
            let framedSize = 5 + message.bytes.count
            methodMetrics!.messagesReceived.increment()
            methodMetrics!.bytesReceived.increment(by: Int64(framedSize))
            var payload = message.bytes
            if message.compressed {
                guard let algorithm = requestAlgorithm else {
                    reject(RPCError(code: .internal, message: "compressed message without grpc-encoding"))
                    return
                }
                do {
                    payload = try message.bytes.withUnsafeBytes {
                        try GRPCCompression.decompress(
                            $0, algorithm: algorithm, limit: environment.config.maxReceiveMessageSize)
                    }[...]
                } catch GRPCCompression.CompressionError.tooLarge(let limit) {
                    reject(RPCError(
                        code: .resourceExhausted,
                        message: "decompressed request message exceeds the limit of \(limit) bytes"))
                    return
                } catch {
                    reject(RPCError(code: .internal, message: "cannot decompress request message (\(algorithm.rawValue))"))
                    return
                }
            }
            if registered!.isSingleRequest {
                guard singleRequest == nil else {
                    reject(RPCError(code: .internal, message: "more than one request message for a \(registered!.handler.descriptor.kind.rawValue) call"))
                    return
                }
                singleRequest = payload
            } else if let waiter = requestWaiter {
                requestWaiter = nil
                consume(framedSize)
                waiter.resume(returning: payload)
            } else {
                pendingRequests.append((payload, framedSize))
            }
        }
    }

    func endOfRequest() {
        switch mode {
        case .grpc:
            guard !statusSent else { return }
            do {
                try machine.receiveEnd()
                try deframer!.finish()
            } catch let error as GRPCMessageDeframer.DeframeError {
                reject(RPCError(code: .internal, message: "request ended inside a gRPC message frame (\(error))"))
                return
            } catch {
                return
            }
            requestEnded = true
            if registered!.isSingleRequest {
                guard let request = singleRequest else {
                    reject(RPCError(code: .internal, message: "the call ended without a request message"))
                    return
                }
                singleRequest = nil
                switch registered!.handler.body {
                case .inline, .inlineOrTask:
                    request.withUnsafeBytes { runInline(registered!.handler.body, request: $0) }
                case .task(let body):
                    startTask(body, requests: RPCRequestStream(source: SingleRequestSource(message: request)))
                }
            } else if let waiter = requestWaiter, pendingRequests.isEmpty {
                requestWaiter = nil
                waiter.resume(returning: nil)
            }
        case .http:
            dispatchHTTP()
        case .head, .done:
            break
        }
    }

    /// Runs an inline body (or the fast path of an inline-or-task one; when
    /// that declines, the request is copied and the task runs instead).
    private func runInline(_ handlerBody: RPCHandler.Body, request: UnsafeRawBufferPointer) {
        do {
            let response: GRPCFramedMessage
            // Inline bodies run without the span as the current context:
            // they do no I/O and start no child spans (a fallback to the task
            // path gets it in `startTask`).
            switch handlerBody {
            case .inline(let body):
                response = try body(request, context!)
            case .inlineOrTask(let fast, let fallback):
                guard let fastResponse = try fast(request, context!) else {
                    makeSpanLive()
                    startTask(fallback, requests: RPCRequestStream(source: SingleRequestSource(message: Array(request)[...])))
                    return
                }
                response = fastResponse
            case .task:
                return
            }
            try sendResponseMessage(try response.wireBytes(compressor: responseAlgorithm))
            finish(nil)
        } catch {
            finish(RPCError(from: error))
        }
    }

    private func startTask(
        _ body: @escaping @Sendable (RPCRequestStream, RPCResponseWriter, ServerContext) async throws -> Void,
        requests: RPCRequestStream
    ) {
        guard let context else { return }
        let writer = RPCResponseWriter(
            sink: StreamResponseSink(stream: self, eventLoop: connection.eventLoop, compressor: responseAlgorithm))
        let eventLoop = connection.eventLoop
        // An untraced call's handler runs under `unsampled`, so what it
        // starts (an execution) is not traced either.
        let spanContext = WeftTracing.handlerContext(span)
        task = Task {
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
        guard !statusSent else { return }
        context?.markCancelled()
        finish(RPCError(
            code: .deadlineExceeded, message: "deadline exceeded (grpc-timeout \(timeoutField.map { fields.string($0) } ?? ""))"))
        connection.scheduleFlush()
    }

    /// The transport refuses a malformed or over-limit call: one log line
    /// (the client's mistake, so info, not error), then the status.
    private func reject(_ error: RPCError) {
        connection.logger.info(
            "rejected call: \(error.code) \(error.message)", metadata: ["grpc.method": "\(path ?? "")"])
        finish(error)
    }

    /// Sends the status (once). Any error ends a still-running handler.
    private func finish(_ error: RPCError?) {
        guard !statusSent, !isClosed else { return }
        statusSent = true
        deadlineTask?.cancel()
        deadlineTask = nil
        let code = error?.code ?? .ok
        if let methodMetrics {
            methodMetrics.handled(code)
            methodMetrics.handlingSeconds.recordNanoseconds(
                Int64(NIODeadline.now().uptimeNanoseconds - startNanos))
        }
        if span != nil || deferredSpan != nil { endSpan(code, error) } else { logCall(code) }
        if let error, code != .ok {
            if let cause = error.cause {
                // Server faults are errors; a client's bad input is information.
                let serverFault = code == .internal || code == .unknown || code == .dataLoss
                connection.logger.log(
                    level: serverFault ? .error : .info,
                    "call failed: \(error.code) \(error.message)",
                    metadata: ["grpc.method": "\(path ?? "")", "cause": "\(String(reflecting: cause))"])
            }
            if let task {
                context?.markCancelled()
                task.cancel()
            }
        }
        let framing: GRPCServerStreamStateMachine.StatusFraming
        do {
            framing = try machine.sendStatus()
        } catch {
            return
        }
        failWaiters { RPCError(code: .cancelled, message: "the call has ended") }
        let trailingMetadata = context?.takeResponseTrailers() ?? Metadata()
        if framing == .trailers && error == nil && trailingMetadata.isEmpty {
            pendingTrailers = .ok
            outboundEnded = true
            resumeData()
            return
        }
        var trailers = HeaderBlock()
        if framing == .trailersOnly {
            trailers.add(":status", "200")
            trailers.add("content-type", "application/grpc")
            trailers.add("grpc-accept-encoding", GRPCCompression.acceptEncodingHeader)
        }
        trailers.add("grpc-status", String(code.rawValue))
        if let error, !error.message.isEmpty {
            trailers.add("grpc-message", GRPCStatusMessage.encode(error.message))
        }
        if let error { trailers.add(error.metadata) }
        trailers.add(trailingMetadata)
        if framing == .trailersOnly {
            submit(headers: trailers, withBody: false)
        } else {
            pendingTrailers = .block(trailers)
            outboundEnded = true
            resumeData()
        }
    }

    // MARK: Response

    /// Appends one framed message, sending the response headers first.
    func sendResponseMessage(_ framed: [UInt8]) throws {
        if try machine.sendMessage() {
            let metadata = context?.takeResponseHeaders() ?? Metadata()
            if responseAlgorithm == nil && metadata.isEmpty {
                submit(StaticHeaders.grpcResponse)
            } else {
                var headers = HeaderBlock()
                headers.add(":status", "200")
                headers.add("content-type", "application/grpc")
                if let responseAlgorithm { headers.add("grpc-encoding", responseAlgorithm.rawValue) }
                headers.add("grpc-accept-encoding", GRPCCompression.acceptEncodingHeader)
                headers.add(metadata)
                submit(headers: headers, withBody: true)
            }
        }
        methodMetrics!.messagesSent.increment()
        methodMetrics!.bytesSent.increment(by: Int64(framed.count))
        if outboundOffset == outbound.count {
            outbound = framed
            outboundOffset = 0
        } else {
            if outboundOffset > outbound.count / 2 {
                outbound.removeFirst(outboundOffset)
                outboundOffset = 0
            }
            outbound.append(contentsOf: framed)
        }
        resumeData()
    }

    private func submit(headers: HeaderBlock, withBody: Bool) {
        guard let session = connection.session else { return }
        let rv: Int32 = headers.withNVs { nva, count in
            if withBody {
                var provider = dataProvider
                return nghttp2_submit_response(session, id, nva, count, &provider)
            } else {
                return nghttp2_submit_response(session, id, nva, count, nil)
            }
        }
        if rv != 0 {
            connection.logger.debug("nghttp2_submit_response: \(String(cString: nghttp2_strerror(rv)))")
        }
    }

    private func submit(_ headers: StaticHeaders) {
        guard let session = connection.session else { return }
        var provider = dataProvider
        let rv = nghttp2_submit_response(session, id, headers.pointer, headers.count, &provider)
        if rv != 0 {
            connection.logger.debug("nghttp2_submit_response: \(String(cString: nghttp2_strerror(rv)))")
        }
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

    func readResponseData(into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        let n = min(length, outbound.count - outboundOffset)
        if n > 0 {
            outbound.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(buffer).copyMemory(from: raw.baseAddress! + outboundOffset, byteCount: n)
            }
            outboundOffset += n
            if outboundOffset == outbound.count {
                outbound.removeAll(keepingCapacity: true)
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
        if !writeWaiters.isEmpty && remaining <= environment.config.streamWriteBufferHighWater / 2 {
            let waiters = writeWaiters
            writeWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
        }
        return n
    }

    /// From a handler task, on the event loop: queue a message or wait.
    func enqueueResponse(_ framed: [UInt8], continuation: CheckedContinuation<Void, any Error>) {
        guard !statusSent, !isClosed else {
            continuation.resume(throwing: RPCError(code: .cancelled, message: "the call has ended"))
            return
        }
        do {
            try sendResponseMessage(framed)
        } catch {
            continuation.resume(throwing: RPCError(code: .internal, message: "response after status"))
            return
        }
        connection.scheduleFlush()
        if outbound.count - outboundOffset > environment.config.streamWriteBufferHighWater {
            writeWaiters.append(continuation)
        } else {
            continuation.resume()
        }
    }

    /// From a handler task, on the event loop: the next request message.
    func takeRequest(_ continuation: CheckedContinuation<ArraySlice<UInt8>?, any Error>) {
        if !pendingRequests.isEmpty {
            let (message, size) = pendingRequests.removeFirst()
            consume(size)
            continuation.resume(returning: message)
        } else if isClosed || statusSent {
            continuation.resume(throwing: RPCError(code: .cancelled, message: "the call has ended"))
        } else if requestEnded {
            continuation.resume(returning: nil)
        } else {
            requestWaiter = continuation
        }
    }

    func cancelRequestWait() {
        requestWaiter?.resume(throwing: CancellationError())
        requestWaiter = nil
    }

    /// Resumes a waiting handler with an error; the error is only built when
    /// someone waits (almost never on the unary path).
    private func failWaiters(_ error: () -> any Error) {
        guard requestWaiter != nil || !writeWaiters.isEmpty else { return }
        let error = error()
        requestWaiter?.resume(throwing: error)
        requestWaiter = nil
        let waiters = writeWaiters
        writeWaiters.removeAll()
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    private func consume(_ count: Int) {
        guard count > 0 else { return }
        unconsumed -= count
        connection.consume(streamID: id, count)
    }

    /// The stream is gone (finished, reset by the client, or the connection
    /// closed). A call still running is cancelled and counted as such.
    func closed(errorCode: UInt32) {
        guard !isClosed else { return }
        if mode == .grpc && !statusSent {
            statusSent = true
            deadlineTask?.cancel()
            if let methodMetrics {
                methodMetrics.handled(.cancelled)
                methodMetrics.handlingSeconds.recordNanoseconds(
                    Int64(NIODeadline.now().uptimeNanoseconds - startNanos))
            }
            if span != nil || deferredSpan != nil { endSpan(.cancelled, nil) }
        }
        isClosed = true
        context?.markCancelled()
        task?.cancel()
        failWaiters { CancellationError() }
        pendingRequests.removeAll()
        if unconsumed > 0 {
            connection.consumeConnection(unconsumed)
            unconsumed = 0
        }
    }

    // MARK: Plain HTTP

    private func startHTTP() {
        mode = .http
        httpBody = connection.allocator.buffer(capacity: 0)
        let path = self.path ?? "/"
        if headersTooLarge {
            respondHTTP(
                .error(
                    status: 431, code: .resourceExhausted,
                    message: "request headers exceed the limit of \(environment.config.maxHeaderListSize) bytes"),
                route: "unmatched", method: method ?? "GET")
        } else if method == "POST", environment.router.hasService(forPath: path) {
            respondHTTP(
                .error(
                    status: 415, code: .invalidArgument,
                    message:
                        "content-type must be application/grpc for gRPC method \(path), got \(contentType.map { fields.string($0) } ?? "none")"),
                route: "grpc", method: "POST")
        }
    }

    private func dispatchHTTP() {
        guard let httpBody else { return }
        let method = self.method ?? "GET"
        let request = HTTPRequest(
            method: method, target: path ?? "/",
            headers: fields.indices.filter { fields.name($0).first != UInt8(ascii: ":") }.map {
                (fields.string(name: $0).lowercased(), fields.string($0))
            },
            body: httpBody)
        self.httpBody = nil
        let start = NIODeadline.now()
        let eventLoop = connection.eventLoop
        switch environment.httpRouter.route(request) {
        case .respond(let route, let response):
            respondHTTP(response, route: route, method: method, start: start)
        case .run(let route, let request, let handler):
            let logger = connection.logger
            task = Task {
                let response = await HTTPRouter.run(handler, request, route: route, logger: logger)
                eventLoop.execute {
                    self.respondHTTP(response, route: route, method: method, start: start)
                    self.connection.scheduleFlush()
                }
            }
        }
    }

    private func respondHTTP(_ response: HTTPResponse, route: String, method: String, start: NIODeadline = .now()) {
        guard mode == .http, !isClosed else { return }
        mode = .done
        httpBody = nil
        var headers = HeaderBlock()
        headers.add(":status", String(response.status))
        for (name, value) in response.headers { headers.add(name.lowercased(), value) }
        let body = method == "HEAD" ? [] : response.body
        headers.add("content-length", String(response.body.count))
        if body.isEmpty {
            submit(headers: headers, withBody: false)
        } else {
            outbound = body
            outboundOffset = 0
            outboundEnded = true
            submit(headers: headers, withBody: true)
        }
        environment.metrics.recordHTTP(
            method: method, route: route, status: response.status,
            duration: .nanoseconds(Int64(NIODeadline.now().uptimeNanoseconds - start.uptimeNanoseconds)))
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
/// stream on its event loop; taking one returns its bytes to the flow-control
/// window, so a handler that stops reading stops the client.
private struct StreamRequestSource: RPCRequestSource {
    let stream: HTTP2Stream

    func next() async throws -> ArraySlice<UInt8>? {
        let eventLoop = stream.connection.eventLoop
        let stream = self.stream
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                eventLoop.execute { stream.takeRequest(continuation) }
            }
        } onCancel: {
            eventLoop.execute { stream.cancelRequestWait() }
        }
    }
}

/// Response messages of a call: framed (and compressed) on the handler's
/// task, queued on the event loop; `write` returns once the stream's buffer is
/// below its high-water mark.
private struct StreamResponseSink: RPCResponseSink {
    let stream: HTTP2Stream
    let eventLoop: any EventLoop
    let compressor: GRPCCompression.Algorithm?

    func write(_ message: GRPCFramedMessage) async throws {
        try Task.checkCancellation()
        let framed = try message.wireBytes(compressor: compressor)
        let stream = self.stream
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            eventLoop.execute { stream.enqueueResponse(framed, continuation: continuation) }
        }
    }
}
