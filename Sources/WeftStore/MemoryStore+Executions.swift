public import Foundation

extension MemoryStore: ExecutionStore {
    public func createExecution(_ execution: ExecutionRecord) async throws -> (execution: ExecutionRecord, created: Bool) {
        try state.withLock { state in
            if let key = execution.idempotencyKey, let existing = state.idempotencyKeys[execution.workflowId + "|" + key] {
                guard let found = state.executions[existing] else {
                    throw StoreError.notFound("execution \(existing) not found")
                }
                return (found, false)
            }
            state.insert(execution)
            return (execution, true)
        }
    }

    public func execution(id: String) async throws -> ExecutionRecord? {
        state.withLock { $0.executions[id] }
    }

    public func listExecutions(_ query: ExecutionQuery) async throws -> Page<ExecutionRecord> {
        state.withLock { state in
            var items = state.executions.values.filter { execution in
                execution.workflowId == query.workflowId && (query.cursor.map { execution.executionId < $0 } ?? true)
                    && (query.status.map { execution.status == $0 } ?? true)
                    && (query.startedAfter.map { execution.createdAt >= $0 } ?? true)
                    && (query.startedBefore.map { execution.createdAt < $0 } ?? true)
            }
            items.sort { $0.executionId > $1.executionId }
            var page = Array(items.prefix(query.limit + 1))
            var next: String?
            if page.count > query.limit {
                page.removeLast()
                next = page.last?.executionId
            }
            return Page(items: page, nextCursor: next)
        }
    }

    public func apply(_ transitions: [ExecutionTransition]) async throws {
        guard !transitions.isEmpty else { return }
        try state.withLock { state in
            let before = state
            do {
                try state.apply(transitions)
            } catch {
                state = before
                throw error
            }
        }
    }

    public func applyEach(_ groups: [[ExecutionTransition]]) async throws -> [StoreError?] {
        try state.withLock { state in
            try groups.map { group -> StoreError? in
                let before = state
                do {
                    try state.apply(group)
                    return nil
                } catch let error as StoreError {
                    state = before
                    return error
                }
            }
        }
    }

    public func unfinishedExecutions() async throws -> [ExecutionRecord] {
        state.withLock { state in
            state.executions.values.filter { !$0.isFinished }.sorted { $0.executionId < $1.executionId }
        }
    }

    public func unfinishedCountsByOrganization() async throws -> [String: Int] {
        state.withLock { state in
            var counts: [String: Int] = [:]
            for execution in state.executions.values where !execution.isFinished {
                counts[state.workflows[execution.workflowId]?.orgId ?? "", default: 0] += 1
            }
            return counts
        }
    }

    public func unfinishedCount() async throws -> Int {
        state.withLock { state in state.executions.values.count(where: { !$0.isFinished }) }
    }

    public func stalledExecutions() async throws -> [ExecutionRecord] {
        state.withLock { state in
            let moving = state.queue.executionsWithTaskItems()
            return state.executions.values.filter { !$0.isFinished && !moving.contains($0.executionId) }
                .sorted { $0.executionId < $1.executionId }
        }
    }
}

extension MemoryStore.State {
    mutating func insert(_ execution: ExecutionRecord) {
        executions[execution.executionId] = execution
        if let key = execution.idempotencyKey {
            idempotencyKeys[execution.workflowId + "|" + key] = execution.executionId
        }
    }

