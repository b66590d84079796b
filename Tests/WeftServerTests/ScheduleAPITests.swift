import Foundation
import Testing
import WeftProto
import WeftRPC
import WeftStore
import WeftTestSupport

@testable import WeftServer

/// Schedules and triggers through the whole API in process (router,
/// interceptors, handlers, REST bridge); firing is in SchedulerTests and
/// the interop suite.
@Suite("schedule and trigger API")
struct ScheduleAPITests {
    func workflow(_ api: APIHarness, token: String) async throws -> Weft_V1_Workflow {
        try await api.call(APITests.createWorkflow, APITests.workflow(), token: token)
    }

    @Test("create, read, pause, resume, update and delete a schedule; errors name the field")
    func lifecycle() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let created = try await workflow(api, token: owner)
            let base = "/workflows/\(created.id)/schedules"
            let made = await api.rest(
                "POST", base, body: #"{"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "input": {"k": 1}}"#,
                token: owner)
            #expect(made.status == 201)
            let id = try #require(made.json["id"] as? String)
            #expect(id.hasPrefix("sch_"))
            #expect((made.json["nextRunTimes"] as? [String])?.count == 5)
            #expect(made.json["overlapPolicy"] as? String == "skip")
            #expect(made.json["catchupPolicy"] as? String == "run_once")
            // Stored: a wake-up for its first tick is queued.
            let stored = try #require(try await api.store.schedule(id: id))
            #expect(stored.nextRunAt != nil)
            #expect(try await api.store.depth(queue: ScheduleRecord.queue, now: Date()).delayed == 1)

