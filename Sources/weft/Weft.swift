import ArgumentParser
import Foundation
import Logging
import WeftObservability
import WeftRPC
import WeftServer
import WeftStore
import WeftSQLite
import WeftEngine

// The entry point is an @main type, not main.swift: top-level variables in
// main.swift are main-actor isolated, and nghttp2 callbacks run on event-loop
// threads (the team's architecture notes list this among the known pitfalls).
@main
struct Weft: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft",
        abstract: "Weft: workflows as a service — gRPC and REST on one port, durable execution, observability.",
        discussion: """
            Every `serve` option can also be set by the environment variable shown
            in its help (a flag wins over the variable).
            """,
        subcommands: [Serve.self, Secrets.self, Orgs.self, Auth.self, Analytics.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: gRPC (HTTP/2) and HTTP/1.1 on one port.",
        discussion: """
            Logs `listening on HOST:PORT` once ready. SIGTERM or SIGINT drains:
            health turns NOT_SERVING, the in-process workers stop leasing and
            let running attempts finish (up to --worker-drain-timeout),
            connections get GOAWAY, in-flight calls finish (up to
            --drain-timeout), then the process exits 0.
            """)

    // Each flag's help (with its variable, range and default) comes from
    // `WeftServerConfig.Options`, and the defaults from `WeftServerConfig`;
    // a flag is declared here and read into the config in `config()`.
    typealias O = WeftServerConfig.Options

    @Option(help: ArgumentHelp(O.host.help)) var host: String?
    @Option(help: ArgumentHelp(O.port.help)) var port: Int?
    @Option(help: ArgumentHelp(O.dataDir.help)) var dataDir: String?
    @Option(help: ArgumentHelp(O.maxConcurrentStreams.help)) var maxConcurrentStreams: Int?
    @Option(help: ArgumentHelp(O.maxReceiveMessageSize.help)) var maxReceiveMessageSize: Int?
    @Option(help: ArgumentHelp(O.maxHeaderListSize.help)) var maxHeaderListSize: Int?
    @Option(help: ArgumentHelp(O.idleTimeout.help)) var idleTimeout: Int?
    @Option(help: ArgumentHelp(O.drainTimeout.help)) var drainTimeout: Int?
    @Option(help: ArgumentHelp(O.eventLoopThreads.help)) var eventLoopThreads: Int?
    @Option(help: ArgumentHelp(O.logFormat.help)) var logFormat: String?
    @Option(help: ArgumentHelp(O.logLevel.help)) var logLevel: String?
    @Option(help: ArgumentHelp(O.storeSync.help)) var storeSync: String?
    @Option(help: ArgumentHelp(O.logRetentionDays.help)) var logRetentionDays: Int?
    @Option(help: ArgumentHelp(O.tokenTTL.help)) var tokenTtl: Int?
    @Option(help: ArgumentHelp(O.workflowCacheSize.help)) var workflowCacheSize: Int?
    @Option(help: ArgumentHelp(O.scryptLogN.help)) var scryptLogN: Int?
    @Option(help: ArgumentHelp(O.workers.help)) var workers: Int?
    @Option(help: ArgumentHelp(O.leaseSeconds.help)) var leaseSeconds: Int?
    @Option(help: ArgumentHelp(O.workerDrainTimeout.help)) var workerDrainTimeout: Int?
    @Option(help: ArgumentHelp(O.otelEndpoint.help)) var otelEndpoint: String?
    @Option(help: ArgumentHelp(O.traceSampler.help)) var traceSampler: String?
    @Option(help: ArgumentHelp(O.traceSamplerArg.help)) var traceSamplerArg: Double?
    @Option(help: ArgumentHelp(O.serviceName.help)) var serviceName: String?
    @Option(help: ArgumentHelp(O.costRate.help)) var costRate: [String] = []
    @Option(help: ArgumentHelp(O.egressAllow.help)) var egressAllow: [String] = []
    @Option(help: ArgumentHelp(O.egressMaxResponseBytes.help)) var egressMaxResponseBytes: Int?
    @Option(help: ArgumentHelp(O.maxTemplateBytes.help)) var maxTemplateBytes: Int?
    @Option(help: ArgumentHelp(O.maxTaskOutputBytes.help)) var maxTaskOutputBytes: Int?
    @Option(help: ArgumentHelp(O.maxExecutionBytes.help)) var maxExecutionBytes: Int?
    @Option(help: ArgumentHelp(O.maxAttemptTimeout.help)) var maxAttemptTimeout: Int?
    @Option(help: ArgumentHelp(O.admissionTaskWait.help)) var admissionTaskWait: Int?
    @Option(help: ArgumentHelp(O.admissionCommitWait.help)) var admissionCommitWait: Int?
    @Option(help: ArgumentHelp(O.maxExecutionsInFlight.help)) var maxExecutionsInFlight: Int?
    @Option(help: ArgumentHelp(O.plan.help)) var plan: [String] = []
    @Option(help: ArgumentHelp(O.defaultPlan.help)) var defaultPlan: String?
    @Option(help: ArgumentHelp(O.orgWorkerShare.help)) var orgWorkerShare: Int?
    @Option(help: ArgumentHelp(O.secretsKeyFile.help)) var secretsKeyFile: String?
    @Option(help: ArgumentHelp(O.publicURL.help)) var publicUrl: String?
    @Option(help: ArgumentHelp(O.smtpHost.help)) var smtpHost: String?
    @Option(help: ArgumentHelp(O.smtpPort.help)) var smtpPort: Int?
    @Option(help: ArgumentHelp(O.smtpUsername.help)) var smtpUsername: String?
    @Option(help: ArgumentHelp(O.smtpPasswordFile.help)) var smtpPasswordFile: String?
    @Option(help: ArgumentHelp(O.smtpFrom.help)) var smtpFrom: String?
    @Option(help: ArgumentHelp(O.smtpTLS.help)) var smtpTls: String?
    @Option(help: ArgumentHelp(O.smtpCAFile.help)) var smtpCaFile: String?
    @Option(help: ArgumentHelp(O.notificationMaxAttempts.help)) var notificationMaxAttempts: Int?
    @Option(help: ArgumentHelp(O.notificationRate.help)) var notificationRate: Int?
    @Option(help: ArgumentHelp(O.notificationBurst.help)) var notificationBurst: Int?
    @Option(help: ArgumentHelp(O.notificationConcurrency.help)) var notificationConcurrency: Int?
    @Option(help: ArgumentHelp(O.budgetInterval.help)) var budgetInterval: Int?
    @Option(help: ArgumentHelp(O.executionRetentionDays.help)) var executionRetentionDays: Int?
    @Option(help: ArgumentHelp(O.metricsOrgs.help)) var metricsOrgs: Int?
    @Option(help: ArgumentHelp(O.metricsWorkflowsPerOrg.help)) var metricsWorkflowsPerOrg: Int?
    @Option(help: ArgumentHelp(O.webDir.help)) var webDir: String?
    @Option(help: ArgumentHelp(O.traceViewerURL.help)) var traceViewerUrl: String?
    @Option(help: ArgumentHelp(O.maxStreamsPerUser.help)) var maxStreamsPerUser: Int?
    @Option(help: ArgumentHelp(O.secretsOldKeyFile.help)) var secretsOldKeyFile: [String] = []
    @Flag(help: ArgumentHelp(O.enableTestServices.help)) var enableTestServices = false
    @Option(help: ArgumentHelp(O.refreshTokenTTL.help)) var refreshTokenTtl: Int?
    @Option(help: ArgumentHelp(O.passwordHashThreads.help)) var passwordHashThreads: Int?
    @Option(help: ArgumentHelp(O.passwordHashQueue.help)) var passwordHashQueue: Int?
    @Option(help: ArgumentHelp(O.loginFailuresPerAccount.help)) var loginFailuresPerAccount: Int?
    @Option(help: ArgumentHelp(O.loginFailuresPerAddress.help)) var loginFailuresPerAddress: Int?
    @Option(help: ArgumentHelp(O.rateLimit.help)) var rateLimit: [String] = []
    @Option(help: ArgumentHelp(O.tlsCert.help)) var tlsCert: String?
    @Option(help: ArgumentHelp(O.tlsKey.help)) var tlsKey: String?
    @Option(help: ArgumentHelp(O.tlsClientCA.help)) var tlsClientCa: String?
    @Flag(help: ArgumentHelp(O.tlsRequireClientCert.help)) var tlsRequireClientCert = false
    @Flag(help: ArgumentHelp(O.insecurePlaintext.help)) var insecurePlaintext = false
    @Option(help: ArgumentHelp(O.adminListen.help)) var adminListen: String?
    @Option(help: ArgumentHelp(O.metricsToken.help)) var metricsToken: String?
    @Option(help: ArgumentHelp(O.reflection.help)) var reflection: String?

    func run() async throws {
        let env = Environment()
        let format = try env.choice(logFormat, O.logFormat, default: WeftLogHandler.Format.text)
        let level = try env.choice(logLevel, O.logLevel, default: Logger.Level.info)
        // Every line logged inside a span carries its trace_id and span_id.
        LoggingSystem.bootstrap(
            { label, provider in WeftLogHandler(label: label, format: format, level: level, metadataProvider: provider) },
            metadataProvider: Telemetry.loggingMetadataProvider())
        let logger = Logger(label: "weft")

        var config = WeftServerConfig()
        config.rpc.host = env.string(host, O.host, default: config.rpc.host)
        config.rpc.port = try env.int(port, O.port, default: config.rpc.port)
        config.store.dataDirectory = env.string(dataDir, O.dataDir, default: config.store.dataDirectory)
        config.rpc.maxConcurrentStreams = try env.int(
            maxConcurrentStreams, O.maxConcurrentStreams, default: config.rpc.maxConcurrentStreams)
        config.rpc.maxReceiveMessageSize = try env.int(
            maxReceiveMessageSize, O.maxReceiveMessageSize, default: config.rpc.maxReceiveMessageSize)
        config.rpc.maxHeaderListSize = try env.int(maxHeaderListSize, O.maxHeaderListSize, default: config.rpc.maxHeaderListSize)
        config.rpc.idleTimeout = .seconds(try env.int(idleTimeout, O.idleTimeout, default: config.rpc.idleTimeout))
        config.rpc.drainTimeout = .seconds(try env.int(drainTimeout, O.drainTimeout, default: config.rpc.drainTimeout))
        config.rpc.eventLoopThreads = try env.int(eventLoopThreads, O.eventLoopThreads, default: config.rpc.eventLoopThreads)
        config.enableTestServices = enableTestServices || env.flag("WEFT_ENABLE_TEST_SERVICES")
        config.store.sync = try env.choice(storeSync, O.storeSync, default: config.store.sync)
        config.store.logRetention = .seconds(
            86_400
                * (try env.int(
                    logRetentionDays, O.logRetentionDays,
                    default: Int(config.store.logRetention.components.seconds) / 86_400)))
        config.auth.tokenLifetime = .seconds(try env.int(tokenTtl, O.tokenTTL, default: config.auth.tokenLifetime))
        config.workflowCacheSize = try env.int(workflowCacheSize, O.workflowCacheSize, default: config.workflowCacheSize)
        config.auth.scryptLogN = try env.int(scryptLogN, O.scryptLogN, default: config.auth.scryptLogN)
        config.engine.workers = try env.int(workers, O.workers, default: config.engine.workers)
        config.engine.leaseSeconds = try env.int(leaseSeconds, O.leaseSeconds, default: config.engine.leaseSeconds)
        config.engine.drainTimeout = .seconds(
            try env.int(workerDrainTimeout, O.workerDrainTimeout, default: config.engine.drainTimeout))
        config.tracing = try tracingConfig(env)
        config.engine.costRates = try costRates(env)
        config.engine.egress.allow =
            (env.values[O.egressAllow.environment] ?? "").split(separator: ",").map { String($0) } + egressAllow
        do {
            _ = try config.engine.egress.policy()
        } catch {
            throw ValidationError("\(O.egressAllow.flag): \(error)")
        }
        config.engine.egress.maxResponseBytes = try env.int(
            egressMaxResponseBytes, O.egressMaxResponseBytes, default: config.engine.egress.maxResponseBytes)
        let limits = config.engine.limits
        config.engine.limits.maxTemplateBytes = try env.int(maxTemplateBytes, O.maxTemplateBytes, default: limits.maxTemplateBytes)
        config.engine.limits.maxTaskOutputBytes = try env.int(
            maxTaskOutputBytes, O.maxTaskOutputBytes, default: limits.maxTaskOutputBytes)
        config.engine.limits.maxExecutionBytes = try env.int(maxExecutionBytes, O.maxExecutionBytes, default: limits.maxExecutionBytes)
        config.engine.limits.maxAttemptTimeoutMs = 1000 * Int64(
            try env.int(maxAttemptTimeout, O.maxAttemptTimeout, default: Int(limits.maxAttemptTimeoutMs / 1000)))
        let taskWait = try env.int(admissionTaskWait, O.admissionTaskWait, default: 25)
        config.engine.admission.taskWaitTarget = taskWait > 0 ? .milliseconds(taskWait) : nil
        let commitWait = try env.int(admissionCommitWait, O.admissionCommitWait, default: 100)
        config.engine.admission.commitWaitTarget = commitWait > 0 ? .milliseconds(commitWait) : nil
        config.engine.admission.maxExecutionsInFlight = try env.int(
            maxExecutionsInFlight, O.maxExecutionsInFlight, default: config.engine.admission.maxExecutionsInFlight)
        let planSpecs = (env.values[O.plan.environment] ?? "").split(separator: ";").map { (O.plan.environment, String($0)) }
            + plan.map { (O.plan.flag, $0) }
        for (source, spec) in planSpecs {
            do {
                try config.tenancy.plans.apply(spec.trimmingCharacters(in: .whitespaces))
            } catch {
                throw ValidationError("\(source) \(spec): \(error)")
            }
        }
        if let name = defaultPlan ?? env.values[O.defaultPlan.environment] {
            do {
                try config.tenancy.plans.setDefault(name)
            } catch {
                throw ValidationError("\(defaultPlan != nil ? O.defaultPlan.flag : O.defaultPlan.environment) \(name): \(error)")
            }
        }
        config.secrets.keyFile = secretsKeyFile ?? env.values[O.secretsKeyFile.environment]
        config.secrets.key = env.values[O.secretsKey.environment]
        config.secrets.oldKeyFiles = (env.values[O.secretsOldKeyFile.environment] ?? "").split(separator: ",").map(String.init)
            + secretsOldKeyFile
        config.tenancy.maxStreamsPerUser = try env.int(
            maxStreamsPerUser, O.maxStreamsPerUser, default: config.tenancy.maxStreamsPerUser)
        config.tenancy.workerSharePercent = try env.int(
            orgWorkerShare, O.orgWorkerShare, default: config.tenancy.workerSharePercent)
        try notifications(&config, env)
        // A secret only from the environment: flags show up in `ps`.
        config.auth.secret = env.values[O.authSecret.environment]
        try identity(&config, env)

        let metrics = WeftMetrics()
        metrics.bootstrapSwiftMetrics()
        do {
            try await WeftServer(config: config, logger: logger, metrics: metrics).run()
        } catch let error as WeftStartupError {
            logger.critical("\(error.description)")
            throw ExitCode(2)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
    }
}

