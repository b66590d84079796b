public import Foundation

/// An hour of wall-clock time: hours since 1970-01-01T00:00Z. Rollups are
/// kept per UTC hour, the grain windows and trend periods are built from.
public struct RollupHour: Sendable, Hashable, Comparable {
    public var value: Int64

    public init(_ value: Int64) { self.value = value }

    /// The hour holding `date`.
    public init(containing date: Date) {
        value = Int64((date.timeIntervalSince1970 / 3600).rounded(.down))
    }

    public var start: Date { Date(timeIntervalSince1970: TimeInterval(value) * 3600) }
    public var next: RollupHour { RollupHour(value + 1) }

    public static func < (lhs: RollupHour, rhs: RollupHour) -> Bool { lhs.value < rhs.value }
}

/// Finished executions of one workflow version that started in one hour,
/// by trigger and final status.
public struct ExecutionRollupKey: Sendable, Hashable {
    public var workflowId: String
    public var version: Int
    public var hour: RollupHour
    public var trigger: TriggerKind
    public var status: ExecutionStatus

    public init(workflowId: String, version: Int, hour: RollupHour, trigger: TriggerKind, status: ExecutionStatus) {
        self.workflowId = workflowId
        self.version = version
        self.hour = hour
        self.trigger = trigger
        self.status = status
    }
}

/// The same, summed over an organization's workflows (its trends).
public struct OrganizationRollupKey: Sendable, Hashable {
    public var orgId: String
    public var hour: RollupHour
    public var trigger: TriggerKind
    public var status: ExecutionStatus

    public init(orgId: String, hour: RollupHour, trigger: TriggerKind, status: ExecutionStatus) {
        self.orgId = orgId
        self.hour = hour
        self.trigger = trigger
        self.status = status
    }
}

/// What a set of finished executions adds up to. Every field is a sum, a
/// maximum or a histogram, so two rollups merge exactly (`merge`).
public struct ExecutionRollup: Sendable, Hashable {
    public var executions: Int64 = 0
    /// Creation to final state, in milliseconds.
    public var durationMsSum: Double = 0
    public var durationMsSquares: Double = 0
    public var durationMsMax: Int64 = 0
    public var durations = LogHistogram()
    /// Critical-path queue wait, in milliseconds.
    public var waits = LogHistogram()
    public var costSum: Double = 0
    public var costMax: Double = 0
    /// Cost per execution in nano-dollars.
    public var costs = LogHistogram()
    /// Executions in which some task needed more than one attempt.
    public var retried: Int64 = 0
    public var attempts: Int64 = 0
    public var firstCreatedAt: Date?
    public var lastFinishedAt: Date?

    public init() {}

    public mutating func merge(_ other: ExecutionRollup) {
        executions += other.executions
        durationMsSum += other.durationMsSum
        durationMsSquares += other.durationMsSquares
        durationMsMax = max(durationMsMax, other.durationMsMax)
        durations.merge(other.durations)
        waits.merge(other.waits)
        costSum += other.costSum
        costMax = max(costMax, other.costMax)
        costs.merge(other.costs)
        retried += other.retried
        attempts += other.attempts
        firstCreatedAt = [firstCreatedAt, other.firstCreatedAt].compactMap { $0 }.min()
        lastFinishedAt = [lastFinishedAt, other.lastFinishedAt].compactMap { $0 }.max()
    }
}

/// One task (by key) of one workflow version, over executions that started
/// in one hour.
public struct TaskRollupKey: Sendable, Hashable {
    public var workflowId: String
    public var version: Int
    public var hour: RollupHour
    public var taskKey: String

    public init(workflowId: String, version: Int, hour: RollupHour, taskKey: String) {
        self.workflowId = workflowId
        self.version = version
        self.hour = hour
        self.taskKey = taskKey
    }
}

