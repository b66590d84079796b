import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
public import WeftStore

/// The in-process workers, a service: `slots` attempts of built-in tasks
/// run at once. One loop leases as many ready items as there are free
/// slots (one store transaction for the lot); a second fires due timers
/// (timeouts), so a pool busy with long tasks never delays a timeout; a
/// third renews the leases of running attempts. Both leasing loops sleep on
/// the `WorkSignal` when there is nothing to do, and look at the store at
/// least every `idlePoll` anyway. Commits also hand ready tasks straight to
/// a free slot (`DirectDispatch`).
///
/// Every attempt runs as a child task of `run()`. At graceful shutdown the
/// pool stops leasing and stops taking tasks from commits, lets attempts in
/// progress finish for up to `drainTimeout`, then leaves the rest to the
/// next start (their outcomes are not recorded; their leases are released
/// at the next start and they run again: at-least-once).
public final class WorkerPool: DirectDispatch, Service {
    let engine: Engine
    let slots: Int
    let name: String
    let idlePoll: Duration
    let drainTimeout: Duration
    let metrics: EngineMetrics?
    /// Told about errors of attempts and leases (logged by the server).
    let onError: @Sendable (any Error) -> Void
    /// The drain at shutdown: how many attempts ran on and how it ended.
    let logger: Logger

    private enum Work: Sendable {
        /// A built-in task on a slot the pool already counts as busy.
        case attempt(Lease)
        case timer(Lease)
    }

    private let busy = Mutex(0)
    private let inbox: AsyncStream<Work>
    private let inboxContinuation: AsyncStream<Work>.Continuation
    /// Graceful shutdown reached the pool: stop leasing.
    private let stopping = Latch()

    public init(
        engine: Engine, slots: Int, name: String = "weft", idlePoll: Duration = .milliseconds(250),
        drainTimeout: Duration = .seconds(10), metrics: EngineMetrics? = nil,
        logger: Logger = Logger(label: "weft.workers"), onError: @escaping @Sendable (any Error) -> Void = { _ in }
    ) {
        self.engine = engine
        self.slots = max(1, slots)
        self.name = name
        self.idlePoll = idlePoll
        self.drainTimeout = drainTimeout
        self.metrics = metrics
        self.onError = onError
        self.logger = logger
        (inbox, inboxContinuation) = AsyncStream.makeStream(of: Work.self)
    }

    /// Attempts running now.
    public var busySlots: Int { busy.withLock { $0 } }

    public func run() async throws {
        // Recovery first: it releases the leases of the last run, and would
        // release ones taken here before it.
        try await engine.waitUntilReady()
        metrics?.workers(busy: 0, total: slots)
        await engine.attach(self)
        await withDiscardingTaskGroup { group in
            group.addTask { await self.leaseLoop(EngineQueues.builtin) }
            group.addTask { await self.leaseLoop(EngineQueues.timers) }
            group.addTask { await self.heartbeats() }
            group.addTask { await self.drainAtShutdown() }
            for await work in inbox {
                switch work {
                case .attempt(let lease): group.addTask { await self.runOnSlot(lease) }
                case .timer(let lease):
                    group.addTask {
                        do { try await self.engine.handle(lease) } catch { self.onError(error) }
                    }
                }
            }
            // The drain is over: what still runs is abandoned (its outcome
            // is not recorded) and cancelled, with the heartbeats.
            group.cancelAll()
        }
    }

    /// Returns once graceful shutdown has reached the pool (it takes no
    /// new work from then on).
    public func waitUntilStopping() async { await stopping.wait() }

    // MARK: DirectDispatch

    public var isAccepting: Bool { !stopping.isOpen }

    public func reserve() -> Bool {
        guard isAccepting else { return false }
        let taken = busy.withLock { busy -> Int? in
            guard busy < slots else { return nil }
            busy += 1
            return busy
        }
        guard let taken else { return false }
        metrics?.workers(busy: taken, total: slots)
        return true
    }

    public func cancelReservation() { slotFreed() }

    public func run(_ lease: Lease) {
        if case .dropped = inboxContinuation.yield(.attempt(lease)) {
            // Stopped: the leased item is delivered again after the next start.
            slotFreed()
        }
    }

