public import Foundation

extension MemoryStore: OrganizationStore {
    public func organization(id: String) async throws -> OrganizationRecord? {
        state.withLock { $0.organizations[id] }
    }

    public func plansInUse() async throws -> Set<String> {
        state.withLock { Set($0.organizations.values.map(\.plan)) }
    }

    public func labelledWorkflows(orgs: Int, perOrg: Int) async throws -> [(orgId: String, workflows: [String])] {
        state.withLock { state in
            state.organizations.keys.sorted().prefix(max(0, orgs)).map { id in
                let names = state.workflows.values.filter { $0.orgId == id && $0.deletedAt == nil }
                    .sorted { $0.id < $1.id }.prefix(max(0, perOrg)).map(\.name)
                return (orgId: id, workflows: Array(names))
            }
        }
    }

    public func setPlan(orgId: String, plan: String) async throws {
        try state.withLock { state in
            guard state.organizations[orgId] != nil else { throw StoreError.notFound("no organization \(orgId)") }
            state.organizations[orgId]?.plan = plan
        }
    }

    public func memberships(userId: String) async throws -> [(MembershipRecord, OrganizationRecord)] {
        state.withLock { state in
            state.members.values.compactMap { $0[userId] }
                .sorted { ($0.joinedAt, $0.orgId) < ($1.joinedAt, $1.orgId) }
                .compactMap { membership in state.organizations[membership.orgId].map { (membership, $0) } }
        }
    }

    public func membership(orgId: String, userId: String) async throws -> MembershipRecord? {
        state.withLock { $0.members[orgId]?[userId] }
    }

    public func members(orgId: String) async throws -> [(MembershipRecord, UserRecord)] {
        state.withLock { state in
            (state.members[orgId] ?? [:]).values.sorted { ($0.joinedAt, $0.userId) < ($1.joinedAt, $1.userId) }
                .compactMap { membership in state.users[membership.userId].map { (membership, $0) } }
        }
    }

    public func removeMember(orgId: String, userId: String, actor: String) async throws {
        try state.withLock { state in
            guard let membership = state.members[orgId]?[userId] else {
                throw StoreError.notFound("user \(userId) is not a member of organization \(orgId)")
            }
            if membership.role == .admin, (state.members[orgId] ?? [:]).values.filter({ $0.role == .admin }).count == 1 {
                throw StoreError.conflict("organization \(orgId) must keep an admin")
            }
            let heir = actor != userId ? actor
                : (state.members[orgId] ?? [:]).values.filter { $0.role == .admin && $0.userId != userId }
                    .min { ($0.joinedAt, $0.userId) < ($1.joinedAt, $1.userId) }?.userId
            state.members[orgId]?[userId] = nil
            state.queueGrants = state.queueGrants.filter { !($0.value.orgId == orgId && $0.value.userId == userId) }
            for (id, workflow) in state.workflows where workflow.orgId == orgId {
                state.collaborators[id]?[userId] = nil
                if workflow.ownerId == userId, let heir {
                    state.workflows[id]?.ownerId = heir
                    state.collaborators[id]?[heir] = nil
                }
            }
            state.audit.append((resourceType: "organization", resourceId: orgId, actor: actor, action: "remove_member"))
        }
    }

    public func setMemberRole(orgId: String, userId: String, role: OrganizationRole, actor: String) async throws
        -> MembershipRecord
    {
        try state.withLock { state in
            guard var membership = state.members[orgId]?[userId] else {
                throw StoreError.notFound("user \(userId) is not a member of organization \(orgId)")
            }
            if membership.role == .admin, role != .admin,
                (state.members[orgId] ?? [:]).values.filter({ $0.role == .admin }).count == 1
            {
                throw StoreError.conflict("organization \(orgId) must keep an admin")
            }
            membership.role = role
            state.members[orgId]?[userId] = membership
            state.audit.append((resourceType: "organization", resourceId: orgId, actor: actor, action: "set_member_role"))
            return membership
        }
    }

