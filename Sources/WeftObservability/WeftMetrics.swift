public import Prometheus

import Metrics
import Synchronization

/// The process-wide metrics registry and the names of every metric Weft emits.
///
/// Metrics are created directly on the Prometheus registry so each carries HELP
/// text (what `promtool check metrics` expects); swift-metrics is bootstrapped
/// on the same registry so libraries that use the swift-metrics API land in the
/// same `/metrics` output.
public final class WeftMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// Trace ids of sampled requests per bucket of the latency histograms,
    /// written into the OpenMetrics exposition as exemplars: the latency SLI
    /// (`weft_request_duration_seconds`, by transport and class), gRPC
    /// methods (`grpc_server_handling_seconds`) and HTTP routes
    /// (`http_server_request_duration_seconds`).
    public let exemplars = ExemplarBook(bounds: WeftMetrics.latencyBuckets)
    public let grpcExemplars = ExemplarBook(bounds: WeftMetrics.latencyBuckets)
    public let httpExemplars = ExemplarBook(bounds: WeftMetrics.latencyBuckets)

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// Makes swift-metrics report into this registry. Call once, at start-up.
    public func bootstrapSwiftMetrics() {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        // The last exposition's size (plus a little): one allocation, not a
        // dozen doublings and copies of a body near a megabyte.
        buffer.reserveCapacity(lastSize.withLock { $0 } + 4096)
        registry.emit(into: &buffer)
        for family in atomicHistograms.withLock({ $0 }) { family.emit(into: &buffer) }
        lastSize.withLock { $0 = buffer.count }
        return buffer
    }

    private let lastSize = Mutex(16 * 1024)
    /// Families of `AtomicDurationHistogram`s, in creation order.
    private let atomicHistograms = Mutex<[AtomicHistogramFamily]>([])

    /// The OpenMetrics exposition, with exemplars on the latency histograms' buckets.
    public func openMetricsExposition() -> [UInt8] {
        // The books first: every exemplar read is then counted in the text.
        let books = OpenMetricsText.snapshot([
            .init(histogram: MetricNames.requestDuration, seriesLabels: ["transport", "request_class"], book: exemplars),
            .init(histogram: MetricNames.grpcHandlingSeconds, seriesLabels: ["grpc_service", "grpc_method"], book: grpcExemplars),
            .init(
                histogram: MetricNames.httpRequestDuration,
                seriesLabels: ["http_request_method", "http_route", "http_response_status_code"], book: httpExemplars),
        ])
        return OpenMetricsText.convert(exposition(), snapshot: books)
    }

    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Prometheus.Counter {
        registry.makeCounter(descriptor: Self.descriptor(name, help: help), labels: labels)
    }

    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Prometheus.Gauge {
        registry.makeGauge(descriptor: Self.descriptor(name, help: help), labels: labels)
    }

    public func durationHistogram(
        _ name: String,
        help: String,
        labels: [(String, String)] = [],
        buckets: [Duration] = WeftMetrics.latencyBuckets
    ) -> DurationHistogram {
        registry.makeDurationHistogram(descriptor: Self.descriptor(name, help: help), labels: labels, buckets: buckets)
    }

    /// A latency histogram recorded without a lock (`AtomicDurationHistogram`),
    /// for series on every call's path. A name is either this kind or the
    /// registry's, never both; its HELP and buckets are those of its first series.
    public func atomicDurationHistogram(
        _ name: String,
        help: String,
        labels: [(String, String)] = [],
        buckets: [Duration] = WeftMetrics.latencyBuckets
    ) -> AtomicDurationHistogram {
        let family = atomicHistograms.withLock { families in
            if let found = families.first(where: { $0.name == name }) { return found }
            let made = AtomicHistogramFamily(name: name, help: help, buckets: buckets)
            families.append(made)
            return made
        }
        return family.histogram(labels: labels)
    }

    public func valueHistogram(
        _ name: String, help: String, labels: [(String, String)] = [], buckets: [Double]
    ) -> ValueHistogram {
        registry.makeValueHistogram(name: name, labels: labels, buckets: buckets, help: help)
    }

    private static func descriptor(_ name: String, help: String) -> MetricNameDescriptor {
        // The full name is passed as `metricName` with an empty unit so the
        // names stay exactly those of `MetricNames` (no prefix juggling).
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Buckets that resolve p50/p95/p99 from 50 µs to a minute: a sub-millisecond
    /// in-memory call and a slow store call both land between two bounds.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10),
        .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60),
    ]
}

