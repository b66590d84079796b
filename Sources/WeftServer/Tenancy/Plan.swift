import Foundation

/// What an organization may use. A limit of 0 means no limit.
public struct Plan: Sendable, Hashable {
    public var name: String
    /// Executions running (started, not finished) at once.
    public var concurrentExecutions = 0
    /// Executions started per UTC day.
    public var executionsPerDay = 0
    /// Live workflows.
    public var workflows = 0
    /// Cron schedules of the organization's live workflows (CreateSchedule).
    public var schedules = 0
    /// Execution log bytes kept (reported; enforced with log retention later).
    public var logBytes: Int64 = 0
    /// Authenticated API calls per minute, by the members of the organization.
    public var requestsPerMinute = 0

    public init(name: String) { self.name = name }

    /// The quota names, as the API, the flags and the metrics spell them.
    public static let quotaNames = [
        "concurrent_executions", "executions_per_day", "workflows", "schedules", "log_bytes", "requests_per_minute",
    ]

    public func limit(_ quota: String) -> Int64 {
        switch quota {
        case "concurrent_executions": Int64(concurrentExecutions)
        case "executions_per_day": Int64(executionsPerDay)
        case "workflows": Int64(workflows)
        case "schedules": Int64(schedules)
        case "log_bytes": logBytes
        case "requests_per_minute": Int64(requestsPerMinute)
        default: 0
        }
    }

    mutating func set(_ quota: String, _ value: Int64) throws(PlanError) {
        guard value >= 0 else { throw PlanError("\(quota) must be 0 (no limit) or more, got \(value)") }
        let small = Int(clamping: value)
        switch quota {
        case "concurrent_executions": concurrentExecutions = small
        case "executions_per_day": executionsPerDay = small
        case "workflows": workflows = small
        case "schedules": schedules = small
        case "log_bytes": logBytes = value
        case "requests_per_minute": requestsPerMinute = small
        default: throw PlanError("unknown quota \"\(quota)\"; quotas: \(Self.quotaNames.joined(separator: ", "))")
        }
    }
}

public struct PlanError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The plans a server offers and the one new organizations get.
public struct PlanBook: Sendable {
    public private(set) var plans: [String: Plan]
    /// Given to organizations created at registration (and to those made
    /// before plans existed).
    public var defaultPlan: String

    /// free, team and enterprise (no limits), enterprise the default: a
    /// server run for one team limits nobody until its operator says so.
    public init() {
        var free = Plan(name: "free")
        free.concurrentExecutions = 10
        free.executionsPerDay = 1_000
        free.workflows = 20
        free.schedules = 5
        free.logBytes = 100 << 20
        free.requestsPerMinute = 600
        var team = Plan(name: "team")
        team.concurrentExecutions = 200
        team.executionsPerDay = 100_000
        team.workflows = 1_000
        team.schedules = 200
        team.logBytes = 10 << 30
        team.requestsPerMinute = 6_000
        plans = ["free": free, "team": team, "enterprise": Plan(name: "enterprise")]
        defaultPlan = "enterprise"
    }

    /// The plan of an organization ("" is the default plan; an unknown name
    /// falls back to it too, so removing a plan from the flags never
    /// leaves an organization without quotas it can read).
    public func plan(named name: String) -> Plan {
        plans[name] ?? plans[defaultPlan] ?? Plan(name: defaultPlan)
    }

    /// Applies `NAME:quota=value,quota=value` (a new plan starts with no limits).
    public mutating func apply(_ spec: String) throws(PlanError) {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, Self.isName(parts[0]) else {
            throw PlanError("expected NAME:quota=value[,quota=value...], got \"\(spec)\"")
        }
        var plan = plans[parts[0]] ?? Plan(name: parts[0])
        for pair in parts[1].split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let value = Int64(kv[1]) else {
                throw PlanError("expected quota=value in \"\(pair)\"")
            }
            try plan.set(kv[0], value)
        }
        plans[plan.name] = plan
    }

    public mutating func setDefault(_ name: String) throws(PlanError) {
        guard plans[name] != nil else {
            throw PlanError("no plan \"\(name)\"; plans: \(plans.keys.sorted().joined(separator: ", "))")
        }
        defaultPlan = name
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 32
            && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-".unicodeScalars.contains($0)) }
    }
}
