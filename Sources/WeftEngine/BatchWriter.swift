import Dispatch
import Synchronization

/// Writes what many callers hand over in batches, one batch at a time, on
/// the task that runs it (`run()`, started by the engine's service): while
/// one batch is being written, the next one gathers, so a busy engine pays
/// one transaction (one fsync) for many callers. The group commit of state
/// changes and the execution log writer are both one of these.
///
/// A caller either waits for its unit's outcome (`submit`) or hands it
/// over and goes on (`append`, then `flush` to wait for everything so far).
/// `finish()` stops the writer once what is pending is written; anything
/// handed over after that fails with `BatchWriterError.stopped` (or is
/// dropped, for `append`), so nothing waits forever.
public final class BatchWriter<Unit: Sendable>: Sendable {
    /// Writes a batch; returns each unit's error (nil: written), in order.
    /// Throwing fails the whole batch.
    public typealias Write = @Sendable ([Unit]) async throws -> [(any Error)?]

    private struct Entry {
        let unit: Unit
        let weight: Int
        let waiter: CheckedContinuation<Void, any Error>?
        /// When it was handed over (monotonic nanoseconds).
        let enqueued: UInt64
    }

    private struct State {
        var pending: [Entry] = []
        var pendingHead = 0
        var running = false
        var finishing = false
        var stopped = false
        /// The writer, asleep while nothing is pending.
        var writer: CheckedContinuation<Void, Never>?
        /// Units handed over and units handled (written or failed) so far.
        var handedOver = 0
        var handled = 0
        var flushWaiters: [(target: Int, waiter: CheckedContinuation<Void, Never>)] = []

        var hasPending: Bool { pendingHead < pending.count }
    }

    public let name: String
    private let maxBatchWeight: Int
    private let weight: @Sendable (Unit) -> Int
    private let write: Write
    /// Told, for every batch taken, how long its oldest unit waited
    /// (seconds): admission control's view of this queue.
    private let queueWait: (@Sendable (Double) -> Void)?
    private let state = Mutex(State())

    /// - Parameters:
    ///   - maxBatchWeight: a batch holds units up to this total weight (at
    ///     least one unit).
    ///   - weight: a unit's share of a batch (e.g. its number of rows).
    public init(
        name: String, maxBatchWeight: Int, weight: @escaping @Sendable (Unit) -> Int = { _ in 1 },
        queueWait: (@Sendable (Double) -> Void)? = nil, write: @escaping Write
    ) {
        self.name = name
        self.queueWait = queueWait
        self.maxBatchWeight = max(1, maxBatchWeight)
        self.weight = weight
        self.write = write
    }

    /// Hands a unit over and waits until it is written (or its error).
    public func submit(_ unit: Unit) async throws {
        let weight = self.weight(unit)
        try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
            let (accepted, writer) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
                guard !state.stopped else { return (false, nil) }
                state.pending.append(Entry(unit: unit, weight: weight, waiter: waiter, enqueued: Self.clock()))
                state.handedOver += 1
                defer { state.writer = nil }
                return (true, state.writer)
            }
            if accepted { writer?.resume() } else { waiter.resume(throwing: BatchWriterError.stopped(name)) }
        }
    }

    /// Hands a unit over without waiting. Returns false when the writer has
    /// stopped (the unit is dropped).
    @discardableResult
    public func append(_ unit: Unit) -> Bool {
        let weight = self.weight(unit)
        let (accepted, writer) = state.withLock { state -> (Bool, CheckedContinuation<Void, Never>?) in
            guard !state.stopped else { return (false, nil) }
            state.pending.append(Entry(unit: unit, weight: weight, waiter: nil, enqueued: queueWait == nil ? 0 : Self.clock()))
            state.handedOver += 1
            defer { state.writer = nil }
            return (true, state.writer)
        }
        writer?.resume()
        return accepted
    }

    /// Returns once every unit handed over before the call is handled.
    public func flush() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                guard state.handled < state.handedOver, !state.stopped || state.hasPending else { return true }
                state.flushWaiters.append((state.handedOver, waiter))
                return false
            }
            if done { waiter.resume() }
        }
    }

    /// Units handed over and not yet taken into a batch.
    var pendingCount: Int { state.withLock { $0.pending.count - $0.pendingHead } }

    /// Whether the writer has stopped (it refuses new units).
    public var isStopped: Bool { state.withLock { $0.stopped } }

    /// Stops the writer after it has written everything handed over so far.
    public func finish() {
        let writer = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finishing = true
            defer { state.writer = nil }
            return state.writer
        }
        writer?.resume()
    }

    /// The writer: takes what gathered, writes it, repeats; sleeps while
    /// nothing is pending; returns after `finish()` once nothing is left.
    /// Its writes run under no caller's trace (the writer's own task).
    public func run() async {
        state.withLock { $0.running = true }
        while true {
            let batch = state.withLock { state -> [Entry]? in
                guard state.hasPending else {
                    if state.finishing { state.stopped = true }
                    return nil
                }
                var batch: [Entry] = []
                var total = 0
                while state.hasPending {
                    let next = state.pending[state.pendingHead]
                    guard batch.isEmpty || total + next.weight <= maxBatchWeight else { break }
                    batch.append(next)
                    total += next.weight
                    state.pendingHead += 1
                }
                if state.pendingHead > 1024, state.pendingHead * 2 > state.pending.count {
                    state.pending.removeFirst(state.pendingHead)
                    state.pendingHead = 0
                }
                return batch
            }
            guard let batch else {
                if state.withLock({ $0.stopped }) { break }
                await sleepUntilWork()
                continue
            }
            if let queueWait, let oldest = batch.first {
                queueWait(Double(Self.clock() &- oldest.enqueued) / 1e9)
            }
            let outcomes: [(any Error)?]
            do {
                outcomes = try await write(batch.map(\.unit))
            } catch {
                outcomes = Array(repeating: error, count: batch.count)
            }
            for (entry, outcome) in zip(batch, outcomes) {
                if let outcome { entry.waiter?.resume(throwing: outcome) } else { entry.waiter?.resume() }
            }
            handled(batch.count)
        }
        // Stopped: whatever is handed over from now on is refused at once,
        // and nobody waits for a flush that cannot come.
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            defer { state.flushWaiters.removeAll() }
            return state.flushWaiters.map(\.waiter)
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func clock() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    private func handled(_ count: Int) {
        let done = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.handled += count
            let handled = state.handled
            let done = state.flushWaiters.filter { $0.target <= handled }.map(\.waiter)
            state.flushWaiters.removeAll { $0.target <= handled }
            return done
        }
        for waiter in done { waiter.resume() }
    }

    private func sleepUntilWork() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.hasPending || state.finishing { return true }
                state.writer = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}

public enum BatchWriterError: Error, Equatable, CustomStringConvertible {
    /// The writer was stopped (the server is shutting down).
    case stopped(String)

    public var description: String {
        switch self {
        case .stopped(let name): "the \(name) writer has stopped (the server is shutting down)"
        }
    }
}
