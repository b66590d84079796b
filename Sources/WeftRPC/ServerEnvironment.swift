public import Logging

/// Everything a connection needs from the server, shared read-only by all
/// connections.
public final class ServerEnvironment: Sendable {
    public let config: RPCServerConfig
    public let router: RPCRouter
    public let httpRouter: HTTPRouter
    public let metrics: RPCMetrics
    public let logger: Logger
    /// What every call goes through before its handler, on every transport.
    public let interceptors: InterceptorChain
    let observability: CallObservability

    public init(
        config: RPCServerConfig, router: RPCRouter, httpRouter: HTTPRouter, metrics: RPCMetrics, logger: Logger,
        interceptors: InterceptorChain = InterceptorChain()
    ) {
        self.config = config
        self.router = router
        self.httpRouter = httpRouter
        self.metrics = metrics
        self.logger = logger
        self.interceptors = interceptors
        self.observability = CallObservability(metrics: metrics, logger: logger)
    }
}
