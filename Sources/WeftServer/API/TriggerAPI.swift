import Foundation
import SwiftProtobuf
import WeftEngine
import WeftObservability
import WeftProto
import WeftRPC
import WeftStore

/// weft.v1.TriggerService: webhook and event triggers of a workflow, and
/// webhook deliveries (`POST /hooks/{triggerId}`, no credentials: the
/// unguessable id is the capability, an HMAC signature optional on top).
struct TriggerAPI: RPCService {
    static let name = "weft.v1.TriggerService"
    static let collection = "/workflows/{workflowId}/triggers"
    static let maxPerWorkflow = 100
    static let defaultSignatureHeader = "X-Weft-Signature"
    static let defaultTimestampHeader = "X-Weft-Timestamp"
    static let secretBytes = 16...256
    static let toleranceRange: ClosedRange<Int64> = 1000...86_400_000
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "CreateTrigger", rest: [.post(Self.collection, status: 201)]) {
                (request: Weft_V1_CreateTriggerRequest, context) in try await create(request, context)
            },
            .unary(service: Self.name, method: "ListTriggers", rest: [.get(Self.collection)]) {
                (request: Weft_V1_ListTriggersRequest, context) in
                let caller = try Caller(context)
                _ = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
                var response = Weft_V1_ListTriggersResponse()
                response.triggers = try await deps.schedules.triggers(workflowId: request.workflowID).map(Self.proto)
                return response
            },
            .unary(service: Self.name, method: "GetTrigger", rest: [.get(Self.collection + "/{triggerId}")]) {
                (request: Weft_V1_GetTriggerRequest, context) in
                let caller = try Caller(context)
                return Self.proto(try await trigger(request.workflowID, request.triggerID, caller: caller, needs: .viewer))
            },
            .unary(service: Self.name, method: "DeleteTrigger", rest: [.delete(Self.collection + "/{triggerId}")]) {
                (request: Weft_V1_DeleteTriggerRequest, context) -> Weft_V1_DeleteTriggerResponse in
                let caller = try Caller(context)
                let trigger = try await trigger(request.workflowID, request.triggerID, caller: caller, needs: .editor)
                guard try await deps.schedules.deleteTrigger(id: trigger.id) else { throw Self.notFound(trigger.id) }
                deps.triggers.forget(trigger.id)
                return Weft_V1_DeleteTriggerResponse()
            },
            // Anyone may call it (.publicAuth: no credentials, but the rate
            // limiter sees it, as the execute class per client address).
            .unary(
                service: Self.name, method: "DeliverWebhook", rest: [.postRaw("/hooks/{triggerId}", field: "body", status: 202)],
                access: .publicAuth
            ) { (request: Weft_V1_WebhookDelivery, context) in try await WebhookDelivery(deps: deps).deliver(request, context) },
        ]
    }

    static func notFound(_ id: String) -> RPCError { RPCError(code: .notFound, message: "trigger \(id) not found") }

    func trigger(_ workflowId: String, _ triggerId: String, caller: Caller, needs: WorkflowRole) async throws -> TriggerRecord {
        guard !triggerId.isEmpty else { throw APIError.required("trigger_id") }
        _ = try await deps.workflow(workflowId, caller: caller, needs: needs)
        guard let trigger = try await deps.schedules.trigger(id: triggerId), trigger.workflowId == workflowId else {
            throw Self.notFound(triggerId)
        }
        caller.audit?.note(resource: ("trigger", triggerId))
        return trigger
    }

    /// A header name: an HTTP token, at most 64 characters.
    static func checkHeader(_ name: String, field: String) throws {
        let token = CharacterSet(charactersIn: "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        guard !name.isEmpty, name.utf8.count <= 64, name.unicodeScalars.allSatisfy(token.contains) else {
            throw RPCError(code: .invalidArgument, message: "\(field) \"\(name)\" is not an HTTP header name (at most 64 token characters)")
        }
    }

    static func checkEventName(_ name: String) throws {
        let allowed = CharacterSet(charactersIn: "._:/-").union(.alphanumerics)
        guard !name.isEmpty else { throw APIError.required("event_name") }
        guard name.utf8.count <= 128, name.unicodeScalars.allSatisfy({ $0.isASCII && allowed.contains($0) }) else {
            throw RPCError(
                code: .invalidArgument,
                message: "event name \"\(name.prefix(140))\" must be 1 to 128 characters of letters, digits and . _ : / -")
        }
    }

    func create(_ request: Weft_V1_CreateTriggerRequest, _ context: ServerContext) async throws -> Weft_V1_Trigger {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: request.workflowID)
        guard request.description_p.utf8.count <= ScheduleAPI.maxDescriptionBytes else {
            throw RPCError(code: .invalidArgument, message: "description is longer than \(ScheduleAPI.maxDescriptionBytes) bytes")
        }
        guard let kind = TriggerRecord.Kind(rawValue: request.type) else {
            throw RPCError(
                code: .invalidArgument,
                message: request.type.isEmpty ? "type is required (\"webhook\" or \"event\")" : "type \"\(request.type)\" is not \"webhook\" or \"event\"")
        }
        let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
        guard try await deps.schedules.triggers(workflowId: workflow.id).count < Self.maxPerWorkflow else {
            throw RPCError(
                code: .failedPrecondition,
                message: "workflow \(workflow.id) has \(Self.maxPerWorkflow) triggers, the most a workflow may have; delete one first")
        }
        let now = Date.nowMillis
        // 128 random bits: the URL is the capability.
        let id = "hk_" + Hex.encode(Crypto.randomBytes(16))
        var record = TriggerRecord(
            id: id, workflowId: workflow.id, orgId: workflow.orgId, kind: kind, description: request.description_p,
            createdBy: caller.userId, createdAt: now)
        switch kind {
        case .webhook:
            for (value, field) in [(request.eventName, "event_name"), (request.filter, "filter")] where !value.isEmpty {
                throw RPCError(code: .invalidArgument, message: "\(field) is for event triggers, not webhooks")
            }
            if !request.idempotencyHeader.isEmpty {
                try Self.checkHeader(request.idempotencyHeader, field: "idempotency_header")
                record.idempotencyHeader = request.idempotencyHeader.lowercased()
            }
            let signed = !request.signatureSecret.isEmpty
            if !signed, !request.signatureHeader.isEmpty || !request.timestampHeader.isEmpty || request.hasTimestampTolerance {
                throw RPCError(
                    code: .invalidArgument,
                    message: "signature_header, timestamp_header and timestamp_tolerance need a signature_secret")
            }
            if signed {
                guard Self.secretBytes.contains(request.signatureSecret.utf8.count) else {
                    throw RPCError(
                        code: .invalidArgument,
                        message: "signature_secret must be \(Self.secretBytes.lowerBound) to \(Self.secretBytes.upperBound) bytes, got \(request.signatureSecret.utf8.count)")
                }
                let signatureHeader = request.signatureHeader.isEmpty ? Self.defaultSignatureHeader : request.signatureHeader
                try Self.checkHeader(signatureHeader, field: "signature_header")
                record.signatureHeader = signatureHeader.lowercased()
                switch request.timestampHeader {
                case "-": record.timestampHeader = ""
                case "": record.timestampHeader = Self.defaultTimestampHeader.lowercased()
                default:
                    try Self.checkHeader(request.timestampHeader, field: "timestamp_header")
                    record.timestampHeader = request.timestampHeader.lowercased()
                }
                if request.hasTimestampTolerance {
                    let ms = try ProtoMapping.milliseconds(request.timestampTolerance, field: "timestamp_tolerance")
                    guard Self.toleranceRange.contains(ms) else {
                        throw RPCError(code: .invalidArgument, message: "timestamp_tolerance must be from 1s to 24h")
                    }
                    record.toleranceSeconds = Int(ms / 1000)
                }
                do {
                    record.sealedSecret = try deps.vault.sealTriggerSecret(request.signatureSecret, orgId: workflow.orgId, triggerId: id)
                } catch let error as SecretError {
                    throw RPCError(code: .failedPrecondition, message: "signed webhooks: \(error.description)")
                }
            }
        case .event:
            for (value, field) in [
                (request.signatureSecret, "signature_secret"), (request.signatureHeader, "signature_header"),
                (request.timestampHeader, "timestamp_header"), (request.idempotencyHeader, "idempotency_header"),
            ] where !value.isEmpty {
                throw RPCError(code: .invalidArgument, message: "\(field) is for webhook triggers, not event triggers")
            }
            try Self.checkEventName(request.eventName)
            record.eventName = request.eventName
            if !request.filter.isEmpty {
                do {
                    _ = try Expression.parseEventFilter(request.filter)
                } catch {
                    throw RPCError(code: .invalidArgument, message: "filter: \(error)")
                }
                record.filter = request.filter
            }
        }
        try await deps.schedules.createTrigger(record)
        caller.audit?.note(resource: ("trigger", id))
        return Self.proto(record)
    }

    static func proto(_ record: TriggerRecord) -> Weft_V1_Trigger {
        var trigger = Weft_V1_Trigger()
        trigger.id = record.id
        trigger.workflowID = record.workflowId
        trigger.type = record.kind.rawValue
        trigger.description_p = record.description
        trigger.createdAt = ProtoMapping.timestamp(record.createdAt)
        trigger.createdBy = record.createdBy
        if let fired = record.lastFiredAt { trigger.lastFiredAt = ProtoMapping.timestamp(fired) }
        trigger.firedCount = record.firedCount
        switch record.kind {
        case .webhook:
            trigger.url = "/hooks/\(record.id)"
            trigger.signed = record.sealedSecret != nil
            trigger.signatureHeader = record.signatureHeader
            trigger.timestampHeader = record.timestampHeader
            if record.sealedSecret != nil, !record.timestampHeader.isEmpty {
                trigger.timestampTolerance = ProtoMapping.duration(ms: Int64(record.toleranceSeconds) * 1000)
            }
            trigger.idempotencyHeader = record.idempotencyHeader
        case .event:
            trigger.eventName = record.eventName
            trigger.filter = record.filter
        }
        return trigger
    }
}

