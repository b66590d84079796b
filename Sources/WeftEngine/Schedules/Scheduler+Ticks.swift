import Foundation
import Synchronization
import Tracing
import WeftObservability
import WeftStore

/// Ticks: moving one schedule on from its stored next tick (see `Scheduler`
/// for the rules that make each tick run once).
extension Scheduler {
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

    func handle(_ lease: Lease, _ prefetched: ScheduleRecord?) async {
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
                let notes = tickNotes(
                    schedule, .scheduleTickMissed, tick: due[index], workflowName: "", reason: schedule.catchUp.rawValue,
                    count: Int(count))
                do {
                    try await executions.apply(
                        [.schedule(ScheduleUpdate(scheduleId: schedule.id, expectNext: cursor, setsNext: true, next: next, missed: count))]
                            + (final ? finish(next) : []) + notes)
                    engine.notifier?.committed(notes.compactMap(\.outboxEntry))
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
        var workflowName = ""
        func skip(_ reason: String, next: Date?, end: [ExecutionTransition]) async throws -> Bool {
            span?.attributes[SpanKeys.scheduleOutcome] = "skipped:\(reason)"
            let notes = tickNotes(schedule, .scheduleTickSkipped, tick: tick, workflowName: workflowName, reason: reason)
            do {
                try await executions.apply(
                    [.schedule(ScheduleUpdate(
                        scheduleId: schedule.id, expectNext: expect, setsNext: true, next: next, skipped: 1, skippedTick: tick,
                        skipReason: reason))] + end + notes)
                engine.notifier?.committed(notes.compactMap(\.outboxEntry))
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
        workflowName = workflow.name
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
}

extension Scheduler {
    /// The outbox rows of a skipped or missed tick, written in the unit
    /// that records it.
    func tickNotes(
        _ schedule: ScheduleRecord, _ event: NotificationEvent, tick: Date, workflowName: String, reason: String,
        count: Int? = nil
    ) -> [ExecutionTransition] {
        guard let notifier = engine.notifier, notifier.watches(workflowId: schedule.workflowId) else { return [] }
        var facts = EventFacts(
            event: event, workflowId: schedule.workflowId, workflowName: workflowName, orgId: schedule.orgId,
            executionId: "", at: now(), status: event == .scheduleTickMissed ? "missed" : "skipped", trigger: "schedule")
        facts.triggerId = schedule.id
        facts.scheduleId = schedule.id
        facts.scheduledAt = tick
        facts.reason = reason
        facts.count = count
        return notifier.entries(for: facts).map(ExecutionTransition.outbox)
    }
}
