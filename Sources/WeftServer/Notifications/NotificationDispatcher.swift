import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Tracing
import WeftEngine
import WeftObservability
import WeftStore

/// Delivers the outbox: reads due rows, sends each through its channel
/// (with the per-destination circuit breaker and rate limit), and records
/// every attempt. What it is delivering it holds in memory until the
/// outcome is written, so reading writes nothing; a dispatcher that dies
/// mid-send leaves its rows pending, so a delivery may repeat (same
/// delivery id) but is never lost. Retries back off exponentially with jitter; after
/// the last attempt, or a permanent refusal, a delivery is dead-lettered.
final class NotificationDispatcher: Service, Sendable {
    struct Settings: Sendable {
        var policy = DeliveryPolicy()
        /// The e-mail server of subscriptions without an SMTP integration.
        var smtp: SMTPSettings?
        /// Where links in messages point ("http://weft.example.com").
        var publicURL = "http://localhost:8080"
        /// Ended deliveries and in-app notifications are kept this long.
        var retention: TimeInterval = 30 * 86_400
        /// At least this long between two claims that were not full.
        var claimSpacing: Duration = .milliseconds(10)
        var batch = 256
        /// How often due retries and deadline alerts are looked for when
        /// nothing wakes the dispatcher.
        var idlePoll: Duration = .milliseconds(200)
    }

    let store: any NotificationStore
    let executions: any ExecutionStore
    let workflows: any WorkflowStore
    let vault: SecretVault
    let index: NotificationIndex
    let settings: Settings
    let poster: WebhookPoster
    let smtp: SMTPClient
    let egress: EgressGuard
    let feed: InAppFeed
    let metrics: NotificationMetrics
    let templates: TemplateCache
    let logger: Logger
    let access: AccessCache
    /// The operator's SMTP relay (`--smtp-host`) is configuration, not user
    /// input: the guard lets its name through (it is still resolved).
    let relayEgress: EgressGuard
    private let breakers: CircuitBreakers
    private let limiter: DestinationRateLimiter
    private let signal = WorkSignal()
    private let pendingOutcomes = Mutex<[DeliveryOutcome]>([])
    /// Rows being delivered, or delivered and not yet recorded: the claims,
    /// in memory (one dispatcher per process; a restart holds none, so a
    /// crash between sending and recording sends the row again).
    private let holding = Mutex<Set<Int64>>([])
    private let integrations = Mutex<[String: (at: Date, record: IntegrationRecord, secrets: [String: String])]>([:])
    private let inFlight = Atomic<Int>(0)
    static let queueName = "outbox"

    init(
        store: any NotificationStore, executions: any ExecutionStore, workflows: any WorkflowStore, vault: SecretVault,
        index: NotificationIndex, settings: Settings, egress: EgressGuard, feed: InAppFeed, metrics: NotificationMetrics,
        templates: TemplateCache, logger: Logger
    ) {
        self.store = store
        self.executions = executions
        self.workflows = workflows
        self.vault = vault
        self.index = index
        self.settings = settings
        self.egress = egress
        self.poster = WebhookPoster(egress: egress)
        self.smtp = SMTPClient(group: MultiThreadedEventLoopGroup.singleton)
        self.feed = feed
        self.metrics = metrics
        self.templates = templates
        self.logger = logger
        access = AccessCache(workflows: workflows)
        var relay = egress.policy
        if let host = settings.smtp?.host { relay.allowedHosts.insert(host.lowercased()) }
        relayEgress = EgressGuard(policy: relay)
        breakers = CircuitBreakers(threshold: settings.policy.breakerThreshold, cooldown: settings.policy.breakerCooldown)
        limiter = DestinationRateLimiter(rate: settings.policy.ratePerSecond, burst: settings.policy.burst)
    }

    /// Something was queued or finished: look again now.
    func poke() { signal.notify(Self.queueName) }

