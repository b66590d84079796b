import Foundation
import Logging
import Testing
import WeftEngine
import WeftStore
import WeftTestSupport

/// The scheduler on the in-memory store with a manual clock: each test says
/// when time passes and calls `runDue()` (the loop's step) itself.
@Suite("scheduler")
struct SchedulerTests {
    static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    func scheduler(_ harness: EngineHarness, name: String = "scheduler") -> Scheduler {
        Scheduler(
            schedules: harness.store, workflows: harness.store, executions: harness.store, queue: harness.store,
            engine: harness.engine, logger: Self.quiet, name: name, now: harness.clock.reader)
    }

    /// A schedule created the way the API does: its first tick after now.
    @discardableResult
    func schedule(
        _ harness: EngineHarness, _ workflow: WorkflowRecord, cron: String, overlap: OverlapPolicy = .skip,
        catchUp: CatchUpPolicy = .runOnce, windowMs: Int64 = 3_600_000
    ) async throws -> ScheduleRecord {
        let clock = try ScheduleClock(cron: cron, timezone: "UTC")
        let record = ScheduleRecord(
            id: IDGenerator.make(IDGenerator.schedule), workflowId: workflow.id, orgId: workflow.orgId, cron: cron,
            timezone: "UTC", overlap: overlap, catchUp: catchUp, catchUpWindowMs: windowMs,
            nextRunAt: clock.next(after: harness.clock.now), createdBy: workflow.ownerId, createdAt: harness.clock.now)
        try await harness.store.createSchedule(record)
        return record
    }