public struct TaskRollup: Sendable, Hashable {
    /// Tasks that ended Completed or Failed.
    public var runs: Int64 = 0
    public var failed: Int64 = 0
    /// Runs that took more than one attempt.
    public var retried: Int64 = 0
    /// Runs that completed after more than one attempt.
    public var flaky: Int64 = 0
    public var attempts: Int64 = 0
    /// First start to end, milliseconds.
    public var durationMsSum: Double = 0
    public var durationMsMax: Int64 = 0
    public var durations = LogHistogram()
    public var costSum: Double = 0
    /// Executions in which the task was on the critical path, and the
    /// milliseconds it added there (its wait and run).
    public var criticalRuns: Int64 = 0
    public var criticalMsSum: Double = 0
    /// The last error of runs that were retried or failed, by message.
    public var errors: [String: Int64] = [:]

    public init() {}

    /// Distinct messages kept per row; the rest count under `otherErrors`.
    public static let maxErrors = 8
    public static let otherErrors = "(other messages)"

    /// `cappedErrors`: false when reading (a window's rows merged for an
    /// answer keep every message they hold; the answer takes the top ones).
    public mutating func merge(_ other: TaskRollup, cappedErrors: Bool = true) {
        runs += other.runs
        failed += other.failed
        retried += other.retried
        flaky += other.flaky
        attempts += other.attempts
        durationMsSum += other.durationMsSum
        durationMsMax = max(durationMsMax, other.durationMsMax)
        durations.merge(other.durations)
        costSum += other.costSum
        criticalRuns += other.criticalRuns
        criticalMsSum += other.criticalMsSum
        for (message, count) in other.errors.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
            addError(message, count: count, capped: cappedErrors)
        }
    }

    /// `errors` as stored: a line "<count> <message>" each, the message's
    /// backslashes and line breaks escaped. Cheap to read back by the
    /// thousand (a JSON decoder was half the time of a statistics call).
    public static func errorsText(_ errors: [String: Int64]) -> String {
        errors.sorted { $0.key < $1.key }.map { message, count in
            let escaped = message.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
                .replacingOccurrences(of: "\r", with: "\\r")
            return "\(count) \(escaped)\n"
        }.joined()
    }

    /// Reads `errorsText` into `errors` (through `addError`); lines that
    /// do not parse are skipped.
    public mutating func addErrors(text: String, capped: Bool = true) {
        // Bytes, not Characters: a window's task rows are read by the
        // thousand.
        var text = text
        text.withUTF8 { bytes in
            var position = 0
            while position < bytes.count {
                var end = position
                while end < bytes.count && bytes[end] != 10 { end += 1 }
                defer { position = end + 1 }
                var space = position
                var count: Int64 = 0
                while space < end && bytes[space] >= 48 && bytes[space] <= 57 && count < Int64.max / 10 {
                    count = count * 10 + Int64(bytes[space] - 48)
                    space += 1
                }
                guard space > position, space < end, bytes[space] == 32, count > 0 else { continue }
                let body = UnsafeBufferPointer(rebasing: bytes[(space + 1)..<end])
                let message: String
                if !body.contains(92) {
                    message = String(decoding: body, as: UTF8.self)
                } else {
                    var unescaped: [UInt8] = []
                    unescaped.reserveCapacity(body.count)
                    var escaping = false
                    for byte in body {
                        if escaping {
                            unescaped.append(byte == 110 ? 10 : byte == 114 ? 13 : byte)
                            escaping = false
                        } else if byte == 92 {
                            escaping = true
                        } else {
                            unescaped.append(byte)
                        }
                    }
                    message = String(decoding: unescaped, as: UTF8.self)
                }
                addError(message, count: count, capped: capped)
            }
        }
    }

    /// Keeps `maxErrors` distinct messages (not counting `otherErrors`)
    /// when `capped`; the rest count under `otherErrors`.
    public mutating func addError(_ message: String, count: Int64 = 1, capped: Bool = true) {
        let distinct = errors.count - (errors[Self.otherErrors] == nil ? 0 : 1)
        if !capped || message == Self.otherErrors || errors[message] != nil || distinct < Self.maxErrors {
            errors[message, default: 0] += count
        } else {
            errors[Self.otherErrors, default: 0] += count
        }
    }
}

