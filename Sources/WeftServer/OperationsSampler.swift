import Foundation
import ServiceLifecycle
import WeftEngine
import WeftObservability

/// The seed's operational gauges that no request or task produces:
/// - `weft_startup_recovery_seconds`: from the process's start (`started`)
///   until the engine had resumed every unfinished execution and could
///   lease again, set once; with `process_start_time_seconds` it gives the
///   time to recover after each restart (MTTR's floor);
/// - `weft_store_bytes{file}`: the size of each store file and its
///   write-ahead log, every `interval` (a WAL that keeps growing means
///   checkpoints are starved by long readers).
struct OperationsSampler: Service {
    let engine: Engine
    let metrics: WeftMetrics
    let dataDirectory: String
    let started: ContinuousClock.Instant
    var interval: Duration = .seconds(15)

    static let files = ["weft.sqlite", "weft.sqlite-wal", "logs.sqlite", "logs.sqlite-wal"]

    func run() async throws {
        let recovery = metrics.gauge(
            MetricNames.startupRecovery,
            help: "Seconds from the process's start until the engine had resumed the executions the last run left unfinished and took work again (set once per start; 0 until then).")
        let sizes = Self.files.map { file in
            (file, metrics.gauge(
                MetricNames.storeBytes,
                help: "Size of each store file in bytes (weft.sqlite, logs.sqlite and their -wal write-ahead logs).",
                labels: [("file", file)]))
        }
        try? await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    guard (try? await engine.waitUntilReady()) != nil else { return }
                    recovery.set((ContinuousClock.now - started).inSeconds)
                }
                while !Task.isCancelled {
                    for (file, gauge) in sizes {
                        let path = (dataDirectory as NSString).appendingPathComponent(file)
                        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.doubleValue
                        gauge.set(size ?? 0)
                    }
                    try? await Task.sleep(for: interval)
                }
            }
        }
    }
}
