public import Foundation

/// Accounts.
public protocol UserStore: Sendable {
    /// Throws `StoreError.alreadyExists` if the email (case-insensitive) is
    /// taken. With `organization`, creates it in the same transaction with
    /// the user as its admin (registration).
    func createUser(_ user: UserRecord, organization: OrganizationRecord?) async throws
    func user(id: String) async throws -> UserRecord?
    func user(email: String) async throws -> UserRecord?
}

/// Workflow definitions, their tasks, versions, collaborators and search.
/// Every write is one transaction that also records a version snapshot, an
/// audit entry and the search index row, so they never disagree.
public protocol WorkflowStore: Sendable {
    /// Stores a new workflow (version 1) with its tasks.
    func createWorkflow(_ workflow: WorkflowRecord, actor: String) async throws -> WorkflowRecord
    /// The workflow with its tasks; nil if missing or deleted (unless `includeDeleted`).
    func workflow(id: String, includeDeleted: Bool) async throws -> WorkflowRecord?
    /// Replaces name, description and tasks; version + 1. Throws
    /// `StoreError.conflict` if `expectedVersion` is given and differs.
    func replaceWorkflow(_ workflow: WorkflowRecord, expectedVersion: Int?, actor: String) async throws -> WorkflowRecord
    /// Read-modify-write in one transaction: `change` gets the current
    /// definition (with tasks) and edits it; the result is stored as the next
    /// version. Errors thrown by `change` abort the write and are rethrown.
    ///
    /// `needs`: the role the actor must hold, checked inside the transaction
    /// (nil for the system itself). Without any role the workflow is "not
    /// found"; with a lower one the write is refused (`permissionDenied`).
    func modifyWorkflow(
        id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?,
        _ change: @escaping @Sendable (inout WorkflowRecord) throws -> Void
    ) async throws -> WorkflowRecord
    /// Soft delete: hidden from the API, executions and versions kept.
    func deleteWorkflow(id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?) async throws
    func listWorkflows(_ query: WorkflowQuery) async throws -> Page<WorkflowRecord>
    /// Ranked full-text search over names, descriptions and task names.
    func searchWorkflows(text: String, visibleTo userId: String, limit: Int, cursor: String?) async throws -> Page<SearchHit>
    /// A live task and the id of its (live) workflow.
    func task(id: String) async throws -> TaskRecord?
    /// The user's role on the workflow, nil if none.
    func role(userId: String, workflowId: String) async throws -> WorkflowRole?
    /// Grants a role (viewer or editor). Throws `alreadyExists` if the user
    /// already has one, `notFound` if the user does not exist.
    func addCollaborator(_ collaborator: CollaboratorRecord, actor: String) async throws
    func updateCollaborator(workflowId: String, userId: String, role: WorkflowRole, actor: String) async throws
    func removeCollaborator(workflowId: String, userId: String, actor: String) async throws
    /// Collaborators (not the owner) with their accounts, oldest first.
    func collaborators(workflowId: String) async throws -> [(CollaboratorRecord, UserRecord)]
    /// A stored version by id (`ver_…`) or number ("3").
    func workflowVersion(workflowId: String, versionId: String) async throws -> WorkflowVersionRecord?
    /// Labels the current version (e.g. "release 1.2").
    func labelVersion(workflowId: String, label: String, actor: String) async throws -> WorkflowVersionRecord
    /// Makes an old version's definition current again, as a new version.
    func rollbackWorkflow(id: String, to versionId: String, actor: String, needs: WorkflowRole?) async throws
        -> (WorkflowRecord, WorkflowVersionRecord)
    func listVersions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<WorkflowVersionRecord>
}

extension UserStore {
    public func createUser(_ user: UserRecord) async throws { try await createUser(user, organization: nil) }
}

extension WorkflowStore {
    /// A replacement is a modification with the system's rights (no role check).
    public func replaceWorkflow(_ workflow: WorkflowRecord, expectedVersion: Int?, actor: String) async throws
        -> WorkflowRecord
    {
        try await modifyWorkflow(id: workflow.id, expectedVersion: expectedVersion, actor: actor, needs: nil) { next in
            next.name = workflow.name
            next.description = workflow.description
            next.updatedAt = workflow.updatedAt
            next.tasks = workflow.tasks
        }
    }
}

/// The append-optimized store of execution logs and events (the design's
/// "NoSQL" store), kept apart from the relational data.
public protocol LogStore: Sendable {
    /// Appends entries, assigning each the next sequence number of its execution.
    @discardableResult
    func append(_ entries: [LogRecord]) async throws -> [LogRecord]
    func entries(_ query: LogQuery) async throws -> [LogRecord]
    /// Deletes at most `limit` of the entries older than `date` (the oldest
    /// first); returns how many.
    @discardableResult
    func purge(olderThan date: Date, limit: Int) async throws -> Int
}
