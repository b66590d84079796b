import Foundation
import GRDB
import WeftStore
public import WeftObservability
import Tracing

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

    /// Times one transaction; a database error (not "not found" or a
    /// validation error thrown from inside it) also counts as a failure.
    ///
    /// Inside a traced operation (a request or a task attempt) the
    /// transaction is also a span; transactions nobody asked for (the group
    /// committer's batches, samplers) start no trace of their own.
    func measure<T>(_ operation: String, kind: String, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        let span = WeftTracing.storeSpan(operation, store: store)
        defer { span?.end() }
        do {
            let value = try await body()
            record(operation: operation, kind: kind, start: start, failed: false)
            return value
        } catch {
            record(operation: operation, kind: kind, start: start, failed: error is DatabaseError)
            span?.recordError(error)
            if error is DatabaseError { span?.setStatus(SpanStatus(code: .error)) }
            throw error
        }
    }

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

    /// One group commit of `writes` write closures (`GroupCommit`).
    func grouped(_ writes: Int) {
        guard let metrics else { return }
        let labels = [("store", store)]
        metrics.counter(
            MetricNames.storeGroupCommits, help: "Transactions of the store's group commit, by store.", labels: labels
        ).increment()
        metrics.counter(
            MetricNames.storeGroupCommitWrites,
            help: "Write operations committed by the store's group commit (÷ commits = writes per commit), by store.",
            labels: labels
        ).increment(by: Int64(writes))
    }

    /// Finished executions folded into the rollups by a commit.
    func rollupsFolded(_ count: Int) {
        metrics?.counter(
            MetricNames.rollupExecutions,
            help: "Finished executions folded into the analytics rollups (in the transaction of their final state)."
        ).increment(by: Int64(count))
    }
}