/// Everything one finished execution adds to the rollups.
public struct RollupContribution: Sendable {
    public var execution: (key: ExecutionRollupKey, value: ExecutionRollup)
    public var orgId: String
    public var tasks: [(key: TaskRollupKey, value: TaskRollup)]
}

/// Folds a finished execution into rollup rows: the one rule both the live
/// path (the store, in the transaction of the final transition) and the
/// rebuild use, so a rebuilt rollup equals the one kept live.
public enum RollupFold {
    /// Longest error message kept (the start of it).
    static let errorLength = 200

    /// `dependsOn`: each task key's dependencies (task keys), for the
    /// critical path. Nil for an execution that is not finished.
    public static func contribution(
        of execution: ExecutionRecord, orgId: String, dependsOn: [String: [String]]
    ) -> RollupContribution? {
        guard execution.status.isFinished, let completed = execution.completedAt else { return nil }
        let hour = RollupHour(containing: execution.createdAt)
        var rollup = ExecutionRollup()
        rollup.executions = 1
        let durationMs = milliseconds(completed.timeIntervalSince(execution.createdAt))
        rollup.durationMsSum = Double(durationMs)
        rollup.durationMsSquares = Double(durationMs) * Double(durationMs)
        rollup.durationMsMax = durationMs
        rollup.durations.record(durationMs)
        let cost = execution.cost
        rollup.costSum = cost
        rollup.costMax = cost
        rollup.costs.record(nanoDollars(cost))
        rollup.attempts = Int64(execution.tasks.reduce(0) { $0 + $1.attempt })
        rollup.retried = execution.tasks.contains { $0.attempt > 1 } ? 1 : 0
        rollup.firstCreatedAt = execution.createdAt
        rollup.lastFinishedAt = completed

        let path = criticalPath(execution, dependsOn: dependsOn)
        rollup.waits.record(path.reduce(0) { $0 + $1.waitMs })
        let onPath = Dictionary(path.map { ($0.key, $0.contributionMs) }, uniquingKeysWith: +)

        var tasks: [(TaskRollupKey, TaskRollup)] = []
        for task in execution.tasks {
            var row = TaskRollup()
            row.costSum = task.cost
            if task.status == .completed || task.status == .failed {
                row.runs = 1
                row.attempts = Int64(task.attempt)
                if task.status == .failed { row.failed = 1 }
                if task.attempt > 1 {
                    row.retried = 1
                    if task.status == .completed { row.flaky = 1 }
                }
                if let started = task.startedAt, let ended = task.completedAt {
                    let ms = milliseconds(ended.timeIntervalSince(started))
                    row.durationMsSum = Double(ms)
                    row.durationMsMax = ms
                    row.durations.record(ms)
                }
                if let error = task.error, task.attempt > 1 || task.status == .failed {
                    row.addError(String(error.prefix(errorLength)))
                }
            }
            if let contribution = onPath[task.taskKey] {
                row.criticalRuns = 1
                row.criticalMsSum = Double(contribution)
            }
            guard row.runs > 0 || row.costSum > 0 || row.criticalRuns > 0 else { continue }
            tasks.append((TaskRollupKey(workflowId: execution.workflowId, version: execution.workflowVersion, hour: hour,
                                        taskKey: task.taskKey), row))
        }
        let key = ExecutionRollupKey(
            workflowId: execution.workflowId, version: execution.workflowVersion, hour: hour, trigger: execution.trigger,
            status: execution.status)
        return RollupContribution(execution: (key, rollup), orgId: orgId, tasks: tasks)
    }

    /// A step of the critical path: the task, how long it waited to start
    /// after it became ready, and what it added (wait and run).
    public struct PathStep: Sendable, Hashable {
        public var key: String
        public var waitMs: Int64
        public var contributionMs: Int64
    }

