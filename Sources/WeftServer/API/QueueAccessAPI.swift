import Foundation
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.QueueAccessService: who may put tasks on an organization's
/// external queue and who may take them. Admins of the organization manage
/// grants and need none themselves.
struct QueueAccessAPI: RPCService {
    static let name = "weft.v1.QueueAccessService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "ListQueueGrants", rest: [.get("/orgs/{orgId}/queues/{queue}/grants")]) {
                (request: Weft_V1_ListQueueGrantsRequest, context) in
                let (org, _) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .admin)
                try Self.check(queue: request.queue)
                var response = Weft_V1_ListQueueGrantsResponse()
                response.grants = try await deps.orgs.queueGrants(orgId: org.id, queue: request.queue).map(Self.grant)
                return response
            },
            .unary(service: Self.name, method: "SetQueueGrant", rest: [.put("/orgs/{orgId}/queues/{queue}/grants/{userId}")]) {
                (request: Weft_V1_SetQueueGrantRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                try Self.check(queue: request.queue)
                guard !request.userID.isEmpty else { throw APIError.required("user_id") }
                context.audit?.note(resource: ("queue", request.queue))
                context.audit?.detail("user_id", request.userID)
                guard try await deps.orgs.membership(orgId: org.id, userId: request.userID) != nil else {
                    throw RPCError(code: .notFound, message: "no member \(request.userID) in organization \(org.id)")
                }
                let grant = QueueGrantRecord(
                    orgId: org.id, queue: request.queue, userId: request.userID, submit: request.submit, poll: request.poll,
                    updatedAt: .nowMillis)
                try await deps.orgs.setQueueGrant(grant)
                return Self.grant(grant)
            },
            .unary(
                service: Self.name, method: "DeleteQueueGrant", rest: [.delete("/orgs/{orgId}/queues/{queue}/grants/{userId}")]
            ) { (request: Weft_V1_DeleteQueueGrantRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                try Self.check(queue: request.queue)
                context.audit?.note(resource: ("queue", request.queue))
                context.audit?.detail("user_id", request.userID)
                try await deps.orgs.deleteQueueGrant(orgId: org.id, queue: request.queue, userId: request.userID)
                return Weft_V1_DeleteQueueGrantResponse()
            },
        ]
    }

    static func check(queue: String) throws {
        guard TaskTypes.isQueueName(queue) else {
            throw RPCError(
                code: .invalidArgument, message: "queue must be 1 to 64 letters, digits, '.', '_' or '-' (got \"\(queue.prefix(80))\")")
        }
    }

    static func grant(_ record: QueueGrantRecord) -> Weft_V1_QueueGrant {
        var grant = Weft_V1_QueueGrant()
        grant.orgID = record.orgId
        grant.queue = record.queue
        grant.userID = record.userId
        grant.submit = record.submit
        grant.poll = record.poll
        grant.updatedAt = ProtoMapping.timestamp(record.updatedAt)
        return grant
    }
}
