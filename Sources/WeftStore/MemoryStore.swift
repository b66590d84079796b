public import Foundation
import Synchronization

/// Every store protocol kept in memory, behind one lock: the same contract
/// as the SQLite store (the conformance suite runs against both), without
/// files or threads. Engine and API tests run on it with a manual clock, so
/// they need no sleeps and no polling; nothing survives the process.
///
/// Writes run under the lock from start to end, so each is one atomic step,
/// as a transaction is. `applyEach` keeps a copy of the state before each
/// unit and puts it back when the unit fails (a savepoint).
public final class MemoryStore: Sendable {
    struct State {
        var users: [String: UserRecord] = [:]
        /// Lower-cased email -> user id (emails are unique, ignoring case).
        var usersByEmail: [String: String] = [:]
        /// With their live tasks; a deleted one keeps its `deletedAt`.
        var workflows: [String: WorkflowRecord] = [:]
        /// Every task row ever written, live or retired, by id (task ids are
        /// unique across workflows).
        var taskOwners: [String: String] = [:]
        var versions: [String: [WorkflowVersionRecord]] = [:]
        var collaborators: [String: [String: CollaboratorRecord]] = [:]
        var executions: [String: ExecutionRecord] = [:]
        /// "workflow id|idempotency key" -> execution id.
        var idempotencyKeys: [String: String] = [:]
        var queue = MemoryQueue()
        var logs: [String: [LogRecord]] = [:]
        var audit: [(resourceType: String, resourceId: String, actor: String, action: String)] = []
        var organizations: [String: OrganizationRecord] = [:]
        /// org id -> user id -> membership.
        var members: [String: [String: MembershipRecord]] = [:]
        var invitations: [String: InvitationRecord] = [:]
        /// "org id|name" -> sealed secret.
        var secrets: [String: SecretRecord] = [:]
        /// The API-level audit log (`AuditStore`), oldest first.
        var auditLog: [AuditEvent] = []
        /// "org|queue|user" -> grant.
        var queueGrants: [String: QueueGrantRecord] = [:]
        /// By hash.
        var refreshTokens: [String: RefreshTokenRecord] = [:]
        var tokenVersions: [String: Int] = [:]
        var apiKeys: [String: ApiKeyRecord] = [:]
        var schedules: [String: ScheduleRecord] = [:]
        var backfills: [String: BackfillRecord] = [:]
        var triggers: [String: TriggerRecord] = [:]
        /// "org id|event id" -> the executions it started, and when.
        var events: [String: (executions: [String], at: Date)] = [:]
        var subscriptions: [String: SubscriptionRecord] = [:]
        var integrations: [String: IntegrationRecord] = [:]
        /// The outbox, by row id, with delivery id -> row id.
        var outbox: [Int64: DeliveryRecord] = [:]
        var outboxIds: [String: Int64] = [:]
        var nextOutboxRow: Int64 = 1
        var notifications: [String: NotificationRecord] = [:]
        var notificationDeliveries: Set<String> = []
        /// "org id|event" -> override.
        var templates: [String: TemplateRecord] = [:]
        /// Rollups of finished executions, kept as they finish.
        var rollups = RollupBatch()
        /// "scope|id" -> budget.
        var budgets: [String: BudgetRecord] = [:]
    }

    let state = Mutex(State())

    public init() {}

    /// Audit entries of one resource, oldest first (as `SQLiteStore`'s).
    public func auditEntries(resourceType: String, resourceId: String) -> [(actor: String, action: String)] {
        state.withLock { state in
            state.audit.filter { $0.resourceType == resourceType && $0.resourceId == resourceId }
                .map { (actor: $0.actor, action: $0.action) }
        }
    }
}

extension MemoryStore.State {
    mutating func audit(actor: String, action: String, workflowId: String) {
        audit.append((resourceType: "workflow", resourceId: workflowId, actor: actor, action: action))
    }
}

extension MemoryStore: UserStore {
    public func createUser(_ user: UserRecord, organization: OrganizationRecord?) async throws {
        try state.withLock { state in
            let email = user.email.lowercased()
            guard state.usersByEmail[email] == nil else {
                throw StoreError.alreadyExists("a user with email \(user.email) already exists")
            }
            state.users[user.id] = user
            state.usersByEmail[email] = user.id
            state.audit.append((resourceType: "user", resourceId: user.id, actor: user.id, action: "register"))
            if let organization {
                state.organizations[organization.id] = organization
                state.members[organization.id] = [
                    user.id: MembershipRecord(orgId: organization.id, userId: user.id, role: .admin, joinedAt: user.createdAt)
                ]
            }
        }
    }

    public func user(id: String) async throws -> UserRecord? {
        state.withLock { $0.users[id] }
    }

    public func user(email: String) async throws -> UserRecord? {
        state.withLock { state in state.usersByEmail[email.lowercased()].flatMap { state.users[$0] } }
    }
}

extension MemoryStore: LogStore {
    @discardableResult
    public func append(_ entries: [LogRecord]) async throws -> [LogRecord] {
        state.withLock { state in
            entries.map { entry in
                var stored = entry
                stored.sequence = (state.logs[entry.executionId]?.last?.sequence ?? 0) + 1
                state.logs[entry.executionId, default: []].append(stored)
                return stored
            }
        }
    }

    public func entries(_ query: LogQuery) async throws -> [LogRecord] {
        state.withLock { state in
            let matching = (state.logs[query.executionId] ?? []).lazy.filter { entry in
                entry.sequence > query.afterSequence && (query.taskId == nil || entry.taskId == query.taskId)
                    && (query.minLevel.map { entry.level >= $0 } ?? true)
            }
            return Array(matching.prefix(max(0, query.limit)))
        }
    }

    @discardableResult
    public func purge(olderThan date: Date, limit: Int) async throws -> Int {
        state.withLock { state in
            // The oldest first, as the SQLite store deletes them.
            let old = state.logs.values.flatMap { $0 }.filter { $0.createdAt < date }
                .sorted { $0.createdAt < $1.createdAt }.prefix(max(0, limit))
            var doomed: [String: Set<Int64>] = [:]
            for entry in old { doomed[entry.executionId, default: []].insert(entry.sequence) }
            for (id, sequences) in doomed {
                let kept = state.logs[id, default: []].filter { !sequences.contains($0.sequence) }
                state.logs[id] = kept.isEmpty ? nil : kept
            }
            return old.count
        }
    }
}
