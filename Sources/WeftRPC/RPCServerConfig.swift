/// Transport settings. Defaults run out of the box and match what gRPC
/// clients expect (4 MiB messages, 100 concurrent streams).
public struct RPCServerConfig: Sendable {
    public var host: String = "127.0.0.1"
    /// 0 picks a free port; the bound one is reported by `onListening`.
    public var port: Int = 8080
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to each HTTP/2 client.
    public var maxConcurrentStreams: Int = 100
    /// Largest request message accepted (after decompression); larger ones
    /// fail with RESOURCE_EXHAUSTED. Also the limit for non-gRPC request bodies.
    public var maxReceiveMessageSize: Int = 4 * 1024 * 1024
    /// Largest request header list (sum of name + value + 32 per field, as
    /// SETTINGS_MAX_HEADER_LIST_SIZE counts).
    public var maxHeaderListSize: Int = 16 * 1024
    /// Per-stream flow-control window advertised to clients.
    public var initialWindowSize: Int = 1024 * 1024
    /// Connections with no open stream and no traffic for this long are closed
    /// (HTTP/2 with GOAWAY).
    public var idleTimeout: Duration = .seconds(300)
    /// How long a graceful shutdown waits for in-flight calls before closing
    /// connections anyway.
    public var drainTimeout: Duration = .seconds(30)
    /// Incoming RST_STREAM token bucket (CVE-2023-44487 "rapid reset").
    public var streamResetBurst: Int = 1000
    public var streamResetRatePerSecond: Int = 33
    /// Bytes of response data buffered per stream before a streaming handler's
    /// `write` suspends until the client reads.
    public var streamWriteBufferHighWater: Int = 256 * 1024
    /// Event-loop threads; 0 means half the cores (at least one). The other
    /// half is left to Swift concurrency, where handlers, the engine and the
    /// store run: on a 2-core machine one loop measured faster than two, which
    /// fought the handler pool (and any load generator) for the cores.
    public var eventLoopThreads: Int = 0

    public init() {}
}
