import Foundation
import Synchronization
import WeftEngine
import WeftObservability
import WeftRPC

/// A token bucket: `rate` tokens a second up to `burst`.
struct TokenBucket: Sendable {
    var tokens: Double
    var updated: Date

    /// Takes one token, or says how many seconds until one is there.
    mutating func take(rate: Double, burst: Double, now: Date) -> Double? {
        tokens = min(burst, tokens + max(0, now.timeIntervalSince(updated)) * rate)
        updated = now
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return (1 - tokens) / rate
    }
}

/// Request rate limits by route class, configured in one place
/// (`--rate-limit CLASS=N/s[:BURST]`): every call is charged to its
/// credential (API key, else user) and to its client address.
public struct RateLimitSettings: Sendable, Equatable {
    public enum RouteClass: String, CaseIterable, Sendable {
        /// Register, login, refresh: per client address only (no caller yet).
        case auth
        /// Read-only methods.
        case read
        /// Other writes.
        case write
        /// ExecuteWorkflow.
        case execute
    }

    public struct Limit: Sendable, Equatable {
        public var perSecond: Double
        public var burst: Double
    }

    public var limits: [RouteClass: Limit] = [.auth: Limit(perSecond: 20, burst: 40)]

    public init() {}

    /// Applies `CLASS=N/s[:BURST]` or `CLASS=off`.
    public mutating func apply(_ text: String) throws {
        let parts = text.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let routeClass = RouteClass(rawValue: parts[0]) else {
            throw WeftStartupError(
                "--rate-limit \(text): expected CLASS=N/s[:BURST] or CLASS=off, CLASS one of \(RouteClass.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if parts[1] == "off" {
            limits[routeClass] = nil
            return
        }
        let spec = parts[1].split(separator: ":", maxSplits: 1)
        guard let first = spec.first, first.hasSuffix("/s"), let rate = Double(first.dropLast(2)), rate > 0, rate.isFinite else {
            throw WeftStartupError("--rate-limit \(text): the rate must look like 20/s (a positive number of calls a second)")
        }
        var burst = max(1, rate)
        if spec.count == 2 {
            guard let value = Double(spec[1]), value >= 1, value.isFinite else {
                throw WeftStartupError("--rate-limit \(text): the burst must be a number of calls, at least 1")
            }
            burst = value
        }
        limits[routeClass] = Limit(perSecond: rate, burst: burst)
    }

    public var description: String {
        RouteClass.allCases.map { routeClass in
            guard let limit = limits[routeClass] else { return "\(routeClass.rawValue)=off" }
            return "\(routeClass.rawValue)=\(Self.number(limit.perSecond))/s:\(Self.number(limit.burst))"
        }.joined(separator: ",")
    }

    private static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// The rate-limit stage of the interceptor chain (after authentication):
/// token buckets per (route class, credential) and per (route class,
/// client address); past either, RESOURCE_EXHAUSTED / 429 with
/// `retry-after`. Buckets are forgotten when full again (idle callers
/// cost no memory after a while).
final class RateLimiter: ServerInterceptor, Sendable {
    private let settings: RateLimitSettings
    private let metrics: WeftMetrics
    private let buckets = Mutex<[String: TokenBucket]>([:])
    private let anyLimit: Bool
    private let sweepEvery = 10_000
    private let calls = Atomic<Int>(0)

    init(settings: RateLimitSettings, metrics: WeftMetrics) {
        self.settings = settings
        self.metrics = metrics
        anyLimit = !settings.limits.isEmpty
        for routeClass in RateLimitSettings.RouteClass.allCases {
            for scope in ["key", "user", "address"] {
                _ = metrics.counter(
                    MetricNames.rateLimited, help: Self.help, labels: [("class", routeClass.rawValue), ("scope", scope)])
            }
        }
    }

    private static let help = "Calls refused by a rate limit, by route class and by what the limit counts (key, user, address)."

    /// Health, reflection: never limited (the chain skips them).
    var seesPublicMethods: Bool { false }
    /// Register, login, refresh; and webhook deliveries (public, limited
    /// as execute calls).
    var seesAuthMethods: Bool { settings.limits[.auth] != nil || settings.limits[.execute] != nil }
    var seesAuthenticatedMethods: Bool { settings.limits.keys.contains { $0 != .auth } }

    static func routeClass(of call: CallHead) -> RateLimitSettings.RouteClass {
        if call.descriptor.method == "ExecuteWorkflow" || call.descriptor.method == "DeliverWebhook" { return .execute }
        if call.access == .publicAuth { return .auth }
        return call.descriptor.isReadOnly ? .read : .write
    }

    func admit(_ call: inout CallHead) throws {
        guard anyLimit else { return }
        let routeClass = Self.routeClass(of: call)
        guard let limit = settings.limits[routeClass] else { return }
        let now = Date()
        let address = ClientAddress.host(of: call.peer)
        var charges: [(key: String, scope: String)] = [("\(routeClass.rawValue)|a|\(address)", "address")]
        if let principal = call.principal {
            // A key is charged to itself and to its user: N keys are not N times the user's rate.
            if let key = principal.limits?.credentialId { charges.append(("\(routeClass.rawValue)|k|\(key)", "key")) }
            charges.append(("\(routeClass.rawValue)|u|\(principal.id)", "user"))
        }
        let refused = buckets.withLock { buckets -> (scope: String, wait: Double)? in
            // Check all first, then take: a refused call spends nothing.
            var updated: [(String, TokenBucket)] = []
            for charge in charges {
                var bucket = buckets[charge.key] ?? TokenBucket(tokens: limit.burst, updated: now)
                if let wait = bucket.take(rate: limit.perSecond, burst: limit.burst, now: now) {
                    return (charge.scope, wait)
                }
                updated.append((charge.key, bucket))
            }
            for (key, bucket) in updated { buckets[key] = bucket }
            return nil
        }
        if calls.wrappingAdd(1, ordering: .relaxed).newValue % sweepEvery == 0 { sweep(limit: settings, now: now) }
        if let refused {
            if call.descriptor.method == "DeliverWebhook" {
                // Counted with the webhook's other refusals (the handler never runs).
                metrics.counter(MetricNames.webhookRequests, help: SchedulerMetrics.webhookHelp, labels: [("outcome", "refused")])
                    .increment()
            }
            metrics.counter(
                MetricNames.rateLimited, help: Self.help, labels: [("class", routeClass.rawValue), ("scope", refused.scope)]
            ).increment()
            let what = refused.scope == "address" ? "this client address" : refused.scope == "key" ? "this API key" : "this user"
            throw RPCError.exhausted(
                "rate limit: \(what) may make \(Int(limit.perSecond)) \(routeClass.rawValue) calls a second (burst \(Int(limit.burst)))",
                retryAfter: refused.wait)
        }
    }

    /// Drops buckets that have refilled (they start full anyway).
    private func sweep(limit settings: RateLimitSettings, now: Date) {
        buckets.withLock { buckets in
            buckets = buckets.filter { key, bucket in
                guard let name = key.split(separator: "|").first, let routeClass = RateLimitSettings.RouteClass(rawValue: String(name)),
                    let limit = settings.limits[routeClass]
                else { return false }
                return bucket.tokens + now.timeIntervalSince(bucket.updated) * limit.perSecond < limit.burst
            }
        }
    }
}

/// The client's IP address out of a NIO peer description
/// ("[IPv4]127.0.0.1/127.0.0.1:54321").
enum ClientAddress {
    static func host(of peer: String) -> String {
        var text = Substring(peer)
        if let close = text.firstIndex(of: "]") { text = text[text.index(after: close)...] }
        if let slash = text.firstIndex(of: "/") { text = text[..<slash] }
        return String(text)
    }
}

/// Failed logins, counted per account and per client address in a sliding
/// window. Past a limit the next attempts are refused before any hashing
/// (RESOURCE_EXHAUSTED / 429) with a `retry-after` that doubles with every
/// further failure, up to the window. Unknown emails are counted exactly
/// like known ones, so the limit reveals nothing about which exist.
final class LoginLimiter: Sendable {
    struct Settings: Sendable, Equatable {
        var perAccount = 5
        var perAddress = 20
        /// The window and the longest wait.
        var window: TimeInterval = 15 * 60
        /// The first wait past the limit.
        var baseDelay: TimeInterval = 1
    }

    private struct Record {
        var failures: [Date] = []
        /// Failures past the limit so far (doubles the wait each time).
        var strikes = 0
        var blockedUntil: Date?
    }

    private let settings: Settings
    private let metrics: WeftMetrics
    private let records = Mutex<[String: Record]>([:])

    init(settings: Settings, metrics: WeftMetrics) {
        self.settings = settings
        self.metrics = metrics
        for scope in ["account", "address"] {
            _ = metrics.counter(MetricNames.loginsLimited, help: Self.help, labels: [("scope", scope)])
        }
    }

    private static let help = "Login attempts refused because of earlier failed logins, by account or client address."

    /// Throws RESOURCE_EXHAUSTED when either the account or the address is
    /// blocked now.
    func check(email: String, address: String, now: Date = Date()) throws {
        let blocked = records.withLock { records -> (String, Date)? in
            for (key, scope) in [("a|" + email.lowercased(), "account"), ("i|" + address, "address")] {
                if let until = records[key]?.blockedUntil, until > now { return (scope, until) }
            }
            return nil
        }
        guard let (scope, until) = blocked else { return }
        metrics.counter(MetricNames.loginsLimited, help: Self.help, labels: [("scope", scope)]).increment()
        throw RPCError.exhausted(
            "too many failed logins from this \(scope == "account" ? "account" : "address"); wait before trying again",
            retryAfter: until.timeIntervalSince(now))
    }

    func failed(email: String, address: String, now: Date = Date()) {
        records.withLock { records in
            note(&records, key: "a|" + email.lowercased(), limit: settings.perAccount, now: now)
            note(&records, key: "i|" + address, limit: settings.perAddress, now: now)
            if records.count > 100_000 {
                let horizon = now.addingTimeInterval(-settings.window)
                records = records.filter { ($0.value.failures.last ?? .distantPast) > horizon }
            }
        }
    }

    func succeeded(email: String) {
        records.withLock { _ = $0.removeValue(forKey: "a|" + email.lowercased()) }
    }

    private func note(_ records: inout [String: Record], key: String, limit: Int, now: Date) {
        var record = records[key] ?? Record()
        let horizon = now.addingTimeInterval(-settings.window)
        record.failures = record.failures.filter { $0 > horizon }
        record.failures.append(now)
        if record.failures.count >= limit {
            let wait = min(settings.window, settings.baseDelay * pow(2, Double(record.strikes)))
            record.strikes += 1
            record.blockedUntil = now.addingTimeInterval(wait)
        } else if record.failures.count == 1 {
            record.strikes = 0
        }
        records[key] = record
    }
}
