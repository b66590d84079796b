public import Tracing
import Synchronization

/// Tracing as the libraries see it: the swift-distributed-tracing API, the
/// W3C trace-context carrier and the span names and attributes Weft uses
/// (OpenTelemetry semantic conventions where one exists, `weft.*` otherwise).
/// The exporter (swift-otel) is bootstrapped by `weft serve` only.
public enum WeftTracing {
    private static let enabled = Atomic<Bool>(false)

    /// Whether a tracer is bootstrapped. When off, no span is started at all
    /// (not even a no-op one), so the hot paths pay one atomic load.
    public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// Call once, after `InstrumentationSystem.bootstrap`.
    public static func markEnabled() { enabled.store(true, ordering: .releasing) }

    public static var tracer: any Tracer { InstrumentationSystem.tracer }

    /// Starts a span when tracing is on (nil otherwise).
    public static func start(
        _ name: String, context: InstrumentationContext? = nil, kind: SpanKind = .internal
    ) -> (any Span)? {
        guard isEnabled else { return nil }
        return tracer.startSpan(name, context: context ?? .current ?? .topLevel, ofKind: kind)
    }

    /// The parent context carried by W3C headers (a new trace when absent or
    /// malformed: the extractor never fails a request).
    public static func context(from headers: TraceHeaders) -> InstrumentationContext {
        var context = InstrumentationContext.topLevel
        guard isEnabled, headers.traceparent != nil else { return context }
        tracer.extract(headers, into: &context, using: TraceHeaders.Extractor())
        return context
    }

    /// The W3C headers of a context's span (empty when it has none).
    public static func headers(of context: InstrumentationContext) -> TraceHeaders {
        var headers = TraceHeaders()
        guard isEnabled else { return headers }
        tracer.inject(context, into: &headers, using: TraceHeaders.Injector())
        return headers
    }

    /// The 32-hex-digit trace id of a `traceparent` value, if well formed.
    public static func traceId(ofTraceparent value: String?) -> String? {
        guard let value else { return nil }
        let parts = value.split(separator: "-")
        guard parts.count >= 4, parts[1].count == 32 else { return nil }
        return String(parts[1])
    }
}

/// The two W3C trace-context headers and nothing else. Extraction reads this
/// carrier rather than a request's whole header list because the tracer may
/// log the carrier of a malformed `traceparent`, and other headers hold
/// credentials.
public struct TraceHeaders: Sendable, Hashable, CustomStringConvertible {
    public var traceparent: String?
    public var tracestate: String?

    public init(traceparent: String? = nil, tracestate: String? = nil) {
        self.traceparent = traceparent
        self.tracestate = tracestate
    }

    /// From a header list (names lower-case, as both transports give them).
    public init(headers: some Sequence<(name: String, value: String)>) {
        for (name, value) in headers {
            if name == "traceparent" { traceparent = value } else if name == "tracestate" { tracestate = value }
        }
    }

    public var isEmpty: Bool { traceparent == nil }

    /// As header pairs, for outbound requests.
    public var pairs: [(String, String)] {
        var pairs: [(String, String)] = []
        if let traceparent { pairs.append(("traceparent", traceparent)) }
        if let tracestate, !tracestate.isEmpty { pairs.append(("tracestate", tracestate)) }
        return pairs
    }

    public var description: String { "traceparent=\(traceparent ?? "-") tracestate=\(tracestate ?? "-")" }

    struct Extractor: Instrumentation.Extractor {
        func extract(key: String, from carrier: TraceHeaders) -> String? {
            switch key.lowercased() {
            case "traceparent": carrier.traceparent
            case "tracestate": carrier.tracestate
            default: nil
            }
        }
    }

    struct Injector: Instrumentation.Injector {
        func inject(_ value: String, forKey key: String, into carrier: inout TraceHeaders) {
            switch key.lowercased() {
            case "traceparent": carrier.traceparent = value
            case "tracestate": carrier.tracestate = value
            default: break
            }
        }
    }
}

/// Span names and attribute keys, defined once.
public enum SpanNames {
    public static let execution = "weft.execution"
    public static let task = "weft.task"
}

public enum SpanKeys {
    // OpenTelemetry semantic conventions.
    public static let rpcSystem = "rpc.system"
    public static let rpcService = "rpc.service"
    public static let rpcMethod = "rpc.method"
    public static let rpcGRPCStatusCode = "rpc.grpc.status_code"
    public static let httpRequestMethod = "http.request.method"
    public static let httpRoute = "http.route"
    public static let httpResponseStatusCode = "http.response.status_code"
    public static let urlPath = "url.path"
    public static let urlFull = "url.full"
    public static let serverAddress = "server.address"
    public static let serverPort = "server.port"
    public static let errorType = "error.type"
    public static let dbSystemName = "db.system.name"
    public static let dbOperationName = "db.operation.name"
    public static let dbNamespace = "db.namespace"
    // Weft's own.
    public static let workflowId = "weft.workflow.id"
    public static let workflowName = "weft.workflow.name"
    public static let workflowVersion = "weft.workflow.version"
    public static let executionId = "weft.execution.id"
    public static let executionStatus = "weft.execution.status"
    public static let executionCost = "weft.execution.cost_dollars"
    public static let taskId = "weft.task.id"
    public static let taskKey = "weft.task.key"
    public static let taskType = "weft.task.type"
    public static let taskAttempt = "weft.task.attempt"
    public static let taskOutcome = "weft.task.outcome"
    public static let taskErrorKind = "weft.task.error_kind"
    /// Set on spans ended by a shutdown while their work was still going.
    public static let interrupted = "weft.interrupted"
}
