import Foundation
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.AuditService: an organization's audit events, for its admins.
struct AuditAPI: RPCService {
    static let name = "weft.v1.AuditService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "ListAuditEvents", rest: [.get("/audit")]) {
                (request: Weft_V1_ListAuditEventsRequest, context) in
                let caller = try Caller(context)
                guard !request.orgID.isEmpty else { throw APIError.required("org_id") }
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                let size = try Paging.size(request.pageSize)
                let fingerprint = Paging.query(request, caller: caller.userId, clearing: { $0.pageToken = "" })
                var query = AuditQuery(orgId: org.id, limit: size + 1)
                if let cursor = try Paging.cursor(request.pageToken, query: fingerprint) {
                    guard let id = Int64(cursor) else { throw RPCError(code: .invalidArgument, message: "page_token is not valid") }
                    query.beforeId = id
                }
                if !request.actorID.isEmpty { query.actorId = request.actorID }
                if !request.action.isEmpty { query.action = request.action }
                if !request.resourceType.isEmpty { query.resourceType = request.resourceType }
                if !request.resourceID.isEmpty { query.resourceId = request.resourceID }
                if request.hasSince { query.since = request.since.date }
                if request.hasUntil { query.until = request.until.date }
                // Calls that ended before this one are in the answer.
                await deps.audit.flush()
                var events = try await deps.audit.store.auditEvents(query)
                var response = Weft_V1_ListAuditEventsResponse()
                if events.count > size {
                    events.removeLast(events.count - size)
                    response.nextPageToken = Paging.token(cursor: String(events[events.count - 1].id), query: fingerprint)
                }
                response.events = events.map { event in
                    var message = Weft_V1_AuditEvent()
                    message.id = event.id
                    message.time = ProtoMapping.timestamp(event.at)
                    message.actorID = event.actorId
                    message.orgID = event.orgId
                    message.action = event.action
                    message.resourceType = event.resourceType
                    message.resourceID = event.resourceId
                    message.outcome = event.outcome
                    message.clientAddress = event.clientAddress
                    message.traceID = event.traceId
                    message.detail = ProtoMapping.protoStruct(event.detail)
                    return message
                }
                return response
            }
        ]
    }
}
