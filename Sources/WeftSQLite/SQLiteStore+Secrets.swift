public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: SecretStore {
    public func createSecret(_ secret: SecretRecord) async throws {
        try await write("create_secret") { db in
            do {
                try db.execute(
                    sql: """
                        INSERT INTO secrets (org_id, name, version, key_id, nonce, ciphertext, created_at, updated_at, updated_by)
                        VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        secret.orgId, secret.name, secret.keyId, Data(secret.nonce), Data(secret.ciphertext), secret.createdAt,
                        secret.updatedAt, secret.updatedBy,
                    ])
            } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY {
                throw StoreError.alreadyExists("organization \(secret.orgId) has a secret \(secret.name)")
            }
        }
    }

    public func updateSecret(_ secret: SecretRecord) async throws -> SecretRecord {
        try await write("update_secret") { db in
            try db.execute(
                sql: """
                    UPDATE secrets SET version = version + 1, key_id = ?, nonce = ?, ciphertext = ?, updated_at = ?, updated_by = ?
                    WHERE org_id = ? AND name = ?
                    """,
                arguments: [
                    secret.keyId, Data(secret.nonce), Data(secret.ciphertext), secret.updatedAt, secret.updatedBy, secret.orgId,
                    secret.name,
                ])
            guard db.changesCount == 1,
                let row = try Row.fetchOne(
                    db, sql: "SELECT * FROM secrets WHERE org_id = ? AND name = ?", arguments: [secret.orgId, secret.name])
            else { throw StoreError.notFound("no secret \(secret.name)") }
            return Self.secretRecord(row)
        }
    }

    public func deleteSecret(orgId: String, name: String) async throws {
        try await write("delete_secret") { db in
            try db.execute(sql: "DELETE FROM secrets WHERE org_id = ? AND name = ?", arguments: [orgId, name])
            guard db.changesCount == 1 else { throw StoreError.notFound("no secret \(name)") }
        }
    }

    public func secrets(orgId: String, names: Set<String>?) async throws -> [SecretRecord] {
        try await read("get_secrets") { db in
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM secrets WHERE org_id = ? ORDER BY name", arguments: [orgId])
            return rows.map(Self.secretRecord).filter { names?.contains($0.name) ?? true }
        }
    }

    public func allSecrets() async throws -> [SecretRecord] {
        try await read("all_secrets") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM secrets ORDER BY org_id, name").map(Self.secretRecord)
        }
    }

    public func reseal(_ secrets: [SecretRecord]) async throws {
        try await write("reseal_secrets") { db in
            for secret in secrets {
                try db.execute(
                    sql: "UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ? WHERE org_id = ? AND name = ? AND version = ?",
                    arguments: [secret.keyId, Data(secret.nonce), Data(secret.ciphertext), secret.orgId, secret.name, secret.version])
                guard db.changesCount == 1 else {
                    throw StoreError.conflict("secret \(secret.name) of \(secret.orgId) changed during the rotation; run it again")
                }
            }
        }
    }

    static func secretRecord(_ row: Row) -> SecretRecord {
        SecretRecord(
            orgId: row["org_id"], name: row["name"], version: row["version"], keyId: row["key_id"],
            nonce: Array(row["nonce"] as Data), ciphertext: Array(row["ciphertext"] as Data), createdAt: row["created_at"],
            updatedAt: row["updated_at"], updatedBy: row["updated_by"])
    }
}
