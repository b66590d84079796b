import Foundation
import Testing
import WeftEngine
import WeftProto
import WeftRPC
import WeftServer
import WeftStore
import WeftTestSupport

/// Organizations, secrets, the audit log, queue grants and credential
/// masking through the real router, interceptors and handlers (in process).
@Suite("tenancy API")
struct TenancyAPITests {
    static func orgId(_ api: APIHarness, _ token: String) async throws -> String {
        let orgs: Weft_V1_ListOrganizationsResponse = try await api.call(
            "/weft.v1.OrganizationService/ListOrganizations", Weft_V1_ListOrganizationsRequest(), token: token)
        return try #require(orgs.organizations.first?.id)
    }

    static func createWorkflow(_ api: APIHarness, token: String, _ body: String) async -> (status: Int, json: [String: Any], headers: [(name: String, value: String)]) {
        await api.rest("POST", "/workflows", body: body, token: token)
    }

    @Test("a secret is write-only, resolves inside the attempt, and is redacted from outputs and logs; its use is audited")
    func secrets() async throws {
        try await APIHarness.with { api in
            let (admin, _) = try await api.signUp("Admin")
            let org = try await Self.orgId(api, admin)
            let value = "s3cr3t-\(UUID().uuidString)"
            let created = await api.rest(
                "POST", "/orgs/\(org)/secrets", body: #"{"name": "TOKEN", "value": "\#(value)"}"#, token: admin)
            #expect(created.status == 201 && created.json["name"] as? String == "TOKEN" && created.json["value"] == nil)
            let listed = await api.rest("GET", "/orgs/\(org)/secrets", token: admin)
            #expect(listed.status == 200)
            #expect(!String(describing: listed.json).contains(value))
            // A member may read names but not write.
            let member = try await api.signUp("Member")
            try await api.join(member, org: org, admin: admin)
            #expect(await api.rest("POST", "/orgs/\(org)/secrets", body: #"{"name": "X", "value": "abcd"}"#, token: member.token).status == 403)
            #expect(await api.rest("GET", "/orgs/\(org)/secrets", token: member.token).status == 200)
            // Bad names and short values are refused.
            #expect(await api.rest("POST", "/orgs/\(org)/secrets", body: #"{"name": "1bad", "value": "abcd"}"#, token: admin).status == 400)
            #expect(await api.rest("POST", "/orgs/\(org)/secrets", body: #"{"name": "SHORT", "value": "abc"}"#, token: admin).status == 400)

            let workflow = await Self.createWorkflow(api, token: admin, #"""
                {"name": "uses secret", "tasks": [
                  {"key": "say", "name": "say", "action": "log", "config": {"message": "token is {{secrets.TOKEN}}"}},
                  {"key": "out", "name": "out", "action": "transform", "dependsOn": ["say"],
                   "config": {"output": {"t": "{{secrets.TOKEN}}", "both": "x{{secrets.TOKEN}}y"}}}]}
                """#)
            #expect(workflow.status == 201)
            let workflowId = try #require(workflow.json["id"] as? String)
            let started = await api.rest("POST", "/workflows/\(workflowId)/execute", body: "{}", token: admin)
            let executionId = try #require(started.json["executionId"] as? String)
            let done = try await api.engine.drive(executionId)
            #expect(done.status == .completed)
            let out = done.tasks.first { $0.taskKey == "out" }?.output
            #expect(out == .object(["t": .string("[secret:TOKEN]"), "both": .string("x[secret:TOKEN]y")]))
            let lines = try await api.engine.logLines(executionId)
            #expect(lines.contains("token is [secret:TOKEN]"))
            #expect(!lines.joined().contains(value))
            let execution = await api.rest("GET", "/workflows/\(workflowId)/executions/\(executionId)", token: admin)
            #expect(execution.status == 200 && !String(describing: execution.json).contains(value))
            // The use is in the audit log.
            let audit = await api.rest("GET", "/audit?orgId=\(org)&action=secret.use", token: admin)
            let events = audit.json["events"] as? [[String: Any]] ?? []
            // One use per attempt that read it: "say" and "out".
            #expect(events.count == 2 && events.allSatisfy { $0["resourceId"] as? String == executionId })
            // A missing secret fails the attempt, naming it.
            let missing = await Self.createWorkflow(api, token: admin, #"""
                {"name": "missing", "tasks": [{"key": "m", "name": "m", "action": "log", "config": {"message": "{{secrets.NOPE}}"}}]}
                """#)
            let missingId = try #require(missing.json["id"] as? String)
            let run = await api.rest("POST", "/workflows/\(missingId)/execute", body: "{}", token: admin)
            let failed = try await api.engine.drive(try #require(run.json["executionId"] as? String))
            #expect(failed.status == .failed && failed.tasks[0].error?.contains("no secret NOPE") == true)
            // Conditions cannot read secrets.
            let condition = await Self.createWorkflow(api, token: admin, #"""
                {"name": "cond", "tasks": [{"key": "c", "name": "c", "action": "condition",
                  "config": {"expression": "secrets.TOKEN == \"x\"", "then": [], "else": []}}]}
                """#)
            #expect(condition.status == 400)
        }
    }

    @Test("state-changing calls are audited with actor, organization, resource and outcome; only org admins read the log")
    func auditLog() async throws {
        try await APIHarness.with { api in
            let (admin, adminUser) = try await api.signUp("Admin")
            let org = try await Self.orgId(api, admin)
            let created = await Self.createWorkflow(api, token: admin, #"{"name": "audited", "tasks": [{"name": "a", "action": "noop"}]}"#)
            let workflowId = try #require(created.json["id"] as? String)
            let viewer = try await api.signUp("Viewer")
            try await api.join(viewer, org: org, admin: admin)
            #expect(await api.rest("POST", "/workflows/\(workflowId)/collaborators",
                                   body: #"{"userId": "\#(viewer.user.id)", "role": "viewer"}"#, token: admin).status == 201)
            #expect(await api.rest("DELETE", "/workflows/\(workflowId)", token: viewer.token).status == 403)
            // Reads are not audited.
            _ = await api.rest("GET", "/workflows/\(workflowId)", token: admin)
            let all = await api.rest("GET", "/audit?orgId=\(org)", token: admin)
            #expect(all.status == 200)
            let events = all.json["events"] as? [[String: Any]] ?? []
            let actions = events.map { $0["action"] as? String ?? "" }
            #expect(actions.contains("weft.v1.WorkflowService/CreateWorkflow"))
            #expect(actions.contains("weft.v1.CollaboratorService/AddCollaborator"))
            #expect(!actions.contains("weft.v1.WorkflowService/GetWorkflow"))
            let denied = events.first { $0["action"] as? String == "weft.v1.WorkflowService/DeleteWorkflow" }
            #expect(denied?["outcome"] as? String == "PERMISSION_DENIED")
            #expect(denied?["actorId"] as? String == viewer.user.id)
            #expect(denied?["resourceId"] as? String == workflowId && denied?["orgId"] as? String == org)
            let create = events.first { $0["action"] as? String == "weft.v1.WorkflowService/CreateWorkflow" }
            #expect(create?["actorId"] as? String == adminUser.id && create?["outcome"] as? String == "OK")
            // Filters and paging.
            let byActor = await api.rest("GET", "/audit?orgId=\(org)&actorId=\(viewer.user.id)", token: admin)
            #expect((byActor.json["events"] as? [[String: Any]])?.allSatisfy { $0["actorId"] as? String == viewer.user.id } == true)
            let page = await api.rest("GET", "/audit?orgId=\(org)&pageSize=1", token: admin)
            let token = try #require(page.json["nextPageToken"] as? String)
            let next = await api.rest("GET", "/audit?orgId=\(org)&pageSize=1&pageToken=\(token)", token: admin)
            let firstId = (page.json["events"] as? [[String: Any]])?.first?["id"] as? String
            let secondId = (next.json["events"] as? [[String: Any]])?.first?["id"] as? String
            #expect(firstId != nil && secondId != nil && Int(secondId!)! < Int(firstId!)!)
            // Members who are not admins, and outsiders, cannot read it.
            #expect(await api.rest("GET", "/audit?orgId=\(org)", token: viewer.token).status == 403)
            let (outsider, _) = try await api.signUp("Outsider")
            #expect(await api.rest("GET", "/audit?orgId=\(org)", token: outsider).status == 404)
            #expect(await api.rest("GET", "/audit", token: admin).status == 400)
        }
    }

    @Test("an editor cannot route work to a queue without a submit grant; polling needs a poll grant")
    func queueGrants() async throws {
        try await APIHarness.with { api in
            let (admin, _) = try await api.signUp("Owner")
            let org = try await Self.orgId(api, admin)
            let created = await Self.createWorkflow(api, token: admin, #"{"name": "w", "tasks": [{"name": "a", "action": "noop"}]}"#)
            let workflowId = try #require(created.json["id"] as? String)
            let editor = try await api.signUp("Editor")
            try await api.join(editor, org: org, admin: admin)
            #expect(await api.rest("POST", "/workflows/\(workflowId)/collaborators",
                                   body: #"{"userId": "\#(editor.user.id)", "role": "editor"}"#, token: admin).status == 201)
            let external = #"{"name": "w", "tasks": [{"name": "a", "action": "noop"}, {"name": "x", "action": "external", "config": {"queue": "owners-q"}}]}"#
            let refused = await api.rest("PUT", "/workflows/\(workflowId)", body: external, token: editor.token)
            #expect(refused.status == 403 && (refused.json["message"] as? String)?.contains("owners-q") == true)
            // The same edit through the task API is refused too.
            let task = await api.rest(
                "POST", "/tasks", body: #"{"workflowId": "\#(workflowId)", "name": "y", "action": "external", "config": {"queue": "owners-q"}}"#,
                token: editor.token)
            #expect(task.status == 403)
            // Polling the owner's queue is refused without a grant.
            let pollOwners = #"{"orgId": "\#(org)"}"#
            #expect(await api.rest("POST", "/queues/owners-q/poll", body: pollOwners, token: editor.token).status == 403)
            #expect(await api.rest("PUT", "/orgs/\(org)/queues/owners-q/grants/\(editor.user.id)",
                                   body: #"{"submit": true, "poll": false}"#, token: editor.token).status == 403)
            let granted = await api.rest("PUT", "/orgs/\(org)/queues/owners-q/grants/\(editor.user.id)",
                                         body: #"{"submit": true}"#, token: admin)
            #expect(granted.status == 200 && granted.json["submit"] as? Bool == true)
            #expect(await api.rest("PUT", "/workflows/\(workflowId)", body: external, token: editor.token).status == 200)
            #expect(await api.rest("POST", "/queues/owners-q/poll", body: pollOwners, token: editor.token).status == 403)
            // (Without orgId a worker polls its caller's own organization's queue of that name.)
            // The owner's worker gets the task with who started it.
            let started = await api.rest("POST", "/workflows/\(workflowId)/execute", body: "{}", token: editor.token)
            let executionId = try #require(started.json["executionId"] as? String)
            _ = try await api.engine.runUntilIdle()
            let polled = await api.rest("POST", "/queues/owners-q/poll", body: "{}", token: admin)
            let leased = polled.json["task"] as? [String: Any]
            #expect(leased?["executionId"] as? String == executionId)
            #expect(leased?["startedBy"] as? String == editor.user.id && leased?["orgId"] as? String == org)
            // Completing it needs poll on the queue: the editor's attempt reads as a lost lease.
            let handle = try #require(leased?["leaseToken"] as? String)
            let stolen = await api.rest("POST", "/workers/complete", body: #"{"leaseToken": "\#(handle)"}"#, token: editor.token)
            #expect(stolen.status == 400 && (stolen.json["message"] as? String)?.contains("no longer held") == true)
            #expect(await api.rest("POST", "/workers/complete", body: #"{"leaseToken": "\#(handle)"}"#, token: admin).status == 200)
        }
    }

    @Test("viewers see credential fields masked; a save with a literal credential is warned")
    func masking() async throws {
        try await APIHarness.with { api in
            let (admin, _) = try await api.signUp("Owner")
            let org = try await Self.orgId(api, admin)
            let body = #"""
                {"name": "creds", "tasks": [{"key": "call", "name": "call", "action": "http", "config": {
                  "url": "https://bob:hunter2@api.example.com/x",
                  "headers": {"Authorization": "Bearer literal-abc", "X-Api-Key": "{{secrets.KEY}}", "Accept": "json"}}}]}
                """#
            let created = await Self.createWorkflow(api, token: admin, body)
            #expect(created.status == 201)
            let warning = created.headers.first { $0.name == "warning" }?.value ?? ""
            #expect(warning.contains("config.headers.Authorization") && warning.contains("secrets"))
            #expect(warning.contains("config.url (user info)") && !warning.contains("X-Api-Key"))
            let workflowId = try #require(created.json["id"] as? String)
            let viewer = try await api.signUp("Viewer")
            try await api.join(viewer, org: org, admin: admin)
            _ = await api.rest("POST", "/workflows/\(workflowId)/collaborators",
                               body: #"{"userId": "\#(viewer.user.id)", "role": "viewer"}"#, token: admin)
            for path in ["/workflows/\(workflowId)", "/workflows/\(workflowId)/versions/1", "/workflows/\(workflowId)/tasks"] {
                let seen = await api.rest("GET", path, token: viewer.token)
                let text = String(describing: seen.json)
                #expect(seen.status == 200 && !text.contains("literal-abc") && !text.contains("hunter2"), "\(path)")
                #expect(text.contains("[masked]") && text.contains("{{secrets.KEY}}"), "\(path)")
            }
            let owner = String(describing: await api.rest("GET", "/workflows/\(workflowId)", token: admin).json)
            #expect(owner.contains("literal-abc"))
        }
    }
}
