import Foundation
public import WeftEngine
public import WeftRPC
public import WeftSQLite

/// Everything `weft serve` can be told, in nested parts, each with its
/// defaults. The CLI's flags, their environment variables and their help
/// text come from `WeftServerConfig.Options`, which reads the defaults from
/// here: one place for every default.
public struct WeftServerConfig: Sendable {
    /// Sockets, protocol limits and timeouts (`WeftRPC`).
    public var rpc = RPCServerConfig()
    public var store = StoreSettings()
    public var engine = EngineSettings()
    public var auth = AuthSettings()
    public var tenancy = TenancySettings()
    public var secrets = SecretsSettings()
    /// Traces (off unless an OTLP endpoint is set).
    public var tracing = TracingConfig()
    /// Workflow definitions kept in memory; 0 turns the cache off.
    public var workflowCacheSize = 10_000
    /// Registers `weft.testing.v1.EchoService` and grpc's interop
    /// `grpc.testing.TestService` (tests and benchmarks only).
    public var enableTestServices = false
    /// TLS on the main listener, the admin listener, who may scrape.
    public var listeners = ListenerSettings()
    /// Where links in notifications point, the server's SMTP server, retries.
    public var notifications = NotificationSettings()
    /// Budget checks and raw-execution retention (docs/ANALYTICS.md).
    public var analytics = AnalyticsSettings()
    /// The web dashboard (docs/WEB.md).
    public var web = WebSettings()
    /// Which organizations and workflows the engine's metrics name.
    public var metricLabels = MetricLabelSettings()

    public init() {}

    /// The labelled sets of `WorkflowLabels` (docs/METRICS.md, "Labels").
    public struct MetricLabelSettings: Sendable {
        /// The first this many organizations by creation get their own `org`.
        public var orgs = 10
        /// In each, the first this many live workflows get their own `workflow`.
        public var workflowsPerOrg = 10
        /// How often the sets are read from the store (sooner after this
        /// process labels a creation ahead of it).
        public var refresh: Duration = .seconds(30)

        public init() {}
    }

    public struct WebSettings: Sendable {
        /// Where the dashboard's files are; nil: found beside the binary
        /// (`WebAssets.discover`), "none": no dashboard.
        public var directory: String?
        /// The operator's trace viewer, `{traceId}` replaced by a trace id
        /// (e.g. `http://jaeger:16686/trace/{traceId}`); the dashboard links
        /// executions' trace ids to it.
        public var traceViewerURL: String?

        public init() {}
    }

    public struct AnalyticsSettings: Sendable {
        /// How often budgets are checked (gauges set, alerts sent).
        public var budgetInterval: Duration = .seconds(60)
        /// Days finished executions are kept (0: forever); their rollups stay.
        public var executionRetentionDays = 0

        public init() {}
    }

    /// Notifications (docs/NOTIFICATIONS.md).
    public struct NotificationSettings: Sendable {
        /// The base of links in messages (`<url>/executions/<id>`).
        public var publicURL = "http://localhost:8080"
        /// The SMTP server of e-mail subscriptions without an integration.
        public var smtpHost: String?
        public var smtpPort = 587
        public var smtpUsername: String?
        public var smtpPassword: String?
        public var smtpFrom = "weft@localhost"
        /// required (STARTTLS must work), opportunistic, none.
        public var smtpTLS = "required"
        public var smtpCAFile: String?
        public var maxAttempts = DeliveryPolicy().maxAttempts
        /// Deliveries per second to one receiver, and the burst above it.
        public var ratePerSecond = Int(DeliveryPolicy().ratePerSecond)
        public var burst = Int(DeliveryPolicy().burst)
        /// Deliveries in flight at once.
        public var concurrency = DeliveryPolicy().concurrency

        public init() {}

        /// The server-wide SMTP settings, nil without `smtpHost`.
        var smtp: SMTPSettings? {
            guard let host = smtpHost, !host.isEmpty else { return nil }
            return SMTPSettings(
                host: host, port: smtpPort, username: smtpUsername, password: smtpPassword, fromAddress: smtpFrom,
                fromName: "Weft", tls: SMTPTLSMode(rawValue: smtpTLS) ?? .required, caFile: smtpCAFile,
                verifyCertificate: true, heloName: "weft.localhost")
        }
    }

    /// Where and how data is kept.
    public struct StoreSettings: Sendable {
        /// Where SQLite files live (created if missing).
        public var dataDirectory = "./weft-data"
        /// SQLite `synchronous` of the main database: FULL fsyncs every commit.
        public var sync: SQLiteStore.Configuration.Synchronous = .full
        /// How long execution log entries are kept.
        public var logRetention: Duration = .seconds(30 * 86_400)

        public init() {}
    }

