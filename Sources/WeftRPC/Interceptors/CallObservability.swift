import Logging
import NIOCore
import Tracing
import WeftObservability

/// The fixed stages of every call's chain, written once for every transport:
/// a SERVER span (OpenTelemetry RPC or HTTP conventions), the metrics
/// (go-grpc-prometheus names for gRPC, `http_server_request_duration_seconds`
/// for REST), and the access line (debug level, inside the span).
///
/// gRPC calls and REST requests differ in names and labels (what existing
/// dashboards expect), not in where they are recorded: a transport calls
/// `begin…` when the call's head is known and `end` with its final status.
final class CallObservability: Sendable {
    let metrics: RPCMetrics
    let logger: Logger
    /// Access lines are written (debug level). A logger's level is fixed
    /// when it is made; reading it per call went through its handler
    /// existential (a copy, a retain and a release).
    private let logsRequests: Bool

    init(metrics: RPCMetrics, logger: Logger) {
        self.metrics = metrics
        self.logger = logger
        self.logsRequests = logger.logLevel <= .debug
    }

    // MARK: gRPC

    /// The observation of one gRPC call, held by its stream: three words and
    /// a flag, with tracing in a separate object only when it is on (this is
    /// copied and destroyed on every call).
    struct GRPCCall {
        let metrics: RPCMethodMetrics
        let startNanos: UInt64
        /// Tracing on only.
        var trace: Trace?
        var ended = false
    }

    /// A traced call's span: a SERVER span, or for a call answered inline
    /// a deferred one, recorded and shipped at the end.
    final class Trace {
        var span: (any Span)?
        var deferred: DeferredSpan?

        init(span: (any Span)? = nil, deferred: DeferredSpan? = nil) {
            self.span = span
            self.deferred = deferred
        }
    }

    /// Counts the call as started and opens its span. Calls that may be
    /// answered inline only record their span (shipped in a batch when they
    /// end; see `DeferredSpan`); `makeLive` makes it a real one if the call
    /// goes on as a task.
    func beginGRPC(
        _ method: RPCMethodMetrics, descriptor: @autoclosure () -> RPCMethodDescriptor?,
        metadata: @autoclosure () -> Metadata?, mayAnswerInline: Bool, received: NIODeadline? = nil,
        countsStarted: Bool = true
    ) -> GRPCCall {
        // The HTTP/2 transport counts it itself (`CallTally`) during a read burst.
        if countsStarted { method.started.increment() }
        // `received`: when the read that brought the head returned (the
        // transport's clock reading, shared by the calls of that read).
        var call = GRPCCall(metrics: method, startNanos: (received ?? NIODeadline.now()).uptimeNanoseconds)
        // Untraced calls never touch the descriptor or metadata here.
        guard WeftTracing.isEnabled, let descriptor = descriptor(), let metadata = metadata() else { return call }
        let headers = TraceHeaders(traceparent: metadata[string: "traceparent"], tracestate: metadata[string: "tracestate"])
        if mayAnswerInline {
            var deferred = WeftTracing.deferServer(descriptor.spanName, headers: headers)
            deferred?.attributes = Self.rpcAttributes(descriptor)
            call.trace = Trace(deferred: deferred)
        } else {
            let span = WeftTracing.startServer(descriptor.spanName, headers: headers)
            span?.attributes = Self.rpcAttributes(descriptor)
            call.trace = Trace(span: span)
        }
        return call
    }

    /// The inline call continues as a task: its span must exist now.
    func makeLive(_ call: inout GRPCCall) {
        guard let trace = call.trace, let deferred = trace.deferred else { return }
        trace.deferred = nil
        trace.span = WeftTracing.start(deferred)
    }

    /// The context a call's handler runs in (its span, or `unsampled`).
    func handlerContext(_ call: GRPCCall) -> InstrumentationContext? { WeftTracing.handlerContext(call.trace?.span) }

