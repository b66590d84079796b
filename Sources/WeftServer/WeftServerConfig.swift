public import WeftRPC
public import WeftStore
public import WeftSQLite
public import WeftEngine

/// Everything `weft serve` can be told.
public struct WeftServerConfig: Sendable {
    public var rpc = RPCServerConfig()
    /// Where SQLite files and backups live (created if missing).
    public var dataDirectory = "./weft-data"
    /// Registers `weft.testing.v1.EchoService` (tests and benchmarks only).
    public var enableTestServices = false
    /// SQLite `synchronous` of the main database: FULL fsyncs every commit.
    public var storeSync: SQLiteStore.Configuration.Synchronous = .full
    /// How long execution log entries are kept.
    public var logRetention: Duration = .seconds(30 * 86_400)
    /// Token signing secret (at least 32 bytes); nil keeps a random key in
    /// the data directory.
    public var authSecret: String?
    /// How long a login token is valid.
    public var tokenLifetime: Duration = .seconds(86_400)
    /// Workflow definitions kept in memory; 0 turns the cache off.
    public var workflowCacheSize = 10_000
    /// scrypt cost as log2(N) for password hashes.
    public var scryptLogN = 15
    /// In-process worker slots; 0 runs no built-in task (they stay queued).
    public var workers = 128
    /// Lease length of in-process workers, in seconds.
    public var leaseSeconds = 60
    /// How long graceful shutdown lets running attempts finish; the rest run
    /// again after the next start.
    public var workerDrainTimeout: Duration = .seconds(10)
    /// Traces (off unless an OTLP endpoint is set).
    public var tracing = TracingConfig()
    /// Rates of the cost model (docs/COST.md).
    public var costRates = CostRates()

    public init() {}
}
