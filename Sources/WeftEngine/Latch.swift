import ServiceLifecycle
import Synchronization

/// A one-way gate: waiters wait until it opens; once open it stays open.
final class Latch: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isOpen: Bool { state.withLock { $0.open } }

    func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.open else { return [] }
            state.open = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Opens at graceful shutdown (or when the waiting task is cancelled),
    /// and returns once open: how a service learns that it should stop.
    func openAtGracefulShutdown() async {
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await wait()
            } onCancel: {
                open()
            }
        } onGracefulShutdown: {
            self.open()
        }
    }
}
