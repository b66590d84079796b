public import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
import Tracing
import WeftObservability
public import WeftStore

/// Fires schedule ticks exactly once, driven by the durable queue.
///
/// Each schedule has one wake-up item on the `schedules` queue (due at its
/// next tick plus jitter). The scheduler leases due items (by due time) and
/// for each moves the schedule on from its stored next tick, the truth:
///
/// - A tick's execution is created in the same unit of the engine's group
///   commit as the schedule's advance to the following tick, and that
///   advance is guarded by the tick it starts from (`ScheduleUpdate`):
///   whoever handles a tick second fails its whole unit, execution and all.
///   The execution's idempotency key is the tick (`schedule:<id>:<ms>`),
///   shared with backfills, so a tick a backfill already ran is not run
///   again. A crash between units leaves the schedule at a tick not yet
///   handled and its (leased) item, released at the next start.
/// - Ticks late by more than `misfireGrace` (the server was down) follow
///   the schedule's catch-up policy; later ones fire as usual.
/// - The overlap policy decides what a tick does while the schedule's last
///   execution runs; `buffer_one` watches that execution and starts the
///   buffered tick when it ends.
///
/// Backfills run here too (`startBackfill`), one task each.
public final class Scheduler: Service, Sendable {
    let schedules: any ScheduleStore
    let workflows: any WorkflowStore
    let executions: any ExecutionStore
    let queue: any QueueStore
    let engine: Engine
    let admission: (any TickAdmission)?
    let metrics: SchedulerMetrics?
    let logger: Logger
    let now: @Sendable () -> Date
    let name: String

    /// Ticks late by more than this were missed (the server was down or
    /// overloaded): the catch-up policy decides about them.
    public static let misfireGrace: TimeInterval = 60
    /// Ticks looked at in one pass over a schedule's overdue ticks.
    static let maxTicksPerPass = 100_000
    /// How long a published event id deduplicates (then it is forgotten).
    public static let eventRetention: TimeInterval = 7 * 86_400
    /// At most this many ticks in a backfill.
    public static let maxBackfillTicks = 10_000
    let leaseDuration: TimeInterval = 60
    let batch = 512

    struct State {
        /// Schedules a handler is moving on now (one handler per schedule).
        var handling: Set<String> = []
        /// Parsed clocks by schedule id, with the text they were made of.
        var clocks: [String: (cron: String, timezone: String, clock: ScheduleClock)] = [:]
        /// Buffered schedules whose running execution is watched.
        var watching: [String: Task<Void, Never>] = [:]
        var backfills: [String: Task<Void, Never>] = [:]
        var cancelledBackfills: Set<String> = []
        /// A recount of the schedules gauge is on its way.
        var countsPending = false
    }

    let state = Mutex(State())
    let stopping = Latch()
    let started = Latch()

    public init(
        schedules: any ScheduleStore, workflows: any WorkflowStore, executions: any ExecutionStore, queue: any QueueStore,
        engine: Engine, admission: (any TickAdmission)? = nil, metrics: SchedulerMetrics? = nil,
        logger: Logger = Logger(label: "weft.scheduler"), name: String = "scheduler",
        now: @escaping @Sendable () -> Date = { Date.nowMillis }
    ) {
        self.schedules = schedules
        self.workflows = workflows
        self.executions = executions
        self.queue = queue
        self.engine = engine
        self.admission = admission
        self.metrics = metrics
        self.logger = logger
        self.name = name
        self.now = now
    }

    // MARK: Service

    public func run() async throws {
        // After recovery: it would release leases taken before it.
        try await engine.waitUntilReady()
        try await prepare()
        await withDiscardingTaskGroup { group in
            group.addTask {
                await self.stopping.openAtGracefulShutdown()
                self.engine.signal.notify(ScheduleRecord.queue)
            }
            await self.leaseLoop()
            // Stopping: end the watchers and backfills (their state is in the
            // store; the next start resumes them).
            let tasks = self.state.withLock { state in Array(state.watching.values) + Array(state.backfills.values) }
            for task in tasks { task.cancel() }
            for task in tasks { await task.value }
        }
    }

    /// What a start does before the loop: ends the wake-up leases of the
    /// last process (it is gone), watches the running executions of
    /// buffered ticks, resumes running backfills.
    public func prepare() async throws {
        try await queue.releaseAll(queues: [ScheduleRecord.queue])
        // Every active schedule has its wake-up (enqueueing is idempotent):
        // one lost to anything is made again here.
        let active = try await schedules.activeSchedules()
        try await queue.enqueue(active.compactMap { schedule in schedule.nextRunAt.map { schedule.wakeUp(tick: $0) } })
        started.open()
        await refreshCounts()
        for schedule in try await schedules.bufferedSchedules() {
            if let running = schedule.lastExecutionId { watchBuffered(schedule.id, running: running) }
        }
        for backfill in try await schedules.runningBackfills() { launch(backfill.id) }
    }

