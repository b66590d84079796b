import Foundation
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.OrganizationService: organizations, members, invitations, usage.
///
/// Nobody is added to an organization without consent: an admin invites an
/// email, and only the account with that email can accept. The answer to
/// an invitation is the same whether or not the email has an account.
struct OrganizationAPI: RPCService {
    static let name = "weft.v1.OrganizationService"
    /// How long an invitation stays open.
    static let invitationLifetime: TimeInterval = 7 * 86_400
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "ListOrganizations", rest: [.get("/orgs")]) {
                (_: Weft_V1_ListOrganizationsRequest, context) in
                let caller = try Caller(context)
                var response = Weft_V1_ListOrganizationsResponse()
                response.organizations = try await deps.orgs.memberships(userId: caller.userId).map {
                    organization($0.1, role: $0.0.role)
                }
                return response
            },
            .unary(service: Self.name, method: "GetOrganization", rest: [.get("/orgs/{orgId}")]) {
                (request: Weft_V1_GetOrganizationRequest, context) in
                let (org, membership) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .member)
                return organization(org, role: membership.role)
            },
            .unary(service: Self.name, method: "GetUsage", rest: [.get("/orgs/{orgId}/usage")]) {
                (request: Weft_V1_GetUsageRequest, context) in
                let (org, _) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .member)
                return try await usage(org)
            },
            .unary(service: Self.name, method: "ListMembers", rest: [.get("/orgs/{orgId}/members")]) {
                (request: Weft_V1_ListMembersRequest, context) in
                let (org, _) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .member)
                var response = Weft_V1_ListMembersResponse()
                response.members = try await deps.orgs.members(orgId: org.id).map(Self.member)
                return response
            },
            .unary(service: Self.name, method: "UpdateMemberRole", rest: [.put("/orgs/{orgId}/members/{userId}")]) {
                (request: Weft_V1_UpdateMemberRoleRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                guard !request.userID.isEmpty else { throw APIError.required("user_id") }
                guard let role = OrganizationRole(rawValue: request.role) else {
                    throw RPCError(code: .invalidArgument, message: "role must be \"member\" or \"admin\"")
                }
                caller.audit?.detail("user_id", request.userID)
                let membership: MembershipRecord
                do {
                    membership = try await deps.orgs.setMemberRole(orgId: org.id, userId: request.userID, role: role, actor: caller.userId)
                } catch StoreError.conflict(let message) {
                    throw RPCError(code: .failedPrecondition, message: message + "; make another member admin first")
                } catch StoreError.notFound {
                    throw RPCError(code: .notFound, message: "no member \(request.userID) in organization \(org.id)")
                }
                guard let user = try await deps.users.user(id: request.userID) else {
                    throw RPCError(code: .notFound, message: "no member \(request.userID) in organization \(org.id)")
                }
                return Self.member(membership, user)
            },
            .unary(service: Self.name, method: "RemoveMember", rest: [.delete("/orgs/{orgId}/members/{userId}")]) {
                (request: Weft_V1_RemoveMemberRequest, context) in
                let caller = try Caller(context)
                guard !request.userID.isEmpty else { throw APIError.required("user_id") }
                // An admin removes anyone; a member may leave.
                let needed: OrganizationRole = request.userID == caller.userId ? .member : .admin
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: needed)
                do {
                    try await deps.orgs.removeMember(orgId: org.id, userId: request.userID, actor: caller.userId)
                } catch StoreError.conflict(let message) {
                    throw RPCError(code: .failedPrecondition, message: message + "; make another member admin first")
                }
                // Their workflows changed owner past the definition cache.
                deps.cache?.forgetAll()
                return Weft_V1_RemoveMemberResponse()
            },
            .unary(
                service: Self.name, method: "CreateInvitation", rest: [.post("/orgs/{orgId}/invitations", status: 201)]
            ) { (request: Weft_V1_CreateInvitationRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                let email = request.email.trimmingCharacters(in: .whitespaces)
                guard !email.isEmpty else { throw APIError.required("email") }
                guard UserAPI.isPlausibleEmail(email) else {
                    throw RPCError(code: .invalidArgument, message: "email \"\(email)\" is not a valid address")
                }
                let role: OrganizationRole
                switch request.role {
                case "", "member": role = .member
                case "admin": role = .admin
                default: throw RPCError(code: .invalidArgument, message: "role must be \"member\" or \"admin\"")
                }
                let now = Date.nowMillis
                let invitation = InvitationRecord(
                    id: IDGenerator.make(IDGenerator.invitation, now: now), orgId: org.id, email: email, role: role,
                    invitedBy: caller.userId, createdAt: now, expiresAt: now.addingTimeInterval(Self.invitationLifetime))
                do {
                    try await deps.orgs.createInvitation(invitation, actor: caller.userId)
                } catch StoreError.alreadyExists {
                    throw RPCError(code: .alreadyExists, message: "an invitation to \(email) is already pending; revoke it first")
                }
                return Self.invitation(invitation, org: org, now: now)
            },
            .unary(service: Self.name, method: "ListInvitations", rest: [.get("/orgs/{orgId}/invitations")]) {
                (request: Weft_V1_ListInvitationsRequest, context) in
                let (org, _) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .admin)
                let now = Date()
                var response = Weft_V1_ListInvitationsResponse()
                response.invitations = try await deps.orgs.invitations(orgId: org.id).map { Self.invitation($0, org: org, now: now) }
                return response
            },
            .unary(
                service: Self.name, method: "RevokeInvitation", rest: [.delete("/orgs/{orgId}/invitations/{invitationId}")]
            ) { (request: Weft_V1_RevokeInvitationRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                guard !request.invitationID.isEmpty else { throw APIError.required("invitation_id") }
                try await deps.orgs.revokeInvitation(
                    orgId: org.id, invitationId: request.invitationID, actor: caller.userId, now: .nowMillis)
                return Weft_V1_RevokeInvitationResponse()
            },
            .unary(service: Self.name, method: "ListMyInvitations", rest: [.get("/users/me/invitations")]) {
                (_: Weft_V1_ListMyInvitationsRequest, context) in
                let caller = try Caller(context)
                guard let user = try await deps.users.user(id: caller.userId) else {
                    throw RPCError(code: .unauthenticated, message: "the token's user no longer exists")
                }
                let now = Date()
                var response = Weft_V1_ListInvitationsResponse()
                for record in try await deps.orgs.openInvitations(email: user.email, now: now) {
                    let org = try await deps.orgs.organization(id: record.orgId)
                    response.invitations.append(Self.invitation(record, org: org, now: now))
                }
                return response
            },
            .unary(service: Self.name, method: "AcceptInvitation", rest: [.post("/invitations/{invitationId}/accept")]) {
                (request: Weft_V1_RespondToInvitationRequest, context) in
                let (record, org) = try await respond(request, context, accept: true)
                return organization(org, role: record.role)
            },
            .unary(service: Self.name, method: "DeclineInvitation", rest: [.post("/invitations/{invitationId}/decline")]) {
                (request: Weft_V1_RespondToInvitationRequest, context) in
                let (record, org) = try await respond(request, context, accept: false)
                return Self.invitation(record, org: org, now: Date())
            },
        ]
    }

    private func respond(_ request: Weft_V1_RespondToInvitationRequest, _ context: ServerContext, accept: Bool) async throws
        -> (InvitationRecord, OrganizationRecord)
    {
        let caller = try Caller(context)
        guard !request.invitationID.isEmpty else { throw APIError.required("invitation_id") }
        guard let user = try await deps.users.user(id: caller.userId) else {
            throw RPCError(code: .unauthenticated, message: "the token's user no longer exists")
        }
        // One answer for "no such invitation", "not yours", "expired" and
        // "answered already": an id reveals nothing.
        let record: InvitationRecord
        do {
            record = try await deps.orgs.respond(
                invitationId: request.invitationID, userId: user.id, email: user.email, accept: accept, now: .nowMillis)
        } catch StoreError.notFound {
            throw RPCError(code: .notFound, message: "no open invitation \(request.invitationID) for \(user.email)")
        }
        caller.audit?.note(org: record.orgId, resource: ("invitation", record.id))
        guard let org = try await deps.orgs.organization(id: record.orgId) else {
            throw RPCError(code: .notFound, message: "organization \(record.orgId) not found")
        }
        return (record, org)
    }

    static func member(_ membership: MembershipRecord, _ user: UserRecord) -> Weft_V1_Member {
        var member = Weft_V1_Member()
        member.userID = user.id
        member.email = user.email
        member.name = user.name
        member.role = membership.role.rawValue
        member.joinedAt = ProtoMapping.timestamp(membership.joinedAt)
        return member
    }

    func organization(_ org: OrganizationRecord, role: OrganizationRole) -> Weft_V1_Organization {
        var message = Weft_V1_Organization()
        message.id = org.id
        message.name = org.name
        message.plan = deps.quotas.plan(of: org).name
        message.role = role.rawValue
        message.createdAt = ProtoMapping.timestamp(org.createdAt)
        return message
    }

    static func invitation(_ record: InvitationRecord, org: OrganizationRecord?, now: Date) -> Weft_V1_Invitation {
        var message = Weft_V1_Invitation()
        message.id = record.id
        message.orgID = record.orgId
        message.orgName = org?.name ?? ""
        message.email = record.email
        message.role = record.role.rawValue
        message.status = record.status == .pending && record.expiresAt <= now ? "expired" : record.status.rawValue
        message.invitedBy = record.invitedBy
        message.createdAt = ProtoMapping.timestamp(record.createdAt)
        message.expiresAt = ProtoMapping.timestamp(record.expiresAt)
        return message
    }

    func usage(_ org: OrganizationRecord) async throws -> Weft_V1_OrganizationUsage {
        let plan = deps.quotas.plan(of: org)
        var response = Weft_V1_OrganizationUsage()
        response.orgID = org.id
        response.plan = plan.name
        response.workerSlots = Int32(clamping: deps.tenantSlots)
        let used: [String: Int64] = [
            "concurrent_executions": Int64(await deps.engine.runningExecutions(orgId: org.id)),
            "executions_per_day": try await deps.quotas.executionsToday(org),
            "workflows": Int64(try await deps.orgs.workflowCount(orgId: org.id)),
            "schedules": Int64(try await deps.schedules.scheduleCount(orgId: org.id)),
            "requests_per_minute": deps.quotas.requestsUsed(org),
        ]
        // log_bytes is not measured per organization yet: not reported.
        response.quotas = Plan.quotaNames.filter { used[$0] != nil }.map { name in
            var quota = Weft_V1_QuotaUsage()
            quota.name = name
            quota.used = used[name] ?? 0
            quota.limit = plan.limit(name)
            return quota
        }
        return response
    }
}
