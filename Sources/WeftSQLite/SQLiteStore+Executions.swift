import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: ExecutionStore {
    public func createExecution(_ execution: ExecutionRecord) async throws -> (execution: ExecutionRecord, created: Bool) {
        try await write("create_execution") { db in
            if let key = execution.idempotencyKey,
                let existing = try String.fetchOne(
                    db, sql: "SELECT execution_id FROM workflow_executions WHERE workflow_id = ? AND idempotency_key = ?",
                    arguments: [execution.workflowId, key])
            {
                guard let found = try Self.execution(db, id: existing) else {
                    throw StoreError.notFound("execution \(existing) not found")
                }
                return (found, false)
            }
            try Self.insertExecution(db, execution)
            guard let stored = try Self.execution(db, id: execution.executionId) else {
                throw StoreError.notFound("execution \(execution.executionId) not found")
            }
            return (stored, true)
        }
    }


    /// Inserts an execution and its task rows (no idempotency check).
    static func insertExecution(_ db: Database, _ execution: ExecutionRecord) throws {
        let cost = execution.costBreakdown
        try db.cachedStatement(sql: """
            INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, status, input, output, error,
                idempotency_key, trigger, cost, created_by, created_at, started_at, completed_at, priority,
                trace_parent, trace_state, trigger_id, scheduled_at,
                cost_task_attempts, cost_attempts_dollars, cost_worker_seconds, cost_compute_dollars,
                cost_requests, cost_requests_dollars, cost_egress_bytes, cost_egress_dollars)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                execution.executionId, execution.workflowId, execution.workflowVersion, execution.status.rawValue,
                execution.input.jsonText(), execution.output?.jsonText(), execution.error, execution.idempotencyKey,
                execution.trigger.rawValue, execution.cost, execution.createdBy, StoreDate.text(execution.createdAt),
                execution.startedAt.map(StoreDate.text), execution.completedAt.map(StoreDate.text), execution.priority,
                execution.traceParent, execution.traceState, execution.triggerId, execution.scheduledAt.map(StoreDate.text),
                cost.taskAttempts, cost.attemptsDollars, cost.workerSeconds, cost.computeDollars, cost.requests,
                cost.requestsDollars, cost.egressBytes, cost.egressDollars,
            ])
        let insertTask = try db.cachedStatement(sql: """
            INSERT INTO task_executions (task_execution_id, task_id, task_key, execution_id, status, attempt, output,
                error, started_at, completed_at, cost)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for task in execution.tasks {
            try insertTask.execute(arguments: [
                task.taskExecutionId, task.taskId, task.taskKey, execution.executionId, task.status.rawValue, task.attempt,
                task.output?.jsonText(), task.error, task.startedAt.map(StoreDate.text), task.completedAt.map(StoreDate.text),
                task.cost,
            ])
        }
    }

    public func execution(id: String) async throws -> ExecutionRecord? {
        try await read("get_execution") { db in try Self.execution(db, id: id) }
    }

    public func listExecutions(_ query: ExecutionQuery) async throws -> Page<ExecutionRecord> {
        try await read("list_executions") { db in
            var sql = "SELECT * FROM workflow_executions WHERE workflow_id = ?"
            var arguments: StatementArguments = [query.workflowId]
            if let cursor = query.cursor {
                sql += " AND execution_id < ?"
                arguments += [cursor]
            }
            if let status = query.status {
                sql += " AND status = ?"
                arguments += [status.rawValue]
            }
            if let after = query.startedAfter {
                sql += " AND created_at >= ?"
                arguments += [after]
            }
            if let before = query.startedBefore {
                sql += " AND created_at < ?"
                arguments += [before]
            }
            sql += " ORDER BY execution_id DESC LIMIT ?"
            arguments += [query.limit + 1]
            var items = try Row.fetchAll(db, sql: sql, arguments: arguments).map { try Self.executionRecord($0) }
            var next: String?
            if items.count > query.limit {
                items.removeLast()
                next = items.last?.executionId
            }
            for index in items.indices { items[index].tasks = try Self.taskExecutions(db, executionId: items[index].executionId) }
            return Page(items: items, nextCursor: next)
        }
    }

    public func apply(_ transitions: [ExecutionTransition]) async throws {
        guard !transitions.isEmpty else { return }
        let folded = try await write("apply_transitions") { db in
            var rollups = RollupBatch()
            try Self.apply(db, transitions, rollups: &rollups)
            try Self.flush(db, rollups)
            return rollups.folded
        }
        if folded > 0 { metrics.rollupsFolded(folded) }
    }

    public func applyEach(_ groups: [[ExecutionTransition]]) async throws -> [StoreError?] {
        let (errors, folded) = try await write("apply_transitions") { db in
            var rollups = RollupBatch()
            let errors = try groups.map { group -> StoreError? in
                do {
                    // A savepoint per caller: a failing group is rolled back
                    // alone and the rest commit together (its rollups too:
                    // they join the batch only when the group held).
                    var unit = RollupBatch()
                    try db.inSavepoint {
                        try Self.apply(db, group, rollups: &unit)
                        return .commit
                    }
                    rollups.merge(unit)
                    return nil
                } catch let error as StoreError {
                    return error
                }
            }
            // Each touched rollup row written once for the whole batch.
            try Self.flush(db, rollups)
            return (errors, rollups.folded)
        }
        if folded > 0 { metrics.rollupsFolded(folded) }
        return errors
    }

    /// Applies one unit; the executions it finishes are folded into
    /// `rollups` after its last transition (its cost follows its final
    /// status), read back from the rows just written.
    static func apply(_ db: Database, _ transitions: [ExecutionTransition], rollups: inout RollupBatch) throws {
        // An execution created and moved on in the same unit is one insert
        // per row (and its rollups are due when the fold finished it).
        let (transitions, createdFinished) = ExecutionTransition.foldingIntoCreates(transitions)
        var finishing = createdFinished
        for transition in transitions {
            switch transition {
            case .execution(let id, let status, let at, let output, let error):
                let finished = status.isFinished
                let time = StoreDate.text(at)
                let arguments: StatementArguments = [
                    status.rawValue, status.rawValue, time, finished, time, output?.jsonText(), error, id,
                ]
                if finished {
                    // An execution is folded once: the first final transition
                    // matches `completed_at IS NULL`; a second one (which the
                    // engine does not send) takes the plain update and changes
                    // no rollup. No read before the write on the usual path.
                    try db.cachedStatement(sql: """
                        UPDATE workflow_executions SET status = ?,
                            started_at = CASE WHEN ? = 'Running' AND started_at IS NULL THEN ? ELSE started_at END,
                            completed_at = CASE WHEN ? THEN ? ELSE completed_at END,
                            output = COALESCE(?, output), error = COALESCE(?, error)
                        WHERE execution_id = ? AND completed_at IS NULL
                        """).execute(arguments: arguments)
                    if db.changesCount == 1 {
                        finishing.append(id)
                        continue
                    }
                }
                try db.cachedStatement(sql: """
                    UPDATE workflow_executions SET status = ?,
                        started_at = CASE WHEN ? = 'Running' AND started_at IS NULL THEN ? ELSE started_at END,
                        completed_at = CASE WHEN ? THEN ? ELSE completed_at END,
                        output = COALESCE(?, output), error = COALESCE(?, error)
                    WHERE execution_id = ?
                    """).execute(arguments: arguments)
                guard db.changesCount == 1 else { throw StoreError.notFound("execution \(id) not found") }
            case .task(let executionId, let key, let status, let attempt, let at, let output, let error, let cost):
                let finished = status.isTerminal
                let time = StoreDate.text(at)
                try db.cachedStatement(sql: """
                    UPDATE task_executions SET status = ?, attempt = ?,
                        started_at = CASE WHEN ? = 'Running' AND started_at IS NULL THEN ? ELSE started_at END,
                        completed_at = CASE WHEN ? THEN ? ELSE completed_at END,
                        output = COALESCE(?, output), error = COALESCE(?, error), cost = cost + ?
                    WHERE execution_id = ? AND task_key = ?
                    """).execute(arguments: [
                        status.rawValue, attempt, status.rawValue, time, finished, time, output?.jsonText(), error, cost,
                        executionId, key,
                    ])
                guard db.changesCount == 1 else {
                    throw StoreError.notFound("task \(key) of execution \(executionId) not found")
                }
            case .create(let execution):
                if let key = execution.idempotencyKey,
                    let existing = try String.fetchOne(
                        db.cachedStatement(
                            sql: "SELECT execution_id FROM workflow_executions WHERE workflow_id = ? AND idempotency_key = ?"),
                        arguments: [execution.workflowId, key])
                {
                    throw StoreError.alreadyExists("execution \(existing) has idempotency key \(key)")
                }
                try insertExecution(db, execution)
            case .enqueue(let item):
                try insert(db, [item])
            case .completeLease(let id, let token):
                try completeLease(db, id: id, token: token)
            case .releaseLease(let id, let token, let readyAt):
                try releaseLease(db, id: id, token: token, readyAt: readyAt)
            case .dequeue(let executionId, let taskKey, let attempt):
                try db.cachedStatement(sql: """
                    DELETE FROM task_queue WHERE execution_id = ? AND task_key = ? AND attempt = ? AND lease_token IS NULL
                    """).execute(arguments: [executionId, taskKey, attempt])
            case .removeQueued(let executionId, let taskKey, let attempt):
                try db.cachedStatement(sql: "DELETE FROM task_queue WHERE execution_id = ? AND task_key = ? AND attempt = ?")
                    .execute(arguments: [executionId, taskKey, attempt])
            case .cost(let executionId, let add):
                // RETURNING whether it had finished (the update leaves
                // completed_at alone): a late charge goes into its rollups.
                let finished = try Bool.fetchOne(db.cachedStatement(sql: """
                    UPDATE workflow_executions SET cost = cost + ?,
                        cost_task_attempts = cost_task_attempts + ?, cost_attempts_dollars = cost_attempts_dollars + ?,
                        cost_worker_seconds = cost_worker_seconds + ?, cost_compute_dollars = cost_compute_dollars + ?,
                        cost_requests = cost_requests + ?, cost_requests_dollars = cost_requests_dollars + ?,
                        cost_egress_bytes = cost_egress_bytes + ?, cost_egress_dollars = cost_egress_dollars + ?
                    WHERE execution_id = ?
                    RETURNING completed_at IS NOT NULL
                    """), arguments: [
                        add.total, add.taskAttempts, add.attemptsDollars, add.workerSeconds, add.computeDollars,
                        add.requests, add.requestsDollars, add.egressBytes, add.egressDollars, executionId,
                    ])
                guard let finished else { throw StoreError.notFound("execution \(executionId) not found") }
                if finished && !finishing.contains(executionId) {
                    try lateCost(db, executionId: executionId, dollars: add.total, taskKey: nil, into: &rollups)
                }
            case .taskCost(let executionId, let taskKey, let dollars):
                try db.cachedStatement(sql: "UPDATE task_executions SET cost = cost + ? WHERE execution_id = ? AND task_key = ?")
                    .execute(arguments: [dollars, executionId, taskKey])
                guard db.changesCount == 1 else {
                    throw StoreError.notFound("task \(taskKey) of execution \(executionId) not found")
                }
                if try Bool.fetchOne(
                    db.cachedStatement(sql: "SELECT completed_at IS NOT NULL FROM workflow_executions WHERE execution_id = ?"),
                    arguments: [executionId]) == true, !finishing.contains(executionId)
                {
                    try lateCost(db, executionId: executionId, dollars: dollars, taskKey: taskKey, into: &rollups)
                }
            case .schedule(let update):
                try applySchedule(db, update)
            case .outbox(let entry):
                try insertOutbox(db, entry)
            }
        }
        for id in finishing {
            if let contribution = try rollupContribution(db, executionId: id) { rollups.add(contribution) }
        }
    }

    public func unfinishedExecutions() async throws -> [ExecutionRecord] {
        try await read("unfinished_executions") { db in
            var items = try Row.fetchAll(
                db, sql: "SELECT * FROM workflow_executions WHERE status IN ('Pending', 'Running') ORDER BY execution_id"
            ).map { try Self.executionRecord($0) }
            for index in items.indices { items[index].tasks = try Self.taskExecutions(db, executionId: items[index].executionId) }
            return items
        }
    }

    public func unfinishedCountsByOrganization() async throws -> [String: Int] {
        try await read("unfinished_by_org") { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT COALESCE(w.org_id, '') AS org, COUNT(*) AS n FROM workflow_executions e
                    JOIN workflows w ON w.id = e.workflow_id
                    WHERE e.status IN ('Pending', 'Running') GROUP BY w.org_id
                    """)
            {
                counts[row["org"], default: 0] += row["n"] as Int
            }
            return counts
        }
    }

    public func unfinishedCount() async throws -> Int {
        try await read("unfinished_count") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM workflow_executions WHERE status IN ('Pending', 'Running')") ?? 0
        }
    }

    public func stalledExecutions() async throws -> [ExecutionRecord] {
        try await read("stalled_executions") { db in
            var items = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM workflow_executions e
                    WHERE e.status IN ('Pending', 'Running') AND NOT EXISTS (
                        SELECT 1 FROM task_queue q WHERE q.execution_id = e.execution_id AND q.queue <> ?)
                    ORDER BY e.execution_id
                    """, arguments: [QueueItem.timersQueue]
            ).map { try Self.executionRecord($0) }
            for index in items.indices { items[index].tasks = try Self.taskExecutions(db, executionId: items[index].executionId) }
            return items
        }
    }

    static func execution(_ db: Database, id: String) throws -> ExecutionRecord? {
        guard var record = try Row.fetchOne(
            db, sql: "SELECT * FROM workflow_executions WHERE execution_id = ?", arguments: [id]
        ).map({ try executionRecord($0) }) else { return nil }
        record.tasks = try taskExecutions(db, executionId: id)
        return record
    }

    static func taskExecutions(_ db: Database, executionId: String) throws -> [TaskExecutionRecord] {
        try Row.fetchAll(
            db,
            sql: """
                SELECT te.* FROM task_executions te JOIN tasks t ON t.id = te.task_id
                WHERE te.execution_id = ? ORDER BY t.position, te.task_key
                """,
            arguments: [executionId]
        ).map { row in
            try TaskExecutionRecord(
                taskExecutionId: row["task_execution_id"], taskId: row["task_id"], taskKey: row["task_key"],
                status: stored(TaskStatus.self, row["status"]), attempt: row["attempt"],
                output: (row["output"] as String?).flatMap { try? JSONValue(jsonText: $0) }, error: row["error"],
                startedAt: row["started_at"], completedAt: row["completed_at"], cost: row["cost"])
        }
    }

    static func executionRecord(_ row: Row) throws -> ExecutionRecord {
        var record = try ExecutionRecord(
            executionId: row["execution_id"], workflowId: row["workflow_id"], workflowVersion: row["workflow_version"],
            status: stored(ExecutionStatus.self, row["status"]), input: (try? JSONValue(jsonText: row["input"])) ?? .emptyObject,
            output: (row["output"] as String?).flatMap { try? JSONValue(jsonText: $0) }, error: row["error"],
            idempotencyKey: row["idempotency_key"], trigger: stored(TriggerKind.self, row["trigger"]),
            costBreakdown: ExecutionCost(
                taskAttempts: row["cost_task_attempts"], attemptsDollars: row["cost_attempts_dollars"],
                workerSeconds: row["cost_worker_seconds"], computeDollars: row["cost_compute_dollars"],
                requests: row["cost_requests"], requestsDollars: row["cost_requests_dollars"],
                egressBytes: row["cost_egress_bytes"], egressDollars: row["cost_egress_dollars"]),
            priority: row["priority"], createdBy: row["created_by"],
            createdAt: row["created_at"], startedAt: row["started_at"], completedAt: row["completed_at"],
            traceParent: row["trace_parent"], traceState: row["trace_state"])
        record.triggerId = row["trigger_id"]
        record.scheduledAt = row["scheduled_at"]
        return record
    }

    /// A stored enum value; a value no version of Weft writes means the row
    /// was edited by hand: an error naming it, not a guess.
    static func stored<T: RawRepresentable>(_ type: T.Type, _ raw: String) throws -> T where T.RawValue == String {
        guard let value = T(rawValue: raw) else {
            throw StoreError.invalid("the store holds an unknown \(T.self) \"\(raw)\"")
        }
        return value
    }
}