    /// From the task that completed last, back through the dependency that
    /// completed last, to a task with none: the chain that set the
    /// execution's length. Tasks that never started are not on it.
    public static func criticalPath(_ execution: ExecutionRecord, dependsOn: [String: [String]]) -> [PathStep] {
        let byKey = Dictionary(execution.tasks.map { ($0.taskKey, $0) }, uniquingKeysWith: { first, _ in first })
        let ran = execution.tasks.filter { $0.startedAt != nil && $0.completedAt != nil }
        guard var current = ran.max(by: { ($0.completedAt!, $0.taskKey) < ($1.completedAt!, $1.taskKey) }) else { return [] }
        var steps: [PathStep] = []
        var visited: Set<String> = []
        while visited.insert(current.taskKey).inserted {
            let gate = (dependsOn[current.taskKey] ?? [])
                .compactMap { byKey[$0] }
                .filter { $0.completedAt != nil && $0.startedAt != nil }
                .max { ($0.completedAt!, $0.taskKey) < ($1.completedAt!, $1.taskKey) }
            let ready = gate?.completedAt ?? execution.createdAt
            let started = current.startedAt!
            let waitMs = max(0, milliseconds(started.timeIntervalSince(ready)))
            let contribution = max(0, milliseconds(current.completedAt!.timeIntervalSince(ready)))
            steps.append(PathStep(key: current.taskKey, waitMs: waitMs, contributionMs: contribution))
            guard let gate else { break }
            current = gate
        }
        return steps
    }

    public static func milliseconds(_ interval: TimeInterval) -> Int64 {
        guard interval.isFinite, interval > 0 else { return 0 }
        return Int64((interval * 1000).rounded())
    }

    public static func nanoDollars(_ dollars: Double) -> Int64 {
        guard dollars.isFinite, dollars > 0 else { return 0 }
        return Int64(min((dollars * 1e9).rounded(), 9e18))
    }
}

/// A batch of rollup changes, summed in memory so a group commit writes
/// each touched row once.
public struct RollupBatch: Sendable {
    public var executions: [ExecutionRollupKey: ExecutionRollup] = [:]
    public var organizations: [OrganizationRollupKey: ExecutionRollup] = [:]
    public var tasks: [TaskRollupKey: TaskRollup] = [:]
    /// Executions folded (not late cost changes).
    public var folded = 0
    /// The organization of each workflow in the batch (its rows carry it).
    public var orgs: [String: String] = [:]

    public init() {}

    public var isEmpty: Bool { executions.isEmpty && organizations.isEmpty && tasks.isEmpty }

    public mutating func add(_ contribution: RollupContribution) {
        let (key, value) = contribution.execution
        executions[key, default: ExecutionRollup()].merge(value)
        organizations[
            OrganizationRollupKey(orgId: contribution.orgId, hour: key.hour, trigger: key.trigger, status: key.status),
            default: ExecutionRollup()
        ].merge(value)
        for (taskKey, row) in contribution.tasks { tasks[taskKey, default: TaskRollup()].merge(row) }
        folded += value.executions > 0 ? 1 : 0
        orgs[key.workflowId] = contribution.orgId
    }

    public mutating func merge(_ other: RollupBatch) {
        for (key, value) in other.executions { executions[key, default: ExecutionRollup()].merge(value) }
        for (key, value) in other.organizations { organizations[key, default: ExecutionRollup()].merge(value) }
        for (key, value) in other.tasks { tasks[key, default: TaskRollup()].merge(value) }
        folded += other.folded
        orgs.merge(other.orgs) { _, new in new }
    }

    /// Cost added to an execution that had already finished (what a stopped
    /// attempt sent, charged late): sums only, its histogram stays.
    public mutating func addLateCost(_ dollars: Double, execution key: ExecutionRollupKey, orgId: String) {
        var rollup = ExecutionRollup()
        rollup.costSum = dollars
        orgs[key.workflowId] = orgId
        executions[key, default: ExecutionRollup()].merge(rollup)
        organizations[
            OrganizationRollupKey(orgId: orgId, hour: key.hour, trigger: key.trigger, status: key.status),
            default: ExecutionRollup()
        ].merge(rollup)
    }

    /// The same for one task's share.
    public mutating func addLateCost(_ dollars: Double, task key: TaskRollupKey) {
        var task = TaskRollup()
        task.costSum = dollars
        tasks[key, default: TaskRollup()].merge(task)
    }
}
