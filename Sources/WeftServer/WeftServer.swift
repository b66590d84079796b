import Foundation
public import Logging
import NIOCore
import ServiceLifecycle
public import WeftObservability
import WeftProto
import WeftRPC

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
        try Self.prepareDataDirectory(config.dataDirectory)
        let rpcMetrics = RPCMetrics(metrics: metrics)
        var router = RPCRouter()
        router.register(HealthService(store: health), metrics: rpcMetrics)
        if config.enableTestServices {
            router.register(EchoTestService(), metrics: rpcMetrics)
        }
        health.set("", .serving)
        for service in router.serviceNames { health.set(service, .serving) }

        var http = HTTPRouter()
        let health = self.health
        let metrics = self.metrics
        http.add("GET", "/healthz") { _ in
            let all = health.all
            let serving = all[""] == .serving
            var services: [String: String] = [:]
            for (name, status) in all where !name.isEmpty { services[name] = Self.statusName(status) }
            return .json(serving ? 200 : 503, ["status": Self.statusName(all[""] ?? .unknown), "services": services])
        }
        http.add("GET", "/metrics") { _ in
            HTTPResponse(
                status: 200, headers: [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                body: metrics.exposition())
        }

        let environment = ServerEnvironment(
            config: config.rpc, router: router, httpRouter: http, metrics: rpcMetrics, logger: logger)
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
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
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
