public import Foundation

extension MemoryStore: SecretStore {
    public func createSecret(_ secret: SecretRecord) async throws {
        try state.withLock { state in
            let key = secret.orgId + "|" + secret.name
            guard state.secrets[key] == nil else {
                throw StoreError.alreadyExists("organization \(secret.orgId) has a secret \(secret.name)")
            }
            state.secrets[key] = secret
        }
    }

    public func updateSecret(_ secret: SecretRecord) async throws -> SecretRecord {
        try state.withLock { state in
            let key = secret.orgId + "|" + secret.name
            guard let current = state.secrets[key] else { throw StoreError.notFound("no secret \(secret.name)") }
            var next = secret
            next.version = current.version + 1
            next.createdAt = current.createdAt
            state.secrets[key] = next
            return next
        }
    }

    public func deleteSecret(orgId: String, name: String) async throws {
        try state.withLock { state in
            guard state.secrets.removeValue(forKey: orgId + "|" + name) != nil else {
                throw StoreError.notFound("no secret \(name)")
            }
        }
    }

    public func secrets(orgId: String, names: Set<String>?) async throws -> [SecretRecord] {
        state.withLock { state in
            state.secrets.values.filter { $0.orgId == orgId && (names?.contains($0.name) ?? true) }.sorted { $0.name < $1.name }
        }
    }

    public func allSecrets() async throws -> [SecretRecord] {
        state.withLock { state in state.secrets.values.sorted { ($0.orgId, $0.name) < ($1.orgId, $1.name) } }
    }

    public func reseal(_ secrets: [SecretRecord]) async throws {
        state.withLock { state in
            for secret in secrets { state.secrets[secret.orgId + "|" + secret.name] = secret }
        }
    }
}
