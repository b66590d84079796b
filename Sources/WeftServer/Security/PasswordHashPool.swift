import Dispatch
import Foundation
import Synchronization
import WeftObservability
import WeftRPC

#if canImport(Glibc)
import Glibc
#endif

/// Runs password hashing (scrypt: 32 MiB and ~100 ms a hash) on its own
/// few threads behind a bounded queue, never on the executors that serve
/// other calls or run the engine: a flood of logins then costs the server
/// at most those threads (run at a lower priority, so the event loops and
/// handlers win the cores), and past the queue bound a login is refused at
/// once (RESOURCE_EXHAUSTED with `retry-after`) instead of waiting behind
/// the flood.
final class PasswordHashPool: Sendable {
    private struct State {
        /// Each job computes, frees its place, then resumes its caller.
        var jobs: [@Sendable () -> Void] = []
        /// Jobs queued or running.
        var admitted = 0
    }

    private let state = Mutex(State())
    private let ready = DispatchSemaphore(value: 0)
    let threads: Int
    let queueLimit: Int
    private let setDepth: @Sendable (Int) -> Void
    private let countRejected: @Sendable () -> Void

    init(threads: Int, queueLimit: Int, metrics: WeftMetrics) {
        self.threads = max(1, threads)
        self.queueLimit = max(0, queueLimit)
        let depth = metrics.gauge(
            MetricNames.passwordHashQueue, help: "Password hashes queued for or running on the hashing threads.")
        let rejected = metrics.counter(
            MetricNames.passwordHashRejected, help: "Logins and password changes refused because the hashing queue was full.")
        setDepth = { depth.set(Double($0)) }
        countRejected = { rejected.increment() }
        for index in 0..<self.threads {
            let thread = Thread { [self] in loop() }
            thread.name = "weft-password-\(index)"
            thread.start()
        }
    }

    /// Runs `work` on a hashing thread and returns its result;
    /// RESOURCE_EXHAUSTED at once when `threads + queueLimit` are taken.
    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async throws -> T {
        let admitted = state.withLock { state -> Int? in
            guard state.admitted < threads + queueLimit else { return nil }
            state.admitted += 1
            return state.admitted
        }
        guard let admitted else {
            countRejected()
            throw RPCError.overloaded("the server is busy checking passwords; retry shortly", retryAfter: 1)
        }
        setDepth(admitted)
        return await withCheckedContinuation { continuation in
            let job: @Sendable () -> Void = { [self] in
                let result = work()
                release()
                continuation.resume(returning: result)
            }
            state.withLock { $0.jobs.append(job) }
            ready.signal()
        }
    }

    private func loop() {
        #if os(Linux)
        // Nice 10 for this thread only: on Linux the nice value is per
        // thread, and `who` 0 names the calling one.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        #endif
        while true {
            ready.wait()
            guard let job = state.withLock({ $0.jobs.isEmpty ? nil : $0.jobs.removeFirst() }) else { continue }
            job()
        }
    }

    /// A job is done: its place is free (before its caller resumes, so the
    /// caller's next call finds it free).
    private func release() {
        let left = state.withLock { state -> Int in
            state.admitted -= 1
            return state.admitted
        }
        setDepth(left)
    }
}
