import Foundation
import Prometheus
import Synchronization
import WeftObservability
import WeftStore

/// The notification metrics (docs/METRICS.md), with their label sets made
/// once: channels and events are closed sets.
final class NotificationMetrics: Sendable {
    private struct Key: Hashable {
        let channel: NotificationChannel
        let event: NotificationEvent
    }

    private let queued: [Key: Prometheus.Counter]
    private let delivered: [Key: Prometheus.Counter]
    private let failed: [Key: Prometheus.Counter]
    private let dead: [Key: Prometheus.Counter]
    private let latency: [NotificationChannel: DurationHistogram]
    private let attemptDuration: [NotificationChannel: DurationHistogram]
    private let circuitOpens: [NotificationChannel: Prometheus.Counter]
    private let skipped: Mutex<[String: Prometheus.Counter]> = Mutex([:])
    private let metrics: WeftMetrics
    let pending: Prometheus.Gauge
    let oldestAge: Prometheus.Gauge

    static let latencyBuckets: [Duration] = [
        .microseconds(250), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        .seconds(300), .seconds(900), .seconds(3600),
    ]

    init(metrics: WeftMetrics) {
        self.metrics = metrics
        var queued: [Key: Prometheus.Counter] = [:]
        var delivered: [Key: Prometheus.Counter] = [:]
        var failed: [Key: Prometheus.Counter] = [:]
        var dead: [Key: Prometheus.Counter] = [:]
        for channel in NotificationChannel.allCases {
            // Test messages of integrations are not counted.
            for event in NotificationEvent.subscribable {
                let key = Key(channel: channel, event: event)
                let labels = [("channel", channel.rawValue), ("event", event.rawValue)]
                queued[key] = metrics.counter(
                    MetricNames.notificationsQueued, help: "Notifications written to the outbox, by channel and event.",
                    labels: labels)
                delivered[key] = metrics.counter(
                    MetricNames.notificationsDelivered, help: "Notifications delivered, by channel and event.", labels: labels)
                failed[key] = metrics.counter(
                    MetricNames.notificationsFailed,
                    help: "Delivery attempts that failed (each retry counts), by channel and event.", labels: labels)
                dead[key] = metrics.counter(
                    MetricNames.notificationsDead,
                    help: "Notifications given up on (no attempts left, or refused for good), by channel and event.",
                    labels: labels)
            }
        }
        self.queued = queued
        self.delivered = delivered
        self.failed = failed
        self.dead = dead
        var latency: [NotificationChannel: DurationHistogram] = [:]
        var attemptDuration: [NotificationChannel: DurationHistogram] = [:]
        var circuitOpens: [NotificationChannel: Prometheus.Counter] = [:]
        for channel in NotificationChannel.allCases {
            latency[channel] = metrics.durationHistogram(
                MetricNames.notificationLatency,
                help: "From the event (or a deadline alert's due time) to its delivery, by channel.",
                labels: [("channel", channel.rawValue)], buckets: Self.latencyBuckets)
            attemptDuration[channel] = metrics.durationHistogram(
                MetricNames.notificationAttemptDuration, help: "One delivery attempt (a POST, an SMTP session), by channel.",
                labels: [("channel", channel.rawValue)])
            circuitOpens[channel] = metrics.counter(
                MetricNames.notificationCircuitOpens,
                help: "Destinations whose circuit breaker opened after repeated failures, by channel.",
                labels: [("channel", channel.rawValue)])
        }
        self.latency = latency
        self.attemptDuration = attemptDuration
        self.circuitOpens = circuitOpens
        pending = metrics.gauge(MetricNames.outboxPending, help: "Notifications in the outbox not yet delivered or given up on.")
        oldestAge = metrics.gauge(
            MetricNames.outboxOldestAge, help: "Age of the oldest notification still pending in the outbox (0 when empty).")
    }

    func queued(_ entries: [OutboxEntry]) {
        for entry in entries { queued[Key(channel: entry.channel, event: entry.event)]?.increment() }
    }

    func delivered(_ entry: OutboxEntry, latency seconds: Double) {
        delivered[Key(channel: entry.channel, event: entry.event)]?.increment()
        latency[entry.channel]?.record(.microseconds(Int64(min(max(0, seconds), 1e9) * 1_000_000)))
    }

    func failed(_ entry: OutboxEntry) { failed[Key(channel: entry.channel, event: entry.event)]?.increment() }
    func dead(_ entry: OutboxEntry) { dead[Key(channel: entry.channel, event: entry.event)]?.increment() }

    func attempt(_ channel: NotificationChannel, seconds: Double) {
        attemptDuration[channel]?.record(.microseconds(Int64(min(max(0, seconds), 1e9) * 1_000_000)))
    }

    func circuitOpened(_ channel: NotificationChannel) { circuitOpens[channel]?.increment() }

    func skipped(reason: String) {
        let counter = skipped.withLock { counters in
            if let counter = counters[reason] { return counter }
            let counter = metrics.counter(
                MetricNames.notificationsSkipped,
                help: "Notifications not sent because they became moot (a deadline met, a subscription deleted), by reason.",
                labels: [("reason", reason)])
            counters[reason] = counter
            return counter
        }
        counter.increment()
    }
}
