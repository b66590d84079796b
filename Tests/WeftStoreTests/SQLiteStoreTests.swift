import Foundation
import GRDB
import Testing
import WeftStore

@Suite("SQLite store")
struct SQLiteStoreTests {
    @Test("migrations run on an empty file, create the seed's tables and are idempotent on reopen")
    func migrationsFromEmpty() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        #expect(try temp.store.appliedMigrations() == ["v1-seed-schema", "v2-feature-tables", "v3-workflow-search", "v4-task-queue", "v5-engine", "v6-observability"])
        let tables = try await temp.store.pool.read { db in
            try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table') ORDER BY name")
        }
        for table in [
            "users", "workflows", "tasks", "workflow_executions", "task_executions", "workflow_collaborators",
            "workflow_versions", "schedules", "subscriptions", "integrations", "audit_log", "outbox", "workflow_search",
        ] {
            #expect(tables.contains(table), "missing table \(table)")
        }
        let mode = try await temp.store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
        // Reopening the same file applies nothing twice and keeps the data.
        let user = try await temp.user()
        let reopened = try SQLiteStore(.init(path: temp.path))
        #expect(try reopened.appliedMigrations().count == 6)
        #expect(try await reopened.user(id: user.id)?.email == user.email)
    }

    @Test("emails are unique regardless of case")
    func uniqueEmail() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        try await temp.user("Same@Example.com")
        await #expect(throws: StoreError.alreadyExists("a user with email same@example.com already exists")) {
            try await temp.user("same@example.com")
        }
        #expect(try await temp.store.user(email: "SAME@example.COM") != nil)
    }

    @Test("foreign keys and checks are enforced")
    func constraints() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        // A workflow of a user that does not exist.
        await #expect(throws: DatabaseError.self) {
            _ = try await temp.store.createWorkflow(temp.workflow(owner: "usr_missing"), actor: "usr_missing")
        }
        // Two live tasks with one key in one workflow.
        let user = try await temp.user()
        var workflow = temp.workflow(owner: user.id, taskNames: ["a", "b"])
        workflow.tasks[1].key = workflow.tasks[0].key
        await #expect(throws: StoreError.self) { _ = try await temp.store.createWorkflow(workflow, actor: user.id) }
        // Nothing of the failed write is left behind.
        #expect(try await temp.store.workflow(id: workflow.id, includeDeleted: true) == nil)
        // An execution status outside the seed's enum.
        await #expect(throws: DatabaseError.self) {
            try await temp.store.pool.write { db in
                try db.execute(sql: "INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, status, created_at) VALUES ('e', 'w', 1, 'Bogus', 0)")
            }
        }
    }

    @Test("create, read, replace with version check, and the version history")
    func workflowLifecycle() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let created = try await temp.store.createWorkflow(temp.workflow(owner: user.id, taskNames: ["a", "b"]), actor: user.id)
        #expect(created.version == 1)
        let read = try #require(try await temp.store.workflow(id: created.id, includeDeleted: false))
        #expect(read.tasks.map(\.name) == ["a", "b"])
        // The store keeps milliseconds; the Double behind Date may differ below that.
        #expect(abs(read.createdAt.timeIntervalSince(created.createdAt)) < 0.0005)

        var next = read
        next.name = "Renamed"
        next.tasks.removeFirst()  // drop "a"
        next.tasks.append(
            TaskRecord(id: IDGenerator.make(IDGenerator.task), workflowId: read.id, key: "k0", name: "c", description: "",
                       action: "noop", createdAt: .nowMillis, updatedAt: .nowMillis))  // reuse a's key
        let replaced = try await temp.store.replaceWorkflow(next, expectedVersion: 1, actor: user.id)
        #expect(replaced.version == 2)
        #expect(replaced.tasks.map(\.name) == ["b", "c"])
        await #expect(throws: StoreError.self) {
            _ = try await temp.store.replaceWorkflow(next, expectedVersion: 1, actor: user.id)
        }
        let versions = try await temp.store.listVersions(workflowId: read.id, limit: 10, cursor: nil)
        #expect(versions.items.map(\.version) == [2, 1])
        #expect(versions.items[1].tasks.map(\.name) == ["a", "b"])
        // The removed task row is kept (executions may point at it) but hidden.
        let all = try await temp.store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tasks WHERE workflow_id = ?", arguments: [read.id])
        }
        #expect(all == 3)
        let audit = try await temp.store.auditEntries(resourceType: "workflow", resourceId: read.id)
        #expect(audit.map(\.action) == ["create", "update"])
    }

    @Test("soft delete hides the workflow and keeps its execution history")
    func softDelete() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let created = try await temp.store.createWorkflow(temp.workflow(owner: user.id, name: "Nightly export"), actor: user.id)
        try await temp.store.pool.write { db in
            try db.execute(
                sql: "INSERT INTO workflow_executions (execution_id, workflow_id, workflow_version, status, created_at) VALUES (?, ?, 1, 'Completed', ?)",
                arguments: ["exe_1", created.id, Date()])
        }
        await #expect(throws: StoreError.self) {
            try await temp.store.deleteWorkflow(id: created.id, expectedVersion: 7, actor: user.id, needs: .owner)
        }
        try await temp.store.deleteWorkflow(id: created.id, expectedVersion: 1, actor: user.id, needs: .owner)
        #expect(try await temp.store.workflow(id: created.id, includeDeleted: false) == nil)
        #expect(try await temp.store.workflow(id: created.id, includeDeleted: true)?.deletedAt != nil)
        #expect(try await temp.store.execution(id: "exe_1")?.workflowId == created.id)
        let listed = try await temp.store.listWorkflows(WorkflowQuery(visibleTo: user.id, limit: 10))
        #expect(listed.items.isEmpty)
        let found = try await temp.store.searchWorkflows(text: "nightly", visibleTo: user.id, limit: 10, cursor: nil)
        #expect(found.items.isEmpty)
        await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
            try await temp.store.deleteWorkflow(id: created.id, expectedVersion: nil, actor: user.id, needs: .owner)
        }
    }

    @Test("writes check the actor's role inside the transaction")
    func rolesInTransaction() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let owner = try await temp.user()
        let editor = try await temp.user()
        let viewer = try await temp.user()
        let stranger = try await temp.user()
        let created = try await temp.store.createWorkflow(temp.workflow(owner: owner.id), actor: owner.id)
        try await temp.store.addCollaborator(
            CollaboratorRecord(workflowId: created.id, userId: editor.id, role: .editor, addedAt: .nowMillis), actor: owner.id)
        try await temp.store.addCollaborator(
            CollaboratorRecord(workflowId: created.id, userId: viewer.id, role: .viewer, addedAt: .nowMillis), actor: owner.id)
        let rename: @Sendable (inout WorkflowRecord) throws -> Void = { $0.name = "renamed" }
        let edited = try await temp.store.modifyWorkflow(
            id: created.id, expectedVersion: nil, actor: editor.id, needs: .editor, rename)
        #expect(edited.version == 2)
        await #expect(throws: StoreError.permissionDenied("your role on workflow \(created.id) is viewer; this needs editor")) {
            _ = try await temp.store.modifyWorkflow(id: created.id, expectedVersion: nil, actor: viewer.id, needs: .editor, rename)
        }
        await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
            _ = try await temp.store.modifyWorkflow(id: created.id, expectedVersion: nil, actor: stranger.id, needs: .viewer, rename)
        }
        await #expect(throws: StoreError.self) {
            try await temp.store.deleteWorkflow(id: created.id, expectedVersion: nil, actor: editor.id, needs: .owner)
        }
        try await temp.store.removeCollaborator(workflowId: created.id, userId: editor.id, actor: owner.id)
        await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
            _ = try await temp.store.rollbackWorkflow(id: created.id, to: "1", actor: editor.id, needs: .editor)
        }
        #expect(try await temp.store.workflow(id: created.id, includeDeleted: false)?.version == 2)
    }

    @Test("keyset pagination walks every visible workflow once, newest first")
    func pagination() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let alice = try await temp.user()
        let bob = try await temp.user()
        var ids: [String] = []
        for index in 0..<23 {
            ids.append(try await temp.store.createWorkflow(temp.workflow(owner: alice.id, name: "wf \(index)"), actor: alice.id).id)
        }
        _ = try await temp.store.createWorkflow(temp.workflow(owner: bob.id, name: "bob's"), actor: bob.id)
        var seen: [String] = []
        var cursor: String?
        repeat {
            let page = try await temp.store.listWorkflows(WorkflowQuery(visibleTo: alice.id, limit: 5, cursor: cursor))
            #expect(page.items.count <= 5)
            #expect(page.items.allSatisfy { $0.callerRole == .owner })
            seen += page.items.map(\.id)
            cursor = page.nextCursor
        } while cursor != nil
        #expect(seen == ids.sorted().reversed())
        // Bob sees his own only, until Alice shares one with him.
        #expect(try await temp.store.listWorkflows(WorkflowQuery(visibleTo: bob.id, limit: 50)).items.count == 1)
        try await temp.store.addCollaborator(
            CollaboratorRecord(workflowId: ids[0], userId: bob.id, role: .viewer, addedAt: .nowMillis), actor: alice.id)
        let shared = try await temp.store.listWorkflows(WorkflowQuery(visibleTo: bob.id, limit: 50))
        #expect(shared.items.count == 2)
        #expect(shared.items.first { $0.id == ids[0] }?.callerRole == .viewer)
        #expect(try await temp.store.role(userId: bob.id, workflowId: ids[0]) == .viewer)
        // Name prefix filter, escaped LIKE wildcards.
        let prefixed = try await temp.store.listWorkflows(WorkflowQuery(visibleTo: alice.id, limit: 50, namePrefix: "WF 1"))
        #expect(Set(prefixed.items.map(\.name)) == Set(["wf 1", "wf 10", "wf 11", "wf 12", "wf 13", "wf 14", "wf 15", "wf 16", "wf 17", "wf 18", "wf 19"]))
        #expect(try await temp.store.listWorkflows(WorkflowQuery(visibleTo: alice.id, limit: 50, namePrefix: "%")).items.isEmpty)
    }

    @Test("search ranks name hits above description and task hits, and survives any query text")
    func search() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let byTask = try await temp.store.createWorkflow(
            temp.workflow(owner: user.id, name: "Alpha", taskNames: ["invoice sender"]), actor: user.id)
        let byName = try await temp.store.createWorkflow(
            temp.workflow(owner: user.id, name: "Invoice run", description: "monthly"), actor: user.id)
        let byDescription = try await temp.store.createWorkflow(
            temp.workflow(owner: user.id, name: "Beta", description: "creates the invoice pdf"), actor: user.id)
        let hits = try await temp.store.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 10, cursor: nil)
        #expect(hits.items.map(\.workflow.id) == [byName.id, byDescription.id, byTask.id])
        #expect(hits.items[0].snippet.contains("[Invoice]"))
        // Prefix on the last word.
        #expect(try await temp.store.searchWorkflows(text: "invo", visibleTo: user.id, limit: 10, cursor: nil).items.count == 3)
        // Paging by offset.
        let first = try await temp.store.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 2, cursor: nil)
        let second = try await temp.store.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 2, cursor: first.nextCursor)
        #expect(first.items.count == 2 && second.items.count == 1 && second.nextCursor == nil)
        for hostile in [
            "\"", "\"\"\"", "*", "invoice*", "NEAR(a b)", "a OR b", "-", "^", "(", ")", "col:abc", "'; DROP TABLE workflows; --",
            "\u{0}", "ünïcødé", "日本語", String(repeating: "x ", count: 500), "AND", "NOT", "{}", "a:b:c",
        ] {
            _ = try await temp.store.searchWorkflows(text: hostile, visibleTo: user.id, limit: 10, cursor: nil)
        }
        // Only the caller's workflows.
        let other = try await temp.user()
        #expect(try await temp.store.searchWorkflows(text: "invoice", visibleTo: other.id, limit: 10, cursor: nil).items.isEmpty)
    }

    @Test("concurrent writers: one version wins, every create lands, readers never block")
    func concurrency() async throws {
        let temp = try TempStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let created = try await temp.store.createWorkflow(temp.workflow(owner: user.id), actor: user.id)
        let store = temp.store
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<20 {
                var next = created
                next.name = "writer \(index)"
                group.addTask {
                    (try? await store.replaceWorkflow(next, expectedVersion: 1, actor: user.id)) != nil
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 }.count == 1)
        #expect(try await store.workflow(id: created.id, includeDeleted: false)?.version == 2)

        let workflows = (0..<100).map { temp.workflow(owner: user.id, name: "bulk \($0)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for workflow in workflows {
                group.addTask { _ = try await store.createWorkflow(workflow, actor: user.id) }
                group.addTask { _ = try await store.listWorkflows(WorkflowQuery(visibleTo: user.id, limit: 20)) }
            }
            try await group.waitForAll()
        }
        let count = try await store.pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM workflows") }
        #expect(count == 101)
    }
}

