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
        /// Deleted here: never cached again (a read that began before the
        /// delete must not bring the trigger back).
        var deleted: Set<String> = []
        var fired: [String: (count: Int64, last: Date)] = [:]
        /// Signatures of timestamped deliveries accepted lately, until their
        /// tolerance runs out (replays are refused even when an
        /// idempotency header names a new key).
        var signatures: [String: (expires: Date, key: String)] = [:]
        var signaturesPruned = Date.distantPast
    }

    private let state = Mutex(State())

    init(store: any ScheduleStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func trigger(id: String) async throws -> TriggerRecord? {
        if let hit = state.withLock({ $0.cached[id] }) { return hit }
        guard let record = try await store.trigger(id: id) else { return nil }
        return state.withLock { state -> TriggerRecord? in
            guard !state.deleted.contains(id) else { return nil }
            if state.cached.count >= Self.capacity { state.cached.removeAll(keepingCapacity: true) }
            state.cached[id] = record
            return record
        }
    }

    /// A trigger deleted (call after the store's delete).
    func forget(_ id: String) {
        state.withLock { state in
            state.cached[id] = nil
            if state.deleted.count >= 100_000 { state.deleted.removeAll(keepingCapacity: true) }
            state.deleted.insert(id)
        }
    }

    /// Records a delivery's signature digest with the idempotency key it
    /// came with, until `expires`; false when it was seen before with
    /// another key (a replay dressed as a new delivery). The same key again
    /// is a retry: the key answers it with the earlier execution.
    func firstUse(ofSignature digest: String, key: String, expires: Date, now: Date = Date()) -> Bool {
        state.withLock { state in
            if now.timeIntervalSince(state.signaturesPruned) > 10 || state.signatures.count >= 200_000 {
                state.signatures = state.signatures.filter { $0.value.expires > now }
                state.signaturesPruned = now
            }
            if let seen = state.signatures[digest], seen.expires > now { return seen.key == key }
            state.signatures[digest] = (expires, key)
            return true
        }
    }

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
