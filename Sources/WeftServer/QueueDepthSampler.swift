import Foundation
import Logging
import ServiceLifecycle
import WeftEngine
import WeftStore

/// Runs the engine's in-process workers and samples queue depths for
/// metrics, until graceful shutdown. Attempts in progress at shutdown are
/// re-delivered after the next start (at-least-once).
struct EngineService: Service {
    let engine: Engine
    let queue: any QueueStore
    let workers: Int
    let metrics: EngineMetrics
    let logger: Logger

    func run() async throws {
        let logger = self.logger
        logger.info("engine: \(workers) in-process workers")
        try? await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if workers > 0 {
                    let pool = WorkerPool(engine: engine, slots: workers, metrics: metrics) { error in
                        logger.warning("engine: \(error)")
                    }
                    group.addTask { await pool.run() }
                }
                group.addTask { await sampleDepths() }
            }
        }
        await engine.flushLogs()
        // Before the span exporter stops (it stops last and flushes).
        await engine.endOpenSpans()
    }

    /// Queue depth gauges, once a second.
    func sampleDepths() async {
        var known: Set<String> = [Engine.builtinQueue, Engine.timerQueue]
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
            try? await Task.sleep(for: .seconds(1))
        }
    }
}
