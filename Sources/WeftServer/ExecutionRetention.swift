import Foundation
import Logging
import ServiceLifecycle
import WeftObservability
import WeftStore

/// Deletes finished executions (and their task rows) older than the
/// retention period, at start and then every ten minutes, in paced batches
/// (`PacedPurge`) so the writer is never held long. Their rollups stay:
/// statistics, trends and budgets keep counting them (docs/ANALYTICS.md).
struct ExecutionRetention: Service {
    var pace = PacedPurge()
    let store: any AnalyticsStore
    let days: Int
    let metrics: WeftMetrics
    let logger: Logger

    func run() async throws {
        let purged = metrics.counter(
            MetricNames.executionsPurged,
            help: "Finished executions deleted by retention (--execution-retention-days); their rollups stay.")
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let cutoff = Date().addingTimeInterval(-Double(days) * 86_400)
                do {
                    let total = try await pace.run({ limit in
                        try await store.purgeExecutions(finishedBefore: cutoff, limit: limit)
                    }, deleted: { purged.increment(by: Int64($0)) })
                    if total > 0 { logger.info("execution retention: deleted \(total) executions finished before \(cutoff)") }
                } catch is CancellationError {
                    return  // shutting down
                } catch {
                    logger.error("execution retention failed: \(error)")
                }
                try await Task.sleep(for: .seconds(600))
            }
        }
    }
}
