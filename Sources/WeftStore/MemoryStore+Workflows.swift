import Foundation

extension MemoryStore: WorkflowStore {
    public func createWorkflow(_ workflow: WorkflowRecord, actor: String) async throws -> WorkflowRecord {
        var stored = workflow
        stored.version = 1
        stored.deletedAt = nil
        stored.callerRole = nil
        let record = stored
        try state.withLock { state in
            guard state.workflows[record.id] == nil else {
                throw StoreError.alreadyExists("workflow \(record.id) already exists")
            }
            try state.checkTasks(record.tasks, workflowId: record.id)
            state.workflows[record.id] = record
            for task in record.tasks { state.taskOwners[task.id] = record.id }
            state.snapshot(record, actor: actor, label: "")
            state.audit(actor: actor, action: "create", workflowId: record.id)
        }
        return stored
    }

    public func workflow(id: String, includeDeleted: Bool) async throws -> WorkflowRecord? {
        state.withLock { state in
            guard let workflow = state.workflows[id], includeDeleted || workflow.deletedAt == nil else { return nil }
            return workflow
        }
    }

    public func modifyWorkflow(
        id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?,
        _ change: @escaping @Sendable (inout WorkflowRecord) throws -> Void
    ) async throws -> WorkflowRecord {
        try state.withLock { state in
            try state.authorize(workflowId: id, actor: actor, needs: needs)
            return try state.modify(id: id, expectedVersion: expectedVersion, actor: actor, label: "", change)
        }
    }

    public func deleteWorkflow(id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?) async throws {
        try state.withLock { state in
            try state.authorize(workflowId: id, actor: actor, needs: needs)
            guard var workflow = state.workflows[id], workflow.deletedAt == nil else {
                throw StoreError.notFound("workflow \(id) not found")
            }
            if let expectedVersion, expectedVersion != workflow.version {
                throw StoreError.conflict(
                    "workflow \(id) changed since it was read (etag \"\(expectedVersion)\", now \"\(workflow.version)\")")
            }
            let now = Date.nowMillis
            workflow.deletedAt = now
            workflow.updatedAt = now
            state.workflows[id] = workflow
            state.audit(actor: actor, action: "delete", workflowId: id)
        }
    }

    public func listWorkflows(_ query: WorkflowQuery) async throws -> Page<WorkflowRecord> {
        state.withLock { state in
            let prefix = query.namePrefix.flatMap { $0.isEmpty ? nil : $0.lowercased() }
            var items = state.visibleWorkflows(to: query.visibleTo).filter { workflow in
                (query.cursor.map { workflow.id < $0 } ?? true)
                    && (prefix.map { workflow.name.lowercased().hasPrefix($0) } ?? true)
                    && (query.ownerId.map { workflow.ownerId == $0 } ?? true)
                    && (query.createdAfter.map { workflow.createdAt >= $0 } ?? true)
                    && (query.createdBefore.map { workflow.createdAt < $0 } ?? true)
            }
            items.sort { $0.id > $1.id }
            var page = Array(items.prefix(query.limit + 1))
            var next: String?
            if page.count > query.limit {
                page.removeLast()
                next = page.last?.id
            }
            if !query.includeTasks { for index in page.indices { page[index].tasks = [] } }
            return Page(items: page, nextCursor: next)
        }
    }

    /// A plain word match (no ranking model): every word of `text` must
    /// occur in the name, description or a task name; more occurrences
    /// score higher. Enough for tests; the SQLite store ranks with FTS5.
    public func searchWorkflows(text: String, visibleTo userId: String, limit: Int, cursor: String?) async throws
        -> Page<SearchHit>
    {
        let words = text.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
        guard !words.isEmpty else { return Page(items: [], nextCursor: nil) }
        let offset: Int
        if let cursor {
            guard let value = Int(cursor), value >= 0 else {
                throw StoreError.invalid("page_token is not valid for this search")
            }
            offset = value
        } else {
            offset = 0
        }
        return state.withLock { state in
            var hits: [SearchHit] = []
            for workflow in state.visibleWorkflows(to: userId) {
                let haystack = ([workflow.name, workflow.description] + workflow.tasks.map(\.name)).joined(separator: " ")
                    .lowercased()
                let counts = words.map { haystack.components(separatedBy: $0).count - 1 }
                guard counts.allSatisfy({ $0 > 0 }) else { continue }
                var summary = workflow
                summary.tasks = []
                hits.append(SearchHit(workflow: summary, score: Double(counts.reduce(0, +)), snippet: workflow.name))
            }
            hits.sort { $0.score != $1.score ? $0.score > $1.score : $0.workflow.id > $1.workflow.id }
            let page = Array(hits.dropFirst(offset).prefix(limit))
            let next = offset + limit < hits.count ? String(offset + limit) : nil
            return Page(items: page, nextCursor: next)
        }
    }

