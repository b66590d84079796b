import Foundation

/// Percentiles of a latency histogram, in milliseconds.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50: Double
    var p90: Double
    var p95: Double
    var p99: Double
    var p999: Double
    var max: Double
    var mean: Double

    init(_ histogram: LatencyHistogram) {
        count = histogram.totalCount
        func ms(_ micros: UInt64) -> Double { (Double(micros) / 1000 * 1000).rounded() / 1000 }
        if count == 0 {
            (p50, p90, p95, p99, p999, max, mean) = (0, 0, 0, 0, 0, 0, 0)
            return
        }
        p50 = ms(histogram.valueAtPercentile(50))
        p90 = ms(histogram.valueAtPercentile(90))
        p95 = ms(histogram.valueAtPercentile(95))
        p99 = ms(histogram.valueAtPercentile(99))
        p999 = ms(histogram.valueAtPercentile(99.9))
        max = ms(histogram.max)
        mean = (histogram.mean / 1000 * 1000).rounded() / 1000
    }

    /// Each percentile the larger of the two (a verdict held to both).
    func stricter(_ other: LatencySummary) -> LatencySummary {
        var out = self
        out.p50 = Swift.max(p50, other.p50)
        out.p90 = Swift.max(p90, other.p90)
        out.p95 = Swift.max(p95, other.p95)
        out.p99 = Swift.max(p99, other.p99)
        out.p999 = Swift.max(p999, other.p999)
        out.max = Swift.max(max, other.max)
        out.mean = Swift.max(mean, other.mean)
        return out
    }
}

/// The JSON report of one run (`--out`), and the source of its table.
struct RunReport: Codable, Sendable {
    var scenario: String
    var description: String?
    var target: String
    var run: String
    var startedAt: String
    var mode: String
    var threads: Int
    var connections: Int
    var streams: Int
    /// Latency counts from the intended send time (open loop) or the send
    /// (closed loop); successful calls only.
    var latencyBasis: String
    var phases: [PhaseReport]
    /// Every counted phase together (the warm-up left out).
    var total: PhaseReport
    var executions: ExecutionReport?
    var externalWorkers: WorkerReport?
    var server: ServerReport?
    /// The harness's figures beside the server's, flagged where they differ
    /// by more than `agreementMargin`.
    var comparisons: [Comparison]
    var agreementMargin: Double
    var soak: SoakReport?
    var schedules: ScheduleReport?
    var httpSinkRequests: Int?

    struct PhaseReport: Codable, Sendable {
        var name: String
        var offeredRate: Double?
        var concurrency: Int?
        var seconds: Double
        var sent: Int
        var succeeded: Int
        var refused: Int
        var failed: Int
        var unanswered: Int
        var sentPerSecond: Double
        var throughputPerSecond: Double
        /// (failed + unanswered) / sent; refusals are not errors here.
        var errorRate: Double
        var refusalRate: Double
        var outcomes: [String: Int]
        var refusalsWithRetryAfter: Int
        var retryAfterMaxSeconds: Double
        var latencyMs: LatencySummary
        var operations: [OperationReport]
        var sampleErrors: [String]

        init(name: String, seconds: Double, offeredRate: Double?, concurrency: Int?, recorder: Recorder, operationNames: [String]) {
            self.name = name
            self.seconds = seconds
            self.offeredRate = offeredRate
            self.concurrency = concurrency
            sent = recorder.sent
            succeeded = recorder.succeeded
            refused = recorder.refused
            failed = recorder.failed
            unanswered = recorder.unanswered
            sentPerSecond = seconds > 0 ? Double(sent) / seconds : 0
            throughputPerSecond = seconds > 0 ? Double(succeeded) / seconds : 0
            errorRate = sent > 0 ? Double(failed + unanswered) / Double(sent) : 0
            refusalRate = sent > 0 ? Double(refused) / Double(sent) : 0
            outcomes = recorder.outcomes
            refusalsWithRetryAfter = recorder.retryAfterSeen
            retryAfterMaxSeconds = recorder.retryAfterMax
            latencyMs = LatencySummary(recorder.latency)
            operations = zip(operationNames, recorder.operations).map { name, stats in
                OperationReport(name: name, succeeded: stats.succeeded, refused: stats.refused, failed: stats.failed,
                                latencyMs: LatencySummary(stats.latency))
            }
            sampleErrors = recorder.sampleErrors
        }
    }

    struct OperationReport: Codable, Sendable {
        var name: String
        var succeeded: Int
        var refused: Int
        var failed: Int
        var latencyMs: LatencySummary
    }

    struct ExecutionReport: Codable, Sendable {
        var total: Int
        var byStatus: [String: Int]
        var unfinished: Int
        var completedPerSecond: Double
        var tasksPerSecond: Double
        var completionRatio: Double
        var windowSeconds: Double
        var drainSeconds: Double
        /// createdAt -> completedAt of the Completed ones.
        var latencyMs: LatencySummary
    }

    struct WorkerReport: Codable, Sendable {
        var workers: Int
        var polls: Int
        var tasksCompleted: Int
        var errors: Int
        var lastError: String?
    }

    struct ServerReport: Codable, Sendable {
        var seconds: Double
        var cpuSeconds: Double
        var cpuCores: Double
        var cpuSecondsPer1000Executions: Double?
        var executionsStarted: Double
        var executionsFinished: Double
        var executionsCompleted: Double
        var queueReadyMax: Double
        var executionsInFlightMax: Double
        var rssMaxBytes: Double
        var openFilesMax: Double
        var taskWaitP50Ms: Double?
        var taskWaitP99Ms: Double?
        var executionP50Ms: Double?
        var executionP99Ms: Double?
        var costPerExecutionDollars: Double?
        /// Calls the server refused for load (weft_admission_rejections_total).
        var admissionRejections: Double
        /// grpc_server_handled_total of the scenario's methods, by code.
        var grpcHandled: [String: Double]
        var samples: [ServerWatch.Sample]
    }

    struct Comparison: Codable, Sendable {
        var what: String
        var client: Double
        var server: Double
        /// |client - server| / max(client, server).
        var difference: Double
        var agrees: Bool
        var note: String?
    }

    struct SoakReport: Codable, Sendable {
        var seconds: Double
        var rssFirstBytes: Double
        var rssLastBytes: Double
        var rssMaxBytes: Double
        /// Least-squares slope over the run's second half, per hour.
        var rssGrowthBytesPerHour: Double
        var openFilesFirst: Double
        var openFilesLast: Double
        var queueReadyMax: Double
        var queueReadyLast: Double
    }

    struct ScheduleReport: Codable, Sendable {
        var schedules: Int
        var createSeconds: Double
        var executions: Int
        var fireLagMs: LatencySummary
    }
}
