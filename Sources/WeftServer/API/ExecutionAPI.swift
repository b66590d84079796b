import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore
import WeftObservability

/// weft.v1.ExecutionService: running workflows and following them. Viewers
/// may read and watch executions; running and cancelling need an editor.
struct ExecutionAPI: RPCService {
    static let name = "weft.v1.ExecutionService"
    static let executionPath = "/workflows/{workflowId}/executions/{executionId}"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "ExecuteWorkflow", rest: [.post("/workflows/{workflowId}/execute", status: 202)]) {
                (request: Weft_V1_ExecuteWorkflowRequest, context) in try await execute(request, context)
            },
            .unary(service: Self.name, method: "GetExecution", rest: [.get(Self.executionPath)]) {
                (request: Weft_V1_GetExecutionRequest, context) in
                let caller = try Caller(context)
                let record = try await deps.execution(
                    request.workflowID, request.executionID, caller: caller, needs: .viewer)
                return ProtoMapping.execution(record)
            },
            .unary(service: Self.name, method: "ListExecutions", rest: [.get("/workflows/{workflowId}/executions")]) {
                (request: Weft_V1_ListExecutionsRequest, context) in try await list(request, context)
            },
            .unary(service: Self.name, method: "CancelExecution", rest: [.post(Self.executionPath + "/cancel")]) {
                (request: Weft_V1_CancelExecutionRequest, context) in try await cancel(request, context)
            },
            .serverStreaming(service: Self.name, method: "WatchExecution", rest: [.get(Self.executionPath + "/watch")]) {
                (request: Weft_V1_WatchExecutionRequest, stream: ResponseStream<Weft_V1_ExecutionEvent>, context) in
                try await watch(request, stream, context)
            },
        ]
    }

    func execute(_ request: Weft_V1_ExecuteWorkflowRequest, _ context: ServerContext) async throws
        -> Weft_V1_ExecuteWorkflowResponse
    {
        let caller = try Caller(context)
        try caller.requireExecute(workflowId: request.workflowID)
        let key = request.idempotencyKey
        guard key.utf8.count <= APILimits.idempotencyKeyMaxBytes else {
            throw RPCError(
                code: .invalidArgument, message: "idempotency_key is longer than \(APILimits.idempotencyKeyMaxBytes) bytes")
        }
        // Keys of the scheduler, webhooks and events: a caller cannot take
        // a future tick, delivery or event in advance.
        for prefix in ["schedule:", "event:", "hk_"] where key.hasPrefix(prefix) {
            throw RPCError(
                code: .invalidArgument,
                message: "idempotency_key must not start with \"\(prefix)\" (reserved for schedules, webhooks and events)")
        }
        guard APILimits.priority.contains(Int(request.priority)) else {
            throw RPCError(
                code: .invalidArgument,
                message: "priority must be from \(APILimits.priority.lowerBound) to \(APILimits.priority.upperBound), got \(request.priority)")
        }
        var timeoutMs: Int64?
        if request.hasTimeout {
            let ms = try ProtoMapping.milliseconds(request.timeout, field: "timeout")
            guard APILimits.executionTimeout.contains(ms) else {
                throw RPCError(code: .invalidArgument, message: "timeout must be \(APILimits.executionTimeout.text)")
            }
            timeoutMs = ms
        }
        let input = request.hasInput ? try ProtoMapping.jsonValue(request.input, field: "input") : JSONValue.emptyObject
        let cap = deps.engine.limits.maxExecutionBytes
        guard input.encodedSize(limit: cap) <= cap else {
            throw RPCError(
                code: .invalidArgument, message: "input is larger than an execution's cap of \(cap) bytes (--max-execution-bytes)")
        }
        let (workflow, _) = try await deps.workflow(request.workflowID, caller: caller, needs: .editor)
        // Admission control ran in the interceptor chain (AdmissionInterceptor).
        // Quotas of the workflow's organization, before any work.
        guard let org = try await deps.quotas.organization(id: workflow.orgId) else {
            throw RPCError(code: .failedPrecondition, message: "workflow \(workflow.id) belongs to no organization")
        }
        try await deps.quotas.reserveExecution(org)
        let record: ExecutionRecord
        do {
            record = try await deps.engine.execute(
                workflow, input: input, idempotencyKey: key.isEmpty ? nil : key, trigger: .api, actor: caller.userId,
                timeoutMs: timeoutMs, priority: Int(request.priority),
                maxRunning: deps.quotas.plan(of: org).concurrentExecutions)
        } catch {
            deps.quotas.unreserveExecution(org)
            if case EngineError.tooManyRunning = error { deps.quotas.countRejection("concurrent_executions") }
            throw error
        }
        var response = Weft_V1_ExecuteWorkflowResponse()
        response.executionID = record.executionId
        response.status = ProtoMapping.executionStatus(record.status)
        return response
    }

    func list(_ request: Weft_V1_ListExecutionsRequest, _ context: ServerContext) async throws
        -> Weft_V1_ListExecutionsResponse
    {
        let caller = try Caller(context)
        _ = try await deps.workflow(request.workflowID, caller: caller, needs: .viewer)
        let size = try Paging.size(request.pageSize)
        let fingerprint = Paging.query(request, caller: caller.userId) {
            $0.pageToken = ""
            $0.pageSize = 0
        }
        let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
        let after = request.hasStartedAfter ? request.startedAfter.date : nil
        let before = request.hasStartedBefore ? request.startedBefore.date : nil
        if let after, let before, after >= before {
            throw RPCError(code: .invalidArgument, message: "started_after must be before started_before")
        }
        var status: ExecutionStatus?
        if request.status != .unspecified {
            guard let known = ProtoMapping.executionStatus(request.status) else {
                throw RPCError(code: .invalidArgument, message: "unknown status \(request.status.rawValue)")
            }
            status = known
        }
        let page = try await deps.executions.listExecutions(ExecutionQuery(
            workflowId: request.workflowID, limit: size, cursor: cursor, status: status, startedAfter: after,
            startedBefore: before))
        var response = Weft_V1_ListExecutionsResponse()
        response.executions = page.items.map(ProtoMapping.execution)
        response.nextPageToken = Paging.token(cursor: page.nextCursor, query: fingerprint)
        return response
    }

    func cancel(_ request: Weft_V1_CancelExecutionRequest, _ context: ServerContext) async throws -> Weft_V1_Execution {
        let caller = try Caller(context)
        guard request.reason.utf8.count <= APILimits.cancelReasonMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "reason is longer than \(APILimits.cancelReasonMaxBytes) bytes")
        }
        try caller.requireExecute(workflowId: request.workflowID)
        let record = try await deps.execution(request.workflowID, request.executionID, caller: caller, needs: .editor)
        let reason = request.reason.isEmpty ? "cancelled by \(caller.userId)" : request.reason
        switch try await deps.engine.cancel(executionId: record.executionId, reason: reason) {
        case .cancelled:
            break
        case .alreadyFinished(let status):
            throw RPCError(
                code: .failedPrecondition,
                message: "execution \(record.executionId) already finished (\(status.rawValue)); only a running execution can be cancelled")
        case .notFound:
            throw RPCError(code: .notFound, message: "execution \(record.executionId) not found")
        }
        guard let done = try await deps.executions.execution(id: record.executionId) else {
            throw RPCError(code: .notFound, message: "execution \(record.executionId) not found")
        }
        return ProtoMapping.execution(done)
    }

    /// A snapshot (the execution, then each task), then every committed
    /// change until the execution ends. Updates are subscribed to before
    /// the snapshot is read, so none falls in between (one may repeat).
    func watch(
        _ request: Weft_V1_WatchExecutionRequest, _ stream: ResponseStream<Weft_V1_ExecutionEvent>, _ context: ServerContext
    ) async throws {
        let caller = try Caller(context)
        let release = try deps.streams.acquire(caller.userId)
        defer { release() }
        // Subscribed before the read (which also checks the caller's role),
        // so no update falls between the two.
        let (updates, stop) = deps.engine.feed.subscribe(request.executionID)
        defer { stop() }
        let record = try await deps.execution(request.workflowID, request.executionID, caller: caller, needs: .viewer)
        var sequence: Int64 = 0
        func send(_ status: ExecutionStatus, task: TaskExecutionRecord?, message: String, at: Date) async throws {
            sequence += 1
            var event = Weft_V1_ExecutionEvent()
            event.sequence = sequence
            event.time = ProtoMapping.timestamp(at)
            event.status = ProtoMapping.executionStatus(status)
            if let task { event.task = ProtoMapping.taskExecution(task) }
            event.message = message
            try await stream.write(event)
        }
        let at = Date.nowMillis
        try await send(record.status, task: nil, message: "current state", at: at)
        for task in record.tasks { try await send(record.status, task: task, message: "current state", at: at) }
        guard !record.isFinished else { return }
        for await update in updates {
            switch update {
            case .state(let status, let task, let message, let at):
                try await send(status, task: task, message: message, at: at)
            case .finished:
                return
            case .logs, .logsComplete:
                continue
            }
        }
    }
}

