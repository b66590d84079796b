import Histogram

/// Latencies in microseconds, 3 significant digits, up to an hour.
typealias LatencyHistogram = Histogram<UInt64>

func makeLatencyHistogram() -> LatencyHistogram {
    LatencyHistogram(lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
}

/// What one phase (a step of the load, or the whole run) saw: calls by
/// outcome and the latency of the successful ones. One per worker and
/// phase, merged at the end.
struct Recorder: Sendable {
    var sent = 0
    var succeeded = 0
    /// 429 / RESOURCE_EXHAUSTED: the server pushed back.
    var refused = 0
    /// Everything else that was not a success (transport failures included).
    var failed = 0
    /// Sent and never answered before the drain deadline.
    var unanswered = 0
    var outcomes: [String: Int] = [:]
    var latency = makeLatencyHistogram()
    /// Refused calls' `retry-after` (seconds): how many carried one, the largest.
    var retryAfterSeen = 0
    var retryAfterMax = 0.0
    /// The first few error messages, to show what failed.
    var sampleErrors: [String] = []
    /// Per operation name.
    var operations: [String: OperationStats] = [:]

    struct OperationStats: Sendable {
        var succeeded = 0
        var failed = 0
        var refused = 0
        var latency = makeLatencyHistogram()
    }

    var answered: Int { succeeded + refused + failed }

    mutating func record(_ response: WireResponse, micros: UInt64, operation: String) {
        let outcome = response.outcome
        outcomes[outcome, default: 0] += 1
        var stats = operations[operation] ?? OperationStats()
        if response.succeeded {
            succeeded += 1
            _ = latency.record(max(1, micros))
            stats.succeeded += 1
            _ = stats.latency.record(max(1, micros))
        } else if response.isRefusal {
            refused += 1
            stats.refused += 1
            if let retryAfter = response.retryAfter {
                retryAfterSeen += 1
                retryAfterMax = max(retryAfterMax, retryAfter)
            }
        } else {
            failed += 1
            stats.failed += 1
            if sampleErrors.count < 5 {
                let message = response.transportError ?? response.grpcMessage ?? String(decoding: response.body.prefix(200), as: UTF8.self)
                sampleErrors.append("\(operation): \(outcome) \(message)")
            }
        }
        operations[operation] = stats
    }

    mutating func merge(_ other: Recorder) {
        sent += other.sent
        succeeded += other.succeeded
        refused += other.refused
        failed += other.failed
        unanswered += other.unanswered
        outcomes.merge(other.outcomes, uniquingKeysWith: +)
        latency.add(other.latency)
        retryAfterSeen += other.retryAfterSeen
        retryAfterMax = max(retryAfterMax, other.retryAfterMax)
        sampleErrors.append(contentsOf: other.sampleErrors.prefix(max(0, 5 - sampleErrors.count)))
        for (name, stats) in other.operations {
            var mine = operations[name] ?? OperationStats()
            mine.succeeded += stats.succeeded
            mine.failed += stats.failed
            mine.refused += stats.refused
            mine.latency.add(stats.latency)
            operations[name] = mine
        }
    }
}
