import Foundation
import WeftEngine
import WeftObservability
import WeftRPC
import WeftStore

/// What the API services share: the stores (through their protocols, so a
/// PostgreSQL store can replace SQLite without touching a handler), the
/// authenticator and metrics.
struct APIDependencies: Sendable {
    let users: any UserStore
    let workflows: any WorkflowStore
    /// The definition cache in front of `workflows`, for event-loop fast paths.
    var cache: CachedWorkflowStore? { workflows as? CachedWorkflowStore }
    let logs: any LogStore
    let executions: any ExecutionStore
    let engine: Engine
    let auth: Authenticator
    let passwords: PasswordHasher
    let metrics: WeftMetrics

    /// The caller's workflow with their role, or NOT_FOUND when they have
    /// none (never revealing that someone else's workflow exists), or
    /// PERMISSION_DENIED when their role is below `needed`.
    func workflow(_ id: String, caller: Caller, needs needed: WorkflowRole) async throws -> (WorkflowRecord, WorkflowRole) {
        guard !id.isEmpty else { throw APIError.required("workflow_id") }
        guard let workflow = try await workflows.workflow(id: id, includeDeleted: false) else {
            throw APIError.workflowNotFound(id)
        }
        let role: WorkflowRole
        if workflow.ownerId == caller.userId {
            role = .owner
        } else if let granted = try await workflows.role(userId: caller.userId, workflowId: id) {
            role = granted
        } else {
            throw APIError.workflowNotFound(id)
        }
        guard role >= needed else {
            throw RPCError(
                code: .permissionDenied,
                message: "your role on workflow \(id) is \(role.rawValue); this needs \(needed.rawValue)")
        }
        return (workflow, role)
    }

    func countWrite(_ operation: String) {
        metrics.counter(
            MetricNames.workflowWrites, help: "Workflow definition writes, by operation.",
            labels: [("operation", operation)]
        ).increment()
    }
}

/// An etag from a request: nil when absent; a version number otherwise
/// (anything else can never match, so it is a conflict).
func expectedVersion(_ etag: String) -> Int? {
    let trimmed = etag.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
    // `If-Match: *` means "whatever the current version is".
    guard !trimmed.isEmpty, trimmed != "*" else { return nil }
    return Int(trimmed) ?? -1
}
