import Foundation
import Testing
import WeftTestSupport
import WeftEngine
import WeftStore

/// The execution state machine driven by hand with a fake clock: every event
/// carries its time, and timers fire only when the test says so.
@Suite("execution state machine")
struct ExecutionStateMachineTests {
    typealias Machine = ExecutionStateMachine
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func task(
        _ key: String, _ deps: [String] = [], action: TaskType = .noop, config: JSONValue = .emptyObject,
        retry: RetryPolicyRecord? = nil, timeoutMs: Int64? = nil
    ) -> TaskRecord {
        Records.task(
            key, action, id: "tsk_\(key)", workflowId: "wf", dependsOn: deps, config: config, retry: retry, timeoutMs: timeoutMs,
            at: t0)
    }

    func enqueued(_ effects: [Machine.Effect]) -> [String] {
        effects.compactMap { if case .enqueue(let task, _) = $0 { return task } else { return nil } }
    }

    func finished(_ effects: [Machine.Effect]) -> ExecutionStatus? {
        effects.compactMap { if case .finished(let status, _) = $0 { return status } else { return nil } }.first
    }

    /// Starts and completes one attempt of a task.
    func run(_ machine: inout Machine, _ key: String, attempt: Int = 1, output: JSONValue = .emptyObject, at: Date)
        -> [Machine.Effect]
    {
        _ = machine.taskStarted(key, attempt: attempt, at: at)
        return machine.taskSucceeded(key, attempt: attempt, output: output, at: at)
    }

    @Test("a chain runs in order and completes")
    func chain() {
        var m = Machine(tasks: [task("a"), task("b", ["a"]), task("c", ["b"])])
        #expect(enqueued(m.start(at: t0)) == ["a"])
        #expect(enqueued(run(&m, "a", at: t0)) == ["b"])
        #expect(enqueued(run(&m, "b", at: t0)) == ["c"])
        let last = run(&m, "c", at: t0)
        #expect(finished(last) == .completed)
        #expect(m.status == .completed)
        #expect(m.order.allSatisfy { m.tasks[$0]?.state == .completed })
    }

    @Test("a diamond runs both middles at once and joins when both are done")
    func diamond() {
        var m = Machine(tasks: [task("a"), task("b", ["a"]), task("c", ["a"]), task("d", ["b", "c"])])
        _ = m.start(at: t0)
        #expect(Set(enqueued(run(&m, "a", at: t0))) == ["b", "c"])
        #expect(enqueued(run(&m, "b", at: t0)).isEmpty)
        #expect(m.tasks["d"]?.state == .pending)
        #expect(enqueued(run(&m, "c", at: t0)) == ["d"])
        #expect(finished(run(&m, "d", at: t0)) == .completed)
    }

    @Test("a condition skips the other branch; the join runs; a task after only skipped tasks is skipped")
    func condition() {
        let branches = JSONValue.object([
            "expression": .string("input.ok"), "then": .array([.string("yes")]), "else": .array([.string("no")]),
        ])
        var m = Machine(tasks: [
            task("check", action: .condition, config: branches),
            task("yes", ["check"]), task("no", ["check"]), task("after_no", ["no"]), task("join", ["yes", "no"]),
        ])
        _ = m.start(at: t0)
        let effects = run(&m, "check", output: .object(["branch": .string("then")]), at: t0)
        #expect(enqueued(effects) == ["yes"])
        #expect(m.tasks["no"]?.state == .skipped)
        #expect(m.tasks["after_no"]?.state == .skipped)
        #expect(enqueued(run(&m, "yes", at: t0)) == ["join"])
        #expect(finished(run(&m, "join", at: t0)) == .completed)

        var other = Machine(tasks: [task("check", action: .condition, config: branches), task("yes", ["check"]), task("no", ["check"])])
        _ = other.start(at: t0)
        #expect(enqueued(run(&other, "check", output: .object(["result": .bool(false)]), at: t0)) == ["no"])
        #expect(other.tasks["yes"]?.state == .skipped)
    }