    // MARK: Loops

    /// Runs a lease on a slot it holds; frees the slot unless the attempt
    /// passed it on to the next task of its execution.
    private func runOnSlot(_ lease: Lease) async {
        let (passed, error) = await engine.handleOnSlot(lease)
        if let error, !(error is CancellationError) { onError(error) }
        if !passed { slotFreed() }
    }

    private func slotFreed() {
        let left = busy.withLock { $0 -= 1; return $0 }
        metrics?.workers(busy: left, total: slots)
        engine.signal.notify(Self.slotsQueue)
    }

    private static let slotsQueue = "#slots"

    /// Leases ready items of `queue` while there is room (timers need none).
    private func leaseLoop(_ queue: String) async {
        let signal = engine.signal
        let isTimers = queue == EngineQueues.timers
        while !stopping.isOpen && !Task.isCancelled {
            var wanted = 64
            if !isTimers {
                let free = slots - busySlots
                if free <= 0 {
                    let generation = signal.generation(Self.slotsQueue)
                    if busySlots >= slots { await signal.wait(Self.slotsQueue, since: generation, timeout: idlePoll) }
                    continue
                }
                wanted = min(free, 64)
            }
            let generation = signal.generation(queue)
            let leases: [Lease]
            do {
                leases = try await engine.lease(queue, worker: "\(name)-\(isTimers ? "timers" : "builtin")", limit: wanted)
            } catch {
                if !(error is CancellationError) { onError(error) }
                await signal.wait(Self.stopQueue, since: signal.generation(Self.stopQueue), timeout: .milliseconds(100))
                continue
            }
            if leases.isEmpty {
                await signal.wait(queue, since: generation, timeout: idlePoll)
                continue
            }
            if isTimers {
                // A timer leased as the pool stops stays leased and is
                // handled after the next start (its lease is released then).
                for lease in leases { inboxContinuation.yield(.timer(lease)) }
            } else {
                let now = busy.withLock { $0 += leases.count; return $0 }
                metrics?.workers(busy: now, total: slots)
                for lease in leases {
                    // The pool stopped while this lease was taken: the item is
                    // delivered again after the next start; its slot is free.
                    if case .dropped = inboxContinuation.yield(.attempt(lease)) { slotFreed() }
                }
            }
        }
    }

    /// Wakes the leasing loops when the pool stops.
    private static let stopQueue = "#stop"

    /// Renews the leases of running attempts every third of the lease.
    private func heartbeats() async {
        let interval = Duration.milliseconds(Int64(engine.leaseDuration * 1000 / 3))
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            await engine.renewHeldLeases()
        }
    }

    /// Waits for graceful shutdown (or cancellation), then stops leasing,
    /// lets running attempts finish up to the drain deadline, and ends the
    /// inbox (which ends `run()`).
    private func drainAtShutdown() async {
        await stopping.openAtGracefulShutdown()
        let signal = engine.signal
        for queue in [EngineQueues.builtin, EngineQueues.timers, Self.slotsQueue, Self.stopQueue] { signal.notify(queue) }
        // No more tasks from commits; attempts in progress finish for a while.
        await engine.attach(nil)
        let running = busySlots
        if running > 0 {
            logger.info("workers: stopped leasing; waiting up to \(drainTimeout) for \(running) running attempt(s)")
        }
        let started = ContinuousClock.now
        let deadline = started + drainTimeout
        while busySlots > 0, ContinuousClock.now < deadline, !Task.isCancelled {
            let generation = signal.generation(Self.slotsQueue)
            if busySlots == 0 { break }
            await signal.wait(Self.slotsQueue, since: generation, timeout: min(.milliseconds(50), deadline - .now))
        }
        let left = busySlots
        if left > 0 {
            logger.warning(
                "workers: drain deadline (\(drainTimeout)) passed with \(left) attempt(s) running; they are abandoned and run again after the next start")
            await engine.abandonRunningAttempts()
        } else if running > 0 {
            logger.info("workers: drained \(running) attempt(s) in \(ContinuousClock.now - started)")
        }
        inboxContinuation.finish()
    }
}
