public import Foundation

extension MemoryStore: CredentialStore {
    public func createRefreshToken(_ token: RefreshTokenRecord) async throws {
        state.withLock { $0.refreshTokens[token.hash] = token }
    }

    public func rotateRefreshToken(hash: String, nextHash: String, nextExpiresAt: Date, now: Date) async throws
        -> RefreshOutcome
    {
        state.withLock { state in
            guard let token = state.refreshTokens[hash], token.revokedAt == nil, token.expiresAt > now else {
                return .invalid
            }
            if token.usedAt != nil {
                for (key, each) in state.refreshTokens where each.familyId == token.familyId && each.revokedAt == nil {
                    state.refreshTokens[key]?.revokedAt = now
                }
                return .reused(userId: token.userId, familyId: token.familyId)
            }
            state.refreshTokens[hash]?.usedAt = now
            state.refreshTokens[nextHash] = RefreshTokenRecord(
                hash: nextHash, familyId: token.familyId, userId: token.userId, createdAt: now, expiresAt: nextExpiresAt)
            return .rotated(userId: token.userId, familyId: token.familyId)
        }
    }

    public func revokeSessions(userId: String, familyId: String?, now: Date) async throws -> [String] {
        state.withLock { state in
            var families = Set<String>()
            for (key, each) in state.refreshTokens
            where each.userId == userId && each.revokedAt == nil && (familyId == nil || each.familyId == familyId) {
                state.refreshTokens[key]?.revokedAt = now
                families.insert(each.familyId)
            }
            return families.sorted()
        }
    }

    public func revokedFamilies(since: Date) async throws -> [String] {
        state.withLock { state in
            Set(state.refreshTokens.values.filter { ($0.revokedAt ?? .distantPast) > since }.map(\.familyId)).sorted()
        }
    }

    public func tokenVersions() async throws -> [String: Int] {
        state.withLock { $0.tokenVersions }
    }

    public func bumpTokenVersion(userId: String, now: Date) async throws -> Int {
        try state.withLock { state in
            guard state.users[userId] != nil else { throw StoreError.notFound("no user \(userId)") }
            let next = (state.tokenVersions[userId] ?? 0) + 1
            state.tokenVersions[userId] = next
            return next
        }
    }

    public func changePassword(userId: String, passwordHash: String, now: Date) async throws -> Int {
        try state.withLock { state in
            guard state.users[userId] != nil else { throw StoreError.notFound("no user \(userId)") }
            state.users[userId]?.passwordHash = passwordHash
            state.users[userId]?.updatedAt = now
            let next = (state.tokenVersions[userId] ?? 0) + 1
            state.tokenVersions[userId] = next
            return next
        }
    }

    public func createApiKey(_ key: ApiKeyRecord) async throws {
        try state.withLock { state in
            guard !state.apiKeys.values.contains(where: { $0.prefix == key.prefix || $0.id == key.id }) else {
                throw StoreError.alreadyExists("an API key with prefix \(key.prefix) exists")
            }
            state.apiKeys[key.id] = key
        }
    }

    public func apiKeys(userId: String) async throws -> [ApiKeyRecord] {
        state.withLock { state in
            state.apiKeys.values.filter { $0.userId == userId }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
    }

    public func liveApiKeys() async throws -> [ApiKeyRecord] {
        state.withLock { state in state.apiKeys.values.filter { $0.revokedAt == nil }.sorted { $0.id < $1.id } }
    }

    public func revokeApiKey(id: String, userId: String, now: Date) async throws -> ApiKeyRecord {
        try state.withLock { state in
            guard var key = state.apiKeys[id], key.userId == userId else { throw StoreError.notFound("no API key \(id)") }
            if key.revokedAt == nil { key.revokedAt = now }
            state.apiKeys[id] = key
            return key
        }
    }

    public func purgeRefreshTokens(expiredBefore date: Date) async throws -> Int {
        state.withLock { state in
            let before = state.refreshTokens.count
            state.refreshTokens = state.refreshTokens.filter { $0.value.expiresAt >= date }
            return before - state.refreshTokens.count
        }
    }

    public func touchApiKeys(_ lastUsed: [String: Date]) async throws {
        state.withLock { state in
            for (id, date) in lastUsed where state.apiKeys[id] != nil { state.apiKeys[id]?.lastUsedAt = date }
        }
    }
}
