import Foundation
import WeftEngine
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.ApiKeyService: credentials for services and workers. A key acts
/// as its creator, narrowed to its scopes; the secret is returned once and
/// stored as a SHA-256 hash (it is 32 random bytes: a slow hash adds
/// nothing), with a prefix for lookup and display.
struct ApiKeyAPI: RPCService {
    static let name = "weft.v1.ApiKeyService"
    let deps: APIDependencies
    let index: ApiKeyIndex

    /// Live keys one user may hold.
    static let maxKeysPerUser = 100
    static let maxLifetimeSeconds: Int64 = 10 * 366 * 86_400

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateApiKey", rest: [.post("/api-keys", status: 201)]) {
                (request: Weft_V1_CreateApiKeyRequest, context) in
                try await create(request, try Caller(context), peerIdentity: context.peerIdentity)
            },
            .unary(service: Self.name, method: "ListApiKeys", rest: [.get("/api-keys")]) {
                (_: Weft_V1_ListApiKeysRequest, context) in
                let caller = try Caller(context)
                var response = Weft_V1_ListApiKeysResponse()
                response.apiKeys = try await deps.credentials.apiKeys(userId: caller.userId).map { key in
                    var shown = key
                    if let recent = index.lastUsed(prefix: key.prefix), recent > (shown.lastUsedAt ?? .distantPast) {
                        shown.lastUsedAt = recent
                    }
                    return Self.proto(shown)
                }
                return response
            },
            .unary(service: Self.name, method: "RevokeApiKey", rest: [.delete("/api-keys/{apiKeyId}")]) {
                (request: Weft_V1_RevokeApiKeyRequest, context) in
                let caller = try Caller(context)
                guard !request.apiKeyID.isEmpty else { throw APIError.required("api_key_id") }
                caller.audit?.note(resource: ("api_key", request.apiKeyID))
                do {
                    let key = try await deps.credentials.revokeApiKey(id: request.apiKeyID, userId: caller.userId, now: Date.nowMillis)
                    index.remove(key)
                } catch StoreError.notFound {
                    throw RPCError(code: .notFound, message: "API key \(request.apiKeyID) not found")
                }
                return Weft_V1_RevokeApiKeyResponse()
            },
        ]
    }

    func create(_ request: Weft_V1_CreateApiKeyRequest, _ caller: Caller, peerIdentity: String?) async throws
        -> Weft_V1_CreateApiKeyResponse
    {
        let name = request.name.trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty else { throw APIError.required("name") }
        guard name.count <= APILimits.nameMaxCharacters, !name.unicodeScalars.contains("\0") else {
            throw RPCError(
                code: .invalidArgument, message: "name must be at most \(APILimits.nameMaxCharacters) characters, without NUL")
        }
        guard !request.scopes.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "scopes is required: one or more of read, execute, worker, admin")
        }
        var scopes: [ApiKeyGrant.Scope] = []
        for text in request.scopes {
            guard let scope = ApiKeyGrant.Scope(rawValue: text) else {
                throw RPCError(
                    code: .invalidArgument, message: "scopes: \"\(text.prefix(40))\" is not a scope (read, execute, worker, admin)")
            }
            if !scopes.contains(scope) { scopes.append(scope) }
        }
        if scopes.contains(.execute) && request.workflowIds.isEmpty {
            throw RPCError(code: .invalidArgument, message: "workflow_ids is required with the execute scope: the workflows it may start")
        }
        if scopes.contains(.worker) && request.queues.isEmpty {
            throw RPCError(code: .invalidArgument, message: "queues is required with the worker scope: the queues it may poll")
        }
        guard request.workflowIds.count <= 100, request.queues.count <= 100 else {
            throw RPCError(code: .invalidArgument, message: "workflow_ids and queues hold at most 100 entries each")
        }
        for queue in request.queues where !TaskTypes.isQueueName(queue) {
            throw RPCError(
                code: .invalidArgument,
                message: "queues: \"\(queue.prefix(80))\" is not a queue name (1 to 64 letters, digits, '.', '_' or '-')")
        }
        // Only workflows the caller may execute (a key cannot gain rights).
        for id in Set(request.workflowIds) { _ = try await deps.workflow(id, caller: caller, needs: .editor) }
        var orgId = ""
        if !request.orgID.isEmpty {
            orgId = try await deps.organization(request.orgID, caller: caller, needs: .member).0.id
        }
        var expires: Date?
        if request.hasExpiresAt {
            let stamp = request.expiresAt
            // Bounded: the store keeps four-digit years, and a key for ever is what no expiry says.
            guard stamp.seconds <= Int64(Date().timeIntervalSince1970) + Self.maxLifetimeSeconds,
                (0..<1_000_000_000).contains(stamp.nanos)
            else {
                throw RPCError(code: .invalidArgument, message: "expires_at must be within 10 years (leave it unset for no expiry)")
            }
            let date = Date(timeIntervalSince1970: TimeInterval(stamp.seconds))
            guard date > Date() else { throw RPCError(code: .invalidArgument, message: "expires_at must be in the future") }
            expires = date
        }
        // A key that makes keys cannot make one that outlives it.
        if let own = caller.key?.expiresAt, expires.map({ $0 > own }) ?? true {
            throw RPCError(
                code: .invalidArgument,
                message: "expires_at is required and must not be later than the expiry of the API key making it")
        }
        let certificate = request.clientCertCn.trimmingCharacters(in: .whitespaces)
        guard certificate.utf8.count <= 256, !certificate.unicodeScalars.contains("\0") else {
            throw RPCError(code: .invalidArgument, message: "client_cert_cn must be at most 256 bytes, without NUL")
        }
        // Binding a certificate name needs the certificate: the call must come
        // over mutual TLS with that very name (else anyone could claim another
        // tenant's workers' names).
        if !certificate.isEmpty, peerIdentity != certificate {
            throw RPCError(
                code: .permissionDenied,
                message: "client_cert_cn must be the CN of the client certificate this call is made with (mutual TLS)")
        }
        if !certificate.isEmpty, index.certificateInUse(certificate) {
            throw RPCError(code: .alreadyExists, message: "another API key is bound to client certificate \"\(certificate)\"")
        }
        let live = try await deps.credentials.apiKeys(userId: caller.userId).filter { $0.revokedAt == nil }
        guard live.count < Self.maxKeysPerUser else {
            throw RPCError(
                code: .resourceExhausted, message: "you hold \(Self.maxKeysPerUser) API keys already; revoke one first")
        }
        let secret = ApiKeyIndex.newSecret()
        let now = Date.nowMillis
        let record = ApiKeyRecord(
            id: IDGenerator.make(IDGenerator.apiKey, now: now), userId: caller.userId, name: name,
            prefix: String(secret.prefix(ApiKeyIndex.prefixLength)), secretHash: ApiKeyIndex.hash(secret),
            scopes: scopes.map(\.rawValue), workflowIds: Array(Set(request.workflowIds)).sorted(),
            queues: Array(Set(request.queues)).sorted(), orgId: orgId, clientCertCn: certificate, expiresAt: expires,
            createdAt: now)
        try await deps.credentials.createApiKey(record)
        index.add(record)
        caller.audit?.note(resource: ("api_key", record.id))
        var response = Weft_V1_CreateApiKeyResponse()
        response.apiKey = Self.proto(record)
        response.secret = secret
        return response
    }

    static func proto(_ record: ApiKeyRecord) -> Weft_V1_ApiKey {
        var key = Weft_V1_ApiKey()
        key.id = record.id
        key.name = record.name
        key.prefix = record.prefix
        key.scopes = record.scopes
        key.workflowIds = record.workflowIds
        key.queues = record.queues
        key.orgID = record.orgId
        key.clientCertCn = record.clientCertCn
        if let date = record.expiresAt { key.expiresAt = ProtoMapping.timestamp(date) }
        key.createdAt = ProtoMapping.timestamp(record.createdAt)
        if let date = record.lastUsedAt { key.lastUsedAt = ProtoMapping.timestamp(date) }
        if let date = record.revokedAt { key.revokedAt = ProtoMapping.timestamp(date) }
        return key
    }
}
