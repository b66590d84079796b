import ArgumentParser
import Foundation
import NIOPosix

@main
struct LoadTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weft-loadtest",
        abstract: "Load-test any reachable Weft: scenarios and SLOs in files, the knee found and charted.",
        discussion: """
            Scenarios live in loadtest/scenarios/ (YAML or JSON), the SLO targets in loadtest/slo.yaml.
            Exit status: 0 all good, 1 a target missed (verify, knee), 2 a usage or setup error.
            """,
        subcommands: [Run.self, Verify.self, Knee.self])
}

/// Where the server is and how to load it (every subcommand).
struct CommonOptions: ParsableArguments {
    @Option(help: "The server: http://HOST:PORT (h2c and HTTP/1.1) or https://HOST:PORT (TLS, ALPN h2/http1.1).")
    var target = ProcessInfo.processInfo.environment["WEFT_TARGET"] ?? "http://127.0.0.1:8080"
    @Option(help: "An access token (POST /users/login); also WEFT_TOKEN.")
    var token: String?
    @Option(name: .customLong("api-key"), help: "An API key (weft_…) instead of a token; also WEFT_API_KEY.")
    var apiKey: String?
    @Option(name: .customLong("ca-file"), help: "TLS: the PEM CA file that signed the server's certificate.")
    var caFile: String?
    @Flag(help: "TLS: do not check the server's certificate (test deployments only).")
    var insecure = false
    @Option(help: "REST calls over h1 (HTTP/1.1) or h2 (HTTP/2).")
    var rest = "h1"
    @Option(help: "Event-loop threads that generate load (each drives its share over its own connections).")
    var threads = 1
    @Option(help: "Seconds between progress lines on stderr (0: none).")
    var progress = 1.0
    @Option(name: .customLong("metrics-token"), help: "Bearer token for /metrics, when the server requires one; also WEFT_METRICS_TOKEN.")
    var metricsToken: String?
    @Option(name: .customLong("drain-timeout"), help: "Seconds to wait for answers and for executions to finish after the load.")
    var drainTimeout = 60.0
    @Option(name: .customLong("agreement-margin"), help: "Flag harness and server figures that differ by more than this fraction.")
    var agreementMargin = 0.25
    @Flag(help: "No progress lines and no table (the JSON report still goes to --out).")
    var quiet = false

    func runOptions() throws -> RunOptions {
        let parsed = try Target.parse(target)
        guard let restProtocol = Target.RESTProtocol(rawValue: rest) else { throw HarnessError.usage("--rest must be h1 or h2") }
        let environment = ProcessInfo.processInfo.environment
        let credential = apiKey ?? token ?? environment["WEFT_API_KEY"] ?? environment["WEFT_TOKEN"]
        if let key = apiKey ?? environment["WEFT_API_KEY"], !key.hasPrefix("weft_") {
            throw HarnessError.usage("\(apiKey != nil ? "--api-key" : "WEFT_API_KEY"): an API key starts with weft_")
        }
        guard (1...64).contains(threads) else { throw HarnessError.usage("--threads must be 1 to 64") }
        guard drainTimeout > 0 else { throw HarnessError.usage("--drain-timeout must be positive") }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw HarnessError.usage("--ca-file \(caFile) cannot be read")
        }
        let target = Target(
            host: parsed.host, port: parsed.port, tls: parsed.tls, caFile: caFile, insecure: insecure, credential: credential,
            restProtocol: restProtocol)
        return RunOptions(
            target: target, threads: threads, progressInterval: quiet ? 0 : progress,
            metricsToken: metricsToken ?? environment["WEFT_METRICS_TOKEN"],
            drainTimeout: drainTimeout, agreementMargin: agreementMargin, verbose: !quiet)
    }
}

/// Overrides of a scenario's load.
struct LoadOverrides: ParsableArguments {
    @Option(help: "Open loop: calls per second (replaces the scenario's rate, steps or ramp).")
    var rate: Double?
    @Option(help: "Closed loop: calls in flight (makes the load closed-loop).")
    var concurrency: Int?
    @Option(help: "Seconds of load (per step).")
    var duration: Double?
    @Option(help: "Seconds of warm-up, not counted.")
    var warmup: Double?
    @Option(help: "Stop after this many calls.")
    var count: Int?
    @Option(help: "Connections per kind (HTTP/2, HTTP/1.1).")
    var connections: Int?
    @Option(help: "Concurrent streams per HTTP/2 connection.")
    var streams: Int?

