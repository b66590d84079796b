public import Foundation

/// Whose executions a rollup query covers.
public enum RollupScope: Sendable, Hashable {
    /// These workflows.
    case workflows([String])
    /// The live workflows `userId` owns or collaborates on.
    case visibleTo(userId: String)
    /// Every workflow of an organization, from its own rollup (rows carry
    /// an empty workflow id and version 0).
    case organization(String)
}

public struct RollupQuery: Sendable, Hashable {
    public var scope: RollupScope
    /// Hours [from, to).
    public var from: RollupHour
    public var to: RollupHour
    public var version: Int?
    public var trigger: TriggerKind?
    public var status: ExecutionStatus?
    /// Only the duration histograms are wanted (trends, forecasts): the
    /// queue-wait and cost histograms are left empty, not decoded.
    public var durationsOnly: Bool
    /// Rows summed over the window's hours: one per workflow, version,
    /// trigger and status, named by `from` (statistics, insights and
    /// predictions do not look at hours).
    public var acrossHours: Bool
    /// For `hourlyTotals`: sum into these periods (each from its hour to
    /// the next one's; ascending, the first at `from`) instead of per hour.
    public var buckets: [RollupHour]?

    public init(
        scope: RollupScope, from: RollupHour, to: RollupHour, version: Int? = nil, trigger: TriggerKind? = nil,
        status: ExecutionStatus? = nil, durationsOnly: Bool = false, acrossHours: Bool = false, buckets: [RollupHour]? = nil
    ) {
        self.durationsOnly = durationsOnly
        self.acrossHours = acrossHours
        self.buckets = buckets
        self.scope = scope
        self.from = from
        self.to = to
        self.version = version
        self.trigger = trigger
        self.status = status
    }
}

/// One hour of a scope's finished executions, summed over its workflows,
/// versions and triggers: what trends and budget forecasts read.
public struct HourlyTotal: Sendable, Hashable {
    public var hour: RollupHour
    public var byStatus: [ExecutionStatus: Int64] = [:]
    public var executions: Int64 = 0
    public var costSum: Double = 0
    public var durations = LogHistogram()
    public var durationMsMax: Int64 = 0

    public init(hour: RollupHour) { self.hour = hour }

    public mutating func add(status: ExecutionStatus, _ rollup: ExecutionRollup) {
        byStatus[status, default: 0] += rollup.executions
        executions += rollup.executions
        costSum += rollup.costSum
        durations.merge(rollup.durations)
        durationMsMax = max(durationMsMax, rollup.durationMsMax)
    }

    /// Adds a stored row, its duration histogram read from its encoding.
    public mutating func add(status: ExecutionStatus, executions: Int64, cost: Double, longest: Int64, durations encoded: Data?) {
        byStatus[status, default: 0] += executions
        self.executions += executions
        costSum += cost
        durationMsMax = max(durationMsMax, longest)
        encoded?.withUnsafeBytes { _ = durations.merge(encoded: $0) }
    }

    /// Totals of rollup rows per hour (or per bucket, each named by its
    /// first hour), ascending.
    public static func of(_ rows: [(key: ExecutionRollupKey, value: ExecutionRollup)], buckets: [RollupHour]? = nil)
        -> [HourlyTotal]
    {
        var byHour: [RollupHour: HourlyTotal] = [:]
        for (key, value) in rows {
            guard let hour = bucket(of: key.hour, in: buckets) else { continue }
            byHour[hour, default: HourlyTotal(hour: hour)].add(status: key.status, value)
        }
        return byHour.values.sorted { $0.hour < $1.hour }
    }

