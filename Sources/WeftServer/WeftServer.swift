import Foundation
public import Logging
import NIOCore
import ServiceLifecycle
public import WeftObservability
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore
import WeftSQLite

/// Wires the services, routes and observability into one `RPCServer` and runs
/// it under a `ServiceGroup` that drains on SIGTERM/SIGINT.
public struct WeftServer: Sendable {
    public let config: WeftServerConfig
    public let metrics: WeftMetrics
    public let health = HealthStatusStore()
    private let logger: Logger

    public init(config: WeftServerConfig, logger: Logger, metrics: WeftMetrics = WeftMetrics()) {
        self.config = config
        self.logger = logger
        self.metrics = metrics
    }

    public func run() async throws {
        // Before anything can start a span (recovery resumes executions).
        let tracing = try Self.startTracing(config.tracing, metrics: metrics, logger: logger)
        try Self.prepareDataDirectory(config.dataDirectory)
        let store = try openStore()
        let logStore = try SQLiteLogStore(
            path: (config.dataDirectory as NSString).appendingPathComponent("logs.sqlite"),
            metrics: StoreMetrics(metrics: metrics, store: "logs"))
        let engineMetrics = EngineMetrics(metrics: metrics)
        // The HTTP clients must be shut down before the process exits, also
        // when start-up fails (their threads would outlive `main`).
        let httpRunner = HTTPRunner()
        do {
            try await serve(
                store: store, logStore: logStore, engineMetrics: engineMetrics, httpRunner: httpRunner, tracing: tracing)
        } catch let error as EngineError {
            await httpRunner.shutdown()
            throw WeftStartupError(error.description)
        } catch {
            await httpRunner.shutdown()
            throw error
        }
        await httpRunner.shutdown()
    }

    private func serve(
        store: SQLiteStore, logStore: SQLiteLogStore, engineMetrics: EngineMetrics, httpRunner: HTTPRunner,
        tracing: [any Service]
    ) async throws {
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: logStore,
            runners: [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner(), httpRunner],
            leaseDuration: TimeInterval(config.leaseSeconds), metrics: engineMetrics, costRates: config.costRates,
            logger: Logger(label: "weft.engine"))
        let deps = APIDependencies(
            users: store,
            workflows: config.workflowCacheSize > 0 ? CachedWorkflowStore(store, capacity: config.workflowCacheSize) : store,
            logs: logStore, executions: store, engine: engine,
            auth: Authenticator(
                signer: TokenSigner(
                    key: try Authenticator.loadKey(dataDirectory: config.dataDirectory, secret: config.authSecret),
                    lifetime: TimeInterval(config.tokenLifetime.components.seconds)),
                metrics: metrics),
            passwords: PasswordHasher(logN: config.scryptLogN), metrics: metrics)

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
                service, shape: defaults.fill, explain: explainer.explain, booleanFields: explainer.booleanFields)
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
        let retention = LogRetention(store: logStore, keep: config.logRetention, metrics: metrics, logger: logger)

        let health = self.health
        let metrics = self.metrics
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

        let environment = ServerEnvironment(
            config: config.rpc, router: router, httpRouter: http, metrics: rpcMetrics, logger: logger,
            interceptors: InterceptorChain([deps.auth]))
        let logger = self.logger
        let server = RPCServer(
            environment: environment,
            onListening: { address in
                logger.info("listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
            },
            onDrain: { [health] in
                logger.info("graceful shutdown: health NOT_SERVING, draining connections")
                health.enterDrain()
            })
        // The group starts services in this order and stops them in
        // reverse: the workers drain first; the server drains its calls while
        // the engine still commits; the engine writes what is pending; the
        // span shipper and exporter go last, so they flush everyone's spans.
        // The engine resumes unfinished executions as it starts, and the
        // workers wait for that before they lease.
        var services: [any Service] = tracing + [engine, server, retention, QueueDepthSampler(queue: store, metrics: engineMetrics)]
        if config.workers > 0 {
            logger.info("engine: \(config.workers) in-process workers")
            services.append(WorkerPool(
                engine: engine, slots: config.workers, drainTimeout: config.workerDrainTimeout, metrics: engineMetrics
            ) { error in logger.warning("engine: \(error)") })
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// Every weft.v1 service, in the order clients see them.
    static func apiServices(_ deps: APIDependencies) -> [any RPCService] {
        [UserAPI(deps: deps), WorkflowAPI(deps: deps), TaskAPI(deps: deps), CollaboratorAPI(deps: deps),
         VersionAPI(deps: deps), ExecutionAPI(deps: deps), LogAPI(deps: deps), WorkerAPI(deps: deps)]
            + PlannedAPIs(deps: deps).services
    }

    static func startTracing(_ config: TracingConfig, metrics: WeftMetrics, logger: Logger) throws -> [any Service] {
        do {
            return try Telemetry.bootstrapTracing(config, metrics: metrics, logger: logger)
        } catch let error as WeftStartupError {
            throw error
        } catch {
            throw WeftStartupError("cannot start tracing: \(error)")
        }
    }

    static func descriptorIndex() throws -> DescriptorIndex {
        do {
            return try DescriptorIndex.embedded()
        } catch {
            throw WeftStartupError("cannot read the embedded descriptor set for reflection: \(error)")
        }
    }

    func openStore() throws -> SQLiteStore {
        let path = (config.dataDirectory as NSString).appendingPathComponent("weft.sqlite")
        do {
            let store = try SQLiteStore(
                .init(path: path, synchronous: config.storeSync), metrics: StoreMetrics(metrics: metrics, store: "main"))
            let migrations = try store.appliedMigrations()
            logger.info("store \(path): migrations \(migrations.joined(separator: ", "))")
            return store
        } catch {
            throw WeftStartupError("cannot open the store at \(path): \(error)")
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

    static func prepareDataDirectory(_ path: String) throws {
        let manager = FileManager.default
        do {
            try manager.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw WeftStartupError("cannot create data directory \(path): \(error.localizedDescription)")
        }
        guard manager.isWritableFile(atPath: path) else {
            throw WeftStartupError("data directory \(path) is not writable")
        }
    }
}

/// A start-up problem the operator must fix; printed as is.
public struct WeftStartupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
