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
    /// Sessions, token versions and API keys.
    let credentials: any CredentialStore
    /// Where password hashes run (never on the shared executors).
    let hashing: PasswordHashPool
    let logins: LoginLimiter
    let refreshLifetime: TimeInterval
    let metrics: WeftMetrics
    let orgs: any OrganizationStore
    let quotas: QuotaBook
    /// In-process worker slots one organization may hold (its fair share).
    let tenantSlots: Int
    let vault: SecretVault
    let audit: AuditLog
    let streams: StreamLimiter
    /// Schedules, backfills, triggers and published events.
    let schedules: any ScheduleStore
    let scheduler: Scheduler
    let schedulerMetrics: SchedulerMetrics
    /// Triggers for the webhook path, and their firing counts.
    let triggers: TriggerBook
    /// Subscriptions, integrations, deliveries, in-app notifications, templates.
    let notifications: NotificationServices
    /// Rollups and budgets (AnalyticsService).
    let analytics: any AnalyticsStore
    let analyticsMetrics: AnalyticsMetrics

    /// Admission control for webhooks (ExecuteWorkflow and PublishEvent are
    /// refused earlier, by `AdmissionInterceptor`): RESOURCE_EXHAUSTED
    /// (HTTP 429) with `retry-after` while the engine is past its knee.
    func admissionRefusal(source: String) -> RPCError? {
        engine.admit(source: source).map { RPCError.overloaded($0.description, retryAfter: $0.retryAfter) }
    }

    /// The organization with the caller's membership, NOT_FOUND when they
    /// are not a member (never revealing that it exists), PERMISSION_DENIED
    /// when their role is below `needed`.
    func organization(_ id: String, caller: Caller, needs needed: OrganizationRole) async throws
        -> (OrganizationRecord, MembershipRecord)
    {
        guard !id.isEmpty else { throw APIError.required("org_id") }
        guard let membership = try await orgs.membership(orgId: id, userId: caller.userId),
            let org = try await orgs.organization(id: id)
        else { throw RPCError(code: .notFound, message: "organization \(id) not found") }
        caller.audit?.note(org: org.id)
        if caller.audit?.current.resourceType.isEmpty ?? false { caller.audit?.note(resource: ("organization", org.id)) }
        guard membership.role >= needed else {
            throw RPCError(
                code: .permissionDenied,
                message: "your role in organization \(id) is \(membership.role.rawValue); this needs \(needed.rawValue)")
        }
        return (org, membership)
    }

    /// The organization a caller acts in when a request names none: the
    /// first they joined (the one created at their registration).
    func homeOrganization(_ caller: Caller) async throws -> (OrganizationRecord, MembershipRecord) {
        guard let first = try await orgs.memberships(userId: caller.userId).first else {
            throw RPCError(code: .failedPrecondition, message: "you are not a member of any organization")
        }
        return (first.1, first.0)
    }

    /// `org_id` of a request, or the caller's own organization when empty.
    func organizationOrHome(_ id: String, caller: Caller, needs needed: OrganizationRole) async throws
        -> (OrganizationRecord, MembershipRecord)
    {
        if id.isEmpty {
            let home = try await homeOrganization(caller)
            caller.audit?.note(org: home.0.id)
            guard home.1.role >= needed else {
                throw RPCError(code: .permissionDenied, message: "this needs the \(needed.rawValue) role in organization \(home.0.id)")
            }
            return home
        }
        return try await organization(id, caller: caller, needs: needed)
    }

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
        caller.audit?.note(org: workflow.orgId, resource: ("workflow", id))
        guard role >= needed else {
            throw RPCError(
                code: .permissionDenied,
                message: "your role on workflow \(id) is \(role.rawValue); this needs \(needed.rawValue)")
        }
        return (workflow, role)
    }

    /// What a caller may do with an organization's external queues: all
    /// (an org admin) or the queues granted to them.
    struct QueueRights: Sendable {
        let orgId: String
        let all: Bool
        let submit: Set<String>
        let poll: Set<String>

        /// Refuses a definition that puts work on a queue the caller may not
        /// submit to: every external task that is new or changed (its id or
        /// config) needs the grant; tasks kept exactly as they were do not.
        func checkSubmit(new tasks: [TaskRecord], current: [TaskRecord]) throws {
            guard !all else { return }
            let unchanged = Set(current.filter { $0.action == .external }.map { $0.id + "\u{0}" + $0.config.jsonText() })
            let touched = tasks.filter { $0.action == .external && !unchanged.contains($0.id + "\u{0}" + $0.config.jsonText()) }
            let queues = Set(touched.compactMap { $0.config["queue"]?.stringValue })
            for queue in queues.sorted() where !submit.contains(queue) {
                throw RPCError(
                    code: .permissionDenied,
                    message: "you may not put tasks on queue \"\(queue)\" of organization \(orgId); an admin of the organization grants submit on it")
            }
        }

        func mayPoll(_ queue: String) -> Bool { all || poll.contains(queue) }
    }

    func queueRights(orgId: String, caller: Caller) async throws -> QueueRights {
        let rights = try await userQueueRights(orgId: orgId, caller: caller)
        // An API key narrows them to its queues, in its organization.
        guard let key = caller.key, !key.scopes.contains(.admin) else { return rights }
        let home = key.orgId.isEmpty ? try await orgs.memberships(userId: caller.userId).first?.1.id : key.orgId
        let poll = Set(key.queues.filter { key.mayPoll(queue: $0, orgId: orgId, home: home) && rights.mayPoll($0) })
        return QueueRights(orgId: orgId, all: false, submit: [], poll: poll)
    }

    private func userQueueRights(orgId: String, caller: Caller) async throws -> QueueRights {
        guard let membership = try await orgs.membership(orgId: orgId, userId: caller.userId) else {
            return QueueRights(orgId: orgId, all: false, submit: [], poll: [])
        }
        if membership.role == .admin { return QueueRights(orgId: orgId, all: true, submit: [], poll: []) }
        let grants = try await orgs.queueGrants(orgId: orgId, userId: caller.userId)
        return QueueRights(
            orgId: orgId, all: false, submit: Set(grants.filter(\.submit).map(\.queue)), poll: Set(grants.filter(\.poll).map(\.queue)))
    }

    /// The queue rights of the caller in a workflow's organization, for a
    /// write to it; the one read of the workflow also notes it in the
    /// call's audit event.
    func queueRights(workflowId: String, caller: Caller) async throws -> QueueRights {
        let org = (try await workflows.workflow(id: workflowId, includeDeleted: true))?.orgId ?? ""
        caller.audit?.note(org: org, resource: ("workflow", workflowId))
        return try await queueRights(orgId: org, caller: caller)
    }

    /// Notes a workflow a write names in the call's audit event (the write
    /// itself checks the caller's role inside the store).
    func noteWorkflow(_ id: String, caller: Caller) async {
        guard let audit = caller.audit, !id.isEmpty else { return }
        let org = (try? await workflows.workflow(id: id, includeDeleted: true))?.orgId
        audit.note(org: org, resource: ("workflow", id))
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