extension Duration {
    /// The duration in seconds, as metrics (gauges, exemplars) carry it.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// Every metric name in one place (Prometheus conventions: base units, `_total`
/// for counters). gRPC names and labels are those of go-grpc-prometheus so
/// existing dashboards and alerts work unchanged.
public enum MetricNames {
    public static let grpcStarted = "grpc_server_started_total"
    public static let grpcHandled = "grpc_server_handled_total"
    public static let grpcHandlingSeconds = "grpc_server_handling_seconds"
    public static let grpcMsgReceived = "grpc_server_msg_received_total"
    public static let grpcMsgSent = "grpc_server_msg_sent_total"
    public static let grpcReceivedBytes = "weft_grpc_server_received_bytes_total"
    public static let grpcSentBytes = "weft_grpc_server_sent_bytes_total"
    public static let httpRequestDuration = "http_server_request_duration_seconds"
    public static let connectionsOpen = "weft_http_server_connections"
    public static let connectionsAccepted = "weft_http_server_connections_accepted_total"
    public static let connectionErrors = "weft_http_server_connection_errors_total"
    public static let http2StreamsActive = "weft_http2_server_streams_active"
    public static let storeTransactionDuration = "weft_store_transaction_duration_seconds"
    public static let storeErrors = "weft_store_errors_total"
    public static let storeGroupCommits = "weft_store_group_commits_total"
    public static let storeGroupCommitWrites = "weft_store_group_commit_writes_total"
    public static let logEntriesPurged = "weft_log_entries_purged_total"
    public static let authFailures = "weft_auth_failures_total"
    public static let accountsRegistered = "weft_users_registered_total"
    public static let workflowWrites = "weft_workflow_writes_total"
    public static let restDecodeErrors = "weft_rest_request_decode_errors_total"
    // The service-level indicators (Step 14).
    public static let requests = "weft_requests_total"
    public static let requestDuration = "weft_request_duration_seconds"
    // The engine (Step 3).
    public static let queueDepth = "weft_queue_depth"
    public static let queueOldestReadyAge = "weft_queue_oldest_ready_age_seconds"
    public static let taskWait = "weft_task_wait_seconds"
    public static let taskDuration = "weft_task_duration_seconds"
    public static let executionsStarted = "weft_executions_started_total"
    public static let executionsFinished = "weft_executions_finished_total"
    public static let executionDuration = "weft_execution_duration_seconds"
    public static let executionsInFlight = "weft_executions_in_flight"
    public static let workers = "weft_workers"
    public static let taskRetries = "weft_task_retries_total"
    public static let leaseExpiries = "weft_lease_expiries_total"
    public static let commitBatchSize = "weft_engine_commit_batch_size"
    public static let engineErrors = "weft_engine_errors_total"
    public static let timerLag = "weft_timer_lag_seconds"
    public static let egressDenied = "weft_egress_denied_total"
    public static let quotaRejections = "weft_quota_rejections_total"
    public static let admissionRejections = "weft_admission_rejections_total"
    public static let admissionShortestWait = "weft_admission_shortest_wait_seconds"
    public static let admissionShedding = "weft_admission_shedding"
    public static let organizationsActive = "weft_organizations_active"
    public static let planUsage = "weft_plan_usage"
    // Cost (Step 4), in US dollars.
    public static let executionCost = "weft_execution_cost_dollars"
    public static let cost = "weft_cost_dollars_total"
    public static let taskFailures = "weft_task_failures_total"
    public static let budgetLimit = "weft_budget_limit_dollars"
    public static let budgetSpend = "weft_budget_spend_dollars"
    public static let budgetForecast = "weft_budget_forecast_dollars"
    public static let budgetAlerts = "weft_budget_alerts_total"
    public static let analyticsQueryDuration = "weft_analytics_query_duration_seconds"
    public static let rollupExecutions = "weft_rollup_executions_total"
    public static let executionsPurged = "weft_executions_purged_total"
    // The tracing pipeline (Step 4).
    public static let traceSpansDropped = "weft_trace_spans_dropped_total"
    public static let traceExportFailures = "weft_trace_export_failures_total"
    // Identity and transport (Step 7).
    public static let tlsHandshakes = "weft_tls_handshakes_total"
    public static let tlsCertificateExpiry = "weft_tls_certificate_expiry_seconds"
    public static let tlsReloads = "weft_tls_reloads_total"
    public static let rateLimited = "weft_rate_limited_total"
    public static let loginsLimited = "weft_login_limited_total"
    public static let passwordHashQueue = "weft_password_hash_queue"
    public static let passwordHashRejected = "weft_password_hash_rejected_total"
    public static let sessionsRevoked = "weft_sessions_revoked_total"
    public static let apiKeyCalls = "weft_api_key_calls_total"
    // Schedules and triggers (docs/SCHEDULES.md).
    public static let scheduleTicksFired = "weft_schedule_ticks_fired_total"
    public static let scheduleTicksSkipped = "weft_schedule_ticks_skipped_total"
    public static let scheduleTicksMissed = "weft_schedule_ticks_missed_total"
    public static let scheduleFireLag = "weft_schedule_fire_lag_seconds"
    public static let schedules = "weft_schedules"
    public static let backfillTicks = "weft_schedule_backfill_ticks_total"
    public static let backfillsRunning = "weft_schedule_backfills_running"
    public static let webhookRequests = "weft_webhook_requests_total"
    public static let eventsPublished = "weft_events_published_total"
    public static let triggerExecutions = "weft_trigger_executions_total"
    public static let notificationsQueued = "weft_notifications_queued_total"
    public static let notificationsDelivered = "weft_notifications_delivered_total"
    public static let notificationsFailed = "weft_notification_attempts_failed_total"
    public static let notificationsDead = "weft_notifications_dead_lettered_total"
    public static let notificationsSkipped = "weft_notifications_skipped_total"
    public static let notificationLatency = "weft_notification_delivery_seconds"
    public static let notificationAttemptDuration = "weft_notification_attempt_duration_seconds"
    public static let notificationCircuitOpens = "weft_notification_circuit_opens_total"
    public static let outboxPending = "weft_outbox_pending"
    public static let outboxOldestAge = "weft_outbox_oldest_age_seconds"
    // Operations (the seed's operational metrics, Step 14).
    public static let startupRecovery = "weft_startup_recovery_seconds"
    public static let storeBytes = "weft_store_bytes"
}

/// The tracing pipeline's own metrics: what the span exporter loses.
public final class TracingMetrics: Sendable {
    public let dropped: Prometheus.Counter
    public let exportFailures: Prometheus.Counter

    public init(metrics: WeftMetrics) {
        dropped = metrics.counter(
            MetricNames.traceSpansDropped,
            help: "Finished sampled spans dropped because the export queue was full (the exporter could not keep up).")
        exportFailures = metrics.counter(
            MetricNames.traceExportFailures,
            help: "Span batches that failed to export (collector down, slow or refusing); their spans are lost.")
    }
}

/// Keeps a label's values bounded: the first `cap` distinct values are used
/// as they are, later ones become "other" (so a user cannot grow the series
/// count without limit).
public final class BoundedLabel: Sendable {
    private let seen = Mutex<Set<String>>([])
    private let cap: Int

    public init(cap: Int) { self.cap = cap }

    public func value(_ raw: String) -> String {
        let trimmed = String(raw.prefix(64))
        return seen.withLock { seen in
            if seen.contains(trimmed) { return trimmed }
            guard seen.count < cap else { return "other" }
            seen.insert(trimmed)
            return trimmed
        }
    }
}
