public import Foundation
import Synchronization

/// A read-through cache of live workflow definitions in front of any
/// `WorkflowStore` (the design's "Cache: to speed up frequent read
/// operations"). Every write goes through this object, which refreshes or
/// drops the entry, so a single node always reads its own writes. (Several
/// nodes sharing a PostgreSQL store will need invalidation messages first.)
///
/// A read that raced a write must not put an old definition back: every
/// write bumps an epoch, and a miss only fills the cache if no write
/// happened while it read.
public final class CachedWorkflowStore: WorkflowStore, Sendable {
    public let base: any WorkflowStore
    private let capacity: Int
    private let state = Mutex(State())

    struct State {
        var entries: [String: WorkflowRecord] = [:]
        var epoch: UInt64 = 0
        /// Ids deleted by this process: a write that finished before the
        /// delete must not put them back (deletes are final).
        var deleted: Set<String> = []
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }

    public init(_ base: any WorkflowStore, capacity: Int = 10_000) {
        self.base = base
        self.capacity = max(1, capacity)
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
        let stored = try await base.createWorkflow(workflow, actor: actor)
        state.withLock { state in
            state.epoch += 1
            insert(stored, into: &state)
        }
        return stored
    }

    public func replaceWorkflow(_ workflow: WorkflowRecord, expectedVersion: Int?, actor: String) async throws
        -> WorkflowRecord
    {
        state.withLock { state in
            state.epoch += 1
            state.entries[workflow.id] = nil
        }
        do {
            let stored = try await base.replaceWorkflow(workflow, expectedVersion: expectedVersion, actor: actor)
            state.withLock { state in
                state.epoch += 1
                insert(stored, into: &state)
            }
            return stored
        } catch {
            state.withLock { $0.epoch += 1 }
            throw error
        }
    }

    public func modifyWorkflow(
        id: String, expectedVersion: Int?, actor: String,
        _ change: @escaping @Sendable (inout WorkflowRecord) throws -> Void
    ) async throws -> WorkflowRecord {
        state.withLock { state in
            state.epoch += 1
            state.entries[id] = nil
        }
        do {
            let stored = try await base.modifyWorkflow(id: id, expectedVersion: expectedVersion, actor: actor, change)
            state.withLock { state in
                state.epoch += 1
                insert(stored, into: &state)
            }
            return stored
        } catch {
            state.withLock { $0.epoch += 1 }
            throw error
        }
    }

    public func deleteWorkflow(id: String, expectedVersion: Int?, actor: String) async throws {
        state.withLock { state in
            state.epoch += 1
            state.entries[id] = nil
        }
        defer { state.withLock { $0.epoch += 1 } }
        try await base.deleteWorkflow(id: id, expectedVersion: expectedVersion, actor: actor)
        state.withLock { state in
            if state.deleted.count >= 100_000 { state.deleted.removeAll(keepingCapacity: true) }
            state.deleted.insert(id)
            state.entries[id] = nil
        }
    }

    private func insert(_ record: WorkflowRecord, into state: inout State) {
        // Concurrent writers may finish out of order: never go back a version.
        if let existing = state.entries[record.id], existing.version >= record.version { return }
        if state.deleted.contains(record.id) { return }
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

    public func rollbackWorkflow(id: String, to versionId: String, actor: String) async throws
        -> (WorkflowRecord, WorkflowVersionRecord)
    {
        state.withLock { state in
            state.epoch += 1
            state.entries[id] = nil
        }
        do {
            let result = try await base.rollbackWorkflow(id: id, to: versionId, actor: actor)
            state.withLock { state in
                state.epoch += 1
                insert(result.0, into: &state)
            }
            return result
        } catch {
            state.withLock { $0.epoch += 1 }
            throw error
        }
    }

    public func listVersions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<WorkflowVersionRecord> {
        try await base.listVersions(workflowId: workflowId, limit: limit, cursor: cursor)
    }

    public func execution(id: String) async throws -> ExecutionSummary? { try await base.execution(id: id) }
}
