import Foundation
public import ServiceLifecycle
public import Logging
public import WeftEngine
public import WeftObservability
import WeftProto
public import WeftRPC
public import WeftStore

/// The application without its sockets: the API services and their REST
/// routes, health, reflection, metrics and the OpenAPI document, the
/// interceptor chain, and the `ServerEnvironment` every transport serves,
/// on any stores and engine. `WeftServer` serves it over the network on
/// SQLite; tests call it in process (`InProcessTransport`) on the memory store.
public struct WeftApplication: Sendable {
    public let environment: ServerEnvironment
    /// Background work the application needs while it serves (the tenancy
    /// metrics sampler), for the server's service group.
    public let services: [any Service]
    public let health: HealthStatusStore
    public let engine: Engine

    public init(
        config: WeftServerConfig, users: any UserStore, workflows: any WorkflowStore, executions: any ExecutionStore,
        organizations: any OrganizationStore, logs: any LogStore, engine: Engine, vault: SecretVault, authKey: [UInt8], metrics: WeftMetrics, logger: Logger,
        health: HealthStatusStore = HealthStatusStore()
    ) throws {
        self.engine = engine
        self.health = health
        let quotas = QuotaBook(plans: config.tenancy.plans, orgs: organizations, metrics: metrics)
        services = [TenancySampler(engine: engine, quotas: quotas, metrics: metrics)]
        let deps = APIDependencies(
            users: users,
            workflows: config.workflowCacheSize > 0 ? CachedWorkflowStore(workflows, capacity: config.workflowCacheSize) : workflows,
            logs: logs, executions: executions, engine: engine,
            auth: Authenticator(
                signer: TokenSigner(key: authKey, lifetime: TimeInterval(config.auth.tokenLifetime.components.seconds)),
                metrics: metrics),
            passwords: PasswordHasher(logN: config.auth.scryptLogN), metrics: metrics, orgs: organizations, quotas: quotas,
            tenantSlots: config.tenancy.tenantSlots(of: config.engine.workers), vault: vault, audit: vault.audit,
            streams: StreamLimiter(perUser: config.tenancy.maxStreamsPerUser))

        let rpcMetrics = RPCMetrics(metrics: metrics)
        var router = RPCRouter()
        var http = HTTPRouter()
        router.register(HealthService(store: health), metrics: rpcMetrics)
        if config.enableTestServices {
            router.register(EchoTestService(), metrics: rpcMetrics)
        }
        let types = APIFieldTypes(schemas: APISchemas.components())
        let defaults = JSONDefaults(types: types)
        let explainer = JSONTypeExplainer(types: types)
        for service in Self.apiServices(deps) {
            router.register(service, metrics: rpcMetrics)
            http.register(
                service, shape: defaults.fill, explain: explainer.explain, booleanFields: explainer.booleanFields,
                utcTimestamps: explainer.utcTimestamps)
        }
        // Reflection last: it lists every service registered before it, and itself.
        let reflection = ReflectionService(
            index: try Self.descriptorIndex(),
            services: router.serviceNames + [ReflectionService.v1Name, ReflectionService.v1alphaName])
        router.register(reflection, metrics: rpcMetrics)
        health.set("", .serving)
        for service in router.serviceNames { health.set(service, .serving) }
        let openAPI = OpenAPIDocument.build(operations: http.restOperations)
        http.add("GET", "/openapi.json") { _ in
            HTTPResponse(status: 200, headers: [("content-type", "application/json")], body: openAPI)
        }
        let process = ProcessMetrics(metrics: metrics)
        http.add("GET", "/healthz") { _ in
            let all = health.all
            let serving = all[""] == .serving
            var services: [String: String] = [:]
            for (name, status) in all where !name.isEmpty { services[name] = Self.statusName(status) }
            return .json(serving ? 200 : 503, ["status": Self.statusName(all[""] ?? .unknown), "services": services])
        }
        http.add("GET", "/metrics") { _ in
            process.update()
            return HTTPResponse(
                status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.exposition())
        }
        environment = ServerEnvironment(
            config: config.rpc, router: router, httpRouter: http, metrics: rpcMetrics, logger: logger,
            interceptors: InterceptorChain([deps.auth, TenantRateLimiter(quotas: quotas), AuditRecorder(log: vault.audit)]))
    }

    /// Every weft.v1 service, in the order clients see them.
    static func apiServices(_ deps: APIDependencies) -> [any RPCService] {
        [UserAPI(deps: deps), WorkflowAPI(deps: deps), TaskAPI(deps: deps), CollaboratorAPI(deps: deps),
         VersionAPI(deps: deps), ExecutionAPI(deps: deps), LogAPI(deps: deps), WorkerAPI(deps: deps),
         OrganizationAPI(deps: deps), SecretAPI(deps: deps), AuditAPI(deps: deps), QueueAccessAPI(deps: deps)]
            + PlannedAPIs(deps: deps).services
    }

    static func descriptorIndex() throws -> DescriptorIndex {
        do {
            return try DescriptorIndex.embedded()
        } catch {
            throw WeftStartupError("cannot read the embedded descriptor set for reflection: \(error)")
        }
    }

    static func statusName(_ status: HealthStatusStore.Status) -> String {
        switch status {
        case .serving: return "SERVING"
        case .notServing: return "NOT_SERVING"
        case .serviceUnknown: return "SERVICE_UNKNOWN"
        default: return "UNKNOWN"
        }
    }
}
