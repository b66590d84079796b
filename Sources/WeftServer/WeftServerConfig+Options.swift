extension WeftServerConfig {
    /// One `weft serve` option: its flag, its environment variable, what it
    /// means, and its default as `WeftServerConfig()` has it. The CLI's help
    /// text comes from these, and its defaults from `WeftServerConfig`, so a
    /// default is written once.
    public struct Option: Sendable {
        public let flag: String
        public let environment: String
        public let abstract: String
        /// The default, as shown in help and docs.
        public let defaultText: String?
        /// Accepted values of a numeric option.
        public let range: ClosedRange<Int>?

        init(_ flag: String, _ environment: String, _ abstract: String, default value: String? = nil, range: ClosedRange<Int>? = nil) {
            self.flag = flag
            self.environment = environment
            self.abstract = abstract
            self.defaultText = value
            self.range = range
        }

        /// `abstract [env: VAR] (default: …)`, as `--help` prints it.
        public var help: String {
            "\(abstract) [env: \(environment)]" + (defaultText.map { " (default: \($0))" } ?? "")
        }
    }

    /// Every option of `weft serve` (the README's configuration table lists
    /// the same; a test checks it).
    public enum Options {
        private static let defaults = WeftServerConfig()

        private static func seconds(_ duration: Duration) -> Int { Int(duration.components.seconds) }

        public static let host = Option("--host", "WEFT_HOST", "Address to bind.", default: defaults.rpc.host)
        public static let port = Option(
            "--port", "WEFT_PORT", "Port to bind; 0 picks a free one.", default: "\(defaults.rpc.port)", range: 0...65535)
        public static let dataDir = Option(
            "--data-dir", "WEFT_DATA_DIR", "Directory for data files, created if missing.",
            default: defaults.store.dataDirectory)
        public static let maxConcurrentStreams = Option(
            "--max-concurrent-streams", "WEFT_MAX_CONCURRENT_STREAMS", "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection.",
            default: "\(defaults.rpc.maxConcurrentStreams)", range: 1...100_000)
        public static let maxReceiveMessageSize = Option(
            "--max-receive-message-size", "WEFT_MAX_RECEIVE_MESSAGE_SIZE",
            "Largest request message in bytes (also the HTTP body limit).",
            default: "\(defaults.rpc.maxReceiveMessageSize)", range: 1024...(1 << 30))
        public static let maxHeaderListSize = Option(
            "--max-header-list-size", "WEFT_MAX_HEADER_LIST_SIZE", "Largest request header list in bytes.",
            default: "\(defaults.rpc.maxHeaderListSize)", range: 1024...(1 << 20))
        public static let idleTimeout = Option(
            "--idle-timeout", "WEFT_IDLE_TIMEOUT", "Seconds before an idle connection is closed.",
            default: "\(seconds(defaults.rpc.idleTimeout))", range: 1...86_400)
        public static let drainTimeout = Option(
            "--drain-timeout", "WEFT_DRAIN_TIMEOUT", "Seconds a graceful shutdown waits for in-flight calls.",
            default: "\(seconds(defaults.rpc.drainTimeout))", range: 0...3600)
        public static let eventLoopThreads = Option(
            "--event-loop-threads", "WEFT_EVENT_LOOP_THREADS", "Event-loop threads; 0 means half the cores, at least one.",
            default: "\(defaults.rpc.eventLoopThreads)", range: 0...256)
        public static let logFormat = Option("--log-format", "WEFT_LOG_FORMAT", "Log format: text or json.", default: "text")
        public static let logLevel = Option(
            "--log-level", "WEFT_LOG_LEVEL", "Log level: trace, debug, info, notice, warning, error, critical.",
            default: "info")
        public static let storeSync = Option(
            "--store-sync", "WEFT_STORE_SYNC",
            "SQLite synchronous mode of the main database: full (fsync per commit) or normal.",
            default: defaults.store.sync.rawValue)
        public static let logRetentionDays = Option(
            "--log-retention-days", "WEFT_LOG_RETENTION_DAYS", "Days execution log entries are kept.",
            default: "\(seconds(defaults.store.logRetention) / 86_400)", range: 1...36_500)
        public static let tokenTTL = Option(
            "--token-ttl", "WEFT_TOKEN_TTL", "Seconds an access token (from login or refresh) is valid.",
            default: "\(seconds(defaults.auth.tokenLifetime))", range: 1...86_400)
        public static let refreshTokenTTL = Option(
            "--refresh-token-ttl", "WEFT_REFRESH_TOKEN_TTL",
            "Seconds a refresh token is valid (each refresh returns a new one; a reused one revokes its session).",
            default: "\(seconds(defaults.auth.refreshLifetime))", range: 60...(365 * 86_400))
        public static let passwordHashThreads = Option(
            "--password-hash-threads", "WEFT_PASSWORD_HASH_THREADS",
            "Threads that hash passwords (scrypt), apart from those that serve calls and run the engine.",
            default: "\(defaults.auth.hashThreads)", range: 1...64)
        public static let passwordHashQueue = Option(
            "--password-hash-queue", "WEFT_PASSWORD_HASH_QUEUE",
            "Password hashes that may wait for a hashing thread; beyond them logins get 429 / RESOURCE_EXHAUSTED.",
            default: "\(defaults.auth.hashQueue)", range: 0...10_000)
        public static let loginFailuresPerAccount = Option(
            "--login-failures-per-account", "WEFT_LOGIN_FAILURES_PER_ACCOUNT",
            "Failed logins of one account in 15 minutes before its logins are refused for a while (429; the wait doubles).",
            default: "\(defaults.auth.loginFailuresPerAccount)", range: 1...1_000_000)
        public static let loginFailuresPerAddress = Option(
            "--login-failures-per-address", "WEFT_LOGIN_FAILURES_PER_ADDRESS",
            "Failed logins from one client address in 15 minutes before its logins are refused for a while.",
            default: "\(defaults.auth.loginFailuresPerAddress)", range: 1...1_000_000)
        public static let rateLimit = Option(
            "--rate-limit", "WEFT_RATE_LIMITS",
            "A request rate limit, CLASS=N/s[:BURST] or CLASS=off; repeatable (the variable: comma-separated). Classes: auth (register, login, refresh; per client address), read, write, execute (per API key or user, and per client address).",
            default: defaults.auth.rateLimits.description)
        public static let tlsCert = Option(
            "--tls-cert", "WEFT_TLS_CERT", "PEM certificate (and chain) of the main listener: it then speaks TLS 1.2+ only, with ALPN h2 and http/1.1. SIGHUP reloads it.")
        public static let tlsKey = Option("--tls-key", "WEFT_TLS_KEY", "PEM private key of --tls-cert.")
        public static let tlsClientCA = Option(
            "--tls-client-ca", "WEFT_TLS_CLIENT_CA",
            "PEM CA certificates for client certificates (mutual TLS); a verified certificate's CN authenticates as the API key bound to it.")
        public static let tlsRequireClientCert = Option(
            "--tls-require-client-cert", "WEFT_TLS_REQUIRE_CLIENT_CERT=1", "Refuse TLS handshakes without a client certificate.")
        public static let insecurePlaintext = Option(
            "--insecure-plaintext", "WEFT_INSECURE_PLAINTEXT=1",
            "Allow plaintext on a non-loopback address (only behind a TLS-terminating proxy).")
        public static let adminListen = Option(
            "--admin-listen", "WEFT_ADMIN_LISTEN",
            "HOST:PORT of a plaintext admin listener serving /metrics, /healthz and gRPC health (and reflection with --reflection admin); /metrics then leaves the main listener.")
        public static let metricsToken = Option(
            "--metrics-token", "WEFT_METRICS_TOKEN",
            "Bearer token /metrics on the main listener needs. Without it (and without --admin-listen), /metrics is served only on a loopback plaintext listener.")
        public static let reflection = Option(
            "--reflection", "WEFT_REFLECTION", "Where gRPC server reflection is served: main, admin or off.",
            default: defaults.listeners.reflection.rawValue)
        public static let workflowCacheSize = Option(
            "--workflow-cache-size", "WEFT_WORKFLOW_CACHE_SIZE", "Workflow definitions cached in memory; 0 turns the cache off.",
            default: "\(defaults.workflowCacheSize)", range: 0...10_000_000)
        public static let scryptLogN = Option(
            "--scrypt-log-n", "WEFT_SCRYPT_LOG_N", "scrypt cost of password hashes as log2(N), 10 to 20.",
            default: "\(defaults.auth.scryptLogN)", range: 10...20)
        public static let workers = Option(
            "--workers", "WEFT_WORKERS",
            "In-process workers (task attempts of built-in types run at once); 0 runs none (tasks stay queued).",
            default: "64 per core, at least 64; \(defaults.engine.workers) here", range: 0...10_000)
        public static let leaseSeconds = Option(
            "--lease-seconds", "WEFT_LEASE_SECONDS",
            "Seconds an in-process worker's lease lasts before a task is given to another worker (heartbeats renew it).",
            default: "\(defaults.engine.leaseSeconds)", range: 1...86_400)
        public static let workerDrainTimeout = Option(
            "--worker-drain-timeout", "WEFT_WORKER_DRAIN_TIMEOUT",
            "Seconds a graceful shutdown lets running task attempts finish; the rest run again after the next start.",
            default: "\(seconds(defaults.engine.drainTimeout))", range: 0...3600)
        public static let otelEndpoint = Option(
            "--otel-endpoint", "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTLP/HTTP base URL to export traces to (spans go to <url>/v1/traces); tracing is off without one. OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is taken as the full URL.")
        public static let traceSampler = Option(
            "--trace-sampler", "OTEL_TRACES_SAMPLER",
            "Trace sampler: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio.",
            default: defaults.tracing.sampler.rawValue)
        public static let traceSamplerArg = Option(
            "--trace-sampler-arg", "OTEL_TRACES_SAMPLER_ARG", "Sampling ratio of the ratio samplers, 0 to 1.",
            default: "\(defaults.tracing.samplerArgument)")
        public static let serviceName = Option(
            "--service-name", "OTEL_SERVICE_NAME", "service.name of the spans.", default: defaults.tracing.serviceName)
        public static let costRate = Option(
            "--cost-rate", "WEFT_COST_RATES",
            "A cost model rate, NAME=DOLLARS; repeatable (the variable: comma-separated). Names: attempt, worker_second, worker_second.<task type>, request, egress_mb (docs/COST.md).")
        public static let egressAllow = Option(
            "--egress-allow", "WEFT_EGRESS_ALLOW",
            "An address block (10.1.0.0/16), address or host name outbound calls of tasks may reach though the egress guard denies it (loopback, private, link-local, ...); repeatable (the variable: comma-separated).")
        public static let egressMaxResponseBytes = Option(
            "--egress-max-response-bytes", "WEFT_EGRESS_MAX_RESPONSE_BYTES",
            "Largest response body an http task may read; larger ones fail the attempt (response_too_large).",
            default: "\(defaults.engine.egress.maxResponseBytes)", range: 1024...(1 << 30))
        public static let maxTemplateBytes = Option(
            "--max-template-bytes", "WEFT_MAX_TEMPLATE_BYTES",
            "Largest resolved task config; templates that build more fail the attempt (output_too_large).",
            default: "\(defaults.engine.limits.maxTemplateBytes)", range: 1024...(1 << 30))
        public static let maxTaskOutputBytes = Option(
            "--max-task-output-bytes", "WEFT_MAX_TASK_OUTPUT_BYTES",
            "Largest output of one task attempt; larger ones fail it (output_too_large).",
            default: "\(defaults.engine.limits.maxTaskOutputBytes)", range: 1024...(1 << 30))
        public static let maxExecutionBytes = Option(
            "--max-execution-bytes", "WEFT_MAX_EXECUTION_BYTES",
            "Largest total of an execution's input and task outputs; the attempt that would pass it fails (output_too_large).",
            default: "\(defaults.engine.limits.maxExecutionBytes)", range: 1024...(1 << 34))
        public static let maxAttemptTimeout = Option(
            "--max-attempt-timeout", "WEFT_MAX_ATTEMPT_TIMEOUT",
            "Seconds any task attempt may run (caps each task's own timeout; delays excepted), outbound calls included.",
            default: "\(defaults.engine.limits.maxAttemptTimeoutMs / 1000)", range: 1...604_800)
        public static let admissionTaskWait = Option(
            "--admission-task-wait", "WEFT_ADMISSION_TASK_WAIT",
            "Milliseconds: new executions are refused (429 / RESOURCE_EXHAUSTED with retry-after) while every task taken from the ready queue for 100 ms waited longer than this (a standing backlog); 0 turns this signal off (docs/OVERLOAD.md).",
            default: "25", range: 0...3_600_000)
        public static let admissionCommitWait = Option(
            "--admission-commit-wait", "WEFT_ADMISSION_COMMIT_WAIT",
            "Milliseconds: the same for state changes waiting for the store's single writer (group commit); 0: off.",
            default: "100", range: 0...3_600_000)
        public static let maxExecutionsInFlight = Option(
            "--max-executions-in-flight", "WEFT_MAX_EXECUTIONS_IN_FLIGHT",
            "New executions are refused while this many are started and not finished (delays and external tasks included), so memory stays bounded; 0: no cap.",
            default: "\(defaults.engine.admission.maxExecutionsInFlight)", range: 0...100_000_000)
        public static let plan = Option(
            "--plan", "WEFT_PLANS",
            "Defines or changes a plan, NAME:quota=value,...; repeatable (the variable: ';'-separated). Quotas: concurrent_executions, executions_per_day, workflows, schedules, log_bytes, requests_per_minute; 0 is no limit. Built in: free, team, enterprise (docs/TENANCY.md).")
        public static let defaultPlan = Option(
            "--default-plan", "WEFT_DEFAULT_PLAN", "The plan of organizations created at registration.",
            default: defaults.tenancy.plans.defaultPlan)
        public static let orgWorkerShare = Option(
            "--org-worker-share", "WEFT_ORG_WORKER_SHARE",
            "Percent of the in-process worker slots one organization may hold at once (fair sharing).",
            default: "\(defaults.tenancy.workerSharePercent)", range: 1...100)
        public static let maxStreamsPerUser = Option(
            "--max-streams-per-user", "WEFT_MAX_STREAMS_PER_USER",
            "Live streams (WatchExecution, TailLogs; gRPC and REST) one user may hold open at once.",
            default: "\(defaults.tenancy.maxStreamsPerUser)", range: 1...10_000)
        public static let secretsKeyFile = Option(
            "--secrets-key-file", "WEFT_SECRETS_KEY_FILE",
            "File with the master key that seals organization secrets (32 bytes: raw, hex or base64; mode 0600; outside the data directory). Without a key (this or WEFT_SECRETS_KEY) secrets are off.")
        public static let secretsOldKeyFile = Option(
            "--secrets-old-key-file", "WEFT_SECRETS_OLD_KEY_FILES",
            "A previous master key whose sealed values may still be opened (during a rotation); repeatable (the variable: comma-separated).")
        public static let secretsKey = Option(
            "", "WEFT_SECRETS_KEY", "The master key itself (base64 or hex); environment only, so it never shows in `ps`.")
        public static let enableTestServices = Option(
            "--enable-test-services", "WEFT_ENABLE_TEST_SERVICES=1",
            "Register weft.testing.v1.EchoService, for tests and benchmarks only.")
        public static let authSecret = Option(
            "", "WEFT_AUTH_SECRET",
            "Token signing secret (at least 32 bytes); environment only, so it never shows in `ps`. Unset: a random key kept in DATA_DIR/auth.key.")

        public static let publicURL = Option(
            "--public-url", "WEFT_PUBLIC_URL", "The server's URL as users reach it; links in notifications start with it.",
            default: defaults.notifications.publicURL)
        public static let smtpHost = Option(
            "--smtp-host", "WEFT_SMTP_HOST",
            "SMTP server of e-mail notifications without an email integration (off when unset).")
        public static let smtpPort = Option(
            "--smtp-port", "WEFT_SMTP_PORT", "Its port.", default: "\(defaults.notifications.smtpPort)", range: 1...65535)
        public static let smtpUsername = Option("--smtp-username", "WEFT_SMTP_USERNAME", "Its user name (AUTH PLAIN or LOGIN).")
        public static let smtpPasswordFile = Option(
            "--smtp-password-file", "WEFT_SMTP_PASSWORD_FILE",
            "File with its password (or WEFT_SMTP_PASSWORD, environment only).")
        public static let smtpPassword = Option(
            "", "WEFT_SMTP_PASSWORD", "The SMTP password itself; environment only, so it never shows in `ps`.")
        public static let smtpFrom = Option(
            "--smtp-from", "WEFT_SMTP_FROM", "Sender address of notification e-mails.", default: defaults.notifications.smtpFrom)
        public static let smtpTLS = Option(
            "--smtp-tls", "WEFT_SMTP_TLS",
            "required (STARTTLS must be offered and succeed), opportunistic, or none.", default: defaults.notifications.smtpTLS)
        public static let smtpCAFile = Option(
            "--smtp-ca-file", "WEFT_SMTP_CA_FILE", "PEM file of the CA that signs the SMTP server's certificate (default: the system's).")
        public static let notificationMaxAttempts = Option(
            "--notification-max-attempts", "WEFT_NOTIFICATION_MAX_ATTEMPTS",
            "Delivery attempts of a notification before it is dead-lettered.",
            default: "\(defaults.notifications.maxAttempts)", range: 1...100)
        public static let notificationRate = Option(
            "--notification-rate", "WEFT_NOTIFICATION_RATE",
            "Notifications per second to one receiver (a webhook URL, an SMTP account); more wait.",
            default: "\(defaults.notifications.ratePerSecond)", range: 1...1_000_000)
        public static let notificationBurst = Option(
            "--notification-burst", "WEFT_NOTIFICATION_BURST", "Notifications one receiver may get at once above that rate.",
            default: "\(defaults.notifications.burst)", range: 1...1_000_000)
        public static let budgetInterval = Option(
            "--budget-interval", "WEFT_BUDGET_INTERVAL", "Seconds between checks of the cost budgets (gauges, alerts).",
            default: "\(seconds(defaults.analytics.budgetInterval))", range: 1...86_400)
        public static let executionRetentionDays = Option(
            "--execution-retention-days", "WEFT_EXECUTION_RETENTION_DAYS",
            "Days finished executions are kept (0: forever); statistics keep counting them (rollups stay).",
            default: "\(defaults.analytics.executionRetentionDays)", range: 0...36_500)
        public static let webDir = Option(
            "--web-dir", "WEFT_WEB_DIR",
            "Directory of the web dashboard's files, served at /; `none` turns the dashboard off.",
            default: "./web, or web/ beside or above the binary, or ../share/weft/web from it")
        public static let traceViewerURL = Option(
            "--trace-viewer-url", "WEFT_TRACE_VIEWER_URL",
            "The trace viewer's URL with {traceId} in it; the dashboard links executions' trace ids to it.")
        public static let metricsOrgs = Option(
            "--metrics-orgs", "WEFT_METRICS_ORGS",
            "Organizations with their own `org` label on execution metrics: the first N by creation (the rest are \"other\"). N × --metrics-workflows-per-org is at most 1000.",
            default: "\(defaults.metricLabels.orgs)", range: 0...1_000)
        public static let metricsWorkflowsPerOrg = Option(
            "--metrics-workflows-per-org", "WEFT_METRICS_WORKFLOWS_PER_ORG",
            "Workflows of each labelled organization with their own `workflow` label: the first N by creation (the rest are \"other\").",
            default: "\(defaults.metricLabels.workflowsPerOrg)", range: 0...1_000)
        public static let notificationConcurrency = Option(
            "--notification-concurrency", "WEFT_NOTIFICATION_CONCURRENCY", "Notification deliveries in flight at once.",
            default: "\(defaults.notifications.concurrency)", range: 1...10_000)

        /// All of them, in the order of `weft serve --help`.
        public static let all: [Option] = [
            host, port, dataDir, maxConcurrentStreams, maxReceiveMessageSize, maxHeaderListSize, idleTimeout, drainTimeout,
            eventLoopThreads, tlsCert, tlsKey, tlsClientCA, tlsRequireClientCert, insecurePlaintext, adminListen, metricsToken,
            reflection, logFormat, logLevel, storeSync, logRetentionDays, tokenTTL, refreshTokenTTL, passwordHashThreads,
            passwordHashQueue, loginFailuresPerAccount, loginFailuresPerAddress, rateLimit, workflowCacheSize, scryptLogN,
            workers, leaseSeconds, workerDrainTimeout, otelEndpoint, traceSampler, traceSamplerArg, serviceName, costRate,
            egressAllow, egressMaxResponseBytes, maxTemplateBytes, maxTaskOutputBytes, maxExecutionBytes, maxAttemptTimeout,
            admissionTaskWait, admissionCommitWait, maxExecutionsInFlight, plan, defaultPlan, orgWorkerShare, maxStreamsPerUser, secretsKeyFile, secretsOldKeyFile, publicURL, smtpHost,
            smtpPort, smtpUsername, smtpPasswordFile, smtpFrom, smtpTLS, smtpCAFile, notificationMaxAttempts,
            notificationRate, notificationBurst, notificationConcurrency, budgetInterval, executionRetentionDays, metricsOrgs, metricsWorkflowsPerOrg,
            webDir, traceViewerURL, enableTestServices, authSecret, secretsKey, smtpPassword,
        ]
    }
}