    /// Leases the due wake-ups (up to a batch) and moves their schedules
    /// on; returns how many it leased. The loop calls it; tests call it
    /// with a manual clock.
    @discardableResult
    public func runDue() async throws -> Int {
        let leases = try await leaseDue(limit: batch)
        await withDiscardingTaskGroup { group in
            for (lease, schedule) in leases { group.addTask { await self.handle(lease, schedule) } }
        }
        return leases.count
    }

    /// Leases due wake-ups and reads their schedules in one query.
    private func leaseDue(limit: Int) async throws -> [(Lease, ScheduleRecord?)] {
        let leases = try await queue.lease(
            queue: ScheduleRecord.queue, worker: name, now: now(), duration: leaseDuration, limit: limit)
        guard !leases.isEmpty else { return [] }
        let records = try await schedules.schedules(ids: leases.map(\.item.executionId))
        return leases.map { ($0, records[$0.item.executionId]) }
    }

    /// Stops the loop (what graceful shutdown does under a service group).
    public func stop() {
        stopping.open()
        engine.signal.notify(ScheduleRecord.queue)
    }

    /// Wakes the loop: a schedule's next tick was written by someone else
    /// (the API), maybe earlier than any it knew.
    public func scheduleChanged() {
        engine.signal.notify(ScheduleRecord.queue)
        // The gauge is counted again at most once a second (a bulk import
        // of schedules does not count them once each).
        let first = state.withLock { state -> Bool in
            defer { state.countsPending = true }
            return !state.countsPending
        }
        guard first else { return }
        Task {
            try? await Task.sleep(for: .seconds(1))
            state.withLock { $0.countsPending = false }
            await refreshCounts()
        }
    }

    func refreshCounts() async {
        guard let metrics, let counts = try? await schedules.scheduleCounts() else { return }
        metrics.setSchedules(active: counts.active, paused: counts.paused)
    }

    private final class Counter: Sendable {
        let value = Mutex(0)
    }

    /// Handlers running at once, at most (their units share group commits).
    static let maxInFlight = 1024
    /// Where handlers say they finished (the loop waits there when full).
    static let doneSignal = "schedules/done"

    /// Leases due wake-ups while there is room and hands each to a handler
    /// task, without waiting for a batch to finish (a burst of due ticks
    /// flows through the group commit); sleeps until the earliest wake-up,
    /// a change, or a minute when nothing is due.
    private func leaseLoop() async {
        let signal = engine.signal
        let inFlight = Counter()
        var lastCount = ContinuousClock.now
        var lastPurge = ContinuousClock.now - .seconds(3600)
        await withDiscardingTaskGroup { group in
            while !stopping.isOpen {
                let generation = signal.generation(ScheduleRecord.queue)
                let done = signal.generation(Self.doneSignal)
                let room = Self.maxInFlight - inFlight.value.withLock { $0 }
                if room < batch / 2 {
                    await signal.wait(Self.doneSignal, since: done, timeout: .milliseconds(100))
                    continue
                }
                do {
                    let leases = try await leaseDue(limit: min(batch, room))
                    if !leases.isEmpty {
                        inFlight.value.withLock { $0 += leases.count }
                        for (lease, schedule) in leases {
                            group.addTask {
                                await self.handle(lease, schedule)
                                inFlight.value.withLock { $0 -= 1 }
                                signal.notify(Self.doneSignal)
                            }
                        }
                        continue
                    }
                    // Idle: recount the schedules gauge now and then (a
                    // workflow deleted elsewhere takes its schedules out).
                    if ContinuousClock.now - lastCount > .seconds(30) {
                        lastCount = .now
                        await refreshCounts()
                    }
                    // Event ids deduplicate for a week.
                    if ContinuousClock.now - lastPurge > .seconds(3600) {
                        lastPurge = .now
                        _ = try? await schedules.purgeEvents(before: now().addingTimeInterval(-Self.eventRetention))
                    }
                    // Sleep until the earliest wake-up (or a change, or a minute).
                    let next = try await schedules.nextWakeUp()
                    let wait = min(60, max(0.001, next.map { $0.timeIntervalSince(now()) } ?? 60))
                    await signal.wait(ScheduleRecord.queue, since: generation, timeout: .milliseconds(Int64(wait * 1000) + 1))
                } catch {
                    logger.error("scheduler: \(error)")
                    await signal.wait(ScheduleRecord.queue, since: generation, timeout: .seconds(1))
                }
            }
        }
    }
}