    func run() async throws {
        index.onCommit { [weak self] entries in
            self?.metrics.queued(entries)
            self?.poke()
        }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.sampleBacklog() }
            group.addTask { await self.flushLoop() }
            await withGracefulShutdownHandler {
                await self.claimLoop(&group)
            } onGracefulShutdown: {
                self.poke()
            }
        }
        await poster.shutdown()
    }

    private var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }

    private func claimLoop(_ group: inout DiscardingTaskGroup) async {
        var lastClaim = ContinuousClock.now
        while !stopping {
            let generation = signal.generation(Self.queueName)
            let capacity = settings.policy.concurrency
            let room = capacity - inFlight.load(ordering: .relaxed)
            var full = false
            if room > 0 {
                // Wake-ups come with every commit that queued a row: reads
                // are spaced so one takes many rows.
                let since = ContinuousClock.now - lastClaim
                if since < settings.claimSpacing { try? await Task.sleep(for: settings.claimSpacing - since) }
                lastClaim = ContinuousClock.now
                let now = Date()
                let limit = min(room, settings.batch)
                do {
                    let held = holding.withLock { $0 }
                    let claimed = try await store.dueOutbox(now: now, limit: limit, excluding: held)
                    holding.withLock { holding in for record in claimed { holding.insert(record.rowId) } }
                    for record in claimed {
                        inFlight.add(1, ordering: .relaxed)
                        group.addTask {
                            await self.deliver(record)
                            // A free slot matters only when all were taken.
                            if self.inFlight.subtract(1, ordering: .relaxed).oldValue == capacity { self.poke() }
                        }
                    }
                    full = claimed.count == limit
                } catch {
                    logger.error("notifications: cannot claim from the outbox: \(error)")
                }
            }
            if full { continue }
            await signal.wait(Self.queueName, since: generation, timeout: settings.idlePoll)
        }
        // Stopping: live in-app streams end (so the server's drain does not
        // wait for them); what is in flight finishes (each attempt has a
        // deadline) and is recorded; unclaimed rows wait for the next run.
        feed.finishAll()
        while inFlight.load(ordering: .relaxed) > 0 {
            do {
                try await Task.sleep(for: .milliseconds(20))
            } catch {
                break  // cancelled: the claims end and the rows come back
            }
        }
        await flush()
    }

    // MARK: Outcomes

    private func note(_ outcome: DeliveryOutcome) {
        let count = pendingOutcomes.withLock { pending in
            pending.append(outcome)
            return pending.count
        }
        if count >= 256 { signal.notify("flush") }
    }

    /// Outcomes are written in batches (one transaction for many).
    private func flushLoop() async {
        while !stopping {
            let generation = signal.generation("flush")
            await flush()
            await signal.wait("flush", since: generation, timeout: .milliseconds(20))
        }
    }

    private func flush() async {
        let batch = pendingOutcomes.withLock { pending in
            let taken = pending
            pending = []
            return taken
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.recordOutcomes(batch)
        } catch {
            // Not recorded: the rows are still pending, so they are
            // delivered again (same delivery id).
            logger.error("notifications: \(batch.count) delivery outcomes could not be recorded: \(error)")
        }
        // Only now may the rows be read again: before, a row still pending
        // in the store would be delivered twice.
        holding.withLock { holding in for outcome in batch { holding.remove(outcome.rowId) } }
    }

    /// The backlog gauges every 2 s; deliveries and in-app notifications
    /// older than the retention are purged hourly.
    private func sampleBacklog() async {
        var lastPurge = Date.distantPast
        while !stopping {
            let now = Date()
            if let backlog = try? await store.outboxBacklog(now: now) {
                metrics.pending.set(Double(backlog.pending))
                metrics.oldestAge.set(backlog.oldest.map { max(0, now.timeIntervalSince($0)) } ?? 0)
            }
            if now.timeIntervalSince(lastPurge) >= 3600 {
                lastPurge = now
                do {
                    let purged = try await store.purgeNotifications(before: now.addingTimeInterval(-settings.retention))
                    if purged > 0 { logger.info("notifications: purged \(purged) deliveries and in-app notifications past retention") }
                } catch {
                    logger.error("notifications: purge failed: \(error)")
                }
            }
            for _ in 0..<10 where !stopping { try? await Task.sleep(for: .milliseconds(200)) }
        }
    }

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
    enum Target {
        case webhook(url: String, secret: String?)
        case slack(url: String, config: JSONValue)
        /// `relay`: the operator's server (`--smtp-host`), not an integration's.
        case email(SMTPSettings, to: String, relay: Bool)
        case inApp(userId: String)

        /// The circuit breaker's and rate limiter's key: one receiver (a
        /// URL; an SMTP server with its account), so one tenant's broken
        /// hook does not pause another's on the same host.
        var key: String {
            switch self {
            case .webhook(let url, _), .slack(let url, _):
                return "url:" + Hex.encode(Crypto.sha256(Array(url.utf8)).prefix(12))
            case .email(let settings, _, _): return "smtp:\(settings.host):\(settings.port):\(settings.username ?? "")"
            case .inApp(let userId): return "in_app:" + userId
            }
        }

        /// In-app deliveries are local writes: no breaker, no rate limit.
        var isGuarded: Bool {
            if case .inApp = self { return false }
            return true
        }
    }

    func resolve(_ entry: OutboxEntry) async throws -> Target {
        guard let subscription = index.subscription(id: entry.subscriptionId) else {
            throw Moot(reason: "subscription_deleted", detail: "the subscription was deleted")
        }
        // Whoever lost access to the workflow (removed as a collaborator,
        // left the organization) is told nothing more about it.
        guard try await access.mayRead(userId: subscription.userId, workflowId: subscription.workflowId) else {
            throw Moot(reason: "no_access", detail: "the subscriber no longer has a role on the workflow (or it was deleted)")
        }
        if entry.event == .executionDeadline {
            if let execution = try await executions.execution(id: entry.executionId), execution.isFinished {
                throw Moot(
                    reason: "deadline_met",
                    detail: "the execution ended (\(execution.status.rawValue)) before the \(subscription.deadlineSeconds ?? 0) s deadline")
            }
        }
        return try await target(subscription, channel: entry.channel)
    }

    /// A subscription's destination: its integration's, or its own.
    func target(_ subscription: SubscriptionRecord, channel: NotificationChannel) async throws -> Target {
        var integration: IntegrationRecord?
        var secrets: [String: String] = [:]
        if let id = subscription.integrationId {
            (integration, secrets) = try await opened(integrationId: id)
        }
        switch channel {
        case .webhook:
            let url = secrets["webhookUrl"] ?? subscription.destination
            return .webhook(url: url, secret: secrets["signingSecret"])
        case .slack:
            return .slack(url: secrets["webhookUrl"] ?? subscription.destination, config: integration?.config ?? .emptyObject)
        case .email:
            if let integration {
                return .email(try Self.smtpSettings(integration.config, secrets: secrets), to: subscription.destination, relay: false)
            } else if let configured = self.settings.smtp {
                return .email(configured, to: subscription.destination, relay: true)
            } else {
                throw BrokenTarget(
                    message: "no SMTP server: start weft with --smtp-host (see docs/NOTIFICATIONS.md) or use an email integration")
            }
        case .inApp:
            return .inApp(userId: subscription.userId)
        }
    }

    /// An integration with its secrets opened, kept a few seconds (every
    /// delivery through it needs them; the API forgets it on a change).
    func opened(integrationId id: String) async throws -> (IntegrationRecord, [String: String]) {
        let now = Date()
        if let hit = integrations.withLock({ $0[id] }), now.timeIntervalSince(hit.at) < TemplateCache.lifetime {
            return (hit.record, hit.secrets)
        }
        guard let found = try await store.integration(id: id) else {
            throw BrokenTarget(message: "integration \(id) no longer exists")
        }
        // Without a master key now (a restart without it) the secrets may
        // open later: retried. Damaged ones never will: refused.
        guard vault.sealer != nil else { throw SecretError(vault.closedMessage) }
        let secrets: [String: String]
        do {
            secrets = try vault.openIntegrationSecrets(found.sealed, orgId: found.orgId, integrationId: found.id)
        } catch {
            throw BrokenTarget(message: "the secrets of integration \(id) cannot be opened: \(error)")
        }
        integrations.withLock { cache in
            if cache.count > 10_000 { cache = [:] }
            cache[id] = (now, found, secrets)
        }
        return (found, secrets)
    }

    /// An integration changed or went: the next delivery reads it again.
    func forgetIntegration(_ id: String) {
        integrations.withLock { $0[id] = nil }
    }

    /// An email integration's settings as the SMTP client takes them.
    static func smtpSettings(_ config: JSONValue, secrets: [String: String]) throws -> SMTPSettings {
        guard let host = config["host"]?.stringValue, let from = config["from"]?.stringValue else {
            throw BrokenTarget(message: "the email integration has no host or from address")
        }
        var port = 587
        if case .number(let value)? = config["port"] { port = Int(value) }
        let tls = SMTPTLSMode(rawValue: config["tls"]?.stringValue ?? "required") ?? .required
        var verify = true
        if case .bool(let value)? = config["verifyCertificate"] { verify = value }
        var settings = SMTPSettings(
            host: host, port: port, username: config["username"]?.stringValue, password: secrets["password"],
            fromAddress: from, fromName: config["fromName"]?.stringValue, tls: tls, caFile: nil,
            verifyCertificate: verify, heloName: config["heloName"]?.stringValue ?? "weft.localhost")
        settings.caPEM = config["caCertificate"]?.stringValue
        return settings
    }

    // MARK: Channels

    func send(_ entry: OutboxEntry, target: Target, attempt: Int) async throws -> Result {
        // The facts as of now: a deadline alert's duration, a missed tick's
        // workflow name.
        let (message, link, payload) = try await render(entry)
        var entry = entry
        entry.payload = payload
        let timeout = settings.policy.attemptTimeout
        switch target {
        case .webhook(let url, let secret):
            let body = Array(NotificationPayloads.webhook(entry, message: message, link: link).jsonText().utf8)
            let timestamp = Int(Date().timeIntervalSince1970)
            var headers = [
                ("content-type", "application/json"), ("user-agent", "Weft-Notifications/1"),
                (WebhookSignature.deliveryHeader, entry.deliveryId), (WebhookSignature.eventHeader, entry.event.rawValue),
                (WebhookSignature.timestampHeader, String(timestamp)), ("X-Weft-Attempt", String(attempt)),
            ]
            if let secret {
                headers.append((WebhookSignature.signatureHeader, WebhookSignature.sign(secret: secret, timestamp: timestamp, body: body)))
            }
            return try await httpResult(poster.post(url: url, headers: headers, body: body, timeout: timeout))
        case .slack(let url, let config):
            let body = Array(NotificationPayloads.slack(entry, message: message, link: link, config: config).jsonText().utf8)
            let headers = [("content-type", "application/json"), ("user-agent", "Weft-Notifications/1")]
            return try await httpResult(poster.post(url: url, headers: headers, body: body, timeout: timeout))
        case .email(var settings, let to, let relay):
            guard EmailAddress.isValid(to) else { throw BrokenTarget(message: "\"\(to)\" is not an e-mail address") }
            settings.commandTimeout = timeout
            let destination = try await (relay ? relayEgress : egress).check(host: settings.host)
            let address = try destination.pinned.map { try SocketAddress(ipAddress: $0.description, port: settings.port) }
            var mail = MIMEMessage(
                fromAddress: settings.fromAddress, fromName: settings.fromName ?? "Weft", to: [to], subject: message.subject,
                text: message.text + "\n", html: message.html, headers: [("X-Weft-Delivery-Id", entry.deliveryId)],
                messageId: "<\(entry.deliveryId)@weft>")
            mail.headers.append(("X-Weft-Event", entry.event.rawValue))
            do {
                let receipt = try await smtp.send(mail, settings: settings, connectTo: address)
                return .delivered(status: 250, detail: receipt.replyText)
            } catch let error as SMTPError {
                return .failed(status: error.replyCode ?? 0, detail: error.description, permanent: error.isPermanent)
            }
        case .inApp(let userId):
            let record = NotificationRecord(
                id: IDGenerator.make("ntf", now: Date()), userId: userId, workflowId: entry.workflowId,
                executionId: entry.executionId, event: entry.event.rawValue, title: message.subject, body: message.text,
                link: link, deliveryId: entry.deliveryId, createdAt: Date())
            if try await store.insertNotification(record) { feed.publish(record) }
            return .delivered(status: 0, detail: "stored for user \(userId)")
        }
    }

    /// 2xx delivered; 408, 429 and 5xx retried; other statuses refused for good.
    func httpResult(_ response: WebhookPoster.Response) -> Result {
        let detail = "HTTP \(response.status)" + (response.body.isEmpty ? "" : ": " + String(response.body.prefix(200)))
        switch response.status {
        case 200..<300: return .delivered(status: response.status, detail: detail)
        case 408, 429, 500...: return .failed(status: response.status, detail: detail, permanent: false)
        default: return .failed(status: response.status, detail: detail, permanent: true)
        }
    }

    /// The message of an event: the organization's template (or the
    /// built-in one) filled with its facts; and its link.
    func render(_ entry: OutboxEntry) async throws -> (RenderedMessage, String, JSONValue) {
        var payload = entry.payload
        if payload["workflowName"]?.stringValue?.isEmpty ?? true,
            let workflow = try? await workflows.workflow(id: entry.workflowId, includeDeleted: true),
            case .object(var fields) = payload
        {
            fields["workflowName"] = .string(workflow.name)
            payload = .object(fields)
        }
        if entry.event == .executionDeadline, case .object(var fields) = payload,
            let started = (payload["startedAt"]?.stringValue).flatMap({ try? Date($0, strategy: EventFacts.timestamp) })
        {
            // How long it has run by now, not at its start.
            fields["durationMs"] = .number((Date().timeIntervalSince(started) * 1000).rounded())
            fields["at"] = .string(StoreDate.rfc3339(Date()))
            payload = .object(fields)
        }
        let link = Self.link(publicURL: settings.publicURL, entry)
        let template = try await templates.compiled(orgId: entry.orgId, event: entry.event)
        return (template.render(NotificationTemplates.values(payload, link: link)), link, payload)
    }

    static func link(publicURL: String, _ entry: OutboxEntry) -> String {
        let base = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        return entry.executionId.isEmpty ? "\(base)/workflows/\(entry.workflowId)" : "\(base)/executions/\(entry.executionId)"
    }
}