    func apply(_ scenario: inout Scenario) throws {
        if let rate {
            scenario.load.mode = .open
            scenario.load.rate = rate
            scenario.load.steps = nil
            scenario.load.ramp = nil
        }
        if let concurrency {
            scenario.load.mode = .closed
            scenario.load.concurrency = concurrency
        }
        if let duration { scenario.load.duration = duration }
        if let warmup { scenario.load.warmup = warmup }
        if let count { scenario.load.count = count }
        if let connections { scenario.load.connections = connections }
        if let streams { scenario.load.streams = streams }
        try scenario.validate(path: scenario.file ?? scenario.name)
    }
}

enum Output {
    static func write(_ value: some Encodable, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(value)
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: url)
    }

    static func say(_ text: String) { FileHandle.standardError.write(Data((text + "\n").utf8)) }
}

/// Runs `body` and maps harness errors to exit code 2 with their message.
func harness<T>(_ body: () async throws -> T) async throws -> T {
    do {
        return try await body()
    } catch let error as HarnessError {
        Output.say("weft-loadtest: \(error)")
        throw ExitCode(2)
    } catch let error as RPCFailure {
        Output.say("weft-loadtest: \(error)")
        throw ExitCode(2)
    }
}

extension LoadTestCommand {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run one scenario and report (table on stdout, JSON with --out).")
        @Argument(help: "The scenario file (YAML or JSON).") var scenario: String
        @OptionGroup var common: CommonOptions
        @OptionGroup var load: LoadOverrides
        @Option(help: "Write the JSON report here.") var out: String?

