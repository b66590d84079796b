import Foundation
import Tracing
import WeftObservability
public import WeftStore

/// In-process workers that take tasks straight from the commit that queues
/// them (`WorkerPool`): the item is leased in that same transaction, so no
/// separate lease transaction and no wait for a poll.
public protocol DirectDispatch: AnyObject, Sendable {
    /// False once the workers stop taking work (graceful shutdown).
    var isAccepting: Bool { get }
    /// Takes a free slot for `tenant`'s work, or returns false when all are
    /// busy, the tenant holds its share, other work waits in the queue, or
    /// the workers are stopping.
    func reserve(tenant: String) -> Bool
    /// Gives back a slot reserved for a lease that was not committed.
    func cancelReservation(tenant: String)
    /// Runs a committed lease on a reserved slot.
    func run(_ lease: Lease)
}

/// A worker slot held by the attempt being handled: the commit that records
/// its outcome may pass the slot on to the next task it queues (the
/// execution keeps going on the same slot instead of queueing behind new
/// executions).
final class Slot: @unchecked Sendable {
    // Touched only by the engine actor during the commit of its attempt.
    var passed = false
}

extension Engine {
    /// Commits the effects' state changes with the queue operations they
    /// imply (and `lease`'s completion) as one unit of a group commit, then
    /// acts on them: hands leased tasks to workers, wakes pollers, logs,
    /// tells watchers, ends the execution.
    ///
    /// `state`: the execution's new state, when the caller changed a copy
    /// (it is put in memory first; dropped from memory if it ended); else
    /// the state in memory is used.
    ///
    /// Instant tasks the effects queue run inside this unit
    /// (`runInline`). Returns the execution's final status when this unit
    /// ended it.
    @discardableResult
    func carryOut(
        _ effects: [ExecutionStateMachine.Effect], executionId: String, at: Date,
        start: (record: ExecutionRecord, create: Bool)? = nil, state given: ExecutionState? = nil,
        lease: CommitPlanner.LeaseOperation? = nil, taskLines: [String: [LogRecord]] = [:],
        cost attemptCost: ExecutionCost = ExecutionCost(), costKey: String? = nil, slot: Slot? = nil,
        alongside: [ExecutionTransition] = []
    ) async throws -> ExecutionStatus? {
        guard !effects.isEmpty || start != nil || lease != nil else { return nil }
        var effects = effects
        var given = given
        var inline = InlineRun()
        if inlineInstantTasks, effects.contains(where: { if case .enqueue = $0 { true } else { false } }),
            var moving = given ?? cache[executionId]
        {
            inline = runInline(&effects, state: &moving, executionId: executionId, at: at)
            if inline.ran > 0 { given = moving }
        }
        if let given { cache[executionId] = given.machine.status == .running ? given : nil }
        guard let state = given ?? cache[executionId] else {
            if case .complete(let held)? = lease { try await discard(held) }
            return nil
        }
        var lines = taskLines
        lines.merge(inline.lines) { $0 + $1 }
        var plan = planner.plan(
            CommitPlanner.Request(
                executionId: executionId, at: at, effects: effects, start: start, lease: lease, taskLines: lines,
                attemptCost: attemptCost, attemptKey: costKey, inlineCosts: inline.costs),
            state: state)
        for id in plan.stopped {
            attempts.stop(id)
            if let span = spans.closeExternal(id) {
                span.attributes[SpanKeys.taskOutcome] = "stopped"
                span.end()
            }
        }
        let dispatch = leaseDirectly(&plan, at: at, slot: slot)
        if !plan.cost.isZero {
            // Counted in memory before the commit is awaited, so an ending
            // that races with this unit still sees it (a failed commit
            // forgets the execution below, cost and all).
            update(executionId) { $0.cost += plan.cost }
        }
        let ending = state.machine.status != .running && !cache.hasEnded(executionId)
        if ending { cache.markEnded(executionId) }
        carryingOut += 1
        defer { carryOutEnded() }
        let notes = notifications(plan, state: state, executionId: executionId, at: at, start: start?.record)
        do {
            try await commit(alongside.isEmpty && notes.isEmpty ? plan.transitions : plan.transitions + alongside + notes)
        } catch {
            // Memory must not run ahead of the store: forget the execution so
            // the next event reloads it from what was actually committed.
            cache[executionId] = nil
            if ending { cache.unmarkEnded(executionId) }
            dispatch.undo()
            throw error
        }
        let visible = Date()
        // Work started from here is not part of the caller's request: the
        // tasks it spawns must not inherit its trace context.
        InstrumentationContext.withValue(nil) {
            for var lease in dispatch.leases {
                lease.visibleAt = visible
                dispatch.dispatcher?.run(lease)
            }
            if !plan.lines.isEmpty { logWriter.append(plan.lines) }
        }
        if !notes.isEmpty { notifier?.committed(notes.compactMap(\.outboxEntry)) }
        if plan.isStart { metrics?.executionStarted(orgId: state.orgId, workflow: state.workflowName) }
        for type in plan.retried { metrics?.retried(type: type) }
        for event in plan.taskEvents {
            metrics?.taskFailure(orgId: state.orgId, workflow: state.workflowName, task: event.key, retried: event.status == .retrying)
        }
        if !plan.cost.isZero { metrics?.costAccrued(orgId: state.orgId, workflow: state.workflowName, plan.cost) }
        for name in plan.wake { signal.notify(name) }
        for (name, due) in plan.later { signal.notify(name, at: due) }
        if feed.hasSubscribers(executionId) { for update in plan.updates { feed.publish(executionId, update) } }
        if let (status, error) = plan.finished {
            cache[executionId] = nil
            executionEnded(executionId, state: state, status: status, error: error, cost: state.cost + plan.cost, at: at)
            return status
        }
        return nil
    }

