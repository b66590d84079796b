public import Foundation
import Synchronization

/// A clock a test moves by hand: the engine and the stores read time only
/// through the `now` closure they are given, so timeouts, backoffs, delays
/// and lease expiry happen exactly when the test says, with no sleeping.
public final class ManualClock: Sendable {
    private let current: Mutex<Date>

    /// Starts at a fixed, whole-millisecond instant (the store's precision).
    public init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public var now: Date { current.withLock { $0 } }

    /// The closure to hand to the engine (`Engine(now:)`).
    public var reader: @Sendable () -> Date { { self.now } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }
}
