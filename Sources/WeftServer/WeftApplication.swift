import Foundation
public import ServiceLifecycle
public import Logging
public import WeftEngine
public import WeftObservability
import SwiftProtobuf
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
    /// The admin listener's routes (metrics, health, and reflection if the
    /// operator put it there), when `--admin-listen` is set.
    public let adminEnvironment: ServerEnvironment?
    /// What SIGHUP re-reads: the token signing keys.
    public let keyring: SigningKeyring
    let sessions: SessionBook
    let apiKeys: ApiKeyIndex
    let credentials: any CredentialStore
    /// Fires schedule ticks and runs backfills (one of `services`).
    public let scheduler: Scheduler
    /// Delivers notifications from the outbox (one of `services`).
    let dispatcher: NotificationDispatcher

    public init(
        config: WeftServerConfig, users: any UserStore, workflows: any WorkflowStore, executions: any ExecutionStore,
        organizations: any OrganizationStore, credentials: any CredentialStore, logs: any LogStore,
        schedules: any ScheduleStore, notifications: any NotificationStore, notificationIndex: NotificationIndex,
        analytics: any AnalyticsStore, engine: Engine, vault: SecretVault, keyring: SigningKeyring, metrics: WeftMetrics, logger: Logger,
        egress: EgressGuard = EgressGuard(), health: HealthStatusStore = HealthStatusStore()
    ) throws {
        self.engine = engine
        self.health = health
        self.keyring = keyring
        self.credentials = credentials
        let quotas = QuotaBook(plans: config.tenancy.plans, orgs: organizations, metrics: metrics)
        let accessLifetime = TimeInterval(config.auth.tokenLifetime.components.seconds)
        let sessions = SessionBook(accessLifetime: accessLifetime)
        let apiKeys = ApiKeyIndex()
        self.sessions = sessions
        self.apiKeys = apiKeys
        // Definitions are read on every tick and call: through the cache.
        let workflows = config.workflowCacheSize > 0 ? CachedWorkflowStore(workflows, capacity: config.workflowCacheSize) : workflows
        let schedulerMetrics = SchedulerMetrics(metrics: metrics)
        let scheduler = Scheduler(
            schedules: schedules, workflows: workflows, executions: executions, queue: engine.queueStore, engine: engine,
            admission: QuotaAdmission(quotas: quotas), metrics: schedulerMetrics, logger: logger)
        self.scheduler = scheduler
        let triggers = TriggerBook(store: schedules, logger: logger)
        var delivery = NotificationDispatcher.Settings()
        delivery.publicURL = config.notifications.publicURL
        delivery.smtp = config.notifications.smtp
        delivery.policy.maxAttempts = config.notifications.maxAttempts
        // Deliveries and in-app notifications live as long as execution logs.
        delivery.retention = TimeInterval(config.store.logRetention.components.seconds)
        delivery.policy.ratePerSecond = Double(config.notifications.ratePerSecond)
        delivery.policy.burst = Double(config.notifications.burst)
        delivery.policy.concurrency = config.notifications.concurrency
        let templates = TemplateCache(store: notifications)
        let dispatcher = NotificationDispatcher(
            store: notifications, executions: executions, workflows: workflows, vault: vault, index: notificationIndex,
            settings: delivery, egress: egress, feed: InAppFeed(), metrics: NotificationMetrics(metrics: metrics),
            templates: templates, logger: logger)
        self.dispatcher = dispatcher
        let notificationServices = NotificationServices(
            store: notifications, index: notificationIndex, dispatcher: dispatcher, feed: dispatcher.feed,
            templates: templates)
        let analyticsMetrics = AnalyticsMetrics(metrics: metrics)
        services = [
            TenancySampler(engine: engine, quotas: quotas, metrics: metrics),
            ApiKeyUsageWriter(index: apiKeys, store: credentials, logger: logger),
            scheduler, triggers, dispatcher,
            BudgetMonitor(
                analytics: analytics, workflows: workflows, orgs: organizations, notifications: notificationServices,
                metrics: analyticsMetrics, interval: config.analytics.budgetInterval, logger: logger),
        ]
        let deps = APIDependencies(
            users: users,
            workflows: workflows,
            logs: logs, executions: executions, engine: engine,
            auth: Authenticator(
                signer: TokenSigner(keyring: keyring, lifetime: accessLifetime), sessions: sessions, keys: apiKeys,
                metrics: metrics,
                // TLS here, or ended at a proxy in front (the public URL says https).
                secureCookies: config.listeners.tls != nil || config.notifications.publicURL.lowercased().hasPrefix("https://")),
            passwords: PasswordHasher(logN: config.auth.scryptLogN), credentials: credentials,
            hashing: PasswordHashPool(threads: config.auth.hashThreads, queueLimit: config.auth.hashQueue, metrics: metrics),
            logins: LoginLimiter(
                settings: .init(perAccount: config.auth.loginFailuresPerAccount, perAddress: config.auth.loginFailuresPerAddress),
                metrics: metrics),
            refreshLifetime: TimeInterval(config.auth.refreshLifetime.components.seconds),
            metrics: metrics, orgs: organizations, quotas: quotas,
            tenantSlots: config.tenancy.tenantSlots(of: config.engine.workers), vault: vault, audit: vault.audit,
            streams: StreamLimiter(perUser: config.tenancy.maxStreamsPerUser), schedules: schedules, scheduler: scheduler,
            schedulerMetrics: schedulerMetrics, triggers: triggers,
            notifications: notificationServices, analytics: analytics, analyticsMetrics: analyticsMetrics)

        let rpcMetrics = RPCMetrics(metrics: metrics)
        var router = RPCRouter()
        var http = HTTPRouter()
        router.register(HealthService(store: health), metrics: rpcMetrics)
        if config.enableTestServices {
            router.register(EchoTestService(), metrics: rpcMetrics)
            router.register(InteropTestService(), metrics: rpcMetrics)
        }
        let types = APIFieldTypes(schemas: APISchemas.components())
        let defaults = JSONDefaults(types: types)
        let explainer = JSONTypeExplainer(types: types)
        let descriptors = try Self.descriptorFiles()
        // REST responses: written from the messages in one pass, defaults included.
        let encoder = ProtoJSONEncoder(files: descriptors, defaults: defaults.texts, fallbackShape: defaults.fill)
        for service in Self.apiServices(deps, apiKeys: apiKeys) {
            router.register(service, metrics: rpcMetrics)
            http.register(
                service, explain: explainer.explain, booleanFields: explainer.booleanFields,
                utcTimestamps: explainer.utcTimestamps, encoder: encoder)
        }
        // Reflection last: it lists every service registered before it, and itself.
        let listeners = config.listeners
        let reflection = ReflectionService(
            index: try DescriptorIndex(files: descriptors),
            services: router.serviceNames + [ReflectionService.v1Name, ReflectionService.v1alphaName])
        if listeners.reflection == .main { router.register(reflection, metrics: rpcMetrics) }
        health.set("", .serving)
        for service in router.serviceNames { health.set(service, .serving) }
        let openAPI = OpenAPIDocument.build(operations: http.restOperations)
        http.add("GET", "/openapi.json") { _ in
            HTTPResponse(status: 200, headers: [("content-type", "application/json")], body: openAPI)
        }
        if let assets = try Self.webAssets(config.web) {
            http.fallback = { assets.response(for: $0) }
            logger.info("web dashboard: \(assets.count) files from \(assets.directory)")
        } else {
            logger.info("web dashboard: off (no web/ directory found; set --web-dir)")
        }
        let process = ProcessMetrics(metrics: metrics)
        let metricsPage = Self.metricsPage(metrics: metrics, process: process)
        Self.addHealthz(to: &http, health: health)
        // /metrics on the main listener: behind the scrape token when one
        // is set; gone when an admin listener serves it; else open only on
        // a loopback plaintext listener (a development setup).
        if let token = listeners.metricsToken, !token.isEmpty {
            http.add("GET", "/metrics") { request in
                guard ScrapeToken.matches(request.header("authorization"), token: token) else {
                    return HTTPResponse(
                        status: 401, headers: [("content-type", "text/plain; charset=utf-8"), ("www-authenticate", "Bearer")],
                        body: Array("/metrics needs `authorization: Bearer <scrape token>`\n".utf8))
                }
                return metricsPage(request)
            }
        } else if listeners.adminHost == nil {
            if WeftServerConfig.ListenerSettings.isLoopback(config.rpc.host) && listeners.tls == nil {
                http.add("GET", "/metrics", metricsPage)
            } else {
                http.add("GET", "/metrics") { _ in
                    HTTPResponse(
                        status: 401, headers: [("content-type", "text/plain; charset=utf-8"), ("www-authenticate", "Bearer")],
                        body: Array("/metrics here needs --metrics-token (or use --admin-listen); it is open only on a loopback plaintext listener\n".utf8))
                }
            }
        }
        let interceptors = InterceptorChain([
            deps.auth, AdmissionInterceptor(engine: engine), RateLimiter(settings: config.auth.rateLimits, metrics: metrics), TenantRateLimiter(quotas: quotas),
            AuditRecorder(log: vault.audit),
        ])
        environment = ServerEnvironment(
            config: config.rpc, router: router, httpRouter: http, metrics: rpcMetrics, logger: logger,
            interceptors: interceptors)
        if listeners.adminHost != nil {
            var adminRouter = RPCRouter()
            var adminHTTP = HTTPRouter()
            adminRouter.register(HealthService(store: health), metrics: rpcMetrics)
            if listeners.reflection == .admin { adminRouter.register(reflection, metrics: rpcMetrics) }
            adminHTTP.add("GET", "/metrics", metricsPage)
            Self.addHealthz(to: &adminHTTP, health: health)
            var adminConfig = config.rpc
            adminConfig.host = listeners.adminHost ?? "127.0.0.1"
            adminConfig.port = listeners.adminPort
            adminEnvironment = ServerEnvironment(
                config: adminConfig, router: adminRouter, httpRouter: adminHTTP, metrics: rpcMetrics, logger: logger)
        } else {
            adminEnvironment = nil
        }
    }

    /// The dashboard's files: from `--web-dir`, else found beside the
    /// binary; nil when turned off (`none`) or not found.
    static func webAssets(_ settings: WeftServerConfig.WebSettings) throws -> WebAssets? {
        if settings.directory == "none" { return nil }
        guard let directory = settings.directory ?? WebAssets.discover() else { return nil }
        return try WebAssets(directory: directory, traceViewerURL: settings.traceViewerURL)
    }

    /// Loads the sessions' revocations and the API keys into memory (before
    /// serving: calls are checked against them without store reads).
    public func loadCredentials() async throws {
        try await sessions.load(from: credentials)
        try await apiKeys.load(from: credentials)
    }

    /// `/metrics`: OpenMetrics (with exemplars) when the scraper asks for
    /// it, as Prometheus does first; else the text format 0.0.4.
    static func metricsPage(metrics: WeftMetrics, process: ProcessMetrics) -> @Sendable (HTTPRequest) -> HTTPResponse {
        { request in
            process.update()
            if OpenMetricsText.isAccepted(request.header("accept")) {
                return HTTPResponse(
                    status: 200, headers: [("content-type", OpenMetricsText.contentType)],
                    body: metrics.openMetricsExposition())
            }
            return HTTPResponse(
                status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.exposition())
        }
    }

    static func addHealthz(to http: inout HTTPRouter, health: HealthStatusStore) {
        http.add("GET", "/healthz") { _ in
            let all = health.all
            let serving = all[""] == .serving
            var services: [String: String] = [:]
            for (name, status) in all where !name.isEmpty { services[name] = Self.statusName(status) }
            return .json(serving ? 200 : 503, ["status": Self.statusName(all[""] ?? .unknown), "services": services])
        }
    }

    /// Every weft.v1 service, in the order clients see them.
    static func apiServices(_ deps: APIDependencies, apiKeys: ApiKeyIndex) -> [any RPCService] {
        [UserAPI(deps: deps), ApiKeyAPI(deps: deps, index: apiKeys), WorkflowAPI(deps: deps), TaskAPI(deps: deps), CollaboratorAPI(deps: deps),
         VersionAPI(deps: deps), ExecutionAPI(deps: deps), LogAPI(deps: deps), WorkerAPI(deps: deps),
         OrganizationAPI(deps: deps), SecretAPI(deps: deps), AuditAPI(deps: deps), QueueAccessAPI(deps: deps),
         ScheduleAPI(deps: deps), TriggerAPI(deps: deps), EventAPI(deps: deps), SubscriptionAPI(deps: deps),
         IntegrationAPI(deps: deps), NotificationAPI(deps: deps), AnalyticsAPI(deps: deps)]
    }

    /// The files of the embedded descriptor set (read once at start).
    static func descriptorFiles() throws -> [Google_Protobuf_FileDescriptorProto] {
        do {
            return try DescriptorIndex.embeddedFiles()
        } catch {
            throw WeftStartupError("cannot read the embedded descriptor set: \(error)")
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
