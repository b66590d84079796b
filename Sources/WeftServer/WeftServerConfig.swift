public import WeftRPC

/// Everything `weft serve` can be told.
public struct WeftServerConfig: Sendable {
    public var rpc = RPCServerConfig()
    /// Where SQLite files and backups live (created if missing).
    public var dataDirectory = "./weft-data"
    /// Registers `weft.testing.v1.EchoService` (tests and benchmarks only).
    public var enableTestServices = false

    public init() {}
}
