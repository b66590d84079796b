import Foundation
import Logging
import ServiceLifecycle
import WeftEngine
import WeftStore

/// Keeps the engine metrics' labelled organizations and workflows
/// (`WorkflowLabels`) in step with the store: read once before the engine
/// starts, then every `interval`, and soon after an organization or
/// workflow was labelled ahead of it (created since the last read). The sets come from the store, not from the order this
/// process met executions in, so replicas and restarts agree.
struct WorkflowLabelRefresher: Service {
    let store: any OrganizationStore
    let metrics: EngineMetrics
    let interval: Duration
    let logger: Logger
    /// After a nudge, at most one read per this long.
    var debounce: Duration = .seconds(1)

    /// One read of the sets; returns whether they changed.
    @discardableResult
    static func load(store: any OrganizationStore, metrics: EngineMetrics) async throws -> Bool {
        let labels = metrics.labels
        let started = labels.currentGeneration
        let next = WorkflowLabels.Snapshot(try await store.labelledWorkflows(orgs: labels.orgCap, perOrg: labels.perOrgCap))
        let changed = next != labels.current
        // A creation labelled here while the store was read is not in the
        // read: keep the sets (the creation nudged another read).
        if changed && !labels.update(next, readStarted: started) { return false }
        // Idempotent (handles are cached): an organization labelled ahead of
        // this read gets its zero series here too.
        for org in next.orgs { metrics.organizationLabelled(org) }
        return changed
    }

    func run() async throws {
        let (nudges, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        metrics.labels.whenChanged { continuation.yield() }
        defer { metrics.labels.whenChanged {} }
        try? await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    // The ticks, fed into the same stream as the nudges.
                    while !Task.isCancelled {
                        try? await Task.sleep(for: interval)
                        continuation.yield()
                    }
                }
                for await _ in nudges {
                    do {
                        try await Self.load(store: store, metrics: metrics)
                    } catch {
                        logger.warning("metrics: cannot read the labelled workflows: \(error)")
                    }
                    try? await Task.sleep(for: debounce)
                    if Task.isCancelled { break }
                }
                group.cancelAll()
            }
        }
        continuation.finish()
    }
}
