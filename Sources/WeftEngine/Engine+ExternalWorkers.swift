public import Foundation
import Tracing
public import WeftObservability
public import WeftStore

/// The external-worker protocol: tasks of type `external` wait on a named
/// queue of their workflow's owner; a worker in any language polls, gets a
/// lease with the resolved input, heartbeats, and reports the outcome under
/// the lease (docs/WORKERS.md).
extension Engine {
    /// What an external worker receives with its lease.
    public struct ExternalTask: Sendable {
        public var lease: Lease
        public var workflowId: String
        public var executionId: String
        public var taskId: String
        public var taskKey: String
        public var attempt: Int
        public var input: JSONValue
        public var config: JSONValue
        /// The W3C context of this attempt's span, for the worker's own spans.
        public var trace: TraceHeaders
        /// The user who started the execution (the worker acts for them).
        public var startedBy: String
        public var orgId: String
    }

    public enum ExternalError: Error, Sendable, Equatable {
        /// The token is not a lease token at all.
        case malformedToken
        /// Lost (expired and taken by another worker), completed, or not the caller's.
        case leaseLost(String)
        /// The attempt ended (timeout, cancel, execution over); nothing recorded.
        case attemptEnded(String)
    }

    /// Leases the next ready task of an external queue and starts it: its
    /// start is committed before the worker hears of it. Returns nil when
    /// nothing is ready (items that turn out moot are skipped).
    public func pollExternal(queue name: String, worker: String, leaseDuration: TimeInterval) async throws -> ExternalTask? {
        try requireRunning()
        for _ in 0..<32 {
            guard let lease = try await queue.lease(
                queue: name, worker: worker, now: now(), duration: leaseDuration, limit: 1
            ).first else { return nil }
            if let task = try await pinned(lease.item.executionId, { try await startExternal(lease) }) { return task }
        }
        return nil
    }

    private func startExternal(_ lease: Lease) async throws -> ExternalTask? {
        if lease.reclaimed { metrics?.leaseExpired(queue: lease.item.queue) }
        let id = AttemptID(lease.item)
        // The worker gets the secrets its config reads (that is what they are for).
        let revealed = await reveal(id)
        guard var state = try await load(id.executionId), let task = state.tasks[id.taskKey] else {
            try await discard(lease)
            return nil
        }
        let at = now()
        let effects = startEffects(&state, key: id.taskKey, attempt: id.attempt, lease: lease, at: at)
        guard state.isRunning(id.taskKey, attempt: id.attempt) else {
            try await carryOut(effects, executionId: id.executionId, at: at, state: state, lease: .complete(lease))
            return nil
        }
        cache[id.executionId] = state
        let invocation: TaskInvocation
        do {
            var context = state.context
            context.secrets = try revealed.get()
            invocation = try TaskInvocation.make(
                task, executionId: id.executionId, attempt: id.attempt, context: context,
                maxBytes: limits.maxTemplateBytes, maxTimeoutMs: limits.maxAttemptTimeoutMs)
        } catch {
            try await finish(lease, .failed(Self.invocationError(error)), deferred: effects)
            return nil
        }
        try await carryOut(effects, executionId: id.executionId, at: at)
        guard isCurrent(id) else {
            try await discard(lease)
            return nil
        }
        // The attempt's span runs until the worker reports; the worker gets
        // its context to continue the trace.
        var trace = TraceHeaders()
        if let span = taskSpan(state, executionId: id.executionId, task: task, attempt: id.attempt) {
            trace = WeftTracing.headers(of: span.context)
            spans.openExternal(id, span)
        }
        return ExternalTask(
            lease: lease, workflowId: state.workflowId, executionId: id.executionId, taskId: task.id, taskKey: id.taskKey,
            attempt: id.attempt, input: invocation.config["input"] ?? .emptyObject, config: invocation.config, trace: trace,
            startedBy: state.startedBy ?? "", orgId: state.orgId)
    }

    /// The queue a worker's lease token is for: its namespace (the
    /// organization) and name, so the caller's right to it can be checked
    /// before anything else; nil when the token holds no lease.
    public func externalQueue(of handle: String) async throws -> (namespace: String, name: String)? {
        guard let (id, token) = Lease.parse(handle: handle) else { throw ExternalError.malformedToken }
        guard let lease = try await queue.lease(id: id, token: token),
            lease.item.queue.hasPrefix(EngineQueues.externalPrefix)
        else { return nil }
        let rest = lease.item.queue.dropFirst(EngineQueues.externalPrefix.count)
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return (String(rest[..<slash]), String(rest[rest.index(after: slash)...]))
    }

    /// The lease behind a worker's token, if the caller (`owner`) holds it.
    private func externalLease(_ handle: String, owner: String) async throws -> Lease {
        guard let (id, token) = Lease.parse(handle: handle) else { throw ExternalError.malformedToken }
        guard let lease = try await queue.lease(id: id, token: token),
            lease.item.queue.hasPrefix(EngineQueues.external(owner: owner, name: ""))
        else {
            throw ExternalError.leaseLost(
                "the lease is no longer held: it expired and the task went to another worker, or its result was already recorded")
        }
        return lease
    }

    /// Extends an external worker's lease while its attempt still runs.
    public func heartbeatExternal(_ handle: String, owner: String, duration: TimeInterval) async throws -> Lease {
        try requireRunning()
        let lease = try await externalLease(handle, owner: owner)
        let id = AttemptID(lease.item)
        return try await pinned(id.executionId) {
            guard try await load(id.executionId) != nil, isCurrent(id) else {
                try await discard(lease)
                throw ExternalError.attemptEnded(
                    "attempt \(id.attempt) of task \(id.taskKey) is over (timed out, cancelled, or the execution ended); stop working on it")
            }
            do {
                return try await queue.heartbeat(lease, now: now(), duration: duration)
            } catch is StoreError {
                throw ExternalError.leaseLost("the lease expired and the task went to another worker")
            }
        }
    }

    /// Records an external worker's outcome under its lease.
    public func completeExternal(_ handle: String, owner: String, outcome reported: TaskOutcome, logLines: [String]) async throws {
        try requireRunning()
        let lease = try await externalLease(handle, owner: owner)
        let id = AttemptID(lease.item)
        // The worker got the secrets its task reads; what it reports back is
        // kept with their values hidden, as for built-in tasks.
        let redactor = SecretRedactor((try? await reveal(id, forRedaction: true).get()) ?? [:])
        let outcome = redactor.redact(reported)
        try await pinned(id.executionId) {
            let taskId = try await load(id.executionId).flatMap { $0.tasks[id.taskKey]?.id }
            if !logLines.isEmpty {
                let at = now()
                logWriter.append(logLines.map {
                    LogRecord(
                        executionId: id.executionId, taskId: taskId, level: .info, message: redactor.redact($0), createdAt: at)
                })
            }
            Self.end(spans.closeExternal(id), outcome)
            let recorded: Bool
            do {
                recorded = try await finish(lease, outcome)
            } catch StoreError.conflict {
                throw ExternalError.leaseLost("the lease expired and the task went to another worker; this result was not recorded")
            }
            guard recorded else {
                throw ExternalError.attemptEnded(
                    "attempt \(id.attempt) of task \(id.taskKey) was already over (timed out, cancelled, or the execution ended); this result was not recorded")
            }
        }
    }
}
