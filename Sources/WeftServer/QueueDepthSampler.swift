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
                let now = Date()
                if let depths = try? await queue.depths(now: now) {
                    var byName: [String: QueueDepth] = [:]
                    for depth in depths { byName[depth.queue] = depth }
                    known.formUnion(byName.keys)
                    // Queues that share a label (capped external ones in
                    // "other") are summed; their oldest item is the oldest.
                    var totals: [String: QueueDepth] = [:]
                    for name in known {
                        let depth = byName[name] ?? QueueDepth(queue: name, ready: 0, delayed: 0, leased: 0)
                        let label = metrics.queueLabelName(name)
                        var sum = totals[label] ?? QueueDepth(queue: label, ready: 0, delayed: 0, leased: 0)
                        sum.ready += depth.ready
                        sum.delayed += depth.delayed
                        sum.leased += depth.leased
                        if let oldest = depth.oldestReady { sum.oldestReady = min(sum.oldestReady ?? oldest, oldest) }
                        totals[label] = sum
                    }
                    for (label, total) in totals {
                        metrics.queueDepth(
                            label: label, ready: total.ready, delayed: total.delayed, leased: total.leased,
                            oldestReadyAge: total.oldestReady.map { now.timeIntervalSince($0) } ?? 0)
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