/// Organizations' template overrides, read at most every few seconds per
/// organization (deliveries render one each).
final class TemplateCache: Sendable {
    let store: any NotificationStore
    private let cached = Mutex<[String: (at: Date, templates: [String: TemplateRecord])]>([:])
    private let compiledCache = Mutex<[String: (at: Date, message: CompiledMessage)]>([:])
    static let lifetime: TimeInterval = 5

    init(store: any NotificationStore) { self.store = store }

    func template(orgId: String, event: NotificationEvent) async throws -> TemplateRecord? {
        let now = Date()
        if let hit = cached.withLock({ $0[orgId] }), now.timeIntervalSince(hit.at) < Self.lifetime {
            return hit.templates[event.rawValue]
        }
        let all = try await store.templates(orgId: orgId)
        let byEvent = Dictionary(all.map { ($0.event, $0) }, uniquingKeysWith: { _, last in last })
        cached.withLock { $0[orgId] = (now, byEvent) }
        return byEvent[event.rawValue]
    }

    /// The organization's template of an event, compiled, with the
    /// built-in one's parts where it has none.
    func compiled(orgId: String, event: NotificationEvent) async throws -> CompiledMessage {
        let now = Date()
        if let hit = compiledCache.withLock({ $0[orgId + "|" + event.rawValue] }), now.timeIntervalSince(hit.at) < Self.lifetime {
            return hit.message
        }
        let message = CompiledMessage(NotificationTemplates.effective(event, override: try await template(orgId: orgId, event: event)))
        compiledCache.withLock { cache in
            if cache.count > 10_000 { cache = [:] }
            cache[orgId + "|" + event.rawValue] = (now, message)
        }
        return message
    }

