public import Foundation

/// What a tick does while the schedule's last execution still runs.
public enum OverlapPolicy: String, Sendable, Hashable, CaseIterable {
    /// The tick is skipped (counted, with reason "overlap").
    case skip
    /// The new execution starts anyway.
    case allow
    /// One tick waits and starts when the running execution ends; ticks
    /// while one waits are skipped.
    case bufferOne = "buffer_one"
    /// The running execution is cancelled and the new one starts.
    case cancelOther = "cancel_other"
    /// As `cancelOther`: Weft's cancel already ends an execution at once.
    case terminateOther = "terminate_other"
}

/// What happens to ticks that fell due while the server was down (later
/// than the misfire grace).
public enum CatchUpPolicy: String, Sendable, Hashable, CaseIterable {
    /// None of them run; all are counted missed.
    case skip
    /// The latest of them runs; the others are counted missed.
    case runOnce = "run_once"
    /// Each one within the catch-up window runs, in order; older ones are missed.
    case runAll = "run_all"
}

/// A cron schedule of a workflow, and what it has done so far.
public struct ScheduleRecord: Sendable, Hashable {
    public var id: String
    public var workflowId: String
    public var orgId: String
    public var cron: String
    public var timezone: String
    public var input: JSONValue
    public var description: String
    public var paused: Bool
    public var pausedNote: String
    public var startAt: Date?
    public var endAt: Date?
    public var jitterMs: Int64
    public var overlap: OverlapPolicy
    public var catchUp: CatchUpPolicy
    public var catchUpWindowMs: Int64
    /// The next tick (before jitter); nil when paused or past `endAt`.
    public var nextRunAt: Date?
    /// The tick of the last execution started, and that execution.
    public var lastFireAt: Date?
    public var lastExecutionId: String?
    /// The last skipped tick and why.
    public var lastSkippedAt: Date?
    public var lastSkipReason: String?
    public var firedCount: Int64
    public var missedCount: Int64
    public var skippedCount: Int64
    /// buffer_one: the tick waiting for the running execution to end.
    public var bufferedTick: Date?
    public var createdBy: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, workflowId: String, orgId: String, cron: String, timezone: String, input: JSONValue = .emptyObject,
        description: String = "", paused: Bool = false, pausedNote: String = "", startAt: Date? = nil, endAt: Date? = nil,
        jitterMs: Int64 = 0, overlap: OverlapPolicy = .skip, catchUp: CatchUpPolicy = .runOnce,
        catchUpWindowMs: Int64 = 3_600_000, nextRunAt: Date? = nil, lastFireAt: Date? = nil, lastExecutionId: String? = nil,
        lastSkippedAt: Date? = nil, lastSkipReason: String? = nil, firedCount: Int64 = 0, missedCount: Int64 = 0,
        skippedCount: Int64 = 0, bufferedTick: Date? = nil, createdBy: String, createdAt: Date, updatedAt: Date? = nil
    ) {
        self.id = id
        self.workflowId = workflowId
        self.orgId = orgId
        self.cron = cron
        self.timezone = timezone
        self.input = input
        self.description = description
        self.paused = paused
        self.pausedNote = pausedNote
        self.startAt = startAt
        self.endAt = endAt
        self.jitterMs = jitterMs
        self.overlap = overlap
        self.catchUp = catchUp
        self.catchUpWindowMs = catchUpWindowMs
        self.nextRunAt = nextRunAt
        self.lastFireAt = lastFireAt
        self.lastExecutionId = lastExecutionId
        self.lastSkippedAt = lastSkippedAt
        self.lastSkipReason = lastSkipReason
        self.firedCount = firedCount
        self.missedCount = missedCount
        self.skippedCount = skippedCount
        self.bufferedTick = bufferedTick
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt ?? createdAt
    }

    /// The queue the scheduler's wake-ups are on, taken by due time.
    public static let queue = QueueItem.schedulesQueue
    static let tickKey = "~tick"

    /// The wake-up item of a tick: keyed by (schedule, tick second), due at
    /// the tick plus its jitter. The item only wakes the scheduler; the
    /// schedule's `nextRunAt` is the truth.
    public func wakeUp(tick: Date) -> QueueItem {
        var item = QueueItem(
            queue: Self.queue, executionId: id, taskKey: Self.tickKey, attempt: Int(tick.timeIntervalSince1970.rounded(.down)),
            readyAt: tick.addingTimeInterval(Double(jitter(for: tick)) / 1000))
        item.tenant = orgId
        return item
    }

    /// The tick a wake-up item was made for.
    public static func tick(of item: QueueItem) -> Date { Date(timeIntervalSince1970: TimeInterval(item.attempt)) }

    /// The delay of a tick in [0, jitter): the same for the same tick every
    /// time (a restart does not move it).
    public func jitter(for tick: Date) -> Int64 {
        guard jitterMs > 0 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        var seconds = UInt64(bitPattern: Int64(tick.timeIntervalSince1970))
        for _ in 0..<8 {
            hash = (hash ^ (seconds & 0xff)) &* 0x100_0000_01b3
            seconds >>= 8
        }
        return Int64(hash % UInt64(jitterMs))
    }

    /// The idempotency key of a tick's execution: live ticks, catch-up and
    /// backfills share it, so no tick ever runs twice.
    public func idempotencyKey(tick: Date) -> String { Self.idempotencyKey(scheduleId: id, tick: tick) }

    public static func idempotencyKey(scheduleId: String, tick: Date) -> String {
        "schedule:\(scheduleId):\(Int64((tick.timeIntervalSince1970 * 1000).rounded()))"
    }
}

