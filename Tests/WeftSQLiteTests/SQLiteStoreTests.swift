import Foundation
import GRDB
import Testing
import WeftStore
import WeftTestSupport
@testable import WeftSQLite

/// The store contract (`StoreConformance`) on SQLite files.
@Suite("SQLite store conformance")
struct SQLiteConformanceTests {
    @Test("conformance", arguments: StoreConformance.all)
    func conformance(_ check: StoreConformance.Case) async throws {
        try await check.run(on: StoreFixture.sqlite)
    }
}

/// What only the SQLite store has: migrations, SQL constraints, FTS5 ranking.
@Suite("SQLite store")
struct SQLiteStoreTests {
    @Test("migrations run on an empty file, create the seed's tables and are idempotent on reopen")
    func migrationsFromEmpty() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        #expect(try temp.store.appliedMigrations() == ["v1-seed-schema", "v2-feature-tables", "v3-workflow-search", "v4-task-queue", "v5-engine", "v6-observability", "v7-organizations", "v8-secrets-audit-grants", "v9-sessions-api-keys", "v10-schedules-triggers", "v11-notifications", "v12-analytics", "v13-search-vocabulary", "v14-workflow-search-key"])
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
        #expect(try reopened.appliedMigrations().count == 14)
        #expect(try await reopened.user(id: user.id)?.email == user.email)
    }

    @Test("the writer commits with the synchronous mode asked for (full fsyncs every commit)")
    func synchronousMode() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        for (mode, expected) in [(SQLiteStore.Configuration.Synchronous.full, 2), (.normal, 1)] {
            let store = try SQLiteStore(.init(path: directory.path("\(mode).sqlite"), synchronous: mode))
            let writer = try await store.pool.write { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
            #expect(writer == expected, "\(mode)")
        }
    }

    @Test("tasks and version snapshots keep every field through the hand-written JSON (retry policy, timeout, config)")
    func definitionRoundTrip() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let full = Records.task(
            "a", .http, dependsOn: [], config: .object(["url": .string("https://x.test/é\"q"), "n": .number(1.5)]),
            retry: Records.retry(
                maxAttempts: 4, backoffMs: 250, maxBackoffMs: 5000, multiplier: 2.5, retryable: ["timeout", "http_5xx"],
                totalTimeoutMs: 60_000, continueOnFailure: true),
            timeoutMs: 1500)
        let plain = Records.task("b", .noop, dependsOn: ["a"], retry: Records.retry(maxAttempts: 1))
        let created = try await temp.store.createWorkflow(
            Records.workflow(owner: user.id, tasks: [full, plain]), actor: user.id)
        let live = try #require(try await temp.store.workflow(id: created.id, includeDeleted: false))
        let version = try #require(try await temp.store.workflowVersion(workflowId: created.id, versionId: "1"))
        for tasks in [live.tasks, version.tasks] {
            let byKey = Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, $0) })
            #expect(byKey["a"]?.retry == full.retry && byKey["a"]?.timeoutMs == 1500 && byKey["a"]?.config == full.config)
            #expect(byKey["b"]?.retry == plain.retry && byKey["b"]?.timeoutMs == nil && byKey["b"]?.dependsOn == ["a"])
        }
    }

    @Test("foreign keys and checks are enforced")
    func constraints() async throws {
        let temp = try TempSQLiteStore()
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

    @Test("a replaced task's row is kept (executions point at it) but hidden; every write is audited")
    func retiredTasks() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let created = try await temp.store.createWorkflow(temp.workflow(owner: user.id, taskNames: ["a", "b"]), actor: user.id)
        var next = created
        next.tasks.removeFirst()
        next.tasks.append(Records.task("k0", name: "c", workflowId: created.id))
        _ = try await temp.store.replaceWorkflow(next, expectedVersion: 1, actor: user.id)
        let all = try await temp.store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM tasks WHERE workflow_id = ?", arguments: [created.id])
        }
        #expect(all == 3)
        let audit = try await temp.store.auditEntries(resourceType: "workflow", resourceId: created.id)
        #expect(audit.map(\.action) == ["create", "update"])
    }

    @Test("a stored status no version of Weft writes is an error naming it, not a guess")
    func unknownStoredStatus() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let workflow = try await temp.store.createWorkflow(temp.workflow(owner: user.id), actor: user.id)
        let execution = try await temp.store.createExecution(Records.execution(of: workflow)).execution
        try await temp.store.pool.write { db in
            try db.execute(sql: "PRAGMA ignore_check_constraints = ON")
            try db.execute(
                sql: "UPDATE workflow_executions SET trigger = 'carrier-pigeon' WHERE execution_id = ?",
                arguments: [execution.executionId])
        }
        await #expect(throws: StoreError.invalid("the store holds an unknown TriggerKind \"carrier-pigeon\"")) {
            _ = try await temp.store.execution(id: execution.executionId)
        }
    }

    @Test("search ranks name hits above description and task hits, with [highlighted] snippets")
    func search() async throws {
        let temp = try TempSQLiteStore()
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

    @Test("a prefix of a few terms is searched as those terms, of many as the prefix; both find the same workflows")
    func prefixExpansion() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        // "inv" starts three terms; "zq" starts 20 (over the expansion limit).
        let names = ["Invoice run", "Inventory sync", "Inverted index", "Billing"]
            + (0..<20).map { "zq\(String(UnicodeScalar(UInt8(97 + $0))))lot" }
        var ids: [String: String] = [:]
        for name in names {
            ids[name] = try await temp.store.createWorkflow(temp.workflow(owner: user.id, name: name), actor: user.id).id
        }
        let expanded = try await temp.store.pool.read { db in
            (try SQLiteStore.ftsQuery(["billing", "INV"], expandingIn: db).match,
             try SQLiteStore.ftsQuery(["zq"], expandingIn: db).match,
             try SQLiteStore.ftsQuery(["nothing"], expandingIn: db).match,
             try SQLiteStore.ftsQuery(["invé"], expandingIn: db).match)
        }
        #expect(expanded.0 == #""billing" AND ("inventory" OR "inverted" OR "invoice")"#)
        #expect(expanded.1 == #""zq"*"#)
        #expect(expanded.2 == #""nothing"*"#)
        #expect(expanded.3 == #""invé"*"#)
        func found(_ text: String) async throws -> Set<String> {
            Set(try await temp.store.searchWorkflows(text: text, visibleTo: user.id, limit: 50, cursor: nil).items.map(\.workflow.id))
        }
        #expect(try await found("inv") == Set(["Invoice run", "Inventory sync", "Inverted index"].map { ids[$0]! }))
        #expect(try await found("Inv") == (try await found("inv")))
        #expect(try await found("zq").count == 20)
        #expect(try await found("invoice r") == [ids["Invoice run"]!])
        #expect(try await found("run inv") == [ids["Invoice run"]!])
        #expect(try await found("a b inv").isEmpty)
        // A term that starts another (the term itself and its extensions).
        let invoices = try await temp.store.createWorkflow(temp.workflow(owner: user.id, name: "Invoices"), actor: user.id)
        #expect(try await found("invoice") == [ids["Invoice run"]!, invoices.id])
        let hit = try await temp.store.searchWorkflows(text: "inventor", visibleTo: user.id, limit: 5, cursor: nil).items
        #expect(hit.map(\.workflow.id) == [ids["Inventory sync"]!] && hit[0].snippet.contains("[Inventory]"))
    }

    @Test("memberships: another process's change (weft orgs set-plan) shows within the cache's lifetime")
    func membershipsFromAnotherWriter() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = Records.user()
        try await temp.store.createUser(user, organization: OrganizationRecord(id: "org_p", name: "P", plan: "", createdAt: Date()))
        #expect(try await temp.store.memberships(userId: user.id).first?.1.plan == "")
        // A second store on the same file is a writer the first cannot hear.
        try await temp.reopen().setPlan(orgId: "org_p", plan: "team")
        let deadline = ContinuousClock.now + .seconds(10)
        var plan = ""
        while plan != "team", ContinuousClock.now < deadline {
            plan = try await temp.store.memberships(userId: user.id).first?.1.plan ?? ""
            if plan != "team" { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(plan == "team")
    }

    @Test("the membership cache keeps a read's answer only when no membership write began or ended during the read")
    func membershipCacheEpochs() {
        let cache = MembershipCache(lifetime: .seconds(60), capacity: 2)
        let org = OrganizationRecord(id: "org_1", name: "One", plan: "", createdAt: Date())
        let answer = [(MembershipRecord(orgId: "org_1", userId: "u1", role: .member, joinedAt: Date()), org)]
        let (missed, epoch) = cache.lookup("u1")
        #expect(missed == nil)
        cache.invalidate()  // a write started while the read ran
        cache.fill("u1", answer, epoch: epoch, readStarted: .now)
        #expect(cache.lookup("u1").0 == nil)
        cache.fill("u1", answer, epoch: cache.lookup("u1").epoch, readStarted: .now)
        #expect(cache.lookup("u1").0?.first?.0.role == .member)
        cache.invalidate()
        #expect(cache.lookup("u1").0 == nil)
        // A full cache starts over rather than growing.
        for user in ["a", "b", "c"] { cache.fill(user, answer, epoch: cache.lookup(user).epoch, readStarted: .now) }
        #expect(cache.lookup("a").0 == nil && cache.lookup("c").0 != nil)
        // Past its lifetime an entry is read again.
        let short = MembershipCache(lifetime: .zero)
        short.fill("u1", answer, epoch: short.lookup("u1").epoch, readStarted: .now)
        #expect(short.lookup("u1").0 == nil)
    }

    @Test("weft_bm25 with exact phrase counts scores as FTS5's bm25; stale counts keep one word's order")
    func searchRankMatchesBM25() async throws {
        let temp = try TempSQLiteStore()
        defer { temp.cleanup() }
        let user = try await temp.user()
        let names = [
            ("Invoice run", "Send invoices nightly", ["fetch invoices", "post"]),
            ("Inventory sync", "invoice totals and inventory", ["count"]),
            ("Report", "weekly report of invoice runs", ["report", "report again"]),
            ("Billing", "nothing to see", ["invoice"]),
        ]
        for (name, description, tasks) in names {
            _ = try await temp.store.createWorkflow(
                temp.workflow(owner: user.id, name: name, description: description, taskNames: tasks), actor: user.id)
        }
        for words in [["invoice"], ["report", "inv"], ["invoice", "run"], ["nightly"]] {
            try await temp.store.pool.read { db in
                let query = try SQLiteStore.ftsQuery(words, expandingIn: db)
                let counts = try query.phrases.map {
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM workflow_search WHERE workflow_search MATCH ?", arguments: [$0])!
                }
                #expect(try PhraseCounts().counts(query.phrases, in: db) == counts)
                let placeholders = Array(repeating: "?", count: counts.count).joined(separator: ", ")
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT rowid, bm25(workflow_search, 10.0, 4.0, 2.0) AS builtin,
                            weft_bm25(workflow_search, 10.0, 4.0, 2.0, \(placeholders)) AS ours
                        FROM workflow_search WHERE workflow_search MATCH ?
                        """,
                    arguments: StatementArguments(counts) + [query.match])
                #expect(!rows.isEmpty, "\(words)")
                for row in rows {
                    let builtin: Double = row["builtin"]
                    let ours: Double = row["ours"]
                    #expect(abs(-builtin - ours) < 1e-9, "\(words) rowid \(row["rowid"] as Int64): \(builtin) vs \(ours)")
                }
                // The wrong number of counts is an error naming what it takes.
                #expect(throws: DatabaseError.self) {
                    try Row.fetchAll(
                        db, sql: "SELECT weft_bm25(workflow_search, 1.0) FROM workflow_search WHERE workflow_search MATCH ?",
                        arguments: [query.match])
                }
            }
        }
        // Counts kept from before more workflows came: the order of one
        // word's matches is the same as with fresh counts.
        let search = { try await temp.store.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 10, cursor: nil).items }
        let before = try await search()
        for index in 0..<5 {
            _ = try await temp.store.createWorkflow(
                temp.workflow(owner: user.id, name: "Other \(index)", description: "invoice \(index)"), actor: user.id)
        }
        let stale = try await search().map(\.workflow.id)
        #expect(stale.count == before.count + 5)
        let fresh = try await temp.reopen().searchWorkflows(text: "invoice", visibleTo: user.id, limit: 10, cursor: nil).items
        #expect(stale == fresh.map(\.workflow.id))
    }

    @Test("v14 keys every workflow by its search row (rid, an INTEGER PRIMARY KEY that VACUUM keeps), whatever order the rows were in")
    func searchRowidMigration() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.path("weft.sqlite")
        do {
            let pool = try DatabasePool(path: path)
            try SQLiteMigrations.migrator.migrate(pool, upTo: "v13-search-vocabulary")
            try await pool.write { db in
                try db.execute(sql: """
                    INSERT INTO users (id, email, password_hash, name, created_at, updated_at)
                    VALUES ('u1', 'u1@example.com', 'x', 'U', '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000');
                    """)
                // rowid 1..4; search rows at 3, 1, none and 2: every kind of mismatch.
                for (id, name, search) in [("wf_a", "alpha", "3"), ("wf_b", "bravo", "1"), ("wf_c", "charlie", "NULL"), ("wf_d", "delta", "2")] {
                    try db.execute(
                        sql: """
                            INSERT INTO workflows (id, user_id, name, version, created_at, updated_at, search_rowid)
                            VALUES (?, 'u1', ?, 1, '2026-01-01 00:00:00.000', '2026-01-01 00:00:00.000', \(search))
                            """,
                        arguments: [id, name])
                    if search != "NULL" {
                        try db.execute(
                            sql: "INSERT INTO workflow_search (rowid, name, description, task_names) VALUES (?, ?, '', '')",
                            arguments: [Int(search)!, name])
                    }
                }
            }
            try pool.close()
        }
        let store = try SQLiteStore(.init(path: path))
        let columns = try await store.pool.read { db in try db.columns(in: "workflows").map(\.name) }
        #expect(!columns.contains("search_rowid") && columns.first == "rid")
        for (id, name) in [("wf_a", "alpha"), ("wf_b", "bravo"), ("wf_d", "delta")] {
            let hits = try await store.searchWorkflows(text: name, visibleTo: "u1", limit: 5, cursor: nil).items
            #expect(hits.map(\.workflow.id) == [id], "\(name)")
        }
        // The workflow that had no search row has none yet, and gets one at its next change.
        #expect(try await store.searchWorkflows(text: "charlie", visibleTo: "u1", limit: 5, cursor: nil).items.isEmpty)
        _ = try await store.modifyWorkflow(id: "wf_c", expectedVersion: nil, actor: "u1", needs: nil) { $0.description = "renamed" }
        #expect(try await store.searchWorkflows(text: "charlie", visibleTo: "u1", limit: 5, cursor: nil).items.map(\.workflow.id) == ["wf_c"])
        // New workflows after the moved ones: search rows keep matching their workflows.
        let fresh = try await store.createWorkflow(Records.workflow(owner: "u1", name: "echo", taskNames: ["a"]), actor: "u1")
        #expect(try await store.searchWorkflows(text: "echo", visibleTo: "u1", limit: 5, cursor: nil).items.map(\.workflow.id) == [fresh.id])
        let orphans = try await store.pool.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM workflow_search s WHERE NOT EXISTS (SELECT 1 FROM workflows w WHERE w.rid = s.rowid)")
        }
        #expect(orphans == 0)
        // VACUUM renumbers implicit rowids, never an INTEGER PRIMARY KEY:
        // every search still names its own workflow afterwards.
        try await store.pool.barrierWriteWithoutTransaction { db in try db.execute(sql: "VACUUM") }
        for (id, name) in [("wf_a", "alpha"), ("wf_b", "bravo"), ("wf_c", "charlie"), ("wf_d", "delta"), (fresh.id, "echo")] {
            let hits = try await store.searchWorkflows(text: name, visibleTo: "u1", limit: 5, cursor: nil).items
            #expect(hits.map(\.workflow.id) == [id], "\(name) after VACUUM")
            #expect(hits.first?.snippet.lowercased().contains("[\(name)]") == true, "\(name)'s own snippet after VACUUM")
        }
    }
}
