import WeftStore

/// The in-process attempts running now: each one's job (cancelled when a
/// timeout or cancel stops the attempt) and the lease it holds (renewed by
/// the worker pool's heartbeats; a re-delivery while it still runs hands
/// over the newer token). Owned by the `Engine` actor.
struct RunningAttempts {
    private var jobs: [AttemptID: Task<TaskOutcome, Never>] = [:]
    private(set) var leases: [AttemptID: Lease] = [:]

    func isRunning(_ id: AttemptID) -> Bool { jobs[id] != nil }

    mutating func started(_ id: AttemptID, job: Task<TaskOutcome, Never>, lease: Lease) {
        jobs[id] = job
        leases[id] = lease
    }

    /// A newer lease of an attempt that is still running here.
    mutating func takeOver(_ id: AttemptID, lease: Lease) { leases[id] = lease }

    /// A renewed lease, kept unless the attempt got a newer one meanwhile.
    mutating func renewed(_ lease: Lease) {
        let id = AttemptID(lease.item)
        if leases[id]?.token == lease.token { leases[id] = lease }
    }

    /// The job ended: its entry goes (the held lease stays until the outcome
    /// is recorded, see `releaseLease`).
    mutating func ended(_ id: AttemptID) { jobs[id] = nil }

    /// The lease to record an outcome under (the newest one held), removed.
    mutating func releaseLease(_ id: AttemptID) -> Lease? { leases.removeValue(forKey: id) }

    /// Stops a running attempt (its runner sees cancellation).
    func stop(_ id: AttemptID) { jobs[id]?.cancel() }
}
