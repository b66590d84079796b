/// How long a polling loop sleeps after it looked and found nothing.
///
/// The loops that lease work (built-in workers, timers, the notification
/// outbox) are woken by `WorkSignal` when work is committed, and poll the
/// store as well, for what no wake-up announces (items made ready by time
/// before a restart, leases that expired). Each poll is a store transaction
/// and a few thread hops, so an idle server that polled every 200–250 ms
/// spent several milliseconds of CPU a second on nothing, and every other
/// workload (a health-check benchmark among them) paid for it.
///
/// So: `base` while the loop has recently found work or been woken; after
/// `patience` empty looks in a row the wait doubles per look up to `cap`.
/// A wake-up or work found starts over at `base`, so a busy server polls as
/// before and an idle one notices unannounced work within `cap`.
public struct IdleBackoff: Sendable {
    public let base: Duration
    public let cap: Duration
    public let patience: Int
    private var emptyLooks = 0

    public init(base: Duration, cap: Duration, patience: Int = 20) {
        self.base = base
        self.cap = max(base, cap)
        self.patience = max(0, patience)
    }

    /// The loop found work, or was woken: the next empty look waits `base`.
    public mutating func reset() { emptyLooks = 0 }

    /// The loop found nothing: how long to wait now.
    public mutating func nextWait() -> Duration {
        emptyLooks += 1
        let beyond = emptyLooks - patience
        guard beyond > 0 else { return base }
        let factor = 1 << min(beyond, 16)
        return min(cap, base * factor)
    }
}
