import Foundation
import Logging
import Testing
import WeftEngine
import WeftServer
import WeftStore

/// AES-256-GCM sealing, tamper detection, and key rotation of the secret store.
@Suite("secret sealing")
struct SecretSealerTests {
    let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func vault(_ store: MemoryStore, _ sealer: SecretSealer) -> SecretVault {
        SecretVault(store: store, sealer: sealer, audit: AuditLog(store: store, logger: quiet))
    }

    @Test("a sealed value opens only with its key, organization and name; altered bytes do not open")
    func sealing() throws {
        let key = try MasterKey(text: MasterKey.generate())
        let sealer = SecretSealer(current: key)
        let sealed = sealer.seal("hunter2-value", orgId: "org_a", name: "TOKEN")
        #expect(sealed.keyId == key.id && sealed.nonce.count == 12 && sealed.ciphertext.count == "hunter2-value".utf8.count + 16)
        #expect(!String(decoding: sealed.ciphertext, as: UTF8.self).contains("hunter2"))
        var record = SecretRecord(
            orgId: "org_a", name: "TOKEN", keyId: sealed.keyId, nonce: sealed.nonce, ciphertext: sealed.ciphertext,
            createdAt: Date(), updatedAt: Date(), updatedBy: "u")
        #expect(try sealer.open(record) == "hunter2-value")
        // The same value twice seals differently (fresh nonce).
        #expect(sealer.seal("hunter2-value", orgId: "org_a", name: "TOKEN").ciphertext != sealed.ciphertext)
        var moved = record
        moved.orgId = "org_b"
        #expect(throws: SecretError.self) { try sealer.open(moved) }
        var renamed = record
        renamed.name = "OTHER"
        #expect(throws: SecretError.self) { try sealer.open(renamed) }
        record.ciphertext[0] ^= 1
        #expect(throws: SecretError.self) { try sealer.open(record) }
        let otherKey = SecretSealer(current: try MasterKey(text: MasterKey.generate()))
        record.ciphertext[0] ^= 1
        #expect(throws: SecretError.self) { try otherKey.open(record) }
        // Key text: 64 hex digits or base64 of 32 bytes; anything else refused.
        #expect(throws: SecretError.self) { try MasterKey(text: "00112233") }
        #expect(try MasterKey(text: String(repeating: "ab", count: 32)).id.count == 16)
    }

    @Test("rotation re-seals every value under the new key; afterwards the new key alone opens them")
    func rotation() async throws {
        let store = MemoryStore()
        let old = try MasterKey(text: MasterKey.generate())
        let new = try MasterKey(text: MasterKey.generate())
        let before = vault(store, SecretSealer(current: old))
        let use = SecretUse(executionId: "exe_1", workflowId: "wf_1", taskKey: "t", attempt: 1)
        for (org, name, value) in [("org_a", "ONE", "value-one"), ("org_b", "TWO", "value-two")] {
            let sealed = SecretSealer(current: old).seal(value, orgId: org, name: name)
            try await store.createSecret(SecretRecord(
                orgId: org, name: name, keyId: sealed.keyId, nonce: sealed.nonce, ciphertext: sealed.ciphertext,
                createdAt: Date(), updatedAt: Date(), updatedBy: "u"))
        }
        #expect(try await before.reveal(orgId: "org_a", names: ["ONE"], for: use) == ["ONE": "value-one"])
        // The new key alone cannot open what the old one sealed.
        await #expect(throws: SecretError.self) {
            _ = try await vault(store, SecretSealer(current: new)).reveal(orgId: "org_a", names: ["ONE"], for: use)
        }
        let rotating = vault(store, SecretSealer(current: new, older: [old]))
        #expect(try await rotating.rotate() == 2)
        #expect(try await rotating.rotate() == 0, "running it again changes nothing")
        #expect(try await store.allSecrets().allSatisfy { $0.keyId == new.id })
        let after = vault(store, SecretSealer(current: new))
        #expect(try await after.reveal(orgId: "org_b", names: ["TWO"], for: use) == ["TWO": "value-two"])
        #expect(try await after.reveal(orgId: "org_a", names: ["ONE"], for: use) == ["ONE": "value-one"])
    }
}
