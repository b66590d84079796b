import Foundation
import ServiceLifecycle
import WeftEngine
import WeftStore

/// Samples queue depths into the `weft_queue_depth` gauges once a second,
/// until graceful shutdown.
struct QueueDepthSampler: Service {
    let queue: any QueueStore
    let metrics: EngineMetrics
    /// Admission control's state, sampled into its gauges.
    var overload: OverloadGuard?
    var interval: Duration = .seconds(1)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var known: Set<String> = Set(EngineQueues.inProcess)
            while !Task.isCancelled {
                if let depths = try? await queue.depths(now: Date()) {
                    var byName: [String: QueueDepth] = [:]
                    for depth in depths { byName[depth.queue] = depth }
                    known.formUnion(byName.keys)
                    var totals: [String: (Int, Int, Int)] = [:]
                    for name in known {
                        let depth = byName[name] ?? QueueDepth(queue: name, ready: 0, delayed: 0, leased: 0)
                        let label = metrics.queueLabelName(name)
                        let sum = totals[label] ?? (0, 0, 0)
                        totals[label] = (sum.0 + depth.ready, sum.1 + depth.delayed, sum.2 + depth.leased)
                    }
                    for (label, total) in totals {
                        metrics.queueDepth(label: label, ready: total.0, delayed: total.1, leased: total.2)
                    }
                }
                if let overload {
                    let view = overload.snapshot()
                    metrics.admission(taskWait: view.taskWait, commitWait: view.commitWait, shedding: view.shedding)
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