    public func task(id: String) async throws -> TaskRecord? {
        state.withLock { state in
            guard let owner = state.taskOwners[id], let workflow = state.workflows[owner], workflow.deletedAt == nil
            else { return nil }
            return workflow.tasks.first { $0.id == id }
        }
    }

    public func role(userId: String, workflowId: String) async throws -> WorkflowRole? {
        state.withLock { $0.role(of: userId, on: workflowId) }
    }

    public func addCollaborator(_ collaborator: CollaboratorRecord, actor: String) async throws {
        try state.withLock { state in
            guard state.users[collaborator.userId] != nil else {
                throw StoreError.notFound("user \(collaborator.userId) not found")
            }
            guard state.collaborators[collaborator.workflowId]?[collaborator.userId] == nil else {
                throw StoreError.alreadyExists(
                    "user \(collaborator.userId) is already a collaborator of workflow \(collaborator.workflowId); use PUT to change the role")
            }
            state.collaborators[collaborator.workflowId, default: [:]][collaborator.userId] = collaborator
            state.audit(actor: actor, action: "add_collaborator", workflowId: collaborator.workflowId)
        }
    }

    public func updateCollaborator(workflowId: String, userId: String, role: WorkflowRole, actor: String) async throws {
        try state.withLock { state in
            guard state.collaborators[workflowId]?[userId] != nil else {
                throw StoreError.notFound("user \(userId) is not a collaborator of workflow \(workflowId)")
            }
            state.collaborators[workflowId]?[userId]?.role = role
            state.audit(actor: actor, action: "update_collaborator", workflowId: workflowId)
        }
    }

    public func removeCollaborator(workflowId: String, userId: String, actor: String) async throws {
        try state.withLock { state in
            guard state.collaborators[workflowId]?.removeValue(forKey: userId) != nil else {
                throw StoreError.notFound("user \(userId) is not a collaborator of workflow \(workflowId)")
            }
            state.audit(actor: actor, action: "remove_collaborator", workflowId: workflowId)
        }
    }

    public func collaborators(workflowId: String) async throws -> [(CollaboratorRecord, UserRecord)] {
        state.withLock { state in
            (state.collaborators[workflowId] ?? [:]).values
                .sorted { ($0.addedAt, $0.userId) < ($1.addedAt, $1.userId) }
                .compactMap { collaborator in state.users[collaborator.userId].map { (collaborator, $0) } }
        }
    }

    public func workflowVersion(workflowId: String, versionId: String) async throws -> WorkflowVersionRecord? {
        state.withLock { $0.version(workflowId: workflowId, versionId: versionId) }
    }

    public func labelVersion(workflowId: String, label: String, actor: String) async throws -> WorkflowVersionRecord {
        try state.withLock { state in
            guard let current = state.workflows[workflowId], current.deletedAt == nil,
                let index = state.versions[workflowId]?.firstIndex(where: { $0.version == current.version })
            else { throw StoreError.notFound("workflow \(workflowId) not found") }
            state.versions[workflowId]![index].label = label
            state.audit(actor: actor, action: "label_version", workflowId: workflowId)
            return state.versions[workflowId]![index]
        }
    }

    public func rollbackWorkflow(id: String, to versionId: String, actor: String, needs: WorkflowRole?) async throws
        -> (WorkflowRecord, WorkflowVersionRecord)
    {
        try state.withLock { state in
            try state.authorize(workflowId: id, actor: actor, needs: needs)
            guard let target = state.version(workflowId: id, versionId: versionId) else {
                throw StoreError.notFound("version \(versionId) of workflow \(id) not found")
            }
            let now = Date.nowMillis
            let stored = try state.modify(
                id: id, expectedVersion: nil, actor: actor, label: "rollback to version \(target.version)"
            ) { next in
                next.restore(target, at: now)
            }
            guard let created = state.version(workflowId: id, versionId: String(stored.version)) else {
                throw StoreError.notFound("version \(stored.version) of workflow \(id) not found")
            }
            return (stored, created)
        }
    }

