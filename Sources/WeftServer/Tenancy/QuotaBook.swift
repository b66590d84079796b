import Foundation
import Synchronization
import WeftEngine
import WeftObservability
import WeftRPC
import WeftStore

/// Enforces the quotas of each organization's plan, before any work is done:
/// a refusal is RESOURCE_EXHAUSTED (HTTP 429) with `retry-after`.
///
/// - `concurrent_executions`: counted by the engine (`Engine.execute`'s `maxRunning`);
/// - `executions_per_day`: counted here per UTC day, seeded from the store
///   the first time an organization executes that day (so a restart keeps it);
/// - `workflows`: counted in the store at create;
/// - `requests_per_minute`: a token bucket per organization, charged for
///   every authenticated call of its members (`TenantRateLimiter`), by the
///   organization each caller acts in first (their own).
final class QuotaBook: Sendable {
    let plans: PlanBook
    let orgs: any OrganizationStore
    private let metrics: WeftMetrics
    private let state = Mutex(State())
    /// Some organization is on a plan that limits requests per minute
    /// (refreshed by `refreshPlansInUse`; true until first known). When
    /// none is, every call skips the limiter after one atomic load.
    private let rateLimited = Atomic<Bool>(true)

    private struct State {
        /// org id -> (UTC day number, executions started that day).
        var days: [String: (day: Int, count: Int)] = [:]
        /// org id -> token bucket.
        var buckets: [String: TokenBucket] = [:]
        /// user id -> the organization their calls are charged to, its rate,
        /// and when that was read (re-read after a minute: plans change).
        var homes: [String: (orgId: String, perMinute: Int, learned: Date)] = [:]
        /// Organizations read for quota checks, kept a minute (plans change rarely).
        var orgs: [String: (record: OrganizationRecord, read: Date)] = [:]
    }

    init(plans: PlanBook, orgs: any OrganizationStore, metrics: WeftMetrics) {
        self.plans = plans
        self.orgs = orgs
        self.metrics = metrics
        for quota in ["concurrent_executions", "executions_per_day", "workflows", "requests_per_minute"] {
            _ = metrics.counter(MetricNames.quotaRejections, help: Self.rejectionsHelp, labels: [("quota", quota)])
        }
    }

    func plan(of org: OrganizationRecord) -> Plan { plans.plan(named: org.plan) }

    /// An organization for a quota check: from memory when read in the last
    /// minute (an execute then costs no store read), else from the store.
    func organization(id: String, now: Date = Date()) async throws -> OrganizationRecord? {
        if let hit = state.withLock({ $0.orgs[id] }), now.timeIntervalSince(hit.read) < 60 { return hit.record }
        guard let record = try await orgs.organization(id: id) else { return nil }
        state.withLock { state in
            if state.orgs.count >= 10_000 { state.orgs.removeAll(keepingCapacity: true) }
            state.orgs[id] = (record, now)
        }
        return record
    }

    static let rejectionsHelp = "Calls refused because an organization reached a quota of its plan, by quota."

    func countRejection(_ quota: String) {
        metrics.counter(MetricNames.quotaRejections, help: Self.rejectionsHelp, labels: [("quota", quota)]).increment()
    }

    func refuse(_ quota: String, _ message: String, retryAfter seconds: Double) -> RPCError {
        countRejection(quota)
        return RPCError.exhausted(message, retryAfter: seconds)
    }

    static func day(_ date: Date) -> Int { Int(date.timeIntervalSince1970 / 86_400) }

    /// Counts one execution against today's quota, or refuses it. Call
    /// `unreserveExecution` if the execution does not start after all.
    func reserveExecution(_ org: OrganizationRecord, now: Date = Date()) async throws {
        let limit = plan(of: org).executionsPerDay
        guard limit > 0 else { return }
        let today = Self.day(now)
        if state.withLock({ $0.days[org.id]?.day != today }) {
            let seeded = try await orgs.executionCount(
                orgId: org.id, since: Date(timeIntervalSince1970: Double(today) * 86_400))
            state.withLock { state in
                if state.days[org.id]?.day != today { state.days[org.id] = (today, seeded) }
            }
        }
        let admitted = state.withLock { state -> Bool in
            guard let entry = state.days[org.id], entry.count < limit else { return false }
            state.days[org.id] = (entry.day, entry.count + 1)
            return true
        }
        guard admitted else {
            let midnight = Double(today + 1) * 86_400 - now.timeIntervalSince1970
            throw refuse(
                "executions_per_day",
                "organization \(org.id) started \(limit) executions today, its plan's executions_per_day quota (\(plan(of: org).name)); the count resets at 00:00 UTC",
                retryAfter: midnight)
        }
    }

    func unreserveExecution(_ org: OrganizationRecord) {
        state.withLock { state in
            if let entry = state.days[org.id], entry.count > 0 { state.days[org.id] = (entry.day, entry.count - 1) }
        }
    }

