import Foundation
import Testing
import WeftStore

extension StoreConformance {
    static let workflows: [Case] = [
        Case(name: "create, read, replace with version check, and the version history") { store in
            let user = try await store.user()
            let created = try await store.workflow(owner: user.id, taskNames: ["a", "b"])
            #expect(created.version == 1)
            let read = try #require(try await store.workflows.workflow(id: created.id, includeDeleted: false))
            #expect(read.tasks.map(\.name) == ["a", "b"])
            // Stores keep milliseconds; the Double behind Date may differ below that.
            #expect(abs(read.createdAt.timeIntervalSince(created.createdAt)) < 0.0005)

            var next = read
            next.name = "Renamed"
            next.tasks.removeFirst()  // drop "a"
            next.tasks.append(Records.task("k0", name: "c", workflowId: read.id))  // reuse a's key
            let replaced = try await store.workflows.replaceWorkflow(next, expectedVersion: 1, actor: user.id)
            #expect(replaced.version == 2)
            #expect(replaced.tasks.map(\.name) == ["b", "c"])
            await #expect(throws: StoreError.self) {
                _ = try await store.workflows.replaceWorkflow(next, expectedVersion: 1, actor: user.id)
            }
            let versions = try await store.workflows.listVersions(workflowId: read.id, limit: 10, cursor: nil)
            #expect(versions.items.map(\.version) == [2, 1])
            #expect(versions.items[1].tasks.map(\.name) == ["a", "b"])
            #expect(try await store.workflows.workflowVersion(workflowId: read.id, versionId: "1")?.tasks.count == 2)
            let byId = try #require(versions.items.first)
            #expect(try await store.workflows.workflowVersion(workflowId: read.id, versionId: byId.id)?.version == 2)
            // A removed task is gone from the live definition.
            #expect(try await store.workflows.task(id: read.tasks[0].id) == nil)
            #expect(try await store.workflows.task(id: read.tasks[1].id)?.name == "b")
        },
        Case(name: "a task id belongs to one workflow; task keys are unique in a workflow") { store in
            let user = try await store.user()
            let first = try await store.workflow(owner: user.id, taskNames: ["a"])
            var stolen = Records.workflow(owner: user.id, taskNames: ["x"])
            stolen.tasks[0].id = first.tasks[0].id
            await #expect(throws: StoreError.self) { _ = try await store.workflows.createWorkflow(stolen, actor: user.id) }
            var twice = Records.workflow(owner: user.id, taskNames: ["a", "b"])
            twice.tasks[1].key = twice.tasks[0].key
            await #expect(throws: StoreError.self) { _ = try await store.workflows.createWorkflow(twice, actor: user.id) }
            // Nothing of the failed writes is left behind.
            #expect(try await store.workflows.workflow(id: stolen.id, includeDeleted: true) == nil)
            #expect(try await store.workflows.workflow(id: twice.id, includeDeleted: true) == nil)
        },
        Case(name: "soft delete hides the workflow and keeps its execution history") { store in
            let user = try await store.user()
            let created = try await store.workflow(owner: user.id, name: "Nightly export")
            let execution = Records.execution(of: created)
            _ = try await store.executions.createExecution(execution)
            await #expect(throws: StoreError.self) {
                try await store.workflows.deleteWorkflow(id: created.id, expectedVersion: 7, actor: user.id, needs: .owner)
            }
            try await store.workflows.deleteWorkflow(id: created.id, expectedVersion: 1, actor: user.id, needs: .owner)
            #expect(try await store.workflows.workflow(id: created.id, includeDeleted: false) == nil)
            #expect(try await store.workflows.workflow(id: created.id, includeDeleted: true)?.deletedAt != nil)
            #expect(try await store.executions.execution(id: execution.executionId)?.workflowId == created.id)
            #expect(try await store.workflows.listWorkflows(WorkflowQuery(visibleTo: user.id, limit: 10)).items.isEmpty)
            let found = try await store.workflows.searchWorkflows(text: "nightly", visibleTo: user.id, limit: 10, cursor: nil)
            #expect(found.items.isEmpty)
            #expect(try await store.workflows.task(id: created.tasks[0].id) == nil)
            await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
                try await store.workflows.deleteWorkflow(id: created.id, expectedVersion: nil, actor: user.id, needs: .owner)
            }
        },
        Case(name: "writes check the actor's role inside the transaction") { store in
            let owner = try await store.user()
            let editor = try await store.user()
            let viewer = try await store.user()
            let stranger = try await store.user()
            let created = try await store.workflow(owner: owner.id)
            try await store.workflows.addCollaborator(
                CollaboratorRecord(workflowId: created.id, userId: editor.id, role: .editor, addedAt: .nowMillis), actor: owner.id)
            try await store.workflows.addCollaborator(
                CollaboratorRecord(workflowId: created.id, userId: viewer.id, role: .viewer, addedAt: .nowMillis), actor: owner.id)
            let rename: @Sendable (inout WorkflowRecord) throws -> Void = { $0.name = "renamed" }
            let edited = try await store.workflows.modifyWorkflow(
                id: created.id, expectedVersion: nil, actor: editor.id, needs: .editor, rename)
            #expect(edited.version == 2)
            await #expect(throws: StoreError.permissionDenied("your role on workflow \(created.id) is viewer; this needs editor")) {
                _ = try await store.workflows.modifyWorkflow(
                    id: created.id, expectedVersion: nil, actor: viewer.id, needs: .editor, rename)
            }
            await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
                _ = try await store.workflows.modifyWorkflow(
                    id: created.id, expectedVersion: nil, actor: stranger.id, needs: .viewer, rename)
            }
            await #expect(throws: StoreError.self) {
                try await store.workflows.deleteWorkflow(id: created.id, expectedVersion: nil, actor: editor.id, needs: .owner)
            }
            try await store.workflows.removeCollaborator(workflowId: created.id, userId: editor.id, actor: owner.id)
            await #expect(throws: StoreError.notFound("workflow \(created.id) not found")) {
                _ = try await store.workflows.rollbackWorkflow(id: created.id, to: "1", actor: editor.id, needs: .editor)
            }
            #expect(try await store.workflows.workflow(id: created.id, includeDeleted: false)?.version == 2)
            // Rollback makes version 1's definition current as version 3.
            let (rolled, version) = try await store.workflows.rollbackWorkflow(
                id: created.id, to: "1", actor: owner.id, needs: .editor)
            #expect(rolled.version == 3 && rolled.name == "Flow" && version.label == "rollback to version 1")
        },
        Case(name: "collaborators: add, change, list, remove; unknown users and duplicates refused") { store in
            let owner = try await store.user()
            let friend = try await store.user()
            let created = try await store.workflow(owner: owner.id)
            let grant = CollaboratorRecord(workflowId: created.id, userId: friend.id, role: .viewer, addedAt: .nowMillis)
            try await store.workflows.addCollaborator(grant, actor: owner.id)
            await #expect(throws: StoreError.self) { try await store.workflows.addCollaborator(grant, actor: owner.id) }
            await #expect(throws: StoreError.self) {
                try await store.workflows.addCollaborator(
                    CollaboratorRecord(workflowId: created.id, userId: "usr_missing", role: .viewer, addedAt: .nowMillis),
                    actor: owner.id)
            }
            try await store.workflows.updateCollaborator(workflowId: created.id, userId: friend.id, role: .editor, actor: owner.id)
            let listed = try await store.workflows.collaborators(workflowId: created.id)
            #expect(listed.map(\.0.role) == [.editor] && listed.map(\.1.email) == [friend.email])
            #expect(try await store.workflows.role(userId: friend.id, workflowId: created.id) == .editor)
            #expect(try await store.workflows.role(userId: owner.id, workflowId: created.id) == .owner)
            try await store.workflows.removeCollaborator(workflowId: created.id, userId: friend.id, actor: owner.id)
            await #expect(throws: StoreError.self) {
                try await store.workflows.removeCollaborator(workflowId: created.id, userId: friend.id, actor: owner.id)
            }
            #expect(try await store.workflows.role(userId: friend.id, workflowId: created.id) == nil)
        },
        Case(name: "keyset pagination walks every visible workflow once, newest first") { store in
            let alice = try await store.user()
            let bob = try await store.user()
            var ids: [String] = []
            for index in 0..<23 { ids.append(try await store.workflow(owner: alice.id, name: "wf \(index)").id) }
            _ = try await store.workflow(owner: bob.id, name: "bob's")
            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await store.workflows.listWorkflows(WorkflowQuery(visibleTo: alice.id, limit: 5, cursor: cursor))
                #expect(page.items.count <= 5)
                #expect(page.items.allSatisfy { $0.callerRole == .owner })
                seen += page.items.map(\.id)
                cursor = page.nextCursor
            } while cursor != nil
            #expect(seen == ids.sorted().reversed())
            // Bob sees his own only, until Alice shares one with him.
            #expect(try await store.workflows.listWorkflows(WorkflowQuery(visibleTo: bob.id, limit: 50)).items.count == 1)
            try await store.workflows.addCollaborator(
                CollaboratorRecord(workflowId: ids[0], userId: bob.id, role: .viewer, addedAt: .nowMillis), actor: alice.id)
            let shared = try await store.workflows.listWorkflows(WorkflowQuery(visibleTo: bob.id, limit: 50))
            #expect(shared.items.count == 2)
            #expect(shared.items.first { $0.id == ids[0] }?.callerRole == .viewer)
            #expect(try await store.workflows.role(userId: bob.id, workflowId: ids[0]) == .viewer)
            // Name prefix filter (case-insensitive, no wildcards).
            let prefixed = try await store.workflows.listWorkflows(
                WorkflowQuery(visibleTo: alice.id, limit: 50, namePrefix: "WF 1"))
            #expect(
                Set(prefixed.items.map(\.name))
                    == Set(["wf 1", "wf 10", "wf 11", "wf 12", "wf 13", "wf 14", "wf 15", "wf 16", "wf 17", "wf 18", "wf 19"]))
            #expect(try await store.workflows.listWorkflows(
                WorkflowQuery(visibleTo: alice.id, limit: 50, namePrefix: "%")).items.isEmpty)
            // Summaries leave the tasks out.
            let summaries = try await store.workflows.listWorkflows(
                WorkflowQuery(visibleTo: alice.id, limit: 3, includeTasks: false))
            #expect(summaries.items.allSatisfy { $0.tasks.isEmpty })
        },
        Case(name: "search finds name, description and task hits of the caller's workflows, pages, and survives any text") {
            store in
            let user = try await store.user()
            let byTask = try await store.workflow(owner: user.id, name: "Alpha", taskNames: ["invoice sender"])
            let byName = try await store.workflow(owner: user.id, name: "Invoice run", description: "monthly")
            let byDescription = try await store.workflow(owner: user.id, name: "Beta", description: "creates the invoice pdf")
            _ = try await store.workflow(owner: user.id, name: "Unrelated")
            let hits = try await store.workflows.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 10, cursor: nil)
            #expect(Set(hits.items.map(\.workflow.id)) == [byName.id, byDescription.id, byTask.id])
            #expect(hits.items.allSatisfy { $0.workflow.callerRole == .owner })
            // Prefix on the last word.
            #expect(try await store.workflows.searchWorkflows(
                text: "invo", visibleTo: user.id, limit: 10, cursor: nil).items.count == 3)
            // Paging.
            let first = try await store.workflows.searchWorkflows(text: "invoice", visibleTo: user.id, limit: 2, cursor: nil)
            let second = try await store.workflows.searchWorkflows(
                text: "invoice", visibleTo: user.id, limit: 2, cursor: first.nextCursor)
            #expect(first.items.count == 2 && second.items.count == 1 && second.nextCursor == nil)
            #expect(Set(first.items.map(\.workflow.id) + second.items.map(\.workflow.id)).count == 3)
            for hostile in [
                "\"", "\"\"\"", "*", "invoice*", "NEAR(a b)", "a OR b", "-", "^", "(", ")", "col:abc",
                "'; DROP TABLE workflows; --", "\u{0}", "ünïcødé", "日本語", String(repeating: "x ", count: 500), "AND", "NOT",
                "{}", "a:b:c",
            ] {
                _ = try await store.workflows.searchWorkflows(text: hostile, visibleTo: user.id, limit: 10, cursor: nil)
            }
            // Only the caller's workflows.
            let other = try await store.user()
            #expect(try await store.workflows.searchWorkflows(
                text: "invoice", visibleTo: other.id, limit: 10, cursor: nil).items.isEmpty)
        },
        Case(name: "concurrent writers: one version wins, every create lands") { store in
            let user = try await store.user()
            let created = try await store.workflow(owner: user.id)
            let workflows = store.workflows
            let outcomes = await withTaskGroup(of: Result<Int, StoreError>.self) { group in
                for index in 0..<20 {
                    var next = created
                    next.name = "writer \(index)"
                    group.addTask {
                        do {
                            return .success(try await workflows.replaceWorkflow(next, expectedVersion: 1, actor: user.id).version)
                        } catch let error as StoreError {
                            return .failure(error)
                        } catch {
                            return .failure(.invalid("\(error)"))
                        }
                    }
                }
                return await group.reduce(into: [Result<Int, StoreError>]()) { $0.append($1) }
            }
            // One writer made version 2; every other one lost on the etag.
            #expect(outcomes.compactMap { try? $0.get() } == [2])
            let losers = outcomes.compactMap { outcome -> StoreError? in
                if case .failure(let error) = outcome { error } else { nil }
            }
            #expect(losers.count == 19)
            #expect(losers.allSatisfy { if case .conflict = $0 { true } else { false } })
            #expect(try await workflows.workflow(id: created.id, includeDeleted: false)?.version == 2)

            let bulk = (0..<100).map { Records.workflow(owner: user.id, name: "bulk \($0)", taskNames: ["t"]) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for workflow in bulk {
                    group.addTask { _ = try await workflows.createWorkflow(workflow, actor: user.id) }
                    group.addTask { _ = try await workflows.listWorkflows(WorkflowQuery(visibleTo: user.id, limit: 20)) }
                }
                try await group.waitForAll()
            }
            var total = 0
            var cursor: String?
            repeat {
                let page = try await workflows.listWorkflows(
                    WorkflowQuery(visibleTo: user.id, limit: 1000, cursor: cursor, includeTasks: false))
                total += page.items.count
                cursor = page.nextCursor
            } while cursor != nil
            #expect(total == 101)
        },
    ]
}
