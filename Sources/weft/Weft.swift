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
// threads (see ARCHITECTURE.md, known pitfalls).
@main
struct Weft: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft",
        abstract: "Weft: workflows as a service — gRPC and REST on one port, durable execution, observability.",
        discussion: """
            Every `serve` option can also be set by the environment variable shown
            in its help (a flag wins over the variable).
            """,
        subcommands: [Serve.self])
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server: gRPC (HTTP/2) and HTTP/1.1 on one port.",
        discussion: """
            Logs `listening on HOST:PORT` once ready. SIGTERM or SIGINT drains:
            health turns NOT_SERVING, connections get GOAWAY, in-flight calls
            finish (up to --drain-timeout), then the process exits 0.
            """)

    @Option(help: "Address to bind. [env: WEFT_HOST] (default: 127.0.0.1)")
    var host: String?

    @Option(help: "Port to bind; 0 picks a free one. [env: WEFT_PORT] (default: 8080)")
    var port: Int?

    @Option(help: "Directory for data files, created if missing. [env: WEFT_DATA_DIR] (default: ./weft-data)")
    var dataDir: String?

    @Option(help: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. [env: WEFT_MAX_CONCURRENT_STREAMS] (default: 100)")
    var maxConcurrentStreams: Int?

    @Option(help: "Largest request message in bytes (also the HTTP body limit). [env: WEFT_MAX_RECEIVE_MESSAGE_SIZE] (default: 4194304)")
    var maxReceiveMessageSize: Int?

    @Option(help: "Largest request header list in bytes. [env: WEFT_MAX_HEADER_LIST_SIZE] (default: 16384)")
    var maxHeaderListSize: Int?

    @Option(help: "Seconds before an idle connection is closed. [env: WEFT_IDLE_TIMEOUT] (default: 300)")
    var idleTimeout: Int?

    @Option(help: "Seconds a graceful shutdown waits for in-flight calls. [env: WEFT_DRAIN_TIMEOUT] (default: 30)")
    var drainTimeout: Int?

    @Option(help: "Event-loop threads; 0 means half the cores, at least one. [env: WEFT_EVENT_LOOP_THREADS] (default: 0)")
    var eventLoopThreads: Int?

    @Option(help: "Log format: text or json. [env: WEFT_LOG_FORMAT] (default: text)")
    var logFormat: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical. [env: WEFT_LOG_LEVEL] (default: info)")
    var logLevel: String?

    @Option(help: "SQLite synchronous mode of the main database: full (fsync per commit) or normal. [env: WEFT_STORE_SYNC] (default: full)")
    var storeSync: String?

    @Option(help: "Days execution log entries are kept. [env: WEFT_LOG_RETENTION_DAYS] (default: 30)")
    var logRetentionDays: Int?

    @Option(help: "Seconds a login token is valid. [env: WEFT_TOKEN_TTL] (default: 86400)")
    var tokenTtl: Int?

    @Option(help: "Workflow definitions cached in memory; 0 turns the cache off. [env: WEFT_WORKFLOW_CACHE_SIZE] (default: 10000)")
    var workflowCacheSize: Int?

    @Option(help: "scrypt cost of password hashes as log2(N), 10 to 20. [env: WEFT_SCRYPT_LOG_N] (default: 15)")
    var scryptLogN: Int?

    @Option(help: "In-process workers (task attempts of built-in types run at once); 0 runs none (tasks stay queued). [env: WEFT_WORKERS] (default: 64 per core)")
    var workers: Int?

    @Option(help: "Seconds an in-process worker's lease lasts before a task is given to another worker (heartbeats renew it). [env: WEFT_LEASE_SECONDS] (default: 60)")
    var leaseSeconds: Int?

    @Option(help: "OTLP/HTTP base URL to export traces to (spans go to <url>/v1/traces); tracing is off without one. [env: OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as the full URL]")
    var otelEndpoint: String?

    @Option(help: "Trace sampler: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio. [env: OTEL_TRACES_SAMPLER] (default: parentbased_traceidratio)")
    var traceSampler: String?

    @Option(help: "Sampling ratio of the ratio samplers, 0 to 1. [env: OTEL_TRACES_SAMPLER_ARG] (default: 0.01)")
    var traceSamplerArg: Double?

    @Option(help: "service.name of the spans. [env: OTEL_SERVICE_NAME] (default: weft)")
    var serviceName: String?

    @Option(help: "A cost model rate, NAME=DOLLARS; repeatable. Names: attempt, worker_second, worker_second.<task type>, request, egress_mb (docs/COST.md). [env: WEFT_COST_RATES, comma-separated]")
    var costRate: [String] = []

    @Flag(help: "Register weft.testing.v1.EchoService, for tests and benchmarks only. [env: WEFT_ENABLE_TEST_SERVICES=1]")
    var enableTestServices = false

    func run() async throws {
        let env = Environment()
        let format = try env.choice(logFormat, "WEFT_LOG_FORMAT", default: WeftLogHandler.Format.text)
        let level = try env.choice(logLevel, "WEFT_LOG_LEVEL", default: Logger.Level.info)
        // Every line logged inside a span carries its trace_id and span_id.
        LoggingSystem.bootstrap(
            { label, provider in WeftLogHandler(label: label, format: format, level: level, metadataProvider: provider) },
            metadataProvider: Telemetry.loggingMetadataProvider())
        let logger = Logger(label: "weft")

        var config = WeftServerConfig()
        config.rpc.host = env.string(host, "WEFT_HOST", default: config.rpc.host)
        config.rpc.port = try env.int(port, "WEFT_PORT", default: config.rpc.port, range: 0...65535)
        config.dataDirectory = env.string(dataDir, "WEFT_DATA_DIR", default: config.dataDirectory)
        config.rpc.maxConcurrentStreams = try env.int(
            maxConcurrentStreams, "WEFT_MAX_CONCURRENT_STREAMS", default: config.rpc.maxConcurrentStreams, range: 1...100_000)
        config.rpc.maxReceiveMessageSize = try env.int(
            maxReceiveMessageSize, "WEFT_MAX_RECEIVE_MESSAGE_SIZE", default: config.rpc.maxReceiveMessageSize,
            range: 1024...(1 << 30))
        config.rpc.maxHeaderListSize = try env.int(
            maxHeaderListSize, "WEFT_MAX_HEADER_LIST_SIZE", default: config.rpc.maxHeaderListSize, range: 1024...(1 << 20))
        config.rpc.idleTimeout = .seconds(
            try env.int(idleTimeout, "WEFT_IDLE_TIMEOUT", default: 300, range: 1...86_400))
        config.rpc.drainTimeout = .seconds(
            try env.int(drainTimeout, "WEFT_DRAIN_TIMEOUT", default: 30, range: 0...3600))
        config.rpc.eventLoopThreads = try env.int(
            eventLoopThreads, "WEFT_EVENT_LOOP_THREADS", default: 0, range: 0...256)
        config.enableTestServices = enableTestServices || env.flag("WEFT_ENABLE_TEST_SERVICES")
        config.storeSync = try env.choice(storeSync, "WEFT_STORE_SYNC", default: SQLiteStore.Configuration.Synchronous.full)
        config.logRetention = .seconds(
            86_400 * (try env.int(logRetentionDays, "WEFT_LOG_RETENTION_DAYS", default: 30, range: 1...36_500)))
        config.tokenLifetime = .seconds(try env.int(tokenTtl, "WEFT_TOKEN_TTL", default: 86_400, range: 60...31_536_000))
        config.workflowCacheSize = try env.int(
            workflowCacheSize, "WEFT_WORKFLOW_CACHE_SIZE", default: 10_000, range: 0...10_000_000)
        config.scryptLogN = try env.int(scryptLogN, "WEFT_SCRYPT_LOG_N", default: 15, range: 10...20)
        config.workers = try env.int(
            workers, "WEFT_WORKERS", default: max(64, 64 * ProcessInfo.processInfo.activeProcessorCount), range: 0...10_000)
        config.leaseSeconds = try env.int(leaseSeconds, "WEFT_LEASE_SECONDS", default: 60, range: 1...86_400)
        config.tracing = try tracingConfig(env)
        config.costRates = try costRates(env)
        // A secret only from the environment: flags show up in `ps`.
        config.authSecret = env.values["WEFT_AUTH_SECRET"]

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
        if let base = otelEndpoint ?? env.values["OTEL_EXPORTER_OTLP_ENDPOINT"].flatMap({ $0.isEmpty ? nil : $0 }) {
            try Self.checkURL(base, otelEndpoint != nil ? "--otel-endpoint" : "OTEL_EXPORTER_OTLP_ENDPOINT")
            config.tracesEndpoint = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
        }
        if otelEndpoint == nil, let full = env.values["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], !full.isEmpty {
            try Self.checkURL(full, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            config.tracesEndpoint = full
        }
        if disabled { config.tracesEndpoint = nil }
        config.sampler = try env.choice(traceSampler, "OTEL_TRACES_SAMPLER", flag: "--trace-sampler", default: config.sampler)
        if let ratio = traceSamplerArg {
            config.samplerArgument = ratio
        } else if let raw = env.values["OTEL_TRACES_SAMPLER_ARG"] {
            guard let ratio = Double(raw) else { throw ValidationError("OTEL_TRACES_SAMPLER_ARG=\(raw) is not a number") }
            config.samplerArgument = ratio
        }
        guard (0...1).contains(config.samplerArgument) else {
            let source = traceSamplerArg != nil ? "--trace-sampler-arg" : "OTEL_TRACES_SAMPLER_ARG"
            throw ValidationError("\(source) must be in 0...1, got \(config.samplerArgument)")
        }
        config.serviceName = env.string(serviceName, "OTEL_SERVICE_NAME", default: config.serviceName)
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
        let fromEnv = (env.values["WEFT_COST_RATES"] ?? "").split(separator: ",").map { String($0) }
        for (source, entry) in fromEnv.map({ ("WEFT_COST_RATES", $0) }) + costRate.map({ ("--cost-rate", $0) }) {
            do {
                try rates.set(entry.trimmingCharacters(in: .whitespaces))
            } catch {
                throw ValidationError("\(source) \(entry): \(error)")
            }
        }
        return rates
    }
}

/// Resolves an option from its flag, else its `WEFT_*` variable, else the
/// default, with a clear error for values that do not parse.
struct Environment {
    let values = ProcessInfo.processInfo.environment

    func string(_ flag: String?, _ name: String, default value: String) -> String {
        flag ?? values[name] ?? value
    }

    func int(_ flag: Int?, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        let resolved: Int
        let source: String
        if let flag {
            resolved = flag
            source = Self.flagName(name)
        } else if let raw = values[name] {
            guard let parsed = Int(raw) else { throw ValidationError("\(name)=\(raw) is not a whole number") }
            resolved = parsed
            source = name
        } else {
            resolved = value
            source = Self.flagName(name)
        }
        guard range.contains(resolved) else {
            throw ValidationError("\(source) must be in \(range.lowerBound)...\(range.upperBound), got \(resolved)")
        }
        return resolved
    }

    /// `WEFT_MAX_HEADER_LIST_SIZE` -> `--max-header-list-size`.
    static func flagName(_ variable: String) -> String {
        "--" + variable.dropFirst("WEFT_".count).lowercased().replacingOccurrences(of: "_", with: "-")
    }

    func flag(_ name: String) -> Bool {
        guard let raw = values[name]?.lowercased() else { return false }
        return ["1", "true", "yes", "on"].contains(raw)
    }

    /// `flagName` names the flag in errors when the variable is not a
    /// `WEFT_*` one (the OpenTelemetry variables).
    func choice<T: RawRepresentable & CaseIterable>(
        _ flag: String?, _ name: String, flag flagName: String? = nil, default value: T
    ) throws -> T
    where T.RawValue == String {
        guard let raw = flag ?? values[name] else { return value }
        guard let parsed = T(rawValue: raw.lowercased()) else {
            let source = flag != nil ? "\(flagName ?? Self.flagName(name)) \(raw)" : "\(name)=\(raw)"
            throw ValidationError("\(source): expected one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return parsed
    }
}