            let paused = await api.rest("POST", "\(base)/\(id)/pause", body: #"{"note": "maintenance"}"#, token: owner)
            #expect(paused.status == 200 && paused.json["paused"] as? Bool == true)
            #expect(paused.json["nextRunAt"] == nil && paused.json["pausedNote"] as? String == "maintenance")
            #expect(try await api.store.depth(queue: ScheduleRecord.queue, now: Date()).delayed == 0)
            let resumed = await api.rest("POST", "\(base)/\(id)/resume", token: owner)
            #expect(resumed.json["paused"] as? Bool == false && resumed.json["nextRunAt"] != nil)

            let updated = await api.rest(
                "PUT", "\(base)/\(id)", body: #"{"cron": "@hourly", "overlapPolicy": "buffer_one", "jitter": "30s"}"#,
                token: owner)
            #expect(updated.status == 200)
            #expect(updated.json["cron"] as? String == "@hourly" && updated.json["timezone"] as? String == "UTC")
            #expect(updated.json["overlapPolicy"] as? String == "buffer_one" && updated.json["jitter"] as? String == "30s")

            for (body, message) in [
                (#"{"cron": "61 * * * *"}"#, #"cron: minute field "61" is out of range 0-59"#),
                (#"{"cron": "* * * * *", "timezone": "Mars/Base"}"#, #"cron: unknown time zone "Mars/Base""#),
                (#"{"cron": "0 0 30 2 *"}"#, #"cron: "0 0 30 2 *" never fires (e.g. February 30)"#),
                (#"{"cron": "* * * * *", "overlapPolicy": "queue"}"#,
                 #"overlap_policy "queue" is not one of skip, allow, buffer_one, cancel_other, terminate_other"#),
                (#"{"cron": "* * * * *", "jitter": "7200s"}"#, "jitter must be from 0s to less than 1h, got 7200000 ms"),
                (#"{"timezone": "UTC"}"#, "cron is required"),
                (#"{"cron": "* * * * *", "startAt": "9999-12-31T23:59:01Z"}"#, "start_at must be from 1970-01-01 to 9000-01-01"),
                (#"{"cron": "* * * * *", "jitter": "60s"}"#, "jitter (60.0 s) must be shorter than the gap between ticks (60.0 s)"),
            ] {
                let refused = await api.rest("POST", base, body: body, token: owner)
                #expect(refused.status == 400, "\(body)")
                #expect(refused.json["message"] as? String == message)
            }
            let list = await api.rest("GET", base, token: owner)
            #expect((list.json["schedules"] as? [[String: Any]])?.count == 1)
            #expect(await api.rest("DELETE", "\(base)/\(id)", token: owner).status == 204)
            #expect(await api.rest("GET", "\(base)/\(id)", token: owner).status == 404)
            #expect(try await api.store.depth(queue: ScheduleRecord.queue, now: Date()).delayed == 0)
        }
    }

    @Test("viewers read schedules but cannot change them; strangers see nothing")
    func roles() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let viewerAccount = try await api.signUp("Viewer")
            let (viewer, viewerUser) = viewerAccount
            let (stranger, _) = try await api.signUp("Stranger")
            let created = try await workflow(api, token: owner)
            try await api.join(viewerAccount, org: created.orgID, admin: owner)
            let _: Weft_V1_Collaborator = try await api.call(
                "/weft.v1.CollaboratorService/AddCollaborator",
                Weft_V1_AddCollaboratorRequest.with {
                    $0.workflowID = created.id
                    $0.userID = viewerUser.id
                    $0.role = .viewer
                }, token: owner)
            let base = "/workflows/\(created.id)/schedules"
            let made = await api.rest("POST", base, body: #"{"cron": "@daily"}"#, token: owner)
            let id = try #require(made.json["id"] as? String)
            #expect(await api.rest("GET", "\(base)/\(id)", token: viewer).status == 200)
            #expect(await api.rest("POST", base, body: #"{"cron": "@daily"}"#, token: viewer).status == 403)
            #expect(await api.rest("POST", "\(base)/\(id)/pause", token: viewer).status == 403)
            #expect(await api.rest("DELETE", "\(base)/\(id)", token: viewer).status == 403)
            #expect(await api.rest("GET", "\(base)/\(id)", token: stranger).status == 404)
            #expect(await api.rest("POST", "/workflows/\(created.id)/triggers", body: #"{"type": "webhook"}"#, token: viewer).status == 403)
        }
    }

    @Test("the preview shows DST-correct times with their local offsets")
    func preview() async throws {
        try await APIHarness.with { api in
            let (token, _) = try await api.signUp()
            let preview = await api.rest(
                "POST", "/schedules/preview",
                body: #"{"cron": "30 2 * * *", "timezone": "America/New_York", "count": 2, "after": "2027-03-13T12:00:00Z"}"#,
                token: token)
            #expect(preview.status == 200)
            #expect(preview.json["times"] as? [String] == ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"])
            #expect(preview.json["localTimes"] as? [String] == ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"])
            #expect(preview.json["normalized"] as? String == "0 30 2 * * *")
            #expect(await api.rest("POST", "/schedules/preview", body: #"{"cron": "@daily", "count": 101}"#, token: token).status == 400)
            #expect(await api.rest("POST", "/schedules/preview", body: #"{"cron": "@daily"}"#).status == 401)
        }
    }

    @Test("with an idempotency header, a signed request replayed under a new key is refused; the same key is a duplicate")
    func replayWithNewIdempotencyKey() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let created = try await workflow(api, token: owner)
            let secret = "0123456789abcdef-secret"
            let made = await api.rest(
                "POST", "/workflows/\(created.id)/triggers",
                body: #"{"type": "webhook", "signatureSecret": "\#(secret)", "idempotencyHeader": "Idempotency-Key"}"#,
                token: owner)
            let hook = try #require(made.json["id"] as? String)
            let body = #"{"n": 1}"#
            let now = Int(Date().timeIntervalSince1970)
            let signature = "sha256=" + Hex.encode(Crypto.hmacSHA256(key: Array(secret.utf8), data: Array("\(now).\(body)".utf8)))
            func deliver(_ key: String) async -> (status: Int, json: [String: Any]) {
                let response = await api.transport.rest(
                    "POST", "/hooks/\(hook)", body: body,
                    headers: [("x-weft-timestamp", String(now)), ("x-weft-signature", signature), ("idempotency-key", key)])
                return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:])
            }
            let first = await deliver("k1")
            #expect(first.status == 202)
            let retry = await deliver("k1")
            #expect(retry.status == 202 && retry.json["duplicate"] as? Bool == true)
            #expect(retry.json["executionId"] as? String == first.json["executionId"] as? String)
            #expect(await deliver("k2").status == 409)
        }
    }

    @Test("a signed webhook checks the exact bytes sent, refuses stale and replayed deliveries, and starts its workflow")
    func signedWebhook() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let created = try await workflow(api, token: owner)
            let secret = "0123456789abcdef-secret"
            let made = await api.rest(
                "POST", "/workflows/\(created.id)/triggers",
                body: #"{"type": "webhook", "signatureSecret": "\#(secret)"}"#, token: owner)
            #expect(made.status == 201)
            let hook = try #require(made.json["id"] as? String)
            #expect(hook.count == 35 && hook.hasPrefix("hk_"))
            #expect(made.json["signed"] as? Bool == true && made.json["signatureSecret"] == nil)
            let body = #"{"order":  "A-1", "amount": 250}"#  // sent as is (two spaces)
            func deliver(_ timestamp: Int, signature: String?) async -> (status: Int, json: [String: Any]) {
                var headers = [(name: "x-weft-timestamp", value: String(timestamp))]
                if let signature { headers.append((name: "x-weft-signature", value: signature)) }
                let response = await api.transport.rest("POST", "/hooks/\(hook)", body: body, headers: headers)
                return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:])
            }
            func sign(_ timestamp: Int, _ text: String = body) -> String {
                "sha256=" + Hex.encode(Crypto.hmacSHA256(key: Array(secret.utf8), data: Array("\(timestamp).\(text)".utf8)))
            }
            let now = Int(Date().timeIntervalSince1970)
            #expect(await deliver(now, signature: nil).status == 401)
            #expect(await deliver(now, signature: sign(now, #"{"order": "A-1", "amount": 250}"#)).status == 401)
            #expect(await deliver(now - 1000, signature: sign(now - 1000)).status == 401)
            let accepted = await deliver(now, signature: sign(now))
            #expect(accepted.status == 202)
            let executionId = try #require(accepted.json["executionId"] as? String)
            let replay = await deliver(now, signature: sign(now))
            #expect(replay.status == 409)
            #expect((replay.json["message"] as? String)?.contains(executionId) ?? false)
            let execution = try #require(try await api.store.execution(id: executionId))
            #expect(execution.trigger == .webhook && execution.triggerId == hook)
            #expect(execution.input == .object(["order": .string("A-1"), "amount": .number(250)]))
            #expect(await api.rest("POST", "/hooks/hk_00000000000000000000000000000000", body: "{}").status == 404)
            // A timestamp far outside any clock is refused before any arithmetic.
            let wild = await api.transport.rest(
                "POST", "/hooks/\(hook)", body: body,
                headers: [("x-weft-timestamp", "-9223372036854775808"), ("x-weft-signature", "sha256=00")])
            #expect(wild.status == 401)
            // Keys of schedules, webhooks and events cannot be taken by a caller.
            let reserved = await api.rest(
                "POST", "/workflows/\(created.id)/execute", body: #"{"idempotencyKey": "schedule:sch_1:0"}"#, token: owner)
            #expect(reserved.status == 400)
        }
    }
}
