import Tracing
public import WeftStore
import WeftObservability

/// Group commit: transitions submitted by many callers at about the same
/// time are written in one transaction (one fsync) instead of one each.
/// A caller's `submit` returns once its transitions are durable; while one
/// batch is being written, the next one collects.
public actor GroupCommitter {
    private let store: any ExecutionStore
    private let maxBatch: Int
    private var pending: [(transitions: [ExecutionTransition], waiter: CheckedContinuation<Void, any Error>)] = []
    private var writing = false
    /// Transactions written and transitions in them (for metrics and tests).
    public private(set) var batches = 0
    public private(set) var transitionsWritten = 0

    /// Called with the number of transitions of each transaction written.
    private let onBatch: @Sendable (Int) -> Void

    public init(store: any ExecutionStore, maxBatch: Int = 1000, onBatch: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.store = store
        self.maxBatch = max(1, maxBatch)
        self.onBatch = onBatch
    }

    public func submit(_ transitions: [ExecutionTransition]) async throws {
        guard !transitions.isEmpty else { return }
        // The caller's wait for its share of a group commit.
        let span = WeftTracing.storeSpan("apply_transitions", store: "main")
        defer { span?.end() }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            pending.append((transitions, continuation))
            if !writing {
                writing = true
                // The committer's own task: its batches belong to no caller's trace.
                InstrumentationContext.withValue(nil) { Task { await self.drain() } }
            }
        }
    }

    private func drain() async {
        while !pending.isEmpty {
            var batch: [(transitions: [ExecutionTransition], waiter: CheckedContinuation<Void, any Error>)] = []
            var count = 0
            while let next = pending.first, batch.isEmpty || count + next.transitions.count <= maxBatch {
                batch.append(pending.removeFirst())
                count += next.transitions.count
            }
            do {
                let outcomes = try await store.applyEach(batch.map(\.transitions))
                batches += 1
                onBatch(count)
                for (entry, failure) in zip(batch, outcomes) {
                    if let failure {
                        entry.waiter.resume(throwing: failure)
                    } else {
                        transitionsWritten += entry.transitions.count
                        entry.waiter.resume()
                    }
                }
            } catch {
                for entry in batch { entry.waiter.resume(throwing: error) }
            }
        }
        writing = false
    }
}
