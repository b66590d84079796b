import Foundation
import Testing
import WeftProto
import WeftRPC
import WeftStore
import WeftTestSupport

@testable import WeftServer

/// Subscriptions, integrations and templates through the whole API in
/// process; delivery to real receivers is in the interop suite
/// (test_notifications.py).
@Suite("notification API")
struct NotificationAPITests {
    func workflow(_ api: APIHarness, token: String, tasks: [(String, String, [String])] = [("fetch", "noop", [])]) async throws
        -> Weft_V1_Workflow
    {
        try await api.call(APITests.createWorkflow, APITests.workflow(tasks: tasks), token: token)
    }

    @Test("integrations keep their secrets sealed: never returned, not in the store in clear, kept on update")
    func integrationSecrets() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let wf = try await workflow(api, token: owner)
            let base = "/workflows/\(wf.id)/integrations"
            let made = await api.rest(
                "POST", base,
                body: #"{"type": "webhook", "name": "ops", "webhookUrl": "https://hooks.example.com/T0/B0/tokenPART", "config": {"signingSecret": "sig-secret-0123456789"}}"#,
                token: owner)
            #expect(made.status == 201)
            let id = try #require(made.json["id"] as? String)
            #expect(made.json["webhookUrl"] as? String == "https://hooks.example.com/…")
            #expect(made.json["secretFields"] as? [String] == ["signingSecret", "webhookUrl"])
            #expect(!text(made).contains("tokenPART") && !text(made).contains("sig-secret"))
            let stored = try #require(try await api.store.integration(id: id))
            #expect(stored.sealed != nil && !(stored.sealed ?? "").contains("tokenPART"))
            #expect(!stored.config.jsonText().contains("sig-secret"))
            // A PUT without the secret keeps it; the type cannot change.
            let renamed = await api.rest("PUT", "\(base)/\(id)", body: #"{"name": "renamed"}"#, token: owner)
            #expect(renamed.status == 200 && renamed.json["name"] as? String == "renamed")
            #expect(renamed.json["secretFields"] as? [String] == ["signingSecret", "webhookUrl"])
            let secrets = try api.app.dispatcherForTests.vault.openIntegrationSecrets(
                try #require(try await api.store.integration(id: id)).sealed, orgId: stored.orgId, integrationId: id)
            #expect(secrets["signingSecret"] == "sig-secret-0123456789")
            let retype = await api.rest("PUT", "\(base)/\(id)", body: #"{"type": "slack"}"#, token: owner)
            #expect(retype.status == 400 && msg(retype).contains("cannot change"))
            for (body, message) in [
                (#"{"type": "webhook", "webhookUrl": "https://x.example.com/h"}"#, "config.signingSecret is required"),
                (#"{"type": "webhook", "webhookUrl": "ftp://x.example.com/h", "config": {"signingSecret": "0123456789abcdef"}}"#,
                 "webhook_url must be an http or https URL"),
                (#"{"type": "slack", "webhookUrl": "https://hooks.slack.com/x", "config": {"color": "red"}}"#,
                 "config.color is not a setting of a slack integration"),
                (#"{"type": "email", "config": {"from": "weft@example.com"}}"#, "config.host"),
                (#"{"type": "email", "config": {"host": "smtp.example.com", "from": "not an address"}}"#, "config.from"),
                (#"{"type": "http_auth", "config": {"scheme": "digest"}}"#, #"config.scheme "digest" is not bearer, basic or api_key"#),
                (#"{"type": "http_auth", "config": {"scheme": "api_key", "header": "X-Key"}}"#, "config.value is required"),
                (#"{"webhookUrl": "https://x.example.com"}"#, "type is required"),
            ] {
                let refused = await api.rest("POST", base, body: body, token: owner)
                #expect(refused.status == 400, "\(body)")
                #expect(msg(refused).contains(message), "\(body): \(msg(refused))")
            }
        }
    }

    @Test("subscriptions: events or the original event types, channels checked, in-use integrations cannot be deleted")
    func subscriptions() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let wf = try await workflow(api, token: owner)
            let integration = await api.rest(
                "POST", "/workflows/\(wf.id)/integrations",
                body: #"{"type": "slack", "webhookUrl": "https://hooks.slack.com/services/T/B/x"}"#, token: owner)
            let integrationId = try #require(integration.json["id"] as? String)
            let base = "/workflows/\(wf.id)/subscriptions"
            let coarse = await api.rest(
                "POST", base, body: #"{"eventType": "failure", "notifyVia": "email", "destination": "ops@example.com"}"#,
                token: owner)
            #expect(coarse.status == 201)
            #expect(coarse.json["events"] as? [String] == ["execution.cancelled", "execution.failed", "execution.timed_out"])
            let fine = await api.rest(
                "POST", base,
                body: #"{"events": ["task.failed", "execution.deadline"], "deadlineSeconds": 60, "notifyVia": "slack", "integrationId": "\#(integrationId)", "filter": "event.trigger == \"schedule\""}"#,
                token: owner)
            #expect(fine.status == 201, "\(text(fine))")
            let fineId = try #require(fine.json["id"] as? String)
            #expect(api.app.dispatcherForTests.index.subscription(id: fineId)?.deadlineSeconds == 60)
            for (body, message) in [
                (#"{"events": ["execution.exploded"], "notifyVia": "in_app"}"#, #"event "execution.exploded" is not one of"#),
                (#"{"notifyVia": "in_app"}"#, "events (e.g. [\"execution.failed\"]) or event_type"),
                (#"{"eventType": "failure", "notifyVia": "email", "destination": "nobody"}"#, #"destination "nobody" is not an e-mail address"#),
                (#"{"eventType": "failure", "notifyVia": "webhook", "destination": "gopher://x"}"#, "destination must be an http or https URL"),
                (#"{"eventType": "failure", "notifyVia": "webhook"}"#, "destination (an http(s) URL) or integration_id is required"),
                (#"{"events": ["execution.deadline"], "notifyVia": "in_app"}"#, "execution.deadline needs deadline_seconds"),
                (#"{"eventType": "failure", "notifyVia": "in_app", "filter": "event.status =="}"#, "filter:"),
                (#"{"eventType": "failure", "notifyVia": "webhook", "integrationId": "\#(integrationId)"}"#,
                 "is a slack integration; it cannot deliver webhook notifications"),
            ] {
                let refused = await api.rest("POST", base, body: body, token: owner)
                #expect(refused.status == 400, "\(body): \(text(refused))")
                #expect(msg(refused).contains(message), "\(body): \(msg(refused))")
            }
            #expect(await api.rest("POST", "/workflows/wf_nope/subscriptions", body: #"{"eventType": "any", "notifyVia": "in_app"}"#, token: owner).status == 404)
            let inUse = await api.rest("DELETE", "/workflows/\(wf.id)/integrations/\(integrationId)", token: owner)
            #expect(inUse.status == 400 && msg(inUse).contains("subscription \(fineId)"))
            #expect(await api.rest("DELETE", "\(base)/\(fineId)", token: owner).status == 204)
            #expect(api.app.dispatcherForTests.index.subscription(id: fineId) == nil)
            #expect(await api.rest("DELETE", "/workflows/\(wf.id)/integrations/\(integrationId)", token: owner).status == 204)
            let listed = await api.rest("GET", base, token: owner)
            #expect((listed.json["subscriptions"] as? [[String: Any]])?.count == 1)
        }
    }

    @Test("a failing execution writes one outbox row per matching subscription; filters and events decide which")
    func outboxRows() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            // A transform whose template cannot be followed fails at run time.
            let made = await api.rest(
                "POST", "/workflows",
                body: #"{"name": "Orders", "tasks": [{"key": "boom", "name": "Boom", "action": "transform", "config": {"output": "{{ input.missing.deep }}"}}]}"#,
                token: owner)
            let wfId = try #require(made.json["id"] as? String)
            let base = "/workflows/\(wfId)/subscriptions"
            let failures = await api.rest("POST", base, body: #"{"eventType": "failure", "notifyVia": "in_app"}"#, token: owner)
            let scheduled = await api.rest(
                "POST", base, body: #"{"eventType": "failure", "notifyVia": "in_app", "filter": "event.trigger == \"schedule\""}"#,
                token: owner)
            let completions = await api.rest("POST", base, body: #"{"eventType": "completion", "notifyVia": "in_app"}"#, token: owner)
            let run = await api.rest("POST", "/workflows/\(wfId)/execute", body: "{}", token: owner)
            let executionId = try #require(run.json["executionId"] as? String)
            let done = try await api.engine.drive(executionId)
            #expect(done.status == .failed)
            func rows(_ response: (status: Int, json: [String: Any], headers: [(name: String, value: String)])) async throws -> [DeliveryRecord] {
                try await api.store.deliveries(
                    subscriptionId: response.json["id"] as? String ?? "", state: nil, limit: 10, cursor: nil
                ).items
            }
            let failed = try await rows(failures)
            #expect(failed.map(\.entry.event) == [.executionFailed])
            #expect(failed.first?.entry.executionId == executionId && failed.first?.entry.deliveryId.hasPrefix("dlv_") == true)
            #expect(try await rows(scheduled).isEmpty)
            #expect(try await rows(completions).isEmpty)
            // The in-app channel delivered by hand (the dispatcher service is
            // not running here) renders the built-in template.
            let record = try #require(failed.first)
            let dispatcher = api.app.dispatcherForTests
            let target = try await dispatcher.resolve(record.entry)
            guard case .delivered = try await dispatcher.send(record.entry, target: target, attempt: 1) else {
                Issue.record("in-app delivery failed")
                return
            }
            let inbox = await api.rest("GET", "/notifications?unreadOnly=true", token: owner)
            #expect(inbox.json["unreadCount"] as? String == "1")  // int64: a string in proto3 JSON
            let first = try #require((inbox.json["notifications"] as? [[String: Any]])?.first)
            #expect((first["title"] as? String)?.hasPrefix("[Weft] Orders Failed: ") == true)
            #expect(first["deliveryId"] as? String == record.entry.deliveryId)
            // The same delivery again adds nothing.
            _ = try await dispatcher.send(record.entry, target: target, attempt: 2)
            #expect((await api.rest("GET", "/notifications", token: owner).json["notifications"] as? [Any])?.count == 1)
            let marked = await api.rest("POST", "/notifications/read", body: #"{"all": true}"#, token: owner)
            #expect(marked.json["marked"] as? String == "1")
        }
    }

    @Test("templates: an organization's override is listed, previewed against a past execution, and refused with unknown placeholders")
    func templates() async throws {
        try await APIHarness.with { api in
            let (owner, user) = try await api.signUp("Owner")
            let wf = try await workflow(api, token: owner)
            let run = await api.rest("POST", "/workflows/\(wf.id)/execute", body: "{}", token: owner)
            let executionId = try #require(run.json["executionId"] as? String)
            _ = try await api.engine.drive(executionId)
            let org = try #require(try await api.store.memberships(userId: user.id).first?.1.id)
            let base = "/orgs/\(org)/notification-templates"
            let put = await api.rest(
                "PUT", "\(base)/execution.completed",
                body: #"{"subject": "{{workflow.name}} done in {{execution.duration}}", "html": "<b>{{workflow.name}}</b>"}"#,
                token: owner)
            #expect(put.status == 200 && put.json["custom"] as? Bool == true)
            let bad = await api.rest("PUT", "\(base)/execution.completed", body: #"{"subject": "{{workflow.nmae}}"}"#, token: owner)
            #expect(bad.status == 400 && msg(bad).contains("unknown placeholder {{workflow.nmae}}"))
            let listed = await api.rest("GET", base, token: owner)
            let templates = try #require(listed.json["templates"] as? [[String: Any]])
            #expect(templates.contains { $0["event"] as? String == "execution.completed" && $0["custom"] as? Bool == true })
            let preview = await api.rest(
                "POST", "/notification-templates/preview",
                body: #"{"executionId": "\#(executionId)", "event": "execution.completed", "channel": "slack"}"#, token: owner)
            #expect(preview.status == 200, "\(text(preview))")
            #expect((preview.json["subject"] as? String)?.hasPrefix("Orders done in ") == true)
            #expect(preview.json["html"] as? String == "<b>Orders</b>")
            #expect((preview.json["payload"] as? String)?.contains(#""type":"header""#) == true)
            #expect(await api.rest("DELETE", "\(base)/execution.completed", token: owner).status == 204)
            #expect(await api.rest("DELETE", "\(base)/execution.completed", token: owner).status == 404)
            let stranger = try await api.signUp("Stranger").token
            #expect(await api.rest(
                "POST", "/notification-templates/preview",
                body: #"{"executionId": "\#(executionId)", "event": "execution.completed"}"#, token: stranger).status == 404)
        }
    }
}

typealias RESTReply = (status: Int, json: [String: Any], headers: [(name: String, value: String)])

func msg(_ reply: RESTReply) -> String { reply.json["message"] as? String ?? "" }

func text(_ reply: RESTReply) -> String {
    (try? JSONSerialization.data(withJSONObject: reply.json)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

extension WeftApplication {
    var dispatcherForTests: NotificationDispatcher { dispatcher }
}
