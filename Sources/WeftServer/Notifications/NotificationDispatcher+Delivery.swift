import Foundation
import Logging
import NIOCore
import Synchronization
import Tracing
import WeftEngine
import WeftObservability
import WeftStore

/// One delivery: its attempt, its outcome, what the breaker and rate
/// limit make of it.
extension NotificationDispatcher {
    // MARK: One delivery

    /// What one attempt came to.
    enum Result {
        case delivered(status: Int, detail: String)
        /// `permanent`: retrying cannot help (a 4xx, a bad address).
        case failed(status: Int, detail: String, permanent: Bool)
        /// The egress guard or a broken configuration: dead at once.
        case refused(String)
        /// Moot (a deadline met, a subscription deleted).
        case skipped(reason: String, detail: String)
    }

    func deliver(_ record: DeliveryRecord) async {
        let entry = record.entry
        let attempt = record.attempts + 1
        let span = WeftTracing.startChild(
            SpanNames.notificationDelivery, context: WeftTracing.context(from: TraceHeaders(traceparent: entry.traceparent)),
            kind: .client)
        span?.attributes[SpanKeys.notificationEvent] = entry.event.rawValue
        span?.attributes[SpanKeys.notificationChannel] = entry.channel.rawValue
        span?.attributes[SpanKeys.notificationDeliveryId] = entry.deliveryId
        span?.attributes[SpanKeys.notificationAttempt] = attempt
        span?.attributes[SpanKeys.workflowId] = entry.workflowId
        if !entry.executionId.isEmpty { span?.attributes[SpanKeys.executionId] = entry.executionId }
        defer { span?.end() }
        let started = Date()
        var destination = ""
        var secretURL: String?
        let result: Result
        do {
            let target = try await resolve(entry)
            destination = target.key
            if case .webhook(let url, _) = target { secretURL = url }
            if case .slack(let url, _) = target { secretURL = url }
            func deferred(until: Date) {
                span?.attributes[SpanKeys.notificationOutcome] = "deferred"
                note(DeliveryOutcome(
                    rowId: record.rowId,
                    attempt: DeliveryAttemptRecord(attempt: attempt, at: started, outcome: DeliveryAttemptRecord.deferred),
                    state: .pending, nextAttemptAt: until))
            }
            if target.isGuarded {
                if let until = breakers.admit(destination, now: started) {
                    return deferred(until: until.addingTimeInterval(Double.random(in: 0..<1)))
                }
                let wait = limiter.take(destination, now: started)
                if wait > settings.policy.maxRateWait {
                    // The slot goes to other destinations meanwhile.
                    breakers.settled(destination)
                    return deferred(until: started.addingTimeInterval(wait))
                }
                if wait > 0 { try? await Task.sleep(for: .milliseconds(Int64(wait * 1000))) }
            }
            let deadline = settings.policy.attemptDeadline
            result = try await Self.within(seconds: deadline) {
                try await self.send(entry, target: target, attempt: attempt)
            }
        } catch let skip as Moot {
            result = .skipped(reason: skip.reason, detail: skip.detail)
        } catch let denied as EgressGuard.Denied {
            result = .refused("the egress guard refused the destination: \(denied.message)")
        } catch let broken as BrokenTarget {
            result = .refused(broken.message)
        } catch let sealed as SecretError {
            // No master key now (a restart without it): retried, not lost.
            result = .failed(status: 0, detail: sealed.description, permanent: false)
        } catch is AttemptDeadline {
            result = .failed(
                status: 0, detail: "the attempt took longer than \(Int(settings.policy.attemptDeadline)) s", permanent: false)
        } catch {
            // A webhook URL may carry its token in the path: errors name the host only.
            var detail = "\(error)"
            if let url = secretURL, let masked = try? IntegrationSettings.checkURL(url, field: "url") {
                detail = detail.replacingOccurrences(of: url, with: masked)
                if let path = URL(string: url)?.path, path.count > 1 { detail = detail.replacingOccurrences(of: path, with: "/…") }
            }
            result = .failed(status: 0, detail: detail, permanent: false)
        }
        let now = Date()
        let duration = Int(now.timeIntervalSince(started) * 1000)
        metrics.attempt(entry.channel, seconds: now.timeIntervalSince(started))
        switch result {
        case .delivered(let status, let detail):
            breakers.succeeded(destination)
            metrics.delivered(entry, latency: now.timeIntervalSince(dueTime(entry)))
            span?.attributes[SpanKeys.notificationOutcome] = "delivered"
            note(DeliveryOutcome(
                rowId: record.rowId,
                attempt: DeliveryAttemptRecord(
                    attempt: attempt, at: now, outcome: "delivered", statusCode: status, detail: detail, durationMs: duration),
                state: .delivered))
        case .failed(let status, let detail, let permanent):
            metrics.failed(entry)
            // Only the destination's trouble counts toward its circuit (no
            // answer, 5xx, 429): a refusal of this one message (a 4xx, a bad
            // address) says nothing about the next.
            if permanent {
                breakers.settled(destination)
            } else if !destination.isEmpty, breakers.failed(destination, now: now) {
                metrics.circuitOpened(entry.channel)
                logger.warning(
                    "notifications: \(settings.policy.breakerThreshold) failures in a row to a \(entry.channel.rawValue) destination; pausing it for \(Int(settings.policy.breakerCooldown)) s")
            }
            let last = permanent || attempt >= settings.policy.maxAttempts
            span?.attributes[SpanKeys.notificationOutcome] = last ? "dead" : "failed"
            span?.setStatus(SpanStatus(code: .error, message: detail))
            if last {
                metrics.dead(entry)
                logger.warning(
                    "notification dead-lettered",
                    metadata: [
                        "delivery_id": "\(entry.deliveryId)", "channel": "\(entry.channel.rawValue)",
                        "event": "\(entry.event.rawValue)", "attempts": "\(attempt)", "error": "\(detail)",
                    ])
            }
            note(DeliveryOutcome(
                rowId: record.rowId,
                attempt: DeliveryAttemptRecord(
                    attempt: attempt, at: now, outcome: last ? "dead" : "failed", statusCode: status, detail: detail,
                    durationMs: duration),
                state: last ? .dead : .pending,
                nextAttemptAt: last ? nil : now.addingTimeInterval(settings.policy.backoff(afterAttempt: attempt))))
        case .refused(let detail):
            breakers.settled(destination)
            metrics.failed(entry)
            metrics.dead(entry)
            span?.attributes[SpanKeys.notificationOutcome] = "refused"
            span?.setStatus(SpanStatus(code: .error, message: detail))
            logger.warning(
                "notification refused",
                metadata: ["delivery_id": "\(entry.deliveryId)", "channel": "\(entry.channel.rawValue)", "error": "\(detail)"])
            note(DeliveryOutcome(
                rowId: record.rowId,
                attempt: DeliveryAttemptRecord(attempt: attempt, at: now, outcome: "refused", detail: detail, durationMs: duration),
                state: .dead))
        case .skipped(let reason, let detail):
            breakers.settled(destination)
            metrics.skipped(reason: reason)
            span?.attributes[SpanKeys.notificationOutcome] = "skipped"
            note(DeliveryOutcome(
                rowId: record.rowId,
                attempt: DeliveryAttemptRecord(attempt: attempt, at: now, outcome: "skipped", detail: detail),
                state: .skipped))
        }
    }

    /// When the notification was due: the event, or a deadline alert's time.
    func dueTime(_ entry: OutboxEntry) -> Date {
        guard entry.event == .executionDeadline, let seconds = index.subscription(id: entry.subscriptionId)?.deadlineSeconds
        else { return entry.createdAt }
        return entry.createdAt.addingTimeInterval(TimeInterval(seconds))
    }

    struct AttemptDeadline: Error {}

    /// Runs `body`, cancelled (and failing with `AttemptDeadline`) after `seconds`.
    static func within<T: Sendable>(seconds: TimeInterval, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                throw AttemptDeadline()
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    struct Moot: Error {
        let reason: String
        let detail: String
    }

    struct BrokenTarget: Error {
        let message: String
    }

    /// Where one delivery goes, with what it needs (secrets opened).
}
