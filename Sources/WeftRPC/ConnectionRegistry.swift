import NIOCore
import Synchronization

/// The open client connections, so a graceful shutdown can tell each to
/// drain and, at the deadline, close what is left.
final class ConnectionRegistry: Sendable {
    private struct Entry {
        let channel: any Channel
        let drain: @Sendable () -> Void
    }

    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])
    private let draining = Atomic<Bool>(false)

    /// Registers a connection; `drain` runs on the channel's event loop.
    func register(_ channel: any Channel, drain: @escaping @Sendable () -> Void) {
        let id = ObjectIdentifier(channel)
        entries.withLock { $0[id] = Entry(channel: channel, drain: drain) }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.entries.withLock { $0.removeValue(forKey: id) }
        }
        // A connection that arrives while draining drains at once.
        if draining.load(ordering: .relaxed) {
            channel.eventLoop.execute(drain)
        }
    }

    var count: Int { entries.withLock { $0.count } }

    func drainAll() {
        draining.store(true, ordering: .relaxed)
        for entry in entries.withLock({ Array($0.values) }) {
            entry.channel.eventLoop.execute(entry.drain)
        }
    }

    func closeAll() {
        for entry in entries.withLock({ Array($0.values) }) {
            entry.channel.close(promise: nil)
        }
    }
}