    /// One unit of transitions; the caller restores the state if it throws.
    mutating func apply(_ transitions: [ExecutionTransition]) throws {
        // Executions this unit finishes are folded into the rollups after its
        // last transition (a unit's cost follows its final status).
        var finishing: [String] = []
        var rollups = RollupBatch()
        for transition in transitions {
            switch transition {
            case .execution(let id, let status, let at, let output, let error):
                guard var execution = executions[id] else { throw StoreError.notFound("execution \(id) not found") }
                if status.isFinished && !execution.status.isFinished { finishing.append(id) }
                execution.status = status
                if status == .running && execution.startedAt == nil { execution.startedAt = at }
                if status.isFinished { execution.completedAt = at }
                if let output { execution.output = output }
                if let error { execution.error = error }
                executions[id] = execution
            case .task(let executionId, let key, let status, let attempt, let at, let output, let error, let cost):
                guard let index = executions[executionId]?.tasks.firstIndex(where: { $0.taskKey == key }) else {
                    throw StoreError.notFound("task \(key) of execution \(executionId) not found")
                }
                var task = executions[executionId]!.tasks[index]
                task.status = status
                task.attempt = attempt
                if status == .running && task.startedAt == nil { task.startedAt = at }
                if status.isTerminal { task.completedAt = at }
                if let output { task.output = output }
                if let error { task.error = error }
                task.cost += cost
                executions[executionId]!.tasks[index] = task
            case .create(let execution):
                if let key = execution.idempotencyKey, let existing = idempotencyKeys[execution.workflowId + "|" + key] {
                    throw StoreError.alreadyExists("execution \(existing) has idempotency key \(key)")
                }
                insert(execution)
            case .enqueue(let item):
                try queue.insert(item)
            case .completeLease(_, let token):
                try queue.complete(token: token)
            case .releaseLease(_, let token, let readyAt):
                try queue.release(token: token, readyAt: readyAt)
            case .dequeue(let executionId, let taskKey, let attempt):
                queue.removeUnleased(executionId: executionId, taskKey: taskKey, attempt: attempt)
            case .removeQueued(let executionId, let taskKey, let attempt):
                queue.remove(executionId: executionId, taskKey: taskKey, attempt: attempt)
            case .cost(let executionId, let add):
                guard let execution = executions[executionId] else {
                    throw StoreError.notFound("execution \(executionId) not found")
                }
                executions[executionId]!.costBreakdown += add
                if execution.isFinished && !finishing.contains(executionId) {
                    rollups.addLateCost(
                        add.total, execution: rollupKey(execution), orgId: workflows[execution.workflowId]?.orgId ?? "")
                }
            case .taskCost(let executionId, let taskKey, let dollars):
                guard let execution = executions[executionId],
                    let index = execution.tasks.firstIndex(where: { $0.taskKey == taskKey })
                else { throw StoreError.notFound("task \(taskKey) of execution \(executionId) not found") }
                executions[executionId]!.tasks[index].cost += dollars
                if execution.isFinished && !finishing.contains(executionId) {
                    let key = rollupKey(execution)
                    rollups.addLateCost(
                        dollars, task: TaskRollupKey(workflowId: key.workflowId, version: key.version, hour: key.hour, taskKey: taskKey))
                }
            case .schedule(let update):
                guard var schedule = schedules[update.scheduleId] else {
                    throw StoreError.notFound("schedule \(update.scheduleId) not found")
                }
                try update.apply(to: &schedule)
                schedules[update.scheduleId] = schedule
            case .outbox(let entry):
                insertOutbox(entry)
            }
        }
        for id in finishing {
            guard let execution = executions[id] else { continue }
            let workflow = workflows[execution.workflowId]
            let dependsOn = Dictionary(
                (workflow?.tasks ?? []).map { ($0.key, $0.dependsOn) }, uniquingKeysWith: { first, _ in first })
            if let contribution = RollupFold.contribution(of: execution, orgId: workflow?.orgId ?? "", dependsOn: dependsOn) {
                rollups.add(contribution)
            }
        }
        self.rollups.merge(rollups)
    }

    func rollupKey(_ execution: ExecutionRecord) -> ExecutionRollupKey {
        ExecutionRollupKey(
            workflowId: execution.workflowId, version: execution.workflowVersion,
            hour: RollupHour(containing: execution.createdAt), trigger: execution.trigger, status: execution.status)
    }
}

extension MemoryStore: QueueStore {
    public func enqueue(_ items: [QueueItem]) async throws {
        try state.withLock { state in
            let before = state.queue
            do {
                for item in items { try state.queue.insert(item) }
            } catch {
                state.queue = before
                throw error
            }
        }
    }

    public func lease(queue name: String, worker: String, now: Date, duration: TimeInterval, limit: Int) async throws
        -> [Lease]
    {
        guard limit > 0 else { return [] }
        return state.withLock { $0.queue.lease(queue: name, worker: worker, now: now, duration: duration, limit: limit) }
    }

    public func leaseFairly(
        queue name: String, worker: String, now: Date, duration: TimeInterval, limit: Int, after: String?,
        room: @escaping @Sendable (String) -> Int
    ) async throws -> [Lease] {
        guard limit > 0 else { return [] }
        return state.withLock {
            $0.queue.leaseFairly(queue: name, worker: worker, now: now, duration: duration, limit: limit, after: after, room: room)
        }
    }

    public func heartbeat(_ lease: Lease, now: Date, duration: TimeInterval) async throws -> Lease {
        try state.withLock { state in
            guard let id = state.queue.byToken[lease.token], let expires = state.queue.rows[id]?.expiresAt, expires > now
            else {
                throw StoreError.conflict("the lease on \(lease.item.taskKey) attempt \(lease.item.attempt) was lost")
            }
            var renewed = lease
            renewed.expiresAt = now.addingTimeInterval(duration)
            state.queue.rows[id]?.expiresAt = renewed.expiresAt
            return renewed
        }
    }

    public func complete(_ lease: Lease) async throws {
        try state.withLock { try $0.queue.complete(token: lease.token) }
    }

    public func release(_ lease: Lease, readyAt: Date) async throws {
        try state.withLock { try $0.queue.release(token: lease.token, readyAt: readyAt) }
    }

    public func depth(queue name: String, now: Date) async throws -> (ready: Int, delayed: Int, leased: Int) {
        let depth = state.withLock { $0.queue.depths(now: now).first { $0.queue == name } }
        return (depth?.ready ?? 0, depth?.delayed ?? 0, depth?.leased ?? 0)
    }

    public func depths(now: Date) async throws -> [QueueDepth] {
        state.withLock { $0.queue.depths(now: now) }
    }

    public func lease(id: Int64, token: String) async throws -> Lease? {
        state.withLock { state in
            guard state.queue.byToken[token] == id, let row = state.queue.rows[id], let expires = row.expiresAt else {
                return nil
            }
            return Lease(id: id, item: row.item, token: token, expiresAt: expires, deliveries: row.deliveries)
        }
    }

    @discardableResult
    public func releaseAll(queues: [String]) async throws -> Int {
        state.withLock { $0.queue.releaseAll(queues: Set(queues)) }
    }
}
