import Foundation
import SwiftProtobuf
public import WeftEngine
import WeftProto
public import WeftRPC
import WeftStore

/// weft.v1.WorkerService: the protocol of external workers (docs/WORKERS.md).
/// Queues belong to an organization: a worker authenticates as a user the
/// organization lets poll the queue (its admins, or a `poll` grant) and
/// names the queue as written in the tasks' configs.
struct WorkerAPI: RPCService {
    static let name = "weft.v1.WorkerService"
    let deps: APIDependencies

    var handlers: [RPCHandler] {
        [
            .unary(service: Self.name, method: "PollTask", rest: [.post("/queues/{queue}/poll")]) {
                (request: Weft_V1_PollTaskRequest, context) in try await poll(request, context)
            },
            .unary(service: Self.name, method: "Heartbeat", rest: [.post("/workers/heartbeat")]) {
                (request: Weft_V1_HeartbeatRequest, context) in
                let caller = try Caller(context)
                let duration = try leaseSeconds(request.hasLeaseDuration ? request.leaseDuration : nil, field: "lease_duration")
                let handle = try token(request.leaseToken)
                let lease = try await deps.engine.heartbeatExternal(
                    handle, owner: try await holder(handle, caller), duration: duration)
                var response = Weft_V1_HeartbeatResponse()
                response.leaseExpiresAt = ProtoMapping.timestamp(lease.expiresAt)
                return response
            },
            .unary(service: Self.name, method: "CompleteTask", rest: [.post("/workers/complete")]) {
                (request: Weft_V1_CompleteTaskRequest, context) in
                let caller = try Caller(context)
                let handle = try token(request.leaseToken)
                let lines = try logLines(request.logLines)
                let output = request.hasOutput ? try ProtoMapping.jsonValue(request.output, field: "output") : .emptyObject
                try await deps.engine.completeExternal(
                    handle, owner: try await holder(handle, caller), outcome: .completed(output), logLines: lines)
                return Weft_V1_CompleteTaskResponse()
            },
            .unary(service: Self.name, method: "FailTask", rest: [.post("/workers/fail")]) {
                (request: Weft_V1_FailTaskRequest, context) in
                let caller = try Caller(context)
                let handle = try token(request.leaseToken)
                let lines = try logLines(request.logLines)
                let kind = request.kind.isEmpty ? "external" : request.kind
                guard kind.utf8.count <= APILimits.errorKindMaxBytes, kind.unicodeScalars.allSatisfy({
                    $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_")
                }) else {
                    throw RPCError(code: .invalidArgument, message: "kind must be 1 to 64 letters, digits or '_' (got \"\(kind.prefix(80))\")")
                }
                guard request.error.utf8.count <= APILimits.errorMessageMaxBytes else {
                    throw RPCError(
                        code: .invalidArgument, message: "error is longer than \(APILimits.errorMessageMaxBytes) bytes")
                }
                let message = request.error.isEmpty ? "the worker reported a failure" : request.error
                try await deps.engine.completeExternal(
                    handle, owner: try await holder(handle, caller),
                    outcome: .failed(.init(kind: kind, message: message, retryable: !request.nonRetryable)), logLines: lines)
                return Weft_V1_FailTaskResponse()
            },
        ]
    }

