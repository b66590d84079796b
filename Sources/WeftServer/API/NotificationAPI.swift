import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.NotificationService: the caller's in-app notifications (listed,
/// marked read, streamed live) and organizations' message templates.
struct NotificationAPI: RPCService {
    static let name = "weft.v1.NotificationService"
    static let templates = "/orgs/{orgId}/notification-templates"
    static let maxMarked = 1000
    let deps: APIDependencies
    var notifications: NotificationServices { deps.notifications }

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "ListNotifications", rest: [.get("/notifications")]) {
                (request: Weft_V1_ListNotificationsRequest, context) in
                let caller = try Caller(context)
                let size = try Paging.size(request.pageSize)
                let fingerprint = Paging.query(request, caller: caller.userId) {
                    $0.pageToken = ""
                    $0.pageSize = 0
                }
                let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
                let page = try await notifications.store.notifications(
                    userId: caller.userId, unreadOnly: request.unreadOnly, limit: size, cursor: cursor)
                var response = Weft_V1_ListNotificationsResponse()
                response.notifications = page.items.map(Self.proto)
                response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
                response.unreadCount = Int64(try await notifications.store.unreadCount(userId: caller.userId))
                return response
            },
            .unary(service: Self.name, method: "MarkNotificationsRead", rest: [.post("/notifications/read")]) {
                (request: Weft_V1_MarkNotificationsReadRequest, context) in
                let caller = try Caller(context)
                guard request.all != !request.ids.isEmpty else {
                    throw RPCError(code: .invalidArgument, message: "give ids or all: true (one of them)")
                }
                guard request.ids.count <= Self.maxMarked else {
                    throw RPCError(code: .invalidArgument, message: "at most \(Self.maxMarked) ids at once")
                }
                var response = Weft_V1_MarkNotificationsReadResponse()
                response.marked = Int64(
                    try await notifications.store.markRead(userId: caller.userId, ids: request.ids, at: Date.nowMillis))
                return response
            },
            .serverStreaming(service: Self.name, method: "StreamNotifications", rest: [.get("/notifications/stream")]) {
                (_: Weft_V1_StreamNotificationsRequest, stream: ResponseStream<Weft_V1_Notification>, context) in
                let caller = try Caller(context)
                let release = try deps.streams.acquire(caller.userId)
                defer { release() }
                for await record in notifications.feed.subscribe(userId: caller.userId) {
                    try await stream.write(Self.proto(record))
                }
            },
            .unary(service: Self.name, method: "ListTemplates", rest: [.get(Self.templates)]) {
                (request: Weft_V1_ListTemplatesRequest, context) in
                let caller = try Caller(context)
                let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .member)
                let overrides = Dictionary(
                    try await notifications.store.templates(orgId: org.id).map { ($0.event, $0) }, uniquingKeysWith: { _, b in b })
                var response = Weft_V1_ListTemplatesResponse()
                for event in NotificationEvent.allCases {
                    response.templates.append(Self.proto(event, override: overrides[event.rawValue]))
                }
                return response
            },
            .unary(service: Self.name, method: "PutTemplate", rest: [.put(Self.templates + "/{event}")]) {
                (request: Weft_V1_PutTemplateRequest, context) in
                let caller = try Caller(context)
                let event = try Self.event(request.event)
                for (part, field) in [(request.subject, "subject"), (request.text, "text"), (request.html, "html")] {
                    guard part.utf8.count <= NotificationTemplates.maxPartBytes else {
                        throw RPCError(
                            code: .invalidArgument, message: "\(field) is longer than \(NotificationTemplates.maxPartBytes) bytes")
                    }
                    let unknown = NotificationTemplates.unknownPlaceholders(part)
                    guard unknown.isEmpty else {
                        throw RPCError(
                            code: .invalidArgument,
                            message: "\(field): unknown placeholder {{\(unknown[0])}}; placeholders: \(NotificationTemplates.placeholders.joined(separator: ", "))")
                    }
                }
                guard !(request.subject + request.text + request.html).isEmpty else {
                    throw RPCError(
                        code: .invalidArgument, message: "give at least one of subject, text, html (DELETE restores the built-in template)")
                }
                guard !request.subject.contains(where: \.isNewline) else {
                    throw RPCError(code: .invalidArgument, message: "subject must be one line")
                }
                let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .admin)
                let record = TemplateRecord(
                    orgId: org.id, event: event.rawValue, subject: request.subject, text: request.text, html: request.html,
                    updatedAt: Date.nowMillis, updatedBy: caller.userId)
                try await notifications.store.putTemplate(record)
                notifications.templates.forget(orgId: org.id)
                return Self.proto(event, override: record)
            },
            .unary(service: Self.name, method: "DeleteTemplate", rest: [.delete(Self.templates + "/{event}")]) {
                (request: Weft_V1_DeleteTemplateRequest, context) -> Weft_V1_DeleteTemplateResponse in
                let caller = try Caller(context)
                let event = try Self.event(request.event)
                let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .admin)
                guard try await notifications.store.deleteTemplate(orgId: org.id, event: event.rawValue) else {
                    throw RPCError(code: .notFound, message: "organization \(org.id) has no template of its own for \(event.rawValue)")
                }
                notifications.templates.forget(orgId: org.id)
                return Weft_V1_DeleteTemplateResponse()
            },
            .unary(service: Self.name, method: "PreviewTemplate", rest: [.post("/notification-templates/preview")]) {
                (request: Weft_V1_PreviewTemplateRequest, context) in try await preview(request, context)
            },
        ]
    }

    static func event(_ name: String) throws -> NotificationEvent {
        guard let event = NotificationEvent(rawValue: name) else {
            throw RPCError(
                code: .invalidArgument,
                message: name.isEmpty
                    ? "event is required"
                    : "event \"\(name.prefix(80))\" is not one of \(NotificationEvent.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return event
    }

    func preview(_ request: Weft_V1_PreviewTemplateRequest, _ context: ServerContext) async throws -> Weft_V1_PreviewTemplateResponse {
        let caller = try Caller(context)
        let event = try Self.event(request.event)
        for (part, field) in [(request.subject, "subject"), (request.text, "text"), (request.html, "html")] {
            guard part.utf8.count <= NotificationTemplates.maxPartBytes else {
                throw RPCError(code: .invalidArgument, message: "\(field) is longer than \(NotificationTemplates.maxPartBytes) bytes")
            }
            let unknown = NotificationTemplates.unknownPlaceholders(part)
            guard unknown.isEmpty else {
                throw RPCError(code: .invalidArgument, message: "\(field): unknown placeholder {{\(unknown[0])}}")
            }
        }
        guard !request.executionID.isEmpty else { throw APIError.required("execution_id") }
        guard let execution = try await deps.executions.execution(id: request.executionID) else {
            throw RPCError(code: .notFound, message: "execution \(request.executionID) not found")
        }
        let workflow: WorkflowRecord
        do {
            workflow = try await deps.workflow(execution.workflowId, caller: caller, needs: .viewer).0
        } catch let error as RPCError where error.code == .notFound {
            throw RPCError(code: .notFound, message: "execution \(request.executionID) not found")
        }
        var facts = EventFacts(
            event: event, workflowId: workflow.id, workflowName: workflow.name, orgId: workflow.orgId,
            executionId: execution.executionId, at: execution.completedAt ?? Date.nowMillis, status: execution.status.rawValue,
            trigger: execution.trigger.rawValue)
        facts.triggerId = execution.triggerId
        facts.startedAt = execution.startedAt ?? execution.createdAt
        facts.error = execution.error
        if let failed = execution.tasks.first(where: { $0.status == .failed }) {
            facts.taskKey = failed.taskKey
            facts.attempt = failed.attempt
        }
        if execution.trigger == .schedule {
            facts.scheduleId = execution.triggerId
            facts.scheduledAt = execution.scheduledAt
        }
        let stored = try await notifications.templates.template(orgId: workflow.orgId, event: event)
        var template = NotificationTemplates.effective(event, override: stored)
        if !request.subject.isEmpty { template.subject = request.subject }
        if !request.text.isEmpty { template.text = request.text }
        if !request.html.isEmpty { template.html = request.html }
        let entry = OutboxEntry(
            deliveryId: "dlv_preview", subscriptionId: "preview", workflowId: workflow.id, orgId: workflow.orgId,
            executionId: execution.executionId, event: event, channel: .webhook, payload: facts.payload, createdAt: facts.at,
            nextAttemptAt: facts.at)
        let link = NotificationDispatcher.link(publicURL: notifications.dispatcher.settings.publicURL, entry)
        let message = NotificationTemplates.render(template, values: NotificationTemplates.values(facts.payload, link: link))
        var response = Weft_V1_PreviewTemplateResponse()
        response.subject = message.subject
        response.text = message.text
        response.html = message.html
        switch request.channel {
        case "", "email", "in_app": break
        case "webhook": response.payload = NotificationPayloads.webhook(entry, message: message, link: link).jsonText()
        case "slack": response.payload = NotificationPayloads.slack(entry, message: message, link: link, config: .emptyObject).jsonText()
        default:
            throw RPCError(code: .invalidArgument, message: "channel \"\(request.channel.prefix(40))\" is not email, webhook, slack or in_app")
        }
        return response
    }

    static func proto(_ event: NotificationEvent, override: TemplateRecord?) -> Weft_V1_NotificationTemplate {
        let effective = NotificationTemplates.effective(event, override: override)
        var proto = Weft_V1_NotificationTemplate()
        proto.event = event.rawValue
        proto.subject = effective.subject
        proto.text = effective.text
        proto.html = effective.html
        proto.custom = override != nil
        if let override {
            proto.updatedAt = ProtoMapping.timestamp(override.updatedAt)
            proto.updatedBy = override.updatedBy
        }
        return proto
    }

    static func proto(_ record: NotificationRecord) -> Weft_V1_Notification {
        var proto = Weft_V1_Notification()
        proto.id = record.id
        proto.workflowID = record.workflowId
        proto.executionID = record.executionId
        proto.event = record.event
        proto.title = record.title
        proto.body = record.body
        proto.link = record.link
        proto.createdAt = ProtoMapping.timestamp(record.createdAt)
        if let read = record.readAt { proto.readAt = ProtoMapping.timestamp(read) }
        proto.read = record.readAt != nil
        proto.deliveryID = record.deliveryId
        return proto
    }
}
