import Histogram

/// Latencies in microseconds, 3 significant digits, up to an hour.
typealias LatencyHistogram = Histogram<UInt64>

func makeLatencyHistogram() -> LatencyHistogram {
    LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
}

/// What one phase (a step of the load, or the whole run) saw: calls by
/// outcome and the latency of the successful ones. One per worker and
/// phase, merged at the end. Counting is by index (gRPC code, HTTP status,
/// operation) so the per-call path hashes no strings and copies no
/// histogram.
struct Recorder: Sendable {
    var sent = 0
    var succeeded = 0
    /// 429 / RESOURCE_EXHAUSTED: the server pushed back.
    var refused = 0
    /// Everything else that was not a success (transport failures included).
    var failed = 0
    /// Sent and never answered before the drain deadline.
    var unanswered = 0
    /// gRPC responses by status code (0...16), HTTP ones by status.
    var grpcCodes = [Int](repeating: 0, count: 17)
    var otherGRPC: [Int: Int] = [:]
    var httpCodes: [Int: Int] = [:]
    var transportErrors = 0
    var latency = makeLatencyHistogram()
    /// Refused calls' `retry-after` (seconds): how many carried one, the largest.
    var retryAfterSeen = 0
    var retryAfterMax = 0.0
    /// The first few error messages, to show what failed.
    var sampleErrors: [String] = []
    /// By operation index (the plan's order).
    var operations: [OperationStats]

    struct OperationStats: Sendable {
        var succeeded = 0
        var failed = 0
        var refused = 0
        var latency = makeLatencyHistogram()
    }

    init(operations: Int) {
        self.operations = (0..<operations).map { _ in OperationStats() }
    }

    /// Outcomes by label: `OK` or a gRPC code name, an HTTP status, `transport`.
    var outcomes: [String: Int] {
        var out: [String: Int] = [:]
        for (code, count) in grpcCodes.enumerated() where count > 0 { out[GRPCCode.name(code)] = count }
        for (code, count) in otherGRPC { out[GRPCCode.name(code), default: 0] += count }
        for (status, count) in httpCodes { out[String(status), default: 0] += count }
        if transportErrors > 0 { out["transport"] = transportErrors }
        return out
    }

    mutating func record(_ response: WireResponse, micros: UInt64, operation: Int, name: String) {
        if response.transportError != nil {
            transportErrors += 1
        } else if let code = response.grpcStatus {
            if code >= 0 && code < 17 { grpcCodes[code] += 1 } else { otherGRPC[code, default: 0] += 1 }
        } else {
            httpCodes[response.httpStatus, default: 0] += 1
        }
        if response.succeeded {
            succeeded += 1
            _ = latency.record(max(1, micros))
            operations[operation].succeeded += 1
            _ = operations[operation].latency.record(max(1, micros))
        } else if response.isRefusal {
            refused += 1
            operations[operation].refused += 1
            if let retryAfter = response.retryAfter {
                retryAfterSeen += 1
                retryAfterMax = max(retryAfterMax, retryAfter)
            }
        } else {
            failed += 1
            operations[operation].failed += 1
            if sampleErrors.count < 5 {
                let message = response.transportError ?? response.grpcMessage ?? String(decoding: response.body.prefix(200), as: UTF8.self)
                sampleErrors.append("\(name): \(response.outcome) \(message)")
            }
        }
    }

    mutating func merge(_ other: Recorder) {
        sent += other.sent
        succeeded += other.succeeded
        refused += other.refused
        failed += other.failed
        unanswered += other.unanswered
        for index in grpcCodes.indices { grpcCodes[index] += other.grpcCodes[index] }
        otherGRPC.merge(other.otherGRPC, uniquingKeysWith: +)
        httpCodes.merge(other.httpCodes, uniquingKeysWith: +)
        transportErrors += other.transportErrors
        latency.add(other.latency)
        retryAfterSeen += other.retryAfterSeen
        retryAfterMax = max(retryAfterMax, other.retryAfterMax)
        sampleErrors.append(contentsOf: other.sampleErrors.prefix(max(0, 5 - sampleErrors.count)))
        if operations.count < other.operations.count {
            operations += (operations.count..<other.operations.count).map { _ in OperationStats() }
        }
        for (index, stats) in other.operations.enumerated() {
            operations[index].succeeded += stats.succeeded
            operations[index].failed += stats.failed
            operations[index].refused += stats.refused
            operations[index].latency.add(stats.latency)
        }
    }
}