/// weft.v1.LogService: the execution log.
struct LogAPI: RPCService {
    static let name = "weft.v1.LogService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "GetExecutionLogs", rest: [.get(ExecutionAPI.executionPath + "/logs")]) {
                (request: Weft_V1_GetExecutionLogsRequest, context) in
                let caller = try Caller(context)
                let record = try await deps.execution(
                    request.workflowID, request.executionID, caller: caller, needs: .viewer)
                let size = try Paging.size(request.pageSize)
                let fingerprint = "\(caller.userId)|\(record.executionId)|\(request.taskID)|\(request.minLevel.rawValue)"
                let cursor = try Paging.cursor(request.pageToken, query: fingerprint)
                var after: Int64 = 0
                if let cursor {
                    guard let value = Int64(cursor), value >= 0 else {
                        throw RPCError(code: .invalidArgument, message: "page_token is not valid")
                    }
                    after = value
                }
                var entries = try await deps.logs.entries(try query(
                    record.executionId, after: after, limit: size + 1, taskId: request.taskID, minLevel: request.minLevel))
                var next: String?
                if entries.count > size {
                    entries.removeLast(entries.count - size)
                    next = entries.last.map { String($0.sequence) }
                }
                var response = Weft_V1_GetExecutionLogsResponse()
                response.entries = entries.map(ProtoMapping.logEntry)
                response.nextPageToken = Paging.token(cursor: next, query: fingerprint)
                return response
            },
            .serverStreaming(service: Self.name, method: "TailLogs", rest: [.get(ExecutionAPI.executionPath + "/logs/tail")]) {
                (request: Weft_V1_TailLogsRequest, stream: ResponseStream<Weft_V1_LogEntry>, context) in
                try await tail(request, stream, context)
            },
        ]
    }

    func query(_ executionId: String, after: Int64, limit: Int, taskId: String, minLevel: Weft_V1_LogEntry.Level) throws
        -> LogQuery
    {
        guard after >= 0 else { throw RPCError(code: .invalidArgument, message: "after_sequence must not be negative") }
        let level: LogRecord.Level?
        switch minLevel {
        case .unspecified, .info: level = nil
        case .warning: level = .warning
        case .error: level = .error
        default: throw RPCError(code: .invalidArgument, message: "unknown min_level \(minLevel.rawValue)")
        }
        return LogQuery(executionId: executionId, afterSequence: after, limit: limit, taskId: taskId.isEmpty ? nil : taskId,
                        minLevel: level)
    }

    /// Stored entries, then new ones as they are stored, until the
    /// execution ends and its last line is written.
    func tail(_ request: Weft_V1_TailLogsRequest, _ stream: ResponseStream<Weft_V1_LogEntry>, _ context: ServerContext)
        async throws
    {
        let caller = try Caller(context)
        let release = try deps.streams.acquire(caller.userId)
        defer { release() }
        // Subscribed before the read (which also checks the caller's role),
        // so no update falls between the two.
        let (updates, stop) = deps.engine.feed.subscribe(request.executionID)
        defer { stop() }
        let record = try await deps.execution(request.workflowID, request.executionID, caller: caller, needs: .viewer)
        var last = request.afterSequence
        _ = try query(record.executionId, after: last, limit: 1, taskId: request.taskID, minLevel: request.minLevel)
        func drain() async throws {
            while true {
                let entries = try await deps.logs.entries(
                    try query(record.executionId, after: last, limit: 500, taskId: request.taskID, minLevel: request.minLevel))
                for entry in entries {
                    try await stream.write(ProtoMapping.logEntry(entry))
                    last = entry.sequence
                }
                if entries.count < 500 { return }
            }
        }
        try await drain()
        if record.isFinished {
            await deps.engine.flushLogs()
            return try await drain()
        }
        for await update in updates {
            switch update {
            case .logs:
                try await drain()
            case .finished, .logsComplete:
                await deps.engine.flushLogs()
                return try await drain()
            case .state:
                continue
            }
        }
    }
}

