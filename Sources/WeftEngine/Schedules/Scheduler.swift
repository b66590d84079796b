public import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization
import Tracing
import WeftObservability
public import WeftStore

/// Whether a tick's execution may start: the workflow's organization's
/// quotas (the server implements it). A refusal skips the tick.
public protocol TickAdmission: Sendable {
    /// Reserves one execution of the organization; returns its cap of
    /// concurrent executions (0: none). Throws `TickRefused`.
    func admit(_ workflow: WorkflowRecord) async throws -> Int
    /// Gives back a reservation that started nothing.
    func release(_ workflow: WorkflowRecord) async
}

/// A tick the organization's quotas refused; `reason` is a skip reason.
public struct TickRefused: Error, Sendable {
    public let reason: String
    public let message: String

    public init(reason: String, message: String) {
        self.reason = reason
        self.message = message
    }
}

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

    // MARK: Ticks

    private func claim(_ id: String) -> Bool { state.withLock { $0.handling.insert(id).inserted } }
    private func unclaim(_ id: String) { _ = state.withLock { $0.handling.remove(id) } }

    func clock(for schedule: ScheduleRecord) throws(CronError) -> ScheduleClock {
        if let cached = state.withLock({ $0.clocks[schedule.id] }), cached.cron == schedule.cron,
            cached.timezone == schedule.timezone
        {
            return cached.clock
        }
        let clock = try ScheduleClock(cron: schedule.cron, timezone: schedule.timezone)
        state.withLock { state in
            if state.clocks.count >= 100_000 { state.clocks.removeAll(keepingCapacity: true) }
            state.clocks[schedule.id] = (schedule.cron, schedule.timezone, clock)
        }
        return clock
    }

    /// Removes a handled wake-up by its key, held by this lease or not (a
    /// lease that ran out during a long pass must not fail the pass).
    func done(_ lease: Lease) -> ExecutionTransition {
        .removeQueued(executionId: lease.item.executionId, taskKey: lease.item.taskKey, attempt: lease.item.attempt)
    }

    /// The tick after `tick` within the schedule's end (nil: no more).
    func following(_ tick: Date, _ schedule: ScheduleRecord, _ clock: ScheduleClock) -> Date? {
        guard let next = clock.next(after: tick) else { return nil }
        if let end = schedule.endAt, next > end { return nil }
        return next
    }

    private func handle(_ lease: Lease, _ prefetched: ScheduleRecord?) async {
        let id = lease.item.executionId
        guard claim(id) else {
            // Another handler is moving this schedule on (its lease ran out
            // while it worked): it removes this item by key as it ends and
            // leaves the next wake-up. Come back in a few seconds, in case
            // it does not.
            try? await queue.release(lease, readyAt: now().addingTimeInterval(5))
            return
        }
        defer { unclaim(id) }
        do {
            try await moveOn(id, lease: lease, prefetched: prefetched)
        } catch {
            // The lease stays: the item comes back when it expires.
            logger.error("scheduler: schedule \(id): \(error)")
        }
    }

    /// Handles every tick of the schedule that is due, then leaves the
    /// wake-up of the next one (in the last unit, with this lease's end).
    private func moveOn(_ id: String, lease: Lease, prefetched: ScheduleRecord?) async throws {
        // Each pass ends the lease or restarts after a conflict (someone else
        // moved the schedule: read it again). The first pass uses the row
        // read with the lease (a stale one only fails its guard).
        var prefetched = prefetched
        for _ in 0..<100 {
            let read: ScheduleRecord?
            if let first = prefetched {
                read = first
                prefetched = nil
            } else {
                read = try await schedules.schedule(id: id)
            }
            guard let schedule = read, !schedule.paused, let tick = schedule.nextRunAt else {
                if read == nil { _ = state.withLock { $0.clocks.removeValue(forKey: id) } }
                try? await executions.apply([done(lease)])
                return
            }
            let at = now()
            let wake = schedule.wakeUp(tick: tick)
            if wake.readyAt > at {
                // Not due (an early or stale item): keep only the right wake-up.
                if wake.attempt == lease.item.attempt {
                    try await queue.release(lease, readyAt: wake.readyAt)
                } else {
                    try await executions.apply([done(lease), .enqueue(wake)])
                }
                engine.signal.notify(ScheduleRecord.queue, at: wake.readyAt)
                return
            }
            let clock: ScheduleClock
            do {
                clock = try self.clock(for: schedule)
            } catch {
                // Stored expressions were validated; one that no longer parses
                // (a zone gone from the tz database) stops the schedule.
                logger.error("schedule \(id) stopped: \(error)")
                try await executions.apply([
                    .schedule(ScheduleUpdate(scheduleId: id, expectNext: tick, setsNext: true, next: nil)), done(lease),
                ])
                return
            }
            if let wake = try await pass(schedule, tick: tick, clock: clock, lease: lease, at: at) {
                // Wake the loop when the next tick is due.
                if let wake { engine.signal.notify(ScheduleRecord.queue, at: wake) }
                return
            }
        }
    }

    /// One pass over the due ticks; nil after a conflict, else the due time
    /// of the wake-up it left (nil inside: the schedule has no next tick).
    private func pass(
        _ schedule: ScheduleRecord, tick: Date, clock: ScheduleClock, lease: Lease, at: Date
    ) async throws -> Date?? {
        var due = [tick]
        var last = tick
        while due.count < Self.maxTicksPerPass, let next = following(last, schedule, clock),
            schedule.wakeUp(tick: next).readyAt <= at
        {
            due.append(next)
            last = next
        }
        let after = following(last, schedule, clock)
        // Which due ticks run: recent ones always, overdue ones by policy.
        let overdue = due.filter { at.timeIntervalSince(schedule.wakeUp(tick: $0).readyAt) > Self.misfireGrace }
        var skipped = Set(overdue)
        if !overdue.isEmpty {
            switch schedule.catchUp {
            case .skip:
                break
            case .runOnce:
                skipped.remove(overdue[overdue.count - 1])
            case .runAll:
                let window = Double(schedule.catchUpWindowMs) / 1000
                for tick in overdue where at.timeIntervalSince(tick) <= window { skipped.remove(tick) }
            }
        }
        func finish(_ next: Date?) -> [ExecutionTransition] {
            var end: [ExecutionTransition] = [done(lease)]
            if let next { end.append(.enqueue(schedule.wakeUp(tick: next))) }
            return end
        }
        var current = schedule
        var cursor = tick
        var index = 0
        while index < due.count {
            if skipped.contains(due[index]) {
                var end = index
                while end < due.count, skipped.contains(due[end]) { end += 1 }
                let next = end < due.count ? due[end] : after
                let count = Int64(end - index)
                let final = end == due.count
                do {
                    try await executions.apply(
                        [.schedule(ScheduleUpdate(scheduleId: schedule.id, expectNext: cursor, setsNext: true, next: next, missed: count))]
                            + (final ? finish(next) : []))
                } catch StoreError.conflict {
                    return nil
                } catch StoreError.notFound {
                    return nil
                }
                metrics?.ticksMissed(count)
                logger.warning(
                    "schedule \(schedule.id): \(count) missed tick(s) from \(due[index]) not run (catch-up policy \(schedule.catchUp.rawValue))")
                cursor = next ?? cursor
                index = end
                continue
            }
            let next = index + 1 < due.count ? due[index + 1] : after
            let final = index + 1 == due.count
            guard
                try await fire(
                    current, tick: due[index], expect: cursor, next: next, end: final ? finish(next) : [],
                    due: current.wakeUp(tick: due[index]).readyAt)
            else { return nil }
            // What the tick wrote (its execution) matters to the next one's overlap check.
            if index + 1 < due.count, let reread = try await schedules.schedule(id: schedule.id) { current = reread }
            cursor = next ?? cursor
            index += 1
        }
        return .some(after.map { schedule.wakeUp(tick: $0).readyAt })
    }

    /// The input of a tick's execution: the schedule's, with the tick.
    static func input(_ schedule: ScheduleRecord, tick: Date) -> JSONValue {
        guard case .object(var fields) = schedule.input else { return schedule.input }
        if fields["scheduledTime"] == nil { fields["scheduledTime"] = .string(tick.formatted(.iso8601)) }
        return .object(fields)
    }

    func isRunning(_ executionId: String) async throws -> Bool {
        guard let record = try await executions.execution(id: executionId) else { return false }
        return !record.isFinished
    }

    /// Fires (or skips) one tick, moving the schedule from `expect` to
    /// `next`; false when the guard failed (someone else moved it).
    private func fire(
        _ schedule: ScheduleRecord, tick: Date, expect: Date, next: Date?, end: [ExecutionTransition], due: Date
    ) async throws -> Bool {
        let span = WeftTracing.start(SpanNames.scheduleTick)
        span?.attributes[SpanKeys.scheduleId] = schedule.id
        span?.attributes[SpanKeys.scheduleTick] = tick.formatted(.iso8601)
        defer { span?.end() }
        func skip(_ reason: String, next: Date?, end: [ExecutionTransition]) async throws -> Bool {
            span?.attributes[SpanKeys.scheduleOutcome] = "skipped:\(reason)"
            do {
                try await executions.apply(
                    [.schedule(ScheduleUpdate(
                        scheduleId: schedule.id, expectNext: expect, setsNext: true, next: next, skipped: 1, skippedTick: tick,
                        skipReason: reason))] + end)
            } catch StoreError.conflict {
                return false
            } catch StoreError.notFound {
                return false
            }
            metrics?.tickSkipped(reason)
            return true
        }
        guard let workflow = try await workflows.workflow(id: schedule.workflowId, includeDeleted: false) else {
            // The workflow was deleted: the schedule stops (no next tick).
            return try await skip("workflow_gone", next: nil, end: end.filter { if case .enqueue = $0 { false } else { true } })
        }
        // buffer_one: while a tick waits, later ones are skipped (the waiting
        // one starts when the running execution ends).
        if schedule.overlap == .bufferOne, schedule.bufferedTick != nil { return try await skip("overlap", next: next, end: end) }
        var cancelRunning: String?
        if schedule.overlap != .allow, let last = schedule.lastExecutionId, try await isRunning(last) {
            switch schedule.overlap {
            case .allow:
                break
            case .skip:
                return try await skip("overlap", next: next, end: end)
            case .bufferOne:
                guard schedule.bufferedTick == nil else { return try await skip("overlap", next: next, end: end) }
                span?.attributes[SpanKeys.scheduleOutcome] = "buffered"
                do {
                    try await executions.apply(
                        [.schedule(ScheduleUpdate(
                            scheduleId: schedule.id, expectNext: expect, setsNext: true, next: next, buffer: .set(tick)))] + end)
                } catch StoreError.conflict {
                    return false
                } catch StoreError.notFound {
                    return false
                }
                watchBuffered(schedule.id, running: last)
                return true
            case .cancelOther, .terminateOther:
                // Cancelled once the new tick's unit has committed (a tick
                // whose guard fails cancels nothing).
                cancelRunning = last
            }
        }
        let update = ScheduleUpdate(scheduleId: schedule.id, expectNext: expect, setsNext: true, next: next, fired: tick)
        switch try await start(schedule, workflow, tick: tick, update: update, end: end, span: span) {
        case .started:
            metrics?.tickFired(lag: now().timeIntervalSince(due))
            span?.attributes[SpanKeys.scheduleOutcome] = "fired"
            if let cancelRunning {
                let reason = "cancelled by schedule \(schedule.id) (overlap policy \(schedule.overlap.rawValue)) for its tick at \(tick.formatted(.iso8601))"
                _ = try? await engine.cancel(executionId: cancelRunning, reason: reason)
            }
            return true
        case .refused(let reason):
            return try await skip(reason, next: next, end: end)
        case .conflict:
            return false
        }
    }

    enum StartOutcome {
        case started(ExecutionRecord, created: Bool)
        case refused(String)
        case conflict
    }

    /// Starts a tick's execution with `update` (and `end`) in its unit. A
    /// tick whose execution exists (a backfill ran it) writes `update`
    /// alone, naming that execution.
    func start(
        _ schedule: ScheduleRecord, _ workflow: WorkflowRecord, tick: Date, update: ScheduleUpdate,
        end: [ExecutionTransition], span: (any Span)?
    ) async throws -> StartOutcome {
        var maxRunning = 0
        if let admission {
            do {
                maxRunning = try await admission.admit(workflow)
            } catch let refused as TickRefused {
                logger.info("schedule \(schedule.id): tick \(tick.formatted(.iso8601)) skipped: \(refused.message)")
                return .refused(refused.reason)
            }
        }
        let executionId = IDGenerator.make(IDGenerator.execution, now: now())
        var released = false
        var update = update
        update.executionId = executionId
        do {
            let (record, created) = try await WeftTracing.withContext(span?.context) {
                try await engine.start(
                    workflow, input: Self.input(schedule, tick: tick), idempotencyKey: schedule.idempotencyKey(tick: tick),
                    trigger: .schedule, actor: schedule.createdBy, maxRunning: maxRunning,
                    origin: Engine.Origin(
                        executionId: executionId, triggerId: schedule.id, scheduledAt: tick,
                        alongside: [.schedule(update)] + end))
            }
            if !created {
                // The tick's execution exists (a backfill ran it): advance only.
                released = true
                await admission?.release(workflow)
                update.executionId = record.executionId
                try await executions.apply([.schedule(update)] + end)
            }
            return .started(record, created: created)
        } catch EngineError.tooManyRunning {
            if !released { await admission?.release(workflow) }
            return .refused("concurrency_limit")
        } catch StoreError.conflict {
            if !released { await admission?.release(workflow) }
            return .conflict
        } catch StoreError.notFound {
            if !released { await admission?.release(workflow) }
            return .conflict
        } catch {
            if !released { await admission?.release(workflow) }
            throw error
        }
    }

    // MARK: buffer_one

    /// Starts the schedule's buffered tick when `running` ends. One watcher
    /// per (schedule, execution): a watcher of an older execution leaving
    /// does not stop a new one from being set up, and two firing the same
    /// buffered tick are kept apart by its guard.
    func watchBuffered(_ scheduleId: String, running executionId: String) {
        let key = scheduleId + "|" + executionId
        state.withLock { state in
            guard state.watching[key] == nil else { return }
            state.watching[key] = Task {
                defer { _ = self.state.withLock { $0.watching.removeValue(forKey: key) } }
                let (updates, cancel) = self.engine.feed.subscribe(executionId)
                defer { cancel() }
                // Subscribed first, then read: the end cannot fall in between.
                if (try? await self.isRunning(executionId)) ?? false {
                    for await update in updates {
                        if case .finished = update { break }
                    }
                }
                // A store error is tried again (the buffered tick must not be
                // left waiting for a restart).
                for attempt in 0..<5 {
                    guard !Task.isCancelled else { return }
                    if await self.fireBuffered(scheduleId) { return }
                    try? await Task.sleep(for: .seconds(1 << attempt))
                }
            }
        }
    }

    /// Starts (or skips) the buffered tick; false after a store error.
    private func fireBuffered(_ scheduleId: String) async -> Bool {
        do {
            guard let schedule = try await schedules.schedule(id: scheduleId), let tick = schedule.bufferedTick else { return true }
            guard let workflow = try await workflows.workflow(id: schedule.workflowId, includeDeleted: false) else {
                try await executions.apply([.schedule(ScheduleUpdate(
                    scheduleId: scheduleId, expectBuffered: tick, skipped: 1, skippedTick: tick, skipReason: "workflow_gone",
                    buffer: .clear))])
                return true
            }
            let update = ScheduleUpdate(scheduleId: scheduleId, expectBuffered: tick, fired: tick, buffer: .clear)
            switch try await start(schedule, workflow, tick: tick, update: update, end: [], span: nil) {
            case .started:
                metrics?.tickFired(lag: 0)
            case .refused(let reason):
                try await executions.apply([.schedule(ScheduleUpdate(
                    scheduleId: scheduleId, expectBuffered: tick, skipped: 1, skippedTick: tick, skipReason: reason,
                    buffer: .clear))])
                metrics?.tickSkipped(reason)
            case .conflict:
                break
            }
            return true
        } catch StoreError.conflict {
            return true  // another watcher fired it
        } catch {
            logger.error("schedule \(scheduleId): buffered tick: \(error)")
            return false
        }
    }
}