    /// Records the status: handled counter, handling time, the SLI, span,
    /// access line.
    /// `countsOK`: false when the transport counts an OK status itself
    /// (the HTTP/2 transport's `CallTally`, during a read burst).
    func end(
        _ call: inout GRPCCall, code: RPCError.Code, error: RPCError?, path: @autoclosure () -> String,
        countsOK: Bool = true
    ) {
        guard !call.ended else { return }
        call.ended = true
        if code != .ok || countsOK { call.metrics.handled(code) }
        let elapsed = Int64(NIODeadline.now().uptimeNanoseconds - call.startNanos)
        // A recorded span's trace id becomes an exemplar (deferred spans get
        // theirs only when shipped).
        let traceId = call.trace?.span.flatMap(WeftTracing.traceId(of:))
        call.metrics.handlingTime(nanoseconds: elapsed, traceId: traceId)
        let outcome = error?.outcome ?? RequestOutcome(code: code)
        call.metrics.sli?.record(outcome, nanoseconds: elapsed, traceId: traceId)
        if let trace = call.trace, var deferred = trace.deferred {
            trace.deferred = nil
            deferred.attributes[SpanKeys.rpcGRPCStatusCode] = Int(code.rawValue)
            if outcome != .ok { deferred.attributes[SpanKeys.requestOutcome] = outcome.rawValue }
            if outcome == .serverError {
                deferred.attributes[SpanKeys.errorType] = "\(code)"
                deferred.errorMessage = error?.message ?? "\(code)"
            }
            WeftTracing.ship(deferred)
            logGRPC(code, path: path())
        } else if let trace = call.trace, let span = trace.span {
            trace.span = nil
            span.attributes[SpanKeys.rpcGRPCStatusCode] = Int(code.rawValue)
            if outcome != .ok { span.attributes[SpanKeys.requestOutcome] = outcome.rawValue }
            if outcome == .serverError {
                span.attributes[SpanKeys.errorType] = "\(code)"
                span.setStatus(SpanStatus(code: .error, message: error?.message))
            }
            if logsRequests { InstrumentationContext.withValue(span.context) { logGRPC(code, path: path()) } }
            span.end()
        } else {
            logGRPC(code, path: path())
        }
    }

    /// The access line of a call (debug level).
    private func logGRPC(_ code: RPCError.Code, path: @autoclosure () -> String) {
        guard logsRequests else { return }
        logger.debug("request", metadata: ["grpc.method": "\(path())", "grpc.code": "\(code)"])
    }

    private static func rpcAttributes(_ descriptor: RPCMethodDescriptor) -> SpanAttributes {
        var attributes = SpanAttributes()
        attributes[SpanKeys.rpcSystem] = "grpc"
        attributes[SpanKeys.rpcService] = descriptor.service
        attributes[SpanKeys.rpcMethod] = descriptor.method
        return attributes
    }

    // MARK: REST

    /// Runs a routed request inside its SERVER span (OpenTelemetry HTTP
    /// conventions; child of the caller's `traceparent`, if any), then
    /// records its metrics and access line. An untraced request runs under
    /// `unsampled`: nothing it starts is traced either.
    func observeREST(
        _ request: HTTPRequest, route: String, requestClass: RequestClass, start: NIODeadline,
        _ body: () async -> HTTPResponse
    ) async -> HTTPResponse {
        let span =
            WeftTracing.isEnabled
            ? WeftTracing.startServer("\(request.method) \(route)", headers: TraceHeaders(headers: request.headers)) : nil
        if let span { Self.describe(span, request, route: route) }
        defer { span?.end() }
        return await WeftTracing.withContext(WeftTracing.handlerContext(span)) {
            let response = await body()
            if let span { Self.mark(span, response) }
            answeredHTTP(
                method: request.method, route: route, response: response, requestClass: requestClass, start: start,
                traceId: span.flatMap(WeftTracing.traceId(of:)))
            return response
        }
    }

