public import Foundation

extension MemoryStore: ScheduleStore {
    public func createSchedule(_ schedule: ScheduleRecord) async throws {
        try state.withLock { state in
            guard state.schedules[schedule.id] == nil else { throw StoreError.alreadyExists("schedule \(schedule.id) exists") }
            state.schedules[schedule.id] = schedule
            if let next = schedule.nextRunAt { try state.queue.insert(schedule.wakeUp(tick: next)) }
        }
    }

    public func schedule(id: String) async throws -> ScheduleRecord? { state.withLock { $0.schedules[id] } }

    public func schedules(ids: [String]) async throws -> [String: ScheduleRecord] {
        state.withLock { state in
            var found: [String: ScheduleRecord] = [:]
            for id in ids { found[id] = state.schedules[id] }
            return found
        }
    }

    public func schedules(workflowId: String, limit: Int, cursor: String?) async throws -> Page<ScheduleRecord> {
        state.withLock { state in
            let all = state.schedules.values.filter { schedule in
                schedule.workflowId == workflowId && cursor.map { schedule.id > $0 } ?? true
            }.sorted { $0.id < $1.id }
            let items = Array(all.prefix(limit))
            return Page(items: items, nextCursor: all.count > limit ? items.last?.id : nil)
        }
    }

    public func scheduleCount(workflowId: String) async throws -> Int {
        state.withLock { state in state.schedules.values.count { $0.workflowId == workflowId } }
    }

    public func scheduleCount(orgId: String) async throws -> Int {
        state.withLock { state in
            state.schedules.values.count { $0.orgId == orgId && state.workflows[$0.workflowId]?.deletedAt == nil }
        }
    }

    public func replaceSchedule(_ schedule: ScheduleRecord) async throws {
        try state.withLock { state in
            guard var stored = state.schedules[schedule.id] else { throw StoreError.notFound("schedule \(schedule.id) not found") }
            // Settings and the next tick only (as the SQLite store).
            stored.cron = schedule.cron
            stored.timezone = schedule.timezone
            stored.input = schedule.input
            stored.description = schedule.description
            stored.paused = schedule.paused
            stored.pausedNote = schedule.pausedNote
            stored.startAt = schedule.startAt
            stored.endAt = schedule.endAt
            stored.jitterMs = schedule.jitterMs
            stored.overlap = schedule.overlap
            stored.catchUp = schedule.catchUp
            stored.catchUpWindowMs = schedule.catchUpWindowMs
            stored.nextRunAt = schedule.nextRunAt
            if schedule.paused { stored.bufferedTick = nil }
            stored.updatedAt = schedule.updatedAt
            state.schedules[schedule.id] = stored
            state.queue.removeUnleased(queue: ScheduleRecord.queue, executionId: schedule.id)
            if let next = schedule.nextRunAt, !schedule.paused { try state.queue.insert(schedule.wakeUp(tick: next)) }
        }
    }

    public func deleteSchedule(id: String) async throws -> Bool {
        state.withLock { state in
            guard state.schedules.removeValue(forKey: id) != nil else { return false }
            state.queue.removeUnleased(queue: ScheduleRecord.queue, executionId: id)
            return true
        }
    }

    public func activeSchedules() async throws -> [ScheduleRecord] {
        state.withLock { state in state.schedules.values.filter { !$0.paused && $0.nextRunAt != nil }.sorted { $0.id < $1.id } }
    }

    public func bufferedSchedules() async throws -> [ScheduleRecord] {
        state.withLock { state in state.schedules.values.filter { $0.bufferedTick != nil }.sorted { $0.id < $1.id } }
    }

    public func nextWakeUp() async throws -> Date? {
        state.withLock { $0.queue.earliestUnleased(queue: ScheduleRecord.queue) }
    }

    public func scheduleCounts() async throws -> (active: Int, paused: Int) {
        state.withLock { state in
            let live = state.schedules.values.filter { state.workflows[$0.workflowId]?.deletedAt == nil }
            let paused = live.count { $0.paused }
            return (live.count - paused, paused)
        }
    }

    public func createBackfill(_ backfill: BackfillRecord) async throws {
        state.withLock { $0.backfills[backfill.id] = backfill }
    }

    public func backfill(id: String) async throws -> BackfillRecord? { state.withLock { $0.backfills[id] } }

    public func backfills(scheduleId: String) async throws -> [BackfillRecord] {
        state.withLock { state in state.backfills.values.filter { $0.scheduleId == scheduleId }.sorted { $0.id > $1.id } }
    }

    public func updateBackfill(_ backfill: BackfillRecord) async throws {
        try state.withLock { state in
            guard state.backfills[backfill.id] != nil else { throw StoreError.notFound("backfill \(backfill.id) not found") }
            state.backfills[backfill.id] = backfill
        }
    }

    public func runningBackfills() async throws -> [BackfillRecord] {
        state.withLock { state in state.backfills.values.filter { $0.status == .running }.sorted { $0.id < $1.id } }
    }

    public func createTrigger(_ trigger: TriggerRecord) async throws {
        state.withLock { $0.triggers[trigger.id] = trigger }
    }

    public func trigger(id: String) async throws -> TriggerRecord? { state.withLock { $0.triggers[id] } }

    public func triggers(workflowId: String) async throws -> [TriggerRecord] {
        state.withLock { state in state.triggers.values.filter { $0.workflowId == workflowId }.sorted { $0.id < $1.id } }
    }

    public func eventTriggers(orgId: String, eventName: String) async throws -> [TriggerRecord] {
        state.withLock { state in
            state.triggers.values.filter {
                $0.kind == .event && $0.orgId == orgId && $0.eventName == eventName
                    && state.workflows[$0.workflowId].map { $0.deletedAt == nil } ?? false
            }.sorted { $0.id < $1.id }
        }
    }

    public func deleteTrigger(id: String) async throws -> Bool {
        state.withLock { $0.triggers.removeValue(forKey: id) != nil }
    }

    public func triggersFired(_ counts: [String: (count: Int64, last: Date)]) async throws {
        state.withLock { state in
            for (id, fired) in counts {
                state.triggers[id]?.firedCount += fired.count
                state.triggers[id]?.lastFiredAt = fired.last
            }
        }
    }

    public func event(orgId: String, eventId: String) async throws -> [String]? {
        state.withLock { $0.events[orgId + "|" + eventId]?.executions }
    }

    public func recordEvent(orgId: String, eventId: String, name: String, executionIds: [String], at: Date) async throws {
        state.withLock { state in
            let key = orgId + "|" + eventId
            if state.events[key] == nil { state.events[key] = (executionIds, at) }
        }
    }

    public func purgeEvents(before date: Date) async throws -> Int {
        state.withLock { state in
            let old = state.events.filter { $0.value.at < date }.map(\.key)
            for key in old { state.events[key] = nil }
            return old.count
        }
    }
}
