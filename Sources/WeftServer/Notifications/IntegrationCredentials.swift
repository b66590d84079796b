import Foundation
import WeftEngine
import WeftStore

/// `http` tasks' credentials by reference: the headers of an http_auth
/// integration of the task's own workflow.
struct IntegrationCredentials: HTTPCredentialSource {
    let store: any NotificationStore
    let executions: any ExecutionStore
    let vault: SecretVault

    struct Refused: Error, CustomStringConvertible {
        let description: String
    }

    func credentials(integrationId: String, executionId: String) async throws -> HTTPCredentials {
        guard let execution = try await executions.execution(id: executionId),
            let integration = try await store.integration(id: integrationId), integration.workflowId == execution.workflowId
        else { throw Refused(description: "no such integration on this workflow") }
        guard integration.type == IntegrationKind.httpAuth.rawValue else {
            throw Refused(description: "it is a \(integration.type) integration, not http_auth")
        }
        let secrets = try vault.openIntegrationSecrets(integration.sealed, orgId: integration.orgId, integrationId: integration.id)
        vault.audit.append(AuditEvent(
            at: Date(), actorId: "system", orgId: integration.orgId, action: "integration.use", resourceType: "execution",
            resourceId: executionId, detail: .object(["integration_id": .string(integration.id)])))
        do {
            let headers = try HTTPAuthHeaders.headers(config: integration.config, secrets: secrets)
            for (name, _) in headers where EgressPolicy.forbiddenHeaders.contains(name.lowercased()) {
                throw Refused(description: "header \(name) cannot be set")
            }
            return HTTPCredentials(headers: headers, secrets: Array(secrets.values))
        } catch let broken as NotificationDispatcher.BrokenTarget {
            throw Refused(description: broken.message)
        }
    }
}