/// One webhook call: find the trigger, check its signature, start the
/// execution (quotas as ExecuteWorkflow), answer 202.
struct WebhookDelivery {
    let deps: APIDependencies

    func refuse(_ outcome: String, _ error: RPCError) -> RPCError {
        deps.schedulerMetrics.webhook(outcome)
        return error
    }

    func deliver(_ request: Weft_V1_WebhookDelivery, _ context: ServerContext) async throws -> Weft_V1_WebhookResponse {
        let span = WeftTracing.start(SpanNames.webhook)
        span?.attributes[SpanKeys.triggerId] = request.triggerID
        defer { span?.end() }
        guard !request.triggerID.isEmpty, let trigger = try await deps.triggers.trigger(id: request.triggerID),
            trigger.kind == .webhook
        else {
            throw refuse("not_found", RPCError(code: .notFound, message: "webhook \(request.triggerID) not found"))
        }
        // Admission control before the signature check (an HMAC) and any
        // store access: the trigger comes from the trigger book's cache.
        if let refusal = deps.admissionRefusal(source: "webhook") { throw refuse("overloaded", refusal) }
        let body = request.body
        var idempotencyKey: String?
        var replayable = false
        var signature: String?
        if let sealed = trigger.sealedSecret {
            let secret: String
            do {
                secret = try deps.vault.openTriggerSecret(sealed, orgId: trigger.orgId, triggerId: trigger.id)
            } catch let error as SecretError {
                throw RPCError(code: .unavailable, message: "webhook \(trigger.id): its signing key cannot be opened: \(error.description)")
            }
            let digest = try verify(trigger, body: body, secret: secret, metadata: context.requestMetadata)
            if let digest {
                // A signed, timestamped request is good once: a replay within
                // the tolerance names the execution it started (409), durably
                // through the key; with an idempotency header (which the
                // signature does not cover) this process refuses replays too.
                idempotencyKey = "hook:sig:" + digest
                replayable = true
                signature = digest
            }
        }
        let input: JSONValue
        do {
            input = try JSONValue(jsonText: String(decoding: body, as: UTF8.self))
        } catch {
            throw refuse("bad_body", RPCError(code: .invalidArgument, message: "the webhook body must be a JSON object: \(error)"))
        }
        guard case .object = input else {
            throw refuse("bad_body", RPCError(code: .invalidArgument, message: "the webhook body must be a JSON object"))
        }
        let cap = deps.engine.limits.maxExecutionBytes
        guard body.count <= cap else {
            throw refuse(
                "bad_body", RPCError(code: .invalidArgument, message: "the webhook body is larger than an execution's input cap of \(cap) bytes"))
        }
        if !trigger.idempotencyHeader.isEmpty, let value = context.requestMetadata[string: trigger.idempotencyHeader],
            !value.isEmpty
        {
            guard value.utf8.count <= APILimits.idempotencyKeyMaxBytes else {
                throw refuse(
                    "bad_body",
                    RPCError(
                        code: .invalidArgument,
                        message: "\(trigger.idempotencyHeader) is longer than \(APILimits.idempotencyKeyMaxBytes) bytes"))
            }
            idempotencyKey = "hook:key:" + value
            replayable = false
            if let signature,
                !deps.triggers.firstUse(
                    ofSignature: trigger.id + signature, key: value,
                    expires: Date().addingTimeInterval(Double(2 * trigger.toleranceSeconds)))
            {
                throw refuse(
                    "replayed",
                    RPCError(
                        code: .alreadyExists,
                        message: "this signed request was delivered before with another \(trigger.idempotencyHeader); sign each delivery with a new timestamp"))
            }
        }
        guard let workflow = try await deps.workflows.workflow(id: trigger.workflowId, includeDeleted: false) else {
            throw refuse("not_found", RPCError(code: .notFound, message: "webhook \(trigger.id) not found (its workflow was deleted)"))
        }
        guard let org = try await deps.quotas.organization(id: workflow.orgId) else {
            throw RPCError(code: .failedPrecondition, message: "workflow \(workflow.id) belongs to no organization")
        }
        do {
            try await deps.quotas.reserveExecution(org)
        } catch {
            deps.schedulerMetrics.webhook("refused")
            throw error
        }
        let started: (record: ExecutionRecord, created: Bool)
        do {
            started = try await WeftTracing.withContext(span?.context) {
                try await deps.engine.start(
                    workflow, input: input, idempotencyKey: idempotencyKey.map { key in
                        // Stored per workflow: scope it to the trigger.
                        "\(trigger.id):\(key)"
                    }, trigger: .webhook, actor: trigger.createdBy, maxRunning: deps.quotas.plan(of: org).concurrentExecutions,
                    origin: Engine.Origin(triggerId: trigger.id))
            }
        } catch {
            deps.quotas.unreserveExecution(org)
            if case EngineError.tooManyRunning = error {
                deps.quotas.countRejection("concurrent_executions")
                deps.schedulerMetrics.webhook("refused")
            }
            throw error
        }
        var response = Weft_V1_WebhookResponse()
        response.executionID = started.record.executionId
        response.status = started.record.status.rawValue
        if !started.created {
            deps.quotas.unreserveExecution(org)
            if replayable {
                throw refuse(
                    "replayed",
                    RPCError(
                        code: .alreadyExists,
                        message: "this signed request was delivered before and started execution \(started.record.executionId); sign each delivery with a new timestamp"))
            }
            response.duplicate = true
            deps.schedulerMetrics.webhook("duplicate")
            return response
        }
        deps.schedulerMetrics.webhook("accepted")
        deps.triggers.fired(trigger.id, at: Date.nowMillis)
        return response
    }

