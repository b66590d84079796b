public import WeftEngine
public import WeftStore
import Synchronization

/// A task runner a test controls: its first `gatedCalls` calls wait until
/// the test opens the gate (or the attempt is stopped, which they record),
/// later calls complete at once. Tests wait for a call to have started
/// (`waitForCall`) instead of sleeping.
public final class GatedRunner: TaskRunner {
    public let action: TaskType
    public var isInstant: Bool { false }
    private let gatedCalls: Int

    private struct State {
        var calls = 0
        var cancelled = 0
        var open = false
        var gated: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextId: UInt64 = 0
        var callWaiters: [(count: Int, waiter: CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    public init(_ action: TaskType = .other("gated"), gatedCalls: Int) {
        self.action = action
        self.gatedCalls = gatedCalls
    }

    /// Calls so far, and how many of them were stopped while waiting.
    public var calls: Int { state.withLock { $0.calls } }
    public var cancelled: Int { state.withLock { $0.cancelled } }

    /// Returns once `count` calls have started.
    public func waitForCall(_ count: Int) async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.calls >= count { return true }
                state.callWaiters.append((count, waiter))
                return false
            }
            if now { waiter.resume() }
        }
    }

    /// Lets every waiting call (and every later gated one) complete.
    public func open() {
        let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.gated.removeAll() }
            return Array(state.gated.values)
        }
        for waiter in waiting { waiter.resume() }
    }

    public func run(_ invocation: TaskInvocation, log: @escaping @Sendable (LogRecord.Level, String) async -> Void) async
        -> TaskOutcome
    {
        let (call, arrived) = state.withLock { state -> (Int, [CheckedContinuation<Void, Never>]) in
            state.calls += 1
            let calls = state.calls
            let arrived = state.callWaiters.filter { $0.count <= calls }.map(\.waiter)
            state.callWaiters.removeAll { $0.count <= calls }
            return (calls, arrived)
        }
        for waiter in arrived { waiter.resume() }
        guard call <= gatedCalls else { return .completed(.number(Double(call))) }
        let id = state.withLock { state -> UInt64 in
            state.nextId += 1
            return state.nextId
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.open || Task.isCancelled { return true }
                    state.gated[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.gated.removeValue(forKey: id) }
            waiter?.resume()
        }
        if Task.isCancelled {
            state.withLock { $0.cancelled += 1 }
            return .failed(.init(kind: "cancelled", message: "stopped"))
        }
        return .completed(.number(Double(call)))
    }
}