extension Serve {
    /// Sessions, login limits, rate limits, TLS and the admin listener.
    func identity(_ config: inout WeftServerConfig, _ env: Environment) throws {
        config.auth.refreshLifetime = .seconds(
            try env.int(refreshTokenTtl, O.refreshTokenTTL, default: config.auth.refreshLifetime))
        config.auth.hashThreads = try env.int(passwordHashThreads, O.passwordHashThreads, default: config.auth.hashThreads)
        config.auth.hashQueue = try env.int(passwordHashQueue, O.passwordHashQueue, default: config.auth.hashQueue)
        config.auth.loginFailuresPerAccount = try env.int(
            loginFailuresPerAccount, O.loginFailuresPerAccount, default: config.auth.loginFailuresPerAccount)
        config.auth.loginFailuresPerAddress = try env.int(
            loginFailuresPerAddress, O.loginFailuresPerAddress, default: config.auth.loginFailuresPerAddress)
        let limits = (env.values[O.rateLimit.environment] ?? "").split(separator: ",").map { (O.rateLimit.environment, String($0)) }
            + rateLimit.map { (O.rateLimit.flag, $0) }
        for (source, spec) in limits {
            do {
                try config.auth.rateLimits.apply(spec.trimmingCharacters(in: .whitespaces))
            } catch {
                throw ValidationError("\(source): \(error)")
            }
        }
        let cert = tlsCert ?? env.values[O.tlsCert.environment]
        let key = tlsKey ?? env.values[O.tlsKey.environment]
        let clientCA = tlsClientCa ?? env.values[O.tlsClientCA.environment]
        let requireClientCert = tlsRequireClientCert || env.flag("WEFT_TLS_REQUIRE_CLIENT_CERT")
        switch (cert, key) {
        case (let cert?, let key?):
            config.listeners.tls = TLSSettings(
                certificateFile: cert, keyFile: key, clientCAFile: clientCA, requireClientCertificate: requireClientCert)
        case (nil, nil):
            guard clientCA == nil, !requireClientCert else {
                throw ValidationError("\(O.tlsClientCA.flag) and \(O.tlsRequireClientCert.flag) need \(O.tlsCert.flag) and \(O.tlsKey.flag)")
            }
        default:
            throw ValidationError("\(O.tlsCert.flag) and \(O.tlsKey.flag) go together")
        }
        if requireClientCert && clientCA == nil {
            throw ValidationError("\(O.tlsRequireClientCert.flag) needs \(O.tlsClientCA.flag)")
        }
        config.listeners.insecurePlaintext = insecurePlaintext || env.flag("WEFT_INSECURE_PLAINTEXT")
        if let listen = adminListen ?? env.values[O.adminListen.environment], !listen.isEmpty {
            guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
                (0...65535).contains(port), colon != listen.startIndex
            else { throw ValidationError("\(O.adminListen.flag) \(listen): expected HOST:PORT, e.g. 127.0.0.1:9090") }
            config.listeners.adminHost = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            config.listeners.adminPort = port
        }
        config.listeners.metricsToken = metricsToken ?? env.values[O.metricsToken.environment]
        config.listeners.reflection = try env.choice(reflection, O.reflection, default: config.listeners.reflection)
        if config.listeners.reflection == .admin && config.listeners.adminHost == nil {
            throw ValidationError("\(O.reflection.flag) admin needs \(O.adminListen.flag)")
        }
    }

