import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: WorkflowStore {
    public func createWorkflow(_ workflow: WorkflowRecord, actor: String) async throws -> WorkflowRecord {
        var stored = workflow
        stored.version = 1
        stored.deletedAt = nil
        let record = stored
        try await write("create_workflow") { db in
            try db.cachedStatement(sql: """
                INSERT INTO workflows (id, user_id, org_id, name, description, version, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, 1, ?, ?)
                """).execute(arguments: [
                    record.id, record.ownerId, record.orgId.isEmpty ? nil : record.orgId, record.name, record.description,
                    StoreDate.text(record.createdAt), StoreDate.text(record.updatedAt),
                ])
            for (position, task) in record.tasks.enumerated() {
                try Self.insertTask(db, task, workflowId: record.id, position: position)
            }
            try Self.snapshot(db, record, actor: actor, label: "")
            try Self.index(db, record)
            try Self.audit(db, actor: actor, action: "create", resourceType: "workflow", resourceId: record.id, at: record.createdAt)
        }
        return stored
    }

    public func workflow(id: String, includeDeleted: Bool) async throws -> WorkflowRecord? {
        try await read("get_workflow") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM workflows WHERE id = ?", arguments: [id]) else {
                return nil
            }
            var workflow = Self.workflowRecord(row)
            if workflow.deletedAt != nil && !includeDeleted { return nil }
            workflow.tasks = try Self.liveTasks(db, workflowIds: [id])[id] ?? []
            return workflow
        }
    }

    public func modifyWorkflow(
        id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?,
        _ change: @escaping @Sendable (inout WorkflowRecord) throws -> Void
    ) async throws -> WorkflowRecord {
        try await write("modify_workflow") { db in
            try Self.authorize(db, workflowId: id, actor: actor, needs: needs)
            return try Self.modify(db, id: id, expectedVersion: expectedVersion, actor: actor, label: "", change)
        }
    }

    public func rollbackWorkflow(id: String, to versionId: String, actor: String, needs: WorkflowRole?) async throws
        -> (WorkflowRecord, WorkflowVersionRecord)
    {
        try await write("rollback_workflow") { db in
            try Self.authorize(db, workflowId: id, actor: actor, needs: needs)
            guard let target = try Self.version(db, workflowId: id, versionId: versionId) else {
                throw StoreError.notFound("version \(versionId) of workflow \(id) not found")
            }
            let now = Date.nowMillis
            let stored = try Self.modify(
                db, id: id, expectedVersion: nil, actor: actor, label: "rollback to version \(target.version)"
            ) { next in
                next.restore(target, at: now)
            }
            guard let created = try Self.version(db, workflowId: id, versionId: String(stored.version)) else {
                throw StoreError.notFound("version \(stored.version) of workflow \(id) not found")
            }
            return (stored, created)
        }
    }

    public func workflowVersion(workflowId: String, versionId: String) async throws -> WorkflowVersionRecord? {
        try await read("get_version") { db in try Self.version(db, workflowId: workflowId, versionId: versionId) }
    }

    public func labelVersion(workflowId: String, label: String, actor: String) async throws -> WorkflowVersionRecord {
        try await write("label_version") { db in
            guard let current = try Int.fetchOne(
                db, sql: "SELECT version FROM workflows WHERE id = ? AND deleted_at IS NULL", arguments: [workflowId])
            else { throw StoreError.notFound("workflow \(workflowId) not found") }
            try db.execute(
                sql: "UPDATE workflow_versions SET label = ? WHERE workflow_id = ? AND version = ?",
                arguments: [label, workflowId, current])
            try Self.audit(db, actor: actor, action: "label_version", resourceType: "workflow", resourceId: workflowId,
                           at: Date(), detail: .object(["version": .number(Double(current)), "label": .string(label)]))
            guard let version = try Self.version(db, workflowId: workflowId, versionId: String(current)) else {
                throw StoreError.notFound("version \(current) of workflow \(workflowId) not found")
            }
            return version
        }
    }

    /// Checks the actor's role inside the write transaction, so a role taken
    /// away at the same moment cannot let one more change through.
    static func authorize(_ db: Database, workflowId: String, actor: String, needs: WorkflowRole?) throws {
        guard let needs else { return }
        guard let owner = try String.fetchOne(
            db, sql: "SELECT user_id FROM workflows WHERE id = ? AND deleted_at IS NULL", arguments: [workflowId])
        else { throw StoreError.notFound("workflow \(workflowId) not found") }
        let role: WorkflowRole?
        if owner == actor {
            role = .owner
        } else {
            role = try String.fetchOne(
                db, sql: "SELECT role FROM workflow_collaborators WHERE workflow_id = ? AND user_id = ?",
                arguments: [workflowId, actor]
            ).flatMap(WorkflowRole.init(rawValue:))
        }
        guard let role else { throw StoreError.notFound("workflow \(workflowId) not found") }
        guard role >= needs else {
            throw StoreError.permissionDenied(
                "your role on workflow \(workflowId) is \(role.rawValue); this needs \(needs.rawValue)")
        }
    }

    /// A version by its id (`ver_…`) or its number ("3").
    static func version(_ db: Database, workflowId: String, versionId: String) throws -> WorkflowVersionRecord? {
        if let number = Int(versionId) {
            return try Row.fetchOne(
                db, sql: "SELECT * FROM workflow_versions WHERE workflow_id = ? AND version = ?",
                arguments: [workflowId, number]
            ).map(versionRecord)
        }
        return try Row.fetchOne(
            db, sql: "SELECT * FROM workflow_versions WHERE workflow_id = ? AND id = ?", arguments: [workflowId, versionId]
        ).map(versionRecord)
    }

    /// The read-modify-write of a workflow inside a write transaction.
    static func modify(
        _ db: Database, id: String, expectedVersion: Int?, actor: String, label: String,
        _ change: (inout WorkflowRecord) throws -> Void
    ) throws -> WorkflowRecord {
        guard let row = try Row.fetchOne(
            db, sql: "SELECT * FROM workflows WHERE id = ? AND deleted_at IS NULL", arguments: [id])
        else { throw StoreError.notFound("workflow \(id) not found") }
        var current = workflowRecord(row)
        if let expectedVersion, expectedVersion != current.version {
            throw StoreError.conflict(
                "workflow \(id) changed since it was read (etag \"\(expectedVersion)\", now \"\(current.version)\"); fetch it again and reapply your change")
        }
        current.tasks = try liveTasks(db, workflowIds: [id])[id] ?? []
        var next = current
        // The change runs inside the write transaction: writers are
        // serialized, so an edit without an etag never loses a race.
        try change(&next)
        next.id = current.id
        next.ownerId = current.ownerId
        next.createdAt = current.createdAt
        next.version = current.version + 1
        next.deletedAt = nil
        try db.execute(
            sql: "UPDATE workflows SET name = ?, description = ?, version = ?, updated_at = ? WHERE id = ?",
            arguments: [next.name, next.description, next.version, next.updatedAt, next.id])
        // Retire every live task, then revive (update) the kept ones and
        // insert the new ones, so swapping keys between tasks never trips
        // the unique (workflow, key) index midway.
        try db.execute(
            sql: "UPDATE tasks SET deleted_at = ? WHERE workflow_id = ? AND deleted_at IS NULL",
            arguments: [next.updatedAt, next.id])
        for (position, task) in next.tasks.enumerated() {
            try db.execute(
                sql: """
                    UPDATE tasks SET key = ?, name = ?, description = ?, action = ?, config = ?, depends_on = ?,
                        retry = ?, timeout_ms = ?, position = ?, updated_at = ?, deleted_at = NULL
                    WHERE id = ? AND workflow_id = ?
                    """,
                arguments: [
                    task.key, task.name, task.description, task.action.rawValue, task.config.jsonText(),
                    dependsOnJSON(task.dependsOn), task.retry.map(retryJSON), task.timeoutMs, position,
                    task.updatedAt, task.id, next.id,
                ])
            if db.changesCount == 0 {
                try insertTask(db, task, workflowId: next.id, position: position)
            }
        }
        next.tasks = try liveTasks(db, workflowIds: [next.id])[next.id] ?? []
        try snapshot(db, next, actor: actor, label: label)
        try index(db, next)
        try audit(db, actor: actor, action: "update", resourceType: "workflow", resourceId: next.id, at: next.updatedAt,
                       detail: .object(["version": .number(Double(next.version))]))
        return next
    }

    public func deleteWorkflow(id: String, expectedVersion: Int?, actor: String, needs: WorkflowRole?) async throws {
        try await write("delete_workflow") { db in
            try Self.authorize(db, workflowId: id, actor: actor, needs: needs)
            guard let version = try Int.fetchOne(
                db, sql: "SELECT version FROM workflows WHERE id = ? AND deleted_at IS NULL", arguments: [id])
            else { throw StoreError.notFound("workflow \(id) not found") }
            if let expectedVersion, expectedVersion != version {
                throw StoreError.conflict(
                    "workflow \(id) changed since it was read (etag \"\(expectedVersion)\", now \"\(version)\")")
            }
            let now = Date()
            try db.execute(sql: "UPDATE workflows SET deleted_at = ?, updated_at = ? WHERE id = ?", arguments: [now, now, id])
            try db.execute(
                sql: "DELETE FROM workflow_search WHERE rowid = (SELECT rid FROM workflows WHERE id = ?)",
                arguments: [id])
            try Self.audit(db, actor: actor, action: "delete", resourceType: "workflow", resourceId: id, at: now)
        }
    }

    public func listWorkflows(_ query: WorkflowQuery) async throws -> Page<WorkflowRecord> {
        try await read("list_workflows") { db in
            var sql = "SELECT w.*, \(Self.callerRoleColumn) FROM workflows w WHERE w.deleted_at IS NULL"
            var arguments: StatementArguments = [query.visibleTo, query.visibleTo]
            sql += Self.visibilityClause
            arguments += [query.visibleTo, query.visibleTo]
            if let cursor = query.cursor {
                sql += " AND w.id < ?"
                arguments += [cursor]
            }
            if let prefix = query.namePrefix, !prefix.isEmpty {
                // LIKE is case-insensitive for ASCII; escape its wildcards.
                sql += " AND w.name LIKE ? ESCAPE '\\'"
                arguments += [Self.escapeLike(prefix) + "%"]
            }
            if let owner = query.ownerId {
                sql += " AND w.user_id = ?"
                arguments += [owner]
            }
            if let after = query.createdAfter {
                sql += " AND w.created_at >= ?"
                arguments += [after]
            }
            if let before = query.createdBefore {
                sql += " AND w.created_at < ?"
                arguments += [before]
            }
            sql += " ORDER BY w.id DESC LIMIT ?"
            arguments += [query.limit + 1]
            var workflows = try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.workflowRecord)
            var next: String?
            if workflows.count > query.limit {
                workflows.removeLast()
                next = workflows.last?.id
            }
            if query.includeTasks, !workflows.isEmpty {
                let tasks = try Self.liveTasks(db, workflowIds: workflows.map(\.id))
                for index in workflows.indices { workflows[index].tasks = tasks[workflows[index].id] ?? [] }
            }
            return Page(items: workflows, nextCursor: next)
        }
    }

    public func task(id: String) async throws -> TaskRecord? {
        try await read("get_task") { db in
            try Row.fetchOne(
                db,
                sql: """
                    SELECT t.* FROM tasks t JOIN workflows w ON w.id = t.workflow_id
                    WHERE t.id = ? AND t.deleted_at IS NULL AND w.deleted_at IS NULL
                    """,
                arguments: [id]
            ).map(Self.taskRecord)
        }
    }

    public func listVersions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<WorkflowVersionRecord> {
        let after = cursor.flatMap(Int.init) ?? Int.max  // a version number; compared, never added to
        return try await read("list_versions") { db in
            var versions = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM workflow_versions WHERE workflow_id = ? AND version < ?
                    ORDER BY version DESC LIMIT ?
                    """,
                arguments: [workflowId, after, limit + 1]
            ).map(Self.versionRecord)
            var next: String?
            if versions.count > limit {
                versions.removeLast()
                next = versions.last.map { String($0.version) }
            }
            return Page(items: versions, nextCursor: next)
        }
    }

    // MARK: - Rows

    /// Owner or collaborator (expects the workflow aliased `w` and two user-id arguments).
    static let visibilityClause = """
         AND (w.user_id = ? OR EXISTS (SELECT 1 FROM workflow_collaborators c WHERE c.workflow_id = w.id AND c.user_id = ?))
        """

    /// The role of the user given by two arguments (expects `w`).
    static let callerRoleColumn = """
        CASE WHEN w.user_id = ? THEN 'owner' ELSE
            (SELECT c.role FROM workflow_collaborators c WHERE c.workflow_id = w.id AND c.user_id = ?) END AS caller_role
        """

    static func workflowRecord(_ row: Row) -> WorkflowRecord {
        var record = WorkflowRecord(
            id: row["id"], ownerId: row["user_id"], name: row["name"], description: row["description"],
            version: row["version"], createdAt: row["created_at"], updatedAt: row["updated_at"],
            deletedAt: row["deleted_at"], tasks: [])
        record.orgId = (row["org_id"] as String?) ?? ""
        if row.hasColumn("caller_role") {
            record.callerRole = (row["caller_role"] as String?).flatMap(WorkflowRole.init(rawValue:))
        }
        return record
    }

    static func taskRecord(_ row: Row) -> TaskRecord {
        TaskRecord(
            id: row["id"], workflowId: row["workflow_id"], key: row["key"], name: row["name"],
            description: row["description"], action: TaskType(rawValue: row["action"]),
            config: decodeConfig(row["config"]),
            dependsOn: decodeKeys(row["depends_on"]),
            retry: (row["retry"] as String?).flatMap { decodeJSON(RetryPolicyRecord.self, $0) },
            timeoutMs: row["timeout_ms"], createdAt: row["created_at"], updatedAt: row["updated_at"])
    }

    /// Most tasks have `{}` configs and short key lists; skip Foundation's
    /// JSON decoder for those (it dominates listing otherwise).
    static func decodeConfig(_ text: String) -> JSONValue {
        if text == "{}" { return .emptyObject }
        return (try? JSONValue(jsonText: text)) ?? .emptyObject
    }

    static func decodeKeys(_ text: String) -> [String] {
        if text == "[]" { return [] }
        // Keys are [A-Za-z0-9_-] (validated on write), so a JSON list of them
        // has no escapes: split it directly.
        let inner = text.utf8.dropFirst().dropLast()
        if text.hasPrefix("[\""), text.hasSuffix("\"]"), !inner.contains(UInt8(ascii: "\\")) {
            return String(Substring(inner)).split(separator: ",").map { String($0.dropFirst().dropLast()) }
        }
        return decodeJSON([String].self, text) ?? []
    }

    static func versionRecord(_ row: Row) -> WorkflowVersionRecord {
        let definition = decodeJSON([TaskSnapshot].self, row["definition"]) ?? []
        let workflowId: String = row["workflow_id"]
        let createdAt: Date = row["created_at"]
        return WorkflowVersionRecord(
            id: row["id"], workflowId: workflowId, version: row["version"], name: row["name"],
            description: row["description"],
            tasks: definition.map { $0.record(workflowId: workflowId, at: createdAt) },
            label: row["label"], createdBy: row["created_by"], createdAt: createdAt)
    }

    static func liveTasks(_ db: Database, workflowIds: [String]) throws -> [String: [TaskRecord]] {
        var result: [String: [TaskRecord]] = [:]
        // Chunks keep the statement under SQLite's variable limit.
        for chunk in stride(from: 0, to: workflowIds.count, by: 500).map({ workflowIds[$0..<min($0 + 500, workflowIds.count)] }) {
            let placeholders = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT * FROM tasks WHERE workflow_id IN (\(placeholders)) AND deleted_at IS NULL
                    ORDER BY workflow_id, position
                    """,
                arguments: StatementArguments(Array(chunk)))
            for row in rows {
                let task = taskRecord(row)
                result[task.workflowId, default: []].append(task)
            }
        }
        return result
    }

    static func insertTask(_ db: Database, _ task: TaskRecord, workflowId: String, position: Int) throws {
        do {
            try db.cachedStatement(sql: """
                INSERT INTO tasks (id, workflow_id, key, name, description, action, config, depends_on, retry,
                    timeout_ms, position, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [
                    task.id, workflowId, task.key, task.name, task.description, task.action.rawValue, task.config.jsonText(),
                    dependsOnJSON(task.dependsOn), task.retry.map(retryJSON), task.timeoutMs, position,
                    StoreDate.text(task.createdAt), StoreDate.text(task.updatedAt),
                ])
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
            throw StoreError.alreadyExists("task id \(task.id) is already used by another workflow")
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StoreError.alreadyExists("task key \(task.key) is used twice in workflow \(workflowId)")
        }
    }

    static func snapshot(_ db: Database, _ workflow: WorkflowRecord, actor: String, label: String) throws {
        try db.cachedStatement(sql: """
            INSERT INTO workflow_versions (id, workflow_id, version, name, description, definition, label,
                created_by, created_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [
                IDGenerator.make(IDGenerator.version, now: workflow.updatedAt), workflow.id, workflow.version,
                workflow.name, workflow.description, JSONValue.array(workflow.tasks.map { TaskSnapshot($0).json }).jsonText(),
                label, actor, StoreDate.text(workflow.updatedAt),
            ])
    }

    static func index(_ db: Database, _ workflow: WorkflowRecord) throws {
        guard let rowid = try Int64.fetchOne(
            db.cachedStatement(sql: "SELECT rid FROM workflows WHERE id = ?"), arguments: [workflow.id])
        else { return }
        try db.cachedStatement(sql: "DELETE FROM workflow_search WHERE rowid = ?").execute(arguments: [rowid])
        try db.cachedStatement(sql: "INSERT INTO workflow_search (rowid, name, description, task_names) VALUES (?, ?, ?, ?)")
            .execute(arguments: [
                rowid, workflow.name, workflow.description,
                workflow.tasks.map { $0.name }.joined(separator: "\n"),
            ])
    }

    /// BM25 is computed for every match (~1.5 µs each here, plus its
    /// document counts), so a word found in half of 100,000 workflows would
    /// cost ~150 ms to rank. Ranking therefore considers the caller's newest
    /// `searchRankWindow` matches (found in rowid order, cheap) and orders
    /// those by relevance: 1–5 ms whatever the query. The window is the same
    /// for every page, so pages never overlap; at most that many results are
    /// reachable.
    static let searchRankWindow = 1000

    /// Text matched literally by `LIKE ? ESCAPE '\'`: its `\`, `%` and `_`
    /// escaped.
    static func escapeLike(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
            .replacingOccurrences(of: "_", with: "\\_")
    }

    /// The stored JSON of a task's dependencies and retry policy, written
    /// by hand (Foundation's JSONEncoder was ~4% of a create); read back
    /// with `decodeJSON`.
    static func dependsOnJSON(_ keys: [String]) -> String { JSONValue.array(keys.map(JSONValue.string)).jsonText() }

    static func retryJSON(_ retry: RetryPolicyRecord) -> String { TaskSnapshot.json(retry).jsonText() }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String) -> T? {
        try? JSONDecoder().decode(type, from: Data(text.utf8))
    }
}