    @Test("failed attempts back off exponentially (with jitter) and the task succeeds on its last attempt")
    func retries() {
        let policy = RetryPolicyRecord(
            maxAttempts: 3, initialBackoffMs: 1000, maxBackoffMs: 60_000, backoffMultiplier: 2, jitter: 0.5,
            retryableErrors: [])
        // random() = 0.75 -> factor 1 + 0.5 * 0.5 = 1.25
        var m = Machine(tasks: [task("a", retry: policy)], random: { 0.75 })
        _ = m.start(at: t0)
        _ = m.taskStarted("a", attempt: 1, at: t0)
        let first = m.taskFailed("a", attempt: 1, error: .init(kind: "http_5xx", message: "503"), at: t0)
        #expect(first.contains(.armTimer(.retry(task: "a", attempt: 2), at: t0.addingTimeInterval(1.25))))
        #expect(m.tasks["a"]?.state == .retrying)
        #expect(enqueued(m.timerFired(.retry(task: "a", attempt: 2), at: t0.addingTimeInterval(1.25))) == ["a"])
        _ = m.taskStarted("a", attempt: 2, at: t0)
        let second = m.taskFailed("a", attempt: 2, error: .init(kind: "http_5xx", message: "503"), at: t0)
        #expect(second.contains(.armTimer(.retry(task: "a", attempt: 3), at: t0.addingTimeInterval(2.5))))
        _ = m.timerFired(.retry(task: "a", attempt: 3), at: t0)
        #expect(finished(run(&m, "a", attempt: 3, at: t0)) == .completed)
        #expect(m.tasks["a"]?.attempt == 3)
    }

    @Test("exhausted or non-retryable failures fail the execution and stop the rest")
    func failure() {
        let policy = RetryPolicyRecord(
            maxAttempts: 5, initialBackoffMs: 10, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0,
            retryableErrors: ["http_5xx"])
        var m = Machine(tasks: [task("a", retry: policy), task("b"), task("c", ["a"])])
        _ = m.start(at: t0)
        _ = m.taskStarted("a", attempt: 1, at: t0)
        _ = m.taskStarted("b", attempt: 1, at: t0)
        let effects = m.taskFailed("a", attempt: 1, error: .init(kind: "http_4xx", message: "404"), at: t0)
        #expect(finished(effects) == .failed)
        #expect(effects.contains(.stop(task: "b", attempt: 1)))
        #expect(m.tasks["a"]?.state == .failed && m.tasks["b"]?.state == .cancelled && m.tasks["c"]?.state == .cancelled)
        // A late success of the stopped task changes nothing.
        #expect(m.taskSucceeded("b", attempt: 1, output: .null, at: t0).isEmpty)
    }

