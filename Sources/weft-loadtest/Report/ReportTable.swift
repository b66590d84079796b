import Foundation

/// The human table of a run report.
enum ReportTable {
    static func render(_ report: RunReport) -> String {
        var out = "scenario \(report.scenario) against \(report.target) (run \(report.run), \(report.mode) loop, "
        out += "\(report.threads) thread(s), \(report.connections) connection(s) × \(report.streams) streams)\n"
        out += "latency from the \(report.latencyBasis); successful calls only\n\n"
        var rows = [["phase", "sent/s", "ok/s", "refused", "errors", "p50 ms", "p90", "p95", "p99", "p99.9", "max"]]
        for phase in report.phases + [report.total] {
            rows.append([
                phase.name, f(phase.sentPerSecond, 0), f(phase.throughputPerSecond, 0), String(phase.refused),
                String(phase.failed + phase.unanswered), f(phase.latencyMs.p50), f(phase.latencyMs.p90), f(phase.latencyMs.p95),
                f(phase.latencyMs.p99), f(phase.latencyMs.p999), f(phase.latencyMs.max),
            ])
        }
        out += table(rows)
        if report.total.operations.count > 1 {
            var ops = [["operation", "ok", "refused", "errors", "p50 ms", "p99 ms"]]
            for operation in report.total.operations {
                ops.append([operation.name, String(operation.succeeded), String(operation.refused), String(operation.failed),
                            f(operation.latencyMs.p50), f(operation.latencyMs.p99)])
            }
            out += "\n" + table(ops)
        }
        let outcomes = report.total.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        out += "\noutcomes: \(outcomes.isEmpty ? "none" : outcomes)"
        if report.total.refused > 0 {
            out += "; refused with retry-after: \(report.total.refusalsWithRetryAfter)/\(report.total.refused) (max \(f(report.total.retryAfterMaxSeconds)) s)"
        }
        if report.total.unanswered > 0 { out += "; unanswered at the drain deadline: \(report.total.unanswered)" }
        out += "\n"
        for error in report.total.sampleErrors { out += "  e.g. \(error)\n" }
        if let executions = report.executions {
            out += "\nexecutions (stored timestamps): \(executions.total) started, "
            out += executions.byStatus.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            out += String(format: "; completed %.1f/s (tasks %.1f/s), completions/arrivals %.3f over %.1f s\n",
                          executions.completedPerSecond, executions.tasksPerSecond, executions.completionRatio, executions.windowSeconds)
            let l = executions.latencyMs
            out += "  createdAt→completedAt ms: p50 \(f(l.p50))  p90 \(f(l.p90))  p95 \(f(l.p95))  p99 \(f(l.p99))  p99.9 \(f(l.p999))  max \(f(l.max))\n"
        }
        if let schedules = report.schedules {
            out += "\nschedules: \(schedules.schedules) created in \(f(schedules.createSeconds)) s; \(schedules.executions) fired, "
            out += "fire lag ms p50 \(f(schedules.fireLagMs.p50)) p99 \(f(schedules.fireLagMs.p99)) max \(f(schedules.fireLagMs.max))\n"
        }
        if let workers = report.externalWorkers {
            out += "\nexternal workers: \(workers.workers), \(workers.tasksCompleted) tasks completed, \(workers.polls) polls, \(workers.errors) errors\n"
        }
        if let sink = report.httpSinkRequests { out += "http sink: \(sink) requests\n" }
        if let server = report.server {
            out += "\nserver (/metrics):"
            out += String(format: " CPU %.2f cores", server.cpuCores)
            if let per = server.cpuSecondsPer1000Executions { out += String(format: " (%.2f CPU s per 1,000 executions)", per) }
            out += String(format: ", ready queue max %.0f, executions in flight max %.0f, RSS max %.0f MB, open files max %.0f",
                          server.queueReadyMax, server.executionsInFlightMax, server.rssMaxBytes / 1_048_576, server.openFilesMax)
            if let wait = server.taskWaitP99Ms { out += ", task wait p50 \(f(server.taskWaitP50Ms ?? 0)) / p99 \(f(wait)) ms" }
            if let cost = server.costPerExecutionDollars { out += String(format: ", cost/execution $%.8f", cost) }
            if server.admissionRejections > 0 { out += ", refused for load \(Int(server.admissionRejections))" }
            out += "\n"
        } else {
            out += "\nserver: no /metrics (not scraped: a peer without metrics, or a scrape token is needed: --metrics-token)\n"
        }
        if !report.comparisons.isEmpty {
            var rows = [["harness vs server", "harness", "server", "diff", ""]]
            for c in report.comparisons {
                rows.append([c.what, f(c.client), f(c.server), String(format: "%.1f%%", c.difference * 100), c.agrees ? "agree" : "DISAGREE"])
            }
            out += "\n" + table(rows)
        }
        if let soak = report.soak {
            out += String(
                format: "\nsoak over %.0f s: RSS %.0f → %.0f MB (max %.0f, growth %.1f MB/h over the second half), open files %.0f → %.0f, ready queue max %.0f, last %.0f\n",
                soak.seconds, soak.rssFirstBytes / 1_048_576, soak.rssLastBytes / 1_048_576, soak.rssMaxBytes / 1_048_576,
                soak.rssGrowthBytesPerHour / 1_048_576, soak.openFilesFirst, soak.openFilesLast, soak.queueReadyMax, soak.queueReadyLast)
        }
        return out
    }

    static func f(_ value: Double, _ digits: Int = 2) -> String {
        if value >= 1000 || digits == 0 { return String(format: "%.0f", value) }
        // Dollars per execution and the like: significant digits, not zeros.
        if value > 0 && value < 0.01 { return String(format: "%.3g", value) }
        if value >= 100 { return String(format: "%.1f", value) }
        return String(format: "%.\(digits)f", value)
    }

    static func table(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        var widths = [Int](repeating: 0, count: first.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for (r, row) in rows.enumerated() {
            let cells = row.enumerated().map { i, cell in
                i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - cell.count) + cell
            }
            out += cells.joined(separator: "  ") + "\n"
            if r == 0 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        return out
    }
}