    /// The bucket holding `hour`: itself without buckets, else the last
    /// bucket start at or before it (nil before the first).
    public static func bucket(of hour: RollupHour, in buckets: [RollupHour]?) -> RollupHour? {
        guard let buckets else { return hour }
        var low = 0
        var high = buckets.count
        while low < high {
            let mid = (low + high) / 2
            if buckets[mid] <= hour { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : buckets[low - 1]
    }
}

public enum BudgetScope: String, Sendable, Hashable, CaseIterable {
    case workflow
    case organization
}

/// A monthly cost limit of a workflow or an organization, and which alerts
/// it has sent this month.
public struct BudgetRecord: Sendable, Hashable {
    public var scope: BudgetScope
    /// The workflow or organization id.
    public var scopeId: String
    /// The organization it belongs to (a workflow's, or itself).
    public var orgId: String
    public var monthlyLimitUsd: Double
    /// IANA zone of the month's bounds.
    public var timeZone: String
    public var createdBy: String
    public var updatedAt: Date
    /// The month ("2026-12") of `alertLevel`.
    public var alertedMonth: String?
    /// The highest alert sent in `alertedMonth`: 1 forecast over, 2 over.
    public var alertLevel: Int

    public init(
        scope: BudgetScope, scopeId: String, orgId: String, monthlyLimitUsd: Double, timeZone: String, createdBy: String,
        updatedAt: Date, alertedMonth: String? = nil, alertLevel: Int = 0
    ) {
        self.scope = scope
        self.scopeId = scopeId
        self.orgId = orgId
        self.monthlyLimitUsd = monthlyLimitUsd
        self.timeZone = timeZone
        self.createdBy = createdBy
        self.updatedAt = updatedAt
        self.alertedMonth = alertedMonth
        self.alertLevel = alertLevel
    }
}

/// Rollups of finished executions (kept by `ExecutionStore.apply` in the
/// transaction of each final transition), budgets, and raw-execution
/// retention. See docs/ANALYTICS.md.
public protocol AnalyticsStore: Sendable {
    func executionRollups(_ query: RollupQuery) async throws -> [(key: ExecutionRollupKey, value: ExecutionRollup)]
    /// The same rows summed per hour, ascending (only the duration
    /// histogram is kept).
    func hourlyTotals(_ query: RollupQuery) async throws -> [HourlyTotal]
    /// `acrossHours`: one row per version and task, named by `from`.
    func taskRollups(workflowId: String, from: RollupHour, to: RollupHour, version: Int?, acrossHours: Bool) async throws
        -> [(key: TaskRollupKey, value: TaskRollup)]
    /// The live workflows `userId` owns or collaborates on.
    func visibleWorkflowCount(userId: String) async throws -> Int
    /// Executions of the workflow not finished yet.
    func unfinishedCount(workflowId: String) async throws -> Int
    /// Drops every rollup and folds every stored finished execution again;
    /// returns how many were folded.
    func rebuildRollups() async throws -> Int
    /// Deletes up to `limit` finished executions (with their task rows)
    /// that finished before `before`; rollups stay. Returns how many.
    func purgeExecutions(finishedBefore before: Date, limit: Int) async throws -> Int

    /// Creates or replaces; a replaced budget keeps its alert state when
    /// its limit did not change.
    func putBudget(_ budget: BudgetRecord) async throws -> BudgetRecord
    func budget(scope: BudgetScope, id: String) async throws -> BudgetRecord?
    /// False when there was none.
    func deleteBudget(scope: BudgetScope, id: String) async throws -> Bool
    func budgets() async throws -> [BudgetRecord]
    /// Records an alert sent about the budget as last set at `updatedAt`;
    /// false (nothing written) when one at this level or higher was already
    /// sent for the month (another check got there), or the budget changed
    /// since it was read (a new limit starts over).
    func markBudgetAlerted(scope: BudgetScope, id: String, month: String, level: Int, updatedAt: Date) async throws -> Bool
}

extension AnalyticsStore {
    public func hourlyTotals(_ query: RollupQuery) async throws -> [HourlyTotal] {
        var query = query
        query.durationsOnly = true
        return HourlyTotal.of(try await executionRollups(query), buckets: query.buckets)
    }
}
