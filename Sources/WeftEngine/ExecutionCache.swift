import WeftStore

/// The engine's memory of executions: the unfinished ones it works on
/// (`live`), the ones that ended here recently (`ended`), and which ones an
/// operation is working on now (`pins`). Owned by the `Engine` actor; a
/// value type, so every change is a visible mutation of the actor's state.
///
/// Rules:
/// - memory never runs ahead of the store: an entry is dropped when a
///   commit about it fails, and rebuilt from what was committed;
/// - an ended execution is never reloaded (its final commit may still be in
///   flight, and a store read could show it unfinished);
/// - a pinned execution is never evicted (an operation holds it across an
///   await, e.g. an attempt between its start and its outcome).
struct ExecutionCache {
    private(set) var live: [String: ExecutionState] = [:]
    private var ended: Set<String> = []
    private var endedOrder: [String] = []
    private var pins: [String: Int] = [:]
    /// Above this many live entries, a tenth of the unpinned ones go.
    let capacity: Int
    /// Ended ids remembered (twice this at most, then the older half goes).
    let endedMemory: Int

    /// Definitions executions run on, by "workflow id|version": versions
    /// never change, so reloading an execution costs one store read, not three.
    private var definitions: [String: (version: WorkflowVersionRecord, ownerId: String, orgId: String)] = [:]

    init(capacity: Int, endedMemory: Int = 10_000) {
        self.capacity = max(100, capacity)
        self.endedMemory = endedMemory
    }

    subscript(id: String) -> ExecutionState? {
        get { live[id] }
        set {
            if newValue != nil, live[id] == nil { evictIfNeeded() }
            live[id] = newValue
        }
    }

    func hasEnded(_ id: String) -> Bool { ended.contains(id) }

    mutating func markEnded(_ id: String) {
        guard ended.insert(id).inserted else { return }
        endedOrder.append(id)
        if endedOrder.count > 2 * endedMemory {
            for old in endedOrder.prefix(endedMemory) { ended.remove(old) }
            endedOrder.removeFirst(endedMemory)
        }
    }

    /// A failed final commit: the execution is not over after all.
    mutating func unmarkEnded(_ id: String) { ended.remove(id) }

    mutating func pin(_ id: String) { pins[id, default: 0] += 1 }

    mutating func unpin(_ id: String) {
        if let count = pins[id], count > 1 { pins[id] = count - 1 } else { pins[id] = nil }
    }

    /// Drops a tenth of the executions no operation is working on when
    /// memory is full; they reload on their next event.
    private mutating func evictIfNeeded() {
        guard live.count >= capacity else { return }
        var budget = capacity / 10
        for key in live.keys where pins[key] == nil {
            live[key] = nil
            budget -= 1
            if budget == 0 { break }
        }
    }

    func definition(_ workflowId: String, version: Int) -> (version: WorkflowVersionRecord, ownerId: String, orgId: String)? {
        definitions["\(workflowId)|\(version)"]
    }

    mutating func remember(_ version: WorkflowVersionRecord, ownerId: String, orgId: String) {
        if definitions.count >= 1000 { definitions.removeAll(keepingCapacity: true) }
        definitions["\(version.workflowId)|\(version.version)"] = (version, ownerId, orgId)
    }
}
