import Logging
public import NIOCore
import NIOPosix
public import ServiceLifecycle

/// The network server: one port for HTTP/2 (gRPC, and HTTP routes) and
/// HTTP/1.1 (HTTP routes). Runs as a `Service`; a graceful shutdown stops
/// accepting, asks every connection to drain (GOAWAY on HTTP/2), waits up to
/// the drain timeout for in-flight calls, then closes what is left.
public final class RPCServer: Service {
    public let environment: ServerEnvironment
    private let onListening: @Sendable (SocketAddress) -> Void
    private let onDrain: @Sendable () -> Void
    private let registry = ConnectionRegistry()
    /// TLS on every connection when set (see `TLSServerHandler`).
    private let tls: TLSContext?
    private let tlsMetrics: TLSMetrics?

    /// - Parameters:
    ///   - onListening: called once with the bound address (port 0 resolved).
    ///   - onDrain: called when a graceful shutdown starts, before connections
    ///     are told to drain (health goes NOT_SERVING there).
    public init(
        environment: ServerEnvironment,
        tls: TLSContext? = nil,
        onListening: @escaping @Sendable (SocketAddress) -> Void = { _ in },
        onDrain: @escaping @Sendable () -> Void = {}
    ) {
        self.environment = environment
        self.tls = tls
        self.tlsMetrics = tls.map { _ in TLSMetrics(metrics: environment.metrics.metrics) }
        self.onListening = onListening
        self.onDrain = onDrain
    }

    public func run() async throws {
        let config = environment.config
        let threads = config.eventLoopThreads > 0 ? config.eventLoopThreads : max(1, System.coreCount / 2)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        do {
            try await serve(on: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    private func serve(on group: MultiThreadedEventLoopGroup) async throws {
        let config = environment.config
        let environment = self.environment
        let registry = self.registry
        let tls = self.tls
        let tlsMetrics = self.tlsMetrics
        let idle = TimeAmount.nanoseconds(Int64(config.idleTimeout.components.seconds) * 1_000_000_000)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(IdleTimeoutHandler(timeout: idle))
                    if let tls, let tlsMetrics {
                        guard let handler = TLSServerHandler(context: tls, metrics: tlsMetrics, logger: environment.logger) else {
                            throw TLSError("cannot start TLS on a connection")
                        }
                        try operations.addHandler(handler)
                    }
                    try operations.addHandler(ProtocolSniffer(environment: environment, registry: registry))
                }
            }
            .bind(host: config.host, port: config.port)
            .get()
        if let address = channel.localAddress { onListening(address) }

        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: { [onDrain] in
            onDrain()
            channel.close(promise: nil)
        }

        // Drain: every connection finishes what it has, up to the deadline.
        let open = registry.count
        environment.logger.info("draining", metadata: ["connections": "\(open)"])
        registry.drainAll()
        let deadline = ContinuousClock.now + config.drainTimeout
        while registry.count > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = registry.count
        if left > 0 {
            environment.logger.warning("drain deadline passed; closing connections", metadata: ["connections": "\(left)"])
            registry.closeAll()
        }
        environment.logger.info("stopped")
    }
}