    public func listVersions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<WorkflowVersionRecord> {
        let before = cursor.flatMap(Int.init) ?? Int.max
        return state.withLock { state in
            var versions = Array(
                (state.versions[workflowId] ?? []).filter { $0.version < before }.sorted { $0.version > $1.version }
                    .prefix(limit + 1))
            var next: String?
            if versions.count > limit {
                versions.removeLast()
                next = versions.last.map { String($0.version) }
            }
            return Page(items: versions, nextCursor: next)
        }
    }
}

extension MemoryStore.State {
    func role(of userId: String, on workflowId: String) -> WorkflowRole? {
        guard let workflow = workflows[workflowId], workflow.deletedAt == nil else { return nil }
        if workflow.ownerId == userId { return .owner }
        return collaborators[workflowId]?[userId]?.role
    }

    /// Live workflows the user owns or collaborates on, with their role.
    func visibleWorkflows(to userId: String) -> [WorkflowRecord] {
        workflows.values.compactMap { workflow in
            guard workflow.deletedAt == nil, let role = role(of: userId, on: workflow.id) else { return nil }
            var visible = workflow
            visible.callerRole = role
            return visible
        }
    }

    /// The role check inside the write, as the SQLite store does it.
    func authorize(workflowId: String, actor: String, needs: WorkflowRole?) throws {
        guard let needs else { return }
        guard let role = role(of: actor, on: workflowId) else {
            throw StoreError.notFound("workflow \(workflowId) not found")
        }
        guard role >= needs else {
            throw StoreError.permissionDenied(
                "your role on workflow \(workflowId) is \(role.rawValue); this needs \(needs.rawValue)")
        }
    }

    func version(workflowId: String, versionId: String) -> WorkflowVersionRecord? {
        let versions = self.versions[workflowId] ?? []
        if let number = Int(versionId) { return versions.first { $0.version == number } }
        return versions.first { $0.id == versionId }
    }

    /// Task ids are unique across workflows; keys within one.
    func checkTasks(_ tasks: [TaskRecord], workflowId: String) throws {
        var keys: Set<String> = []
        for task in tasks {
            if let owner = taskOwners[task.id], owner != workflowId {
                throw StoreError.alreadyExists("task id \(task.id) is already used by another workflow")
            }
            guard keys.insert(task.key).inserted else {
                throw StoreError.alreadyExists("task key \(task.key) is used twice in workflow \(workflowId)")
            }
        }
    }

    mutating func modify(
        id: String, expectedVersion: Int?, actor: String, label: String, _ change: (inout WorkflowRecord) throws -> Void
    ) throws -> WorkflowRecord {
        guard let current = workflows[id], current.deletedAt == nil else {
            throw StoreError.notFound("workflow \(id) not found")
        }
        if let expectedVersion, expectedVersion != current.version {
            throw StoreError.conflict(
                "workflow \(id) changed since it was read (etag \"\(expectedVersion)\", now \"\(current.version)\"); fetch it again and reapply your change")
        }
        var next = current
        try change(&next)
        next.id = current.id
        next.ownerId = current.ownerId
        next.createdAt = current.createdAt
        next.version = current.version + 1
        next.deletedAt = nil
        next.callerRole = nil
        for index in next.tasks.indices { next.tasks[index].workflowId = id }
        try checkTasks(next.tasks, workflowId: id)
        workflows[id] = next
        for task in next.tasks { taskOwners[task.id] = id }
        snapshot(next, actor: actor, label: label)
        audit(actor: actor, action: "update", workflowId: id)
        return next
    }

    mutating func snapshot(_ workflow: WorkflowRecord, actor: String, label: String) {
        versions[workflow.id, default: []].append(WorkflowVersionRecord(
            id: IDGenerator.make(IDGenerator.version, now: workflow.updatedAt), workflowId: workflow.id,
            version: workflow.version, name: workflow.name, description: workflow.description,
            tasks: workflow.tasks.map { task in
                var task = task
                task.createdAt = workflow.updatedAt
                task.updatedAt = workflow.updatedAt
                return task
            },
            label: label, createdBy: actor, createdAt: workflow.updatedAt))
    }
}