/// A guarded change of a schedule's progress, written in the unit that
/// starts the tick's execution (`ExecutionTransition.schedule`), so the
/// execution and the schedule's advance commit together or not at all.
public struct ScheduleUpdate: Sendable, Hashable {
    public enum Buffer: Sendable, Hashable {
        case keep
        case set(Date)
        case clear
    }

    public var scheduleId: String
    /// The unit fails (`conflict`) unless the schedule's next tick is this
    /// (someone else handled the tick) ...
    public var expectNext: Date?
    /// ... or unless its buffered tick is this.
    public var expectBuffered: Date?
    /// Moves the next tick (nil: the schedule has no more ticks).
    public var setsNext: Bool
    public var next: Date?
    /// A tick that started `executionId`.
    public var fired: Date?
    public var executionId: String?
    public var skipped: Int64
    public var skippedTick: Date?
    public var skipReason: String?
    public var missed: Int64
    public var buffer: Buffer

    public init(
        scheduleId: String, expectNext: Date? = nil, expectBuffered: Date? = nil, setsNext: Bool = false, next: Date? = nil,
        fired: Date? = nil, executionId: String? = nil, skipped: Int64 = 0, skippedTick: Date? = nil, skipReason: String? = nil,
        missed: Int64 = 0, buffer: Buffer = .keep
    ) {
        self.scheduleId = scheduleId
        self.expectNext = expectNext
        self.expectBuffered = expectBuffered
        self.setsNext = setsNext
        self.next = next
        self.fired = fired
        self.executionId = executionId
        self.skipped = skipped
        self.skippedTick = skippedTick
        self.skipReason = skipReason
        self.missed = missed
        self.buffer = buffer
    }

    /// Applies the change to a record; throws `conflict` when a guard fails.
    public func apply(to record: inout ScheduleRecord) throws {
        if let expectNext, record.nextRunAt != expectNext || record.paused {
            throw StoreError.conflict("schedule \(scheduleId) is no longer at tick \(expectNext)")
        }
        if let expectBuffered, record.bufferedTick != expectBuffered {
            throw StoreError.conflict("schedule \(scheduleId) has no buffered tick \(expectBuffered)")
        }
        if setsNext { record.nextRunAt = next }
        if let fired {
            record.lastFireAt = fired
            record.lastExecutionId = executionId
            record.firedCount += 1
        }
        if skipped > 0 {
            record.skippedCount += skipped
            record.lastSkippedAt = skippedTick
            record.lastSkipReason = skipReason
        }
        record.missedCount += missed
        switch buffer {
        case .keep: break
        case .set(let tick): record.bufferedTick = tick
        case .clear: record.bufferedTick = nil
        }
    }
}

/// A run of a schedule over a past range of ticks.
public struct BackfillRecord: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable {
        case running = "Running"
        case completed = "Completed"
        case cancelled = "Cancelled"
        case failed = "Failed"
    }

    public var id: String
    public var scheduleId: String
    public var workflowId: String
    public var startTime: Date
    public var endTime: Date
    public var maxConcurrent: Int
    public var status: Status
    public var ticksTotal: Int64
    public var ticksDone: Int64
    public var ticksExisting: Int64
    public var executionsCompleted: Int64
    public var executionsFailed: Int64
    /// The last tick handled (the cursor a restart resumes after).
    public var lastTick: Date?
    public var createdBy: String
    public var createdAt: Date
    public var finishedAt: Date?
    public var error: String?

    public init(
        id: String, scheduleId: String, workflowId: String, startTime: Date, endTime: Date, maxConcurrent: Int,
        status: Status = .running, ticksTotal: Int64, ticksDone: Int64 = 0, ticksExisting: Int64 = 0,
        executionsCompleted: Int64 = 0, executionsFailed: Int64 = 0, lastTick: Date? = nil, createdBy: String,
        createdAt: Date, finishedAt: Date? = nil, error: String? = nil
    ) {
        self.id = id
        self.scheduleId = scheduleId
        self.workflowId = workflowId
        self.startTime = startTime
        self.endTime = endTime
        self.maxConcurrent = maxConcurrent
        self.status = status
        self.ticksTotal = ticksTotal
        self.ticksDone = ticksDone
        self.ticksExisting = ticksExisting
        self.executionsCompleted = executionsCompleted
        self.executionsFailed = executionsFailed
        self.lastTick = lastTick
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.error = error
    }
}

