public import Logging
import Foundation
import OTel
public import ServiceLifecycle
import Tracing
public import WeftObservability

/// How `weft serve` exports traces (OTLP/HTTP protobuf, through swift-otel).
public struct TracingConfig: Sendable {
    /// Full URL spans are POSTed to (`…/v1/traces`); nil turns tracing off.
    public var tracesEndpoint: String?
    /// An OpenTelemetry sampler name (`OTEL_TRACES_SAMPLER` values).
    public var sampler: Sampler = .parentBasedTraceIDRatio
    /// The ratio of the ratio samplers, 0...1.
    public var samplerArgument: Double = 0.01
    public var serviceName = "weft"
    public var serviceVersion = ""
    /// How long shutdown waits for the last spans to reach the collector.
    public var shutdownFlushLimit: Duration = .seconds(5)

    public enum Sampler: String, Sendable, CaseIterable {
        case alwaysOn = "always_on"
        case alwaysOff = "always_off"
        case traceIDRatio = "traceidratio"
        case parentBasedAlwaysOn = "parentbased_always_on"
        case parentBasedAlwaysOff = "parentbased_always_off"
        case parentBasedTraceIDRatio = "parentbased_traceidratio"
    }

    public init() {}
}

/// Boots tracing and counts what the exporter loses.
///
/// swift-otel's batch processor keeps at most `OTEL_BSP_MAX_QUEUE_SIZE`
/// (2048) finished spans and drops the rest when the exporter cannot keep
/// up; it reports drops and failed exports only through its diagnostic
/// logger. That logger is ours: it turns those reports into
/// `weft_trace_spans_dropped_total` and `weft_trace_export_failures_total`
/// and forwards every diagnostic line to the server log.
public enum Telemetry {
    /// This process's `service.instance.id`.
    public static let serviceInstanceID = UUID().uuidString.lowercased()

    /// The log metadata provider adding `trace_id`, `span_id` and
    /// `trace_flags` of the current span to every log line.
    public static func loggingMetadataProvider() -> Logger.MetadataProvider {
        OTel.makeLoggingMetadataProvider()
    }

    /// Starts tracing when an endpoint is configured; returns its services,
    /// in start order: the exporter, then the shipper of deferred spans (the
    /// group stops them in reverse: the shipper ships its last spans, then
    /// the exporter flushes).
    public static func bootstrapTracing(
        _ config: TracingConfig, metrics: WeftMetrics, logger: Logger
    ) throws -> [any Service] {
        guard let endpoint = config.tracesEndpoint else { return [] }
        let counters = TracingMetrics(metrics: metrics)
        var otel = OTel.Configuration.default
        otel.serviceName = config.serviceName
        if !config.serviceVersion.isEmpty { otel.resourceAttributes["service.version"] = config.serviceVersion }
        // One id per process (OpenTelemetry: a random UUID when nothing
        // stabler names the instance), so spans of two replicas or of a
        // process and its successor are told apart.
        otel.resourceAttributes["service.instance.id"] = serviceInstanceID
        otel.metrics.enabled = false
        otel.logs.enabled = false
        otel.traces.enabled = true
        otel.traces.exporter = .otlp
        otel.traces.otlpExporter.`protocol` = .httpProtobuf
        otel.traces.otlpExporter.endpoint = endpoint
        let (sampler, rootRatio) = try samplers(config)
        otel.traces.sampler = sampler
        // Larger than the OpenTelemetry defaults (2048 queued, 512 a batch,
        // every 5 s): at 1 % of tens of thousands of calls a second the
        // defaults drop spans with a healthy collector. ~8 MB at most queued.
        // OTEL_BSP_* variables still override these.
        otel.traces.batchSpanProcessor.maxQueueSize = 8192
        otel.traces.batchSpanProcessor.maxExportBatchSize = 2048
        otel.traces.batchSpanProcessor.scheduleDelay = .seconds(2)
        otel.diagnosticLogger = .custom(
            Logger(label: "weft.otel") { label in TracingDiagnostics(counters: counters, forward: logger) })
        otel.diagnosticLogLevel = .info
        let (tracer, service) = try OTel.makeTracingBackend(configuration: otel)
        InstrumentationSystem.bootstrap(tracer)
        // Exemplars name only traces that are exported (sampled).
        WeftTracing.traceIdOfSpan = { span in span.context.otelIsSampled ? span.context.otelTraceID : nil }
        let shipper = WeftTracing.enable(tracer: tracer, rootRatio: rootRatio) { counters.dropped.increment(by: Int64($0)) }
        logger.info(
            "tracing: OTLP/HTTP to \(endpoint), sampler \(config.sampler.rawValue) \(config.samplerArgument), service \(config.serviceName)")
        return [BoundedFlush(inner: service, limit: config.shutdownFlushLimit, logger: logger), shipper]
    }