/// A task as stored inside a version snapshot.
struct TaskSnapshot: Codable {
    var id: String
    var key: String
    var name: String
    var description: String
    var action: String
    var config: JSONValue
    var dependsOn: [String]
    var retry: RetryPolicyRecord?
    var timeoutMs: Int64?

    init(_ task: TaskRecord) {
        id = task.id
        key = task.key
        name = task.name
        description = task.description
        action = task.action.rawValue
        config = task.config
        dependsOn = task.dependsOn
        retry = task.retry
        timeoutMs = task.timeoutMs
    }

    /// What `Codable` would write (nil fields left out), as a `JSONValue`.
    var json: JSONValue {
        var object: [String: JSONValue] = [
            "id": .string(id), "key": .string(key), "name": .string(name), "description": .string(description),
            "action": .string(action), "config": config, "dependsOn": .array(dependsOn.map(JSONValue.string)),
        ]
        if let retry { object["retry"] = Self.json(retry) }
        if let timeoutMs { object["timeoutMs"] = .number(Double(timeoutMs)) }
        return .object(object)
    }

    static func json(_ retry: RetryPolicyRecord) -> JSONValue {
        var object: [String: JSONValue] = [
            "maxAttempts": .number(Double(retry.maxAttempts)), "initialBackoffMs": .number(Double(retry.initialBackoffMs)),
            "maxBackoffMs": .number(Double(retry.maxBackoffMs)), "backoffMultiplier": .number(retry.backoffMultiplier),
            "jitter": .number(retry.jitter), "retryableErrors": .array(retry.retryableErrors.map(JSONValue.string)),
        ]
        if let total = retry.totalTimeoutMs { object["totalTimeoutMs"] = .number(Double(total)) }
        if let go = retry.continueOnFailure { object["continueOnFailure"] = .bool(go) }
        return .object(object)
    }

    func record(workflowId: String, at date: Date) -> TaskRecord {
        TaskRecord(
            id: id, workflowId: workflowId, key: key, name: name, description: description, action: TaskType(rawValue: action),
            config: config, dependsOn: dependsOn, retry: retry, timeoutMs: timeoutMs, createdAt: date, updatedAt: date)
    }
}
