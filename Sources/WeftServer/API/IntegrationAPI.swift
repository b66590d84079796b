import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.IntegrationService: typed settings of third-party services,
/// their secrets sealed and never returned, used by subscriptions and
/// `http` tasks by id.
struct IntegrationAPI: RPCService {
    static let name = "weft.v1.IntegrationService"
    static let collection = "/workflows/{workflowId}/integrations"
    static let maxPerWorkflow = 50
    static let maxNameBytes = 200
    let deps: APIDependencies
    var notifications: NotificationServices { deps.notifications }

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateIntegration", rest: [.post(Self.collection, status: 201)]) {
                (request: Weft_V1_CreateIntegrationRequest, context) in try await create(request, context)
            },
            .unary(service: Self.name, method: "ListIntegrations", rest: [.get(Self.collection)]) {
                (request: Weft_V1_ListIntegrationsRequest, context) in
                let caller = try Caller(context)
                _ = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                let size = try Paging.size(request.pageSize)
                let fingerprint = Paging.query(request, caller: caller.userId) {
                    $0.pageToken = ""
                    $0.pageSize = 0
                }
                let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
                let page = try await notifications.store.integrations(workflowId: request.workflowID, limit: size, cursor: cursor)
                var response = Weft_V1_ListIntegrationsResponse()
                response.integrations = page.items.map(Self.proto)
                response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
                return response
            },
            .unary(service: Self.name, method: "GetIntegration", rest: [.get(Self.collection + "/{integrationId}")]) {
                (request: Weft_V1_GetIntegrationRequest, context) in
                let caller = try Caller(context)
                return Self.proto(try await integration(request.workflowID, request.integrationID, caller: caller, needs: .viewer))
            },
            .unary(service: Self.name, method: "UpdateIntegration", rest: [.put(Self.collection + "/{integrationId}")]) {
                (request: Weft_V1_UpdateIntegrationRequest, context) in try await update(request, context)
            },
            .unary(service: Self.name, method: "DeleteIntegration", rest: [.delete(Self.collection + "/{integrationId}")]) {
                (request: Weft_V1_DeleteIntegrationRequest, context) -> Weft_V1_DeleteIntegrationResponse in
                let caller = try Caller(context)
                let integration = try await integration(request.workflowID, request.integrationID, caller: caller, needs: .editor)
                let users = try await users(of: integration)
                guard users.isEmpty else {
                    throw RPCError(
                        code: .failedPrecondition,
                        message: "integration \(integration.id) is in use by \(users.joined(separator: ", ")); change or delete them first")
                }
                // Deleted only while no subscription uses it (one statement:
                // a subscription made meanwhile keeps it).
                guard try await notifications.store.deleteIntegration(id: integration.id) else {
                    let now = try await self.users(of: integration)
                    throw RPCError(
                        code: .failedPrecondition,
                        message: "integration \(integration.id) is in use by \(now.joined(separator: ", ")); change or delete them first")
                }
                notifications.dispatcher.forgetIntegration(integration.id)
                return Weft_V1_DeleteIntegrationResponse()
            },
            .unary(
                service: Self.name, method: "TestIntegration", rest: [.post(Self.collection + "/{integrationId}/test")]
            ) { (request: Weft_V1_TestIntegrationRequest, context) in try await test(request, context) },
        ]
    }

    static func notFound(_ id: String) -> RPCError { RPCError(code: .notFound, message: "integration \(id) not found") }

    func integration(_ workflowId: String, _ id: String, caller: Caller, needs: WorkflowRole) async throws -> IntegrationRecord {
        guard !id.isEmpty else { throw APIError.required("integration_id") }
        _ = try await deps.workflow(workflowId, caller: caller, needs: needs)
        guard let integration = try await notifications.store.integration(id: id), integration.workflowId == workflowId else {
            throw Self.notFound(id)
        }
        caller.audit?.note(resource: ("integration", id))
        return integration
    }

    /// Who uses an integration: subscriptions, and tasks of the workflow's
    /// current definition whose config names it.
    func users(of integration: IntegrationRecord) async throws -> [String] {
        var users = try await notifications.store.subscriptions(integrationId: integration.id).map { "subscription \($0.id)" }
        if let workflow = try await deps.workflows.workflow(id: integration.workflowId, includeDeleted: false) {
            users += workflow.tasks.filter { $0.config["integration"]?.stringValue == integration.id }.map { "task \($0.key)" }
        }
        return users
    }

    static func kind(_ type: Weft_V1_Integration.TypeEnum) throws -> IntegrationKind {
        switch type {
        case .slack: return .slack
        case .webhook: return .webhook
        case .email: return .email
        case .httpAuth: return .httpAuth
        case .unspecified: throw RPCError(code: .invalidArgument, message: "type is required: slack, webhook, email (smtp) or http_auth")
        case .UNRECOGNIZED(let value):
            throw RPCError(code: .invalidArgument, message: "type \(value) is not slack, webhook, email (smtp) or http_auth")
        }
    }

    static func checkName(_ name: String) throws {
        guard name.utf8.count <= maxNameBytes, !name.contains(where: { $0.isNewline }) else {
            throw RPCError(code: .invalidArgument, message: "name must be one line of at most \(maxNameBytes) bytes")
        }
    }

    func create(_ request: Weft_V1_CreateIntegrationRequest, _ context: ServerContext) async throws -> Weft_V1_Integration {
        let caller = try Caller(context)
        let kind = try Self.kind(request.type)
        try Self.checkName(request.name)
        let config = request.hasConfig ? try ProtoMapping.jsonValue(request.config, field: "config") : .emptyObject
        let settings = try IntegrationSettings.validate(kind, webhookURL: request.webhookURL, config: config)
        let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
        let existing = try await notifications.store.integrations(workflowId: workflow.id, limit: Self.maxPerWorkflow, cursor: nil)
        guard existing.items.count < Self.maxPerWorkflow else {
            throw RPCError(
                code: .resourceExhausted,
                message: "workflow \(workflow.id) has \(Self.maxPerWorkflow) integrations, the most a workflow may have")
        }
        let now = Date.nowMillis
        let id = IDGenerator.make(IDGenerator.integration, now: now)
        let sealed: String?
        do {
            sealed = try deps.vault.sealIntegrationSecrets(settings.secrets, orgId: workflow.orgId, integrationId: id)
        } catch let error as SecretError {
            throw RPCError(code: .failedPrecondition, message: "integrations hold secrets: \(error.description)")
        }
        let record = IntegrationRecord(
            id: id, workflowId: workflow.id, orgId: workflow.orgId, type: kind.rawValue,
            name: request.name.isEmpty ? kind.rawValue : request.name, config: .object(settings.config), sealed: sealed,
            secretFields: settings.secrets.keys.sorted(), displayURL: settings.displayURL, createdBy: caller.userId,
            createdAt: now, updatedAt: now)
        try await notifications.store.createIntegration(record)
        caller.audit?.note(resource: ("integration", id))
        return Self.proto(record)
    }

    func update(_ request: Weft_V1_UpdateIntegrationRequest, _ context: ServerContext) async throws -> Weft_V1_Integration {
        let caller = try Caller(context)
        var record = try await integration(request.workflowID, request.integrationID, caller: caller, needs: .editor)
        guard let kind = IntegrationKind(rawValue: record.type) else {
            throw RPCError(code: .failedPrecondition, message: "integration \(record.id) has an unknown type \(record.type)")
        }
        if request.type != .unspecified, try Self.kind(request.type) != kind {
            throw RPCError(
                code: .invalidArgument, message: "the type of an integration cannot change (it is \(kind.rawValue)); create another")
        }
        try Self.checkName(request.name)
        let stored: [String: String]
        do {
            stored = try deps.vault.openIntegrationSecrets(record.sealed, orgId: record.orgId, integrationId: record.id)
        } catch let error as SecretError {
            throw RPCError(code: .failedPrecondition, message: "integrations hold secrets: \(error.description)")
        }
        let config = request.hasConfig ? try ProtoMapping.jsonValue(request.config, field: "config") : .emptyObject
        let settings = try IntegrationSettings.validate(kind, webhookURL: request.webhookURL, config: config, keeping: stored)
        do {
            record.sealed = try deps.vault.sealIntegrationSecrets(settings.secrets, orgId: record.orgId, integrationId: record.id)
        } catch let error as SecretError {
            throw RPCError(code: .failedPrecondition, message: "integrations hold secrets: \(error.description)")
        }
        if !request.name.isEmpty { record.name = request.name }
        record.config = .object(settings.config)
        record.secretFields = settings.secrets.keys.sorted()
        record.displayURL = settings.displayURL
        record.updatedAt = Date.nowMillis
        try await notifications.store.replaceIntegration(record)
        notifications.dispatcher.forgetIntegration(record.id)
        return Self.proto(record)
    }

    /// Sends a test message the way a subscription would, and reports how
    /// it went (nothing is written to the outbox).
    func test(_ request: Weft_V1_TestIntegrationRequest, _ context: ServerContext) async throws -> Weft_V1_TestIntegrationResponse {
        let caller = try Caller(context)
        let integration = try await integration(request.workflowID, request.integrationID, caller: caller, needs: .editor)
        guard let kind = IntegrationKind(rawValue: integration.type) else {
            throw RPCError(code: .failedPrecondition, message: "integration \(integration.id) has an unknown type")
        }
        var response = Weft_V1_TestIntegrationResponse()
        guard let channel = kind.channel else {
            // Credentials are checked by shape: calling an arbitrary API
            // with them proves nothing about the task that will.
            do {
                let secrets = try deps.vault.openIntegrationSecrets(
                    integration.sealed, orgId: integration.orgId, integrationId: integration.id)
                let headers = try HTTPAuthHeaders.headers(config: integration.config, secrets: secrets)
                response.ok = true
                response.detail = "credentials complete: \(headers.map(\.0).joined(separator: ", ")) header set on http tasks that use it"
            } catch let broken as NotificationDispatcher.BrokenTarget {
                response.detail = broken.message
            } catch let sealed as SecretError {
                response.detail = sealed.description
            }
            return response
        }
        if channel == .email, !EmailAddress.isValid(request.destination) {
            throw RPCError(code: .invalidArgument, message: "destination (the address to send the test e-mail to) is required")
        }
        let workflow = try await deps.workflow(request.workflowID, caller: caller, needs: .editor).0
        let subscription = SubscriptionRecord(
            id: "test", workflowId: workflow.id, orgId: workflow.orgId, userId: caller.userId, eventType: "custom",
            events: [.test], channel: channel, destination: request.destination, integrationId: integration.id,
            createdAt: Date.nowMillis)
        let now = Date.nowMillis
        var facts = EventFacts(
            event: .test, workflowId: workflow.id, workflowName: workflow.name, orgId: workflow.orgId, executionId: "", at: now,
            status: "test", trigger: "test")
        facts.reason = "test"
        let entry = OutboxEntry(
            deliveryId: "dlv_test_" + Hex.encode(Crypto.randomBytes(8)), subscriptionId: "test", workflowId: workflow.id,
            orgId: workflow.orgId, executionId: "", event: .test, channel: channel, payload: facts.payload, createdAt: now,
            nextAttemptAt: now)
        let started = Date()
        let dispatcher = notifications.dispatcher
        do {
            let target = try await dispatcher.target(subscription, channel: channel)
            switch try await dispatcher.send(entry, target: target, attempt: 1) {
            case .delivered(let status, let detail):
                response.ok = true
                response.statusCode = Int32(status)
                response.detail = detail
            case .failed(let status, let detail, _):
                response.statusCode = Int32(status)
                response.detail = detail
            case .refused(let detail), .skipped(_, let detail):
                response.detail = detail
            }
        } catch let denied as EgressGuard.Denied {
            response.detail = "the egress guard refused the destination: \(denied.message)"
        } catch let broken as NotificationDispatcher.BrokenTarget {
            response.detail = broken.message
        } catch {
            response.detail = "\(error)"
        }
        response.latencyMs = Int64(Date().timeIntervalSince(started) * 1000)
        return response
    }

    static func proto(_ record: IntegrationRecord) -> Weft_V1_Integration {
        var proto = Weft_V1_Integration()
        proto.id = record.id
        proto.workflowID = record.workflowId
        switch IntegrationKind(rawValue: record.type) {
        case .slack?: proto.type = .slack
        case .webhook?: proto.type = .webhook
        case .email?: proto.type = .email
        case .httpAuth?: proto.type = .httpAuth
        case nil: proto.type = .unspecified
        }
        proto.name = record.name
        if record.secretFields.contains("webhookUrl") { proto.webhookURL = record.displayURL }
        proto.config = ProtoMapping.protoStruct(record.config)
        proto.secretFields = record.secretFields
        proto.createdBy = record.createdBy
        proto.createdAt = ProtoMapping.timestamp(record.createdAt)
        proto.updatedAt = ProtoMapping.timestamp(record.updatedAt)
        return proto
    }
}

/// The headers an http_auth integration adds to an `http` task's request.
enum HTTPAuthHeaders {
    static func headers(config: JSONValue, secrets: [String: String]) throws -> [(String, String)] {
        switch config["scheme"]?.stringValue {
        case "bearer":
            guard let token = secrets["token"] else { throw NotificationDispatcher.BrokenTarget(message: "the bearer token is missing") }
            return [("Authorization", "Bearer " + token)]
        case "basic":
            guard let user = config["username"]?.stringValue, let password = secrets["password"] else {
                throw NotificationDispatcher.BrokenTarget(message: "the basic credentials are incomplete")
            }
            return [("Authorization", "Basic " + Data((user + ":" + password).utf8).base64EncodedString())]
        case "api_key":
            guard let header = config["header"]?.stringValue, let value = secrets["value"] else {
                throw NotificationDispatcher.BrokenTarget(message: "the API key header or value is missing")
            }
            return [(header, value)]
        default:
            throw NotificationDispatcher.BrokenTarget(message: "the integration has no known auth scheme")
        }
    }
}
