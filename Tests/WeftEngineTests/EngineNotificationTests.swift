import Foundation
import Synchronization
import Testing
import WeftEngine
import WeftStore
import Logging
import WeftTestSupport

/// Events become outbox rows in the unit of the change they report
/// (transactional outbox): what the engine asks its `EventNotifier`, and
/// what the store holds after each step.
@Suite("engine notifications")
struct EngineNotificationTests {
    /// Subscribes to everything: one row per event, the event's facts kept.
    final class Recorder: EventNotifier, Sendable {
        let seen = Mutex<[EventFacts]>([])
        let committedIds = Mutex<[String]>([])

        func watches(workflowId: String) -> Bool { true }

        func entries(for facts: EventFacts) -> [OutboxEntry] {
            seen.withLock { $0.append(facts) }
            let id = "dlv_\(facts.event.rawValue)_\(facts.taskKey ?? "")_\(facts.attempt ?? 0)_\(facts.scheduledAt?.timeIntervalSince1970 ?? 0)"
            let due = facts.event == .executionDeadline ? facts.at.addingTimeInterval(30) : facts.at
            return [OutboxEntry(
                deliveryId: id, subscriptionId: "sub_all", workflowId: facts.workflowId, orgId: facts.orgId,
                executionId: facts.executionId, event: facts.event, channel: .webhook, payload: facts.payload,
                createdAt: facts.at, nextAttemptAt: due)]
        }

        func committed(_ entries: [OutboxEntry]) { committedIds.withLock { $0 += entries.map(\.deliveryId) } }
    }

    @Test("start, retries, the final task failure and the execution's end are written as outbox rows with their facts")
    func failingExecution() async throws {
        let store = MemoryStore()
        let recorder = Recorder()
        try await EngineHarness.with(store: store, runners: [EngineTests.Flaky(failures: 5), NoopRunner()], notifier: recorder) { h in
            let workflow = try await h.workflow(
                [("call", .other("flaky"), [], .emptyObject), ("after", .noop, ["call"], .emptyObject)],
                retry: Records.retry(maxAttempts: 3, backoffMs: 1))
            let started = try await h.execute(workflow)
            let failed = try await h.drive(started.executionId)
            #expect(failed.status == .failed)
            let rows = try await store.deliveries(subscriptionId: "sub_all", state: nil, limit: 50, cursor: nil).items
            let events = rows.reversed().map(\.entry.event)
            #expect(events == [.executionStarted, .executionDeadline, .taskRetried, .taskRetried, .taskFailed, .executionFailed])
            let end = try #require(rows.first { $0.entry.event == .executionFailed })
            #expect(end.entry.payload["status"] == .string("Failed"))
            #expect(end.entry.payload["trigger"] == .string("api"))
            #expect(end.entry.payload["error"]?.stringValue?.contains("503") == true)
            let lastTask = try #require(rows.first { $0.entry.event == .taskFailed })
            #expect(lastTask.entry.payload["task"] == .string("call") && lastTask.entry.payload["attempt"] == .number(3))
            // The deadline alert is due later, the others at once.
            let deadline = try #require(rows.first { $0.entry.event == .executionDeadline })
            #expect(deadline.nextAttemptAt == deadline.entry.createdAt.addingTimeInterval(30))
            // Every row was reported committed, once.
            #expect(recorder.committedIds.withLock { $0 }.sorted() == rows.map(\.entry.deliveryId).sorted())
        }
    }

    @Test("skipped and missed schedule ticks are written as outbox rows in the units that record them")
    func scheduleTicks() async throws {
        let store = MemoryStore()
        let recorder = Recorder()
        try await EngineHarness.with(store: store, notifier: recorder) { h in
            let workflow = try await h.workflow([("wait", .delay, [], .object(["duration": .string("25s")]))])
            let clock = try ScheduleClock(cron: "*/10 * * * * *", timezone: "UTC")
            let schedule = ScheduleRecord(
                id: IDGenerator.make(IDGenerator.schedule), workflowId: workflow.id, orgId: workflow.orgId,
                cron: "*/10 * * * * *", timezone: "UTC", overlap: .skip, catchUp: .skip, catchUpWindowMs: 3_600_000,
                nextRunAt: clock.next(after: h.clock.now), createdBy: workflow.ownerId, createdAt: h.clock.now)
            try await store.createSchedule(schedule)
            let scheduler = Scheduler(
                schedules: store, workflows: store, executions: store, queue: store, engine: h.engine,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }), now: h.clock.reader)
            // The first tick fires; the next two find it running (overlap: skip).
            for _ in 0..<3 {
                try await h.advance(by: 10)
                try await scheduler.runDue()
            }
            // Down for five minutes: catch-up skip misses the ticks in between.
            h.clock.advance(by: 300)
            try await scheduler.runDue()
            let rows = try await store.deliveries(subscriptionId: "sub_all", state: nil, limit: 100, cursor: nil).items
            let skipped = rows.filter { $0.entry.event == .scheduleTickSkipped }
            let stored = try #require(try await store.schedule(id: schedule.id))
            // One row per skipped tick: the two while the first ran, and any
            // the jump found it still running for.
            #expect(skipped.count >= 2 && Int64(skipped.count) == stored.skippedCount)
            #expect(skipped.allSatisfy { $0.entry.payload["reason"] == .string("overlap") && $0.entry.executionId.isEmpty })
            #expect(skipped.allSatisfy { $0.entry.payload["scheduleId"] == .string(schedule.id) })
            #expect(Set(skipped.map(\.entry.deliveryId)).count == skipped.count)
            let missed = try #require(rows.first { $0.entry.event == .scheduleTickMissed })
            #expect(missed.entry.payload["reason"] == .string("skip"))
            #expect((missed.entry.payload["count"]?.numberValue ?? 0) >= 20)
            #expect(stored.missedCount == Int64(missed.entry.payload["count"]?.numberValue ?? 0))
        }
    }

    @Test("a workflow nobody watches builds no facts at all")
    func unwatched() async throws {
        final class Nobody: EventNotifier, Sendable {
            let asked = Atomic<Int>(0)
            func watches(workflowId: String) -> Bool { false }
            func entries(for facts: EventFacts) -> [OutboxEntry] {
                asked.add(1, ordering: .relaxed)
                return []
            }
            func committed(_ entries: [OutboxEntry]) {}
        }
        let nobody = Nobody()
        let store = MemoryStore()
        try await EngineHarness.with(store: store, notifier: nobody) { h in
            let workflow = try await h.workflow([("a", .noop, [], .emptyObject)])
            let done = try await h.drive(try await h.execute(workflow).executionId)
            #expect(done.status == .completed)
        }
        #expect(nobody.asked.load(ordering: .relaxed) == 0)
        #expect(try await store.outboxBacklog(now: .distantFuture).pending == 0)
    }
}
