import WeftEngine
import WeftStore

/// What the server enforces on request fields, as JSON Schema keywords for
/// the OpenAPI document, built from the values the handlers check
/// (`APILimits`, `WorkflowDefinition`, `TaskTypes`), so that every request
/// the document calls valid is one the server takes, and the document says
/// what a refused one did wrong.
///
/// Lengths: JSON Schema counts Unicode code points. A limit the server
/// counts in characters (grapheme clusters, never more than code points) is
/// published as is; a limit in UTF-8 bytes as a quarter of it (four bytes
/// at most per code point), with the byte limit alongside
/// (`x-weft-max-utf8-bytes`).
enum APIConstraints {
    struct Field {
        var keywords: [String: Any] = [:]
        var required = false

        static func required(_ keywords: [String: Any] = [:]) -> Field { Field(keywords: keywords, required: true) }
    }

    // MARK: Building blocks

    static func bytes(_ limit: Int) -> [String: Any] { ["maxLength": limit / 4, "x-weft-max-utf8-bytes": limit] }

    static func duration(_ range: DurationRange) -> [String: Any] {
        ["type": "string", "pattern": SchemaPatterns.duration(range)]
    }

    /// Not blank (some character other than white space) and no NUL.
    static let nonBlank = #"^[^\u0000]*[^\s\u0000\u180e\u200b-\u200d\u2060\ufeff][^\u0000]*$"#
    static let noNUL = #"^[^\u0000]*$"#
    static var pageSize: Field { Field(keywords: ["minimum": 0]) }
    static let secretName = #"^[A-Za-z][A-Za-z0-9_]{0,63}$"#
    static let email = #"^[^@\s\u0000-\u001f\u007f-\u009f]+@[^@\s\u0000-\u001f\u007f-\u009f.]+(\.[^@\s\u0000-\u001f\u007f-\u009f.]+)+$"#
    static let queueName = #"^[A-Za-z0-9._-]{1,64}$"#
    static let leaseToken = #"^[1-9][0-9]{0,17}\.[A-Za-z0-9_-]{1,64}$"#
    static let key = #"^[A-Za-z][A-Za-z0-9_-]{0,63}$"#
    static let eventName = #"^[A-Za-z0-9._:/-]{1,128}$"#

    static var budget: [String: Field] {
        [
            "monthlyLimitUsd": .required(["minimum": 0, "exclusiveMinimum": true, "maximum": AnalyticsAPI.maxBudgetUsd]),
            "timeZone": Field(keywords: ["maxLength": 64]),
        ]
    }

    static var scheduleSettings: [String: Field] {
        [
            "cron": .required(["minLength": 1, "maxLength": CronExpression.maxLength]),
            "description": Field(keywords: bytes(ScheduleAPI.maxDescriptionBytes)),
            "overlapPolicy": Field(keywords: ["enum": [""] + OverlapPolicy.allCases.map(\.rawValue)]),
            "catchupPolicy": Field(keywords: ["enum": [""] + CatchUpPolicy.allCases.map(\.rawValue)]),
        ]
    }

    static var taskTimeout: [String: Any] {
        duration(DurationRange(minMs: 0, maxMs: WorkflowDefinition.maxTimeoutMs, minExclusive: true))
    }

    static let backoff = DurationRange(minMs: 0, maxMs: WorkflowDefinition.maxBackoffMs)
    static let totalTimeout = DurationRange(minMs: 0, maxMs: WorkflowDefinition.maxTotalTimeoutMs, minExclusive: true)

