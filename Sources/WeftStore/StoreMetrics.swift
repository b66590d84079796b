import Foundation
public import WeftObservability

/// Store latency by operation: every transaction is timed, so slow queries
/// show up per operation in Prometheus (`weft_store_transaction_duration_seconds`).
public struct StoreMetrics: Sendable {
    let metrics: WeftMetrics?
    let store: String

    public init(metrics: WeftMetrics?, store: String) {
        self.metrics = metrics
        self.store = store
    }

    public static let none = StoreMetrics(metrics: nil, store: "main")

    func record(operation: String, kind: String, start: ContinuousClock.Instant, failed: Bool) {
        guard let metrics else { return }
        let labels = [("store", store), ("operation", operation), ("kind", kind)]
        metrics.durationHistogram(
            MetricNames.storeTransactionDuration,
            help: "Duration of store transactions, by store, operation and kind (read/write).",
            labels: labels
        ).recordNanoseconds(Int64((ContinuousClock.now - start) / .nanoseconds(1)))
        if failed {
            metrics.counter(
                MetricNames.storeErrors,
                help: "Store transactions that failed in the database (not for not-found, conflict or validation), by store and operation.",
                labels: [("store", store), ("operation", operation)]
            ).increment()
        }
    }
}
