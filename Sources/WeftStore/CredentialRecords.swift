public import Foundation

/// One refresh token of a session, stored only as its SHA-256 (hex). Every
/// token of a login descends from it through rotation: they share a family
/// (the session id), so reuse of a spent one can revoke them all.
public struct RefreshTokenRecord: Sendable, Hashable {
    public var hash: String
    public var familyId: String
    public var userId: String
    public var createdAt: Date
    public var expiresAt: Date
    /// Set when Refresh spent it (rotation); a second use is a reuse.
    public var usedAt: Date?
    public var revokedAt: Date?

    public init(
        hash: String, familyId: String, userId: String, createdAt: Date, expiresAt: Date, usedAt: Date? = nil,
        revokedAt: Date? = nil
    ) {
        self.hash = hash
        self.familyId = familyId
        self.userId = userId
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.usedAt = usedAt
        self.revokedAt = revokedAt
    }
}

/// What presenting a refresh token did.
public enum RefreshOutcome: Sendable, Equatable {
    /// It was live: it is spent now and `next` (same family) replaces it.
    case rotated(userId: String, familyId: String)
    /// It was spent already: the whole family is revoked now.
    case reused(userId: String, familyId: String)
    /// Unknown, expired or revoked.
    case invalid
}

/// An API key: its secret only as SHA-256 (hex), its prefix for lookup and
/// display.
public struct ApiKeyRecord: Sendable, Hashable {
    public var id: String
    public var userId: String
    public var name: String
    public var prefix: String
    public var secretHash: String
    public var scopes: [String]
    public var workflowIds: [String]
    public var queues: [String]
    public var orgId: String
    public var clientCertCn: String
    public var expiresAt: Date?
    public var createdAt: Date
    public var lastUsedAt: Date?
    public var revokedAt: Date?

    public init(
        id: String, userId: String, name: String, prefix: String, secretHash: String, scopes: [String],
        workflowIds: [String] = [], queues: [String] = [], orgId: String = "", clientCertCn: String = "",
        expiresAt: Date? = nil, createdAt: Date, lastUsedAt: Date? = nil, revokedAt: Date? = nil
    ) {
        self.id = id
        self.userId = userId
        self.name = name
        self.prefix = prefix
        self.secretHash = secretHash
        self.scopes = scopes
        self.workflowIds = workflowIds
        self.queues = queues
        self.orgId = orgId
        self.clientCertCn = clientCertCn
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.revokedAt = revokedAt
    }
}

/// Sessions (refresh tokens, token versions, passwords) and API keys.
public protocol CredentialStore: Sendable {
    func createRefreshToken(_ token: RefreshTokenRecord) async throws
    /// In one transaction: a live token is spent and `next` (its hash and
    /// expiry; same family and user) stored; a spent one revokes its family.
    func rotateRefreshToken(hash: String, nextHash: String, nextExpiresAt: Date, now: Date) async throws -> RefreshOutcome
    /// Revokes the refresh tokens of one session (`familyId`) or of all the
    /// user's sessions (nil); returns the families revoked.
    func revokeSessions(userId: String, familyId: String?, now: Date) async throws -> [String]
    /// Families revoked after `since` (to refuse their access tokens after a restart).
    func revokedFamilies(since: Date) async throws -> [String]
    /// Every user's token version that is not 0.
    func tokenVersions() async throws -> [String: Int]
    /// Version + 1: every access token issued before stops working.
    func bumpTokenVersion(userId: String, now: Date) async throws -> Int
    /// Sets the password hash and bumps the token version (one transaction).
    func changePassword(userId: String, passwordHash: String, now: Date) async throws -> Int

    /// Throws `alreadyExists` on a duplicate prefix.
    func createApiKey(_ key: ApiKeyRecord) async throws
    func apiKeys(userId: String) async throws -> [ApiKeyRecord]
    /// Keys not revoked (expired ones included: they answer "expired").
    func liveApiKeys() async throws -> [ApiKeyRecord]
    /// Throws `notFound` unless the user has the key.
    func revokeApiKey(id: String, userId: String, now: Date) async throws -> ApiKeyRecord
    func touchApiKeys(_ lastUsed: [String: Date]) async throws
    /// Deletes refresh tokens that expired before `date` (they can no
    /// longer be used or reused); returns how many.
    func purgeRefreshTokens(expiredBefore date: Date) async throws -> Int
}