@Suite("log store")
struct LogStoreTests {
    @Test("append numbers entries per execution; reads filter and page; retention purges old entries")
    func appendReadPurge() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("weft-logs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let logs = try SQLiteLogStore(path: directory.appendingPathComponent("logs.sqlite").path)
        let old = Date().addingTimeInterval(-86_400 * 40)
        let stored = try await logs.append([
            LogRecord(executionId: "e1", taskId: nil, level: .info, message: "started", createdAt: old),
            LogRecord(executionId: "e2", taskId: "t", level: .error, message: "other", createdAt: Date()),
            LogRecord(executionId: "e1", taskId: "t1", level: .warning, message: "slow", createdAt: Date()),
        ])
        #expect(stored.map(\.sequence) == [1, 1, 2])
        try await logs.append([LogRecord(executionId: "e1", taskId: "t1", level: .error, message: "failed", createdAt: Date())])
        let all = try await logs.entries(LogQuery(executionId: "e1", limit: 10))
        #expect(all.map(\.message) == ["started", "slow", "failed"])
        #expect(all.map(\.sequence) == [1, 2, 3])
        #expect(try await logs.entries(LogQuery(executionId: "e1", afterSequence: 1, limit: 1)).map(\.message) == ["slow"])
        #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10, minLevel: .error)).map(\.message) == ["failed"])
        #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10, taskId: "t1")).count == 2)
        #expect(try await logs.purge(olderThan: Date().addingTimeInterval(-86_400 * 30)) == 1)
        #expect(try await logs.entries(LogQuery(executionId: "e1", limit: 10)).map(\.message) == ["slow", "failed"])
    }
}

@Suite("ids")
struct IDGeneratorTests {
    @Test("ids are prefixed, 26 base32 characters, unique and time-ordered")
    func format() async throws {
        let early = IDGenerator.make("wf", now: Date(timeIntervalSince1970: 1_700_000_000))
        let late = IDGenerator.make("wf", now: Date(timeIntervalSince1970: 1_700_000_001))
        #expect(early.hasPrefix("wf_") && early.count == 29)
        #expect(early < late)
        let many = Set((0..<10_000).map { _ in IDGenerator.make("x") })
        #expect(many.count == 10_000)
    }
}
