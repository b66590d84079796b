import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// What the notification APIs share: the store, the in-memory index the
/// engine reads, the dispatcher (the "test" action sends through it), the
/// live in-app feed and the template cache.
struct NotificationServices: Sendable {
    let store: any NotificationStore
    let index: NotificationIndex
    let dispatcher: NotificationDispatcher
    let feed: InAppFeed
    let templates: TemplateCache
}

/// weft.v1.SubscriptionService: who is told about which events of a
/// workflow, how, and what came of each notification.
struct SubscriptionAPI: RPCService {
    static let name = "weft.v1.SubscriptionService"
    static let collection = "/workflows/{workflowId}/subscriptions"
    static let maxPerWorkflow = 100
    static let maxDeadlineSeconds: Int32 = 7 * 86_400
    let deps: APIDependencies
    var notifications: NotificationServices { deps.notifications }

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateSubscription", rest: [.post(Self.collection, status: 201)]) {
                (request: Weft_V1_CreateSubscriptionRequest, context) in try await create(request, context)
            },
            .unary(service: Self.name, method: "ListSubscriptions", rest: [.get(Self.collection)]) {
                (request: Weft_V1_ListSubscriptionsRequest, context) in
                let caller = try Caller(context)
                _ = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                let size = try Paging.size(request.pageSize)
                let fingerprint = Paging.query(request, caller: caller.userId) {
                    $0.pageToken = ""
                    $0.pageSize = 0
                }
                let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
                let page = try await notifications.store.subscriptions(workflowId: request.workflowID, limit: size, cursor: cursor)
                var response = Weft_V1_ListSubscriptionsResponse()
                response.subscriptions = page.items.map(Self.proto)
                response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
                return response
            },
            .unary(service: Self.name, method: "DeleteSubscription", rest: [.delete(Self.collection + "/{subscriptionId}")]) {
                (request: Weft_V1_DeleteSubscriptionRequest, context) -> Weft_V1_DeleteSubscriptionResponse in
                let caller = try Caller(context)
                let subscription = try await subscription(request.workflowID, request.subscriptionID, caller: caller, needs: .viewer)
                // Your own subscription is yours to drop; others' need editor.
                if subscription.userId != caller.userId {
                    _ = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
                }
                guard try await notifications.store.deleteSubscription(id: subscription.id, at: Date.nowMillis) else {
                    throw Self.notFound(subscription.id)
                }
                notifications.index.remove(id: subscription.id, workflowId: subscription.workflowId)
                return Weft_V1_DeleteSubscriptionResponse()
            },
            .unary(
                service: Self.name, method: "ListDeliveries", rest: [.get(Self.collection + "/{subscriptionId}/deliveries")]
            ) { (request: Weft_V1_ListDeliveriesRequest, context) in
                let caller = try Caller(context)
                let subscription = try await subscription(request.workflowID, request.subscriptionID, caller: caller, needs: .viewer)
                var state: DeliveryState?
                if !request.state.isEmpty {
                    guard let parsed = DeliveryState(rawValue: request.state) else {
                        throw RPCError(
                            code: .invalidArgument,
                            message: "state \"\(request.state)\" is not one of \(DeliveryState.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    state = parsed
                }
                let size = try Paging.size(request.pageSize)
                let fingerprint = Paging.query(request, caller: caller.userId) {
                    $0.pageToken = ""
                    $0.pageSize = 0
                }
                let cursor = try Paging.cursor(request.pageToken, query: fingerprint).flatMap { Int64($0) }
                let page = try await notifications.store.deliveries(
                    subscriptionId: subscription.id, state: state, limit: size, cursor: cursor)
                var response = Weft_V1_ListDeliveriesResponse()
                response.deliveries = page.items.map(Self.proto)
                response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
                return response
            },
        ]
    }

    static func notFound(_ id: String) -> RPCError { RPCError(code: .notFound, message: "subscription \(id) not found") }

    func subscription(_ workflowId: String, _ id: String, caller: Caller, needs: WorkflowRole) async throws -> SubscriptionRecord {
        guard !id.isEmpty else { throw APIError.required("subscription_id") }
        _ = try await deps.workflow(workflowId, caller: caller, needs: needs)
        guard let subscription = try await notifications.store.subscription(id: id), subscription.workflowId == workflowId else {
            throw Self.notFound(id)
        }
        caller.audit?.note(resource: ("subscription", id))
        return subscription
    }

    /// The events a request names: `events`, else the coarse `event_type`.
    static func events(_ request: Weft_V1_CreateSubscriptionRequest) throws -> (Set<NotificationEvent>, String) {
        if !request.events.isEmpty {
            guard request.eventType == .unspecified else {
                throw RPCError(code: .invalidArgument, message: "give events or event_type, not both")
            }
            var events = Set<NotificationEvent>()
            for name in request.events {
                guard let event = NotificationEvent(rawValue: name), event != .test else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "event \"\(name.prefix(80))\" is not one of \(NotificationEvent.subscribable.map(\.rawValue).joined(separator: ", "))")
                }
                events.insert(event)
            }
            return (events, "custom")
        }
        let coarse: String
        switch request.eventType {
        case .completion: coarse = "completion"
        case .failure: coarse = "failure"
        case .start: coarse = "start"
        case .any: coarse = "any"
        case .unspecified:
            throw RPCError(
                code: .invalidArgument,
                message: "events (e.g. [\"execution.failed\"]) or event_type (completion, failure, start, any) is required")
        case .UNRECOGNIZED(let value):
            throw RPCError(code: .invalidArgument, message: "event_type \(value) is not completion, failure, start or any")
        }
        return (Set(NotificationEvent.coarse(coarse) ?? []), coarse)
    }

    func create(_ request: Weft_V1_CreateSubscriptionRequest, _ context: ServerContext) async throws -> Weft_V1_Subscription {
        let caller = try Caller(context)
        let (events, eventType) = try Self.events(request)
        let channel: NotificationChannel
        switch request.notifyVia {
        case .email: channel = .email
        case .webhook: channel = .webhook
        case .slack: channel = .slack
        case .inApp: channel = .inApp
        case .unspecified: throw RPCError(code: .invalidArgument, message: "notify_via is required: email, webhook, slack or in_app")
        case .UNRECOGNIZED(let value):
            throw RPCError(code: .invalidArgument, message: "notify_via \(value) is not email, webhook, slack or in_app")
        }
        var deadline: Int?
        if events.contains(.executionDeadline) {
            guard request.deadlineSeconds > 0, request.deadlineSeconds <= Self.maxDeadlineSeconds else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "execution.deadline needs deadline_seconds from 1 to \(Self.maxDeadlineSeconds) (7 days)")
            }
            deadline = Int(request.deadlineSeconds)
        } else if request.deadlineSeconds != 0 {
            throw RPCError(code: .invalidArgument, message: "deadline_seconds is only for the execution.deadline event")
        }
        var filter: String?
        if !request.filter.isEmpty {
            do {
                _ = try Expression.parseEventFilter(request.filter)
            } catch {
                throw RPCError(code: .invalidArgument, message: "filter: \(error)")
            }
            filter = request.filter
        }
        // Viewers may have themselves told in-app; anything that sends
        // outside the server (and may use the workflow's integrations)
        // needs editor.
        let (workflow, _) = try await deps.workflow(
            request.workflowID, caller: caller, needs: channel == .inApp ? .viewer : .editor)
        var integrationId: String?
        if !request.integrationID.isEmpty {
            guard channel != .inApp else {
                throw RPCError(code: .invalidArgument, message: "in_app subscriptions take no integration")
            }
            guard let integration = try await notifications.store.integration(id: request.integrationID),
                integration.workflowId == workflow.id
            else {
                throw RPCError(code: .notFound, message: "integration \(request.integrationID) not found on workflow \(workflow.id)")
            }
            let kind = IntegrationKind(rawValue: integration.type)
            guard kind?.channel == channel else {
                throw RPCError(
                    code: .invalidArgument,
                    message: "integration \(integration.id) is a \(integration.type) integration; it cannot deliver \(channel.rawValue) notifications")
            }
            integrationId = integration.id
        }
        let destination = request.destination
        switch channel {
        case .email:
            guard EmailAddress.isValid(destination) else {
                throw RPCError(
                    code: .invalidArgument,
                    message: destination.isEmpty
                        ? "destination (the e-mail address to notify) is required for email"
                        : "destination \"\(destination.prefix(80))\" is not an e-mail address")
            }
        case .webhook, .slack:
            if integrationId == nil {
                guard !destination.isEmpty else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "destination (an http(s) URL) or integration_id is required for \(channel.rawValue)")
                }
                _ = try IntegrationSettings.checkURL(destination, field: "destination")
            } else if !destination.isEmpty {
                throw RPCError(code: .invalidArgument, message: "destination comes from the integration; leave it empty")
            }
        case .inApp:
            guard destination.isEmpty || destination == caller.userId else {
                throw RPCError(code: .invalidArgument, message: "in_app notifications go to the subscriber; leave destination empty")
            }
        }
        let existing = try await notifications.store.subscriptions(
            workflowId: workflow.id, limit: Self.maxPerWorkflow, cursor: nil)
        guard existing.items.count < Self.maxPerWorkflow else {
            throw RPCError(
                code: .resourceExhausted,
                message: "workflow \(workflow.id) has \(Self.maxPerWorkflow) subscriptions, the most a workflow may have")
        }
        let record = SubscriptionRecord(
            id: IDGenerator.make(IDGenerator.subscription, now: Date.nowMillis), workflowId: workflow.id, orgId: workflow.orgId,
            userId: caller.userId, eventType: eventType, events: events, channel: channel,
            destination: channel == .inApp ? "" : destination, integrationId: integrationId, filter: filter,
            deadlineSeconds: deadline, createdAt: Date.nowMillis)
        try await notifications.store.createSubscription(record)
        notifications.index.add(record)
        caller.audit?.note(resource: ("subscription", record.id))
        return Self.proto(record)
    }

    static func proto(_ record: SubscriptionRecord) -> Weft_V1_Subscription {
        var proto = Weft_V1_Subscription()
        proto.id = record.id
        proto.workflowID = record.workflowId
        switch record.eventType {
        case "completion": proto.eventType = .completion
        case "failure": proto.eventType = .failure
        case "start": proto.eventType = .start
        case "any": proto.eventType = .any
        default: proto.eventType = .unspecified
        }
        switch record.channel {
        case .email: proto.notifyVia = .email
        case .webhook: proto.notifyVia = .webhook
        case .slack: proto.notifyVia = .slack
        case .inApp: proto.notifyVia = .inApp
        }
        // A webhook or Slack URL often carries its token: shown masked, as
        // an integration's (use an integration to keep it sealed at rest too).
        switch record.channel {
        case .webhook, .slack:
            proto.destination = (try? IntegrationSettings.checkURL(record.destination, field: "destination")) ?? ""
        case .email, .inApp:
            proto.destination = record.destination
        }
        proto.userID = record.userId
        proto.createdAt = ProtoMapping.timestamp(record.createdAt)
        proto.events = record.events.map(\.rawValue).sorted()
        proto.integrationID = record.integrationId ?? ""
        proto.filter = record.filter ?? ""
        proto.deadlineSeconds = Int32(record.deadlineSeconds ?? 0)
        return proto
    }

    static func proto(_ record: DeliveryRecord) -> Weft_V1_Delivery {
        var proto = Weft_V1_Delivery()
        proto.id = record.entry.deliveryId
        proto.subscriptionID = record.entry.subscriptionId
        proto.workflowID = record.entry.workflowId
        proto.executionID = record.entry.executionId
        proto.event = record.entry.event.rawValue
        proto.channel = record.entry.channel.rawValue
        proto.state = record.state.rawValue
        proto.attempts = Int32(record.attempts)
        proto.createdAt = ProtoMapping.timestamp(record.entry.createdAt)
        if record.state == .pending { proto.nextAttemptAt = ProtoMapping.timestamp(record.nextAttemptAt) }
        if let delivered = record.deliveredAt { proto.deliveredAt = ProtoMapping.timestamp(delivered) }
        proto.lastError = record.lastError ?? ""
        proto.attemptLog = record.attemptLog.map { attempt in
            var log = Weft_V1_DeliveryAttempt()
            log.attempt = Int32(attempt.attempt)
            log.at = ProtoMapping.timestamp(attempt.at)
            log.outcome = attempt.outcome
            log.statusCode = Int32(attempt.statusCode)
            log.detail = attempt.detail
            log.durationMs = Int64(attempt.durationMs)
            return log
        }
        return proto
    }
}