    /// Tracing from the flags, else the standard OpenTelemetry variables.
    /// swift-otel reads those variables too and lets them win over code, so
    /// the ones resolved here are removed from the environment: a flag then
    /// wins over a variable, as for every other option.
    func tracingConfig(_ env: Environment) throws -> TracingConfig {
        var config = TracingConfig()
        // The variables that turn tracing off apply to an endpoint from the
        // environment; an explicit --otel-endpoint wins.
        let disabled = otelEndpoint == nil
            && (env.flag("OTEL_SDK_DISABLED") || env.values["OTEL_TRACES_EXPORTER"]?.lowercased() == "none")
        if let base = otelEndpoint ?? env.values[O.otelEndpoint.environment].flatMap({ $0.isEmpty ? nil : $0 }) {
            try Self.checkURL(base, otelEndpoint != nil ? O.otelEndpoint.flag : O.otelEndpoint.environment)
            config.tracesEndpoint = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
        }
        if otelEndpoint == nil, let full = env.values["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !full.isEmpty {
            try Self.checkURL(full, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            config.tracesEndpoint = full
        }
        if disabled { config.tracesEndpoint = nil }
        config.sampler = try env.choice(traceSampler, O.traceSampler, default: config.sampler)
        if let ratio = traceSamplerArg {
            config.samplerArgument = ratio
        } else if let raw = env.values[O.traceSamplerArg.environment] {
            guard let ratio = Double(raw) else {
                throw ValidationError("\(O.traceSamplerArg.environment)=\(raw) is not a number")
            }
            config.samplerArgument = ratio
        }
        guard (0...1).contains(config.samplerArgument) else {
            let source = traceSamplerArg != nil ? O.traceSamplerArg.flag : O.traceSamplerArg.environment
            throw ValidationError("\(source) must be in 0...1, got \(config.samplerArgument)")
        }
        config.serviceName = env.string(serviceName, O.serviceName, default: config.serviceName)
        config.serviceVersion = ProcessMetrics.version
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER",
            // Weft exports OTLP/HTTP protobuf only (the one trait it builds).
            "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ] {
            unsetenv(name)
        }
        return config
    }