    /// Long poll: returns as soon as a task is leased, or empty after `wait`.
    /// A commit on the queue wakes the poller at once; the store is looked
    /// at every second anyway (retry backoffs become ready by time).
    func poll(_ request: Weft_V1_PollTaskRequest, _ context: ServerContext) async throws -> Weft_V1_PollTaskResponse {
        let caller = try Caller(context)
        guard TaskTypes.isQueueName(request.queue) else {
            throw RPCError(
                code: .invalidArgument,
                message: "queue must be 1 to 64 letters, digits, '.', '_' or '-' (got \"\(request.queue.prefix(80))\")")
        }
        guard request.workerID.utf8.count <= APILimits.workerIdMaxBytes else {
            throw RPCError(code: .invalidArgument, message: "worker_id is longer than \(APILimits.workerIdMaxBytes) bytes")
        }
        var waitMs: Int64 = 0
        if request.hasWait {
            waitMs = try ProtoMapping.milliseconds(request.wait, field: "wait")
            guard APILimits.pollWait.contains(waitMs) else {
                throw RPCError(code: .invalidArgument, message: "wait must be \(APILimits.pollWait.text)")
            }
        }
        let lease = try leaseSeconds(request.hasLeaseDuration ? request.leaseDuration : nil, field: "lease_duration")
        let (org, _) = try await deps.organizationOrHome(request.orgID, caller: caller, needs: .member)
        caller.audit?.note(resource: ("queue", request.queue))
        guard try await deps.queueRights(orgId: org.id, caller: caller).mayPoll(request.queue) else {
            throw RPCError(
                code: .permissionDenied,
                message: "you may not poll queue \"\(request.queue)\" of organization \(org.id); an admin of the organization grants poll on it")
        }
        let queue = EngineQueues.external(owner: org.id, name: request.queue)
        let worker = request.workerID.isEmpty ? "external" : request.workerID
        let deadline = ContinuousClock.now + .milliseconds(waitMs)
        let signal = deps.engine.signal
        while true {
            let generation = signal.generation(queue)
            if let task = try await deps.engine.pollExternal(queue: queue, worker: worker, leaseDuration: lease) {
                var response = Weft_V1_PollTaskResponse()
                response.task = ProtoMapping.workerTask(task, queue: request.queue)
                return response
            }
            let left = deadline - ContinuousClock.now
            if left <= .zero || Task.isCancelled || context.isCancelled { return Weft_V1_PollTaskResponse() }
            await signal.wait(queue, since: generation, timeout: min(left, .seconds(1)))
        }
    }

    /// The organization whose queue a lease is on, once the caller is
    /// known to be allowed to poll that queue (the same "lease is no longer
    /// held" answer otherwise: a token reveals nothing to others).
    func holder(_ handle: String, _ caller: Caller) async throws -> String {
        let lost = Engine.ExternalError.leaseLost(
            "the lease is no longer held: it expired and the task went to another worker, or its result was already recorded")
        guard let (org, queue) = try await deps.engine.externalQueue(of: handle) else { throw lost }
        caller.audit?.note(org: org, resource: ("queue", queue))
        guard try await deps.queueRights(orgId: org, caller: caller).mayPoll(queue) else { throw lost }
        return org
    }

    func token(_ text: String) throws -> String {
        guard !text.isEmpty else { throw APIError.required("lease_token") }
        guard Lease.parse(handle: text) != nil else {
            throw RPCError(code: .invalidArgument, message: "lease_token is not a lease token (send it as PollTask returned it)")
        }
        return text
    }

    func leaseSeconds(_ duration: Google_Protobuf_Duration?, field: String) throws -> TimeInterval {
        guard let duration else { return 60 }
        let ms = try ProtoMapping.milliseconds(duration, field: field)
        guard APILimits.leaseDuration.contains(ms) else {
            throw RPCError(code: .invalidArgument, message: "\(field) must be \(APILimits.leaseDuration.text)")
        }
        return Double(ms) / 1000
    }

    func logLines(_ lines: [String]) throws -> [String] {
        guard lines.count <= APILimits.logLinesMax else {
            throw RPCError(code: .invalidArgument, message: "at most \(APILimits.logLinesMax) log_lines")
        }
        for line in lines where line.utf8.count > APILimits.logLineMaxBytes {
            throw RPCError(code: .invalidArgument, message: "a log line is longer than \(APILimits.logLineMaxBytes) bytes")
        }
        return lines
    }
}

extension Engine.ExternalError: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .malformedToken:
            return RPCError(code: .invalidArgument, message: "lease_token is not a lease token (send it as PollTask returned it)")
        case .leaseLost(let message): return RPCError(code: .failedPrecondition, message: message)
        case .attemptEnded(let message): return RPCError(code: .failedPrecondition, message: message)
        }
    }
}

extension ProtoMapping {
    static func workerTask(_ task: Engine.ExternalTask, queue: String) -> Weft_V1_WorkerTask {
        var result = Weft_V1_WorkerTask()
        result.leaseToken = task.lease.handle
        result.leaseExpiresAt = timestamp(task.lease.expiresAt)
        result.queue = queue
        result.workflowID = task.workflowId
        result.executionID = task.executionId
        result.taskID = task.taskId
        result.taskKey = task.taskKey
        result.attempt = Int32(clamping: task.attempt)
        result.input = protoStruct(task.input.objectValue != nil ? task.input : .object(["value": task.input]))
        result.config = protoStruct(task.config)
        result.traceparent = task.trace.traceparent ?? ""
        result.tracestate = task.trace.tracestate ?? ""
        result.startedBy = task.startedBy
        result.orgID = task.orgId
        return result
    }
}
