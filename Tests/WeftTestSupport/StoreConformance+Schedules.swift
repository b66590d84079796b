import Foundation
import Testing
import WeftStore

extension StoreConformance {
    static func scheduleRecord(_ workflow: WorkflowRecord, next: Date?) -> ScheduleRecord {
        ScheduleRecord(
            id: IDGenerator.make(IDGenerator.schedule, now: t0), workflowId: workflow.id, orgId: workflow.orgId,
            cron: "* * * * * *", timezone: "UTC", input: .object(["k": .number(1)]), jitterMs: 0, nextRunAt: next,
            createdBy: workflow.ownerId, createdAt: t0)
    }

    static let schedules: [Case] = [
        Case(name: "a schedule's guarded advance commits with its execution, once; a stale guard fails the whole unit") { store in
            let user = try await store.user()
            let workflow = try await store.workflow(owner: user.id)
            let schedule = scheduleRecord(workflow, next: t0)
            try await store.schedules.createSchedule(schedule)
            #expect(try await store.queue.depth(queue: ScheduleRecord.queue, now: t0) == (ready: 1, delayed: 0, leased: 0))
            let tick1 = t0.addingTimeInterval(1)
            func execution(_ tick: Date) -> ExecutionRecord {
                ExecutionRecord(
                    executionId: IDGenerator.make(IDGenerator.execution, now: t0), workflowId: workflow.id, workflowVersion: 1,
                    status: .pending, input: .emptyObject, idempotencyKey: schedule.idempotencyKey(tick: tick),
                    trigger: .schedule, createdAt: t0)
            }
            let first = execution(t0)
            let advance = ScheduleUpdate(
                scheduleId: schedule.id, expectNext: t0, setsNext: true, next: tick1, fired: t0, executionId: first.executionId)
            let results = try await store.executions.applyEach([
                [.create(first), .schedule(advance)],
                // The same tick again (a second handler): its guard fails, its execution is not written.
                [.create(execution(t0.addingTimeInterval(0.5))), .schedule(advance)],
            ])
            #expect(results[0] == nil)
            #expect(results[1] == .conflict("schedule \(schedule.id) is no longer at tick \(t0)"))
            let stored = try #require(try await store.schedules.schedule(id: schedule.id))
            #expect(stored.nextRunAt == tick1 && stored.firedCount == 1 && stored.lastFireAt == t0)
            #expect(stored.lastExecutionId == first.executionId)
            #expect(try await store.executions.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 10)).items.count == 1)
            // Skips, misses and the buffer; an unknown schedule is not found.
            try await store.executions.apply([.schedule(ScheduleUpdate(
                scheduleId: schedule.id, expectNext: tick1, setsNext: true, next: t0.addingTimeInterval(5), skipped: 1,
                skippedTick: tick1, skipReason: "overlap", missed: 3, buffer: .set(tick1)))])
            var after = try #require(try await store.schedules.schedule(id: schedule.id))
            #expect(after.skippedCount == 1 && after.missedCount == 3 && after.lastSkipReason == "overlap")
            #expect(after.bufferedTick == tick1 && after.lastSkippedAt == tick1)
            #expect(try await store.schedules.bufferedSchedules().map(\.id) == [schedule.id])
            await #expect(throws: StoreError.self) {
                try await store.executions.apply([.schedule(ScheduleUpdate(
                    scheduleId: schedule.id, expectBuffered: t0, buffer: .clear))])
            }
            try await store.executions.apply([.schedule(ScheduleUpdate(
                scheduleId: schedule.id, expectBuffered: tick1, fired: tick1, executionId: "exe_b", buffer: .clear))])
            after = try #require(try await store.schedules.schedule(id: schedule.id))
            #expect(after.bufferedTick == nil && after.firedCount == 2 && after.lastExecutionId == "exe_b")
            await #expect(throws: StoreError.notFound("schedule sch_missing not found")) {
                try await store.executions.apply([.schedule(ScheduleUpdate(scheduleId: "sch_missing", skipped: 1))])
            }
        },
        Case(name: "settings writes keep progress, replace the wake-up, and pausing clears it") { store in
            let user = try await store.user()
            let workflow = try await store.workflow(owner: user.id)
            var schedule = scheduleRecord(workflow, next: t0)
            try await store.schedules.createSchedule(schedule)
            try await store.executions.apply([.schedule(ScheduleUpdate(
                scheduleId: schedule.id, expectNext: t0, setsNext: true, next: t0.addingTimeInterval(1), fired: t0,
                executionId: "exe_1"))])
            schedule.cron = "@hourly"
            schedule.nextRunAt = t0.addingTimeInterval(3600)
            schedule.firedCount = 0  // a stale copy's progress is not written
            try await store.schedules.replaceSchedule(schedule)
            let stored = try #require(try await store.schedules.schedule(id: schedule.id))
            #expect(stored.cron == "@hourly" && stored.firedCount == 1 && stored.lastExecutionId == "exe_1")
            #expect(try await store.queue.depth(queue: ScheduleRecord.queue, now: t0) == (ready: 0, delayed: 1, leased: 0))
            #expect(try await store.schedules.nextWakeUp() == t0.addingTimeInterval(3600))
            schedule.paused = true
            schedule.nextRunAt = nil
            try await store.schedules.replaceSchedule(schedule)
            #expect(try await store.queue.depth(queue: ScheduleRecord.queue, now: t0) == (ready: 0, delayed: 0, leased: 0))
            #expect(try await store.schedules.scheduleCounts() == (active: 0, paused: 1))
            #expect(try await store.schedules.schedules(ids: [schedule.id, "sch_none"]).keys.sorted() == [schedule.id])
            #expect(try await store.schedules.deleteSchedule(id: schedule.id))
            #expect(try await !store.schedules.deleteSchedule(id: schedule.id))
        },
        Case(name: "triggers, event lookups by organization and name, fired counts, and event ids recorded once") { store in
            let user = try await store.user()
            let workflow = try await store.workflow(owner: user.id)
            let hook = TriggerRecord(id: "hk_1", workflowId: workflow.id, orgId: workflow.orgId, kind: .webhook, createdBy: user.id, createdAt: t0)
            let listener = TriggerRecord(
                id: "hk_2", workflowId: workflow.id, orgId: workflow.orgId, kind: .event, eventName: "order.created",
                filter: "event.amount > 1", createdBy: user.id, createdAt: t0)
            try await store.schedules.createTrigger(hook)
            try await store.schedules.createTrigger(listener)
            #expect(try await store.schedules.triggers(workflowId: workflow.id).map(\.id) == ["hk_1", "hk_2"])
            #expect(try await store.schedules.eventTriggers(orgId: workflow.orgId, eventName: "order.created").map(\.id) == ["hk_2"])
            #expect(try await store.schedules.eventTriggers(orgId: "org_other", eventName: "order.created").isEmpty)
            try await store.schedules.triggersFired(["hk_1": (count: 3, last: t0)])
            #expect(try await store.schedules.trigger(id: "hk_1")?.firedCount == 3)
            try await store.schedules.recordEvent(orgId: "o", eventId: "e1", name: "n", executionIds: ["exe_a", "exe_b"], at: t0)
            try await store.schedules.recordEvent(orgId: "o", eventId: "e1", name: "n", executionIds: ["exe_c"], at: t0)
            #expect(try await store.schedules.event(orgId: "o", eventId: "e1") == ["exe_a", "exe_b"])
            #expect(try await store.schedules.event(orgId: "o", eventId: "e2") == nil)
            #expect(try await store.schedules.deleteTrigger(id: "hk_1"))
            #expect(try await store.schedules.trigger(id: "hk_1") == nil)
        },
    ]
}
