public import Logging

/// Everything a connection needs from the server, shared read-only by all
/// connections.
public final class ServerEnvironment: Sendable {
    public let config: RPCServerConfig
    public let router: RPCRouter
    public let httpRouter: HTTPRouter
    public let metrics: RPCMetrics
    public let logger: Logger

    public init(config: RPCServerConfig, router: RPCRouter, httpRouter: HTTPRouter, metrics: RPCMetrics, logger: Logger) {
        self.config = config
        self.router = router
        self.httpRouter = httpRouter
        self.metrics = metrics
        self.logger = logger
    }
}
