import Foundation
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.CollaboratorService: who may see (viewer) and change (editor) a
/// workflow. Only the owner manages roles; anyone may leave a workflow.
struct CollaboratorAPI: RPCService {
    static let name = "weft.v1.CollaboratorService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(
                service: Self.name, method: "AddCollaborator",
                rest: [.post("/workflows/{workflowId}/collaborators", status: 201)]
            ) { (request: Weft_V1_AddCollaboratorRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .owner)
                guard !request.userID.isEmpty else { throw APIError.required("user_id") }
                let role = try grantable(request.role)
                guard request.userID != workflow.ownerId else {
                    throw RPCError(code: .invalidArgument, message: "user \(request.userID) owns workflow \(workflow.id)")
                }
                // Only members of the workflow's organization (who joined it by
                // accepting an invitation) can be added; the same answer for an
                // unknown id and a non-member reveals nothing about accounts.
                guard try await deps.orgs.membership(orgId: workflow.orgId, userId: request.userID) != nil,
                    let user = try await deps.users.user(id: request.userID)
                else {
                    throw RPCError(
                        code: .notFound,
                        message: "no member \(request.userID) in organization \(workflow.orgId); invite them to the organization first")
                }
                let record = CollaboratorRecord(workflowId: workflow.id, userId: user.id, role: role, addedAt: .nowMillis)
                try await deps.workflows.addCollaborator(record, actor: caller.userId)
                return Self.collaborator(record, user)
            },
            .unary(
                service: Self.name, method: "ListCollaborators", rest: [.get("/workflows/{workflowId}/collaborators")]
            ) { (request: Weft_V1_ListCollaboratorsRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                var all: [Weft_V1_Collaborator] = []
                if let owner = try await deps.users.user(id: workflow.ownerId) {
                    all.append(Self.collaborator(
                        CollaboratorRecord(workflowId: workflow.id, userId: owner.id, role: .owner, addedAt: workflow.createdAt),
                        owner))
                }
                all += try await deps.workflows.collaborators(workflowId: workflow.id).map { Self.collaborator($0.0, $0.1) }
                let size = try Paging.size(request.pageSize)
                let query = caller.userId + "|collaborators|" + workflow.id
                let start = try Paging.offset(request.pageToken, query: query)
                var response = Weft_V1_ListCollaboratorsResponse()
                let end = min(all.count, start + size)
                if start < end { response.collaborators = Array(all[start..<end]) }
                response.nextPageToken = Paging.token(cursor: end < all.count ? String(end) : nil, query: query)
                return response
            },
            .unary(
                service: Self.name, method: "UpdateCollaboratorRole",
                rest: [.put("/workflows/{workflowId}/collaborators/{userId}")]
            ) { (request: Weft_V1_UpdateCollaboratorRoleRequest, context) in
                let caller = try Caller(context)
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .owner)
                let role = try grantable(request.role)
                try await deps.workflows.updateCollaborator(
                    workflowId: workflow.id, userId: request.userID, role: role, actor: caller.userId)
                guard let entry = try await deps.workflows.collaborators(workflowId: workflow.id)
                    .first(where: { $0.0.userId == request.userID })
                else { throw RPCError(code: .notFound, message: "user \(request.userID) is not a collaborator") }
                return Self.collaborator(entry.0, entry.1)
            },
            .unary(
                service: Self.name, method: "RemoveCollaborator",
                rest: [.delete("/workflows/{workflowId}/collaborators/{userId}")]
            ) { (request: Weft_V1_RemoveCollaboratorRequest, context) in
                let caller = try Caller(context)
                // The owner removes anyone; a collaborator may remove themselves.
                let needed: WorkflowRole = request.userID == caller.userId ? .viewer : .owner
                let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: needed)
                guard request.userID != workflow.ownerId else {
                    throw RPCError(code: .failedPrecondition, message: "the owner cannot be removed from workflow \(workflow.id)")
                }
                try await deps.workflows.removeCollaborator(
                    workflowId: workflow.id, userId: request.userID, actor: caller.userId)
                return Weft_V1_RemoveCollaboratorResponse()
            },
        ]
    }

    private func grantable(_ role: Weft_V1_Collaborator.Role) throws -> WorkflowRole {
        switch role {
        case .viewer: return .viewer
        case .editor: return .editor
        case .owner:
            throw RPCError(code: .invalidArgument, message: "role owner cannot be granted; use \"viewer\" or \"editor\"")
        default:
            throw RPCError(code: .invalidArgument, message: "role must be \"viewer\" or \"editor\"")
        }
    }

    static func collaborator(_ record: CollaboratorRecord, _ user: UserRecord) -> Weft_V1_Collaborator {
        var collaborator = Weft_V1_Collaborator()
        collaborator.workflowID = record.workflowId
        collaborator.userID = record.userId
        switch record.role {
        case .viewer: collaborator.role = .viewer
        case .editor: collaborator.role = .editor
        case .owner: collaborator.role = .owner
        }
        collaborator.email = user.email
        collaborator.name = user.name
        collaborator.addedAt = ProtoMapping.timestamp(record.addedAt)
        return collaborator
    }
}
