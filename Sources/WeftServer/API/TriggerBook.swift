import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WeftStore

/// Triggers in memory for the webhook path (a delivery reads no store once
/// its trigger is known), and their firing counts, written once a second
/// in one transaction instead of a write per delivery. This process is the
/// only writer of triggers, so deleting one here forgets it at once.
final class TriggerBook: Service, Sendable {
    let store: any ScheduleStore
    let logger: Logger
    /// At most this many triggers are kept (then the lot is dropped and
    /// re-read as calls come).
    static let capacity = 10_000

    private struct State {
        var cached: [String: TriggerRecord] = [:]
        var fired: [String: (count: Int64, last: Date)] = [:]
    }

    private let state = Mutex(State())

    init(store: any ScheduleStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func trigger(id: String) async throws -> TriggerRecord? {
        if let hit = state.withLock({ $0.cached[id] }) { return hit }
        guard let record = try await store.trigger(id: id) else { return nil }
        state.withLock { state in
            if state.cached.count >= Self.capacity { state.cached.removeAll(keepingCapacity: true) }
            state.cached[id] = record
        }
        return record
    }

    func forget(_ id: String) { _ = state.withLock { $0.cached.removeValue(forKey: id) } }

    func fired(_ id: String, at: Date) {
        state.withLock { state in
            let count = state.fired[id]?.count ?? 0
            state.fired[id] = (count + 1, at)
        }
    }

    /// Writes the counts gathered since the last flush.
    func flush() async {
        let batch = state.withLock { state -> [String: (count: Int64, last: Date)] in
            defer { state.fired.removeAll() }
            return state.fired
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.triggersFired(batch)
        } catch {
            logger.warning("trigger counts not written: \(error)")
        }
    }

    func run() async throws {
        // Once a second until shutdown, then a last flush.
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                await self.flush()
            }
        }
        await flush()
    }
}
