import Foundation
import Synchronization
import WeftStore

/// Live in-app notifications: each stream of a user (StreamNotifications)
/// gets every notification stored for them while it is open.
final class InAppFeed: Sendable {
    private let streams = Mutex<[String: [Int: AsyncStream<NotificationRecord>.Continuation]]>([:])
    private let nextId = Atomic<Int>(0)

    /// A stream of the user's new notifications; ends when the caller stops
    /// iterating (the subscription is removed then).
    func subscribe(userId: String) -> AsyncStream<NotificationRecord> {
        let id = nextId.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: NotificationRecord.self, bufferingPolicy: .bufferingNewest(256))
        streams.withLock { $0[userId, default: [:]][id] = continuation }
        continuation.onTermination = { [weak self] _ in
            self?.streams.withLock { streams in
                streams[userId]?[id] = nil
                if streams[userId]?.isEmpty == true { streams[userId] = nil }
            }
        }
        return stream
    }

    /// Ends every stream (the server is stopping).
    func finishAll() {
        let all = streams.withLock { streams in
            defer { streams = [:] }
            return streams.values.flatMap(\.values)
        }
        for stream in all { stream.finish() }
    }

    func publish(_ record: NotificationRecord) {
        let listeners = streams.withLock { Array(($0[record.userId] ?? [:]).values) }
        for listener in listeners { listener.yield(record) }
    }
}
