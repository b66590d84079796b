import Foundation
public import WeftObservability
import Prometheus
import Synchronization

/// Metrics of schedules and triggers: ticks fired, skipped (by reason) and
/// missed, fire lag, backfill progress, webhook and event outcomes, and
/// executions by what triggered them. Label values are fixed sets.
public final class SchedulerMetrics: Sendable {
    let metrics: WeftMetrics
    let fired: Prometheus.Counter
    let missed: Prometheus.Counter
    let lag: DurationHistogram
    let active: Prometheus.Gauge
    let paused: Prometheus.Gauge
    let backfillsRunning: Prometheus.Gauge
    private let counters = Mutex<[String: Prometheus.Counter]>([:])

    public static let skipReasons = ["overlap", "quota", "concurrency_limit", "workflow_gone"]
    public static let webhookOutcomes = [
        "accepted", "duplicate", "not_found", "bad_signature", "stale", "replayed", "bad_body", "refused", "overloaded",
    ]
    public static let triggers = ["schedule", "backfill", "webhook", "event"]

    /// Fire lag buckets: from 250 µs to 10 minutes (a tick caught up after downtime).
    static let lagBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
        .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
        .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(600),
    ]

    public init(metrics: WeftMetrics) {
        self.metrics = metrics
        fired = metrics.counter(
            MetricNames.scheduleTicksFired, help: "Schedule ticks that started an execution (live and caught up).")
        missed = metrics.counter(
            MetricNames.scheduleTicksMissed,
            help: "Schedule ticks not run after downtime, by the schedule's catch-up policy.")
        lag = metrics.durationHistogram(
            MetricNames.scheduleFireLag,
            help: "How late a schedule tick started its execution: start time minus the tick's due time (tick plus jitter).",
            buckets: Self.lagBuckets)
        let schedulesHelp = "Schedules by state (active or paused)."
        active = metrics.gauge(MetricNames.schedules, help: schedulesHelp, labels: [("state", "active")])
        paused = metrics.gauge(MetricNames.schedules, help: schedulesHelp, labels: [("state", "paused")])
        backfillsRunning = metrics.gauge(MetricNames.backfillsRunning, help: "Backfills running now.")
        for reason in Self.skipReasons { _ = skippedCounter(reason) }
        for outcome in ["started", "existing"] { _ = backfillCounter(outcome) }
        for outcome in Self.webhookOutcomes { _ = webhookCounter(outcome) }
        for outcome in ["published", "duplicate"] { _ = eventCounter(outcome) }
        for trigger in Self.triggers { _ = triggerCounter(trigger) }
    }

    private func counter(_ name: String, help: String, _ labels: [(String, String)]) -> Prometheus.Counter {
        let key = name + "|" + labels.map { $0.1 }.joined(separator: "|")
        if let hit = counters.withLock({ $0[key] }) { return hit }
        let made = metrics.counter(name, help: help, labels: labels)
        counters.withLock { $0[key] = made }
        return made
    }

    private func skippedCounter(_ reason: String) -> Prometheus.Counter {
        counter(
            MetricNames.scheduleTicksSkipped,
            help: "Schedule ticks skipped, by reason (overlap, quota, concurrency_limit, workflow_gone).", [("reason", reason)])
    }

    private func backfillCounter(_ outcome: String) -> Prometheus.Counter {
        counter(
            MetricNames.backfillTicks,
            help: "Backfill ticks handled: started an execution, or found one already run (existing).", [("outcome", outcome)])
    }

    public static let webhookHelp = "Webhook trigger calls, by outcome."

    private func webhookCounter(_ outcome: String) -> Prometheus.Counter {
        counter(MetricNames.webhookRequests, help: Self.webhookHelp, [("outcome", outcome)])
    }

    private func eventCounter(_ outcome: String) -> Prometheus.Counter {
        counter(MetricNames.eventsPublished, help: "Events published, by outcome (published, or a repeated event id).", [("outcome", outcome)])
    }

    private func triggerCounter(_ trigger: String) -> Prometheus.Counter {
        counter(
            MetricNames.triggerExecutions, help: "Executions started by schedules, backfills, webhooks and events.",
            [("trigger", trigger)])
    }

    func tickFired(lag seconds: TimeInterval) {
        fired.increment()
        lag.record(EngineMetrics.seconds(max(0, seconds)))
        triggerCounter("schedule").increment()
    }

    func tickSkipped(_ reason: String, count: Int64 = 1) {
        guard count > 0 else { return }
        skippedCounter(Self.skipReasons.contains(reason) ? reason : "overlap").increment(by: count)
    }

    func ticksMissed(_ count: Int64) { if count > 0 { missed.increment(by: count) } }

    func backfillTick(existing: Bool) {
        backfillCounter(existing ? "existing" : "started").increment()
        if !existing { triggerCounter("backfill").increment() }
    }

    func setSchedules(active: Int, paused: Int) {
        self.active.set(Double(active))
        self.paused.set(Double(paused))
    }

    func setBackfillsRunning(_ count: Int) { backfillsRunning.set(Double(count)) }

    public func webhook(_ outcome: String) {
        webhookCounter(outcome).increment()
        if outcome == "accepted" { triggerCounter("webhook").increment() }
    }

    public func eventPublished(duplicate: Bool, executions: Int) {
        eventCounter(duplicate ? "duplicate" : "published").increment()
        if executions > 0 { triggerCounter("event").increment(by: Int64(executions)) }
    }
}
