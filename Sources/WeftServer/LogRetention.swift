import Foundation
import Logging
import ServiceLifecycle
import WeftObservability
import WeftStore

/// Deletes execution log entries older than the retention period, at start
/// and then hourly, in paced batches (`PacedPurge`) so appends are never held
/// long.
struct LogRetention: Service {
    var pace = PacedPurge()
    let store: any LogStore
    let keep: Duration
    let metrics: WeftMetrics
    let logger: Logger

    func run() async throws {
        let purged = metrics.counter(MetricNames.logEntriesPurged, help: "Execution log entries deleted by retention.")
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let cutoff = Date().addingTimeInterval(-TimeInterval(keep.components.seconds))
                    let count = try await pace.run({ limit in
                        try await store.purge(olderThan: cutoff, limit: limit)
                    }, deleted: { purged.increment(by: Int64($0)) })
                    if count > 0 { logger.info("log retention: deleted \(count) entries older than \(cutoff)") }
                } catch is CancellationError {
                    return  // shutting down
                } catch {
                    logger.error("log retention failed: \(error)")
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }
}
