import Foundation
public import WeftObservability
import WeftStore
import Prometheus
import Synchronization

/// The engine's metrics, on the same registry as the RPC metrics. Handles
/// are created once per label set and cached: the per-task path does no
/// registry lookups. Label values are bounded: task types are the fixed
/// built-in set, organizations and workflows are the sets `WorkflowLabels`
/// reads from the store, external queues are capped (`BoundedLabel`).
public final class EngineMetrics: Sendable {
    let metrics: WeftMetrics
    public let labels: WorkflowLabels
    let queueLabel = BoundedLabel(cap: 50)
    /// "workflow/task" pairs of `weft_task_failures_total`.
    let taskLabel = BoundedLabel(cap: 500)
    private let counters = Mutex<[String: Prometheus.Counter]>([:])
    private let histograms = Mutex<[String: DurationHistogram]>([:])
    private let gauges = Mutex<[String: Prometheus.Gauge]>([:])
    let inFlight: Prometheus.Gauge
    let busyWorkers: Prometheus.Gauge
    let idleWorkers: Prometheus.Gauge
    let batchSize: ValueHistogram
    let executionCost: ValueHistogram
    let timerLag: DurationHistogram

    /// Dollar buckets from a millionth of a dollar (a few instant tasks) to
    /// $10 (hours of worker time or gigabytes of transfer).
    static let costBuckets: [Double] = [
        0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
    /// The task types of this build (label values known up front).
    static let taskTypes = TaskType.builtin

    /// Buckets from 250 µs to an hour: task waits and executions range from an
    /// instant noop to a long delay.
    static let longBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        .seconds(300), .seconds(900), .seconds(3600),
    ]

    public init(metrics: WeftMetrics, labels: WorkflowLabels = WorkflowLabels()) {
        self.metrics = metrics
        self.labels = labels
        inFlight = metrics.gauge(MetricNames.executionsInFlight, help: "Executions started and not finished.")
        let workersHelp = "In-process worker slots, by state (busy runs a task attempt)."
        busyWorkers = metrics.gauge(MetricNames.workers, help: workersHelp, labels: [("state", "busy")])
        idleWorkers = metrics.gauge(MetricNames.workers, help: workersHelp, labels: [("state", "idle")])
        batchSize = metrics.valueHistogram(
            MetricNames.commitBatchSize, help: "State changes and queue operations per engine group-commit transaction.",
            buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048])
        executionCost = metrics.valueHistogram(
            MetricNames.executionCost, help: "Cost of each finished execution in US dollars (docs/COST.md).",
            buckets: Self.costBuckets)
        timerLag = metrics.durationHistogram(
            MetricNames.timerLag,
            help: "How late the engine acted on a due durable timer (attempt, task and execution timeouts): now minus its due time.",
            buckets: Self.longBuckets)
        // Counters with known label values start at 0 (Prometheus practice):
        // a rate over them is 0, not "no data", before the first event.
        for type in Self.taskTypes { _ = retriedCounter(type: type) }
        for queue in [EngineQueues.builtin, EngineQueues.timers] { _ = leaseExpiredCounter(queue: queue) }
        for kind in ["store", "store_conflict", "log_write"] { _ = errorCounter(kind) }
        for reason in OverloadGuard.Reason.allCases {
            for source in Self.admissionSources {
                _ = counter(MetricNames.admissionRejections, help: Self.admissionHelp, [("reason", reason.rawValue), ("source", source)])
            }
        }
        admission(taskWait: nil, commitWait: nil, shedding: false)
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

    func executionStarted(orgId: String, workflow: String) {
        let (org, name) = labels.labels(orgId: orgId, workflow: workflow)
        counter(MetricNames.executionsStarted, help: Self.startedHelp, [("org", org), ("workflow", name)]).increment()
        inFlight.increment()
    }

    static let startedHelp = "Executions started, by organization id and workflow name (the labelled ones: docs/METRICS.md; else \"other\")."
    static let finishedHelp = "Executions finished, by organization id, workflow name, final status and cause (none, task_error, timeout, cancelled, system: Weft's own failure)."

    static let admissionHelp = "New executions refused by admission control (RESOURCE_EXHAUSTED / HTTP 429 with retry-after), by reason (task_queue_wait, commit_queue_wait, executions_in_flight) and source (api, webhook, event)."
    static let admissionSources = ["api", "webhook", "event"]

    func admissionRejected(reason: String, source: String) {
        counter(MetricNames.admissionRejections, help: Self.admissionHelp, [("reason", reason), ("source", source)]).increment()
    }

    /// Admission control's view, sampled once a second: the shortest wait
    /// of each queue over its last window, and whether it refuses new work.
    public func admission(taskWait: Double?, commitWait: Double?, shedding: Bool) {
        let help = "The shortest wait of anything that went through the queue in admission control's last window (CoDel's standing-queue measure), by queue (task, commit); 0 when nothing went through."
        gauge(MetricNames.admissionShortestWait, help: help, [("queue", "task")]).set(taskWait ?? 0)
        gauge(MetricNames.admissionShortestWait, help: help, [("queue", "commit")]).set(commitWait ?? 0)
        gauge(MetricNames.admissionShedding, help: "1 while admission control refuses new executions (the engine is at capacity), else 0.", [])
            .set(Double(shedding ? 1 : 0))
    }

    func executionFinished(orgId: String, workflow: String, status: String, cause: FailureCause, duration: TimeInterval) {
        let (org, name) = labels.labels(orgId: orgId, workflow: workflow)
        counter(MetricNames.executionsFinished, help: Self.finishedHelp,
                [("org", org), ("workflow", name), ("status", status), ("cause", cause.rawValue)]).increment()
        histogram(MetricNames.executionDuration, help: "Execution time from execute to its final state, by workflow name (the labelled ones, else \"other\") and status.",
                  [("workflow", name), ("status", status)]).record(Self.seconds(duration))
        inFlight.decrement()
    }