    /// swift-otel's sampler and Weft's head-sampling ratio of new traces
    /// (see `WeftTracing.enable`): for the parent-based samplers Weft keeps
    /// the configured share of roots and swift-otel follows the parent;
    /// `traceidratio` is left to swift-otel whole (it ignores parents).
    static func samplers(_ config: TracingConfig) throws
        -> (OTel.Configuration.TracesConfiguration.SamplerConfiguration, rootRatio: Double?)
    {
        let ratio = config.samplerArgument
        guard (0...1).contains(ratio) else { throw WeftStartupError("trace sampler ratio must be in 0...1, got \(ratio)") }
        switch config.sampler {
        case .alwaysOn: return (.alwaysOn, 1)
        case .alwaysOff: return (.alwaysOff, 0)
        case .traceIDRatio: return (.traceIDRatio(ratio: ratio)!, nil)
        case .parentBasedAlwaysOn: return (.parentBasedAlwaysOn, 1)
        case .parentBasedAlwaysOff: return (.parentBasedAlwaysOn, 0)
        case .parentBasedTraceIDRatio: return (.parentBasedAlwaysOn, ratio)
        }
    }
}

/// Runs the exporter, and at shutdown gives its last flush at most `limit`:
/// swift-otel waits for a stalled collector up to its export timeout (30 s,
/// plus the HTTP client's retries), which would hold the process past an
/// orchestrator's grace period. The spans still queued then are dropped (and
/// logged as such).
struct BoundedFlush: Service {
    let inner: any Service
    let limit: Duration
    let logger: Logger

    private struct FlushTimedOut: Error {}

    func run() async throws {
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await inner.run() }
                group.addTask {
                    try await gracefulShutdown()
                    try await Task.sleep(for: limit)
                    throw FlushTimedOut()
                }
                // The exporter ends first (it flushed), or the limit passes.
                _ = try await group.next()
                group.cancelAll()
            }
        } catch is FlushTimedOut {
            logger.warning("tracing: the collector did not take the last spans within \(limit); they are dropped")
        } catch is CancellationError {
            // The group gave up on it: nothing more to flush.
        }
    }
}

/// swift-otel's diagnostic log: counted, then written to the server log.
struct TracingDiagnostics: LogHandler {
    let counters: TracingMetrics
    let forward: Logger
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let text = "\(event.message)"
        if text.hasPrefix("Spans were dropped") {
            let count = event.metadata?["dropped_count"].flatMap { Int("\($0)") } ?? 1
            counters.dropped.increment(by: Int64(count))
        } else if text.hasPrefix("Failed to export batch") {
            counters.exportFailures.increment()
        }
        // The carrier of a malformed traceparent is only ever our
        // `TraceHeaders` (two header values, never credentials). swift-otel
        // logs every OTEL_* variable it applies with its value, and
        // OTEL_EXPORTER_OTLP_HEADERS may hold an API key: values of such
        // variables are redacted.
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        if let key = merged["environment_key"].map({ "\($0)".uppercased() }),
            ["HEADERS", "KEY", "TOKEN", "SECRET", "PASSWORD", "CERTIFICATE"].contains(where: key.contains)
        {
            for field in ["environment_value", "new_value", "previous_value"] where merged[field] != nil {
                merged[field] = "<redacted>"
            }
        }
        forward.log(level: event.level, "otel: \(text)", metadata: merged)
    }
}