    func ticks(_ harness: EngineHarness, _ workflow: WorkflowRecord) async throws -> [Date] {
        let page = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 10_000))
        return page.items.compactMap(\.scheduledAt).sorted()
    }

    func seconds(_ dates: [Date], from start: Date) -> [Int] { dates.map { Int($0.timeIntervalSince(start).rounded()) } }

    // Executions started here run only when a test runs the harness's
    // workers; schedules not about overlap use `allow`.
    @Test("each tick fires once, as a schedule execution with its tick, and the schedule records it")
    func firesEachTickOnce() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            let start = harness.clock.now
            let created = try await schedule(harness, workflow, cron: "*/10 * * * * *", overlap: .allow)
            let scheduler = scheduler(harness)
            try await scheduler.prepare()
            #expect(try await scheduler.runDue() == 0)  // nothing due yet
            harness.clock.advance(by: 10)
            try await scheduler.runDue()
            harness.clock.advance(by: 25)  // two more ticks due (20 s, 30 s), late but within the grace
            try await scheduler.runDue()
            try await scheduler.runDue()  // nothing more: the next wake-up is at 40 s
            #expect(seconds(try await ticks(harness, workflow), from: start) == [10, 20, 30])
            let executions = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 100)).items
            for execution in executions {
                #expect(execution.trigger == .schedule)
                #expect(execution.triggerId == created.id)
                #expect(execution.idempotencyKey == created.idempotencyKey(tick: execution.scheduledAt!))
                #expect(execution.input["scheduledTime"]?.stringValue == execution.scheduledAt!.formatted(.iso8601))
            }
            let stored = try #require(try await harness.store.schedule(id: created.id))
            #expect(stored.firedCount == 3)
            #expect(stored.nextRunAt == start.addingTimeInterval(40))
            #expect(stored.lastFireAt == start.addingTimeInterval(30))
            #expect(stored.missedCount == 0 && stored.skippedCount == 0)
            // Exactly one wake-up is queued: the next tick's.
            #expect(try await harness.store.depth(queue: ScheduleRecord.queue, now: harness.clock.now).delayed == 1)
        }
    }

    @Test("two schedulers racing over the same due ticks start each tick once")
    func racingSchedulers() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            var ids: [String] = []
            for _ in 0..<20 { ids.append(try await schedule(harness, workflow, cron: "* * * * * *", overlap: .allow).id) }
            let first = scheduler(harness, name: "one")
            let second = scheduler(harness, name: "two")
            for round in 0..<6 {
                // Two wake-ups per schedule (as when an expired lease was
                // taken over): both schedulers work on the same ticks.
                for id in ids {
                    let schedule = try #require(try await harness.store.schedule(id: id))
                    var twin = schedule.wakeUp(tick: try #require(schedule.nextRunAt))
                    twin.attempt += 1_000_000
                    try await harness.store.enqueue([twin])
                }
                harness.clock.advance(by: round == 5 ? 30 : 1)
                async let a = first.runDue()
                async let b = second.runDue()
                _ = try await (a, b)
            }
            let executions = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 10_000)).items
            let keys = executions.map { "\($0.triggerId!)@\($0.scheduledAt!.timeIntervalSince1970)" }
            #expect(Set(keys).count == keys.count)
            // Each schedule: ticks 1…5 s one by one, then 6…35 s after the jump.
            #expect(executions.count == 20 * 35)
            for id in ids { #expect(try await harness.store.schedule(id: id)?.firedCount == 35) }
        }
    }

    @Test("two wake-ups of one schedule in one scheduler: one handler works, the other comes back later; one wake-up remains")
    func twinsInOneScheduler() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            let start = harness.clock.now
            let created = try await schedule(harness, workflow, cron: "*/10 * * * * *", overlap: .allow)
            var twin = created.wakeUp(tick: try #require(created.nextRunAt))
            twin.attempt += 1_000_000
            try await harness.store.enqueue([twin])
            let scheduler = scheduler(harness)
            harness.clock.advance(by: 10)
            #expect(try await scheduler.runDue() == 2)
            // The handler that lost the claim put its item back for 5 s; then
            // it is not due (the schedule moved on) and is dropped.
            harness.clock.advance(by: 6)
            try await scheduler.runDue()
            #expect(seconds(try await ticks(harness, workflow), from: start) == [10])
            let depth = try await harness.store.depth(queue: ScheduleRecord.queue, now: harness.clock.now)
            #expect(depth.ready + depth.delayed + depth.leased == 1)
            harness.clock.advance(by: 4)
            try await scheduler.runDue()
            #expect(seconds(try await ticks(harness, workflow), from: start) == [10, 20])
        }
    }

    @Test("a restart in the middle: leases of the dead process are released and the ticks fire once")
    func restartInTheMiddle() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            let start = harness.clock.now
            let created = try await schedule(harness, workflow, cron: "*/5 * * * * *", overlap: .allow)
            let before = scheduler(harness, name: "before")
            harness.clock.advance(by: 5)
            try await before.runDue()
            // The process takes the next wake-up and dies before handling it.
            harness.clock.advance(by: 5)
            let taken = try await harness.store.lease(
                queue: ScheduleRecord.queue, worker: "dying", now: harness.clock.now, duration: 60, limit: 10)
            #expect(taken.count == 1)
            harness.clock.advance(by: 6)
            let after = scheduler(harness, name: "after")
            #expect(try await after.runDue() == 0)  // still leased by the dead process
            try await after.prepare()  // what a start does: release them
            try await after.runDue()
            #expect(seconds(try await ticks(harness, workflow), from: start) == [5, 10, 15])
            #expect(try await harness.store.schedule(id: created.id)?.firedCount == 3)
        }
    }

    @Test("catch-up after downtime follows the policy", arguments: [
        (CatchUpPolicy.skip, [Int](), Int64(10)),
        (CatchUpPolicy.runOnce, [600], Int64(9)),
        // A 5-minute window at 11:30 holds the ticks of 7, 8, 9 and 10 minutes.
        (CatchUpPolicy.runAll, [420, 480, 540, 600], Int64(6)),
    ])
    func catchUp(policy: CatchUpPolicy, fired: [Int], missed: Int64) async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            let start = harness.clock.now
            // Catch-up ticks follow the overlap policy too: allow, as these
            // executions do not run here (no worker).
            let created = try await schedule(
                harness, workflow, cron: "* * * * *", overlap: .allow, catchUp: policy, windowMs: 300_000)
            // Down for 11.5 minutes: ticks at 1…10 minutes are all more than
            // the grace (60 s) late; the 11-minute tick is 30 s late.
            harness.clock.advance(by: 690)
            let scheduler = scheduler(harness)
            try await scheduler.prepare()
            try await scheduler.runDue()
            #expect(seconds(try await ticks(harness, workflow), from: start) == fired + [660])
            let stored = try #require(try await harness.store.schedule(id: created.id))
            #expect(stored.missedCount == missed)
            #expect(stored.firedCount == Int64(fired.count + 1))
            #expect(stored.nextRunAt == start.addingTimeInterval(720))
        }
    }

    @Test("overlap: skip skips while the last execution runs; allow starts anyway")
    func overlapSkipAndAllow() async throws {
        for policy in [OverlapPolicy.skip, .allow] {
            try await EngineHarness.with { harness in
                let workflow = try await harness.workflow([("wait", .delay, [], .object(["duration": .string("25s")]))])
                let created = try await schedule(harness, workflow, cron: "*/10 * * * * *", overlap: policy)
                let scheduler = scheduler(harness)
                for _ in 0..<3 {
                    try await harness.advance(by: 10)
                    try await scheduler.runDue()
                }
                let stored = try #require(try await harness.store.schedule(id: created.id))
                let executions = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 100)).items
                if policy == .skip {
                    #expect(executions.count == 1)
                    #expect(stored.skippedCount == 2)
                    #expect(stored.lastSkipReason == "overlap")
                } else {
                    #expect(executions.count == 3)
                    #expect(stored.skippedCount == 0)
                }
            }
        }
    }

    @Test("overlap: buffer_one starts one waiting tick when the running execution ends; cancel_other cancels it")
    func overlapBufferAndCancel() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("wait", .delay, [], .object(["duration": .string("25s")]))])
            let buffered = try await schedule(harness, workflow, cron: "*/10 * * * * *", overlap: .bufferOne)
            let scheduler = scheduler(harness)
            for _ in 0..<3 {
                try await harness.advance(by: 10)
                try await scheduler.runDue()
            }
            // Ticks at 10 (running), 20 (buffered), 30 (skipped).
            var stored = try #require(try await harness.store.schedule(id: buffered.id))
            #expect(stored.bufferedTick != nil)
            #expect(stored.skippedCount == 1)
            // The first execution's delay started at 20 s (when the harness
            // first ran its task), so it ends at 45 s: the buffered tick starts.
            try await harness.advance(by: 16)
            for _ in 0..<500 {
                stored = try #require(try await harness.store.schedule(id: buffered.id))
                if stored.bufferedTick == nil { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(stored.bufferedTick == nil)
            #expect(stored.firedCount == 2)
            let executions = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 100)).items
            #expect(executions.count == 2)
            #expect(Set(executions.compactMap(\.scheduledAt)).count == 2)
        }
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("wait", .delay, [], .object(["duration": .string("25s")]))])
            try await schedule(harness, workflow, cron: "*/10 * * * * *", overlap: .cancelOther)
            let scheduler = scheduler(harness)
            for _ in 0..<2 {
                try await harness.advance(by: 10)
                try await scheduler.runDue()
            }
            let executions = try await harness.store.listExecutions(ExecutionQuery(workflowId: workflow.id, limit: 100)).items
                .sorted { $0.scheduledAt! < $1.scheduledAt! }
            #expect(executions.map(\.status) == [.cancelled, .running])
            #expect(executions[0].error?.contains("overlap policy cancel_other") ?? false)
        }
    }

    @Test("a backfill runs each tick of the range once, and a repeat runs none")
    func backfill() async throws {
        try await EngineHarness.with { harness in
            let workflow = try await harness.workflow([("a", .noop, [], .emptyObject)])
            let start = harness.clock.now
            harness.clock.advance(by: 3600)
            let created = try await schedule(harness, workflow, cron: "*/5 * * * *", overlap: .allow)
            let scheduler = scheduler(harness)
            func run() async throws -> BackfillRecord {
                let id = IDGenerator.make("bkf")
                try await harness.store.createBackfill(BackfillRecord(
                    id: id, scheduleId: created.id, workflowId: workflow.id, startTime: start,
                    endTime: start.addingTimeInterval(1800), maxConcurrent: 2, ticksTotal: 6, createdBy: "test",
                    createdAt: harness.clock.now))
                scheduler.startBackfill(id)
                for _ in 0..<1000 {
                    try await harness.runUntilIdle()
                    if let record = try await harness.store.backfill(id: id), record.status != .running { return record }
                    try await Task.sleep(for: .milliseconds(5))
                }
                return try #require(try await harness.store.backfill(id: id))
            }
            let first = try await run()
            #expect(first.status == .completed)
            #expect(first.ticksDone == 6 && first.ticksExisting == 0)
            #expect(first.executionsCompleted == 6)
            #expect(seconds(try await ticks(harness, workflow), from: start) == [0, 300, 600, 900, 1200, 1500])
            let again = try await run()
            #expect(again.status == .completed)
            #expect(again.ticksExisting == 6)
            #expect(try await ticks(harness, workflow).count == 6)
        }
    }
}
