public import Foundation
import GRDB
import Synchronization
public import WeftStore

extension SQLiteStore: AnalyticsStore {
    // MARK: Folding (inside the writer's transaction)

    /// A task's `depends_on` text to keys, parsed once per distinct text
    /// (a workflow has a handful).
    private static let dependencies = Mutex<[String: [String]]>([:])

    static func dependsOn(_ text: String) -> [String] {
        if let known = dependencies.withLock({ $0[text] }) { return known }
        var keys: [String] = []
        if case .array(let items)? = try? JSONValue(jsonText: text) {
            keys = items.compactMap { if case .string(let key) = $0 { key } else { nil } }
        }
        dependencies.withLock { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[text] = keys
        }
        return keys
    }

    /// What a finished execution adds to the rollups, from its rows as this
    /// transaction left them.
    static func rollupContribution(_ db: Database, executionId: String) throws -> RollupContribution? {
        // One statement, columns by index, dates parsed by arithmetic: this
        // runs in the writer for every execution that finishes.
        let cursor = try Row.fetchCursor(
            db.cachedStatement(sql: """
                SELECT e.workflow_id, e.workflow_version, e.status, e.trigger, e.cost, e.created_at, e.completed_at,
                    COALESCE(w.org_id, ''),
                    te.task_key, te.status, te.attempt, te.error, te.started_at, te.completed_at, te.cost, t.depends_on
                FROM workflow_executions e LEFT JOIN workflows w ON w.id = e.workflow_id
                    LEFT JOIN task_executions te ON te.execution_id = e.execution_id
                    LEFT JOIN tasks t ON t.id = te.task_id
                WHERE e.execution_id = ?
                """), arguments: [executionId])
        var execution: ExecutionRecord?
        var orgId = ""
        var dependsOn: [String: [String]] = [:]
        while let row = try cursor.next() {
            if execution == nil {
                var record = try ExecutionRecord(
                    executionId: executionId, workflowId: row[0], workflowVersion: row[1],
                    status: status(row[2]), input: .emptyObject, trigger: trigger(row[3]),
                    createdAt: date(row, 5) ?? Date(timeIntervalSince1970: 0), completedAt: date(row, 6))
                record.costBreakdown.attemptsDollars = row[4]
                orgId = row[7]
                execution = record
            }
            guard let key = row[8] as String? else { continue }
            execution?.tasks.append(try TaskExecutionRecord(
                taskExecutionId: "", taskId: "", taskKey: key, status: stored(TaskStatus.self, row[9]), attempt: row[10],
                error: row[11], startedAt: date(row, 12), completedAt: date(row, 13), cost: row[14]))
            dependsOn[key] = Self.dependsOn((row[15] as String?) ?? "[]")
        }
        guard let execution else { return nil }
        return RollupFold.contribution(of: execution, orgId: orgId, dependsOn: dependsOn)
    }

    /// A stored date column: the store's own text by arithmetic, anything
    /// else through GRDB.
    static func date(_ row: Row, _ index: Int) -> Date? {
        guard let text = row[index] as String? else { return nil }
        return StoreDate.date(text) ?? (row[index] as Date?)
    }

    /// Cost charged to an execution (or, with `taskKey`, one of its tasks)
    /// after it finished: into its rollups' sums.
    static func lateCost(
        _ db: Database, executionId: String, dollars: Double, taskKey: String?, into rollups: inout RollupBatch
    ) throws {
        guard dollars != 0, let row = try Row.fetchOne(
            db.cachedStatement(sql: """
                SELECT e.workflow_id, e.workflow_version, e.status, e.trigger, e.created_at, COALESCE(w.org_id, '') AS org_id
                FROM workflow_executions e LEFT JOIN workflows w ON w.id = e.workflow_id
                WHERE e.execution_id = ? AND e.completed_at IS NOT NULL
                """), arguments: [executionId])
        else { return }
        let key = try ExecutionRollupKey(
            workflowId: row["workflow_id"], version: row["workflow_version"],
            hour: RollupHour(containing: row["created_at"]), trigger: stored(TriggerKind.self, row["trigger"]),
            status: stored(ExecutionStatus.self, row["status"]))
        if let taskKey {
            rollups.addLateCost(
                dollars, task: TaskRollupKey(workflowId: key.workflowId, version: key.version, hour: key.hour, taskKey: taskKey))
        } else {
            rollups.addLateCost(dollars, execution: key, orgId: row["org_id"])
        }
    }

