import Synchronization
public import WeftObservability
import Prometheus

/// The transport's metrics. Per-method handles are created once at
/// registration, so the hot path only increments counters and records into a
/// histogram, with no name or label lookups.
public final class RPCMetrics: Sendable {
    let metrics: WeftMetrics
    let connectionsOpenH2: Gauge
    let connectionsOpenH1: Gauge
    let connectionsAcceptedH2: Counter
    let connectionsAcceptedH1: Counter
    let streamsActive: Gauge
    let unknownMethod: RPCMethodMetrics
    /// The SLI series of gRPC calls and of REST/HTTP requests.
    let sliGRPC: SLIMetrics
    let sliHTTP: SLIMetrics
    let restDecodeErrors: Counter
    private let connectionErrors = Mutex<[String: Counter]>([:])
    private let httpHistograms = Mutex<[HTTPKey: AtomicDurationHistogram]>([:])

    private struct HTTPKey: Hashable {
        let method: String
        let route: String
        let status: Int
    }

    public init(metrics: WeftMetrics) {
        self.metrics = metrics
        let open = "Open client connections, by protocol."
        let accepted = "Accepted client connections, by protocol."
        connectionsOpenH2 = metrics.gauge(MetricNames.connectionsOpen, help: open, labels: [("protocol", "h2")])
        connectionsOpenH1 = metrics.gauge(MetricNames.connectionsOpen, help: open, labels: [("protocol", "http/1.1")])
        connectionsAcceptedH2 = metrics.counter(
            MetricNames.connectionsAccepted, help: accepted, labels: [("protocol", "h2")])
        connectionsAcceptedH1 = metrics.counter(
            MetricNames.connectionsAccepted, help: accepted, labels: [("protocol", "http/1.1")])
        streamsActive = metrics.gauge(MetricNames.http2StreamsActive, help: "HTTP/2 streams open right now.")
        sliGRPC = SLIMetrics(metrics: metrics, transport: "grpc")
        sliHTTP = SLIMetrics(metrics: metrics, transport: "http")
        restDecodeErrors = metrics.counter(
            MetricNames.restDecodeErrors,
            help: "REST requests refused because their body, path or query parameters did not decode into the method's request.")
        // Calls to paths no service serves. Their labels are fixed so a client
        // cannot create series by inventing paths.
        unknownMethod = RPCMethodMetrics(
            metrics: metrics,
            descriptor: RPCMethodDescriptor(service: "unknown", method: "unknown", kind: .unary), sli: nil)
    }

    func method(_ descriptor: RPCMethodDescriptor) -> RPCMethodMetrics {
        RPCMethodMetrics(metrics: metrics, descriptor: descriptor, sli: sliGRPC.handles(descriptor.requestClass))
    }

    /// Counts a connection closed for a protocol error, by reason (a small fixed set).
    func connectionError(_ reason: String) {
        let counter = connectionErrors.withLock { counters in
            if let c = counters[reason] { return c }
            let c = metrics.counter(
                MetricNames.connectionErrors, help: "Connections closed because of a protocol error or abuse, by reason.",
                labels: [("reason", reason)])
            counters[reason] = c
            return c
        }
        counter.increment()
    }

    /// Records one non-gRPC HTTP request. `route` is the route template (never
    /// the raw path), so the label set stays bounded.
    /// `traceId`: the request's, when its span is recorded (an exemplar).
    func recordHTTP(method: String, route: String, status: Int, duration: Duration, traceId: String? = nil) {
        let method = Self.knownMethods.contains(method) ? method : "_OTHER"
        let key = HTTPKey(method: method, route: route, status: status)
        let histogram = httpHistograms.withLock { histograms in
            if let h = histograms[key] { return h }
            let h = metrics.atomicDurationHistogram(
                MetricNames.httpRequestDuration, help: "Duration of HTTP (non-gRPC) requests.",
                labels: [
                    ("http_request_method", method), ("http_route", route),
                    ("http_response_status_code", String(status)),
                ])
            histograms[key] = h
            return h
        }
        histogram.record(duration)
        if let traceId {
            metrics.httpExemplars.record(series: "\(method)|\(route)|\(status)", seconds: duration.inSeconds, traceId: traceId)
        }
    }

    private static let knownMethods: Set<String> = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ]
}

/// The service-level indicators of one transport: user requests by class
/// and outcome (`weft_requests_total`), and the latency of the successful
/// ones by class (`weft_request_duration_seconds`). Every series exists
/// from the start, zero until counted: a rule needs no `or vector(0)`, and a
/// target that stopped being scraped has no series rather than a healthy 0.
final class SLIMetrics: Sendable {
    /// One class's handles, resolved once per method (no lookup per call).
    struct Handles: Sendable {
        /// By `RequestOutcome` in `allCases` order.
        let outcomes: [Counter]
        /// Successful requests' durations; nil for streams and `other`.
        let duration: AtomicDurationHistogram?
        /// Where a traced request's duration leaves its trace id, and its series.
        let exemplars: ExemplarBook
        let series: String