    /// A task definition's fields (create, update, inside workflows).
    static var task: [String: Field] {
        [
            "name": .required(["pattern": nonBlank, "maxLength": WorkflowDefinition.maxNameLength]),
            "description": Field(keywords: ["pattern": noNUL]),
            "key": Field(keywords: ["pattern": #"^$|^[A-Za-z][A-Za-z0-9_-]{0,63}$"#]),
            "action": .required(["enum": TaskType.builtin.map(\.rawValue)]),
            "dependsOn": Field(keywords: ["uniqueItems": true, "items": ["type": "string", "pattern": key]]),
            "timeout": Field(keywords: taskTimeout),
        ]
    }

    /// A task's `config` for each type, as `TaskTypes.validate` checks it
    /// (unknown fields refused): one `oneOf` branch per `action`. Values
    /// may hold `{{ templates }}`; one that does not parse is refused with
    /// its position (not something a schema can say).
    static var taskVariants: [[String: Any]] {
        let any: [String: Any] = [:]
        let template = #"^\{\{"#
        let durationText =
            #"^(?:[0-9]{1,6}ms|[0-9]{1,5}s|[0-9]{1,4}m|[0-9]{1,3}h|(?:[0-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d)$"#
        let configs: [(TaskType, properties: [String: Any], required: [String], extra: [String: Any])] = [
            (.noop, ["output": any], [], [:]),
            (.log, ["message": ["type": "string"], "level": ["enum": ["Info", "Warning", "Error"]]], [], [:]),
            (.http, [
                "url": ["type": "string", "pattern": #"^(?:[hH][tT][tT][pP][sS]?://|\{\{)"#],
                "method": ["enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]],
                "headers": ["type": "object", "additionalProperties": ["type": "string"]],
                "body": any,
                "expectedStatus": ["type": "array", "minItems": 1, "items": ["type": "integer", "minimum": 100, "maximum": 599]],
                "followRedirects": ["type": "boolean"],
                "integration": ["type": "string", "pattern": #"^int_.{1,60}$"#],
            ], ["url"], [:]),
            (.delay, [
                "duration": ["type": "string", "pattern": durationText],
                "until": ["type": "string", "anyOf": [["pattern": SchemaPatterns.timestamp], ["pattern": template]]],
            ], [], ["oneOf": [["required": ["duration"]], ["required": ["until"]]]]),
            (.transform, ["output": any], ["output"], [:]),
            (.condition, [
                "expression": ["type": "string", "pattern": nonBlank],
                "then": ["type": "array", "items": ["type": "string"]],
                "else": ["type": "array", "items": ["type": "string"]],
            ], ["expression"], [:]),
            (.external, ["queue": ["type": "string", "pattern": queueName], "input": any], ["queue"], [:]),
        ]
        return configs.map { type, properties, required, extra in
            var config: [String: Any] = ["type": "object", "properties": properties, "additionalProperties": false]
            if !required.isEmpty { config["required"] = required }
            for (keyword, value) in extra { config[keyword] = value }
            var variant: [String: Any] = ["properties": ["action": ["enum": [type.rawValue]], "config": config]]
            // A type with required config fields needs a config.
            if !required.isEmpty || !extra.isEmpty { variant["required"] = ["config"] }
            return variant
        }
    }

    /// Messages that are a task definition: `taskVariants` apply.
    static let taskMessages: Set<String> = ["weft.v1.Task", "weft.v1.CreateTaskRequest", "weft.v1.UpdateTaskRequest"]

    /// Message name -> JSON field name -> what the server enforces.
    static var messages: [String: [String: Field]] {
        let workflowName: [String: Any] = ["pattern": nonBlank, "maxLength": WorkflowDefinition.maxNameLength]
        let workflowDescription: [String: Any] = ["pattern": noNUL, "maxLength": WorkflowDefinition.maxDescriptionLength]
        let tasks: [String: Any] = ["maxItems": WorkflowDefinition.maxTasks]
        let role: [String: Any] = ["enum": ["viewer", "editor"]]
        let leaseDuration = duration(APILimits.leaseDuration)
        let token = Field.required(["pattern": leaseToken])
        let logLines: [String: Any] = [
            "maxItems": APILimits.logLinesMax, "items": ["type": "string"].merging(bytes(APILimits.logLineMaxBytes)) { $1 },
        ]
        return [
            "weft.v1.RegisterRequest": [
                "email": .required(["pattern": email].merging(bytes(APILimits.emailMaxBytes)) { $1 }),
                "password": .required(["minLength": APILimits.passwordMinCharacters].merging(bytes(APILimits.passwordMaxBytes)) { $1 }),
                "name": .required(["pattern": nonBlank, "maxLength": APILimits.nameMaxCharacters]),
            ],
            "weft.v1.CreateInvitationRequest": [
                "email": .required(["pattern": email].merging(bytes(APILimits.emailMaxBytes)) { $1 }),
                "role": Field(keywords: ["enum": ["member", "admin"]]),
            ],
            "weft.v1.CreateSecretRequest": [
                "name": .required(["pattern": secretName]),
                "value": .required(["minLength": 4].merging(bytes(64 * 1024)) { $1 }),
            ],
            "weft.v1.UpdateSecretRequest": [
                "name": .required(["pattern": secretName]),
                "value": .required(["minLength": 4].merging(bytes(64 * 1024)) { $1 }),
            ],
            "weft.v1.DeleteSecretRequest": ["name": .required(["pattern": secretName])],
            "weft.v1.UpdateMemberRoleRequest": ["role": .required(["enum": ["member", "admin"]])],
            "weft.v1.ListAuditEventsRequest": ["orgId": .required(["minLength": 1])],
            "weft.v1.LoginRequest": [
                "email": .required(["minLength": 1].merging(bytes(APILimits.emailMaxBytes)) { $1 }),
                "password": .required(["minLength": 1].merging(bytes(APILimits.passwordMaxBytes)) { $1 }),
            ],
            "weft.v1.RefreshRequest": ["refreshToken": .required(["minLength": 1, "maxLength": 256])],
            "weft.v1.ChangePasswordRequest": [
                "currentPassword": .required(["minLength": 1].merging(bytes(APILimits.passwordMaxBytes)) { $1 }),
                "newPassword": .required(["minLength": APILimits.passwordMinCharacters].merging(bytes(APILimits.passwordMaxBytes)) { $1 }),
            ],
            "weft.v1.CreateApiKeyRequest": [
                "name": .required(["pattern": nonBlank, "maxLength": APILimits.nameMaxCharacters]),
                "scopes": .required(["minItems": 1, "items": ["type": "string", "enum": ["read", "execute", "worker", "admin"]]]),
                "workflowIds": Field(keywords: ["maxItems": 100, "items": ["type": "string", "minLength": 1]]),
                "queues": Field(keywords: ["maxItems": 100, "items": ["type": "string", "pattern": queueName]]),
                "clientCertCn": Field(keywords: ["pattern": noNUL].merging(bytes(256)) { $1 }),
            ],
            "weft.v1.CreateWorkflowRequest": [
                "name": .required(workflowName), "description": Field(keywords: workflowDescription),
                "tasks": Field(keywords: tasks),
            ],
            "weft.v1.UpdateWorkflowRequest": [
                "name": .required(workflowName), "description": Field(keywords: workflowDescription),
                "tasks": Field(keywords: tasks),
            ],
            "weft.v1.Task": task,
            "weft.v1.CreateTaskRequest": task.merging(["workflowId": .required(["minLength": 1])]) { $1 },
            "weft.v1.UpdateTaskRequest": task,
            "weft.v1.RetryPolicy": [
                // 0 is proto3's "unset" (the default policy).
                "maxAttempts": Field(keywords: ["minimum": 0, "maximum": WorkflowDefinition.maxAttempts.upperBound]),
                "initialBackoff": Field(keywords: duration(backoff)),
                "maxBackoff": Field(keywords: duration(backoff)),
                "backoffMultiplier": Field(
                    keywords: ["anyOf": [
                        ["enum": [0]],
                        [
                            "minimum": WorkflowDefinition.backoffMultiplier.lowerBound,
                            "maximum": WorkflowDefinition.backoffMultiplier.upperBound,
                        ],
                    ]]),
                "jitter": Field(keywords: ["minimum": 0, "maximum": 1]),
                "retryableErrors": Field(keywords: ["items": ["enum": WorkflowDefinition.retryableErrorKinds.sorted()]]),
                "totalTimeout": Field(keywords: duration(totalTimeout)),
            ],
            "weft.v1.SearchWorkflowsRequest": [
                "query": .required(["pattern": nonBlank].merging(bytes(APILimits.searchQueryMaxBytes)) { $1 }),
                "pageSize": pageSize,
            ],
            "weft.v1.ListWorkflowsRequest": ["pageSize": pageSize],
            "weft.v1.ListTasksRequest": ["pageSize": pageSize],
            "weft.v1.ListCollaboratorsRequest": ["pageSize": pageSize],
            "weft.v1.ListVersionsRequest": ["pageSize": pageSize],
            "weft.v1.ListExecutionsRequest": ["pageSize": pageSize],
            "weft.v1.GetExecutionLogsRequest": ["pageSize": pageSize],
            "weft.v1.ListSchedulesRequest": ["pageSize": pageSize],
            "weft.v1.ListSubscriptionsRequest": ["pageSize": pageSize],
            "weft.v1.ListIntegrationsRequest": ["pageSize": pageSize],
            // Notifications (which destination a channel needs and which
            // settings an integration type takes are cross-field rules: the
            // server's to check).
            "weft.v1.ListDeliveriesRequest": [
                "pageSize": pageSize, "state": Field(keywords: ["enum": [""] + DeliveryState.allCases.map(\.rawValue)]),
            ],
            "weft.v1.ListNotificationsRequest": ["pageSize": pageSize],
            "weft.v1.MarkNotificationsReadRequest": ["ids": Field(keywords: ["maxItems": NotificationAPI.maxMarked])],
            "weft.v1.CreateSubscriptionRequest": [
                "events": Field(keywords: ["items": ["enum": NotificationEvent.subscribable.map(\.rawValue)]]),
                "filter": Field(keywords: ["maxLength": WeftEngine.Expression.maxLength]),
                "deadlineSeconds": Field(keywords: ["minimum": 0, "maximum": Int(SubscriptionAPI.maxDeadlineSeconds)]),
            ],
            "weft.v1.CreateIntegrationRequest": ["name": Field(keywords: bytes(IntegrationAPI.maxNameBytes))],
            "weft.v1.UpdateIntegrationRequest": ["name": Field(keywords: bytes(IntegrationAPI.maxNameBytes))],
            "weft.v1.PutTemplateRequest": Self.templateParts,
            "weft.v1.PreviewTemplateRequest": Self.templateParts.merging([
                "executionId": .required(["minLength": 1]),
                "event": .required(["enum": NotificationEvent.allCases.map(\.rawValue)]),
                "channel": Field(keywords: ["enum": ["", "email", "webhook", "slack", "in_app"]]),
            ]) { $1 },
            "weft.v1.ExecuteWorkflowRequest": [
                "idempotencyKey": Field(keywords: bytes(APILimits.idempotencyKeyMaxBytes)),
                "priority": Field(keywords: ["minimum": APILimits.priority.lowerBound, "maximum": APILimits.priority.upperBound]),
                "timeout": Field(keywords: duration(APILimits.executionTimeout)),
            ],
            "weft.v1.CancelExecutionRequest": ["reason": Field(keywords: bytes(APILimits.cancelReasonMaxBytes))],
            // Analytics (an IANA zone name and a window's order are the
            // server's to check).
            "weft.v1.GetWorkflowStatsRequest": [
                "window": Field(keywords: ["enum": ["", "hour", "day", "week", "month"]]),
                "version": Field(keywords: ["minimum": 0]),
            ],
            "weft.v1.GetWorkflowInsightsRequest": ["window": Field(keywords: ["enum": ["", "week", "month"]])],
            "weft.v1.GetExecutionTrendsRequest": [
                "trigger": Field(keywords: ["enum": [""] + TriggerKind.allCases.map(\.rawValue)]),
                "status": Field(keywords: ["enum": ["", "Completed", "Failed", "Cancelled", "TimedOut"]]),
                "timeZone": Field(keywords: ["maxLength": 64]),
            ],
            "weft.v1.SetWorkflowBudgetRequest": Self.budget,
            "weft.v1.SetOrganizationBudgetRequest": Self.budget,
            // Schedules and triggers (cron syntax and cross-field rules are
            // the server's to check; the fields a call cannot do without are here).
            "weft.v1.CreateScheduleRequest": Self.scheduleSettings,
            "weft.v1.UpdateScheduleRequest": Self.scheduleSettings,
            "weft.v1.PreviewScheduleRequest": [
                "cron": .required(["minLength": 1, "maxLength": CronExpression.maxLength]),
                "count": Field(keywords: ["minimum": 0, "maximum": 100]),
            ],
            "weft.v1.PauseScheduleRequest": ["note": Field(keywords: bytes(ScheduleAPI.maxNoteBytes))],
            "weft.v1.BackfillScheduleRequest": [
                "startTime": .required(), "endTime": .required(),
                "maxConcurrent": Field(keywords: ["minimum": 0, "maximum": 64]),
            ],
            "weft.v1.CreateTriggerRequest": [
                "type": .required(["enum": ["webhook", "event"]]),
                "description": Field(keywords: bytes(ScheduleAPI.maxDescriptionBytes)),
            ],
            "weft.v1.PublishEventRequest": [
                "name": .required(["pattern": Self.eventName]),
                "eventId": Field(keywords: bytes(EventAPI.maxEventIdBytes)),
            ],
            "weft.v1.TailLogsRequest": ["afterSequence": Field(keywords: ["pattern": #"^(0|[1-9][0-9]{0,17})$"#])],
            "weft.v1.PollTaskRequest": [
                "workerId": Field(keywords: bytes(APILimits.workerIdMaxBytes)),
                "wait": Field(keywords: duration(APILimits.pollWait)),
                "leaseDuration": Field(keywords: leaseDuration),
            ],
            "weft.v1.HeartbeatRequest": ["leaseToken": token, "leaseDuration": Field(keywords: leaseDuration)],
            "weft.v1.CompleteTaskRequest": ["leaseToken": token, "logLines": Field(keywords: logLines)],
            "weft.v1.FailTaskRequest": [
                "leaseToken": token, "logLines": Field(keywords: logLines),
                "kind": Field(keywords: ["pattern": #"^[A-Za-z0-9_]{0,64}$"#]),
                "error": Field(keywords: bytes(APILimits.errorMessageMaxBytes)),
            ],
            "weft.v1.AddCollaboratorRequest": ["userId": .required(["minLength": 1]), "role": .required(role)],
            "weft.v1.UpdateCollaboratorRoleRequest": ["role": .required(role)],
            "weft.v1.CreateVersionRequest": ["label": Field(keywords: ["maxLength": APILimits.labelMaxCharacters])],
        ]
    }

    static var templateParts: [String: Field] {
        [
            "subject": Field(keywords: bytes(NotificationTemplates.maxPartBytes)),
            "text": Field(keywords: bytes(NotificationTemplates.maxPartBytes)),
            "html": Field(keywords: bytes(NotificationTemplates.maxPartBytes)),
        ]
    }

    /// Path parameters with a format of their own (others: any non-empty segment).
    static var pathParameters: [String: [String: Any]] {
        ["queue": ["pattern": queueName], "event": ["enum": NotificationEvent.allCases.map(\.rawValue)]]
    }

    /// Fields the server fills in and ignores on input ("output only").
    static let readOnly: [String: Set<String>] = [
        "weft.v1.UpdateWorkflowRequest": ["id", "ownerId", "role", "version", "createdAt", "updatedAt"],
        "weft.v1.UpdateTaskRequest": ["id", "workflowId", "createdAt", "updatedAt"],
        "weft.v1.Task": ["workflowId", "createdAt", "updatedAt"],
        "weft.v1.Workflow": ["id", "ownerId", "role", "version", "etag", "createdAt", "updatedAt"],
    ]
}
