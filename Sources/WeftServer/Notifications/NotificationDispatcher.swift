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
        /// nothing wakes the dispatcher (after 20 looks in a row found
        /// nothing, the wait doubles per look up to four times this: `IdleBackoff`).
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
    let breakers: CircuitBreakers
    let limiter: DestinationRateLimiter
    private let signal = WorkSignal()
    private let pendingOutcomes = Mutex<[DeliveryOutcome]>([])
    /// The flush loop sleeps until an outcome comes (`note` wakes it on the
    /// first one) instead of waking every 20 ms with nothing to write.
    private let flushIdle = Atomic<Bool>(false)
    /// Rows being delivered, or delivered and not yet recorded: the claims,
    /// in memory (one dispatcher per process; a restart holds none, so a
    /// crash between sending and recording sends the row again).
    private let holding = Mutex<Set<Int64>>([])
    let integrations = Mutex<[String: (at: Date, record: IntegrationRecord, secrets: [String: String])]>([:])
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
                self.signal.notify("flush")
                self.signal.notify("backlog")
            }
        }
        await poster.shutdown()
    }

    private var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }

    private func claimLoop(_ group: inout DiscardingTaskGroup) async {
        var lastClaim = ContinuousClock.now
        var backoff = IdleBackoff(base: settings.idlePoll, cap: settings.idlePoll * 4)
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
                    if !claimed.isEmpty { backoff.reset() }
                } catch {
                    logger.error("notifications: cannot claim from the outbox: \(error)")
                }
            }
            if full { continue }
            await signal.wait(Self.queueName, since: generation, timeout: backoff.nextWait())
            if signal.generation(Self.queueName) != generation { backoff.reset() }
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

    func note(_ outcome: DeliveryOutcome) {
        let count = pendingOutcomes.withLock { pending in
            pending.append(outcome)
            return pending.count
        }
        if count >= 256 || (count == 1 && flushIdle.load(ordering: .sequentiallyConsistent)) { signal.notify("flush") }
    }

    /// Outcomes are written in batches (one transaction for many): those
    /// noted within 20 ms of each other share one. With none pending the
    /// loop sleeps until the next (an idle server used to wake it 50 times
    /// a second for nothing).
    private func flushLoop() async {
        while !stopping {
            let generation = signal.generation("flush")
            await flush()
            guard pendingOutcomes.withLock({ $0.isEmpty }) else {
                await signal.wait("flush", since: generation, timeout: .milliseconds(20))
                continue
            }
            flushIdle.store(true, ordering: .sequentiallyConsistent)
            // An outcome noted before the flag was up is seen here; one
            // noted after it notifies, and the wait returns at once.
            if pendingOutcomes.withLock({ $0.isEmpty }) {
                await signal.wait("flush", since: generation, timeout: .seconds(5))
            }
            flushIdle.store(false, ordering: .sequentiallyConsistent)
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
            // 2 s, or until shutdown begins (one wake-up, not ten naps).
            let generation = signal.generation("backlog")
            if !stopping { await signal.wait("backlog", since: generation, timeout: .seconds(2)) }
        }
    }
}