    /// The outbox rows of what this commit reports (start, end, tasks that
    /// failed or retry), for the subscriptions that want them.
    func notifications(
        _ plan: CommitPlanner.Plan, state: ExecutionState, executionId: String, at: Date, start: ExecutionRecord?
    ) -> [ExecutionTransition] {
        guard let notifier, notifier.watches(workflowId: state.workflowId),
            plan.isStart || plan.finished != nil || !plan.taskEvents.isEmpty
        else { return [] }
        func facts(_ event: NotificationEvent, status: String) -> EventFacts {
            var facts = EventFacts(
                event: event, workflowId: state.workflowId, workflowName: state.workflowName, orgId: state.orgId,
                executionId: executionId, at: at, status: status, trigger: state.trigger.rawValue)
            facts.triggerId = state.triggerId
            facts.startedAt = start?.startedAt ?? state.createdAt
            facts.scheduledAt = state.scheduledAt
            if state.trigger == .schedule { facts.scheduleId = state.triggerId }
            facts.traceparent = state.trace.traceparent
            return facts
        }
        var entries: [OutboxEntry] = []
        if plan.isStart {
            // Deadline alerts are written now, due at start + threshold; the
            // dispatcher drops one whose execution ended in time.
            entries += notifier.entries(for: facts(.executionStarted, status: ExecutionStatus.running.rawValue))
            entries += notifier.entries(for: facts(.executionDeadline, status: ExecutionStatus.running.rawValue))
        }
        for task in plan.taskEvents {
            var each = facts(task.status == .failed ? .taskFailed : .taskRetried, status: task.status.rawValue)
            each.taskKey = task.key
            each.attempt = task.attempt
            each.error = task.error
            entries += notifier.entries(for: each)
        }
        if let (status, error) = plan.finished, let event = NotificationEvent.ended(status) {
            var end = facts(event, status: status.rawValue)
            end.error = error
            entries += notifier.entries(for: end)
        }
        return entries.map(ExecutionTransition.outbox)
    }

    /// Built-in items queued by this commit that go straight to a worker:
    /// the attempt's own slot first (passed on), then free slots.
    struct DirectDispatchPlan {
        var dispatcher: (any DirectDispatch)?
        var leases: [Lease] = []
        var reserved: [String] = []
        var passedFrom: Slot?

        /// The commit failed: give back what was taken for it.
        func undo() {
            for tenant in reserved { dispatcher?.cancelReservation(tenant: tenant) }
            passedFrom?.passed = false
        }
    }

    private func leaseDirectly(_ plan: inout CommitPlanner.Plan, at: Date, slot: Slot?) -> DirectDispatchPlan {
        var result = DirectDispatchPlan(dispatcher: dispatcher)
        for index in plan.dispatchable {
            guard case .enqueue(var item) = plan.transitions[index] else { continue }
            let passing = slot.map { !$0.passed } ?? false
            guard let dispatcher, dispatcher.isAccepting, passing || dispatcher.reserve(tenant: item.tenant) else {
                plan.wake.insert(item.queue)
                continue
            }
            if passing {
                slot?.passed = true
                result.passedFrom = slot
            } else {
                result.reserved.append(item.tenant)
            }
            let token = IDGenerator.make("lse", now: at)
            let expires = at.addingTimeInterval(leaseDuration)
            item.directLease = DirectLease(token: token, worker: "direct", expiresAt: expires)
            plan.transitions[index] = .enqueue(item)
            result.leases.append(Lease(id: 0, item: item, token: token, expiresAt: expires, deliveries: 1))
        }
        return result
    }

    private func carryOutEnded() {
        carryingOut -= 1
        guard carryingOut == 0, !carryOutWaiters.isEmpty else { return }
        let waiters = carryOutWaiters
        carryOutWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once no `carryOut` is between its commit and the end of its
    /// after-commit actions.
    func carryOutsFinished() async {
        guard carryingOut > 0 else { return }
        await withCheckedContinuation { carryOutWaiters.append($0) }
    }

    /// One unit of the group commit; the caller's wait is a store span.
    func commit(_ transitions: [ExecutionTransition]) async throws {
        guard !transitions.isEmpty else { return }
        let span = WeftTracing.storeSpan("apply_transitions", store: "main")
        defer { span?.end() }
        do {
            try await commits.submit(transitions)
        } catch StoreError.alreadyExists(let message) {
            // A repeated idempotency key: an answer, not an engine error.
            throw StoreError.alreadyExists(message)
        } catch {
            metrics?.error(error is StoreError ? "store_conflict" : "store")
            throw error
        }
    }

    /// Completes a lease whose work is moot; losing it meanwhile is fine.
    func discard(_ lease: Lease) async throws {
        do {
            try await commit([.completeLease(id: lease.id, token: lease.token)])
        } catch is StoreError {
            // Someone else holds it now, or it is gone: nothing to discard.
        }
    }
}