    /// A REST operation answered on the event loop (refused by the
    /// interceptor chain: 401, 429, 403; or answered inline): its span, if
    /// tracing is on, and its metrics, as `observeREST` would have made
    /// them, without a task.
    func answeredRESTNow(
        _ request: HTTPRequest, route: String, requestClass: RequestClass, response: HTTPResponse, start: NIODeadline
    ) {
        var traceId: String?
        if WeftTracing.isEnabled,
            let span = WeftTracing.startServer("\(request.method) \(route)", headers: TraceHeaders(headers: request.headers))
        {
            Self.describe(span, request, route: route)
            Self.mark(span, response)
            traceId = WeftTracing.traceId(of: span)
            span.end()
        }
        answeredHTTP(
            method: request.method, route: route, response: response, requestClass: requestClass, start: start,
            traceId: traceId)
    }

    /// A REST span's request attributes (OpenTelemetry HTTP server conventions).
    private static func describe(_ span: any Span, _ request: HTTPRequest, route: String) {
        span.attributes[SpanKeys.httpRequestMethod] = request.method
        span.attributes[SpanKeys.httpRoute] = route
        span.attributes[SpanKeys.urlPath] = request.path
        if let client = request.client {
            span.attributes[SpanKeys.urlScheme] = client.scheme
            if let address = client.address { span.attributes[SpanKeys.clientAddress] = address }
            if let port = client.port { span.attributes[SpanKeys.clientPort] = port }
        }
        // The host the client asked for (the Host header), else the address
        // the connection came in on (HTTP/2's :authority is not kept: the
        // gRPC path reads no pseudo-header it does not need).
        if let host = request.header("host") {
            let (name, port) = Self.splitHost(host)
            span.attributes[SpanKeys.serverAddress] = name
            if let port { span.attributes[SpanKeys.serverPort] = port }
        } else if let client = request.client, let local = client.localAddress {
            span.attributes[SpanKeys.serverAddress] = local
            if let port = client.localPort { span.attributes[SpanKeys.serverPort] = port }
        }
    }

    /// `host[:port]` or `[v6]:port` into its name and port.
    static func splitHost(_ host: String) -> (String, Int?) {
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let name = String(host[host.index(after: host.startIndex)..<close])
            let rest = host[host.index(after: close)...]
            return (name, rest.hasPrefix(":") ? Int(rest.dropFirst()) : nil)
        }
        if let colon = host.lastIndex(of: ":"), let port = Int(host[host.index(after: colon)...]) {
            return (String(host[..<colon]), port)
        }
        return (host, nil)
    }

    /// A REST span's status, by the request's outcome: an error only for a
    /// server error (OpenTelemetry: 4xx is not a server span's error).
    private static func mark(_ span: any Span, _ response: HTTPResponse) {
        span.attributes[SpanKeys.httpResponseStatusCode] = response.status
        let outcome = response.outcome ?? RequestOutcome(httpStatus: response.status)
        if outcome != .ok { span.attributes[SpanKeys.requestOutcome] = outcome.rawValue }
        if outcome == .serverError {
            span.attributes[SpanKeys.errorType] = String(response.status)
            span.setStatus(SpanStatus(code: .error))
        }
    }

    /// The metrics and access line of an HTTP answer: routed ones (from
    /// `observeREST`) and the ones a transport gives itself (404, 405, 413,
    /// 415, 431: no handler ran; class `other`).
    func answeredHTTP(
        method: String, route: String, response: HTTPResponse, requestClass: RequestClass = .other, start: NIODeadline,
        traceId: String? = nil
    ) {
        let status = response.status
        let elapsed = Int64(NIODeadline.now().uptimeNanoseconds - start.uptimeNanoseconds)
        metrics.recordHTTP(method: method, route: route, status: status, duration: .nanoseconds(elapsed), traceId: traceId)
        metrics.sliHTTP.handles(requestClass)?.record(
            response.outcome ?? RequestOutcome(httpStatus: status), nanoseconds: elapsed, traceId: traceId)
        if response.decodeFailed { metrics.restDecodeErrors.increment() }
        guard logsRequests else { return }
        logger.debug("request", metadata: ["http.method": "\(method)", "http.route": "\(route)", "http.status": "\(status)"])
    }
}