    public func createInvitation(_ invitation: InvitationRecord, actor: String) async throws {
        try state.withLock { state in
            let email = invitation.email.lowercased()
            if state.invitations.values.contains(where: {
                $0.orgId == invitation.orgId && $0.email.lowercased() == email && $0.isOpen(at: invitation.createdAt)
            }) {
                throw StoreError.alreadyExists("an invitation to \(invitation.email) is pending")
            }
            state.invitations[invitation.id] = invitation
            state.audit.append((resourceType: "organization", resourceId: invitation.orgId, actor: actor, action: "invite"))
        }
    }

    public func invitation(id: String) async throws -> InvitationRecord? {
        state.withLock { $0.invitations[id] }
    }

    public func invitations(orgId: String) async throws -> [InvitationRecord] {
        state.withLock { state in
            state.invitations.values.filter { $0.orgId == orgId }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
    }

    public func openInvitations(email: String, now: Date) async throws -> [InvitationRecord] {
        state.withLock { state in
            state.invitations.values.filter { $0.email.lowercased() == email.lowercased() && $0.isOpen(at: now) }
                .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
    }

    public func respond(invitationId: String, userId: String, email: String, accept: Bool, now: Date) async throws
        -> InvitationRecord
    {
        try state.withLock { state in
            guard var invitation = state.invitations[invitationId], invitation.isOpen(at: now),
                invitation.email.lowercased() == email.lowercased()
            else { throw StoreError.notFound("no open invitation \(invitationId) for you") }
            invitation.status = accept ? .accepted : .declined
            invitation.respondedAt = now
            state.invitations[invitationId] = invitation
            if accept, state.members[invitation.orgId]?[userId] == nil {
                state.members[invitation.orgId, default: [:]][userId] = MembershipRecord(
                    orgId: invitation.orgId, userId: userId, role: invitation.role, joinedAt: now)
            }
            state.audit.append((
                resourceType: "organization", resourceId: invitation.orgId, actor: userId,
                action: accept ? "accept_invitation" : "decline_invitation"
            ))
            return invitation
        }
    }

    public func revokeInvitation(orgId: String, invitationId: String, actor: String, now: Date) async throws {
        try state.withLock { state in
            guard var invitation = state.invitations[invitationId], invitation.orgId == orgId, invitation.status == .pending
            else { throw StoreError.notFound("no pending invitation \(invitationId) in organization \(orgId)") }
            invitation.status = .revoked
            invitation.respondedAt = now
            state.invitations[invitationId] = invitation
            state.audit.append((resourceType: "organization", resourceId: orgId, actor: actor, action: "revoke_invitation"))
        }
    }

    public func queueGrant(orgId: String, queue: String, userId: String) async throws -> QueueGrantRecord? {
        state.withLock { $0.queueGrants["\(orgId)|\(queue)|\(userId)"] }
    }

    public func queueGrants(orgId: String, queue: String) async throws -> [QueueGrantRecord] {
        state.withLock { state in
            state.queueGrants.values.filter { $0.orgId == orgId && $0.queue == queue }.sorted { $0.userId < $1.userId }
        }
    }

    public func queueGrants(orgId: String, userId: String) async throws -> [QueueGrantRecord] {
        state.withLock { state in
            state.queueGrants.values.filter { $0.orgId == orgId && $0.userId == userId }.sorted { $0.queue < $1.queue }
        }
    }

    public func setQueueGrant(_ grant: QueueGrantRecord) async throws {
        state.withLock { $0.queueGrants["\(grant.orgId)|\(grant.queue)|\(grant.userId)"] = grant }
    }

    public func deleteQueueGrant(orgId: String, queue: String, userId: String) async throws {
        try state.withLock { state in
            guard state.queueGrants.removeValue(forKey: "\(orgId)|\(queue)|\(userId)") != nil else {
                throw StoreError.notFound("user \(userId) has no grant on queue \(queue)")
            }
        }
    }

    public func workflowCount(orgId: String) async throws -> Int {
        state.withLock { state in state.workflows.values.filter { $0.orgId == orgId && $0.deletedAt == nil }.count }
    }

    public func executionCount(orgId: String, since: Date) async throws -> Int {
        state.withLock { state in
            state.executions.values.filter { execution in
                execution.createdAt >= since && state.workflows[execution.workflowId]?.orgId == orgId
            }.count
        }
    }
}