        /// `traceId`: the request's, when its span is recorded (an exemplar).
        func record(_ outcome: RequestOutcome, nanoseconds: Int64, traceId: String? = nil) {
            switch outcome {
            case .ok:
                outcomes[0].increment()
                guard let duration else { return }
                duration.recordNanoseconds(nanoseconds)
                if let traceId { exemplars.record(series: series, seconds: Double(nanoseconds) / 1e9, traceId: traceId) }
            case .clientError: outcomes[1].increment()
            case .overload: outcomes[2].increment()
            case .serverError: outcomes[3].increment()
            }
        }
    }

    private let byClass: [RequestClass: Handles]

    init(metrics: WeftMetrics, transport: String) {
        var byClass: [RequestClass: Handles] = [:]
        for requestClass in RequestClass.counted {
            let labels = [("transport", transport), ("request_class", requestClass.rawValue)]
            let outcomes = RequestOutcome.allCases.map { outcome in
                metrics.counter(
                    MetricNames.requests,
                    help: "User requests (not health checks, reflection or /metrics), by transport, request class and outcome (ok, client_error, overload, server_error): the availability SLI.",
                    labels: labels + [("outcome", outcome.rawValue)])
            }
            let duration = RequestClass.timed.contains(requestClass)
                ? metrics.atomicDurationHistogram(
                    MetricNames.requestDuration,
                    help: "Duration of successful user requests, by transport and request class: the latency SLI.",
                    labels: labels)
                : nil
            byClass[requestClass] = Handles(
                outcomes: outcomes, duration: duration, exemplars: metrics.exemplars,
                series: transport + "|" + requestClass.rawValue)
        }
        self.byClass = byClass
    }

    /// A class's handles; nil for `none` (not a user request).
    func handles(_ requestClass: RequestClass) -> Handles? { byClass[requestClass] }
}

/// Handles for one method (go-grpc-prometheus names and labels).
final class RPCMethodMetrics: Sendable {
    let started: Counter
    let handlingSeconds: AtomicDurationHistogram
    let messagesReceived: Counter
    let messagesSent: Counter
    let bytesReceived: Counter
    let bytesSent: Counter
    private let handledOK: Counter
    /// `grpc_server_handled_total{grpc_code="OK"}`, for `CallTally`.
    var handledOKCounter: Counter { handledOK }
    private let handled = Mutex<[Counter?]>(Array(repeating: nil, count: 17))
    /// The SLI handles of the method's class; nil when it is not a user request.
    let sli: SLIMetrics.Handles?
    private let metrics: WeftMetrics
    private let labels: [(String, String)]
    /// The method's key in `WeftMetrics.grpcExemplars`.
    private let exemplarSeries: String

    init(metrics: WeftMetrics, descriptor: RPCMethodDescriptor, sli: SLIMetrics.Handles?) {
        self.metrics = metrics
        self.sli = sli
        exemplarSeries = descriptor.service + "|" + descriptor.method
        let labels = [
            ("grpc_type", descriptor.kind.rawValue), ("grpc_service", descriptor.service),
            ("grpc_method", descriptor.method),
        ]
        self.labels = labels
        let nameLabels = [("grpc_service", descriptor.service), ("grpc_method", descriptor.method)]
        started = metrics.counter(MetricNames.grpcStarted, help: "RPCs started on the server.", labels: labels)
        handlingSeconds = metrics.atomicDurationHistogram(
            MetricNames.grpcHandlingSeconds,
            help: "Time from receiving the request headers to sending the status, by method.", labels: labels)
        messagesReceived = metrics.counter(
            MetricNames.grpcMsgReceived, help: "gRPC messages received from clients.", labels: labels)
        messagesSent = metrics.counter(MetricNames.grpcMsgSent, help: "gRPC messages sent to clients.", labels: labels)
        bytesReceived = metrics.counter(
            MetricNames.grpcReceivedBytes, help: "gRPC message bytes received (as framed on the wire).",
            labels: nameLabels)
        bytesSent = metrics.counter(
            MetricNames.grpcSentBytes, help: "gRPC message bytes sent (as framed on the wire).", labels: nameLabels)
        handledOK = Self.makeHandled(metrics: metrics, labels: labels, code: .ok)
    }

    private static func makeHandled(metrics: WeftMetrics, labels: [(String, String)], code: RPCError.Code) -> Counter {
        metrics.counter(
            MetricNames.grpcHandled, help: "RPCs completed on the server, by status code.",
            labels: labels + [("grpc_code", code.name)])
    }

    /// The handling time, and a recorded span's trace id as its exemplar.
    func handlingTime(nanoseconds: Int64, traceId: String?) {
        handlingSeconds.recordNanoseconds(nanoseconds)
        if let traceId {
            metrics.grpcExemplars.record(series: exemplarSeries, seconds: Double(nanoseconds) / 1e9, traceId: traceId)
        }
    }

    func handled(_ code: RPCError.Code) {
        if code == .ok {
            handledOK.increment()
            return
        }
        let counter = handled.withLock { counters in
            if let c = counters[code.rawValue] { return c }
            let c = Self.makeHandled(metrics: metrics, labels: labels, code: code)
            counters[code.rawValue] = c
            return c
        }
        counter.increment()
    }
}
