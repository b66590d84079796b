import Synchronization
import WeftRPC

/// Caps the live streams (WatchExecution, TailLogs) one user holds open at
/// once, over gRPC and REST together: a stream past the cap is refused
/// with RESOURCE_EXHAUSTED / 429 before it subscribes to anything.
final class StreamLimiter: Sendable {
    let perUser: Int
    private let open = Mutex<[String: Int]>([:])

    init(perUser: Int) { self.perUser = perUser }

    /// Takes a place for `userId`; call the returned closure when the stream ends.
    func acquire(_ userId: String) throws -> @Sendable () -> Void {
        let admitted = open.withLock { open -> Bool in
            let count = open[userId, default: 0]
            guard count < perUser else { return false }
            open[userId] = count + 1
            return true
        }
        guard admitted else {
            throw RPCError.exhausted(
                "you have \(perUser) live streams open (watch and tail), the most one user may; close one first",
                retryAfter: 5)
        }
        return { [self] in
            open.withLock { open in
                let count = open[userId, default: 1] - 1
                open[userId] = count > 0 ? count : nil
            }
        }
    }

    /// Streams open now, for `userId`.
    func count(_ userId: String) -> Int { open.withLock { $0[userId] ?? 0 } }
}
