public import Foundation
import Synchronization
public import WeftStore

/// The in-process workers: `slots` attempts of built-in tasks run at once.
/// One dispatcher leases as many ready items as there are free slots (one
/// store transaction for the lot) and runs each in a child task; a second
/// loop fires due timers (timeouts), so a pool busy with long tasks never
/// delays a timeout. Both sleep on the `WorkSignal` when there is nothing
/// to do, and look at the store at least every `idlePoll` anyway.
public final class WorkerPool: DirectDispatch {
    let engine: Engine
    let slots: Int
    let name: String
    let idlePoll: Duration
    let metrics: EngineMetrics?
    /// How long stopping waits for attempts in progress.
    let drainTimeout: Duration
    private let busy = Mutex(0)

    /// Told about errors of attempts and leases (logged by the server).
    let onError: @Sendable (any Error) -> Void

    public init(engine: Engine, slots: Int, name: String = "weft", idlePoll: Duration = .milliseconds(250),
                drainTimeout: Duration = .seconds(10), metrics: EngineMetrics? = nil,
                onError: @escaping @Sendable (any Error) -> Void = { _ in }) {
        self.onError = onError
        self.drainTimeout = drainTimeout
        self.engine = engine
        self.slots = max(1, slots)
        self.name = name
        self.idlePoll = idlePoll
        self.metrics = metrics
    }

    /// Runs until the surrounding task is cancelled; attempts in progress
    /// then finish (or are re-delivered after a restart).
    public func run() async {
        metrics?.workers(busy: 0, total: slots)
        await engine.attach(self)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.dispatch(onError: self.onError) }
            group.addTask { await self.timers(onError: self.onError) }
        }
    }

    public func reserve() -> Bool {
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
        Task { await self.runOnSlot(lease) }
    }

    /// Runs a lease on a slot it holds; frees the slot unless the attempt
    /// passed it on to the next task of its execution.
    private func runOnSlot(_ lease: Lease) async {
        let (passed, error) = await engine.handleOnSlot(lease)
        if let error { onError(error) }
        if !passed { slotFreed() }
    }

    private func slotFreed() {
        let left = busy.withLock { $0 -= 1; return $0 }
        metrics?.workers(busy: left, total: slots)
        engine.signal.notify(Self.slotsQueue)
    }

    private static let slotsQueue = "#slots"

    private func dispatch(onError: @escaping @Sendable (any Error) -> Void) async {
        let signal = engine.signal
        while !Task.isCancelled {
            let free = slots - busy.withLock { $0 }
            if free <= 0 {
                let generation = signal.generation(Self.slotsQueue)
                if busy.withLock({ $0 }) >= slots {
                    await signal.wait(Self.slotsQueue, since: generation, timeout: idlePoll)
                }
                continue
            }
            let generation = signal.generation(Engine.builtinQueue)
            let leases: [Lease]
            let wanted = min(free, 64)
            do {
                leases = try await engine.lease(Engine.builtinQueue, worker: "\(name)-builtin", limit: wanted)
            } catch {
                if !(error is CancellationError) { onError(error) }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            if leases.isEmpty {
                await signal.wait(Engine.builtinQueue, since: generation, timeout: idlePoll)
                continue
            }
            let now = busy.withLock { $0 += leases.count; return $0 }
            metrics?.workers(busy: now, total: slots)
            for lease in leases {
                // Not a child task: stopping the pool must not cancel an
                // attempt halfway through its commit (the store calls
                // are cancellable, and a leased item left behind would
                // wait for its lease to expire). `run` waits for them.
                Task { await self.runOnSlot(lease) }
            }
        }
        // Stopping: no more tasks from commits; let attempts in progress
        // finish for a while; the rest are delivered again after the next start.
        await Task.detached { await self.engine.attach(nil) }.value
        let deadline = ContinuousClock.now + drainTimeout
        while busy.withLock({ $0 }) > 0, ContinuousClock.now < deadline {
            let generation = signal.generation(Self.slotsQueue)
            if busy.withLock({ $0 }) == 0 { break }
            // Detached: this task is cancelled, so its own waits would return at once.
            await Task.detached { await signal.wait(Self.slotsQueue, since: generation, timeout: .milliseconds(50)) }.value
        }
    }

    private func timers(onError: @escaping @Sendable (any Error) -> Void) async {
        let signal = engine.signal
        while !Task.isCancelled {
            let generation = signal.generation(Engine.timerQueue)
            let leases: [Lease]
            do {
                leases = try await engine.lease(Engine.timerQueue, worker: "\(name)-timers", limit: 64)
            } catch {
                if !(error is CancellationError) { onError(error) }
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            if leases.isEmpty {
                await signal.wait(Engine.timerQueue, since: generation, timeout: idlePoll)
                continue
            }
            for lease in leases {
                Task { do { try await self.engine.handle(lease) } catch { onError(error) } }
            }
        }
    }
}
