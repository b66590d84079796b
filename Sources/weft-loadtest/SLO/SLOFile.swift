import Foundation

/// `loadtest/slo.yaml`: the scenarios to run and the targets each must
/// meet, in the seed's terms (requests per second, latency percentiles,
/// workflow and task throughput, error rate, queue depth, CPU, memory, cost).
struct SLOFile: Codable, Sendable {
    /// Harness and server figures that differ by more than this (a
    /// fraction) are flagged; `agreement: true` in a check makes that a miss.
    var agreementMargin: Double?
    var checks: [Check]

    struct Check: Codable, Sendable {
        /// A scenario file, relative to the SLO file.
        var scenario: String
        /// Overrides of the scenario's load for this check.
        var rate: Double?
        var concurrency: Int?
        var duration: Double?
        var warmup: Double?
        /// metric name -> bound (see `SLOMetrics.names`).
        var targets: [String: Bound]
        /// Also a miss: the harness and the server disagree.
        var agreement: Bool?
    }

    struct Bound: Codable, Sendable {
        var min: Double?
        var max: Double?
    }

    static func load(path: String) throws -> SLOFile {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw HarnessError.usage("cannot read the SLO file \(path): \(error.localizedDescription)")
        }
        let file = try decodeDocument(SLOFile.self, text: text, path: path)
        for check in file.checks {
            for (name, bound) in check.targets {
                guard SLOMetrics.names.contains(name) else {
                    throw HarnessError.usage("\(path): \(check.scenario): unknown target \(name); known: \(SLOMetrics.names.sorted().joined(separator: ", "))")
                }
                guard bound.min != nil || bound.max != nil else { throw HarnessError.usage("\(path): \(check.scenario): \(name) needs min or max") }
            }
        }
        return file
    }
}

/// The figures of a report that targets can bound, by name.
enum SLOMetrics {
    static let names: Set<String> = [
        "throughput_rps", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms", "latency_p999_ms",
        "error_rate", "refusal_rate", "executions_per_second", "tasks_per_second", "execution_p50_ms", "execution_p95_ms",
        "execution_p99_ms", "executions_unfinished", "executions_not_completed", "completion_ratio", "queue_depth_max",
        "cpu_cores", "cpu_seconds_per_1000_executions", "rss_mb_max", "rss_growth_mb_per_hour", "open_files_growth",
        "cost_per_execution_dollars", "task_wait_p99_ms", "schedule_lag_p99_ms", "worker_tasks_completed",
    ]

    /// nil: the report does not have it (not measured in this run).
    static func value(_ name: String, in report: RunReport) -> Double? {
        let total = report.total
        switch name {
        case "throughput_rps": return total.throughputPerSecond
        case "latency_p50_ms": return total.latencyMs.count > 0 ? total.latencyMs.p50 : nil
        case "latency_p90_ms": return total.latencyMs.count > 0 ? total.latencyMs.p90 : nil
        case "latency_p95_ms": return total.latencyMs.count > 0 ? total.latencyMs.p95 : nil
        case "latency_p99_ms": return total.latencyMs.count > 0 ? total.latencyMs.p99 : nil
        case "latency_p999_ms": return total.latencyMs.count > 0 ? total.latencyMs.p999 : nil
        case "error_rate": return total.errorRate
        case "refusal_rate": return total.refusalRate
        case "executions_per_second": return report.executions?.completedPerSecond
        case "tasks_per_second": return report.executions?.tasksPerSecond
        case "execution_p50_ms": return report.executions.flatMap { $0.latencyMs.count > 0 ? $0.latencyMs.p50 : nil }
        case "execution_p95_ms": return report.executions.flatMap { $0.latencyMs.count > 0 ? $0.latencyMs.p95 : nil }
        case "execution_p99_ms": return report.executions.flatMap { $0.latencyMs.count > 0 ? $0.latencyMs.p99 : nil }
        case "executions_unfinished": return report.executions.map { Double($0.unfinished) }
        case "executions_not_completed":
            return report.executions.map { Double($0.total - ($0.byStatus["Completed"] ?? 0)) }
        case "completion_ratio": return report.executions?.completionRatio
        case "queue_depth_max": return report.server?.queueReadyMax
        case "cpu_cores": return report.server?.cpuCores
        case "cpu_seconds_per_1000_executions": return report.server?.cpuSecondsPer1000Executions
        case "rss_mb_max": return report.server.map { $0.rssMaxBytes / 1_048_576 }
        case "rss_growth_mb_per_hour": return report.soak.map { $0.rssGrowthBytesPerHour / 1_048_576 }
        case "open_files_growth": return report.soak.map { $0.openFilesLast - $0.openFilesFirst }
        case "cost_per_execution_dollars": return report.server?.costPerExecutionDollars
        case "task_wait_p99_ms": return report.server?.taskWaitP99Ms
        case "schedule_lag_p99_ms": return report.schedules.flatMap { $0.fireLagMs.count > 0 ? $0.fireLagMs.p99 : nil }
        case "worker_tasks_completed": return report.externalWorkers.map { Double($0.tasksCompleted) }
        default: return nil
        }
    }
}

/// One target's verdict.
struct SLOResult: Codable, Sendable {
    var scenario: String
    var target: String
    var bound: String
    var measured: Double?
    var met: Bool
    var why: String?

    static func evaluate(_ check: SLOFile.Check, report: RunReport) -> [SLOResult] {
        var out: [SLOResult] = []
        for (name, bound) in check.targets.sorted(by: { $0.key < $1.key }) {
            let value = SLOMetrics.value(name, in: report)
            var text: [String] = []
            if let min = bound.min { text.append("≥ \(ReportTable.f(min))") }
            if let max = bound.max { text.append("≤ \(ReportTable.f(max))") }
            guard let value else {
                out.append(.init(scenario: report.scenario, target: name, bound: text.joined(separator: ", "), measured: nil, met: false,
                                 why: "not measured in this run"))
                continue
            }
            var why: [String] = []
            if let min = bound.min, value < min { why.append("below \(ReportTable.f(min))") }
            if let max = bound.max, value > max { why.append("above \(ReportTable.f(max))") }
            out.append(.init(scenario: report.scenario, target: name, bound: text.joined(separator: ", "), measured: value,
                             met: why.isEmpty, why: why.isEmpty ? nil : why.joined(separator: ", ")))
        }
        if check.agreement == true {
            for comparison in report.comparisons where !comparison.agrees {
                out.append(.init(scenario: report.scenario, target: "agreement: \(comparison.what)", bound: "within margin",
                                 measured: comparison.difference, met: false,
                                 why: "harness \(ReportTable.f(comparison.client)) vs server \(ReportTable.f(comparison.server))"))
            }
        }
        return out
    }
}
