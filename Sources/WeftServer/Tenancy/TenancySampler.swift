import Foundation
import ServiceLifecycle
import WeftEngine
import WeftObservability
import WeftStore

/// Exports what organizations use, by plan (no organization ids as labels):
/// `weft_plan_usage{plan, quota}` for the quotas counted live
/// (concurrent_executions, executions_per_day) and
/// `weft_organizations_active{plan}` (organizations running executions),
/// every few seconds until graceful shutdown.
struct TenancySampler: Service {
    let engine: Engine
    let quotas: QuotaBook
    let metrics: WeftMetrics
    var interval: Duration = .seconds(5)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var plans: [String: String] = [:]
            let known = quotas.plans.plans.keys.sorted()
            while !Task.isCancelled {
                await quotas.refreshPlansInUse()
                let running = await engine.runningByOrganization()
                let today = quotas.executionsTodayByOrganization()
                var usage: [String: (running: Int, today: Int, active: Int)] = [:]
                for plan in known { usage[plan] = (0, 0, 0) }
                for org in Set(running.keys).union(today.keys) where !org.isEmpty {
                    if plans[org] == nil, let record = try? await quotas.orgs.organization(id: org) {
                        if plans.count >= 100_000 { plans.removeAll() }
                        plans[org] = quotas.plan(of: record).name
                    }
                    guard let plan = plans[org] else { continue }
                    var entry = usage[plan] ?? (0, 0, 0)
                    entry.running += running[org] ?? 0
                    entry.today += today[org] ?? 0
                    if (running[org] ?? 0) > 0 { entry.active += 1 }
                    usage[plan] = entry
                }
                for (plan, entry) in usage {
                    let help = "What the organizations of each plan use now, by quota (summed over organizations)."
                    metrics.gauge(MetricNames.planUsage, help: help, labels: [("plan", plan), ("quota", "concurrent_executions")])
                        .set(Double(entry.running))
                    metrics.gauge(MetricNames.planUsage, help: help, labels: [("plan", plan), ("quota", "executions_per_day")])
                        .set(Double(entry.today))
                    metrics.gauge(
                        MetricNames.organizationsActive, help: "Organizations with executions running, by plan.",
                        labels: [("plan", plan)]
                    ).set(Double(entry.active))
                }
                try await Task.sleep(for: interval)
            }
        }
    }
}
