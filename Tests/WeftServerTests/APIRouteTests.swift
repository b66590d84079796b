import Logging
import Foundation
import Testing
import WeftEngine
import WeftObservability
import WeftRPC
import WeftStore

@testable import WeftServer

@Suite("API routes")
struct APIRouteTests {
    func services() throws -> [any RPCService] {
        let store = MemoryStore()
        let metrics = WeftMetrics()
        let engine = Engine(workflows: store, executions: store, queue: store, logs: store)
        let deps = APIDependencies(
            users: store, workflows: store, logs: store, executions: store,
            engine: engine,
            auth: Authenticator(
                signer: TokenSigner(keyring: SigningKeyring(pinned: Array(repeating: 1, count: 32)), lifetime: 60),
                sessions: SessionBook(accessLifetime: 60), keys: ApiKeyIndex(), metrics: metrics, secureCookies: false),
            passwords: PasswordHasher(logN: 10), credentials: store,
            hashing: PasswordHashPool(threads: 1, queueLimit: 1, metrics: metrics),
            logins: LoginLimiter(settings: .init(), metrics: metrics), refreshLifetime: 600, metrics: metrics, orgs: store,
            quotas: QuotaBook(plans: PlanBook(), orgs: store, metrics: metrics), tenantSlots: 64,
            vault: SecretVault(store: store, sealer: nil, audit: AuditLog(store: store, logger: Logger(label: "test"))),
            audit: AuditLog(store: store, logger: Logger(label: "test")), streams: StreamLimiter(perUser: 4),
            schedules: store,
            scheduler: Scheduler(schedules: store, workflows: store, executions: store, queue: store, engine: engine),
            schedulerMetrics: SchedulerMetrics(metrics: metrics), triggers: TriggerBook(store: store, logger: Logger(label: "test")),
            notifications: NotificationServices.inMemory(store: store, metrics: metrics), analytics: store,
            analyticsMetrics: AnalyticsMetrics(metrics: metrics))
        return WeftApplication.apiServices(deps, apiKeys: ApiKeyIndex())
    }

    @Test("every weft.v1 RPC has a REST route and every REST route runs an RPC")
    func everyRPCHasARoute() throws {
        let services = try services()
        var http = HTTPRouter()
        var methods: Set<String> = []
        for service in services {
            http.register(service)
            for handler in service.handlers {
                #expect(handler.descriptor.service.hasPrefix("weft.v1."))
                #expect(!handler.restRoutes.isEmpty, "\(handler.descriptor.path) has no REST route")
                methods.insert(handler.descriptor.path)
            }
        }
        // 65 methods before Step 7, plus users' Refresh, Logout, ChangePassword and
        // the ApiKeyService's three; Step 8's nine more schedule methods, five
        // of TriggerService and EventService's PublishEvent; Step 9's
        // ListDeliveries, GetIntegration, TestIntegration and the seven of
        // NotificationService.
        #expect(methods.count == 104)
        #expect(Set(http.restOperations.map(\.descriptor.path)) == methods)
        // Route templates are unique per HTTP method.
        let keys = http.restOperations.map { "\($0.route.method) \($0.route.template)" }
        #expect(Set(keys).count == keys.count)
        // The seed's paths are all there.
        for seed in [
            "POST /users/register", "POST /users/login", "POST /workflows", "GET /workflows", "GET /workflows/{workflowId}",
            "PUT /workflows/{workflowId}", "DELETE /workflows/{workflowId}", "POST /tasks", "GET /workflows/{workflowId}/tasks",
            "GET /tasks/{taskId}", "PUT /tasks/{taskId}", "DELETE /tasks/{taskId}", "POST /workflows/{workflowId}/execute",
            "GET /workflows/{workflowId}/executions/{executionId}",
            "GET /workflows/{workflowId}/executions/{executionId}/logs", "GET /workflows/search",
            "POST /workflows/{workflowId}/versions", "GET /workflows/{workflowId}/versions",
            "GET /workflows/{workflowId}/versions/{versionId}", "PUT /workflows/{workflowId}/versions/{versionId}/rollback",
            "POST /workflows/{workflowId}/schedules", "GET /workflows/{workflowId}/schedules",
            "DELETE /workflows/{workflowId}/schedules/{scheduleId}", "POST /workflows/{workflowId}/collaborators",
            "GET /workflows/{workflowId}/collaborators", "PUT /workflows/{workflowId}/collaborators/{userId}",
            "DELETE /workflows/{workflowId}/collaborators/{userId}", "POST /workflows/{workflowId}/subscriptions",
            "GET /workflows/{workflowId}/subscriptions", "DELETE /workflows/{workflowId}/subscriptions/{subscriptionId}",
            "POST /workflows/{workflowId}/integrations", "GET /workflows/{workflowId}/integrations",
            "PUT /workflows/{workflowId}/integrations/{integrationId}",
            "DELETE /workflows/{workflowId}/integrations/{integrationId}", "GET /workflows/{workflowId}/stats",
            "GET /analytics/workflow-executions",
        ] {
            #expect(keys.contains(seed), "seed route \(seed) is missing")
        }
        // The literal route wins over the template.
        if case .found(let route, _, _) = http.match(method: "GET", path: "/workflows/search") {
            #expect(route == "/workflows/search")
        } else {
            Issue.record("GET /workflows/search did not match")
        }
        if case .methodNotAllowed(let allowed) = http.match(method: "PUT", path: "/workflows/search") {
            #expect(allowed == ["GET"])
        } else {
            Issue.record("PUT /workflows/search must be 405")
        }
    }

    @Test("the OpenAPI document names every route with its RPC and schemas")
    func openAPI() throws {
        let services = try services()
        var http = HTTPRouter()
        for service in services { http.register(service) }
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.build(operations: http.restOperations))) as? [String: Any])
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        var count = 0
        for operation in http.restOperations {
            let op = try #require(paths[operation.route.template]?[operation.route.method.lowercased()] as? [String: Any])
            #expect(op["x-grpc-method"] as? String == operation.descriptor.path)
            #expect(schemas[operation.requestMessageName] != nil)
            #expect(schemas[operation.responseMessageName] != nil)
            count += 1
        }
        #expect(count == paths.values.reduce(0) { $0 + $1.count })
    }
}

extension NotificationServices {
    /// For route and shape tests: everything on one memory store, nothing
    /// delivered.
    static func inMemory(store: MemoryStore, metrics: WeftMetrics) -> NotificationServices {
        let index = NotificationIndex()
        let templates = TemplateCache(store: store)
        let dispatcher = NotificationDispatcher(
            store: store, executions: store, workflows: store,
            vault: SecretVault(store: store, sealer: nil, audit: AuditLog(store: store, logger: Logger(label: "test"))),
            index: index, settings: .init(), egress: EgressGuard(), feed: InAppFeed(),
            metrics: NotificationMetrics(metrics: metrics), templates: templates, logger: Logger(label: "test"))
        return NotificationServices(store: store, index: index, dispatcher: dispatcher, feed: dispatcher.feed, templates: templates)
    }
}
