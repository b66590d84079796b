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
        // Startup recovery time counts from here: the store's opening and
        // migrations, then the engine's resumption of executions.
        let started = ContinuousClock.now
        // SIGHUP reloads (HangupReloader); until that runs, it must not end the process.
        signal(SIGHUP, SIG_IGN)
        try Self.checkListeners(config, logger: logger)
        // Before anything can start a span (recovery resumes executions).
        let tracing = try Self.startTracing(config.tracing, metrics: metrics, logger: logger)
        try Self.prepareDataDirectory(config.store.dataDirectory)
        let store = try openStore()
        let logStore = try SQLiteLogStore(
            path: (config.store.dataDirectory as NSString).appendingPathComponent("logs.sqlite"),
            metrics: StoreMetrics(metrics: metrics, store: "logs"))
        let engineMetrics = EngineMetrics(
            metrics: metrics,
            labels: WorkflowLabels(orgCap: config.metricLabels.orgs, perOrgCap: config.metricLabels.workflowsPerOrg))
        let audit = AuditLog(store: store, logger: logger)
        let vault = SecretVault(
            store: store, sealer: try config.secrets.sealer(dataDirectory: config.store.dataDirectory), audit: audit)
        if vault.sealer == nil { logger.notice("secrets: off (no master key; see --secrets-key-file)") }
        // The HTTP clients must be shut down before the process exits, also
        // when start-up fails (their threads would outlive `main`).
        var egressLimits = HTTPRunner.Limits()
        egressLimits.maxResponseBytes = config.engine.egress.maxResponseBytes
        egressLimits.maxDuration = .milliseconds(config.engine.limits.maxAttemptTimeoutMs)
        let policy: EgressPolicy
        do {
            policy = try config.engine.egress.policy()
        } catch {
            throw WeftStartupError("--egress-allow: \(error)")
        }
        let httpRunner = HTTPRunner(
            egress: EgressGuard(policy: policy, metrics: metrics), limits: egressLimits,
            credentials: IntegrationCredentials(store: store, executions: store, vault: vault))
        do {
            try await serve(
                store: store, logStore: logStore, engineMetrics: engineMetrics, httpRunner: httpRunner, vault: vault,
                tracing: tracing, started: started)
            await audit.flush()
        } catch let error as EngineError {
            await audit.flush()
            await httpRunner.shutdown()
            throw WeftStartupError(error.description)
        } catch {
            await audit.flush()
            await httpRunner.shutdown()
            throw error
        }
        await httpRunner.shutdown()
    }

    private func serve(
        store: SQLiteStore, logStore: SQLiteLogStore, engineMetrics: EngineMetrics, httpRunner: HTTPRunner,
        vault: SecretVault, tracing: [any Service], started: ContinuousClock.Instant
    ) async throws {
        // The labelled organizations and workflows before recovery counts
        // the executions it finishes.
        do {
            try await WorkflowLabelRefresher.load(store: store, metrics: engineMetrics)
        } catch {
            throw WeftStartupError("cannot read the organizations and workflows the metrics label: \(error)")
        }
        // Subscriptions in memory before the engine resumes executions: an
        // execution that ends during recovery notifies too.
        let notificationIndex = NotificationIndex()
        notificationIndex.load(try await store.allSubscriptions())
        let engine = Engine(
            workflows: store, executions: store, queue: store, logs: logStore,
            runners: [NoopRunner(), LogRunner(), TransformRunner(), ConditionRunner(), httpRunner],
            leaseDuration: TimeInterval(config.engine.leaseSeconds), metrics: engineMetrics, costRates: config.engine.costRates,
            limits: config.engine.limits, secrets: vault, admission: config.engine.admission,
            // With no in-process workers nothing runs here, instant tasks included.
            inlineInstantTasks: config.engine.workers > 0,
            logger: Logger(label: "weft.engine"), notifier: notificationIndex)
        let keyring = try SigningKeyring(dataDirectory: config.store.dataDirectory, secret: config.auth.secret)
        let app = try WeftApplication(
            config: config, users: store, workflows: store, executions: store, organizations: store, credentials: store,
            logs: logStore, schedules: store, notifications: store, notificationIndex: notificationIndex, analytics: store,
            engine: engine,
            vault: vault, keyring: keyring, metrics: metrics, logger: logger, egress: httpRunner.egress, health: health)
        try await app.loadCredentials()
        let environment = app.environment
        let tls: TLSContext?
        if let settings = config.listeners.tls {
            do {
                tls = try TLSContext(settings)
            } catch {
                throw WeftStartupError("tls: \(error)")
            }
            logger.info(
                "tls: on (TLS 1.2+, ALPN h2 and http/1.1\(settings.clientCAFile == nil ? "" : settings.requireClientCertificate ? ", client certificates required" : ", client certificates verified when sent"))")
        } else {
            tls = nil
        }
        let reloader = HangupReloader(tls: tls, keyring: keyring, metrics: metrics, logger: logger)
        let retention = LogRetention(store: logStore, keep: config.store.logRetention, metrics: metrics, logger: logger)
        let logger = self.logger
        let server = RPCServer(
            environment: environment, tls: tls,
            onListening: { address in
                logger.info("listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
            },
            onDrain: {
                // Health is NOT_SERVING already (HealthDrain stops first).
                logger.info("graceful shutdown: draining connections")
            })
        // The group starts services in this order and stops them in
        // reverse: health turns NOT_SERVING, the workers drain; the server drains its calls while
        // the engine still commits; the engine writes what is pending; the
        // span shipper and exporter go last, so they flush everyone's spans.
        // The engine resumes unfinished executions as it starts, and the
        // workers wait for that before they lease.
        var services: [any Service] = tracing + [engine, server, retention, QueueDepthSampler(queue: store, metrics: engineMetrics, overload: engine.overload)]
            + app.services + [reloader]
        services.append(WorkflowLabelRefresher(
            store: store, metrics: engineMetrics, interval: config.metricLabels.refresh, logger: logger))
        services.append(OperationsSampler(
            engine: engine, metrics: metrics, dataDirectory: config.store.dataDirectory, started: started))
        if config.analytics.executionRetentionDays > 0 {
            services.append(ExecutionRetention(
                store: store, days: config.analytics.executionRetentionDays, metrics: metrics, logger: logger))
        }
        if let admin = app.adminEnvironment {
            services.append(RPCServer(environment: admin, onListening: { address in
                logger.info("admin listening on \(address.ipAddress ?? "?"):\(address.port ?? 0)")
            }))
        }
        if config.engine.workers > 0 {
            logger.info("engine: \(config.engine.workers) in-process workers")
            services.append(WorkerPool(
                engine: engine, slots: config.engine.workers, tenantCap: config.tenancy.tenantSlots(of: config.engine.workers),
                drainTimeout: config.engine.drainTimeout, metrics: engineMetrics,
                logger: logger
            ) { error in logger.warning("engine: \(error)") })
        }
        // Last, so first to stop: health turns NOT_SERVING before anything drains.
        services.append(HealthDrain(health: health, logger: logger))
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }

    /// Plaintext is for this machine only: a non-loopback listener needs
    /// TLS (the admin listener is plaintext: it must stay on loopback)
    /// unless the operator says `--insecure-plaintext`.
    static func checkListeners(_ config: WeftServerConfig, logger: Logger) throws {
        let listeners = config.listeners
        let plainMain = listeners.tls == nil && !WeftServerConfig.ListenerSettings.isLoopback(config.rpc.host)
        let plainAdmin = listeners.adminHost.map { !WeftServerConfig.ListenerSettings.isLoopback($0) } ?? false
        guard plainMain || plainAdmin else { return }
        let what = plainMain ? "--host \(config.rpc.host)" : "--admin-listen \(listeners.adminHost ?? "")"
        guard listeners.insecurePlaintext else {
            throw WeftStartupError(
                "refusing to serve plaintext on the non-loopback address of \(what): passwords and tokens would cross the network in clear. Give --tls-cert and --tls-key, bind a loopback address, or pass --insecure-plaintext (e.g. behind a TLS-terminating proxy)")
        }
        logger.warning("serving plaintext on a non-loopback address (\(what)) because of --insecure-plaintext")
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

    func openStore() throws -> SQLiteStore {
        let path = (config.store.dataDirectory as NSString).appendingPathComponent("weft.sqlite")
        do {
            let store = try SQLiteStore(
                .init(path: path, synchronous: config.store.sync), metrics: StoreMetrics(metrics: metrics, store: "main"))
            let migrations = try store.appliedMigrations()
            logger.info("store \(path): migrations \(migrations.joined(separator: ", "))")
            return store
        } catch {
            throw WeftStartupError("cannot open the store at \(path): \(error)")
        }
    }

    /// Creates the data directory owner-only (0700) and makes every file
    /// the process creates from now on owner-only (umask 077: the SQLite
    /// files, their WAL and shared memory, the auth key); tightens what an
    /// older version left readable.
    static func prepareDataDirectory(_ path: String) throws {
        let manager = FileManager.default
        umask(0o077)
        do {
            try manager.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try manager.setAttributes([.posixPermissions: 0o700], ofItemAtPath: path)
            for name in try manager.contentsOfDirectory(atPath: path) {
                let file = (path as NSString).appendingPathComponent(name)
                var isDirectory: ObjCBool = false
                if manager.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue {
                    try? manager.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
                }
            }
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
