public import Foundation

/// What a subscription listens for. Raw values are the API's event names.
public enum NotificationEvent: String, Sendable, Hashable, CaseIterable {
    case executionStarted = "execution.started"
    case executionCompleted = "execution.completed"
    case executionFailed = "execution.failed"
    case executionTimedOut = "execution.timed_out"
    case executionCancelled = "execution.cancelled"
    /// The execution is still running `deadlineSeconds` after it started.
    case executionDeadline = "execution.deadline"
    /// A task failed on its last attempt.
    case taskFailed = "task.failed"
    /// A task attempt failed and another one follows.
    case taskRetried = "task.retried"
    case scheduleTickMissed = "schedule.tick_missed"
    case scheduleTickSkipped = "schedule.tick_skipped"
    /// A workflow's monthly cost budget: the month-end forecast crossed it,
    /// or the month's spend did (once each a month; docs/ANALYTICS.md).
    case budgetForecastExceeded = "budget.forecast_exceeded"
    case budgetExceeded = "budget.exceeded"
    /// Sent by the "test" action of an integration (never subscribed to).
    case test = "test"

    /// The event an execution's end is.
    public static func ended(_ status: ExecutionStatus) -> NotificationEvent? {
        switch status {
        case .completed: .executionCompleted
        case .failed: .executionFailed
        case .timedOut: .executionTimedOut
        case .cancelled: .executionCancelled
        case .pending, .running: nil
        }
    }

    /// Events a subscription may choose.
    public static var subscribable: [NotificationEvent] { allCases.filter { $0 != .test } }

    /// The events of the original design's coarse `eventType`.
    public static func coarse(_ name: String) -> [NotificationEvent]? {
        switch name {
        case "completion": [.executionCompleted]
        case "failure": [.executionFailed, .executionTimedOut, .executionCancelled]
        case "start": [.executionStarted]
        case "any": [.executionStarted, .executionCompleted, .executionFailed, .executionTimedOut, .executionCancelled]
        default: nil
        }
    }
}

/// Where a notification goes. Raw values are the API's channel names.
public enum NotificationChannel: String, Sendable, Hashable, CaseIterable {
    case email
    case webhook
    case slack
    case inApp = "in_app"
}

/// A user's wish to be told about events of one workflow.
public struct SubscriptionRecord: Sendable, Hashable {
    public var id: String
    public var workflowId: String
    /// The organization of the workflow (templates, quotas).
    public var orgId: String
    /// Who subscribed (the in-app channel notifies them).
    public var userId: String
    /// The original design's coarse choice ("completion", "failure", ...),
    /// or "custom" when `events` was given.
    public var eventType: String
    public var events: Set<NotificationEvent>
    public var channel: NotificationChannel
    /// An e-mail address or URL; empty with an integration or for in-app.
    public var destination: String
    public var integrationId: String?
    /// An expression over `event` (nil: every event matches).
    public var filter: String?
    /// For `executionDeadline`.
    public var deadlineSeconds: Int?
    public var createdAt: Date

    public init(
        id: String, workflowId: String, orgId: String, userId: String, eventType: String, events: Set<NotificationEvent>,
        channel: NotificationChannel, destination: String, integrationId: String? = nil, filter: String? = nil,
        deadlineSeconds: Int? = nil, createdAt: Date
    ) {
        self.id = id
        self.workflowId = workflowId
        self.orgId = orgId
        self.userId = userId
        self.eventType = eventType
        self.events = events
        self.channel = channel
        self.destination = destination
        self.integrationId = integrationId
        self.filter = filter
        self.deadlineSeconds = deadlineSeconds
        self.createdAt = createdAt
    }
}

/// A typed configuration of a third-party service. Its secrets are one
/// sealed JSON object (`sealed`), opened only to deliver or to call.
public struct IntegrationRecord: Sendable, Hashable {
    public var id: String
    public var workflowId: String
    public var orgId: String
    /// slack, webhook, email, http_auth.
    public var type: String
    public var name: String
    /// Settings without secrets (returned by the API as they are).
    public var config: JSONValue
    /// The secret values, sealed ("<key id>:<nonce hex>:<ciphertext hex>").
    public var sealed: String?
    /// Names of the secret fields that are set ("webhookUrl", "password").
    public var secretFields: [String]
    /// The webhook URL with everything but scheme and host masked.
    public var displayURL: String
    public var createdBy: String
    public var createdAt: Date
    public var updatedAt: Date

    public init(
        id: String, workflowId: String, orgId: String, type: String, name: String, config: JSONValue, sealed: String?,
        secretFields: [String], displayURL: String, createdBy: String, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.workflowId = workflowId
        self.orgId = orgId
        self.type = type
        self.name = name
        self.config = config
        self.sealed = sealed
        self.secretFields = secretFields
        self.displayURL = displayURL
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }
}

