public import Foundation

extension MemoryStore: AnalyticsStore {
    public func executionRollups(_ query: RollupQuery) async throws -> [(key: ExecutionRollupKey, value: ExecutionRollup)] {
        state.withLock { state in
            func matches(_ hour: RollupHour, _ trigger: TriggerKind, _ status: ExecutionStatus) -> Bool {
                hour >= query.from && hour < query.to && (query.trigger.map { $0 == trigger } ?? true)
                    && (query.status.map { $0 == status } ?? true)
            }
            var rows: [(key: ExecutionRollupKey, value: ExecutionRollup)]
            switch query.scope {
            case .organization(let orgId):
                rows = state.rollups.organizations.filter { key, _ in
                    key.orgId == orgId && matches(key.hour, key.trigger, key.status)
                }.map { key, value in
                    (ExecutionRollupKey(workflowId: "", version: 0, hour: key.hour, trigger: key.trigger, status: key.status), value)
                }
            case .workflows, .visibleTo:
                let ids = state.workflowIds(in: query.scope)
                rows = state.rollups.executions.filter { key, _ in
                    ids.contains(key.workflowId) && matches(key.hour, key.trigger, key.status)
                        && (query.version.map { $0 == key.version } ?? true)
                }.map { ($0.key, $0.value) }
            }
            if query.acrossHours {
                var merged: [ExecutionRollupKey: ExecutionRollup] = [:]
                for (key, value) in rows {
                    var key = key
                    key.hour = query.from
                    merged[key, default: ExecutionRollup()].merge(value)
                }
                rows = merged.map { ($0.key, $0.value) }
            }
            rows.sort { ($0.key.hour, $0.key.workflowId, $0.key.version) < ($1.key.hour, $1.key.workflowId, $1.key.version) }
            return rows
        }
    }

    public func taskRollups(workflowId: String, from: RollupHour, to: RollupHour, version: Int?, acrossHours: Bool) async throws
        -> [(key: TaskRollupKey, value: TaskRollup)]
    {
        state.withLock { state in
            var rows: [(key: TaskRollupKey, value: TaskRollup)] = state.rollups.tasks.filter { key, _ in
                key.workflowId == workflowId && key.hour >= from && key.hour < to && (version.map { $0 == key.version } ?? true)
            }.map { ($0.key, $0.value) }
            if acrossHours {
                var merged: [TaskRollupKey: TaskRollup] = [:]
                for (key, value) in rows {
                    var key = key
                    key.hour = from
                    merged[key, default: TaskRollup()].merge(value, cappedErrors: false)
                }
                rows = merged.map { ($0.key, $0.value) }
            }
            return rows.sorted { a, b in (a.key.hour, a.key.taskKey, a.key.version) < (b.key.hour, b.key.taskKey, b.key.version) }
        }
    }

    public func visibleWorkflowCount(userId: String) async throws -> Int {
        state.withLock { $0.workflowIds(in: .visibleTo(userId: userId)).count }
    }

    public func unfinishedCount(workflowId: String) async throws -> Int {
        state.withLock { state in state.executions.values.count { $0.workflowId == workflowId && !$0.isFinished } }
    }

    public func rebuildRollups() async throws -> Int {
        state.withLock { state in
            var batch = RollupBatch()
            for execution in state.executions.values {
                let workflow = state.workflows[execution.workflowId]
                let dependsOn = Dictionary(
                    (workflow?.tasks ?? []).map { ($0.key, $0.dependsOn) }, uniquingKeysWith: { first, _ in first })
                if let contribution = RollupFold.contribution(
                    of: execution, orgId: workflow?.orgId ?? "", dependsOn: dependsOn)
                {
                    batch.add(contribution)
                }
            }
            state.rollups = batch
            return batch.folded
        }
    }

    public func purgeExecutions(finishedBefore before: Date, limit: Int) async throws -> Int {
        state.withLock { state in
            let old = state.executions.values.filter { execution in
                execution.isFinished && (execution.completedAt ?? execution.createdAt) < before
            }.prefix(limit)
            for execution in old {
                state.executions[execution.executionId] = nil
                if let key = execution.idempotencyKey { state.idempotencyKeys[execution.workflowId + "|" + key] = nil }
            }
            return old.count
        }
    }

    public func putBudget(_ budget: BudgetRecord) async throws -> BudgetRecord {
        state.withLock { state in
            let key = budget.scope.rawValue + "|" + budget.scopeId
            var stored = budget
            if let old = state.budgets[key], old.monthlyLimitUsd == budget.monthlyLimitUsd, old.timeZone == budget.timeZone {
                stored.alertedMonth = old.alertedMonth
                stored.alertLevel = old.alertLevel
            } else {
                stored.alertedMonth = nil
                stored.alertLevel = 0
            }
            state.budgets[key] = stored
            return stored
        }
    }

    public func budget(scope: BudgetScope, id: String) async throws -> BudgetRecord? {
        state.withLock { $0.budgets[scope.rawValue + "|" + id] }
    }

    public func deleteBudget(scope: BudgetScope, id: String) async throws -> Bool {
        state.withLock { $0.budgets.removeValue(forKey: scope.rawValue + "|" + id) != nil }
    }

    public func budgets() async throws -> [BudgetRecord] {
        state.withLock { state in
            state.budgets.values.sorted { ($0.scope.rawValue, $0.scopeId) < ($1.scope.rawValue, $1.scopeId) }
        }
    }

    public func markBudgetAlerted(scope: BudgetScope, id: String, month: String, level: Int, updatedAt: Date) async throws
        -> Bool
    {
        state.withLock { state in
            let key = scope.rawValue + "|" + id
            guard var budget = state.budgets[key], StoreDate.text(budget.updatedAt) == StoreDate.text(updatedAt) else { return false }
            if budget.alertedMonth == month && budget.alertLevel >= level { return false }
            budget.alertedMonth = month
            budget.alertLevel = level
            state.budgets[key] = budget
            return true
        }
    }
}

extension MemoryStore.State {
    func workflowIds(in scope: RollupScope) -> Set<String> {
        switch scope {
        case .workflows(let ids): return Set(ids)
        case .visibleTo(let userId):
            let owned = workflows.values.filter { $0.deletedAt == nil && $0.ownerId == userId }.map(\.id)
            let shared = collaborators.filter { id, users in
                users[userId] != nil && workflows[id]?.deletedAt == nil
            }.map(\.key)
            return Set(owned + shared)
        case .organization(let orgId):
            return Set(workflows.values.filter { $0.orgId == orgId }.map(\.id))
        }
    }
}
