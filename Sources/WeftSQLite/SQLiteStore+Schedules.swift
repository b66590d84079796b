public import Foundation
import GRDB
public import WeftStore

extension SQLiteStore: ScheduleStore {
    public func createSchedule(_ schedule: ScheduleRecord) async throws {
        try await write("create_schedule") { db in
            try Self.insertSchedule(db, schedule)
            if let next = schedule.nextRunAt, !schedule.paused { try Self.insert(db, [schedule.wakeUp(tick: next)]) }
        }
    }

    public func schedule(id: String) async throws -> ScheduleRecord? {
        try await read("get_schedule") { db in try Self.schedule(db, id: id) }
    }

    public func schedules(ids: [String]) async throws -> [String: ScheduleRecord] {
        guard !ids.isEmpty else { return [:] }
        return try await read("get_schedules") { db in
            var found: [String: ScheduleRecord] = [:]
            // In chunks: SQLite caps the number of bound parameters.
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = Array(ids[start..<min(ids.count, start + 500)])
                let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
                for row in try Row.fetchAll(
                    db, sql: "SELECT * FROM schedules WHERE id IN (\(marks))", arguments: StatementArguments(chunk))
                {
                    let record = try Self.scheduleRecord(row)
                    found[record.id] = record
                }
            }
            return found
        }
    }

    public func schedules(workflowId: String, limit: Int, cursor: String?) async throws -> Page<ScheduleRecord> {
        try await read("list_schedules") { db in
            var rows = try Row.fetchAll(
                db, sql: "SELECT * FROM schedules WHERE workflow_id = ? AND id > ? ORDER BY id LIMIT ?",
                arguments: [workflowId, cursor ?? "", limit + 1]
            ).map(Self.scheduleRecord)
            var next: String?
            if rows.count > limit {
                rows.removeLast()
                next = rows.last?.id
            }
            return Page(items: rows, nextCursor: next)
        }
    }

    public func scheduleCount(workflowId: String) async throws -> Int {
        try await read("count_schedules") { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM schedules WHERE workflow_id = ?", arguments: [workflowId]) ?? 0
        }
    }

    public func scheduleCount(orgId: String) async throws -> Int {
        try await read("count_schedules") { db in
            try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM schedules s JOIN workflows w ON w.id = s.workflow_id
                    WHERE s.org_id = ? AND w.deleted_at IS NULL
                    """, arguments: [orgId]) ?? 0
        }
    }

    public func replaceSchedule(_ s: ScheduleRecord) async throws {
        try await write("replace_schedule") { db in
            // Settings and the next tick only: what ticks did (counts, last
            // execution) is the scheduler's to write.
            try db.execute(
                sql: """
                    UPDATE schedules SET cron = ?, timezone = ?, input = ?, description = ?, paused = ?, paused_note = ?,
                        start_at = ?, end_at = ?, jitter_ms = ?, overlap = ?, catch_up = ?, catch_up_window_ms = ?,
                        next_run_at = ?, buffered_tick = CASE WHEN ? THEN NULL ELSE buffered_tick END, updated_at = ?
                    WHERE id = ?
                    """,
                arguments: [
                    s.cron, s.timezone, s.input.jsonText(), s.description, s.paused, s.pausedNote,
                    s.startAt.map(StoreDate.text), s.endAt.map(StoreDate.text), s.jitterMs, s.overlap.rawValue,
                    s.catchUp.rawValue, s.catchUpWindowMs, s.nextRunAt.map(StoreDate.text), s.paused,
                    StoreDate.text(s.updatedAt), s.id,
                ])
            guard db.changesCount == 1 else { throw StoreError.notFound("schedule \(s.id) not found") }
            try db.execute(
                sql: "DELETE FROM task_queue WHERE queue = ? AND execution_id = ? AND lease_token IS NULL",
                arguments: [ScheduleRecord.queue, s.id])
            if let next = s.nextRunAt, !s.paused { try Self.insert(db, [s.wakeUp(tick: next)]) }
        }
    }

    public func deleteSchedule(id: String) async throws -> Bool {
        try await write("delete_schedule") { db in
            try db.execute(sql: "DELETE FROM schedules WHERE id = ?", arguments: [id])
            let deleted = db.changesCount == 1
            try db.execute(
                sql: "DELETE FROM task_queue WHERE queue = ? AND execution_id = ? AND lease_token IS NULL",
                arguments: [ScheduleRecord.queue, id])
            return deleted
        }
    }

    public func activeSchedules() async throws -> [ScheduleRecord] {
        try await read("active_schedules") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM schedules WHERE paused = 0 AND next_run_at IS NOT NULL ORDER BY id")
                .map(Self.scheduleRecord)
        }
    }

    public func bufferedSchedules() async throws -> [ScheduleRecord] {
        try await read("buffered_schedules") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM schedules WHERE buffered_tick IS NOT NULL ORDER BY id").map(Self.scheduleRecord)
        }
    }

    public func nextWakeUp() async throws -> Date? {
        try await read("next_wake_up") { db in
            try Date.fetchOne(
                db, sql: "SELECT MIN(ready_at) FROM task_queue WHERE queue = ? AND lease_token IS NULL",
                arguments: [ScheduleRecord.queue])
        }
    }

    public func scheduleCounts() async throws -> (active: Int, paused: Int) {
        try await read("count_schedules") { db in
            let row = try Row.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) AS n, COALESCE(SUM(s.paused), 0) AS p FROM schedules s
                    JOIN workflows w ON w.id = s.workflow_id WHERE w.deleted_at IS NULL
                    """)
            let total: Int = row?["n"] ?? 0
            let paused: Int = row?["p"] ?? 0
            return (total - paused, paused)
        }
    }

    static func insertSchedule(_ db: Database, _ s: ScheduleRecord) throws {
        try db.execute(
            sql: """
                INSERT INTO schedules (id, workflow_id, org_id, cron, timezone, input, description, paused, paused_note,
                    start_at, end_at, jitter_ms, overlap, catch_up, catch_up_window_ms, next_run_at, last_fire_at,
                    last_execution_id, last_skipped_at, last_skip_reason, fired_count, missed_count, skipped_count,
                    buffered_tick, created_by, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                s.id, s.workflowId, s.orgId, s.cron, s.timezone, s.input.jsonText(), s.description, s.paused, s.pausedNote,
                s.startAt.map(StoreDate.text), s.endAt.map(StoreDate.text), s.jitterMs, s.overlap.rawValue,
                s.catchUp.rawValue, s.catchUpWindowMs, s.nextRunAt.map(StoreDate.text), s.lastFireAt.map(StoreDate.text),
                s.lastExecutionId, s.lastSkippedAt.map(StoreDate.text), s.lastSkipReason, s.firedCount, s.missedCount,
                s.skippedCount, s.bufferedTick.map(StoreDate.text), s.createdBy, StoreDate.text(s.createdAt),
                StoreDate.text(s.updatedAt),
            ])
    }

    static func schedule(_ db: Database, id: String) throws -> ScheduleRecord? {
        try Row.fetchOne(db, sql: "SELECT * FROM schedules WHERE id = ?", arguments: [id]).map(scheduleRecord)
    }

    /// The guarded progress write of a tick (`ExecutionTransition.schedule`):
    /// one UPDATE whose WHERE holds the guard (`ScheduleUpdate.apply` in
    /// SQL: the writer transaction reads nothing first); when it changes no
    /// row, one read tells a missing schedule from a failed guard.
    static func applySchedule(_ db: Database, _ update: ScheduleUpdate) throws {
        let buffer: String
        var bufferTick: String?
        switch update.buffer {
        case .keep: buffer = "keep"
        case .clear: buffer = "clear"
        case .set(let tick):
            buffer = "set"
            bufferTick = StoreDate.text(tick)
        }
        let arguments: [String: (any DatabaseValueConvertible)?] = [
            "id": update.scheduleId, "setsNext": update.setsNext, "next": update.next.map(StoreDate.text),
            "fired": update.fired.map(StoreDate.text), "execution": update.executionId, "skipped": update.skipped,
            "skippedTick": update.skippedTick.map(StoreDate.text), "reason": update.skipReason, "missed": update.missed,
            "buffer": buffer, "bufferTick": bufferTick, "expectNext": update.expectNext.map(StoreDate.text),
            "expectBuffered": update.expectBuffered.map(StoreDate.text),
        ]
        try db.cachedStatement(sql: """
            UPDATE schedules SET
                next_run_at = CASE WHEN :setsNext THEN :next ELSE next_run_at END,
                last_fire_at = COALESCE(:fired, last_fire_at),
                last_execution_id = CASE WHEN :fired IS NOT NULL THEN :execution ELSE last_execution_id END,
                fired_count = fired_count + (CASE WHEN :fired IS NOT NULL THEN 1 ELSE 0 END),
                skipped_count = skipped_count + :skipped,
                last_skipped_at = CASE WHEN :skipped > 0 THEN :skippedTick ELSE last_skipped_at END,
                last_skip_reason = CASE WHEN :skipped > 0 THEN :reason ELSE last_skip_reason END,
                missed_count = missed_count + :missed,
                buffered_tick = CASE :buffer WHEN 'keep' THEN buffered_tick WHEN 'clear' THEN NULL ELSE :bufferTick END
            WHERE id = :id
                AND (:expectNext IS NULL OR (next_run_at = :expectNext AND paused = 0))
                AND (:expectBuffered IS NULL OR buffered_tick = :expectBuffered)
            """).execute(arguments: StatementArguments(arguments))
        guard db.changesCount == 0 else { return }
        guard try Bool.fetchOne(db, sql: "SELECT 1 FROM schedules WHERE id = ?", arguments: [update.scheduleId]) != nil
        else { throw StoreError.notFound("schedule \(update.scheduleId) not found") }
        if let expectNext = update.expectNext {
            throw StoreError.conflict("schedule \(update.scheduleId) is no longer at tick \(expectNext)")
        }
        throw StoreError.conflict("schedule \(update.scheduleId) has no buffered tick \(update.expectBuffered.map { "\($0)" } ?? "")")
    }

    static func scheduleRecord(_ row: Row) throws -> ScheduleRecord {
        ScheduleRecord(
            id: row["id"], workflowId: row["workflow_id"], orgId: row["org_id"], cron: row["cron"], timezone: row["timezone"],
            input: (try? JSONValue(jsonText: row["input"])) ?? .emptyObject, description: row["description"],
            paused: row["paused"], pausedNote: row["paused_note"], startAt: row["start_at"], endAt: row["end_at"],
            jitterMs: row["jitter_ms"], overlap: try stored(OverlapPolicy.self, row["overlap"]),
            catchUp: try stored(CatchUpPolicy.self, row["catch_up"]), catchUpWindowMs: row["catch_up_window_ms"],
            nextRunAt: row["next_run_at"], lastFireAt: row["last_fire_at"], lastExecutionId: row["last_execution_id"],
            lastSkippedAt: row["last_skipped_at"], lastSkipReason: row["last_skip_reason"], firedCount: row["fired_count"],
            missedCount: row["missed_count"], skippedCount: row["skipped_count"], bufferedTick: row["buffered_tick"],
            createdBy: row["created_by"], createdAt: row["created_at"], updatedAt: row["updated_at"])
    }

    // MARK: Backfills

    public func createBackfill(_ backfill: BackfillRecord) async throws {
        try await write("create_backfill") { db in try Self.saveBackfill(db, backfill, insert: true) }
    }

    public func backfill(id: String) async throws -> BackfillRecord? {
        try await read("get_backfill") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM backfills WHERE id = ?", arguments: [id]).map(Self.backfillRecord)
        }
    }

    public func backfills(scheduleId: String) async throws -> [BackfillRecord] {
        try await read("list_backfills") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM backfills WHERE schedule_id = ? ORDER BY id DESC LIMIT 100", arguments: [scheduleId])
                .map(Self.backfillRecord)
        }
    }

    public func updateBackfill(_ backfill: BackfillRecord) async throws {
        try await write("update_backfill") { db in try Self.saveBackfill(db, backfill, insert: false) }
    }

    public func runningBackfills() async throws -> [BackfillRecord] {
        try await read("running_backfills") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM backfills WHERE status = 'Running' ORDER BY id").map(Self.backfillRecord)
        }
    }

    static func saveBackfill(_ db: Database, _ b: BackfillRecord, insert: Bool) throws {
        if !insert {
            try db.execute(sql: "DELETE FROM backfills WHERE id = ?", arguments: [b.id])
            guard db.changesCount == 1 else { throw StoreError.notFound("backfill \(b.id) not found") }
        }
        try db.execute(
            sql: """
                INSERT INTO backfills (id, schedule_id, workflow_id, start_time, end_time, max_concurrent, status, ticks_total,
                    ticks_done, ticks_existing, executions_completed, executions_failed, last_tick, created_by, created_at,
                    finished_at, error)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                b.id, b.scheduleId, b.workflowId, StoreDate.text(b.startTime), StoreDate.text(b.endTime), b.maxConcurrent,
                b.status.rawValue, b.ticksTotal, b.ticksDone, b.ticksExisting, b.executionsCompleted, b.executionsFailed,
                b.lastTick.map(StoreDate.text), b.createdBy, StoreDate.text(b.createdAt), b.finishedAt.map(StoreDate.text),
                b.error,
            ])
    }

    static func backfillRecord(_ row: Row) throws -> BackfillRecord {
        BackfillRecord(
            id: row["id"], scheduleId: row["schedule_id"], workflowId: row["workflow_id"], startTime: row["start_time"],
            endTime: row["end_time"], maxConcurrent: row["max_concurrent"],
            status: try stored(BackfillRecord.Status.self, row["status"]), ticksTotal: row["ticks_total"],
            ticksDone: row["ticks_done"], ticksExisting: row["ticks_existing"],
            executionsCompleted: row["executions_completed"], executionsFailed: row["executions_failed"],
            lastTick: row["last_tick"], createdBy: row["created_by"], createdAt: row["created_at"],
            finishedAt: row["finished_at"], error: row["error"])
    }

    // MARK: Triggers and events

    public func createTrigger(_ t: TriggerRecord) async throws {
        try await write("create_trigger") { db in
            try db.execute(
                sql: """
                    INSERT INTO triggers (id, workflow_id, org_id, kind, description, sealed_secret, signature_header,
                        timestamp_header, tolerance_seconds, idempotency_header, event_name, filter, created_by, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    t.id, t.workflowId, t.orgId, t.kind.rawValue, t.description, t.sealedSecret, t.signatureHeader,
                    t.timestampHeader, t.toleranceSeconds, t.idempotencyHeader, t.eventName, t.filter, t.createdBy,
                    StoreDate.text(t.createdAt),
                ])
        }
    }

    public func trigger(id: String) async throws -> TriggerRecord? {
        try await read("get_trigger") { db in
            try Row.fetchOne(db, sql: "SELECT * FROM triggers WHERE id = ?", arguments: [id]).map(Self.triggerRecord)
        }
    }

    public func triggers(workflowId: String) async throws -> [TriggerRecord] {
        try await read("list_triggers") { db in
            try Row.fetchAll(db, sql: "SELECT * FROM triggers WHERE workflow_id = ? ORDER BY id LIMIT 1000", arguments: [workflowId])
                .map(Self.triggerRecord)
        }
    }

    public func eventTriggers(orgId: String, eventName: String) async throws -> [TriggerRecord] {
        try await read("event_triggers") { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT t.* FROM triggers t JOIN workflows w ON w.id = t.workflow_id
                    WHERE t.kind = 'event' AND t.org_id = ? AND t.event_name = ? AND w.deleted_at IS NULL ORDER BY t.id
                    """, arguments: [orgId, eventName]
            ).map(Self.triggerRecord)
        }
    }

    public func deleteTrigger(id: String) async throws -> Bool {
        try await write("delete_trigger") { db in
            try db.execute(sql: "DELETE FROM triggers WHERE id = ?", arguments: [id])
            return db.changesCount == 1
        }
    }

    public func triggersFired(_ counts: [String: (count: Int64, last: Date)]) async throws {
        try await write("triggers_fired") { db in
            for (id, fired) in counts {
                try db.execute(
                    sql: "UPDATE triggers SET fired_count = fired_count + ?, last_fired_at = ? WHERE id = ?",
                    arguments: [fired.count, StoreDate.text(fired.last), id])
            }
        }
    }

    static func triggerRecord(_ row: Row) throws -> TriggerRecord {
        TriggerRecord(
            id: row["id"], workflowId: row["workflow_id"], orgId: row["org_id"],
            kind: try stored(TriggerRecord.Kind.self, row["kind"]), description: row["description"],
            sealedSecret: row["sealed_secret"], signatureHeader: row["signature_header"],
            timestampHeader: row["timestamp_header"], toleranceSeconds: row["tolerance_seconds"],
            idempotencyHeader: row["idempotency_header"], eventName: row["event_name"], filter: row["filter"],
            createdBy: row["created_by"], createdAt: row["created_at"], lastFiredAt: row["last_fired_at"],
            firedCount: row["fired_count"])
    }

    public func event(orgId: String, eventId: String) async throws -> [String]? {
        try await read("get_event") { db in
            guard let text = try String.fetchOne(
                db, sql: "SELECT execution_ids FROM published_events WHERE org_id = ? AND event_id = ?",
                arguments: [orgId, eventId])
            else { return nil }
            return text.isEmpty ? [] : text.split(separator: ",").map(String.init)
        }
    }

    public func purgeEvents(before date: Date) async throws -> Int {
        try await write("purge_events") { db in
            try db.execute(sql: "DELETE FROM published_events WHERE created_at < ?", arguments: [StoreDate.text(date)])
            return db.changesCount
        }
    }

    public func recordEvent(orgId: String, eventId: String, name: String, executionIds: [String], at: Date) async throws {
        try await write("record_event") { db in
            try db.execute(
                sql: """
                    INSERT OR IGNORE INTO published_events (org_id, event_id, name, execution_ids, created_at)
                    VALUES (?, ?, ?, ?, ?)
                    """, arguments: [orgId, eventId, name, executionIds.joined(separator: ","), StoreDate.text(at)])
        }
    }
}
