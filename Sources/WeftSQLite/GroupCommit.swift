import GRDB
import Synchronization

/// Group commit for the store's writes: the write closures handed over
/// while the writer is busy run together in one transaction, each in its own
/// savepoint, so many callers share one commit and one fsync
/// (`synchronous = FULL`). A closure that throws is rolled back alone and
/// its caller gets its error; the others commit. Every caller resumes only
/// after the transaction that holds its writes committed (or failed).
///
/// Why: each create-workflow (workflow, tasks, version, search index and
/// audit rows) used to be its own transaction, ~1 ms of a single writer's
/// time mostly spent in the commit's fsync, which capped definition writes
/// at ~1,000/s (Step 13).
///
/// Batches run on GRDB's writer queue (`asyncWriteWithoutTransaction`):
/// one batch per turn, so the engine's group commits, queued on the same
/// writer, take turns with it instead of waiting behind a stream of
/// definition writes.
final class GroupCommit: Sendable {
    /// One caller's closure: `run` executes it inside the batch's
    /// transaction and returns what to tell the caller once the transaction
    /// ended (nil: committed); `fail` answers a caller whose closure never ran.
    private struct Job: Sendable {
        let run: @Sendable (Database) -> @Sendable ((any Error)?) -> Void
        let fail: @Sendable (any Error) -> Void
    }

    private struct State {
        var pending: [Job] = []
        var scheduled = false
    }

    private let pool: DatabasePool
    /// A batch holds at most this many closures.
    private let maxBatch: Int
    private let state = Mutex(State())
    /// Told each batch's size (metrics).
    private let batched: @Sendable (Int) -> Void

    /// Closures waiting for the next batch (tests).
    var pendingCount: Int { state.withLock { $0.pending.count } }

    init(pool: DatabasePool, maxBatch: Int = 256, batched: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.pool = pool
        self.maxBatch = max(1, maxBatch)
        self.batched = batched
    }

    /// Runs `body` in the next batch's transaction (in a savepoint of its
    /// own) and returns its result once that transaction committed.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (caller: CheckedContinuation<T, any Error>) in
            let run: @Sendable (Database) -> @Sendable ((any Error)?) -> Void = { db in
                let result: Result<T, any Error>
                do {
                    var value: T?
                    try db.inSavepoint {
                        value = try body(db)
                        return .commit
                    }
                    result = .success(value!)
                } catch {
                    result = .failure(error)
                }
                return { transactionError in
                    if let transactionError {
                        caller.resume(throwing: transactionError)
                    } else {
                        caller.resume(with: result)
                    }
                }
            }
            let job = Job(run: run, fail: { caller.resume(throwing: $0) })
            let schedule = state.withLock { state -> Bool in
                state.pending.append(job)
                defer { state.scheduled = true }
                return !state.scheduled
            }
            if schedule { scheduleBatch() }
        }
    }

    private func scheduleBatch() {
        pool.asyncWriteWithoutTransaction { db in self.runBatch(db) }
    }

    /// One batch on the writer queue; schedules the next turn when more
    /// closures are waiting.
    private func runBatch(_ db: Database) {
        let jobs = state.withLock { state -> [Job] in
            let count = min(state.pending.count, maxBatch)
            let jobs = Array(state.pending.prefix(count))
            state.pending.removeFirst(count)
            return jobs
        }
        var finishers: [@Sendable ((any Error)?) -> Void] = []
        finishers.reserveCapacity(jobs.count)
        var failure: (any Error)?
        do {
            try db.inTransaction(.immediate) {
                for job in jobs { finishers.append(job.run(db)) }
                return .commit
            }
        } catch {
            failure = error
        }
        if !jobs.isEmpty { batched(jobs.count) }
        for finish in finishers { finish(failure) }
        // Closures that never ran (the transaction could not begin) fail too.
        if finishers.count < jobs.count, let failure {
            for job in jobs[finishers.count...] { job.fail(failure) }
        }
        let again = state.withLock { state -> Bool in
            if state.pending.isEmpty {
                state.scheduled = false
                return false
            }
            return true
        }
        if again { scheduleBatch() }
    }
}