extension APIDependencies {
    /// An execution of a workflow the caller holds `needed` on; NOT_FOUND
    /// when it is not an execution of that workflow.
    func execution(_ workflowId: String, _ executionId: String, caller: Caller, needs needed: WorkflowRole) async throws
        -> ExecutionRecord
    {
        _ = try await workflow(workflowId, caller: caller, needs: needed)
        guard !executionId.isEmpty else { throw APIError.required("execution_id") }
        guard let record = try await executions.execution(id: executionId), record.workflowId == workflowId else {
            throw RPCError(code: .notFound, message: "execution \(executionId) of workflow \(workflowId) not found")
        }
        return record
    }
}

extension ProtoMapping {
    static func executionStatus(_ status: ExecutionStatus) -> Weft_V1_Execution.Status {
        switch status {
        case .pending: .pending
        case .running: .running
        case .completed: .completed
        case .failed: .failed
        case .cancelled: .cancelled
        case .timedOut: .timedOut
        }
    }

    /// The domain status of an API filter; nil for UNSPECIFIED or a value
    /// this build does not know.
    static func executionStatus(_ status: Weft_V1_Execution.Status) -> ExecutionStatus? {
        switch status {
        case .pending: .pending
        case .running: .running
        case .completed: .completed
        case .failed: .failed
        case .cancelled: .cancelled
        case .timedOut: .timedOut
        default: nil
        }
    }