/// One notification to deliver: an event for one subscription. Written in
/// the same transaction as the change it reports (`ExecutionTransition.outbox`).
public struct OutboxEntry: Sendable, Hashable {
    /// Sent with every attempt (receivers drop repeats by it).
    public var deliveryId: String
    public var subscriptionId: String
    public var workflowId: String
    public var orgId: String
    /// Empty for schedule events without an execution.
    public var executionId: String
    public var event: NotificationEvent
    public var channel: NotificationChannel
    /// The event's facts (workflow name, status, error, trigger, times...).
    public var payload: JSONValue
    public var createdAt: Date
    /// First attempt (later than `createdAt` for a deadline alert).
    public var nextAttemptAt: Date
    /// The W3C traceparent of the execution, so delivery spans join its trace.
    public var traceparent: String?

    public init(
        deliveryId: String, subscriptionId: String, workflowId: String, orgId: String, executionId: String,
        event: NotificationEvent, channel: NotificationChannel, payload: JSONValue, createdAt: Date, nextAttemptAt: Date,
        traceparent: String? = nil
    ) {
        self.deliveryId = deliveryId
        self.subscriptionId = subscriptionId
        self.workflowId = workflowId
        self.orgId = orgId
        self.executionId = executionId
        self.event = event
        self.channel = channel
        self.payload = payload
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.traceparent = traceparent
    }
}

public enum DeliveryState: String, Sendable, Hashable, CaseIterable {
    case pending
    case delivered
    /// Every attempt failed, or the receiver refused for good.
    case dead
    /// Moot: a deadline alert for an execution that ended in time, a
    /// subscription deleted before its delivery.
    case skipped
}

/// One try of a delivery.
public struct DeliveryAttemptRecord: Sendable, Hashable {
    /// Not an attempt: the delivery waits (its destination's circuit is
    /// open) without spending one; only `nextAttemptAt` is written.
    public static let deferred = "deferred"
    public var attempt: Int
    public var at: Date
    /// delivered, failed, dead, refused, skipped.
    public var outcome: String
    public var statusCode: Int
    public var detail: String
    public var durationMs: Int

    public init(attempt: Int, at: Date, outcome: String, statusCode: Int = 0, detail: String = "", durationMs: Int = 0) {
        self.attempt = attempt
        self.at = at
        self.outcome = outcome
        self.statusCode = statusCode
        self.detail = detail
        self.durationMs = durationMs
    }
}

/// An outbox row as stored: the entry and how its delivery went.
public struct DeliveryRecord: Sendable, Hashable {
    /// The row id (claims and outcomes name it).
    public var rowId: Int64
    public var entry: OutboxEntry
    public var state: DeliveryState
    /// Attempts made so far (recorded outcomes).
    public var attempts: Int
    public var nextAttemptAt: Date
    public var deliveredAt: Date?
    public var lastError: String?
    public var attemptLog: [DeliveryAttemptRecord]

    public init(
        rowId: Int64, entry: OutboxEntry, state: DeliveryState, attempts: Int, nextAttemptAt: Date, deliveredAt: Date?,
        lastError: String?, attemptLog: [DeliveryAttemptRecord] = []
    ) {
        self.rowId = rowId
        self.entry = entry
        self.state = state
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastError = lastError
        self.attemptLog = attemptLog
    }
}

/// What the dispatcher records after one attempt of one delivery.
public struct DeliveryOutcome: Sendable, Hashable {
    public var rowId: Int64
    public var attempt: DeliveryAttemptRecord
    /// pending (retry at `nextAttemptAt`), delivered, dead or skipped.
    public var state: DeliveryState
    public var nextAttemptAt: Date?

    public init(rowId: Int64, attempt: DeliveryAttemptRecord, state: DeliveryState, nextAttemptAt: Date? = nil) {
        self.rowId = rowId
        self.attempt = attempt
        self.state = state
        self.nextAttemptAt = nextAttemptAt
    }
}

/// An in-app notification of one user.
public struct NotificationRecord: Sendable, Hashable {
    public var id: String
    public var userId: String
    public var workflowId: String
    public var executionId: String
    public var event: String
    public var title: String
    public var body: String
    public var link: String
    /// The delivery that wrote it: a repeated delivery adds nothing.
    public var deliveryId: String
    public var createdAt: Date
    public var readAt: Date?

    public init(
        id: String, userId: String, workflowId: String, executionId: String, event: String, title: String, body: String,
        link: String, deliveryId: String, createdAt: Date, readAt: Date? = nil
    ) {
        self.id = id
        self.userId = userId
        self.workflowId = workflowId
        self.executionId = executionId
        self.event = event
        self.title = title
        self.body = body
        self.link = link
        self.deliveryId = deliveryId
        self.createdAt = createdAt
        self.readAt = readAt
    }
}