    /// Checks the signature (and timestamp); returns a digest of the signed
    /// content when it carried a timestamp (for the replay check), nil for
    /// body-only signatures.
    func verify(_ trigger: TriggerRecord, body: Data, secret: String, metadata: Metadata) throws -> String? {
        guard let header = metadata[string: trigger.signatureHeader], !header.isEmpty else {
            throw refuse(
                "bad_signature", RPCError(code: .unauthenticated, message: "the \(trigger.signatureHeader) header is missing; this webhook is signed"))
        }
        var signed = [UInt8]()
        if !trigger.timestampHeader.isEmpty {
            // Unix seconds from 1970 to 2100 (no arithmetic on anything else).
            guard let text = metadata[string: trigger.timestampHeader], let timestamp = Int64(text),
                (0...4_102_444_800).contains(timestamp)
            else {
                throw refuse(
                    "bad_signature",
                    RPCError(
                        code: .unauthenticated,
                        message: "the \(trigger.timestampHeader) header is missing or not a time in unix seconds"))
            }
            let skew = abs(Int64(Date().timeIntervalSince1970) - timestamp)
            guard skew <= Int64(trigger.toleranceSeconds) else {
                throw refuse(
                    "stale",
                    RPCError(
                        code: .unauthenticated,
                        message: "the \(trigger.timestampHeader) timestamp is \(skew) s away from the server's clock (tolerance \(trigger.toleranceSeconds) s): stale or replayed"))
            }
            signed.append(contentsOf: Array("\(timestamp).".utf8))
        }
        signed.append(contentsOf: body)
        let expected = Crypto.hmacSHA256(key: Array(secret.utf8), data: signed)
        let given = header.hasPrefix("sha256=") ? String(header.dropFirst(7)) : header
        guard let bytes = Hex.decode(given.lowercased()), Crypto.constantTimeEqual(bytes, expected) else {
            throw refuse(
                "bad_signature",
                RPCError(
                    code: .unauthenticated,
                    message: "the \(trigger.signatureHeader) signature does not match (expected sha256=<hex HMAC-SHA256 of \(trigger.timestampHeader.isEmpty ? "the body" : "\"<timestamp>.<body>\"")>)"))
        }
        return trigger.timestampHeader.isEmpty ? nil : Hex.encode(Crypto.sha256(signed))
    }
}

