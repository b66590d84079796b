import Foundation
public import WeftStore

/// Appends execution log entries in batches (a `BatchWriter`): callers hand
/// entries over and go on (no await); the writer stores whatever has
/// gathered in one transaction, then tells the feed (with the sequence
/// numbers the store assigned). Logs are not part of the execution's
/// durable state: a crash can lose the last few milliseconds of lines,
/// never a state change.
public final class LogWriter: Sendable {
    struct Unit: Sendable {
        var entries: [LogRecord]
        /// The execution whose log ends with these entries.
        var final: String?
    }

    private let writer: BatchWriter<Unit>

    /// - Parameter onFailure: told when a batch cannot be stored (its lines
    ///   are lost; tails are still told the log ended, so none waits forever).
    public init(
        store: any LogStore, feed: ExecutionFeed, maxBatch: Int = 2000,
        onFailure: @escaping @Sendable (_ lines: Int, any Error) -> Void = { _, _ in }
    ) {
        writer = BatchWriter(name: "execution log", maxBatchWeight: maxBatch, weight: { max(1, $0.entries.count) }) {
            units in
            let entries = units.flatMap(\.entries)
            var stored: [LogRecord] = []
            if !entries.isEmpty {
                do {
                    stored = try await store.append(entries)
                } catch {
                    onFailure(entries.count, error)
                }
            }
            var byExecution: [String: [LogRecord]] = [:]
            for entry in stored { byExecution[entry.executionId, default: []].append(entry) }
            for (executionId, entries) in byExecution { feed.publish(executionId, .logs(entries)) }
            // Every line handed over before a final marker is in this batch
            // or an earlier one: the execution's log is complete.
            for executionId in units.compactMap(\.final) { feed.publish(executionId, .logsComplete) }
            return Array(repeating: nil, count: units.count)
        }
    }

    /// Queues entries for writing. `final`: the execution's log ends with them.
    public func append(_ entries: [LogRecord], final executionId: String? = nil) {
        guard !entries.isEmpty || executionId != nil else { return }
        writer.append(Unit(entries: entries, final: executionId))
    }

    /// Returns once everything appended before the call is stored.
    public func flush() async { await writer.flush() }

    /// The writer's loop (run by the engine).
    func run() async { await writer.run() }

    /// Stops the loop once what is pending is stored.
    func finish() { writer.finish() }
}
