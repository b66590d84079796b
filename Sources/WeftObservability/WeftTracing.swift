public import Tracing
import Synchronization
import W3CTraceContext

/// Tracing as the libraries see it: the swift-distributed-tracing API, the
/// W3C trace-context carrier and the span names and attributes Weft uses
/// (OpenTelemetry semantic conventions where one exists, `weft.*` otherwise).
/// The exporter (swift-otel) is bootstrapped by `weft serve` only.
public enum WeftTracing {
    private static let enabled = Atomic<Bool>(false)
    /// Set once by `enable`, before any request is served; read-only after.
    nonisolated(unsafe) private static var cachedTracer: any Tracer = NoOpTracer()
    nonisolated(unsafe) private static var rootThreshold: UInt64?
    private static let rngState = Atomic<UInt64>(UInt64(truncatingIfNeeded: ContinuousClock.now.hashValue) | 1)

    /// Whether a tracer is bootstrapped. When off, no span is started at all
    /// (not even a no-op one), so the hot paths pay one atomic load.
    public static var isEnabled: Bool { enabled.load(ordering: .relaxed) }

    /// Turns tracing on with `tracer` (call once, before serving).
    ///
    /// `rootRatio` is head sampling: the share of new traces (spans with no
    /// parent) that are started at all; the others cost one random number and
    /// no tracer call. The tracer's own sampler then only sees spans with a
    /// parent (and the roots kept here), so it is configured parent-based
    /// always-on for Weft's parent-based samplers. nil leaves every root to
    /// the tracer's sampler.
    ///
    /// Why: a tracer call costs microseconds even for a span it drops
    /// (random ids from the system generator under a lock, the bootstrapped
    /// tracer's lookup, context copies), which at 1 % sampling was more than
    /// the rest of a health check.
    ///
    /// Returns the service that ships deferred spans (run it in the server's
    /// service group, after the exporter, so it ships its last ones first).
    public static func enable(
        tracer: any Tracer, rootRatio: Double?, onDrop: (@Sendable (Int) -> Void)? = nil
    ) -> SpanShipper {
        cachedTracer = tracer
        rootThreshold = rootRatio.map { ratio in
            ratio >= 1 ? UInt64.max : ratio <= 0 ? 0 : UInt64(ratio * 18_446_744_073_709_551_615.0)
        }
        DeferredSpans.onDrop = onDrop
        enabled.store(true, ordering: .releasing)
        return SpanShipper(tracer: tracer)
    }

    /// `startServer` for a call answered inline: the same sampling decision,
    /// but the span is only recorded (see `DeferredSpan`); `ship` it when the
    /// call ends, or `start` it if the call turns out to need a live span.
    public static func deferServer(_ name: @autoclosure () -> String, headers: TraceHeaders) -> DeferredSpan? {
        guard isEnabled else { return nil }
        if let parent = parent(from: headers) {
            return DeferredSpan(name: name(), parent: parent, kind: .server)
        }
        guard keepRoot() else { return nil }
        return DeferredSpan(name: name(), parent: .topLevel, kind: .server)
    }

    /// Hands a finished deferred span to the tracer (within ~50 ms).
    public static func ship(_ span: DeferredSpan) { DeferredSpans.submit(span) }

    /// A live span from a deferred one, from its recorded start.
    public static func start(_ deferred: DeferredSpan) -> any Span {
        let span = tracer.startSpan(deferred.name, context: deferred.parent, ofKind: deferred.kind, at: deferred.start)
        span.attributes = deferred.attributes
        return span
    }

    public static var tracer: any Tracer { cachedTracer }

    /// The context of a request that is not traced (head sampling said no):
    /// spans under it are not started either, so an unsampled request's
    /// execution and tasks stay untraced, like its children in any
    /// parent-based sampler.
    public static let unsampled: InstrumentationContext = {
        var context = InstrumentationContext.topLevel
        context[UnsampledKey.self] = true
        return context
    }()

    private enum UnsampledKey: InstrumentationContextKey {
        typealias Value = Bool
    }

    /// The context a request's handler runs under: its span's, `unsampled`
    /// when tracing is on but the request is not traced, nil when tracing is
    /// off.
    public static func handlerContext(_ span: (any Span)?) -> InstrumentationContext? {
        span?.context ?? (isEnabled ? unsampled : nil)
    }

