import Foundation
import WeftEngine
import WeftRPC
import WeftStore

/// The quotas of a workflow's organization for schedule ticks and
/// backfills: the same `executions_per_day` and `concurrent_executions`
/// as ExecuteWorkflow; a refusal skips the tick (reason "quota").
struct QuotaAdmission: TickAdmission {
    let quotas: QuotaBook

    func admit(_ workflow: WorkflowRecord) async throws -> Int {
        guard let org = try await quotas.organization(id: workflow.orgId) else {
            throw TickRefused(reason: "quota", message: "workflow \(workflow.id) belongs to no organization")
        }
        do {
            try await quotas.reserveExecution(org)
        } catch let error as RPCError where error.code == .resourceExhausted {
            throw TickRefused(reason: "quota", message: error.message)
        }
        // Anything else (the store) fails the tick's handling: it is tried again.
        return quotas.plan(of: org).concurrentExecutions
    }

    func release(_ workflow: WorkflowRecord) async {
        guard let org = try? await quotas.organization(id: workflow.orgId) else { return }
        quotas.unreserveExecution(org)
    }
}
