public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: OrganizationStore {
    public func organization(id: String) async throws -> OrganizationRecord? {
        try await read("get_organization") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM organizations WHERE id = ?", arguments: [id]).map(Self.organizationRecord)
        }
    }

    public func plansInUse() async throws -> Set<String> {
        try await read("plans_in_use") { db in Set(try String.fetchAll(db, sql: "SELECT DISTINCT plan FROM organizations")) }
    }

    public func labelledWorkflows(orgs: Int, perOrg: Int) async throws -> [(orgId: String, workflows: [String])] {
        try await read("labelled_workflows") { db in
            let ids = try String.fetchAll(
                db, sql: "SELECT id FROM organizations ORDER BY id LIMIT ?", arguments: [max(0, orgs)])
            // One index range (workflows_by_org) per organization.
            let names = try db.cachedStatement(
                sql: "SELECT name FROM workflows WHERE org_id = ? AND deleted_at IS NULL ORDER BY id LIMIT ?")
            return try ids.map { id in
                (orgId: id, workflows: try String.fetchAll(names, arguments: [id, max(0, perOrg)]))
            }
        }
    }

    public func setPlan(orgId: String, plan: String) async throws {
        try await writeMemberships("set_plan") { db in
            try db.execute(sql: "UPDATE organizations SET plan = ? WHERE id = ?", arguments: [plan, orgId])
            guard db.changesCount == 1 else { throw StoreError.notFound("no organization \(orgId)") }
            try Self.audit(
                db, actor: "operator", action: "set_plan", resourceType: "organization", resourceId: orgId, at: Date(),
                detail: .object(["plan": .string(plan)]))
        }
    }

    public func memberships(userId: String) async throws -> [(MembershipRecord, OrganizationRecord)] {
        let (cached, epoch) = membershipCache.lookup(userId)
        if let cached { return cached }
        let started = ContinuousClock.now
        let memberships = try await read("get_memberships") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT m.org_id, m.user_id, m.role, m.joined_at, o.id, o.name, o.plan, o.created_at
                    FROM org_members m JOIN organizations o ON o.id = m.org_id
                    WHERE m.user_id = ? ORDER BY m.joined_at, m.org_id
                    """,
                arguments: [userId]
            ).map { (Self.membershipRecord($0), Self.organizationRecord($0)) }
        }
        membershipCache.fill(userId, memberships, epoch: epoch, readStarted: started)
        return memberships
    }

    /// From the user's memberships (cached): the same rows.
    public func membership(orgId: String, userId: String) async throws -> MembershipRecord? {
        try await memberships(userId: userId).first { $0.0.orgId == orgId }?.0
    }

    /// A write that changes memberships or organizations: the membership
    /// cache is cleared before it and again once it committed or failed.
    func writeMemberships<T: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> T) async throws
        -> T
    {
        membershipCache.invalidate()
        defer { membershipCache.invalidate() }
        return try await write(operation, body)
    }

    public func members(orgId: String) async throws -> [(MembershipRecord, UserRecord)] {
        try await read("get_members") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT m.org_id, m.user_id, m.role, m.joined_at, u.*
                    FROM org_members m JOIN users u ON u.id = m.user_id
                    WHERE m.org_id = ? ORDER BY m.joined_at, m.user_id
                    """,
                arguments: [orgId]
            ).map { (Self.membershipRecord($0), Self.userRecord($0)) }
        }
    }

    public func removeMember(orgId: String, userId: String, actor: String) async throws {
        try await writeMemberships("remove_member") { db in
            guard let role = try String.fetchOne(
                db, sql: "SELECT role FROM org_members WHERE org_id = ? AND user_id = ?", arguments: [orgId, userId])
            else { throw StoreError.notFound("user \(userId) is not a member of organization \(orgId)") }
            if role == "admin" {
                let admins = try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM org_members WHERE org_id = ? AND role = 'admin'", arguments: [orgId]) ?? 0
                if admins <= 1 { throw StoreError.conflict("organization \(orgId) must keep an admin") }
            }
            let heir: String? = actor != userId ? actor
                : try String.fetchOne(
                    db,
                    sql: """
                        SELECT user_id FROM org_members WHERE org_id = ? AND role = 'admin' AND user_id != ?
                        ORDER BY joined_at, user_id LIMIT 1
                        """,
                    arguments: [orgId, userId])
            try db.execute(sql: "DELETE FROM org_members WHERE org_id = ? AND user_id = ?", arguments: [orgId, userId])
            try db.execute(sql: "DELETE FROM queue_grants WHERE org_id = ? AND user_id = ?", arguments: [orgId, userId])
            try db.execute(
                sql: """
                    DELETE FROM workflow_collaborators WHERE user_id = ?
                    AND workflow_id IN (SELECT id FROM workflows WHERE org_id = ?)
                    """,
                arguments: [userId, orgId])
            if let heir {
                // The heir owns them now: a collaborator role of theirs there is moot.
                try db.execute(
                    sql: """
                        DELETE FROM workflow_collaborators WHERE user_id = ?
                        AND workflow_id IN (SELECT id FROM workflows WHERE org_id = ? AND user_id = ?)
                        """,
                    arguments: [heir, orgId, userId])
                try db.execute(
                    sql: "UPDATE workflows SET user_id = ? WHERE org_id = ? AND user_id = ?", arguments: [heir, orgId, userId])
            }
            try Self.audit(
                db, actor: actor, action: "remove_member", resourceType: "organization", resourceId: orgId, at: Date(),
                detail: .object(["user_id": .string(userId)]))
        }
    }

    public func setMemberRole(orgId: String, userId: String, role: OrganizationRole, actor: String) async throws
        -> MembershipRecord
    {
        try await writeMemberships("set_member_role") { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT * FROM org_members WHERE org_id = ? AND user_id = ?", arguments: [orgId, userId])
            else { throw StoreError.notFound("user \(userId) is not a member of organization \(orgId)") }
            var membership = Self.membershipRecord(row)
            if membership.role == .admin, role != .admin {
                let admins = try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM org_members WHERE org_id = ? AND role = 'admin'", arguments: [orgId]) ?? 0
                if admins <= 1 { throw StoreError.conflict("organization \(orgId) must keep an admin") }
            }
            try db.execute(
                sql: "UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ?", arguments: [role.rawValue, orgId, userId])
            membership.role = role
            try Self.audit(
                db, actor: actor, action: "set_member_role", resourceType: "organization", resourceId: orgId, at: Date(),
                detail: .object(["user_id": .string(userId), "role": .string(role.rawValue)]))
            return membership
        }
    }

    public func createInvitation(_ invitation: InvitationRecord, actor: String) async throws {
        try await write("create_invitation") { db in
            let open = try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM org_invitations
                    WHERE org_id = ? AND email = ? AND status = 'pending' AND expires_at > ?
                    """,
                arguments: [invitation.orgId, invitation.email, invitation.createdAt]) ?? 0
            if open > 0 { throw StoreError.alreadyExists("an invitation to \(invitation.email) is pending") }
            try db.execute(
                sql: """
                    INSERT INTO org_invitations (id, org_id, email, role, invited_by, status, created_at, expires_at)
                    VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)
                    """,
                arguments: [
                    invitation.id, invitation.orgId, invitation.email, invitation.role.rawValue, invitation.invitedBy,
                    invitation.createdAt, invitation.expiresAt,
                ])
            try Self.audit(
                db, actor: actor, action: "invite", resourceType: "organization", resourceId: invitation.orgId,
                at: invitation.createdAt, detail: .object(["invitation_id": .string(invitation.id)]))
        }
    }

    public func invitation(id: String) async throws -> InvitationRecord? {
        try await read("get_invitation") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM org_invitations WHERE id = ?", arguments: [id]).map(Self.invitationRecord)
        }
    }

    public func invitations(orgId: String) async throws -> [InvitationRecord] {
        try await read("get_invitations") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM org_invitations WHERE org_id = ? ORDER BY created_at, id", arguments: [orgId]
            ).map(Self.invitationRecord)
        }
    }

    public func openInvitations(email: String, now: Date) async throws -> [InvitationRecord] {
        try await read("get_open_invitations") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM org_invitations WHERE email = ? AND status = 'pending' AND expires_at > ?
                    ORDER BY created_at, id
                    """,
                arguments: [email, now]
            ).map(Self.invitationRecord)
        }
    }

    public func respond(invitationId: String, userId: String, email: String, accept: Bool, now: Date) async throws
        -> InvitationRecord
    {
        try await writeMemberships("respond_invitation") { db in
            guard
                var invitation = try Row.fetchOne(
                    db, sql: "SELECT * FROM org_invitations WHERE id = ?", arguments: [invitationId]
                ).map(Self.invitationRecord),
                invitation.isOpen(at: now), invitation.email.lowercased() == email.lowercased()
            else { throw StoreError.notFound("no open invitation \(invitationId) for you") }
            invitation.status = accept ? .accepted : .declined
            invitation.respondedAt = now
            try db.execute(
                sql: "UPDATE org_invitations SET status = ?, responded_at = ? WHERE id = ?",
                arguments: [invitation.status.rawValue, now, invitationId])
            if accept {
                try db.execute(
                    sql: """
                        INSERT INTO org_members (org_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)
                        ON CONFLICT (org_id, user_id) DO NOTHING
                        """,
                    arguments: [invitation.orgId, userId, invitation.role.rawValue, now])
            }
            try Self.audit(
                db, actor: userId, action: accept ? "accept_invitation" : "decline_invitation", resourceType: "organization",
                resourceId: invitation.orgId, at: now, detail: .object(["invitation_id": .string(invitationId)]))
            return invitation
        }
    }

    public func revokeInvitation(orgId: String, invitationId: String, actor: String, now: Date) async throws {
        try await write("revoke_invitation") { db in
            try db.execute(
                sql: """
                    UPDATE org_invitations SET status = 'revoked', responded_at = ?
                    WHERE id = ? AND org_id = ? AND status = 'pending'
                    """,
                arguments: [now, invitationId, orgId])
            guard db.changesCount == 1 else {
                throw StoreError.notFound("no pending invitation \(invitationId) in organization \(orgId)")
            }
            try Self.audit(
                db, actor: actor, action: "revoke_invitation", resourceType: "organization", resourceId: orgId, at: now,
                detail: .object(["invitation_id": .string(invitationId)]))
        }
    }

    public func queueGrant(orgId: String, queue: String, userId: String) async throws -> QueueGrantRecord? {
        try await read("get_queue_grant") { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM queue_grants WHERE org_id = ? AND queue = ? AND user_id = ?",
                arguments: [orgId, queue, userId]
            ).map(Self.queueGrantRecord)
        }
    }

    public func queueGrants(orgId: String, queue: String) async throws -> [QueueGrantRecord] {
        try await read("get_queue_grants") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM queue_grants WHERE org_id = ? AND queue = ? ORDER BY user_id", arguments: [orgId, queue]
            ).map(Self.queueGrantRecord)
        }
    }

    public func queueGrants(orgId: String, userId: String) async throws -> [QueueGrantRecord] {
        try await read("get_user_queue_grants") { db in
            try Row.fetchAll(
                db, sql: "SELECT * FROM queue_grants WHERE org_id = ? AND user_id = ? ORDER BY queue", arguments: [orgId, userId]
            ).map(Self.queueGrantRecord)
        }
    }

    public func setQueueGrant(_ grant: QueueGrantRecord) async throws {
        try await write("set_queue_grant") { db in
            try db.execute(
                sql: """
                    INSERT INTO queue_grants (org_id, queue, user_id, submit, poll, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (org_id, queue, user_id) DO UPDATE SET submit = excluded.submit, poll = excluded.poll,
                        updated_at = excluded.updated_at
                    """,
                arguments: [grant.orgId, grant.queue, grant.userId, grant.submit, grant.poll, grant.updatedAt])
        }
    }

    public func deleteQueueGrant(orgId: String, queue: String, userId: String) async throws {
        try await write("delete_queue_grant") { db in
            try db.execute(
                sql: "DELETE FROM queue_grants WHERE org_id = ? AND queue = ? AND user_id = ?", arguments: [orgId, queue, userId])
            guard db.changesCount == 1 else { throw StoreError.notFound("user \(userId) has no grant on queue \(queue)") }
        }
    }

    static func queueGrantRecord(_ row: Row) -> QueueGrantRecord {
        QueueGrantRecord(
            orgId: row["org_id"], queue: row["queue"], userId: row["user_id"], submit: row["submit"], poll: row["poll"],
            updatedAt: row["updated_at"])
    }

    public func workflowCount(orgId: String) async throws -> Int {
        try await read("count_workflows") { db in
            try Int.fetchOne(
                db, sql: "SELECT COUNT(*) FROM workflows WHERE org_id = ? AND deleted_at IS NULL", arguments: [orgId]) ?? 0
        }
    }

    public func executionCount(orgId: String, since: Date) async throws -> Int {
        try await read("count_executions") { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM workflow_executions e JOIN workflows w ON w.id = e.workflow_id
                    WHERE w.org_id = ? AND e.created_at >= ?
                    """,
                arguments: [orgId, since]) ?? 0
        }
    }

    static func organizationRecord(_ row: Row) -> OrganizationRecord {
        OrganizationRecord(id: row["id"], name: row["name"], plan: row["plan"], createdAt: row["created_at"])
    }

    static func membershipRecord(_ row: Row) -> MembershipRecord {
        MembershipRecord(
            orgId: row["org_id"], userId: row["user_id"],
            role: OrganizationRole(rawValue: row["role"] as String) ?? .member, joinedAt: row["joined_at"])
    }

    static func invitationRecord(_ row: Row) -> InvitationRecord {
        InvitationRecord(
            id: row["id"], orgId: row["org_id"], email: row["email"],
            role: OrganizationRole(rawValue: row["role"] as String) ?? .member, invitedBy: row["invited_by"],
            status: InvitationRecord.Status(rawValue: row["status"] as String) ?? .revoked, createdAt: row["created_at"],
            expiresAt: row["expires_at"], respondedAt: row["responded_at"])
    }
}