/// An organization's override of one event's message.
public struct TemplateRecord: Sendable, Hashable {
    public var orgId: String
    public var event: String
    public var subject: String
    public var text: String
    public var html: String
    public var updatedAt: Date
    public var updatedBy: String

    public init(orgId: String, event: String, subject: String, text: String, html: String, updatedAt: Date, updatedBy: String) {
        self.orgId = orgId
        self.event = event
        self.subject = subject
        self.text = text
        self.html = html
        self.updatedAt = updatedAt
        self.updatedBy = updatedBy
    }
}

/// Subscriptions, integrations, the outbox of deliveries, in-app
/// notifications and templates.
///
/// The contract (`StoreConformance+Notifications`):
/// - **Outbox rows** are written by `ExecutionTransition.outbox` in the
///   unit of the change they report, or by `enqueueOutbox`. A delivery id
///   is unique: writing it again adds nothing.
/// - **Due rows** (`dueOutbox`) are pending rows due by `now`, oldest due
///   first. Reading them changes nothing: the one dispatcher of a process
///   holds what it is delivering in memory, so a crash between sending and
///   recording leaves the row pending and it is sent again (same id), never
///   lost.
/// - **Outcomes** append the attempt to the row's log and set its state;
///   an outcome for a row that is no longer pending changes nothing.
/// - **In-app** notifications are unique per delivery id.
public protocol NotificationStore: Sendable {
    func createSubscription(_ subscription: SubscriptionRecord) async throws
    func subscription(id: String) async throws -> SubscriptionRecord?
    func subscriptions(workflowId: String, limit: Int, cursor: String?) async throws -> Page<SubscriptionRecord>
    /// Every subscription (the dispatcher's in-memory index at start).
    func allSubscriptions() async throws -> [SubscriptionRecord]
    /// Deletes it; its pending deliveries become `skipped`. False if it was gone.
    @discardableResult
    func deleteSubscription(id: String, at: Date) async throws -> Bool

    func createIntegration(_ integration: IntegrationRecord) async throws
    func replaceIntegration(_ integration: IntegrationRecord) async throws
    func integration(id: String) async throws -> IntegrationRecord?
    func integrations(workflowId: String, limit: Int, cursor: String?) async throws -> Page<IntegrationRecord>
    /// Subscriptions that deliver through the integration.
    func subscriptions(integrationId: String) async throws -> [SubscriptionRecord]
    /// Deletes it unless a subscription uses it (checked in the same write);
    /// false when it is gone or in use.
    @discardableResult
    func deleteIntegration(id: String) async throws -> Bool

    /// Adds rows outside an execution's unit (schedule events, tests);
    /// an existing delivery id is not added again.
    func enqueueOutbox(_ entries: [OutboxEntry]) async throws
    /// Pending rows due by `now`, oldest due first, leaving out `excluding`
    /// (rows being delivered); without their attempt logs.
    func dueOutbox(now: Date, limit: Int, excluding: Set<Int64>) async throws -> [DeliveryRecord]
    func recordOutcomes(_ outcomes: [DeliveryOutcome]) async throws
    func delivery(id: String) async throws -> DeliveryRecord?
    /// Newest first, with their attempt logs; cursor is a row id.
    func deliveries(subscriptionId: String, state: DeliveryState?, limit: Int, cursor: Int64?) async throws
        -> Page<DeliveryRecord>
    /// Pending rows that are due or being retried (not deadline alerts
    /// whose time has not come), and when the oldest of them was created.
    func outboxBacklog(now: Date) async throws -> (pending: Int, oldest: Date?)
    /// Deletes deliveries that ended (delivered, dead, skipped) and in-app
    /// notifications created before `date`; returns how many rows went.
    @discardableResult
    func purgeNotifications(before date: Date) async throws -> Int

    /// Adds an in-app notification; false when its delivery id is stored already.
    func insertNotification(_ notification: NotificationRecord) async throws -> Bool
    func notifications(userId: String, unreadOnly: Bool, limit: Int, cursor: String?) async throws -> Page<NotificationRecord>
    func unreadCount(userId: String) async throws -> Int
    /// Marks the user's notifications read (`ids` empty: all); returns how many changed.
    func markRead(userId: String, ids: [String], at: Date) async throws -> Int

    func templates(orgId: String) async throws -> [TemplateRecord]
    func putTemplate(_ template: TemplateRecord) async throws
    @discardableResult
    func deleteTemplate(orgId: String, event: String) async throws -> Bool
}