    func forget(orgId: String) {
        compiledCache.withLock { cache in cache = cache.filter { !$0.key.hasPrefix(orgId + "|") } }
        cached.withLock { $0[orgId] = nil }
    }
}

/// Whether a user may still read a workflow, remembered for a few seconds
/// (every delivery asks; roles change rarely).
final class AccessCache: Sendable {
    let workflows: any WorkflowStore
    private let known = Mutex<[String: (at: Date, allowed: Bool)]>([:])
    static let lifetime: TimeInterval = 10

    init(workflows: any WorkflowStore) { self.workflows = workflows }

    func mayRead(userId: String, workflowId: String) async throws -> Bool {
        let key = userId + "|" + workflowId
        let now = Date()
        if let hit = known.withLock({ $0[key] }), now.timeIntervalSince(hit.at) < Self.lifetime { return hit.allowed }
        var allowed = false
        if let workflow = try await workflows.workflow(id: workflowId, includeDeleted: false) {
            if workflow.ownerId == userId {
                allowed = true
            } else {
                allowed = try await workflows.role(userId: userId, workflowId: workflowId) != nil
            }
        }
        known.withLock { known in
            if known.count > 10_000 { known = known.filter { now.timeIntervalSince($0.value.at) < Self.lifetime } }
            known[key] = (now, allowed)
        }
        return allowed
    }
}
