public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: CredentialStore {
    public func createRefreshToken(_ token: RefreshTokenRecord) async throws {
        try await write("create_refresh_token") { db in
            try db.execute(
                sql: "INSERT INTO refresh_tokens (hash, family_id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [token.hash, token.familyId, token.userId, token.createdAt, token.expiresAt])
        }
    }

    public func rotateRefreshToken(hash: String, nextHash: String, nextExpiresAt: Date, now: Date) async throws
        -> RefreshOutcome
    {
        try await write("rotate_refresh_token") { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM refresh_tokens WHERE hash = ?", arguments: [hash]) else {
                return .invalid
            }
            let userId: String = row["user_id"]
            let familyId: String = row["family_id"]
            let expires: Date = row["expires_at"]
            guard (row["revoked_at"] as Date?) == nil, expires > now else { return .invalid }
            if (row["used_at"] as Date?) != nil {
                try db.execute(
                    sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
                    arguments: [now, familyId])
                return .reused(userId: userId, familyId: familyId)
            }
            try db.execute(sql: "UPDATE refresh_tokens SET used_at = ? WHERE hash = ?", arguments: [now, hash])
            try db.execute(
                sql: "INSERT INTO refresh_tokens (hash, family_id, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                arguments: [nextHash, familyId, userId, now, nextExpiresAt])
            return .rotated(userId: userId, familyId: familyId)
        }
    }

    public func revokeSessions(userId: String, familyId: String?, now: Date) async throws -> [String] {
        try await write("revoke_sessions") { db in
            var filter = "user_id = ? AND revoked_at IS NULL"
            var arguments: StatementArguments = [userId]
            if let familyId {
                filter += " AND family_id = ?"
                arguments += [familyId]
            }
            let families = try String.fetchAll(db, sql: "SELECT DISTINCT family_id FROM refresh_tokens WHERE \(filter)", arguments: arguments)
            try db.execute(sql: "UPDATE refresh_tokens SET revoked_at = ? WHERE \(filter)", arguments: [now] + arguments)
            return families.sorted()
        }
    }

    public func revokedFamilies(since: Date) async throws -> [String] {
        try await read("revoked_families") { db in
            try String.fetchAll(
                db, sql: "SELECT DISTINCT family_id FROM refresh_tokens WHERE revoked_at > ? ORDER BY family_id",
                arguments: [since])
        }
    }

    public func tokenVersions() async throws -> [String: Int] {
        try await read("token_versions") { db in
            var versions: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, token_version FROM users WHERE token_version != 0") {
                versions[row["id"]] = row["token_version"]
            }
            return versions
        }
    }

    public func bumpTokenVersion(userId: String, now: Date) async throws -> Int {
        try await write("bump_token_version") { db in
            try db.execute(
                sql: "UPDATE users SET token_version = token_version + 1 WHERE id = ?", arguments: [userId])
            guard db.changesCount == 1,
                let version = try Int.fetchOne(db, sql: "SELECT token_version FROM users WHERE id = ?", arguments: [userId])
            else { throw StoreError.notFound("no user \(userId)") }
            return version
        }
    }

    public func changePassword(userId: String, passwordHash: String, now: Date) async throws -> Int {
        try await write("change_password") { db in
            try db.execute(
                sql: "UPDATE users SET password_hash = ?, updated_at = ?, token_version = token_version + 1 WHERE id = ?",
                arguments: [passwordHash, now, userId])
            guard db.changesCount == 1,
                let version = try Int.fetchOne(db, sql: "SELECT token_version FROM users WHERE id = ?", arguments: [userId])
            else { throw StoreError.notFound("no user \(userId)") }
            try Self.audit(db, actor: userId, action: "change_password", resourceType: "user", resourceId: userId, at: now)
            return version
        }
    }

    public func createApiKey(_ key: ApiKeyRecord) async throws {
        try await write("create_api_key") { db in
            do {
                try db.execute(
                    sql: """
                        INSERT INTO api_keys (id, user_id, name, prefix, secret_hash, scopes, workflow_ids, queues, org_id,
                            client_cert_cn, expires_at, created_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        key.id, key.userId, key.name, key.prefix, key.secretHash, Self.list(key.scopes),
                        Self.list(key.workflowIds), Self.list(key.queues), key.orgId, key.clientCertCn, key.expiresAt,
                        key.createdAt,
                    ])
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                throw StoreError.alreadyExists("an API key with this prefix or client certificate name exists")
            }
        }
    }

    public func apiKeys(userId: String) async throws -> [ApiKeyRecord] {
        try await read("api_keys") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at, id", arguments: [userId])
                .map(Self.apiKey)
        }
    }

    public func liveApiKeys() async throws -> [ApiKeyRecord] {
        try await read("live_api_keys") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_keys WHERE revoked_at IS NULL ORDER BY id").map(Self.apiKey)
        }
    }

    public func revokeApiKey(id: String, userId: String, now: Date) async throws -> ApiKeyRecord {
        try await write("revoke_api_key") { db in
            try db.execute(
                sql: "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND user_id = ?",
                arguments: [now, id, userId])
            guard db.changesCount == 1,
                let row = try Row.fetchOne(db, sql: "SELECT * FROM api_keys WHERE id = ?", arguments: [id])
            else { throw StoreError.notFound("no API key \(id)") }
            return Self.apiKey(row)
        }
    }

    public func purgeRefreshTokens(expiredBefore date: Date) async throws -> Int {
        try await write("purge_refresh_tokens") { db in
            try db.execute(sql: "DELETE FROM refresh_tokens WHERE expires_at < ?", arguments: [date])
            return db.changesCount
        }
    }

    public func touchApiKeys(_ lastUsed: [String: Date]) async throws {
        guard !lastUsed.isEmpty else { return }
        try await write("touch_api_keys") { db in
            for (id, date) in lastUsed {
                try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [date, id])
            }
        }
    }

    /// Lists as JSON arrays (names may hold commas).
    static func list(_ values: [String]) -> String {
        (try? String(decoding: JSONEncoder().encode(values), as: UTF8.self)) ?? "[]"
    }

    static func unlist(_ text: String) -> [String] {
        (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }

    static func apiKey(_ row: Row) -> ApiKeyRecord {
        ApiKeyRecord(
            id: row["id"], userId: row["user_id"], name: row["name"], prefix: row["prefix"], secretHash: row["secret_hash"],
            scopes: unlist(row["scopes"]), workflowIds: unlist(row["workflow_ids"]), queues: unlist(row["queues"]),
            orgId: row["org_id"], clientCertCn: row["client_cert_cn"], expiresAt: row["expires_at"],
            createdAt: row["created_at"], lastUsedAt: row["last_used_at"], revokedAt: row["revoked_at"])
    }
}
