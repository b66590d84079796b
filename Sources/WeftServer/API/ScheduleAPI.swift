import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.ScheduleService: cron schedules of a workflow, previews and
/// backfills (docs/SCHEDULES.md). Viewers read; editors and owners change.
struct ScheduleAPI: RPCService {
    static let name = "weft.v1.ScheduleService"
    static let collection = "/workflows/{workflowId}/schedules"
    static let item = collection + "/{scheduleId}"
    /// A workflow holds at most this many schedules.
    static let maxPerWorkflow = 100
    static let maxDescriptionBytes = 1024
    static let maxNoteBytes = 1024
    static let maxJitterMs: Int64 = 3_600_000 - 1
    static let catchUpWindowRange: ClosedRange<Int64> = 1000...(30 * 86_400_000)
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateSchedule", rest: [.post(Self.collection, status: 201)]) {
                (request: Weft_V1_CreateScheduleRequest, context) in try await create(request, context)
            },
            .unary(service: Self.name, method: "ListSchedules", rest: [.get(Self.collection)]) {
                (request: Weft_V1_ListSchedulesRequest, context) in try await list(request, context)
            },
            .unary(service: Self.name, method: "DeleteSchedule", rest: [.delete(Self.item)]) {
                (request: Weft_V1_DeleteScheduleRequest, context) -> Weft_V1_DeleteScheduleResponse in
                let caller = try Caller(context)
                let schedule = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .editor)
                guard try await deps.schedules.deleteSchedule(id: schedule.id) else { throw Self.notFound(schedule.id) }
                deps.scheduler.scheduleChanged()
                return Weft_V1_DeleteScheduleResponse()
            },
            .unary(service: Self.name, method: "GetSchedule", rest: [.get(Self.item)]) {
                (request: Weft_V1_GetScheduleRequest, context) in
                let caller = try Caller(context)
                return try await proto(schedule(request.workflowID, request.scheduleID, caller: caller, needs: .viewer))
            },
            .unary(service: Self.name, method: "UpdateSchedule", rest: [.put(Self.item)]) {
                (request: Weft_V1_UpdateScheduleRequest, context) in try await update(request, context)
            },
            .unary(service: Self.name, method: "PauseSchedule", rest: [.post(Self.item + "/pause")]) {
                (request: Weft_V1_PauseScheduleRequest, context) in
                guard request.note.utf8.count <= Self.maxNoteBytes else {
                    throw RPCError(code: .invalidArgument, message: "note is longer than \(Self.maxNoteBytes) bytes")
                }
                return try await setPaused(request.workflowID, request.scheduleID, paused: true, note: request.note, context)
            },
            .unary(service: Self.name, method: "ResumeSchedule", rest: [.post(Self.item + "/resume")]) {
                (request: Weft_V1_ResumeScheduleRequest, context) in
                try await setPaused(request.workflowID, request.scheduleID, paused: false, note: "", context)
            },
            .unary(service: Self.name, method: "PreviewSchedule", rest: [.post("/schedules/preview")]) {
                (request: Weft_V1_PreviewScheduleRequest, context) in try await preview(request, context)
            },
            .unary(service: Self.name, method: "BackfillSchedule", rest: [.post(Self.item + "/backfills", status: 201)]) {
                (request: Weft_V1_BackfillScheduleRequest, context) in try await backfill(request, context)
            },
            .unary(service: Self.name, method: "ListBackfills", rest: [.get(Self.item + "/backfills")]) {
                (request: Weft_V1_ListBackfillsRequest, context) in
                let caller = try Caller(context)
                let schedule = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .viewer)
                var response = Weft_V1_ListBackfillsResponse()
                response.backfills = try await deps.schedules.backfills(scheduleId: schedule.id).map(Self.proto)
                return response
            },
            .unary(service: Self.name, method: "GetBackfill", rest: [.get(Self.item + "/backfills/{backfillId}")]) {
                (request: Weft_V1_GetBackfillRequest, context) in
                let caller = try Caller(context)
                let schedule = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .viewer)
                return Self.proto(try await backfill(request.backfillID, of: schedule))
            },
            .unary(service: Self.name, method: "CancelBackfill", rest: [.post(Self.item + "/backfills/{backfillId}/cancel")]) {
                (request: Weft_V1_CancelBackfillRequest, context) in
                let caller = try Caller(context)
                try caller.requireExecute(workflowId: request.workflowID)
                let schedule = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .editor)
                let record = try await backfill(request.backfillID, of: schedule)
                guard record.status == .running else {
                    throw RPCError(
                        code: .failedPrecondition,
                        message: "backfill \(record.id) already finished (\(record.status.rawValue)); only a running backfill can be cancelled")
                }
                guard let done = try await deps.scheduler.cancelBackfill(record.id) else {
                    throw RPCError(code: .notFound, message: "backfill \(record.id) not found")
                }
                return Self.proto(done)
            },
        ]
    }

    static func notFound(_ id: String) -> RPCError { RPCError(code: .notFound, message: "schedule \(id) not found") }

    /// The schedule of the workflow, after the caller's role on it.
    func schedule(_ workflowId: String, _ scheduleId: String, caller: Caller, needs: WorkflowRole) async throws
        -> ScheduleRecord
    {
        guard !scheduleId.isEmpty else { throw APIError.required("schedule_id") }
        _ = try await deps.workflow(workflowId, caller: caller, needs: needs)
        guard let schedule = try await deps.schedules.schedule(id: scheduleId), schedule.workflowId == workflowId else {
            throw Self.notFound(scheduleId)
        }
        caller.audit?.note(resource: ("schedule", scheduleId))
        return schedule
    }

    func backfill(_ id: String, of schedule: ScheduleRecord) async throws -> BackfillRecord {
        guard !id.isEmpty else { throw APIError.required("backfill_id") }
        guard let record = try await deps.schedules.backfill(id: id), record.scheduleId == schedule.id else {
            throw RPCError(code: .notFound, message: "backfill \(id) not found")
        }
        return record
    }

    // MARK: Settings

    /// The settings of a create or update request, checked.
    struct Settings {
        var clock: ScheduleClock
        var cron: String
        var timezone: String
        var input: JSONValue
        var description: String
        var startAt: Date?
        var endAt: Date?
        var jitterMs: Int64
        var overlap: OverlapPolicy
        var catchUp: CatchUpPolicy
        var catchUpWindowMs: Int64
    }

    func settings(
        cron: String, timezone: String, input: Google_Protobuf_Struct?, description: String, startAt: Google_Protobuf_Timestamp?,
        endAt: Google_Protobuf_Timestamp?, jitter: Google_Protobuf_Duration?, overlap: String, catchUp: String,
        catchUpWindow: Google_Protobuf_Duration?
    ) throws -> Settings {
        guard !cron.isEmpty else { throw APIError.required("cron") }
        let zone = timezone.isEmpty ? "UTC" : timezone
        let clock: ScheduleClock
        do {
            clock = try ScheduleClock(cron: cron, timezone: zone)
        } catch {
            throw RPCError(code: .invalidArgument, message: error.description)
        }
        let value = try input.map { try ProtoMapping.jsonValue($0, field: "input") } ?? .emptyObject
        let cap = deps.engine.limits.maxExecutionBytes
        guard value.encodedSize(limit: cap) <= cap else {
            throw RPCError(
                code: .invalidArgument, message: "input is larger than an execution's cap of \(cap) bytes (--max-execution-bytes)")
        }
        guard description.utf8.count <= Self.maxDescriptionBytes else {
            throw RPCError(code: .invalidArgument, message: "description is longer than \(Self.maxDescriptionBytes) bytes")
        }
        let start = try startAt.map { try ProtoMapping.date($0, field: "start_at") }
        let end = try endAt.map { try ProtoMapping.date($0, field: "end_at") }
        if let start, let end, start >= end {
            throw RPCError(code: .invalidArgument, message: "start_at must be before end_at")
        }
        var jitterMs: Int64 = 0
        if let jitter {
            jitterMs = try ProtoMapping.milliseconds(jitter, field: "jitter")
            guard (0...Self.maxJitterMs).contains(jitterMs) else {
                throw RPCError(code: .invalidArgument, message: "jitter must be from 0s to less than 1h, got \(jitterMs) ms")
            }
        }
        guard let overlapPolicy = overlap.isEmpty ? .skip : OverlapPolicy(rawValue: overlap) else {
            throw RPCError(
                code: .invalidArgument,
                message: "overlap_policy \"\(overlap)\" is not one of \(OverlapPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let catchUpPolicy = catchUp.isEmpty ? .runOnce : CatchUpPolicy(rawValue: catchUp) else {
            throw RPCError(
                code: .invalidArgument,
                message: "catchup_policy \"\(catchUp)\" is not one of \(CatchUpPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var windowMs: Int64 = 3_600_000
        if let catchUpWindow {
            windowMs = try ProtoMapping.milliseconds(catchUpWindow, field: "catchup_window")
            guard Self.catchUpWindowRange.contains(windowMs) else {
                throw RPCError(code: .invalidArgument, message: "catchup_window must be from 1s to 30 days")
            }
        }
        if jitterMs > 0 {
            // A jitter as long as the gap between ticks would let a later tick
            // fall due before an earlier one (and count it missed).
            let ticks = clock.upcoming(after: Date(), count: 20)
            let gaps = zip(ticks.dropFirst(), ticks).map { $0.timeIntervalSince($1) }
            if let shortest = gaps.min(), Double(jitterMs) / 1000 >= shortest {
                throw RPCError(
                    code: .invalidArgument,
                    message: "jitter (\(Double(jitterMs) / 1000) s) must be shorter than the gap between ticks (\(shortest) s)")
            }
        }
        return Settings(
            clock: clock, cron: cron, timezone: zone, input: value, description: description, startAt: start, endAt: end,
            jitterMs: jitterMs, overlap: overlapPolicy, catchUp: catchUpPolicy, catchUpWindowMs: windowMs)
    }

    /// The first tick after `now` within the settings' bounds; refuses a
    /// schedule that would never fire.
    func firstTick(_ settings: Settings, after now: Date) throws -> Date? {
        let next = settings.clock.upcoming(after: now, count: 1, start: settings.startAt, end: settings.endAt).first
        if next == nil, settings.endAt.map({ $0 > now }) ?? true {
            throw RPCError(
                code: .invalidArgument,
                message: "cron: \"\(settings.cron)\" never fires\(settings.endAt == nil ? "" : " before end_at") (e.g. February 30)")
        }
        return next
    }

    func create(_ request: Weft_V1_CreateScheduleRequest, _ context: ServerContext) async throws -> Weft_V1_Schedule {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: request.workflowID)
        let settings = try settings(
            cron: request.cron, timezone: request.timezone, input: request.hasInput ? request.input : nil,
            description: request.description_p, startAt: request.hasStartAt ? request.startAt : nil,
            endAt: request.hasEndAt ? request.endAt : nil, jitter: request.hasJitter ? request.jitter : nil,
            overlap: request.overlapPolicy, catchUp: request.catchupPolicy,
            catchUpWindow: request.hasCatchupWindow ? request.catchupWindow : nil)
        let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
        guard try await deps.schedules.scheduleCount(workflowId: workflow.id) < Self.maxPerWorkflow else {
            throw RPCError(
                code: .failedPrecondition,
                message: "workflow \(workflow.id) has \(Self.maxPerWorkflow) schedules, the most a workflow may have; delete one first")
        }
        if let org = try await deps.quotas.organization(id: workflow.orgId) {
            let limit = deps.quotas.plan(of: org).schedules
            if limit > 0 {
                let count = try await deps.schedules.scheduleCount(orgId: org.id)
                if count >= limit {
                    throw deps.quotas.refuse(
                        "schedules",
                        "organization \(org.id) has \(count) schedules, its plan's schedules quota (\(deps.quotas.plan(of: org).name)); delete one first",
                        retryAfter: 60)
                }
            }
        }
        let now = Date.nowMillis
        let id = IDGenerator.make(IDGenerator.schedule, now: now)
        // Checked paused or not: a schedule that would never fire is refused.
        let first = try firstTick(settings, after: now)
        let next = request.paused ? nil : first
        let record = ScheduleRecord(
            id: id, workflowId: workflow.id, orgId: workflow.orgId, cron: settings.cron, timezone: settings.timezone,
            input: settings.input, description: settings.description, paused: request.paused, startAt: settings.startAt,
            endAt: settings.endAt, jitterMs: settings.jitterMs, overlap: settings.overlap, catchUp: settings.catchUp,
            catchUpWindowMs: settings.catchUpWindowMs, nextRunAt: next, createdBy: caller.userId, createdAt: now)
        try await deps.schedules.createSchedule(record)
        caller.audit?.note(resource: ("schedule", id))
        deps.scheduler.scheduleChanged()
        return try await proto(record)
    }

    /// Where an update computes the next tick from: now, or just before a
    /// tick that is due and not handled yet (an edit does not drop it), and
    /// never before the last tick fired (on a fall-back night the repeated
    /// hour's second pass does not run a tick again).
    static func resumePoint(_ record: ScheduleRecord, now: Date) -> Date {
        var point = now
        if let due = record.nextRunAt, due <= now { point = due.addingTimeInterval(-1) }
        if let fired = record.lastFireAt, fired > point { point = fired }
        return point
    }

    func update(_ request: Weft_V1_UpdateScheduleRequest, _ context: ServerContext) async throws -> Weft_V1_Schedule {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: request.workflowID)
        let settings = try settings(
            cron: request.cron, timezone: request.timezone, input: request.hasInput ? request.input : nil,
            description: request.description_p, startAt: request.hasStartAt ? request.startAt : nil,
            endAt: request.hasEndAt ? request.endAt : nil, jitter: request.hasJitter ? request.jitter : nil,
            overlap: request.overlapPolicy, catchUp: request.catchupPolicy,
            catchUpWindow: request.hasCatchupWindow ? request.catchupWindow : nil)
        var record = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .editor)
        let now = Date.nowMillis
        let next = try firstTick(settings, after: Self.resumePoint(record, now: now))
        record.cron = settings.cron
        record.timezone = settings.timezone
        record.input = settings.input
        record.description = settings.description
        record.startAt = settings.startAt
        record.endAt = settings.endAt
        record.jitterMs = settings.jitterMs
        record.overlap = settings.overlap
        record.catchUp = settings.catchUp
        record.catchUpWindowMs = settings.catchUpWindowMs
        record.nextRunAt = record.paused ? nil : next
        record.updatedAt = now
        do {
            try await deps.schedules.replaceSchedule(record)
        } catch StoreError.notFound {
            throw Self.notFound(record.id)
        }
        deps.scheduler.scheduleChanged()
        return try await proto(try await deps.schedules.schedule(id: record.id) ?? record)
    }

    func setPaused(_ workflowId: String, _ scheduleId: String, paused: Bool, note: String, _ context: ServerContext)
        async throws -> Weft_V1_Schedule
    {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: workflowId)
        var record = try await schedule(workflowId, scheduleId, caller: caller, needs: .editor)
        let now = Date.nowMillis
        if paused {
            record.paused = true
            record.pausedNote = note
            record.nextRunAt = nil
            // A buffered tick waits no more once paused.
            record.bufferedTick = nil
        } else {
            guard record.paused else { return try await proto(record) }
            record.paused = false
            record.pausedNote = ""
            // Ticks during the pause are neither run nor counted missed.
            let clock = try ScheduleClock(cron: record.cron, timezone: record.timezone)
            record.nextRunAt = clock.upcoming(
                after: max(now, record.lastFireAt ?? now), count: 1, start: record.startAt, end: record.endAt
            ).first
        }
        record.updatedAt = now
        do {
            try await deps.schedules.replaceSchedule(record)
        } catch StoreError.notFound {
            throw Self.notFound(record.id)
        }
        deps.scheduler.scheduleChanged()
        return try await proto(record)
    }

    func list(_ request: Weft_V1_ListSchedulesRequest, _ context: ServerContext) async throws -> Weft_V1_ListSchedulesResponse {
        let caller = try Caller(context)
        _ = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
        let size = try Paging.size(request.pageSize)
        let fingerprint = Paging.query(request, caller: caller.userId) {
            $0.pageToken = ""
            $0.pageSize = 0
        }
        let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
        let page = try await deps.schedules.schedules(workflowId: request.workflowID, limit: size, cursor: cursor)
        var response = Weft_V1_ListSchedulesResponse()
        for record in page.items { response.schedules.append(try await proto(record)) }
        response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
        return response
    }

    func preview(_ request: Weft_V1_PreviewScheduleRequest, _ context: ServerContext) async throws
        -> Weft_V1_PreviewScheduleResponse
    {
        _ = try Caller(context)
        guard !request.cron.isEmpty else { throw APIError.required("cron") }
        let count = request.count == 0 ? 5 : Int(request.count)
        guard (1...100).contains(count) else {
            throw RPCError(code: .invalidArgument, message: "count must be from 1 to 100, got \(request.count)")
        }
        let clock: ScheduleClock
        do {
            clock = try ScheduleClock(cron: request.cron, timezone: request.timezone.isEmpty ? "UTC" : request.timezone)
        } catch {
            throw RPCError(code: .invalidArgument, message: error.description)
        }
        let start = request.hasStartAt ? try ProtoMapping.date(request.startAt, field: "start_at") : nil
        let end = request.hasEndAt ? try ProtoMapping.date(request.endAt, field: "end_at") : nil
        if let start, let end, start >= end {
            throw RPCError(code: .invalidArgument, message: "start_at must be before end_at")
        }
        let after = request.hasAfter ? try ProtoMapping.date(request.after, field: "after") : Date()
        let times = clock.upcoming(after: after, count: count, start: start, end: end)
        if times.isEmpty, end == nil {
            // As CreateSchedule says it: an expression that never fires.
            throw RPCError(code: .invalidArgument, message: "cron: \"\(request.cron)\" never fires (e.g. February 30)")
        }
        var response = Weft_V1_PreviewScheduleResponse()
        response.times = times.map(ProtoMapping.timestamp)
        response.localTimes = times.map(clock.localText)
        response.normalized = clock.cron.normalized
        return response
    }

    func backfill(_ request: Weft_V1_BackfillScheduleRequest, _ context: ServerContext) async throws -> Weft_V1_Backfill {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: request.workflowID)
        guard request.hasStartTime else { throw APIError.required("start_time") }
        guard request.hasEndTime else { throw APIError.required("end_time") }
        let start = try ProtoMapping.date(request.startTime, field: "start_time")
        let end = try ProtoMapping.date(request.endTime, field: "end_time")
        guard start < end else { throw RPCError(code: .invalidArgument, message: "start_time must be before end_time") }
        let now = Date.nowMillis
        guard end <= now.addingTimeInterval(1) else {
            throw RPCError(code: .invalidArgument, message: "end_time must not be in the future (a backfill runs past ticks)")
        }
        let concurrency = request.maxConcurrent == 0 ? 1 : Int(request.maxConcurrent)
        guard (1...64).contains(concurrency) else {
            throw RPCError(code: .invalidArgument, message: "max_concurrent must be from 1 to 64, got \(request.maxConcurrent)")
        }
        let schedule = try await schedule(request.workflowID, request.scheduleID, caller: caller, needs: .editor)
        if let running = try await deps.schedules.backfills(scheduleId: schedule.id).first(where: { $0.status == .running }) {
            throw RPCError(
                code: .failedPrecondition,
                message: "a backfill of schedule \(schedule.id) is running (\(running.id)); cancel it or wait for it to finish")
        }
        let clock = try ScheduleClock(cron: schedule.cron, timezone: schedule.timezone)
        let ticks = Scheduler.ticks(clock, from: start, to: end, limit: Scheduler.maxBackfillTicks)
        guard ticks.count <= Scheduler.maxBackfillTicks else {
            throw RPCError(
                code: .invalidArgument,
                message: "the range holds more than \(Scheduler.maxBackfillTicks) ticks of \"\(schedule.cron)\"; backfill a shorter range")
        }
        let record = BackfillRecord(
            id: IDGenerator.make("bkf", now: now), scheduleId: schedule.id, workflowId: schedule.workflowId, startTime: start,
            endTime: end, maxConcurrent: concurrency, status: ticks.isEmpty ? .completed : .running,
            ticksTotal: Int64(ticks.count), createdBy: caller.userId, createdAt: now, finishedAt: ticks.isEmpty ? now : nil)
        try await deps.schedules.createBackfill(record)
        caller.audit?.note(resource: ("backfill", record.id))
        if !ticks.isEmpty { deps.scheduler.startBackfill(record.id) }
        return Self.proto(record)
    }

    // MARK: Mapping

    func proto(_ record: ScheduleRecord) async throws -> Weft_V1_Schedule {
        var schedule = Weft_V1_Schedule()
        schedule.id = record.id
        schedule.workflowID = record.workflowId
        schedule.cron = record.cron
        schedule.timezone = record.timezone
        schedule.input = ProtoMapping.protoStruct(record.input)
        schedule.paused = record.paused
        schedule.pausedNote = record.pausedNote
        schedule.description_p = record.description
        if let next = record.nextRunAt {
            schedule.nextRunAt = ProtoMapping.timestamp(next)
            if let clock = try? ScheduleClock(cron: record.cron, timezone: record.timezone) {
                let later = clock.upcoming(after: next, count: 4, end: record.endAt)
                schedule.nextRunTimes = ([next] + later).map(ProtoMapping.timestamp)
            }
        }
        schedule.createdAt = ProtoMapping.timestamp(record.createdAt)
        schedule.updatedAt = ProtoMapping.timestamp(record.updatedAt)
        schedule.createdBy = record.createdBy
        if let start = record.startAt { schedule.startAt = ProtoMapping.timestamp(start) }
        if let end = record.endAt { schedule.endAt = ProtoMapping.timestamp(end) }
        schedule.jitter = ProtoMapping.duration(ms: record.jitterMs)
        schedule.overlapPolicy = record.overlap.rawValue
        schedule.catchupPolicy = record.catchUp.rawValue
        schedule.catchupWindow = ProtoMapping.duration(ms: record.catchUpWindowMs)
        if let fired = record.lastFireAt { schedule.lastFireAt = ProtoMapping.timestamp(fired) }
        schedule.lastExecutionID = record.lastExecutionId ?? ""
        schedule.firedCount = record.firedCount
        schedule.missedCount = record.missedCount
        schedule.skippedCount = record.skippedCount
        schedule.lastSkipReason = record.lastSkipReason ?? ""
        schedule.buffered = record.bufferedTick != nil
        // The last tick's outcome: skipped, or its execution's status now.
        if let skipped = record.lastSkippedAt, record.lastFireAt.map({ skipped > $0 }) ?? true {
            schedule.lastOutcome = "Skipped"
        } else if let last = record.lastExecutionId, let execution = try await deps.executions.execution(id: last) {
            schedule.lastOutcome = execution.status.rawValue
        }
        return schedule
    }

    static func proto(_ record: BackfillRecord) -> Weft_V1_Backfill {
        var backfill = Weft_V1_Backfill()
        backfill.id = record.id
        backfill.scheduleID = record.scheduleId
        backfill.workflowID = record.workflowId
        backfill.startTime = ProtoMapping.timestamp(record.startTime)
        backfill.endTime = ProtoMapping.timestamp(record.endTime)
        backfill.maxConcurrent = Int32(record.maxConcurrent)
        backfill.status = record.status.rawValue
        backfill.ticksTotal = record.ticksTotal
        backfill.ticksDone = record.ticksDone
        backfill.ticksExisting = record.ticksExisting
        backfill.executionsCompleted = record.executionsCompleted
        backfill.executionsFailed = record.executionsFailed
        if let tick = record.lastTick { backfill.lastTick = ProtoMapping.timestamp(tick) }
        backfill.createdAt = ProtoMapping.timestamp(record.createdAt)
        if let finished = record.finishedAt { backfill.finishedAt = ProtoMapping.timestamp(finished) }
        backfill.createdBy = record.createdBy
        backfill.error = record.error ?? ""
        return backfill
    }
}