        func run() async throws {
            try await harness {
                var scenario = try Scenario.load(path: self.scenario)
                try load.apply(&scenario)
                let options = try common.runOptions()
                let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads + 1)
                let report = try await ScenarioRunner(group: group, options: options).run(scenario)
                if let out { try Output.write(report, to: out) }
                if !common.quiet { print(ReportTable.render(report)) }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the SLO file's checks; exit 1 with a table of what misses.")
        @Option(help: "The SLO file.") var slo = "loadtest/slo.yaml"
        @Option(name: .customLong("only"), help: "Run only checks whose scenario file contains this text (repeatable).")
        var only: [String] = []
        @OptionGroup var common: CommonOptions
        @Option(help: "A directory for each check's JSON report and verify.json.") var out: String?
        @Option(help: "Scale every check's duration by this factor (a quick smoke: 0.2).") var durationScale = 1.0

        func run() async throws {
            let missed = try await harness { () -> Bool in
                let file = try SLOFile.load(path: slo)
                var options = try common.runOptions()
                if let margin = file.agreementMargin { options.agreementMargin = margin }
                let base = URL(fileURLWithPath: slo).deletingLastPathComponent()
                let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads + 1)
                var results: [SLOResult] = []
                let checks = file.checks.filter { check in only.isEmpty || only.contains { check.scenario.contains($0) } }
                guard !checks.isEmpty else { throw HarnessError.usage("no check of \(slo) matches --only \(only)") }
                for (index, check) in checks.enumerated() {
                    let path = check.scenario.hasPrefix("/") ? check.scenario : base.appendingPathComponent(check.scenario).path
                    var scenario = try Scenario.load(path: path)
                    if let rate = check.rate {
                        scenario.load.mode = .open
                        scenario.load.rate = rate
                        scenario.load.steps = nil
                        scenario.load.ramp = nil
                    }
                    if let concurrency = check.concurrency {
                        scenario.load.mode = .closed
                        scenario.load.concurrency = concurrency
                    }
                    if let duration = check.duration { scenario.load.duration = duration }
                    if let warmup = check.warmup { scenario.load.warmup = warmup }
                    if durationScale != 1, let duration = scenario.load.duration { scenario.load.duration = max(1, duration * durationScale) }
                    try scenario.validate(path: path)
                    if !common.quiet { Output.say("== \(scenario.name) (\(index + 1)/\(checks.count))") }
                    let report = try await ScenarioRunner(group: group, options: options).run(scenario)
                    // Numbered: a file may check one scenario more than once.
                    if let out { try Output.write(report, to: "\(out)/\(index + 1)-\(scenario.name).json") }
                    if !common.quiet { print(ReportTable.render(report)) }
                    results += SLOResult.evaluate(check, report: report)
                }
                var rows = [["scenario", "target", "bound", "measured", "verdict"]]
                for result in results {
                    rows.append([result.scenario, result.target, result.bound, result.measured.map { ReportTable.f($0) } ?? "—",
                                 result.met ? "met" : "MISSED\(result.why.map { ": \($0)" } ?? "")"])
                }
                print(ReportTable.table(rows))
                let misses = results.filter { !$0.met }
                print(misses.isEmpty ? "SLO verdict: all \(results.count) targets met" : "SLO verdict: \(misses.count) of \(results.count) targets missed")
                if let out { try Output.write(results, to: "\(out)/verify.json") }
                return !misses.isEmpty
            }
            if missed { throw ExitCode(1) }
        }
    }

    struct Knee: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Step the offered rate up until an SLO breaks; report the highest rate within SLO and chart it (SVG).")
        @Argument(help: "The scenario file (an open-loop scenario; its rate is replaced per step).") var scenario: String
        @Option(help: "Offered rates to step through, in order (\"250 500 750\").") var rates: String
        @Option(help: "Seconds per step.") var duration: Double?
        @Option(help: "Seconds of warm-up per step.") var warmup: Double?
        @Option(name: .customLong("max-p99-ms"), help: "A step breaks its SLO above this p99 (executions: the larger of createdAt→completedAt and the call's latency; else call latency).")
        var maxP99 = 1000.0
        @Option(name: .customLong("max-p50-ms"), help: "A step breaks its SLO above this p50.") var maxP50: Double?
        @Option(name: .customLong("min-completion"), help: "Executions: completions / arrivals in the window at least this.")
        var minCompletion = 0.95
        @Option(name: .customLong("keep-going"), help: "Steps to run past the first breach (to chart the collapse or the plateau).")
        var keepGoing = 0
        @OptionGroup var common: CommonOptions
        @Option(help: "A directory for knee.json, knee.svg and each step's report.") var out = "loadtest/results"

        func run() async throws {
            let breached = try await harness { () -> Bool in
                let base = try Scenario.load(path: scenario)
                let steps = rates.split(whereSeparator: { $0 == " " || $0 == "," }).compactMap { Double($0) }
                guard !steps.isEmpty, steps.allSatisfy({ $0 > 0 }) else { throw HarnessError.usage("--rates needs positive numbers") }
                let options = try common.runOptions()
                let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads + 1)
                var results: [KneeStep] = []
                var knee: Double?
                var pastBreach = -1
                for rate in steps {
                    var scenario = base
                    scenario.load.mode = .open
                    scenario.load.rate = rate
                    scenario.load.steps = nil
                    scenario.load.ramp = nil
                    if let duration { scenario.load.duration = duration }
                    if let warmup { scenario.load.warmup = warmup }
                    try scenario.validate(path: self.scenario)
                    if !common.quiet { Output.say("== \(scenario.name) at \(ScenarioRunner.number(rate))/s") }
                    let report = try await ScenarioRunner(group: group, options: options).run(scenario)
                    try Output.write(report, to: "\(out)/knee-\(scenario.name)-\(Int(rate)).json")
                    let step = Self.verdict(report, rate: rate, maxP99: maxP99, maxP50: maxP50, minCompletion: minCompletion)
                    results.append(step)
                    if !common.quiet {
                        Output.say(String(format: "   %@: throughput %.1f/s, p50 %.1f ms, p99 %.1f ms%@", step.withinSLO ? "within SLO" : "BREACH",
                                          step.throughput, step.p50Ms, step.p99Ms, step.misses.isEmpty ? "" : " (" + step.misses.joined(separator: "; ") + ")"))
                    }
                    if step.withinSLO && pastBreach < 0 { knee = rate }
                    if !step.withinSLO && pastBreach < 0 { pastBreach = 0 } else if pastBreach >= 0 { pastBreach += 1 }
                    if pastBreach >= keepGoing { break }
                }
                let latencyLabel = base.waitForExecutions == true ? "execution" : "call"
                let title = "\(base.name): knee \(knee.map { "\(Int($0))/s" } ?? "not reached") (p99 ≤ \(ReportTable.f(maxP99)) ms)"
                try Output.write(KneeReport(scenario: base.name, target: options.target.baseURL, maxP99Ms: maxP99, knee: knee, steps: results),
                                 to: "\(out)/knee-\(base.name).json")
                let svg = KneeChart.svg(title: title, steps: results, knee: knee, latencyLabel: latencyLabel)
                try svg.write(toFile: "\(out)/knee-\(base.name).svg", atomically: true, encoding: .utf8)
                var rows = [["offered/s", "throughput/s", "p50 ms", "p99 ms", "server CPU", "queue max", "verdict"]]
                for step in results {
                    rows.append([ReportTable.f(step.offeredRate, 0), ReportTable.f(step.throughput, 1), ReportTable.f(step.p50Ms),
                                 ReportTable.f(step.p99Ms), step.serverCPUCores.map { String(format: "%.2f", $0) } ?? "—",
                                 step.serverQueueMax.map { ReportTable.f($0, 0) } ?? "—",
                                 step.withinSLO ? "within SLO" : "BREACH: " + step.misses.joined(separator: "; ")])
                }
                print(ReportTable.table(rows))
                if let knee, results.allSatisfy(\.withinSLO) {
                    print("knee: not reached — every step was within SLO, up to \(ScenarioRunner.number(knee))/s offered; try higher --rates")
                } else {
                    print("knee: \(knee.map { "\(ScenarioRunner.number($0))/s offered, the highest rate within SLO" } ?? "no step was within SLO")")
                }
                print("chart: \(out)/knee-\(base.name).svg  report: \(out)/knee-\(base.name).json")
                return knee == nil
            }
            if breached { throw ExitCode(1) }
        }

        static func verdict(_ report: RunReport, rate: Double, maxP99: Double, maxP50: Double?, minCompletion: Double) -> KneeStep {
            var misses: [String] = []
            let total = report.total
            if total.failed + total.unanswered > 0 { misses.append("\(total.failed + total.unanswered) calls failed") }
            if total.refused > 0 { misses.append("\(total.refused) calls refused") }
            // The client must have offered the rate: a harness that fell behind did not test it.
            if total.sentPerSecond < rate * 0.97 { misses.append(String(format: "offered only %.0f/s", total.sentPerSecond)) }
            let throughput: Double
            let latency: LatencySummary
            if let executions = report.executions {
                throughput = executions.completedPerSecond
                // The stricter of the two: an execution that ends inside the
                // call that starts it (instant tasks) has createdAt ==
                // completedAt, and its caller still waited for the answer.
                latency = executions.latencyMs.stricter(total.latencyMs)
                let notCompleted = executions.total - (executions.byStatus["Completed"] ?? 0)
                if notCompleted > 0 { misses.append("\(notCompleted) executions not Completed") }
                if executions.completionRatio < minCompletion {
                    misses.append(String(format: "completions/arrivals %.3f < %.2f", executions.completionRatio, minCompletion))
                }
            } else {
                throughput = total.throughputPerSecond
                latency = total.latencyMs
            }
            if latency.p99 > maxP99 { misses.append("p99 \(ReportTable.f(latency.p99)) ms > \(ReportTable.f(maxP99))") }
            if let maxP50, latency.p50 > maxP50 { misses.append("p50 \(ReportTable.f(latency.p50)) ms > \(ReportTable.f(maxP50))") }
            return KneeStep(
                offeredRate: rate, throughput: throughput, p50Ms: latency.p50, p99Ms: latency.p99, serverCPUCores: report.server?.cpuCores,
                serverQueueMax: report.server?.queueReadyMax, withinSLO: misses.isEmpty, misses: misses)
        }
    }
}

struct KneeReport: Codable {
    var scenario: String
    var target: String
    var maxP99Ms: Double
    var knee: Double?
    var steps: [KneeStep]
}