    /// Runs `operation` with `context` as the current one; with nil, as is
    /// (no task-local push when there is nothing to carry).
    public static func withContext<T>(
        _ context: InstrumentationContext?, isolation: isolated (any Actor)? = #isolation,
        operation: () async throws -> T
    ) async rethrows -> T {
        guard let context else { return try await operation() }
        return try await InstrumentationContext.withValue(context, operation: operation)
    }

    /// Whether a new trace should start here (head sampling).
    static func keepRoot() -> Bool {
        guard let threshold = rootThreshold else { return true }
        if threshold == UInt64.max { return true }
        if threshold == 0 { return false }
        return nextRandom() < threshold
    }

    /// splitmix64 over an atomic counter: lock-free and cheap; sampling
    /// needs spread, not secrecy.
    private static func nextRandom() -> UInt64 {
        var z = rngState.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The SERVER span of a request: a child of the caller's context when its
    /// `traceparent` is valid, else a new trace (head-sampled). nil when the
    /// request is not traced; run its handler under `unsampled` then.
    /// The name is made only for a span that is started.
    public static func startServer(_ name: @autoclosure () -> String, headers: TraceHeaders) -> (any Span)? {
        guard isEnabled else { return nil }
        if let parent = parent(from: headers) {
            return tracer.startSpan(name(), context: parent, ofKind: .server)
        }
        guard keepRoot() else { return nil }
        return tracer.startSpan(name(), context: .topLevel, ofKind: .server)
    }

    /// A span under `context` (default: the current one); nil when there is
    /// no parent or it is not traced. For work that never begins a trace
    /// (attempts, outbound calls, store transactions).
    public static func startChild(
        _ name: String, context: InstrumentationContext? = nil, kind: SpanKind = .internal
    ) -> (any Span)? {
        guard isEnabled, let parent = context ?? .current, parent[UnsampledKey.self] != true else { return nil }
        return tracer.startSpan(name, context: parent, ofKind: kind)
    }

    /// A CLIENT span of a store call (OpenTelemetry database conventions),
    /// only when some span is current: transactions nobody asked for (the
    /// group committer's batches, samplers) start no trace of their own.
    public static func storeSpan(_ operation: String, store: String) -> (any Span)? {
        guard let span = startChild(operation, kind: .client) else { return nil }
        span.attributes[SpanKeys.dbSystemName] = "sqlite"
        span.attributes[SpanKeys.dbOperationName] = operation
        span.attributes[SpanKeys.dbNamespace] = store
        return span
    }

    /// A span under the current context, or a new (head-sampled) trace when
    /// there is none: for work that may start on its own (an execution not
    /// started by a request); nil under an untraced request.
    public static func start(_ name: String, kind: SpanKind = .internal) -> (any Span)? {
        guard isEnabled else { return nil }
        guard let parent = InstrumentationContext.current else {
            return keepRoot() ? tracer.startSpan(name, context: .topLevel, ofKind: kind) : nil
        }
        return startChild(name, context: parent, kind: kind)
    }

    /// The parent context carried by W3C headers (top level when absent or
    /// malformed: the extractor never fails a request).
    public static func context(from headers: TraceHeaders) -> InstrumentationContext {
        guard isEnabled else { return .topLevel }
        return parent(from: headers) ?? .topLevel
    }

    /// The caller's context, if its headers carry a usable one: nil sends the
    /// request to head sampling like any new trace.
    ///
    /// swift-otel's parser accepts version 00 only and drops the whole
    /// context when `tracestate` is malformed; what it cannot parse it would
    /// turn into a parentless root that skips head sampling (and log it). So it is handed only
    /// what it accepts: a later version read as version 00 (the W3C rule for
    /// newer versions), and a malformed `tracestate` left out (also W3C: a
    /// bad tracestate does not invalidate the traceparent).
    static func parent(from headers: TraceHeaders) -> InstrumentationContext? {
        guard let traceparent = headers.traceparent, isValidTraceparent(traceparent) else { return nil }
        var normalized = TraceHeaders(
            traceparent: traceparent.hasPrefix("00-") ? traceparent : "00" + String(traceparent.dropFirst(2).prefix(53)),
            tracestate: headers.tracestate)
        if (try? TraceContext(traceParentHeaderValue: normalized.traceparent!, traceStateHeaderValue: normalized.tracestate)) == nil {
            normalized.tracestate = nil
            guard (try? TraceContext(traceParentHeaderValue: normalized.traceparent!)) != nil else { return nil }
        }
        var parent = InstrumentationContext.topLevel
        tracer.extract(normalized, into: &parent, using: TraceHeaders.Extractor())
        return parent
    }

    /// The W3C headers of a context's span (empty when it has none).
    public static func headers(of context: InstrumentationContext) -> TraceHeaders {
        var headers = TraceHeaders()
        guard isEnabled else { return headers }
        tracer.inject(context, into: &headers, using: TraceHeaders.Injector())
        return headers
    }

    /// W3C Trace Context `traceparent`: `vv-<32 hex trace id>-<16 hex parent
    /// id>-<2 hex flags>`, lower-case, version not `ff`, ids not all zero;
    /// version 00 is exactly 55 characters, later versions may append
    /// `-fields`.
    public static func isValidTraceparent(_ value: String) -> Bool {
        var value = value
        return value.withUTF8 { isValidTraceparent($0) }
    }

    private static func isValidTraceparent(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard b.count >= 55, b[2] == UInt8(ascii: "-"), b[35] == UInt8(ascii: "-"), b[52] == UInt8(ascii: "-") else {
            return false
        }
        func hex(_ range: Range<Int>) -> Bool {
            range.allSatisfy { i in (b[i] >= 0x30 && b[i] <= 0x39) || (b[i] >= 0x61 && b[i] <= 0x66) }
        }
        func zero(_ range: Range<Int>) -> Bool { range.allSatisfy { b[$0] == 0x30 } }
        guard hex(0..<2), !(b[0] == 0x66 && b[1] == 0x66), hex(3..<35), !zero(3..<35), hex(36..<52), !zero(36..<52),
            hex(53..<55)
        else { return false }
        let version00 = b[0] == 0x30 && b[1] == 0x30
        return version00 ? b.count == 55 : (b.count == 55 || b[55] == UInt8(ascii: "-"))
    }

    /// The hex trace id of a span, as the tracer knows it (set when tracing
    /// starts: only the tracer can read its span contexts); nil without one.
    public nonisolated(unsafe) static var traceIdOfSpan: (@Sendable (any Span) -> String?)?

    public static func traceId(of span: any Span) -> String? { traceIdOfSpan?(span) }

    /// The 32-hex-digit trace id of a `traceparent` value, if well formed.
    public static func traceId(ofTraceparent value: String?) -> String? {
        guard let value, isValidTraceparent(value) else { return nil }
        let start = value.utf8.index(value.utf8.startIndex, offsetBy: 3)
        return String(value[start..<value.utf8.index(start, offsetBy: 32)])
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
    public static let scheduleTick = "weft.schedule.tick"
    public static let webhook = "weft.webhook"
    public static let eventPublish = "weft.event.publish"
    public static let notificationDelivery = "weft.notification.deliver"
}

public enum SpanKeys {
    public static let notificationEvent = "weft.notification.event"
    public static let notificationChannel = "weft.notification.channel"
    public static let notificationDeliveryId = "weft.notification.delivery_id"
    public static let notificationAttempt = "weft.notification.attempt"
    public static let notificationOutcome = "weft.notification.outcome"
    public static let scheduleId = "weft.schedule.id"
    public static let scheduleTick = "weft.schedule.tick"
    public static let scheduleOutcome = "weft.schedule.outcome"
    public static let triggerId = "weft.trigger.id"
    public static let eventName = "weft.event.name"
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
    public static let urlScheme = "url.scheme"
    public static let clientAddress = "client.address"
    public static let clientPort = "client.port"
    public static let errorType = "error.type"
    /// How a server span's request ended for the service levels (ok,
    /// client_error, overload, server_error: `RequestOutcome`).
    public static let requestOutcome = "weft.request.outcome"
    public static let dbSystemName = "db.system.name"
    public static let dbOperationName = "db.operation.name"
    public static let dbNamespace = "db.namespace"
    // Weft's own.
    public static let workflowId = "weft.workflow.id"
    public static let workflowName = "weft.workflow.name"
    public static let workflowVersion = "weft.workflow.version"
    public static let executionId = "weft.execution.id"
    public static let executionStatus = "weft.execution.status"
    /// Why it did not complete (`FailureCause`: none, task_error, timeout,
    /// cancelled, system), as the metrics' `cause` label says it.
    public static let executionCause = "weft.execution.cause"
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
