public import Foundation
public import WeftObservability
import Prometheus
import Synchronization

/// The engine's metrics, on the same registry as the RPC metrics. Handles
/// are created once per label set and cached: the per-task path does no
/// registry lookups. Label values are bounded: task types are the fixed
/// built-in set, workflows and external queues are capped (`BoundedLabel`).
public final class EngineMetrics: Sendable {
    let metrics: WeftMetrics
    let workflowLabel = BoundedLabel(cap: 100)
    let queueLabel = BoundedLabel(cap: 50)
    private let counters = Mutex<[String: Prometheus.Counter]>([:])
    private let histograms = Mutex<[String: DurationHistogram]>([:])
    private let gauges = Mutex<[String: Prometheus.Gauge]>([:])
    let inFlight: Prometheus.Gauge
    let busyWorkers: Prometheus.Gauge
    let idleWorkers: Prometheus.Gauge
    let batchSize: ValueHistogram

    /// Buckets from 250 µs to an hour: task waits and executions range from an
    /// instant noop to a long delay.
    static let longBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        .seconds(300), .seconds(900), .seconds(3600),
    ]

    public init(metrics: WeftMetrics) {
        self.metrics = metrics
        inFlight = metrics.gauge(MetricNames.executionsInFlight, help: "Executions started and not finished.")
        let workersHelp = "In-process worker slots, by state (busy runs a task attempt)."
        busyWorkers = metrics.gauge(MetricNames.workers, help: workersHelp, labels: [("state", "busy")])
        idleWorkers = metrics.gauge(MetricNames.workers, help: workersHelp, labels: [("state", "idle")])
        batchSize = metrics.valueHistogram(
            MetricNames.commitBatchSize, help: "State changes and queue operations per engine group-commit transaction.",
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048])
    }

    /// The handle of `name` with `labels`, made once and then cached.
    private func cached<Handle: Sendable>(
        _ cache: borrowing Mutex<[String: Handle]>, _ name: String, _ labels: [(String, String)], make: () -> Handle
    ) -> Handle {
        let key = name + labels.map { "|\($0.1)" }.joined()
        if let hit = cache.withLock({ $0[key] }) { return hit }
        let made = make()
        cache.withLock { $0[key] = made }
        return made
    }

    private func counter(_ name: String, help: String, _ labels: [(String, String)]) -> Prometheus.Counter {
        cached(counters, name, labels) { metrics.counter(name, help: help, labels: labels) }
    }

    private func histogram(_ name: String, help: String, _ labels: [(String, String)]) -> DurationHistogram {
        cached(histograms, name, labels) {
            metrics.durationHistogram(name, help: help, labels: labels, buckets: Self.longBuckets)
        }
    }

    private func gauge(_ name: String, help: String, _ labels: [(String, String)]) -> Prometheus.Gauge {
        cached(gauges, name, labels) { metrics.gauge(name, help: help, labels: labels) }
    }

    static func seconds(_ interval: TimeInterval) -> Duration {
        .nanoseconds(Int64(max(0, interval) * 1e9))
    }

    func executionStarted(workflow: String) {
        counter(MetricNames.executionsStarted, help: "Executions started, by workflow name (capped, then \"other\").",
                [("workflow", workflowLabel.value(workflow))]).increment()
        inFlight.increment()
    }

    func executionFinished(workflow: String, status: String, duration: TimeInterval) {
        counter(MetricNames.executionsFinished, help: "Executions finished, by workflow name and final status.",
                [("workflow", workflowLabel.value(workflow)), ("status", status)]).increment()
        histogram(MetricNames.executionDuration, help: "Execution time from execute to its final state, by status.",
                  [("status", status)]).record(Self.seconds(duration))
        inFlight.decrement()
    }

    func taskWaited(type: String, _ interval: TimeInterval) {
        histogram(MetricNames.taskWait, help: "Time a task attempt waited from queued (its queue item durable; a backoff over) to started, by task type.",
                  [("type", type)]).record(Self.seconds(interval))
    }

    func taskFinished(type: String, outcome: String, _ interval: TimeInterval) {
        histogram(MetricNames.taskDuration, help: "Task attempt run time, by task type and outcome (completed, failed).",
                  [("type", type), ("outcome", outcome)]).record(Self.seconds(interval))
    }

    func retried(type: String) {
        counter(MetricNames.taskRetries, help: "Failed task attempts that will be retried, by task type.", [("type", type)])
            .increment()
    }

    func leaseExpired(queue: String) {
        counter(MetricNames.leaseExpiries, help: "Queue items taken over after their holder's lease expired, by queue.",
                [("queue", queueName(queue))]).increment()
    }

    func error(_ kind: String) {
        counter(MetricNames.engineErrors, help: "Engine store commits that failed, by kind (store_conflict: a lost lease or changed row; store: any other).",
                [("kind", kind)]).increment()
    }

    func committed(batch: Int) { batchSize.record(Double(batch)) }

    func workers(busy: Int, total: Int) {
        busyWorkers.set(Double(busy))
        idleWorkers.set(Double(max(0, total - busy)))
    }

    /// Sets the depth gauges of one label (queues that share a label,
    /// capped external ones in "other", are summed by the caller).
    public func queueDepth(label name: String, ready: Int, delayed: Int, leased: Int) {
        let help = "Queue items by state: ready (leasable now), delayed (backoffs, timers, delays), leased (running)."
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "ready")]).set(Double(ready))
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "delayed")]).set(Double(delayed))
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "leased")]).set(Double(leased))
    }

    public func setInFlight(_ count: Int) { inFlight.set(Double(count)) }

    public func queueLabelName(_ queue: String) -> String { queueName(queue) }

    /// "builtin", "timers", or an external queue's name (owner ids are
    /// never labels).
    func queueName(_ queue: String) -> String {
        guard queue.hasPrefix(Engine.externalPrefix) else { return queue }
        let name = queue.split(separator: "/", maxSplits: 2).last.map(String.init) ?? queue
        return queueLabel.value("external:" + name)
    }
}
