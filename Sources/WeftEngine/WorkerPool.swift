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
/// least every `idlePoll` anyway (once 20 looks in a row found nothing and
/// no wake-up came, the wait doubles per look up to `4 × idlePoll`:
/// `IdleBackoff`). Commits also hand ready tasks straight to
/// a free slot (`DirectDispatch`).
///
/// Slots are shared fairly between organizations (tenants): one tenant
/// holds at most `tenantCap` slots at once, and queued work is leased
/// round-robin between tenants (`QueueStore.leaseFairly`), so a tenant that
/// floods the queue, or whose tasks hang, cannot keep another's work
/// waiting. While work waits in the queue, commits do not hand new tasks
/// straight to freed slots (the queue's fair order goes first).
///
/// Every attempt runs as a child task of `run()`. At graceful shutdown the
/// pool stops leasing and stops taking tasks from commits, lets attempts in
/// progress finish for up to `drainTimeout`, then leaves the rest to the
/// next start (their outcomes are not recorded; their leases are released
/// at the next start and they run again: at-least-once).
public final class WorkerPool: DirectDispatch, Service {
    let engine: Engine
    let slots: Int
    /// Slots one tenant may hold at once.
    let tenantCap: Int
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

    /// Busy slots, in total and by tenant; whether ready work is believed
    /// to wait in the queue (then commits do not take freed slots first).
    private struct Usage {
        var busy = 0
        var byTenant: [String: Int] = [:]
        var backlog = false
        /// The tenant served last by a fair lease (the next round starts after it).
        var lastTenant: String?
    }

    private let usage = Mutex(Usage())
    private let inbox: AsyncStream<Work>
    private let inboxContinuation: AsyncStream<Work>.Continuation
    /// Graceful shutdown reached the pool: stop leasing.
    private let stopping = Latch()

    public init(
        engine: Engine, slots: Int, tenantCap: Int? = nil, name: String = "weft", idlePoll: Duration = .milliseconds(250),
        drainTimeout: Duration = .seconds(10), metrics: EngineMetrics? = nil,
        logger: Logger = Logger(label: "weft.workers"), onError: @escaping @Sendable (any Error) -> Void = { _ in }
    ) {
        self.engine = engine
        self.slots = max(1, slots)
        self.tenantCap = max(1, min(tenantCap ?? slots, slots))
        self.name = name
        self.idlePoll = idlePoll
        self.drainTimeout = drainTimeout
        self.metrics = metrics
        self.onError = onError
        self.logger = logger
        (inbox, inboxContinuation) = AsyncStream.makeStream(of: Work.self)
    }

    /// Attempts running now.
    public var busySlots: Int { usage.withLock { $0.busy } }

    /// Slots `tenant` holds now.
    public func busySlots(tenant: String) -> Int { usage.withLock { $0.byTenant[tenant] ?? 0 } }

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

    public func reserve(tenant: String) -> Bool {
        guard isAccepting else { return false }
        let (slots, cap) = (slots, tenantCap)
        let capped = !tenant.hasPrefix(Self.uncappedPrefix)
        let taken = usage.withLock { usage -> Int? in
            guard !usage.backlog, usage.busy < slots else { return nil }
            guard !capped || usage.byTenant[tenant, default: 0] < cap else {
                // The tenant holds its share: the item goes to the queue,
                // leased from there in fair order; until that queue is
                // drained, freed slots go to it first.
                usage.backlog = true
                return nil
            }
            usage.busy += 1
            usage.byTenant[tenant, default: 0] += 1
            return usage.busy
        }
        guard let taken else { return false }
        metrics?.workers(busy: taken, total: slots)
        return true
    }

    public func cancelReservation(tenant: String) { slotFreed(tenant: tenant) }

    public func run(_ lease: Lease) {
        if case .dropped = inboxContinuation.yield(.attempt(lease)) {
            // Stopped: the leased item is delivered again after the next start.
            slotFreed(tenant: lease.item.tenant)
        }
    }

    // MARK: Loops

    /// Runs a lease on a slot it holds; frees the slot unless the attempt
    /// passed it on to the next task of its execution.
    private func runOnSlot(_ lease: Lease) async {
        let (passed, error) = await engine.handleOnSlot(lease)
        if let error, !(error is CancellationError) { onError(error) }
        if !passed { slotFreed(tenant: lease.item.tenant) }
    }

    private func slotFreed(tenant: String) {
        let cap = tenantCap
        let (left, wake) = usage.withLock { usage in
            usage.busy -= 1
            let held = usage.byTenant[tenant] ?? 0
            usage.byTenant[tenant] = held > 1 ? held - 1 : nil
            // Work may wait in the queue for this slot: this tenant was at
            // its share, or commits are queueing behind a backlog.
            return (usage.busy, (held >= cap && !tenant.hasPrefix(Self.uncappedPrefix)) || usage.backlog)
        }
        if wake { engine.signal.notify(EngineQueues.builtin) }
        metrics?.workers(busy: left, total: slots)
        engine.signal.notify(Self.slotsQueue)
    }

    private static let slotsQueue = "#slots"

    /// Tenants of instant tasks (`~` + organization): not bounded by the
    /// share, since such a task holds its slot only while it commits.
    public static let uncappedPrefix = "~"

    /// Leases ready items of `queue` while there is room (timers need none).
    private func leaseLoop(_ queue: String) async {
        let signal = engine.signal
        let isTimers = queue == EngineQueues.timers
        var backoff = IdleBackoff(base: idlePoll, cap: idlePoll * 4)
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
                if isTimers {
                    leases = try await engine.lease(queue, worker: "\(name)-timers", limit: wanted)
                } else {
                    let cap = tenantCap
                    let held = usage.withLock { $0.byTenant }
                    leases = try await engine.leaseFairly(
                        queue, worker: "\(name)-builtin", limit: wanted, after: usage.withLock { $0.lastTenant },
                        room: { [wanted] tenant in tenant.hasPrefix(Self.uncappedPrefix) ? wanted : cap - (held[tenant] ?? 0) })
                    // Fewer than asked: nothing else is leasable now (or its
                    // tenants hold their share): commits may take free slots again.
                    if leases.count < wanted { usage.withLock { $0.backlog = false } }
                }
            } catch {
                if !(error is CancellationError) { onError(error) }
                await signal.wait(Self.stopQueue, since: signal.generation(Self.stopQueue), timeout: .milliseconds(100))
                continue
            }
            if leases.isEmpty {
                await signal.wait(queue, since: generation, timeout: backoff.nextWait())
                if signal.generation(queue) != generation { backoff.reset() }
                continue
            }
            backoff.reset()
            if isTimers {
                // A timer leased as the pool stops stays leased and is
                // handled after the next start (its lease is released then).
                for lease in leases { inboxContinuation.yield(.timer(lease)) }
            } else {
                let now = usage.withLock { usage in
                    usage.busy += leases.count
                    for lease in leases { usage.byTenant[lease.item.tenant, default: 0] += 1 }
                    usage.lastTenant = leases.last?.item.tenant
                    return usage.busy
                }
                metrics?.workers(busy: now, total: slots)
                for lease in leases {
                    // The pool stopped while this lease was taken: the item is
                    // delivered again after the next start; its slot is free.
                    if case .dropped = inboxContinuation.yield(.attempt(lease)) { slotFreed(tenant: lease.item.tenant) }
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