    static func checkURL(_ text: String, _ source: String) throws {
        guard let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil
        else { throw ValidationError("\(source) \(text): expected an http(s) URL") }
    }

    func costRates(_ env: Environment) throws -> CostRates {
        var rates = CostRates()
        let fromEnv = (env.values[O.costRate.environment] ?? "").split(separator: ",").map { String($0) }
        for (source, entry) in fromEnv.map({ (O.costRate.environment, $0) }) + costRate.map({ (O.costRate.flag, $0) }) {
            do {
                try rates.set(entry.trimmingCharacters(in: .whitespaces))
            } catch {
                throw ValidationError("\(source) \(entry): \(error)")
            }
        }
        return rates
    }
}

extension Serve {
    /// Links, the server's SMTP server and delivery attempts.
    func notifications(_ config: inout WeftServerConfig, _ env: Environment) throws {
        let url = env.string(publicUrl, O.publicURL, default: config.notifications.publicURL)
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
            throw ValidationError("\(O.publicURL.flag) \(url) is not an http(s) URL")
        }
        config.notifications.publicURL = url
        config.notifications.smtpHost = smtpHost ?? env.values[O.smtpHost.environment]
        config.notifications.smtpPort = try env.int(smtpPort, O.smtpPort, default: config.notifications.smtpPort)
        config.notifications.smtpUsername = smtpUsername ?? env.values[O.smtpUsername.environment]
        config.notifications.smtpFrom = env.string(smtpFrom, O.smtpFrom, default: config.notifications.smtpFrom)
        let tls = env.string(smtpTls, O.smtpTLS, default: config.notifications.smtpTLS)
        guard ["required", "opportunistic", "none"].contains(tls) else {
            throw ValidationError("\(O.smtpTLS.flag) \(tls) is not required, opportunistic or none")
        }
        config.notifications.smtpTLS = tls
        config.notifications.smtpCAFile = smtpCaFile ?? env.values[O.smtpCAFile.environment]
        if let file = smtpPasswordFile ?? env.values[O.smtpPasswordFile.environment] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("\(O.smtpPasswordFile.flag) \(file) cannot be read")
            }
            config.notifications.smtpPassword = text.trimmingCharacters(in: .newlines)
        } else {
            config.notifications.smtpPassword = env.values[O.smtpPassword.environment]
        }
        config.notifications.maxAttempts = try env.int(
            notificationMaxAttempts, O.notificationMaxAttempts, default: config.notifications.maxAttempts)
        config.notifications.ratePerSecond = try env.int(
            notificationRate, O.notificationRate, default: config.notifications.ratePerSecond)
        config.notifications.burst = try env.int(notificationBurst, O.notificationBurst, default: config.notifications.burst)
        config.notifications.concurrency = try env.int(
            notificationConcurrency, O.notificationConcurrency, default: config.notifications.concurrency)
        config.analytics.budgetInterval = .seconds(
            try env.int(budgetInterval, O.budgetInterval, default: config.analytics.budgetInterval))
        config.analytics.executionRetentionDays = try env.int(
            executionRetentionDays, O.executionRetentionDays, default: config.analytics.executionRetentionDays)
        config.metricLabels.orgs = try env.int(metricsOrgs, O.metricsOrgs, default: config.metricLabels.orgs)
        config.metricLabels.workflowsPerOrg = try env.int(
            metricsWorkflowsPerOrg, O.metricsWorkflowsPerOrg, default: config.metricLabels.workflowsPerOrg)
        // Each labelled workflow has dozens of series (statuses, causes, a
        // duration histogram, cost parts): the product bounds them all.
        guard config.metricLabels.orgs * config.metricLabels.workflowsPerOrg <= 1000 else {
            throw ValidationError(
                "\(O.metricsOrgs.flag) \(config.metricLabels.orgs) × \(O.metricsWorkflowsPerOrg.flag) \(config.metricLabels.workflowsPerOrg) labels \(config.metricLabels.orgs * config.metricLabels.workflowsPerOrg) workflows; at most 1000 (each has dozens of series)")
        }
        config.web.directory = (webDir ?? env.values[O.webDir.environment]).flatMap { $0.isEmpty ? nil : $0 }
        if let template = traceViewerUrl ?? env.values[O.traceViewerURL.environment], !template.isEmpty {
            guard let url = URL(string: template.replacingOccurrences(of: "{traceId}", with: "0")),
                ["http", "https"].contains(url.scheme ?? ""), url.host != nil, template.contains("{traceId}")
            else {
                throw ValidationError("\(O.traceViewerURL.flag) \(template) must be an http(s) URL containing {traceId}")
            }
            config.web.traceViewerURL = template
        }
    }
}