/// weft.v1.EventService: published events start the workflows whose
/// event triggers listen for them.
struct EventAPI: RPCService {
    static let name = "weft.v1.EventService"
    static let maxEventIdBytes = 128
    /// Workflows one event may start.
    static let maxFanOut = 1000
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "PublishEvent", rest: [.post("/events")]) {
                (request: Weft_V1_PublishEventRequest, context) in try await publish(request, context)
            }
        ]
    }

    func publish(_ request: Weft_V1_PublishEventRequest, _ context: ServerContext) async throws -> Weft_V1_PublishEventResponse {
        let caller = try Caller(context)
        try TriggerAPI.checkEventName(request.name)
        guard request.eventID.utf8.count <= Self.maxEventIdBytes else {
            throw RPCError(code: .invalidArgument, message: "event_id is longer than \(Self.maxEventIdBytes) bytes")
        }
        let payload = request.hasPayload ? try ProtoMapping.jsonValue(request.payload, field: "payload") : JSONValue.emptyObject
        let cap = deps.engine.limits.maxExecutionBytes
        guard payload.encodedSize(limit: cap) <= cap else {
            throw RPCError(code: .invalidArgument, message: "payload is larger than an execution's input cap of \(cap) bytes")
        }
        let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .member)
        let span = WeftTracing.start(SpanNames.eventPublish)
        span?.attributes[SpanKeys.eventName] = request.name
        defer { span?.end() }
        let eventId = request.eventID.isEmpty ? IDGenerator.make("evt") : request.eventID
        var response = Weft_V1_PublishEventResponse()
        response.eventID = eventId
        if let earlier = try await deps.schedules.event(orgId: org.id, eventId: eventId) {
            response.executionIds = earlier
            response.duplicate = true
            deps.schedulerMetrics.eventPublished(duplicate: true, executions: 0)
            return response
        }
        var started: [String] = []
        var repeated = false
        var workflowsStarted: Set<String> = []
        let triggers = try await deps.schedules.eventTriggers(orgId: org.id, eventName: request.name)
        guard triggers.count <= Self.maxFanOut else {
            throw RPCError(
                code: .failedPrecondition,
                message: "\(triggers.count) event triggers listen for \"\(request.name)\", more than \(Self.maxFanOut); an event starts at most \(Self.maxFanOut) workflows")
        }
        for trigger in triggers {
            // One execution per workflow, whichever of its triggers matched first.
            guard !workflowsStarted.contains(trigger.workflowId) else { continue }
            if !trigger.filter.isEmpty {
                guard let filter = try? Expression.parseEventFilter(trigger.filter),
                    filter.evaluate(Expression.Context(input: payload)).isTruthy
                else { continue }
            }
            // The publisher must be allowed to run the workflow (an API key
            // limited to other workflows starts nothing there).
            guard (try? caller.requireExecute(workflowId: trigger.workflowId)) != nil,
                let workflow = try await deps.workflows.workflow(id: trigger.workflowId, includeDeleted: false)
            else { continue }
            try await deps.quotas.reserveExecution(org)
            do {
                let (record, created) = try await WeftTracing.withContext(span?.context) {
                    try await deps.engine.start(
                        workflow, input: payload, idempotencyKey: "event:\(eventId)", trigger: .event, actor: caller.userId,
                        maxRunning: deps.quotas.plan(of: org).concurrentExecutions,
                        origin: Engine.Origin(triggerId: "\(request.name)/\(eventId)"))
                }
                if !created {
                    deps.quotas.unreserveExecution(org)
                    repeated = true
                }
                started.append(record.executionId)
                workflowsStarted.insert(trigger.workflowId)
            } catch {
                deps.quotas.unreserveExecution(org)
                throw error
            }
            deps.triggers.fired(trigger.id, at: Date.nowMillis)
        }
        try await deps.schedules.recordEvent(orgId: org.id, eventId: eventId, name: request.name, executionIds: started, at: Date.nowMillis)
        response.executionIds = started
        // Published before, by a call that failed before recording it.
        response.duplicate = repeated && !started.isEmpty
        deps.schedulerMetrics.eventPublished(duplicate: response.duplicate, executions: repeated ? 0 : started.count)
        return response
    }
}
