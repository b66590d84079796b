import Foundation

/// The server's view of a run from its metrics, and where it and the
/// harness disagree.
enum ServerFigures {
    static func report(
        before: MetricsSnapshot, afterLoad: MetricsSnapshot, afterDrain: MetricsSnapshot, rpcs: Set<String>,
        samples: [ServerWatch.Sample]
    ) -> RunReport.ServerReport {
        let whole = MetricsDelta(before: before, after: afterDrain)
        let load = MetricsDelta(before: before, after: afterLoad)
        let cpu = whole.counter("process_cpu_seconds_total")
        let finished = whole.counter("weft_executions_finished_total")
        let costCount = whole.histogramCount("weft_execution_cost_dollars")
        var handled: [String: Double] = [:]
        for series in afterLoad.series where series.name == "grpc_server_handled_total" {
            guard let service = series.labels["grpc_service"], let method = series.labels["grpc_method"],
                rpcs.contains("\(service)/\(method)"), let code = series.labels["grpc_code"]
            else { continue }
            handled[code, default: 0] += series.value
        }
        for series in before.series where series.name == "grpc_server_handled_total" {
            guard let service = series.labels["grpc_service"], let method = series.labels["grpc_method"],
                rpcs.contains("\(service)/\(method)"), let code = series.labels["grpc_code"]
            else { continue }
            handled[code, default: 0] -= series.value
        }
        let all = [ServerWatch.sample(before, since: before.takenAt), ServerWatch.sample(afterLoad, since: before.takenAt)] + samples
        func ms(_ seconds: Double?) -> Double? { seconds.map { ($0 * 1e6).rounded() / 1000 } }
        return RunReport.ServerReport(
            seconds: whole.seconds, cpuSeconds: cpu, cpuCores: whole.seconds > 0 ? cpu / whole.seconds : 0,
            cpuSecondsPer1000Executions: finished > 0 ? cpu / finished * 1000 : nil,
            executionsStarted: whole.counter("weft_executions_started_total"), executionsFinished: finished,
            executionsCompleted: whole.counter("weft_executions_finished_total", ["status": "Completed"]),
            queueReadyMax: all.map(\.queueReady).max() ?? 0,
            executionsInFlightMax: all.map(\.executionsInFlight).max() ?? 0,
            rssMaxBytes: all.map(\.rssBytes).max() ?? 0, openFilesMax: all.map(\.openFiles).max() ?? 0,
            taskWaitP50Ms: ms(whole.quantile(0.5, of: "weft_task_wait_seconds")),
            taskWaitP99Ms: ms(whole.quantile(0.99, of: "weft_task_wait_seconds")),
            executionP50Ms: ms(whole.quantile(0.5, of: "weft_execution_duration_seconds")),
            executionP99Ms: ms(whole.quantile(0.99, of: "weft_execution_duration_seconds")),
            costPerExecutionDollars: costCount > 0 ? whole.histogramSum("weft_execution_cost_dollars") / costCount : nil,
            admissionRejections: load.counter("weft_admission_rejections_total"), grpcHandled: handled.filter { $0.value > 0 },
            samples: samples)
    }

    static func compare(
        _ report: RunReport, before: MetricsSnapshot, afterLoad: MetricsSnapshot, afterDrain: MetricsSnapshot, rpcs: Set<String>,
        margin: Double
    ) -> [RunReport.Comparison] {
        var out: [RunReport.Comparison] = []
        /// `bucket`: the server's figure is only known to lie in it, so a
        /// client figure inside it agrees whatever the interpolation says.
        func add(_ what: String, client: Double, server: Double, margin: Double, note: String? = nil, bucket: (Double, Double)? = nil) {
            let difference = max(client, server) > 0 ? abs(client - server) / max(client, server) : 0
            let inBucket = bucket.map { client >= $0.0 && client <= $0.1 } ?? false
            out.append(.init(what: what, client: client, server: server, difference: difference,
                             agrees: difference <= margin || inBucket, note: note))
        }
        let whole = MetricsDelta(before: before, after: afterDrain)
        func msBucket(_ q: Double) -> (Double, Double)? {
            whole.quantileBucket(q, of: "weft_execution_duration_seconds").map { ($0.0 * 1000, $0.1 * 1000) }
        }
        guard let server = report.server else { return out }
        // gRPC calls: each one the harness counted OK is one the server handled OK.
        if !rpcs.isEmpty {
            let clientOK = Double(report.phases.reduce(0) { $0 + $1.outcomes["OK", default: 0] })
            add("gRPC calls answered OK", client: clientOK, server: server.grpcHandled["OK"] ?? 0, margin: 0.01,
                note: "every phase, warm-up included; the server counts the harness's other calls of the same methods too")
            let clientRefused = Double(report.phases.reduce(0) { $0 + $1.outcomes["ResourceExhausted", default: 0] })
            if clientRefused > 0 || (server.grpcHandled["ResourceExhausted"] ?? 0) > 0 {
                add("gRPC calls refused (RESOURCE_EXHAUSTED)", client: clientRefused, server: server.grpcHandled["ResourceExhausted"] ?? 0,
                    margin: 0.01)
            }
        }
        if let executions = report.executions {
            add("executions completed", client: Double(executions.byStatus["Completed"] ?? 0), server: server.executionsCompleted,
                margin: 0.01, note: "the server counts every workflow's executions over the run")
            if let p99 = server.executionP99Ms, executions.latencyMs.count > 0 {
                add("execution latency p99 (ms)", client: executions.latencyMs.p99, server: p99, margin: margin,
                    note: "the server's figure is interpolated within weft_execution_duration_seconds buckets; a harness figure inside that bucket agrees",
                    bucket: msBucket(0.99))
            }
            if let p50 = server.executionP50Ms, executions.latencyMs.count > 0 {
                add("execution latency p50 (ms)", client: executions.latencyMs.p50, server: p50, margin: margin,
                    note: "the server's figure is interpolated within weft_execution_duration_seconds buckets; a harness figure inside that bucket agrees",
                    bucket: msBucket(0.5))
            }
        }
        return out
    }

    static func soak(_ samples: [ServerWatch.Sample]) -> RunReport.SoakReport? {
        guard let first = samples.first, let last = samples.last else { return nil }
        let half = Array(samples.suffix(max(2, samples.count / 2)))
        return RunReport.SoakReport(
            seconds: last.t - first.t, rssFirstBytes: first.rssBytes, rssLastBytes: last.rssBytes,
            rssMaxBytes: samples.map(\.rssBytes).max() ?? 0,
            rssGrowthBytesPerHour: slope(half.map { ($0.t, $0.rssBytes) }) * 3600,
            openFilesFirst: first.openFiles, openFilesLast: last.openFiles,
            queueReadyMax: samples.map(\.queueReady).max() ?? 0, queueReadyLast: last.queueReady)
    }

    /// Least-squares slope of y over x.
    static func slope(_ points: [(Double, Double)]) -> Double {
        guard points.count >= 2 else { return 0 }
        let n = Double(points.count)
        let mx = points.reduce(0) { $0 + $1.0 } / n
        let my = points.reduce(0) { $0 + $1.1 } / n
        let sxx = points.reduce(0) { $0 + ($1.0 - mx) * ($1.0 - mx) }
        let sxy = points.reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        return sxx > 0 ? sxy / sxx : 0
    }
}