/// A webhook or event trigger of a workflow.
public struct TriggerRecord: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable {
        case webhook
        case event
    }

    public var id: String
    public var workflowId: String
    public var orgId: String
    public var kind: Kind
    public var description: String
    /// webhook: the HMAC key, sealed (nil: deliveries are not signed).
    public var sealedSecret: String?
    public var signatureHeader: String
    /// Empty: the signature covers the body alone, with no timestamp.
    public var timestampHeader: String
    public var toleranceSeconds: Int
    public var idempotencyHeader: String
    public var eventName: String
    public var filter: String
    public var createdBy: String
    public var createdAt: Date
    public var lastFiredAt: Date?
    public var firedCount: Int64

    public init(
        id: String, workflowId: String, orgId: String, kind: Kind, description: String = "", sealedSecret: String? = nil,
        signatureHeader: String = "", timestampHeader: String = "", toleranceSeconds: Int = 300,
        idempotencyHeader: String = "", eventName: String = "", filter: String = "", createdBy: String, createdAt: Date,
        lastFiredAt: Date? = nil, firedCount: Int64 = 0
    ) {
        self.id = id
        self.workflowId = workflowId
        self.orgId = orgId
        self.kind = kind
        self.description = description
        self.sealedSecret = sealedSecret
        self.signatureHeader = signatureHeader
        self.timestampHeader = timestampHeader
        self.toleranceSeconds = toleranceSeconds
        self.idempotencyHeader = idempotencyHeader
        self.eventName = eventName
        self.filter = filter
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.lastFiredAt = lastFiredAt
        self.firedCount = firedCount
    }
}

/// Schedules, their backfills, webhook and event triggers, and published
/// events (for deduplication).
///
/// A schedule's row is the truth about its next tick; its wake-up item on
/// the `schedules` queue only wakes the scheduler. Writes that move the
/// next tick replace the wake-up in the same transaction.
public protocol ScheduleStore: Sendable {
    /// Stores a schedule and, when it has a next tick, its wake-up item.
    func createSchedule(_ schedule: ScheduleRecord) async throws
    func schedule(id: String) async throws -> ScheduleRecord?
    /// Several schedules by id, in one read (the unknown ones left out).
    func schedules(ids: [String]) async throws -> [String: ScheduleRecord]
    /// Oldest first, keyset-paginated by id.
    func schedules(workflowId: String, limit: Int, cursor: String?) async throws -> Page<ScheduleRecord>
    func scheduleCount(workflowId: String) async throws -> Int
    /// Schedules of the organization's live workflows (its plan's `schedules` quota).
    func scheduleCount(orgId: String) async throws -> Int
    /// Replaces a schedule's settings and next tick (not its progress:
    /// counts and last execution are the scheduler's); pausing clears a
    /// buffered tick. Removes its wake-up items nobody holds and enqueues
    /// one for its next tick. `notFound` when it is gone.
    func replaceSchedule(_ schedule: ScheduleRecord) async throws
    /// Deletes a schedule and its unleased wake-up items; false if unknown.
    func deleteSchedule(id: String) async throws -> Bool
    /// Schedules that are not paused and have a next tick.
    func activeSchedules() async throws -> [ScheduleRecord]
    /// Schedules with a buffered tick (to watch their running execution after a restart).
    func bufferedSchedules() async throws -> [ScheduleRecord]
    /// The earliest due time of a wake-up nobody holds (nil: none).
    func nextWakeUp() async throws -> Date?
    /// How many schedules of live workflows are active and paused.
    func scheduleCounts() async throws -> (active: Int, paused: Int)

    func createBackfill(_ backfill: BackfillRecord) async throws
    func backfill(id: String) async throws -> BackfillRecord?
    func backfills(scheduleId: String) async throws -> [BackfillRecord]
    func updateBackfill(_ backfill: BackfillRecord) async throws
    func runningBackfills() async throws -> [BackfillRecord]

    func createTrigger(_ trigger: TriggerRecord) async throws
    func trigger(id: String) async throws -> TriggerRecord?
    func triggers(workflowId: String) async throws -> [TriggerRecord]
    /// Event triggers of an organization's live workflows for an event name.
    func eventTriggers(orgId: String, eventName: String) async throws -> [TriggerRecord]
    func deleteTrigger(id: String) async throws -> Bool
    /// Adds firings to triggers' counts and sets when they last fired.
    func triggersFired(_ counts: [String: (count: Int64, last: Date)]) async throws

    /// The executions an event id started, if it was published before.
    func event(orgId: String, eventId: String) async throws -> [String]?
    /// Forgets event ids published before `date`; returns how many.
    @discardableResult
    func purgeEvents(before date: Date) async throws -> Int
    /// Records an event id and the executions it started (first write wins).
    func recordEvent(orgId: String, eventId: String, name: String, executionIds: [String], at: Date) async throws
}
