import Foundation
import Synchronization
import WeftStore

/// Whether a user may still read a workflow, remembered for a few seconds
/// (every delivery asks; roles change rarely).
final class AccessCache: Sendable {
    let workflows: any WorkflowStore
    private let known = Mutex<[String: (at: Date, allowed: Bool)]>([:])
    static let lifetime: TimeInterval = 10

    init(workflows: any WorkflowStore) { self.workflows = workflows }

    func mayRead(userId: String, workflowId: String) async throws -> Bool {
        let key = userId + "|" + workflowId
        let now = Date()
        if let hit = known.withLock({ $0[key] }), now.timeIntervalSince(hit.at) < Self.lifetime { return hit.allowed }
        var allowed = false
        if let workflow = try await workflows.workflow(id: workflowId, includeDeleted: false) {
            if workflow.ownerId == userId {
                allowed = true
            } else {
                allowed = try await workflows.role(userId: userId, workflowId: workflowId) != nil
            }
        }
        known.withLock { known in
            if known.count > 10_000 { known = known.filter { now.timeIntervalSince($0.value.at) < Self.lifetime } }
            known[key] = (now, allowed)
        }
        return allowed
    }
}