    /// The series of a labelled organization's "other" workflows, at 0, so
    /// per-organization rates and panels have it (at 0) before it has run
    /// anything, rather than no data.
    public func organizationLabelled(_ orgId: String) {
        let org = labels.org(orgId)
        _ = counter(MetricNames.executionsStarted, help: Self.startedHelp, [("org", org), ("workflow", "other")])
        for (status, cause) in [("Completed", FailureCause.none), ("Failed", .system)] {
            _ = counter(MetricNames.executionsFinished, help: Self.finishedHelp,
                        [("org", org), ("workflow", "other"), ("status", status), ("cause", cause.rawValue)])
        }
    }

    func taskWaited(type: TaskType, _ interval: TimeInterval) {
        histogram(MetricNames.taskWait, help: "Time a task attempt waited from queued (its queue item durable; a backoff over) to started, by task type.",
                  [("type", type.rawValue)]).record(Self.seconds(interval))
    }

    func taskFinished(type: TaskType, outcome: String, _ interval: TimeInterval) {
        histogram(MetricNames.taskDuration, help: "Task attempt run time, by task type and outcome (completed, failed).",
                  [("type", type.rawValue), ("outcome", outcome)]).record(Self.seconds(interval))
    }

    func retried(type: TaskType) { retriedCounter(type: type).increment() }

    /// A task attempt that failed: retried (another follows) or failed (its
    /// last), by workflow name and task key (pairs capped, then "other").
    func taskFailure(orgId: String, workflow: String, task: String, retried: Bool) {
        let workflowName = labels.labels(orgId: orgId, workflow: workflow).workflow
        let pair = taskLabel.value(workflowName + "/" + task)
        counter(MetricNames.taskFailures,
                help: "Task attempts that failed, by workflow name, task key and outcome (retried: another attempt follows; failed: its last).",
                [("workflow", workflowName), ("task", pair == "other" ? "other" : task),
                 ("outcome", retried ? "retried" : "failed")]).increment()
    }

    private func retriedCounter(type: TaskType) -> Prometheus.Counter {
        counter(MetricNames.taskRetries, help: "Failed task attempts that will be retried, by task type.", [("type", type.rawValue)])
    }

    func leaseExpired(queue: String) { leaseExpiredCounter(queue: queue).increment() }

    private func leaseExpiredCounter(queue: String) -> Prometheus.Counter {
        counter(MetricNames.leaseExpiries, help: "Queue items taken over after their holder's lease expired, by queue.",
                [("queue", queueName(queue))])
    }

    func error(_ kind: String) { errorCounter(kind).increment() }

    private func errorCounter(_ kind: String) -> Prometheus.Counter {
        counter(MetricNames.engineErrors, help: "Engine store writes that failed, by kind (store_conflict: a lost lease or changed row; store: any other; log_write: an execution log batch, its lines lost).",
                [("kind", kind)])
    }

    /// Cost as it accrues (each attempt's share when it is committed), by
    /// workflow and part.
    func costAccrued(orgId: String, workflow: String, _ cost: ExecutionCost) {
        let label = labels.labels(orgId: orgId, workflow: workflow).workflow
        let help = "Cost accrued by executions in US dollars, by workflow name (the labelled ones, else \"other\") and part (attempts, compute, requests, egress)."
        for (component, dollars) in [
            ("attempts", cost.attemptsDollars), ("compute", cost.computeDollars), ("requests", cost.requestsDollars),
            ("egress", cost.egressDollars),
        ] where dollars > 0 {
            counter(MetricNames.cost, help: help, [("workflow", label), ("component", component)]).increment(by: dollars)
        }
    }

    func executionCosted(_ dollars: Double) { executionCost.record(dollars) }

    func timerFiredLate(_ interval: TimeInterval) { timerLag.record(Self.seconds(interval)) }

    func committed(batch: Int) { batchSize.record(Double(batch)) }

    func workers(busy: Int, total: Int) {
        busyWorkers.set(Double(busy))
        idleWorkers.set(Double(max(0, total - busy)))
    }

    /// Sets the depth gauges of one label (queues that share a label,
    /// capped external ones in "other", are summed by the caller).
    public func queueDepth(label name: String, ready: Int, delayed: Int, leased: Int, oldestReadyAge: Double) {
        let help = "Queue items by state: ready (leasable now), delayed (backoffs, timers, delays), leased (running)."
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "ready")]).set(Double(ready))
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "delayed")]).set(Double(delayed))
        gauge(MetricNames.queueDepth, help: help, [("queue", name), ("state", "leased")]).set(Double(leased))
        gauge(MetricNames.queueOldestReadyAge,
              help: "How long the longest-waiting ready item of the queue has been due (now minus its ready time), 0 when none is ready: a backlog's age, where depth is its size.",
              [("queue", name)]).set(max(0, oldestReadyAge))
    }

    public func setInFlight(_ count: Int) { inFlight.set(Double(count)) }

    public func queueLabelName(_ queue: String) -> String { queueName(queue) }

    /// "builtin", "timers", or an external queue's name (owner ids are
    /// never labels).
    func queueName(_ queue: String) -> String {
        guard queue.hasPrefix(EngineQueues.externalPrefix) else { return queue }
        let name = queue.split(separator: "/", maxSplits: 2).last.map(String.init) ?? queue
        return queueLabel.value("external:" + name)
    }
}