    /// Refuses a new workflow past the plan's `workflows` quota.
    func admitWorkflow(_ org: OrganizationRecord) async throws {
        let limit = plan(of: org).workflows
        guard limit > 0 else { return }
        let count = try await orgs.workflowCount(orgId: org.id)
        if count >= limit {
            throw refuse(
                "workflows", "organization \(org.id) has \(count) workflows, its plan's workflows quota; delete one first",
                retryAfter: 60)
        }
    }

    // MARK: Requests per minute

    /// Charges one call of `userId` to their organization's bucket, or
    /// refuses it. Unknown users (first call after a start) are looked up
    /// in the background and charged from then on.
    func admitRequest(userId: String) throws {
        guard rateLimited.load(ordering: .relaxed) else { return }
        let now = Date()
        let home = state.withLock { $0.homes[userId] }
        guard let home else {
            Task { await self.learnHome(userId) }
            return
        }
        if now.timeIntervalSince(home.learned) > 60 {
            // Charged as known until the re-read lands.
            state.withLock { $0.homes[userId]?.learned = now }
            Task { await self.learnHome(userId) }
        }
        guard home.perMinute > 0 else { return }
        let rate = Double(home.perMinute) / 60
        let burst = Self.burst(home.perMinute)
        let wait = state.withLock { state -> Double? in
            var bucket = state.buckets[home.orgId] ?? TokenBucket(tokens: burst, updated: now)
            defer { state.buckets[home.orgId] = bucket }
            return bucket.take(rate: rate, burst: burst, now: now)
        }
        if let wait {
            throw refuse(
                "requests_per_minute",
                "organization \(home.orgId) made \(home.perMinute) requests in the last minute, its plan's requests_per_minute quota",
                retryAfter: wait)
        }
    }

    /// The bucket's depth: ten seconds' worth (at least 10 calls), so a quota
    /// per minute cannot be spent in one burst that crowds out everyone else.
    static func burst(_ perMinute: Int) -> Double { max(10, Double(perMinute) / 6) }

    /// Looks at which plans organizations are on: the limiter runs only
    /// while one of them limits requests per minute. A plan change takes
    /// effect within one refresh (the sampler's interval).
    func refreshPlansInUse() async {
        guard let inUse = try? await orgs.plansInUse() else { return }
        // New organizations get the default plan: it counts as in use.
        let limited = inUse.union([plans.defaultPlan]).contains { plans.plan(named: $0).requestsPerMinute > 0 }
        rateLimited.store(limited, ordering: .relaxed)
    }

    /// Remembers which organization a user's calls are charged to.
    func learnHome(_ userId: String) async {
        guard let first = try? await orgs.memberships(userId: userId).first else { return }
        remember(userId: userId, org: first.1)
    }

    func remember(userId: String, org: OrganizationRecord) {
        let perMinute = plan(of: org).requestsPerMinute
        state.withLock { state in
            if state.homes.count >= 100_000 { state.homes.removeAll(keepingCapacity: true) }
            state.homes[userId] = (org.id, perMinute, Date())
        }
    }

    /// Tokens left in an organization's bucket now (usage: the calls of the
    /// last minute, about).
    func requestsUsed(_ org: OrganizationRecord, now: Date = Date()) -> Int64 {
        let perMinute = plan(of: org).requestsPerMinute
        guard perMinute > 0 else { return 0 }
        return state.withLock { state in
            guard let bucket = state.buckets[org.id] else { return 0 }
            let burst = Self.burst(perMinute)
            let tokens = min(burst, bucket.tokens + now.timeIntervalSince(bucket.updated) * Double(perMinute) / 60)
            // Calls charged within the bucket's window, scaled to a minute.
            return Int64(((burst - tokens) * Double(perMinute) / burst).rounded())
        }
    }

    /// Executions started today by the organizations counted since start.
    func executionsTodayByOrganization(now: Date = Date()) -> [String: Int] {
        let today = Self.day(now)
        return state.withLock { state in state.days.filter { $0.value.day == today }.mapValues(\.count) }
    }

    func executionsToday(_ org: OrganizationRecord, now: Date = Date()) async throws -> Int64 {
        let today = Self.day(now)
        if let entry = state.withLock({ $0.days[org.id] }), entry.day == today { return Int64(entry.count) }
        return Int64(try await orgs.executionCount(orgId: org.id, since: Date(timeIntervalSince1970: Double(today) * 86_400)))
    }
}

/// The interceptor that charges every authenticated call to its caller's
/// organization (`QuotaBook.admitRequest`). After authentication in the chain.
final class TenantRateLimiter: ServerInterceptor, Sendable {
    let quotas: QuotaBook

    init(quotas: QuotaBook) { self.quotas = quotas }

    var seesPublicMethods: Bool { false }

    func admit(_ call: inout CallHead) throws {
        guard let principal = call.principal else { return }
        try quotas.admitRequest(userId: principal.id)
    }
}