    /// The engine's in-process workers and cost model.
    public struct EngineSettings: Sendable {
        /// 64 per core, at least 64: attempts of built-in tasks mostly wait
        /// on I/O (http), so slots are cheap next to the cores.
        public static let defaultWorkers = max(64, 64 * ProcessInfo.processInfo.activeProcessorCount)

        /// In-process worker slots; 0 runs no built-in task (they stay queued).
        public var workers = Self.defaultWorkers
        /// Lease length of in-process workers, in seconds (heartbeats renew it).
        public var leaseSeconds = 60
        /// How long graceful shutdown lets running attempts finish; the rest
        /// run again after the next start.
        public var drainTimeout: Duration = .seconds(10)
        /// Rates of the cost model (docs/COST.md).
        public var costRates = CostRates()
        /// Size and time caps of every execution.
        public var limits = EngineLimits()
        /// Admission control: when new executions are refused (429).
        public var admission = AdmissionLimits()
        /// Outbound calls made for users (`http` tasks).
        public var egress = EgressSettings()

        public init() {}
    }

    /// The master key of the secret store (kept outside the data directory).
    public struct SecretsSettings: Sendable {
        /// A file holding the key (32 bytes raw, hex or base64; mode 0600).
        public var keyFile: String?
        /// The key itself (`WEFT_SECRETS_KEY`, environment only).
        public var key: String?
        /// Older keys whose values a rotation re-seals (or that still open values).
        public var oldKeyFiles: [String] = []

        public init() {}

        /// The sealer, or nil when no key is configured (secrets closed).
        public func sealer(dataDirectory: String) throws -> SecretSealer? {
            var current: MasterKey?
            do {
                if let keyFile { current = try MasterKey.load(file: keyFile, dataDirectory: dataDirectory) }
                else if let key, !key.isEmpty { current = try MasterKey(text: key) }
                guard let current else { return nil }
                let older = try oldKeyFiles.map { try MasterKey.load(file: $0, dataDirectory: dataDirectory) }
                return SecretSealer(current: current, older: older)
            } catch {
                throw WeftStartupError("secrets: \(error)")
            }
        }
    }

    /// Organizations: their plans and their share of the workers.
    public struct TenancySettings: Sendable {
        public var plans = PlanBook()
        /// Percent of the in-process worker slots one organization may hold.
        public var workerSharePercent = 50
        /// Live streams (watch, tail) one user may hold open at once.
        public var maxStreamsPerUser = 16

        public init() {}

        /// The slots one organization may hold out of `workers`.
        public func tenantSlots(of workers: Int) -> Int { max(1, workers * workerSharePercent / 100) }
    }

    /// The egress guard and the limits of one outbound call.
    public struct EgressSettings: Sendable {
        /// Blocks and host names re-opened (`--egress-allow`).
        public var allow: [String] = []
        /// Largest response body an `http` task may read.
        public var maxResponseBytes = HTTPRunner.Limits().maxResponseBytes

        public init() {}

        public func policy() throws -> EgressPolicy { try EgressPolicy(allow: allow) }
    }

    /// Accounts, sessions and tokens.
    public struct AuthSettings: Sendable {
        /// Token signing secret (at least 32 bytes); nil keeps a keyring
        /// in the data directory (`weft auth rotate-key`).
        public var secret: String?
        /// How long an access token is valid.
        public var tokenLifetime: Duration = .seconds(900)
        /// How long a refresh token is valid (each use makes a new one).
        public var refreshLifetime: Duration = .seconds(30 * 86_400)
        /// scrypt cost as log2(N) for password hashes.
        public var scryptLogN = 15
        /// Threads that hash passwords (never the shared executors).
        public var hashThreads = 1
        /// Hashes that may wait for a hashing thread; more are refused (429).
        public var hashQueue = 16
        /// Failed logins per account and per client address in 15 minutes
        /// before logins are refused for a while (the wait doubles).
        public var loginFailuresPerAccount = 5
        public var loginFailuresPerAddress = 20
        /// Request rate limits by route class.
        public var rateLimits = RateLimitSettings()

        public init() {}
    }

    /// Where the server listens besides its main port, and how.
    public struct ListenerSettings: Sendable {
        /// TLS on the main listener (`--tls-cert`, `--tls-key`, ...).
        public var tls: TLSSettings?
        /// Allow plaintext on a non-loopback address.
        public var insecurePlaintext = false
        /// The admin listener (`--admin-listen HOST:PORT`): metrics, health,
        /// and reflection when `reflection` is `.admin`. Plaintext.
        public var adminHost: String?
        public var adminPort = 0
        /// Bearer token that `/metrics` on the main listener needs.
        public var metricsToken: String?
        public var reflection = Reflection.main

        public enum Reflection: String, Sendable, CaseIterable {
            case main, admin, off
        }

        public init() {}

        /// Whether `host` names only this machine (127.0.0.0/8, ::1, localhost).
        public static func isLoopback(_ host: String) -> Bool {
            let host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
            if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
            let parts = host.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
        }
    }
}
