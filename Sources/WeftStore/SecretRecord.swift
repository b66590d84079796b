public import Foundation

/// One organization secret, sealed: the store never holds its value in the
/// clear (AES-256-GCM under the server's master key `keyId`).
public struct SecretRecord: Sendable, Hashable {
    public var orgId: String
    public var name: String
    /// 1 on create, +1 on every update.
    public var version: Int
    public var keyId: String
    public var nonce: [UInt8]
    /// The ciphertext with its 16-byte GCM tag at the end.
    public var ciphertext: [UInt8]
    public var createdAt: Date
    public var updatedAt: Date
    public var updatedBy: String

    public init(
        orgId: String, name: String, version: Int = 1, keyId: String, nonce: [UInt8], ciphertext: [UInt8], createdAt: Date,
        updatedAt: Date, updatedBy: String
    ) {
        self.orgId = orgId
        self.name = name
        self.version = version
        self.keyId = keyId
        self.nonce = nonce
        self.ciphertext = ciphertext
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

/// Sealed secrets by organization and name.
public protocol SecretStore: Sendable {
    /// `alreadyExists` if the organization has a secret of that name.
    func createSecret(_ secret: SecretRecord) async throws
    /// Replaces the sealed value (version + 1); `notFound` if missing.
    func updateSecret(_ secret: SecretRecord) async throws -> SecretRecord
    /// `notFound` if missing.
    func deleteSecret(orgId: String, name: String) async throws
    /// The organization's secrets by name (all when `names` is nil).
    func secrets(orgId: String, names: Set<String>?) async throws -> [SecretRecord]
    /// Every secret of every organization (key rotation).
    func allSecrets() async throws -> [SecretRecord]
    /// Stores values sealed again under another key (same versions), in one
    /// transaction.
    func reseal(_ secrets: [SecretRecord]) async throws
}
