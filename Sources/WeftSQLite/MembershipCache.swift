import Synchronization
import WeftStore

/// Every request that names no organization, and every write's queue-rights
/// check, reads the caller's memberships: two reads per create-workflow,
/// each a hop to a reader queue and back that cost more than the query
/// (Step 13's create profile: 40 % of the server's CPU in the kernel, mostly
/// thread hand-offs). The answers are kept here per user.
///
/// Kept true by invalidation: every write of this process that changes a
/// membership or an organization clears the whole cache before and after
/// its transaction (`SQLiteStore.writeMemberships`), and a read fills the
/// cache only when no such write started or ended while it ran (the epoch).
/// Writers in other processes (`weft orgs set-plan` on a live data
/// directory) cannot clear it, so an entry lives at most `lifetime`.
final class MembershipCache: Sendable {
    typealias Memberships = [(MembershipRecord, OrganizationRecord)]

    private struct Entry {
        let memberships: Memberships
        let filled: ContinuousClock.Instant
    }

    private struct State {
        var epoch: UInt64 = 0
        var entries: [String: Entry] = [:]
    }

    /// How long an answer may be served without a read.
    let lifetime: Duration
    /// Users kept; a full cache starts over (entries are cheap to refill).
    let capacity: Int
    private let state = Mutex(State())

    init(lifetime: Duration = .seconds(1), capacity: Int = 10_000) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// The cached memberships of `userId`, or nil with the epoch to hand to `fill`.
    func lookup(_ userId: String) -> (Memberships?, epoch: UInt64) {
        let now = ContinuousClock.now
        return state.withLock { state in
            if let entry = state.entries[userId], now - entry.filled < lifetime { return (entry.memberships, state.epoch) }
            return (nil, state.epoch)
        }
    }

    /// Keeps a read's answer unless a membership write began or ended since
    /// the read's `lookup`.
    func fill(_ userId: String, _ memberships: Memberships, epoch: UInt64, readStarted: ContinuousClock.Instant) {
        state.withLock { state in
            guard state.epoch == epoch else { return }
            if state.entries.count >= capacity, state.entries[userId] == nil { state.entries.removeAll(keepingCapacity: true) }
            state.entries[userId] = Entry(memberships: memberships, filled: readStarted)
        }
    }

    /// Drops every entry; later reads' answers from before now are not kept.
    func invalidate() {
        state.withLock { state in
            state.epoch &+= 1
            state.entries.removeAll(keepingCapacity: true)
        }
    }
}
