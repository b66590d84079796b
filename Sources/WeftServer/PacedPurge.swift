import Foundation

/// Deletes in small batches spread over time, so a purge of millions of rows
/// never holds a store's writer for long: each batch is sized to take about
/// `batchTarget`, and after each the purge rests `restFactor` times as long
/// as the batch took (a tenth of the writer's time by default).
///
/// Why: one batch of 1,000 executions took ~40 ms inside the group commit and
/// the next began at once; with a million executions past retention, calls
/// made meanwhile waited up to 280 ms and most were refused by admission
/// control. Logs were one DELETE: 5 million entries held the log writer for
/// 8 s. The sizes were chosen with `loadtest/bench-retention.py`: batches of
/// 2 ms (a fifth of the writer) kept every call but moved the p99 of calls
/// made meanwhile by ~3 ms; batches of 0.5 ms and a tenth of the writer move
/// it by less than 2 ms and purge ~800 executions/s (69 million a day)
/// and ~23,000 log entries/s under load (docs/BENCHMARKS.md).
struct PacedPurge: Sendable {
    var batchTarget: Duration = .microseconds(500)
    var restFactor = 9.0
    var minimumRest: Duration = .milliseconds(1)
    var initialBatch = 50
    var batchLimits = 10...5_000

    /// Runs `batch(limit)` until it deletes fewer than it was allowed to;
    /// `deleted` hears each batch's count. Returns the total.
    func run(
        _ batch: (Int) async throws -> Int, deleted: (Int) -> Void = { _ in }
    ) async throws -> Int {
        var limit = initialBatch
        var total = 0
        let clock = ContinuousClock()
        while !Task.isCancelled {
            let started = clock.now
            let count = try await batch(limit)
            let took = clock.now - started
            total += count
            if count > 0 { deleted(count) }
            if count < limit { break }
            limit = nextLimit(after: limit, took: took)
            try await Task.sleep(for: max(minimumRest, took * restFactor))
        }
        return total
    }

    /// The batch size that would have taken `batchTarget`, changed by at
    /// most a factor of two a batch (one slow batch, a stall of the disk,
    /// does not collapse it).
    func nextLimit(after limit: Int, took: Duration) -> Int {
        let seconds = max(took / .seconds(1), 1e-6)
        let ideal = Double(limit) * (batchTarget / .seconds(1)) / seconds
        let bounded = min(max(ideal, Double(limit) / 2), Double(limit) * 2)
        return min(max(Int(bounded), batchLimits.lowerBound), batchLimits.upperBound)
    }
}
