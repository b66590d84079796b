import Foundation
import Synchronization

/// When the engine refuses new work (admission control), and how it judges.
public struct AdmissionLimits: Sendable {
    /// Refuse new executions while every task taken from the ready queue in
    /// the last `interval` waited longer than this (a standing queue: the
    /// workers are behind). nil: this signal is off. 25 ms: at three times
    /// the knee, 100 ms let accepted executions' p99 reach 1.2 s and 25 ms
    /// held it at 0.5 s with more completed (docs/BENCHMARKS.md, Step 11).
    public var taskWaitTarget: Duration? = .milliseconds(25)
    /// The same for state changes waiting in the group commit's queue (the
    /// single SQLite writer is behind).
    public var commitWaitTarget: Duration? = .milliseconds(100)
    /// The window over which the shortest wait is taken (CoDel's interval):
    /// a burst shorter than this does not trip it.
    public var interval: Duration = .milliseconds(100)
    /// A hard cap on executions started and not finished (0: none), so
    /// memory stays bounded whatever the waits say; executions parked in
    /// delays or on external workers count too.
    public var maxExecutionsInFlight = 200_000

    public init() {}

    /// No admission control at all (tests that flood on purpose).
    public static var off: AdmissionLimits {
        var limits = AdmissionLimits()
        limits.taskWaitTarget = nil
        limits.commitWaitTarget = nil
        limits.maxExecutionsInFlight = 0
        return limits
    }
}

/// Admission control that keeps the engine at its knee instead of past it.
///
/// Past the knee, every execution accepted adds to a backlog the workers
/// and the single SQLite writer cannot clear; accepting more takes the CPU
/// they need, and completions fall (measured before this existed: twice
/// the knee offered, about a quarter of it completed, with a 20 s median). So new work is refused while the engine shows a
/// *standing* queue, the way CoDel judges a router's queue: the shortest
/// wait of anything that went through a queue in the last `interval` is
/// above a target. A burst passes (some items still go straight through);
/// a backlog does not (even the luckiest item waited). Both signals are
/// measured capacity, not a configured rate: they trip at whatever rate
/// this machine, this workload and this disk can sustain.
///
/// Refused: new executions (API, webhooks, events). Never refused: reads,
/// cancels, worker completions and heartbeats (they drain the backlog),
/// and schedule ticks (paced by the server; a refused tick would be lost).
/// A refusal costs one lock and a few comparisons, before any store access.
public final class OverloadGuard: Sendable {
    public enum Reason: String, Sendable, CaseIterable {
        case taskWait = "task_queue_wait"
        case commitWait = "commit_queue_wait"
        case inFlight = "executions_in_flight"
    }

    /// Why new work is refused now, and when to come back.
    public struct Refusal: Sendable, CustomStringConvertible {
        public let reason: Reason
        /// Seconds until the work in flight is expected to have finished at
        /// the recent completion rate (at least the queue's wait, at least 1).
        public let retryAfter: Double
        public let description: String
    }

    private struct Window {
        var start: UInt64 = 0
        var shortest = Double.infinity
        var seen = 0
        /// The shortest wait of the last closed window (nil: none seen).
        var last: Double?
        var congested = false
    }

    private struct State {
        var task = Window()
        var commit = Window()
        /// Executions finished in the current second, and the rate (EWMA,
        /// per second).
        var finishedStart: UInt64 = 0
        var finished = 0
        var completionRate = 0.0
        /// The last refusal and when it was made: a flood is refused with
        /// it for up to 10 ms (its message is not formatted per call).
        var cached: (refusal: Refusal, at: UInt64)?
    }

    private static let cacheNanos: UInt64 = 10_000_000

    public let limits: AdmissionLimits
    private let state = Mutex(State())
    private let inFlight = Atomic<Int>(0)
    /// Some signal is congested (read without the lock on the fast path).
    private let shedding = Atomic<Bool>(false)
    private let intervalNanos: UInt64
    private let now: @Sendable () -> UInt64

    /// - Parameter now: a monotonic clock in nanoseconds (nil: the system's).
    public init(limits: AdmissionLimits = AdmissionLimits(), now: (@Sendable () -> UInt64)? = nil) {
        self.limits = limits
        self.intervalNanos = UInt64(max(1, limits.interval.components.seconds * 1_000_000_000 + limits.interval.components.attoseconds / 1_000_000_000))
        self.now = now ?? { DispatchTime.now().uptimeNanoseconds }
    }

    private static func seconds(_ duration: Duration?) -> Double? {
        duration.map { Double($0.components.seconds) + Double($0.components.attoseconds) / 1e18 }
    }

    // MARK: Observations

    /// A batch of task attempts was taken from the ready queue; the
    /// shortest of their waits was `seconds`. `drained`: the batch took all
    /// there was (fewer items than free slots), so no backlog stands now,
    /// whatever the window says.
    public func observeTaskWait(_ seconds: Double, drained: Bool = false) {
        guard let target = Self.seconds(limits.taskWaitTarget) else { return }
        if drained {
            let t = now()
            let anyCongested = state.withLock { state -> Bool in
                state.task = Window(start: t, last: seconds, congested: false)
                return state.commit.congested
            }
            shedding.store(anyCongested, ordering: .relaxed)
            return
        }
        observe(\.task, seconds, target: target)
    }

    /// A group-commit batch was taken; its oldest unit waited `seconds`.
    public func observeCommitWait(_ seconds: Double) {
        guard let target = Self.seconds(limits.commitWaitTarget) else { return }
        observe(\.commit, seconds, target: target)
    }

