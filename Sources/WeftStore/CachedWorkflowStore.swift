import Foundation
import Synchronization

/// A read-through cache of live workflow definitions in front of any
/// `WorkflowStore` (the design's "Cache: to speed up frequent read
/// operations"). Every write goes through this object and drops the entry
/// before and after it runs, so a single node always reads its own writes.
/// (Several nodes sharing a PostgreSQL store will need invalidation messages.)
///
/// Only reads fill the cache, and only when no write started or finished
/// while they read (a global epoch): so neither a read that raced a write nor
/// a writer that finished late can put an old definition back.
public final class CachedWorkflowStore: WorkflowStore, Sendable {
    public let base: any WorkflowStore
    private let capacity: Int
    private let state = Mutex(State())

    struct State {
        var entries: [String: WorkflowRecord] = [:]
        var epoch: UInt64 = 0
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }

    public init(_ base: any WorkflowStore, capacity: Int = 10_000) {
        self.base = base
        self.capacity = max(1, capacity)
    }

    /// Drops every cached definition (a change made past this cache, such
    /// as ownership moving when a member leaves an organization).
    public func forgetAll() {
        state.withLock { state in
            state.entries.removeAll()
            state.epoch += 1
        }
    }

    /// The cached definition, if any: no I/O, safe on an event loop.
    public func cachedWorkflow(id: String) -> WorkflowRecord? {
        state.withLock { state in
            let entry = state.entries[id]
            if entry != nil { state.hits += 1 }
            return entry
        }
    }

    public var statistics: (entries: Int, hits: UInt64, misses: UInt64) {
        state.withLock { ($0.entries.count, $0.hits, $0.misses) }
    }

    public func workflow(id: String, includeDeleted: Bool) async throws -> WorkflowRecord? {
        if let cached = cachedWorkflow(id: id) { return cached }
        let epoch = state.withLock { state in
            state.misses += 1
            return state.epoch
        }
        let record = try await base.workflow(id: id, includeDeleted: includeDeleted)
        if let record, record.deletedAt == nil {
            state.withLock { state in
                guard state.epoch == epoch else { return }
                insert(record, into: &state)
            }
        }
        return record
    }

    public func createWorkflow(_ workflow: WorkflowRecord, actor: String) async throws -> WorkflowRecord {
        try await writing(workflow.id) { try await base.createWorkflow(workflow, actor: actor) }
    }

    public func replaceWorkflow(_ workflow: WorkflowRecord, expectedVersion: Int?, actor: String) async throws
        -> WorkflowRecord
    {
        try await writing(workflow.id) {
            try await base.replaceWorkflow(workflow, expectedVersion: expectedVersion, actor: actor)
        }
    }

    public func modifyWorkflow(
        id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?,
        _ change: @escaping @Sendable (inout WorkflowRecord) throws -> Void
    ) async throws -> WorkflowRecord {
        try await writing(id) {
            try await base.modifyWorkflow(id: id, expectedVersion: expectedVersion, actor: actor, needs: needs, change)
        }
    }

    public func deleteWorkflow(id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?) async throws {
        try await writing(id) {
            try await base.deleteWorkflow(id: id, expectedVersion: expectedVersion, actor: actor, needs: needs)
        }
    }

    public func rollbackWorkflow(id: String, to versionId: String, actor: String, needs: WorkflowRole?) async throws
        -> (WorkflowRecord, WorkflowVersionRecord)
    {
        try await writing(id) { try await base.rollbackWorkflow(id: id, to: versionId, actor: actor, needs: needs) }
    }

    /// Runs a write with the entry dropped and the epoch bumped before and
    /// after (also when it fails), so no read overlapping it fills the cache.
    private func writing<T>(_ id: String, _ body: () async throws -> T) async throws -> T {
        state.withLock { state in
            state.epoch += 1
            state.entries[id] = nil
        }
        defer {
            state.withLock { state in
                state.epoch += 1
                state.entries[id] = nil
            }
        }
        return try await body()
    }

    private func insert(_ record: WorkflowRecord, into state: inout State) {
        if state.entries.count >= capacity, state.entries[record.id] == nil {
            // Drop an arbitrary tenth: cheap, and hot entries come back on the next read.
            for key in state.entries.keys.prefix(max(1, capacity / 10)) { state.entries[key] = nil }
        }
        var record = record
        record.callerRole = nil
        state.entries[record.id] = record
    }

    // Pass-through reads.
    public func listWorkflows(_ query: WorkflowQuery) async throws -> Page<WorkflowRecord> {
        try await base.listWorkflows(query)
    }

    public func searchWorkflows(text: String, visibleTo userId: String, limit: Int, cursor: String?) async throws
        -> Page<SearchHit>
    {
        try await base.searchWorkflows(text: text, visibleTo: userId, limit: limit, cursor: cursor)
    }

    public func task(id: String) async throws -> TaskRecord? { try await base.task(id: id) }

    public func role(userId: String, workflowId: String) async throws -> WorkflowRole? {
        try await base.role(userId: userId, workflowId: workflowId)
    }

    public func addCollaborator(_ collaborator: CollaboratorRecord, actor: String) async throws {
        try await base.addCollaborator(collaborator, actor: actor)
    }

    public func updateCollaborator(workflowId: String, userId: String, role: WorkflowRole, actor: String) async throws {
        try await base.updateCollaborator(workflowId: workflowId, userId: userId, role: role, actor: actor)
    }

    public func removeCollaborator(workflowId: String, userId: String, actor: String) async throws {
        try await base.removeCollaborator(workflowId: workflowId, userId: userId, actor: actor)
    }

    public func collaborators(workflowId: String) async throws -> [(CollaboratorRecord, UserRecord)] {
        try await base.collaborators(workflowId: workflowId)
    }

    public func workflowVersion(workflowId: String, versionId: String) async throws -> WorkflowVersionRecord? {
        try await base.workflowVersion(workflowId: workflowId, versionId: versionId)
    }

    public func labelVersion(workflowId: String, label: String, actor: String) async throws -> WorkflowVersionRecord {
        try await base.labelVersion(workflowId: workflowId, label: label, actor: actor)
    }

    public func listVersions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<WorkflowVersionRecord> {
        try await base.listVersions(workflowId: workflowId, limit: limit, cursor: cursor)
    }

}
