import Foundation
import Testing
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore
import WeftTestSupport

@testable import WeftServer

/// Sessions, API keys, login limits and rate limits through the real
/// router, interceptor chain and handlers (in process, memory store).
@Suite("identity API")
struct IdentityAPITests {
    static func login(_ api: APIHarness, _ email: String, _ password: String = "correct horse") async
        -> (status: Int, json: [String: Any], headers: [(name: String, value: String)])
    {
        await api.rest("POST", "/users/login", body: #"{"email": "\#(email)", "password": "\#(password)"}"#)
    }

    @Test("refresh rotates; a reused refresh token revokes its session; logout and password change revoke")
    func sessions() async throws {
        try await APIHarness.with { api in
            let (_, user) = try await api.signUp("Sam")
            let first = await Self.login(api, user.email)
            let access = try #require(first.json["token"] as? String)
            let refresh = try #require(first.json["refreshToken"] as? String)
            #expect(await api.rest("GET", "/users/me", token: access).status == 200)

            let rotated = await api.rest("POST", "/users/refresh", body: #"{"refreshToken": "\#(refresh)"}"#)
            #expect(rotated.status == 200)
            let newRefresh = try #require(rotated.json["refreshToken"] as? String)
            let newAccess = try #require(rotated.json["token"] as? String)
            #expect(newRefresh != refresh)
            // The spent token again: the whole session ends.
            let reuse = await api.rest("POST", "/users/refresh", body: #"{"refreshToken": "\#(refresh)"}"#)
            #expect(reuse.status == 401 && (reuse.json["message"] as? String ?? "").contains("used already"))
            #expect(await api.rest("POST", "/users/refresh", body: #"{"refreshToken": "\#(newRefresh)"}"#).status == 401)
            #expect(await api.rest("GET", "/users/me", token: newAccess).status == 401)
            #expect(await api.rest("GET", "/users/me", token: access).status == 401)

            // Logout ends one session, not another.
            let a = try #require(await Self.login(api, user.email).json["token"] as? String)
            let b = try #require(await Self.login(api, user.email).json["token"] as? String)
            #expect(await api.rest("POST", "/users/logout", body: "{}", token: a).status == 200)
            #expect(await api.rest("GET", "/users/me", token: a).status == 401)
            #expect(await api.rest("GET", "/users/me", token: b).status == 200)
            // All sessions.
            let c = try #require(await Self.login(api, user.email).json["token"] as? String)
            #expect(await api.rest("POST", "/users/logout", body: #"{"allSessions": true}"#, token: b).status == 200)
            #expect(await api.rest("GET", "/users/me", token: c).status == 401)

            // Password change: the old sessions end, the new one works, the old password no longer does.
            let d = await Self.login(api, user.email)
            let dAccess = try #require(d.json["token"] as? String)
            let dRefresh = try #require(d.json["refreshToken"] as? String)
            let wrong = await api.rest(
                "POST", "/users/me/password", body: #"{"currentPassword": "nope nope", "newPassword": "new password 1"}"#,
                token: dAccess)
            #expect(wrong.status == 401)
            let short = await api.rest(
                "POST", "/users/me/password", body: #"{"currentPassword": "correct horse", "newPassword": "short"}"#,
                token: dAccess)
            #expect(short.status == 400)
            let changed = await api.rest(
                "POST", "/users/me/password", body: #"{"currentPassword": "correct horse", "newPassword": "new password 1"}"#,
                token: dAccess)
            #expect(changed.status == 200)
            let fresh = try #require(changed.json["token"] as? String)
            #expect(await api.rest("GET", "/users/me", token: dAccess).status == 401)
            #expect(await api.rest("POST", "/users/refresh", body: #"{"refreshToken": "\#(dRefresh)"}"#).status == 401)
            #expect(await api.rest("GET", "/users/me", token: fresh).status == 200)
            #expect(await Self.login(api, user.email).status == 401)
            #expect(await Self.login(api, user.email, "new password 1").status == 200)
        }
    }

    @Test("API keys: shown once, scoped by method, workflow and queue, revoked at once")
    func apiKeys() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let made = await api.rest("POST", "/workflows", body: #"{"name": "w", "tasks": [{"key": "a", "name": "a", "action": "noop"}]}"#, token: owner)
            let workflowId = try #require(made.json["id"] as? String)
            let other = await api.rest("POST", "/workflows", body: #"{"name": "o", "tasks": [{"key": "a", "name": "a", "action": "noop"}]}"#, token: owner)
            let otherId = try #require(other.json["id"] as? String)

            func key(_ body: String) async throws -> (id: String, secret: String) {
                let created = await api.rest("POST", "/api-keys", body: body, token: owner)
                #expect(created.status == 201, "\(created.json)")
                let apiKey = try #require(created.json["apiKey"] as? [String: Any])
                return (try #require(apiKey["id"] as? String), try #require(created.json["secret"] as? String))
            }
            let read = try await key(#"{"name": "reader", "scopes": ["read"]}"#)
            #expect(read.secret.hasPrefix("wk_"))
            #expect(await api.rest("GET", "/workflows/\(workflowId)", token: read.secret).status == 200)
            #expect(await api.rest("POST", "/workflows", body: #"{"name": "x", "tasks": []}"#, token: read.secret).status == 403)
            #expect(await api.rest("POST", "/workflows/\(workflowId)/execute", body: "{}", token: read.secret).status == 403)

            let execute = try await key(#"{"name": "runner", "scopes": ["execute"], "workflowIds": ["\#(workflowId)"]}"#)
            #expect(await api.rest("POST", "/workflows/\(workflowId)/execute", body: "{}", token: execute.secret).status == 202)
            #expect(await api.rest("POST", "/workflows/\(otherId)/execute", body: "{}", token: execute.secret).status == 403)
            #expect(await api.rest("DELETE", "/workflows/\(workflowId)", token: execute.secret).status == 403)
            // A key cannot make keys unless it is an admin key.
            #expect(await api.rest("POST", "/api-keys", body: #"{"name": "n", "scopes": ["read"]}"#, token: execute.secret).status == 403)

            // The list never shows a secret; it shows the prefix and, after use, the last use.
            let listed = await api.rest("GET", "/api-keys", token: owner)
            let keys = try #require(listed.json["apiKeys"] as? [[String: Any]])
            #expect(keys.count == 2 && !String(describing: listed.json).contains(read.secret))
            #expect(keys.allSatisfy { ($0["prefix"] as? String)?.hasPrefix("wk_") == true && $0["lastUsedAt"] != nil })

            // Revoked: refused at once.
            let deleted = await api.rest("DELETE", "/api-keys/\(read.id)", token: owner)
            #expect(deleted.status == 204, "\(deleted.json)")
            let revoked = await api.rest("GET", "/workflows/\(workflowId)", token: read.secret)
            #expect(revoked.status == 401)
            #expect(await api.rest("DELETE", "/api-keys/key_nope", token: owner).status == 404)

            // Bad input names the field.
            for (body, field) in [
                (#"{"name": "", "scopes": ["read"]}"#, "name"),
                (#"{"name": "k", "scopes": ["root"]}"#, "scopes"),
                (#"{"name": "k", "scopes": ["execute"]}"#, "workflow_ids"),
                (#"{"name": "k", "scopes": ["worker"]}"#, "queues"),
                (#"{"name": "k", "scopes": ["read"], "expiresAt": "2020-01-01T00:00:00Z"}"#, "expires_at"),
                (#"{"name": "k", "scopes": ["read"], "expiresAt": "9999-12-31T00:00:00Z"}"#, "expires_at"),
            ] {
                let refused = await api.rest("POST", "/api-keys", body: body, token: owner)
                #expect(refused.status == 400 && (refused.json["message"] as? String ?? "").contains(field), "\(body): \(refused.json)")
            }
            // A certificate name is bound only over mutual TLS with that certificate.
            let claim = await api.rest(
                "POST", "/api-keys", body: #"{"name": "k", "scopes": ["read"], "clientCertCn": "someone-else"}"#, token: owner)
            #expect(claim.status == 403)
        }
    }

    @Test("failed logins are limited per account, unknown emails alike, with a growing retry-after")
    func loginLimits() async throws {
        try await APIHarness.with { api in
            let (_, user) = try await api.signUp("Lim")
            for _ in 0..<5 { #expect(await Self.login(api, user.email, "wrong password").status == 401) }
            let limited = await Self.login(api, user.email, "wrong password")
            #expect(limited.status == 429)
            #expect(limited.headers.contains { $0.name == "retry-after" })
            // Even the right password waits: the limit is checked first.
            #expect(await Self.login(api, user.email).status == 429)
            // An unknown email answers the same way as a known one.
            let unknown = await Self.login(api, "nobody-\(UUID().uuidString.prefix(6))@example.com", "wrong password")
            let known = await Self.login(api, "\(UUID().uuidString.prefix(6))@example.com", "wrong password")
            #expect(unknown.status == 401 && unknown.json["message"] as? String == known.json["message"] as? String)
            let long = String(repeating: "x", count: 1025)
            #expect(await Self.login(api, "a@b.io", long).status == 400)
        }
    }

    @Test("the login limiter doubles the wait with every failure past the limit")
    func limiterBackoff() throws {
        let limiter = LoginLimiter(settings: .init(perAccount: 2, perAddress: 100), metrics: WeftMetrics())
        let start = Date(timeIntervalSince1970: 1_000_000)
        limiter.failed(email: "A@x.io", address: "1.2.3.4", now: start)
        try limiter.check(email: "a@x.io", address: "1.2.3.4", now: start)
        limiter.failed(email: "a@x.io", address: "1.2.3.4", now: start)
        func wait(at date: Date) -> Int? {
            do {
                try limiter.check(email: "a@x.io", address: "1.2.3.4", now: date)
                return nil
            } catch let error as RPCError {
                return Int(error.metadata[string: "retry-after"] ?? "")
            } catch { return nil }
        }
        #expect(wait(at: start) == 1)
        #expect(wait(at: start.addingTimeInterval(1.5)) == nil)
        limiter.failed(email: "a@x.io", address: "1.2.3.4", now: start.addingTimeInterval(2))
        #expect(wait(at: start.addingTimeInterval(2)) == 2)
        limiter.failed(email: "a@x.io", address: "1.2.3.4", now: start.addingTimeInterval(5))
        #expect(wait(at: start.addingTimeInterval(5)) == 4)
        limiter.succeeded(email: "a@x.io")
        #expect(wait(at: start.addingTimeInterval(5)) == nil)
    }

    @Test("rate limits parse from one place and refuse past the burst with retry-after")
    func rateLimits() async throws {
        var settings = RateLimitSettings()
        try settings.apply("read=2/s:3")
        try settings.apply("auth=off")
        #expect(settings.description == "auth=off,read=2/s:3,write=off,execute=off")
        #expect(throws: WeftStartupError.self) { try settings.apply("reads=2/s") }
        #expect(throws: WeftStartupError.self) { try settings.apply("read=2") }
        #expect(throws: WeftStartupError.self) { try settings.apply("read=2/s:0") }
        try await APIHarness.with(configure: { $0.auth.rateLimits = settings }) { api in
            let (token, _) = try await api.signUp("Rate")
            var statuses: [Int] = []
            for _ in 0..<5 { statuses.append(await api.rest("GET", "/users/me", token: token).status) }
            #expect(statuses.prefix(3).allSatisfy { $0 == 200 })
            #expect(statuses.last == 429)
            let refused = await api.rest("GET", "/users/me", token: token)
            #expect(refused.headers.contains { $0.name == "retry-after" })
            #expect(String(decoding: api.metrics.exposition(), as: UTF8.self).contains(#"weft_rate_limited_total{class="read",scope="#))
        }
    }

    @Test("the hashing pool refuses past its queue instead of waiting")
    func hashingPoolBound() async throws {
        let pool = PasswordHashPool(threads: 1, queueLimit: 1, metrics: WeftMetrics())
        let gate = DispatchSemaphore(value: 0)
        async let first = pool.run { gate.wait(); return true }
        try await Task.sleep(for: .milliseconds(50))
        async let second = pool.run { true }
        try await Task.sleep(for: .milliseconds(50))
        await #expect(throws: RPCError.self) { try await pool.run { true } }
        gate.signal()
        #expect(try await first)
        #expect(try await second)
        #expect(try await pool.run { true })
    }
}
