public import Foundation
public import WeftEngine
public import WeftStore

/// The organization secrets: sealed in the store under the master key,
/// opened only for an attempt that reads them (each use audited), never
/// returned by the API. Without a master key the vault is closed: secret
/// calls and tasks that read secrets fail with a message saying so.
public final class SecretVault: SecretSource, Sendable {
    let store: any SecretStore
    let sealer: SecretSealer?
    let audit: AuditLog
    /// Values larger than this are refused (a secret is a credential, not a file).
    static let maxValueBytes = 64 * 1024

    public init(store: any SecretStore, sealer: SecretSealer?, audit: AuditLog) {
        self.store = store
        self.sealer = sealer
        self.audit = audit
    }

    var closedMessage: String {
        "secrets need a master key: start weft serve with --secrets-key-file FILE or WEFT_SECRETS_KEY (see docs/SECURITY.md)"
    }

    public func reveal(orgId: String, names: Set<String>, for use: SecretUse) async throws -> [String: String] {
        guard let sealer else { throw SecretError(closedMessage) }
        var values: [String: String] = [:]
        for record in try await store.secrets(orgId: orgId, names: names) {
            values[record.name] = try sealer.open(record)
        }
        if use.forRedaction { return values }
        audit.append(AuditEvent(
            at: Date(), actorId: "system", orgId: orgId, action: "secret.use", resourceType: "execution",
            resourceId: use.executionId,
            detail: .object([
                "secrets": .array(values.keys.sorted().map(JSONValue.string)), "workflow_id": .string(use.workflowId),
                "task": .string(use.taskKey), "attempt": .number(Double(use.attempt)),
                "missing": .array(names.subtracting(values.keys).sorted().map(JSONValue.string)),
            ])))
        return values
    }

    func seal(orgId: String, name: String, value: String, actor: String, now: Date) throws -> SecretRecord {
        guard let sealer else { throw SecretError(closedMessage) }
        let sealed = sealer.seal(value, orgId: orgId, name: name)
        return SecretRecord(
            orgId: orgId, name: name, keyId: sealed.keyId, nonce: sealed.nonce, ciphertext: sealed.ciphertext, createdAt: now,
            updatedAt: now, updatedBy: actor)
    }

    /// Seals every value again under the current key (`weft secrets rotate-key`);
    /// returns how many were re-sealed.
    public func rotate() async throws -> Int {
        guard let sealer else { throw SecretError(closedMessage) }
        var resealed: [SecretRecord] = []
        for record in try await store.allSecrets() where record.keyId != sealer.current.id {
            let value = try sealer.open(record)
            let sealed = sealer.seal(value, orgId: record.orgId, name: record.name)
            var next = record
            next.keyId = sealed.keyId
            next.nonce = sealed.nonce
            next.ciphertext = sealed.ciphertext
            resealed.append(next)
        }
        try await store.reseal(resealed)
        return resealed.count
    }
}

extension SecretVault {
    /// A webhook trigger's signing key, sealed as secrets are (its additional
    /// data names the trigger, so a sealed key moved to another trigger
    /// does not open): "<key id>:<nonce hex>:<ciphertext hex>".
    func sealTriggerSecret(_ value: String, orgId: String, triggerId: String) throws -> String {
        try sealBound(value, orgId: orgId, name: "trigger:" + triggerId)
    }

    func openTriggerSecret(_ text: String, orgId: String, triggerId: String) throws -> String {
        try openBound(text, orgId: orgId, name: "trigger:" + triggerId, what: "the signing key of trigger \(triggerId)")
    }

    /// An integration's secret fields, as one sealed JSON object bound to it.
    func sealIntegrationSecrets(_ secrets: [String: String], orgId: String, integrationId: String) throws -> String? {
        guard !secrets.isEmpty else { return nil }
        let json = JSONValue.object(secrets.mapValues(JSONValue.string)).jsonText()
        return try sealBound(json, orgId: orgId, name: "integration:" + integrationId)
    }

    func openIntegrationSecrets(_ text: String?, orgId: String, integrationId: String) throws -> [String: String] {
        guard let text else { return [:] }
        let json = try openBound(
            text, orgId: orgId, name: "integration:" + integrationId, what: "the secrets of integration \(integrationId)")
        guard case .object(let fields)? = try? JSONValue(jsonText: json) else {
            throw SecretError("the secrets of integration \(integrationId) are damaged in the store")
        }
        return fields.compactMapValues(\.stringValue)
    }

    /// Seals a value whose additional data names what it belongs to, so a
    /// sealed value moved to another row does not open:
    /// "<key id>:<nonce hex>:<ciphertext hex>".
    private func sealBound(_ value: String, orgId: String, name: String) throws -> String {
        guard let sealer else { throw SecretError(closedMessage) }
        let sealed = sealer.seal(value, orgId: orgId, name: name)
        return "\(sealed.keyId):\(Hex.encode(sealed.nonce)):\(Hex.encode(sealed.ciphertext))"
    }

    private func openBound(_ text: String, orgId: String, name: String, what: String) throws -> String {
        guard let sealer else { throw SecretError(closedMessage) }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 3, let nonce = Hex.decode(String(parts[parts.count - 2])),
            let ciphertext = Hex.decode(String(parts[parts.count - 1]))
        else { throw SecretError("\(what) is damaged in the store") }
        let record = SecretRecord(
            orgId: orgId, name: name, keyId: parts.dropLast(2).joined(separator: ":"), nonce: nonce,
            ciphertext: ciphertext, createdAt: Date(), updatedAt: Date(), updatedBy: "")
        return try sealer.open(record)
    }
}
