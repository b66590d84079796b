public import Foundation
import Synchronization

/// How hard the dispatcher tries: attempts, backoff with jitter, and the
/// per-destination circuit breaker and rate limit.
public struct DeliveryPolicy: Sendable {
    /// Attempts before a notification is dead-lettered.
    public var maxAttempts = 8
    /// The first retry waits about this long; each later one twice as long.
    public var baseBackoff: TimeInterval = 1
    public var maxBackoff: TimeInterval = 300
    /// Consecutive failures that open a destination's circuit, and how long
    /// it stays open before one trial delivery is let through.
    public var breakerThreshold = 5
    public var breakerCooldown: TimeInterval = 30
    /// Deliveries per second to one destination, and the burst above it.
    public var ratePerSecond: Double = 200
    public var burst: Double = 400
    /// One reply's time limit (an HTTP answer, each SMTP reply).
    public var attemptTimeout: TimeInterval = 10
    /// A whole attempt's (an SMTP session: connect, TLS, every command).
    public var attemptDeadline: TimeInterval = 30
    /// A rate-limit wait longer than this gives the slot back (the row is
    /// deferred) instead of holding it.
    public var maxRateWait: TimeInterval = 0.05
    /// Deliveries in flight at once.
    public var concurrency = 256

    public init() {}

    /// The wait before attempt `attempt + 1` after `attempt` failed:
    /// exponential, capped, with "equal jitter" (half fixed, half random),
    /// so receivers that come back are not hit by every sender at once.
    func backoff(afterAttempt attempt: Int, random: Double = Double.random(in: 0..<1)) -> TimeInterval {
        let exponent = min(max(attempt - 1, 0), 30)
        let full = min(maxBackoff, baseBackoff * pow(2, Double(exponent)))
        return full / 2 + full / 2 * random
    }
}

/// Per-destination circuit breakers: after `threshold` failures in a row a
/// destination is skipped (its deliveries wait, no attempt is spent) until
/// the cooldown ends; then one trial goes through and its outcome closes
/// or re-opens the circuit.
final class CircuitBreakers: Sendable {
    private struct Circuit {
        var failures = 0
        var openUntil: Date?
        var trialInFlight = false
    }

    private let circuits = Mutex<[String: Circuit]>([:])
    let threshold: Int
    let cooldown: TimeInterval

    init(threshold: Int, cooldown: TimeInterval) {
        self.threshold = threshold
        self.cooldown = cooldown
    }

    /// nil: go ahead; else the time to try again.
    func admit(_ destination: String, now: Date) -> Date? {
        circuits.withLock { circuits in
            guard var circuit = circuits[destination], let until = circuit.openUntil else { return nil }
            if now < until { return until }
            if circuit.trialInFlight { return now.addingTimeInterval(1) }
            circuit.trialInFlight = true
            circuits[destination] = circuit
            return nil
        }
    }

    func succeeded(_ destination: String) {
        circuits.withLock { $0[destination] = nil }
    }

    /// An attempt ended without saying anything about the destination (a
    /// permanent refusal of that message, a skip): a trial slot is freed.
    func settled(_ destination: String) {
        circuits.withLock { circuits in
            guard circuits[destination]?.trialInFlight == true else { return }
            circuits[destination]?.trialInFlight = false
        }
    }

    /// Returns true when this failure opened the circuit.
    func failed(_ destination: String, now: Date) -> Bool {
        circuits.withLock { circuits in
            var circuit = circuits[destination] ?? Circuit()
            circuit.failures += 1
            let wasOpen = circuit.openUntil != nil
            circuit.trialInFlight = false
            var opened = false
            if circuit.failures >= threshold {
                circuit.openUntil = now.addingTimeInterval(cooldown)
                opened = !wasOpen
            }
            circuits[destination] = circuit
            // Destinations that failed and were never heard of again.
            if circuits.count > 10_000 {
                circuits = circuits.filter { ($0.value.openUntil ?? .distantPast) > now.addingTimeInterval(-3600) }
            }
            return opened
        }
    }
}

/// Token buckets per destination: deliveries beyond the rate wait for a
/// token instead of flooding a receiver after an outage.
final class DestinationRateLimiter: Sendable {
    private struct Bucket {
        var tokens: Double
        var at: Date
    }

    private let buckets = Mutex<[String: Bucket]>([:])
    let rate: Double
    let burst: Double

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
    }

    /// Takes a token; returns how long to wait first (0: none).
    func take(_ destination: String, now: Date) -> TimeInterval {
        buckets.withLock { buckets in
            var bucket = buckets[destination] ?? Bucket(tokens: burst, at: now)
            bucket.tokens = min(burst, bucket.tokens + now.timeIntervalSince(bucket.at) * rate)
            bucket.at = now
            bucket.tokens -= 1
            buckets[destination] = bucket
            // Buckets idle for a minute are full again: forget them.
            if buckets.count > 10_000 { buckets = buckets.filter { now.timeIntervalSince($0.value.at) < 60 } }
            return bucket.tokens >= 0 ? 0 : -bucket.tokens / rate
        }
    }
}