/// Resolves an option from its flag, else its `WEFT_*` variable, else the
/// default, with a clear error for values that do not parse.
struct Environment {
    let values = ProcessInfo.processInfo.environment

    func string(_ flag: String?, _ option: WeftServerConfig.Option, default value: String) -> String {
        flag ?? values[option.environment] ?? value
    }

    /// A duration option given in whole seconds.
    func int(_ flag: Int?, _ option: WeftServerConfig.Option, default value: Duration) throws -> Int {
        try int(flag, option, default: Int(value.components.seconds))
    }

    func int(_ flag: Int?, _ option: WeftServerConfig.Option, default value: Int) throws -> Int {
        let name = option.environment
        let resolved: Int
        let source: String
        if let flag {
            resolved = flag
            source = option.flag
        } else if let raw = values[name] {
            guard let parsed = Int(raw) else { throw ValidationError("\(name)=\(raw) is not a whole number") }
            resolved = parsed
            source = name
        } else {
            resolved = value
            source = option.flag
        }
        if let range = option.range, !range.contains(resolved) {
            throw ValidationError("\(source) must be in \(range.lowerBound)...\(range.upperBound), got \(resolved)")
        }
        return resolved
    }

    func flag(_ name: String) -> Bool {
        guard let raw = values[name]?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(raw)
    }

    func choice<T: RawRepresentable & CaseIterable>(
        _ flag: String?, _ option: WeftServerConfig.Option, default value: T
    ) throws -> T
    where T.RawValue == String {
        guard let raw = flag ?? values[option.environment] else { return value }
        guard let parsed = T(rawValue: raw.lowercased()) else {
            let source = flag != nil ? "\(option.flag) \(raw)" : "\(option.environment)=\(raw)"
            throw ValidationError("\(source): expected one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return parsed
    }
}


