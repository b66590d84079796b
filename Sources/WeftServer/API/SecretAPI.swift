import Foundation
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.SecretService: write-only organization secrets. Admins create,
/// update and delete; members list names. No call returns a value.
struct SecretAPI: RPCService {
    static let name = "weft.v1.SecretService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateSecret", rest: [.post("/orgs/{orgId}/secrets", status: 201)]) {
                (request: Weft_V1_CreateSecretRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                context.audit?.note(org: org.id, resource: ("secret", request.name))
                try Self.check(name: request.name, value: request.value)
                let record = try sealed(org.id, request.name, request.value, caller)
                do {
                    try await deps.vault.store.createSecret(record)
                } catch StoreError.alreadyExists {
                    throw RPCError(code: .alreadyExists, message: "organization \(org.id) has a secret \(request.name); update it instead")
                }
                return Self.secret(record)
            },
            .unary(service: Self.name, method: "ListSecrets", rest: [.get("/orgs/{orgId}/secrets")]) {
                (request: Weft_V1_ListSecretsRequest, context) in
                let (org, _) = try await deps.organization(request.orgID, caller: try Caller(context), needs: .member)
                var response = Weft_V1_ListSecretsResponse()
                response.secrets = try await deps.vault.store.secrets(orgId: org.id, names: nil).map(Self.secret)
                return response
            },
            .unary(service: Self.name, method: "UpdateSecret", rest: [.put("/orgs/{orgId}/secrets/{name}")]) {
                (request: Weft_V1_UpdateSecretRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                context.audit?.note(org: org.id, resource: ("secret", request.name))
                try Self.check(name: request.name, value: request.value)
                do {
                    return Self.secret(try await deps.vault.store.updateSecret(try sealed(org.id, request.name, request.value, caller)))
                } catch StoreError.notFound {
                    throw RPCError(code: .notFound, message: "organization \(org.id) has no secret \(request.name)")
                }
            },
            .unary(service: Self.name, method: "DeleteSecret", rest: [.delete("/orgs/{orgId}/secrets/{name}")]) {
                (request: Weft_V1_DeleteSecretRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organization(request.orgID, caller: caller, needs: .admin)
                context.audit?.note(org: org.id, resource: ("secret", request.name))
                do {
                    try await deps.vault.store.deleteSecret(orgId: org.id, name: request.name)
                } catch StoreError.notFound {
                    throw RPCError(code: .notFound, message: "organization \(org.id) has no secret \(request.name)")
                }
                return Weft_V1_DeleteSecretResponse()
            },
        ]
    }

    private func sealed(_ orgId: String, _ name: String, _ value: String, _ caller: Caller) throws -> SecretRecord {
        do {
            return try deps.vault.seal(orgId: orgId, name: name, value: value, actor: caller.userId, now: .nowMillis)
        } catch let error as SecretError {
            throw RPCError(code: .failedPrecondition, message: error.description)
        }
    }

    static func check(name: String, value: String) throws {
        guard !name.isEmpty else { throw APIError.required("name") }
        guard SecretNames.isValid(name) else {
            throw RPCError(
                code: .invalidArgument,
                message: "secret name \"\(name)\" must be letters, digits and '_', starting with a letter, at most 64 characters")
        }
        guard !value.isEmpty else { throw APIError.required("value") }
        guard value.utf8.count <= SecretVault.maxValueBytes else {
            throw RPCError(code: .invalidArgument, message: "value is larger than \(SecretVault.maxValueBytes) bytes")
        }
        // Shorter values would be replaced wherever they happen to appear.
        guard value.count >= 4 else {
            throw RPCError(code: .invalidArgument, message: "value must be at least 4 characters (it is redacted wherever it appears)")
        }
    }

    static func secret(_ record: SecretRecord) -> Weft_V1_Secret {
        var secret = Weft_V1_Secret()
        secret.orgID = record.orgId
        secret.name = record.name
        secret.version = Int32(clamping: record.version)
        secret.keyID = record.keyId
        secret.createdAt = ProtoMapping.timestamp(record.createdAt)
        secret.updatedAt = ProtoMapping.timestamp(record.updatedAt)
        secret.updatedBy = record.updatedBy
        return secret
    }
}
