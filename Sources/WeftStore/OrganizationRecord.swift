public import Foundation

/// A tenant: its workflows, members and plan (which sets its quotas).
public struct OrganizationRecord: Sendable, Hashable {
    public var id: String
    public var name: String
    public var plan: String
    public var createdAt: Date

    public init(id: String, name: String, plan: String, createdAt: Date) {
        self.id = id
        self.name = name
        self.plan = plan
        self.createdAt = createdAt
    }
}

public enum OrganizationRole: String, Sendable, Hashable, CaseIterable, Comparable {
    case member, admin

    public static func < (a: Self, b: Self) -> Bool { a == .member && b == .admin }
}

public struct MembershipRecord: Sendable, Hashable {
    public var orgId: String
    public var userId: String
    public var role: OrganizationRole
    public var joinedAt: Date

    public init(orgId: String, userId: String, role: OrganizationRole, joinedAt: Date) {
        self.orgId = orgId
        self.userId = userId
        self.role = role
        self.joinedAt = joinedAt
    }
}

/// An invitation to join an organization, addressed to an email. Only the
/// account with that email can accept it, and only while it is pending.
public struct InvitationRecord: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable {
        case pending, accepted, declined, revoked
    }

    public var id: String
    public var orgId: String
    public var email: String
    public var role: OrganizationRole
    public var invitedBy: String
    public var status: Status
    public var createdAt: Date
    public var expiresAt: Date
    public var respondedAt: Date?

    public init(
        id: String, orgId: String, email: String, role: OrganizationRole, invitedBy: String, status: Status = .pending,
        createdAt: Date, expiresAt: Date, respondedAt: Date? = nil
    ) {
        self.id = id
        self.orgId = orgId
        self.email = email
        self.role = role
        self.invitedBy = invitedBy
        self.status = status
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.respondedAt = respondedAt
    }

    /// Pending and not past its expiry.
    public func isOpen(at now: Date) -> Bool { status == .pending && expiresAt > now }
}

/// Who may put tasks on an organization's external queue (`submit`) and
/// take them (`poll`). Org admins need none.
public struct QueueGrantRecord: Sendable, Hashable {
    public var orgId: String
    public var queue: String
    public var userId: String
    public var submit: Bool
    public var poll: Bool
    public var updatedAt: Date

    public init(orgId: String, queue: String, userId: String, submit: Bool, poll: Bool, updatedAt: Date) {
        self.orgId = orgId
        self.queue = queue
        self.userId = userId
        self.submit = submit
        self.poll = poll
        self.updatedAt = updatedAt
    }
}

/// Organizations, memberships and invitations.
///
/// Nobody joins an organization without accepting an invitation addressed
/// to their own email (except its creator); an organization always keeps
/// at least one admin.
public protocol OrganizationStore: Sendable {
    func organization(id: String) async throws -> OrganizationRecord?
    /// The plan names organizations are on ("" for the server's default).
    func plansInUse() async throws -> Set<String>
    /// The first `orgs` organizations by creation, each with the names of
    /// its first `perOrg` live workflows by creation (ids sort by creation
    /// time): the metrics' labelled sets, the same on every replica.
    func labelledWorkflows(orgs: Int, perOrg: Int) async throws -> [(orgId: String, workflows: [String])]
    /// Puts the organization on a plan ("" is the server's default);
    /// `notFound` if there is none.
    func setPlan(orgId: String, plan: String) async throws
    /// The caller's organizations with their role, oldest membership first
    /// (the first is the one created at registration).
    func memberships(userId: String) async throws -> [(MembershipRecord, OrganizationRecord)]
    func membership(orgId: String, userId: String) async throws -> MembershipRecord?
    /// Members with their accounts, oldest first.
    func members(orgId: String) async throws -> [(MembershipRecord, UserRecord)]
    /// Ends a membership and everything it gave: the user's collaborator
    /// roles on the organization's workflows go, and the workflows they own
    /// there pass to `actor` (an admin removing them) or, when they leave,
    /// to the organization's longest-standing other admin. Throws
    /// `StoreError.conflict` when it would leave the organization without
    /// an admin; `notFound` if not a member.
    func removeMember(orgId: String, userId: String, actor: String) async throws
    /// Changes a member's role; `conflict` when it would leave no admin,
    /// `notFound` if not a member.
    func setMemberRole(orgId: String, userId: String, role: OrganizationRole, actor: String) async throws -> MembershipRecord
    /// Throws `alreadyExists` when a pending invitation for that email is open.
    func createInvitation(_ invitation: InvitationRecord, actor: String) async throws
    func invitation(id: String) async throws -> InvitationRecord?
    func invitations(orgId: String) async throws -> [InvitationRecord]
    /// Pending, unexpired invitations addressed to `email` (any case).
    func openInvitations(email: String, now: Date) async throws -> [InvitationRecord]
    /// Accepts (adds the membership) or declines an open invitation in one
    /// transaction. `notFound` unless it is open and addressed to `email`.
    func respond(invitationId: String, userId: String, email: String, accept: Bool, now: Date) async throws
        -> InvitationRecord
    /// Marks a pending invitation revoked; `notFound` otherwise.
    func revokeInvitation(orgId: String, invitationId: String, actor: String, now: Date) async throws
    /// Live workflows of the organization (the `workflows` quota).
    func workflowCount(orgId: String) async throws -> Int
    /// Executions of the organization's workflows created at or after `since`.
    func executionCount(orgId: String, since: Date) async throws -> Int
    func queueGrant(orgId: String, queue: String, userId: String) async throws -> QueueGrantRecord?
    func queueGrants(orgId: String, queue: String) async throws -> [QueueGrantRecord]
    /// Every grant a user holds in an organization.
    func queueGrants(orgId: String, userId: String) async throws -> [QueueGrantRecord]
    /// Creates or replaces the grant.
    func setQueueGrant(_ grant: QueueGrantRecord) async throws
    /// `notFound` when there is none.
    func deleteQueueGrant(orgId: String, queue: String, userId: String) async throws
}