    private func observe(_ window: WritableKeyPath<State, Window>, _ wait: Double, target: Double) {
        let t = now()
        let anyCongested = state.withLock { state -> Bool in
            var w = state[keyPath: window]
            if t &- w.start >= intervalNanos {
                Self.close(&w, target: target)
                w.start = t
                w.shortest = wait
                w.seen = 1
            } else {
                w.shortest = min(w.shortest, wait)
                w.seen += 1
            }
            state[keyPath: window] = w
            return state.task.congested || state.commit.congested
        }
        shedding.store(anyCongested, ordering: .relaxed)
    }

    private static func close(_ w: inout Window, target: Double) {
        if w.seen > 0 {
            w.last = w.shortest
            w.congested = w.shortest > target
        } else {
            w.last = nil
            w.congested = false
        }
    }

    public func executionStarted() { inFlight.add(1, ordering: .relaxed) }

    public func executionFinished() {
        inFlight.subtract(1, ordering: .relaxed)
        let t = now()
        state.withLock { state in
            state.finished += 1
            Self.updateRate(&state, t)
        }
    }

    /// Folds the finishes of each elapsed second into the rate (EWMA); a
    /// second with none counts as zero, so the rate decays when nothing ends.
    private static func updateRate(_ state: inout State, _ t: UInt64) {
        guard state.finishedStart != 0 else {
            state.finishedStart = t
            return
        }
        let elapsed = t &- state.finishedStart
        guard elapsed >= 1_000_000_000 else { return }
        let rate = Double(state.finished) / (Double(elapsed) / 1e9)
        state.completionRate = 0.5 * state.completionRate + 0.5 * rate
        state.finished = 0
        state.finishedStart = t
    }

    /// Seconds until what is in flight now is expected to have finished at
    /// the recent completion rate (nil: nothing has finished lately).
    private func drainSeconds(_ state: inout State, _ t: UInt64) -> Double? {
        Self.updateRate(&state, t)
        let rate = state.completionRate
        guard rate >= 0.1 else { return nil }
        return Double(inFlight.load(ordering: .relaxed)) / rate
    }

    /// A commit queue nothing went through for a second holds nothing: the
    /// writer takes whatever is pending at once. The ready queue is not
    /// expired this way: its batches stop when no worker slot frees (a
    /// backlog that persists, or workers starved of CPU by a flood of
    /// calls), and it says itself when it has drained (`drained`).
    private static func expireStale(_ state: inout State, _ t: UInt64) {
        if t &- state.commit.start >= 1_000_000_000 {
            state.commit = Window(start: t, last: nil, congested: false)
        }
    }

    /// An execution counted by `executionStarted` did not start after all.
    public func executionNotStarted() { inFlight.subtract(1, ordering: .relaxed) }

    /// Recovery counted the unfinished executions.
    public func setInFlight(_ count: Int) { inFlight.store(count, ordering: .relaxed) }

    public var executionsInFlight: Int { inFlight.load(ordering: .relaxed) }

    // MARK: Admission

    /// nil: admit; else why not. Cheap when nothing is congested.
    public func check() -> Refusal? {
        let cap = limits.maxExecutionsInFlight
        let running = inFlight.load(ordering: .relaxed)
        if cap > 0, running >= cap {
            let t = now()
            return state.withLock { state -> Refusal in
                if let cached = state.cached, cached.refusal.reason == .inFlight, t &- cached.at < Self.cacheNanos {
                    return cached.refusal
                }
                // One place frees per finish: the excess over the cap at the
                // recent completion rate; nothing finishing lately: 10 s.
                Self.updateRate(&state, t)
                let rate = state.completionRate
                let wait = rate >= 0.1 ? Double(running - cap + 1) / rate : 10
                let refusal = Refusal(
                    reason: .inFlight, retryAfter: max(1, wait.rounded(.up)),
                    description: "the server is at capacity: \(running) execution\(running == 1 ? "" : "s") in flight, its limit is \(cap) (--max-executions-in-flight)")
                state.cached = (refusal, t)
                return refusal
            }
        }
        guard shedding.load(ordering: .relaxed) else { return nil }
        let t = now()
        return state.withLock { state -> Refusal? in
            Self.expireStale(&state, t)
            let congested: (Reason, Window)? =
                state.task.congested ? (.taskWait, state.task) : state.commit.congested ? (.commitWait, state.commit) : nil
            guard let (reason, window) = congested else {
                shedding.store(false, ordering: .relaxed)
                return nil
            }
            if let cached = state.cached, cached.refusal.reason == reason, t &- cached.at < Self.cacheNanos {
                return cached.refusal
            }
            let wait = window.last ?? 1
            let queue = reason == .taskWait ? "ready queue (workers)" : "commit queue (the store's writer)"
            // Come back when the work in flight has drained at the recent
            // completion rate (at least the queue's own wait).
            let drain = max(wait, drainSeconds(&state, t) ?? wait)
            let refusal = Refusal(
                reason: reason, retryAfter: max(1, drain.rounded(.up)),
                description:
                    "the server is at capacity: work waits \(Int((wait * 1000).rounded())) ms in its \(queue) (a standing backlog); retry after the backlog clears")
            state.cached = (refusal, t)
            return refusal
        }
    }

    /// The shortest wait of the last closed window of each queue, and
    /// whether it is congested (for the metrics).
    public func snapshot() -> (taskWait: Double?, commitWait: Double?, shedding: Bool) {
        let t = now()
        return state.withLock { state in
            Self.expireStale(&state, t)
            return (state.task.last, state.commit.last, state.task.congested || state.commit.congested)
        }
    }
}