    @Test("each way an execution ends has its cause: completed none, a task's error, a timeout, a cancel, Weft's own failure")
    func causes() {
        func ended(_ drive: (inout Machine) -> Void) -> (ExecutionStatus, FailureCause) {
            var m = Machine(tasks: [task("a")], executionTimeoutMs: 60_000)
            _ = m.start(at: t0)
            _ = m.taskStarted("a", attempt: 1, at: t0)
            drive(&m)
            return (m.status, m.cause)
        }
        #expect(ended { _ = $0.taskSucceeded("a", attempt: 1, output: .null, at: t0) } == (.completed, FailureCause.none))
        #expect(ended { _ = $0.taskFailed("a", attempt: 1, error: .init(kind: "http_5xx", message: "500"), at: t0) }
            == (.failed, .taskError))
        #expect(ended { _ = $0.taskFailed("a", attempt: 1, error: .init(kind: "timeout", message: "slow"), at: t0) }
            == (.failed, .timeout))
        #expect(ended { _ = $0.timerFired(.executionTimeout, at: t0.addingTimeInterval(60)) } == (.timedOut, .timeout))
        #expect(ended { _ = $0.cancel(reason: "by hand", at: t0) } == (.cancelled, .cancelled))
        #expect(ended {
            _ = $0.taskFailed("a", attempt: 1, error: .init(kind: "secret", message: "cannot open", system: true), at: t0)
        } == (.failed, .system))
        // Still running: no cause yet.
        var running = Machine(tasks: [task("a")])
        _ = running.start(at: t0)
        #expect(running.cause == .none)
    }

    @Test("an attempt timeout stops the attempt and retries; a stale timer is ignored")
    func attemptTimeout() {
        let policy = RetryPolicyRecord(
            maxAttempts: 2, initialBackoffMs: 0, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: ["timeout"])
        var m = Machine(tasks: [task("a", retry: policy, timeoutMs: 5000)])
        _ = m.start(at: t0)
        let started = m.taskStarted("a", attempt: 1, at: t0)
        #expect(started.contains(.armTimer(.attemptTimeout(task: "a", attempt: 1), at: t0.addingTimeInterval(5))))
        let timedOut = m.timerFired(.attemptTimeout(task: "a", attempt: 1), at: t0.addingTimeInterval(5))
        #expect(timedOut.first == .stop(task: "a", attempt: 1))
        #expect(m.tasks["a"]?.state == .retrying && m.tasks["a"]?.error?.kind == "timeout")
        _ = m.timerFired(.retry(task: "a", attempt: 2), at: t0.addingTimeInterval(5))
        _ = m.taskStarted("a", attempt: 2, at: t0.addingTimeInterval(6))
        #expect(m.timerFired(.attemptTimeout(task: "a", attempt: 1), at: t0.addingTimeInterval(7)).isEmpty)
        #expect(finished(m.taskSucceeded("a", attempt: 2, output: .null, at: t0.addingTimeInterval(8))) == .completed)
    }

    @Test("the execution timeout ends it as TimedOut")
    func executionTimeout() {
        var m = Machine(tasks: [task("a"), task("b", ["a"])], executionTimeoutMs: 60_000)
        let start = m.start(at: t0)
        #expect(start.contains(.armTimer(.executionTimeout, at: t0.addingTimeInterval(60))))
        _ = m.taskStarted("a", attempt: 1, at: t0)
        let effects = m.timerFired(.executionTimeout, at: t0.addingTimeInterval(60))
        #expect(finished(effects) == .timedOut)
        #expect(effects.contains(.stop(task: "a", attempt: 1)))
        #expect(m.tasks["b"]?.state == .cancelled)
    }

    @Test("cancel during a retry backoff cancels; the retry timer then does nothing")
    func cancelDuringBackoff() {
        let policy = RetryPolicyRecord(
            maxAttempts: 3, initialBackoffMs: 30_000, maxBackoffMs: 0, backoffMultiplier: 2, jitter: 0, retryableErrors: [])
        var m = Machine(tasks: [task("a", retry: policy), task("b", ["a"])])
        _ = m.start(at: t0)
        _ = m.taskStarted("a", attempt: 1, at: t0)
        _ = m.taskFailed("a", attempt: 1, error: .init(kind: "connection", message: "refused"), at: t0)
        let cancelled = m.cancel(reason: "operator", at: t0.addingTimeInterval(1))
        #expect(finished(cancelled) == .cancelled)
        #expect(!cancelled.contains { if case .stop = $0 { return true } else { return false } })
        #expect(m.tasks["a"]?.state == .cancelled && m.tasks["b"]?.state == .cancelled)
        #expect(m.timerFired(.retry(task: "a", attempt: 2), at: t0.addingTimeInterval(30)).isEmpty)
        #expect(m.cancel(reason: "again", at: t0).isEmpty)
    }

    @Test("an empty workflow completes at once; events for unknown tasks or attempts are ignored")
    func edges() {
        var empty = Machine(tasks: [])
        #expect(finished(empty.start(at: t0)) == .completed)
        var m = Machine(tasks: [task("a")])
        _ = m.start(at: t0)
        #expect(m.taskStarted("zzz", attempt: 1, at: t0).isEmpty)
        #expect(m.taskStarted("a", attempt: 2, at: t0).isEmpty)
        #expect(m.taskSucceeded("a", attempt: 1, output: .null, at: t0).isEmpty)  // not started yet
        #expect(m.start(at: t0).isEmpty)
    }

    @Test("continue-on-failure: a task that fails for good lets its dependents run and the execution complete")
    func continueOnFailure() {
        let policy = RetryPolicyRecord(
            maxAttempts: 1, initialBackoffMs: 0, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: [],
            continueOnFailure: true)
        var m = Machine(tasks: [task("a", retry: policy), task("b", ["a"])])
        _ = m.start(at: t0)
        _ = m.taskStarted("a", attempt: 1, at: t0)
        let failed = m.taskFailed("a", attempt: 1, error: .init(kind: "http_5xx", message: "boom"), at: t0)
        #expect(failed.contains(.taskState(task: "a", state: .failed, attempt: 1)))
        #expect(enqueued(failed) == ["b"])
        #expect(finished(failed) == nil)
        #expect(finished(run(&m, "b", at: t0)) == .completed)
        #expect(m.tasks["a"]?.state == .failed)
    }

    @Test("a non-retryable error is not retried whatever the policy says")
    func nonRetryable() {
        let policy = RetryPolicyRecord(
            maxAttempts: 5, initialBackoffMs: 10, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: [])
        var m = Machine(tasks: [task("a", retry: policy)])
        _ = m.start(at: t0)
        _ = m.taskStarted("a", attempt: 1, at: t0)
        let effects = m.taskFailed("a", attempt: 1, error: .init(kind: "external", message: "bad input", retryable: false), at: t0)
        #expect(finished(effects) == .failed)
        #expect(m.tasks["a"]?.state == .failed)
    }

    @Test("the total task timeout is armed when the task is first queued and ends it during a retry backoff")
    func totalTaskTimeout() {
        let policy = RetryPolicyRecord(
            maxAttempts: 10, initialBackoffMs: 60_000, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0,
            retryableErrors: [], totalTimeoutMs: 5_000)
        var m = Machine(tasks: [task("a", retry: policy), task("b", ["a"])])
        let start = m.start(at: t0)
        #expect(start.contains(.armTimer(.taskTimeout(task: "a"), at: t0.addingTimeInterval(5))))
        _ = m.taskStarted("a", attempt: 1, at: t0)
        let retry = m.taskFailed("a", attempt: 1, error: .init(kind: "timeout", message: "slow"), at: t0.addingTimeInterval(1))
        #expect(retry.contains(.taskState(task: "a", state: .retrying, attempt: 1)))
        let fired = m.timerFired(.taskTimeout(task: "a"), at: t0.addingTimeInterval(5))
        #expect(fired.contains(.taskState(task: "a", state: .failed, attempt: 1)))
        #expect(finished(fired) == .failed)
        #expect(m.tasks["b"]?.state == .cancelled)
        // The retry timer that comes later does nothing.
        #expect(m.timerFired(.retry(task: "a", attempt: 2), at: t0.addingTimeInterval(61)).isEmpty)
    }

    @Test("a total task timeout that fires after the task completed does nothing")
    func staleTaskTimeout() {
        let policy = RetryPolicyRecord(
            maxAttempts: 1, initialBackoffMs: 0, maxBackoffMs: 0, backoffMultiplier: 1, jitter: 0, retryableErrors: [],
            totalTimeoutMs: 1_000)
        var m = Machine(tasks: [task("a", retry: policy), task("b", ["a"])])
        _ = m.start(at: t0)
        _ = run(&m, "a", at: t0)
        #expect(m.timerFired(.taskTimeout(task: "a"), at: t0.addingTimeInterval(1)).isEmpty)
        #expect(m.tasks["b"]?.state == .queued)
    }
}