    /// Adds a batch to the stored rollups: each touched row read, merged
    /// and written once.
    static func flush(_ db: Database, _ batch: RollupBatch) throws {
        guard !batch.isEmpty else { return }
        for (key, add) in batch.executions {
            let keyArgs: StatementArguments = [key.workflowId, key.hour.value, key.version, key.trigger.rawValue, key.status.rawValue]
            var rollup = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT \(rollupColumns) FROM rollup_executions
                    WHERE workflow_id = ? AND hour = ? AND workflow_version = ? AND trigger = ? AND status = ?
                    """), arguments: keyArgs
            ).map { try executionRollup($0, at: 0) } ?? ExecutionRollup()
            rollup.merge(add)
            let orgId = try batch.orgs[key.workflowId] ?? String.fetchOne(
                db.cachedStatement(sql: "SELECT COALESCE(org_id, '') FROM workflows WHERE id = ?"), arguments: [key.workflowId])
                ?? ""
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO rollup_executions (workflow_id, hour, workflow_version, trigger, status, org_id,
                    executions, duration_sum, duration_squares, duration_max, duration_hist, wait_hist, cost_sum, cost_max,
                    cost_hist, retried, attempts, first_created_at, last_finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: keyArgs + [orgId] + values(rollup))
        }
        for (key, add) in batch.organizations {
            let keyArgs: StatementArguments = [key.orgId, key.hour.value, key.trigger.rawValue, key.status.rawValue]
            var rollup = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT \(rollupColumns) FROM rollup_org_executions
                    WHERE org_id = ? AND hour = ? AND trigger = ? AND status = ?
                    """), arguments: keyArgs
            ).map { try executionRollup($0, at: 0) } ?? ExecutionRollup()
            rollup.merge(add)
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO rollup_org_executions (org_id, hour, trigger, status,
                    executions, duration_sum, duration_squares, duration_max, duration_hist, wait_hist, cost_sum, cost_max,
                    cost_hist, retried, attempts, first_created_at, last_finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: keyArgs + values(rollup))
        }
        for (key, add) in batch.tasks {
            let keyArgs: StatementArguments = [key.workflowId, key.hour.value, key.version, key.taskKey]
            var rollup = try Row.fetchOne(
                db.cachedStatement(sql: """
                    SELECT \(taskColumns) FROM rollup_tasks
                    WHERE workflow_id = ? AND hour = ? AND workflow_version = ? AND task_key = ?
                    """), arguments: keyArgs
            ).map { try taskRollup($0, at: 0) } ?? TaskRollup()
            rollup.merge(add)
            try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO rollup_tasks (workflow_id, hour, workflow_version, task_key, runs, failed, retried,
                    flaky, attempts, duration_sum, duration_max, duration_hist, cost_sum, critical_runs, critical_sum, errors)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: keyArgs + [
                    rollup.runs, rollup.failed, rollup.retried, rollup.flaky, rollup.attempts, rollup.durationMsSum,
                    rollup.durationMsMax, rollup.durations.encoded, rollup.costSum, rollup.criticalRuns,
                    rollup.criticalMsSum, TaskRollup.errorsText(rollup.errors),
                ])
        }
    }

    static func values(_ rollup: ExecutionRollup) -> StatementArguments {
        [
            rollup.executions, rollup.durationMsSum, rollup.durationMsSquares, rollup.durationMsMax,
            rollup.durations.encoded, rollup.waits.encoded, rollup.costSum, rollup.costMax, rollup.costs.encoded,
            rollup.retried, rollup.attempts, rollup.firstCreatedAt.map(millis), rollup.lastFinishedAt.map(millis),
        ]
    }

    /// The rollup columns, in the order `executionRollup(_:at:)` reads them.
    static let rollupColumns = """
        executions, duration_sum, duration_squares, duration_max, duration_hist, wait_hist, cost_sum, cost_max, \
        cost_hist, retried, attempts, first_created_at, last_finished_at
        """

    static func millis(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func date(_ millis: Int64?) -> Date? { millis.map { Date(timeIntervalSince1970: Double($0) / 1000) } }

    /// Columns `rollupColumns` from index `first` on. By index, not name:
    /// a query reads thousands of rows, and a name lookup lower-cases it.
    static func executionRollup(_ row: Row, at first: Int, durationsOnly: Bool = false) throws -> ExecutionRollup {
        var rollup = ExecutionRollup()
        try accumulate(&rollup, row, at: first, durationsOnly: durationsOnly)
        return rollup
    }

    /// Adds a row of `rollupColumns` (from `first`) into `rollup`, its
    /// histograms merged from their blobs in place.
    static func accumulate(_ rollup: inout ExecutionRollup, _ row: Row, at first: Int, durationsOnly: Bool) throws {
        rollup.executions += row[first] as Int64
        rollup.durationMsSum += row[first + 1] as Double
        rollup.durationMsSquares += row[first + 2] as Double
        rollup.durationMsMax = max(rollup.durationMsMax, row[first + 3] as Int64)
        try row.withUnsafeData(atIndex: first + 4) { data in data?.withUnsafeBytes { _ = rollup.durations.merge(encoded: $0) } }
        if !durationsOnly {
            try row.withUnsafeData(atIndex: first + 5) { data in data?.withUnsafeBytes { _ = rollup.waits.merge(encoded: $0) } }
        }
        rollup.costSum += row[first + 6] as Double
        rollup.costMax = max(rollup.costMax, row[first + 7] as Double)
        if !durationsOnly {
            try row.withUnsafeData(atIndex: first + 8) { data in data?.withUnsafeBytes { _ = rollup.costs.merge(encoded: $0) } }
        }
        rollup.retried += row[first + 9] as Int64
        rollup.attempts += row[first + 10] as Int64
        if let created = date(row[first + 11]) { rollup.firstCreatedAt = min(rollup.firstCreatedAt ?? created, created) }
        if let finished = date(row[first + 12]) { rollup.lastFinishedAt = max(rollup.lastFinishedAt ?? finished, finished) }
    }

    static let taskColumns = """
        runs, failed, retried, flaky, attempts, duration_sum, duration_max, duration_hist, cost_sum, critical_runs, \
        critical_sum, errors
        """

    /// Adds a row of `taskColumns` (from `first`) into `rollup` in place;
    /// reads for an answer keep every error message (`cappedErrors` false).
    static func accumulate(_ rollup: inout TaskRollup, _ row: Row, at first: Int, cappedErrors: Bool = false) throws {
        rollup.runs += row[first] as Int64
        rollup.failed += row[first + 1] as Int64
        rollup.retried += row[first + 2] as Int64
        rollup.flaky += row[first + 3] as Int64
        rollup.attempts += row[first + 4] as Int64
        rollup.durationMsSum += row[first + 5] as Double
        rollup.durationMsMax = max(rollup.durationMsMax, row[first + 6] as Int64)
        try row.withUnsafeData(atIndex: first + 7) { data in data?.withUnsafeBytes { _ = rollup.durations.merge(encoded: $0) } }
        rollup.costSum += row[first + 8] as Double
        rollup.criticalRuns += row[first + 9] as Int64
        rollup.criticalMsSum += row[first + 10] as Double
        let errors: String = row[first + 11]
        if !errors.isEmpty { rollup.addErrors(text: errors, capped: cappedErrors) }
    }

    /// Columns `taskColumns` from index `first` on, as stored (error
    /// messages capped, for a row that is written back).
    static func taskRollup(_ row: Row, at first: Int) throws -> TaskRollup {
        var rollup = TaskRollup()
        try accumulate(&rollup, row, at: first, cappedErrors: true)
        return rollup
    }

    // MARK: Queries

    /// Stored enum values without a name lookup (the common ones first).
    static func trigger(_ raw: String) throws -> TriggerKind {
        try TriggerKind(rawValue: raw) ?? stored(TriggerKind.self, raw)
    }

    static func status(_ raw: String) throws -> ExecutionStatus {
        try ExecutionStatus(rawValue: raw) ?? stored(ExecutionStatus.self, raw)
    }

    public func executionRollups(_ query: RollupQuery) async throws -> [(key: ExecutionRollupKey, value: ExecutionRollup)] {
        try await read("rollup_executions") { db in
            var filter = " AND hour >= ? AND hour < ?"
            var arguments: StatementArguments = [query.from.value, query.to.value]
            if let trigger = query.trigger {
                filter += " AND trigger = ?"
                arguments += [trigger.rawValue]
            }
            if let status = query.status {
                filter += " AND status = ?"
                arguments += [status.rawValue]
            }
            switch query.scope {
            case .organization(let orgId):
                var rows: [(key: ExecutionRollupKey, value: ExecutionRollup)] = []
                let cursor = try Row.fetchCursor(
                    db, sql: "SELECT hour, trigger, status, \(Self.rollupColumns) FROM rollup_org_executions WHERE org_id = ?"
                        + filter + " ORDER BY hour",
                    arguments: [orgId] + arguments)
                while let row = try cursor.next() {
                    rows.append(try (ExecutionRollupKey(
                        workflowId: "", version: 0, hour: RollupHour(row[0]), trigger: Self.trigger(row[1]),
                        status: Self.status(row[2])), Self.executionRollup(row, at: 3, durationsOnly: query.durationsOnly)))
                }
                return rows
            case .workflows, .visibleTo:
                if let version = query.version {
                    filter += " AND workflow_version = ?"
                    arguments += [version]
                }
                let ids: [String]
                switch query.scope {
                case .workflows(let given): ids = given
                case .visibleTo(let userId): ids = try Self.visibleWorkflowIds(db, userId: userId)
                case .organization: ids = []
                }
                var rows: [(key: ExecutionRollupKey, value: ExecutionRollup)] = []
                // One range of the primary key per workflow.
                let statement = try db.cachedStatement(
                    sql: "SELECT workflow_version, hour, trigger, status, \(Self.rollupColumns) FROM rollup_executions WHERE workflow_id = ?"
                        + filter)
                for id in ids {
                    let cursor = try Row.fetchCursor(statement, arguments: [id] + arguments)
                    if query.acrossHours {
                        // Summed in place: a month of a busy workflow is
                        // thousands of rows but a handful of keys.
                        var merged: [ExecutionRollupKey: ExecutionRollup] = [:]
                        while let row = try cursor.next() {
                            let key = try ExecutionRollupKey(
                                workflowId: id, version: row[0], hour: query.from, trigger: Self.trigger(row[2]),
                                status: Self.status(row[3]))
                            try Self.accumulate(&merged[key, default: ExecutionRollup()], row, at: 4, durationsOnly: query.durationsOnly)
                        }
                        rows += merged.map { ($0.key, $0.value) }
                        continue
                    }
                    while let row = try cursor.next() {
                        rows.append(try (ExecutionRollupKey(
                            workflowId: id, version: row[0], hour: RollupHour(row[1]), trigger: Self.trigger(row[2]),
                            status: Self.status(row[3])), Self.executionRollup(row, at: 4, durationsOnly: query.durationsOnly)))
                    }
                }
                return rows
            }
        }
    }

    /// Summed per hour (or bucket) as the rows are read: each row's duration
    /// histogram is added from its blob in place, the others are not read.
    public func hourlyTotals(_ query: RollupQuery) async throws -> [HourlyTotal] {
        try await read("rollup_hourly") { db in
            var filter = " AND hour >= ? AND hour < ?"
            var arguments: StatementArguments = [query.from.value, query.to.value]
            if let trigger = query.trigger {
                filter += " AND trigger = ?"
                arguments += [trigger.rawValue]
            }
            if let status = query.status {
                filter += " AND status = ?"
                arguments += [status.rawValue]
            }
            let columns = "hour, status, executions, cost_sum, duration_max, duration_hist"
            var byHour: [Int64: HourlyTotal] = [:]
            // Mutated in place (`[hour, default:]`): a copy would copy the
            // histogram's array on every row.
            func add(_ cursor: RowCursor) throws {
                while let row = try cursor.next() {
                    guard let hour = HourlyTotal.bucket(of: RollupHour(row[0] as Int64), in: query.buckets)?.value else {
                        continue
                    }
                    let status = try Self.status(row[1])
                    let executions: Int64 = row[2]
                    let cost: Double = row[3]
                    let longest: Int64 = row[4]
                    try row.withUnsafeData(atIndex: 5) { data in
                        byHour[hour, default: HourlyTotal(hour: RollupHour(hour))].add(
                            status: status, executions: executions, cost: cost, longest: longest, durations: data)
                    }
                }
            }
            switch query.scope {
            case .organization(let orgId):
                try add(Row.fetchCursor(
                    db, sql: "SELECT \(columns) FROM rollup_org_executions WHERE org_id = ?" + filter,
                    arguments: [orgId] + arguments))
            case .workflows, .visibleTo:
                if let version = query.version {
                    filter += " AND workflow_version = ?"
                    arguments += [version]
                }
                let ids: [String]
                switch query.scope {
                case .workflows(let given): ids = given
                case .visibleTo(let userId): ids = try Self.visibleWorkflowIds(db, userId: userId)
                case .organization: ids = []
                }
                let statement = try db.cachedStatement(
                    sql: "SELECT \(columns) FROM rollup_executions WHERE workflow_id = ?" + filter)
                for id in ids { try add(Row.fetchCursor(statement, arguments: [id] + arguments)) }
            }
            return byHour.values.sorted { $0.hour < $1.hour }
        }
    }

    static func visibleWorkflowIds(_ db: Database, userId: String) throws -> [String] {
        try String.fetchAll(
            db,
            sql: """
                SELECT id FROM workflows WHERE user_id = ? AND deleted_at IS NULL
                UNION
                SELECT c.workflow_id FROM workflow_collaborators c JOIN workflows w ON w.id = c.workflow_id
                WHERE c.user_id = ? AND w.deleted_at IS NULL
                """, arguments: [userId, userId])
    }

    public func taskRollups(workflowId: String, from: RollupHour, to: RollupHour, version: Int?, acrossHours: Bool) async throws
        -> [(key: TaskRollupKey, value: TaskRollup)]
    {
        try await read("rollup_tasks") { db in
            var sql = "SELECT workflow_version, hour, task_key, \(Self.taskColumns) FROM rollup_tasks WHERE workflow_id = ? AND hour >= ? AND hour < ?"
            var arguments: StatementArguments = [workflowId, from.value, to.value]
            if let version {
                sql += " AND workflow_version = ?"
                arguments += [version]
            }
            var rows: [(key: TaskRollupKey, value: TaskRollup)] = []
            var merged: [TaskRollupKey: TaskRollup] = [:]
            let cursor = try Row.fetchCursor(db, sql: sql, arguments: arguments)
            while let row = try cursor.next() {
                if acrossHours {
                    let key = TaskRollupKey(workflowId: workflowId, version: row[0], hour: from, taskKey: row[2])
                    try Self.accumulate(&merged[key, default: TaskRollup()], row, at: 3)
                } else {
                    rows.append((TaskRollupKey(workflowId: workflowId, version: row[0], hour: RollupHour(row[1]), taskKey: row[2]),
                                 try Self.taskRollup(row, at: 3)))
                }
            }
            return acrossHours ? merged.map { ($0.key, $0.value) } : rows
        }
    }

    public func visibleWorkflowCount(userId: String) async throws -> Int {
        try await read("visible_workflow_count") { db in try Self.visibleWorkflowIds(db, userId: userId).count }
    }

    public func unfinishedCount(workflowId: String) async throws -> Int {
        try await read("unfinished_count_workflow") { db in
            // Through the status index: the unfinished are few, a workflow's
            // executions may be millions.
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM workflow_executions INDEXED BY executions_by_status
                    WHERE status IN ('Pending', 'Running') AND workflow_id = ?
                    """, arguments: [workflowId]) ?? 0
        }
    }

    // MARK: Rebuild and retention

    public func rebuildRollups() async throws -> Int {
        try await write("rebuild_rollups") { db in
            try db.execute(sql: "DELETE FROM rollup_executions; DELETE FROM rollup_org_executions; DELETE FROM rollup_tasks")
            var folded = 0
            var batch = RollupBatch()
            let ids = try String.fetchCursor(
                db, sql: "SELECT execution_id FROM workflow_executions WHERE completed_at IS NOT NULL ORDER BY execution_id")
            // Fetched first: the cursor must not be open while rows change.
            var all: [String] = []
            while let id = try ids.next() { all.append(id) }
            for id in all {
                if let contribution = try Self.rollupContribution(db, executionId: id) {
                    batch.add(contribution)
                    folded += 1
                }
                // Bounded memory: a batch touches at most a few thousand rows.
                if batch.executions.count + batch.tasks.count >= 20_000 {
                    try Self.flush(db, batch)
                    batch = RollupBatch()
                }
            }
            try Self.flush(db, batch)
            return folded
        }
    }

    public func purgeExecutions(finishedBefore before: Date, limit: Int) async throws -> Int {
        guard limit > 0 else { return 0 }
        return try await write("purge_executions") { db in
            // Ids sort by creation: anything finished before `before` was
            // created before it, so the scan is a prefix of the primary key.
            let ids = try String.fetchAll(
                db,
                sql: """
                    SELECT execution_id FROM workflow_executions
                    WHERE execution_id < ? AND completed_at IS NOT NULL AND completed_at < ?
                    ORDER BY execution_id LIMIT ?
                    """,
                arguments: [IDGenerator.lowerBound(IDGenerator.execution, at: before), StoreDate.text(before), limit])
            guard !ids.isEmpty else { return 0 }
            let deleteTasks = try db.cachedStatement(sql: "DELETE FROM task_executions WHERE execution_id = ?")
            let deleteExecution = try db.cachedStatement(sql: "DELETE FROM workflow_executions WHERE execution_id = ?")
            for id in ids {
                try deleteTasks.execute(arguments: [id])
                try deleteExecution.execute(arguments: [id])
            }
            return ids.count
        }
    }

    // MARK: Budgets

    public func putBudget(_ budget: BudgetRecord) async throws -> BudgetRecord {
        try await write("put_budget") { db in
            var stored = budget
            if let old = try Row.fetchOne(
                db, sql: "SELECT * FROM budgets WHERE scope = ? AND scope_id = ?",
                arguments: [budget.scope.rawValue, budget.scopeId]).map(Self.budget),
                old.monthlyLimitUsd == budget.monthlyLimitUsd, old.timeZone == budget.timeZone
            {
                stored.alertedMonth = old.alertedMonth
                stored.alertLevel = old.alertLevel
            } else {
                stored.alertedMonth = nil
                stored.alertLevel = 0
            }
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO budgets (scope, scope_id, org_id, monthly_limit, time_zone, created_by, updated_at,
                        alerted_month, alert_level)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    stored.scope.rawValue, stored.scopeId, stored.orgId, stored.monthlyLimitUsd, stored.timeZone,
                    stored.createdBy, StoreDate.text(stored.updatedAt), stored.alertedMonth, stored.alertLevel,
                ])
            return stored
        }
    }

    public func budget(scope: BudgetScope, id: String) async throws -> BudgetRecord? {
        try await read("get_budget") { db in
            try Row.fetchOne(
                db, sql: "SELECT * FROM budgets WHERE scope = ? AND scope_id = ?", arguments: [scope.rawValue, id]
            ).map(Self.budget)
        }
    }

    public func deleteBudget(scope: BudgetScope, id: String) async throws -> Bool {
        try await write("delete_budget") { db in
            try db.execute(sql: "DELETE FROM budgets WHERE scope = ? AND scope_id = ?", arguments: [scope.rawValue, id])
            return db.changesCount > 0
        }
    }

    public func budgets() async throws -> [BudgetRecord] {
        try await read("list_budgets") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM budgets ORDER BY scope, scope_id").map(Self.budget)
        }
    }

    public func markBudgetAlerted(scope: BudgetScope, id: String, month: String, level: Int, updatedAt: Date) async throws
        -> Bool
    {
        try await write("mark_budget_alerted") { db in
            try db.execute(
                sql: """
                    UPDATE budgets SET alerted_month = ?, alert_level = ?
                    WHERE scope = ? AND scope_id = ? AND updated_at = ? AND NOT (alerted_month IS ? AND alert_level >= ?)
                    """, arguments: [month, level, scope.rawValue, id, StoreDate.text(updatedAt), month, level])
            return db.changesCount > 0
        }
    }

    static func budget(_ row: Row) throws -> BudgetRecord {
        try BudgetRecord(
            scope: stored(BudgetScope.self, row["scope"]), scopeId: row["scope_id"], orgId: row["org_id"],
            monthlyLimitUsd: row["monthly_limit"], timeZone: row["time_zone"], createdBy: row["created_by"],
            updatedAt: row["updated_at"], alertedMonth: row["alerted_month"], alertLevel: row["alert_level"])
    }
}