    static func taskStatus(_ status: TaskStatus) -> Weft_V1_TaskExecution.Status {
        switch status {
        case .pending: .pending
        case .queued: .queued
        case .running: .running
        case .completed: .completed
        case .failed: .failed
        case .retrying: .retrying
        case .skipped: .skipped
        case .cancelled: .cancelled
        }
    }

    static func execution(_ record: ExecutionRecord) -> Weft_V1_Execution {
        var execution = Weft_V1_Execution()
        execution.executionID = record.executionId
        execution.workflowID = record.workflowId
        execution.workflowVersion = Int32(clamping: record.workflowVersion)
        execution.status = executionStatus(record.status)
        execution.input = protoStruct(record.input)
        if let output = record.output { execution.output = protoStruct(output) }
        execution.error = record.error ?? ""
        execution.createdAt = timestamp(record.createdAt)
        if let started = record.startedAt { execution.startedAt = timestamp(started) }
        if let completed = record.completedAt { execution.completedAt = timestamp(completed) }
        execution.tasks = record.tasks.map(taskExecution)
        execution.idempotencyKey = record.idempotencyKey ?? ""
        execution.trigger = record.trigger.rawValue
        if let id = record.triggerId { execution.triggerID = id }
        if let tick = record.scheduledAt { execution.scheduledTime = timestamp(tick) }
        execution.cost = record.cost
        if !record.costBreakdown.isZero {
            let cost = record.costBreakdown
            var breakdown = Weft_V1_ExecutionCost()
            breakdown.taskAttempts = Int64(cost.taskAttempts)
            breakdown.attemptsDollars = cost.attemptsDollars
            breakdown.workerSeconds = cost.workerSeconds
            breakdown.computeDollars = cost.computeDollars
            breakdown.requests = Int64(cost.requests)
            breakdown.requestsDollars = cost.requestsDollars
            breakdown.egressBytes = Int64(cost.egressBytes)
            breakdown.egressDollars = cost.egressDollars
            execution.costBreakdown = breakdown
        }
        execution.traceID = WeftTracing.traceId(ofTraceparent: record.traceParent) ?? ""
        return execution
    }

    static func taskExecution(_ record: TaskExecutionRecord) -> Weft_V1_TaskExecution {
        var task = Weft_V1_TaskExecution()
        task.taskExecutionID = record.taskExecutionId
        task.taskID = record.taskId
        task.taskKey = record.taskKey
        task.status = taskStatus(record.status)
        task.attempt = Int32(clamping: record.attempt)
        if let started = record.startedAt { task.startedAt = timestamp(started) }
        if let completed = record.completedAt { task.completedAt = timestamp(completed) }
        // Struct holds objects only: other outputs are wrapped as {"value": ...}.
        if let output = record.output {
            task.output = protoStruct(output.objectValue != nil ? output : .object(["value": output]))
        }
        task.error = record.error ?? ""
        return task
    }

    static func logEntry(_ record: LogRecord) -> Weft_V1_LogEntry {
        var entry = Weft_V1_LogEntry()
        entry.sequence = record.sequence
        entry.executionID = record.executionId
        entry.taskID = record.taskId ?? ""
        switch record.level {
        case .info: entry.level = .info
        case .warning: entry.level = .warning
        case .error: entry.level = .error
        }
        entry.message = record.message
        entry.createdAt = timestamp(record.createdAt)
        return entry
    }
}
