import NIOCore

/// The shape of one worker's share of the load, phase by phase.
struct LoadSchedule: Sendable {
    enum Mode: Sendable { case open, closed }

    struct Phase: Sendable {
        var name: String
        var seconds: Double
        /// Open loop: the rate at the start and the end of the phase (a
        /// ramp when they differ), calls per second.
        var rateFrom = 0.0
        var rateTo = 0.0
        /// Closed loop: calls in flight.
        var concurrency = 0
        /// False for the warm-up: sent, not reported.
        var counted = true
    }

    var mode: Mode
    var phases: [Phase]
    /// Stop after this many calls (nil: when the phases end).
    var count: Int?
    var connections: Int
    var streams: Int
    /// How long to wait for answers after the last call was sent.
    var drainSeconds: Double

    var totalSeconds: Double { phases.reduce(0) { $0 + $1.seconds } }

    /// This worker's share when `workers` share the load.
    func share(_ index: Int, of workers: Int) -> LoadSchedule {
        var mine = self
        let w = Double(workers)
        mine.phases = phases.map {
            var phase = $0
            phase.rateFrom /= w
            phase.rateTo /= w
            phase.concurrency = $0.concurrency / workers + (index < $0.concurrency % workers ? 1 : 0)
            return phase
        }
        mine.count = count.map { $0 / workers + (index < $0 % workers ? 1 : 0) }
        mine.connections = max(1, connections / workers + (index < connections % workers ? 1 : 0))
        return mine
    }
}

/// What a progress line shows: totals so far and the last interval.
struct ProgressSnapshot: Sendable {
    var sent = 0
    var succeeded = 0
    var refused = 0
    var failed = 0
    var inFlight = 0
    var backlog = 0
    var interval = makeLatencyHistogram()

    mutating func merge(_ other: ProgressSnapshot) {
        sent += other.sent
        succeeded += other.succeeded
        refused += other.refused
        failed += other.failed
        inFlight += other.inFlight
        backlog += other.backlog
        interval.add(other.interval)
    }
}

/// Sends one share of the load on one event loop, over its own
/// connections, and records every answer. Everything here runs on `loop`
/// (callers reach it with `loop.execute`/`submit`).
///
/// Open loop: call i is due at its intended time whatever happened to the
/// others; its latency counts from that time, so a server (or a
/// connection) that stalls is charged for every call it delayed, not only
/// the one it held (no coordinated omission). Calls that find every stream
/// busy wait in a backlog, their clock running.
final class LoadWorker: @unchecked Sendable {
    let loop: any EventLoop
    private let connector: Connector
    private let plan: OperationPlan
    private let schedule: LoadSchedule
    private let seqBase: Int
    private let seqStride: Int

    private var connections: [Connector.Kind: [ConnectionBox]] = [:]
    private var nextConnection: [Connector.Kind: Int] = [:]
    private var prepared: [[PreparedRequest?]]
    private var variantCounters: [Int]
    private var recorders: [Recorder]
    private var progress = ProgressSnapshot()
    private var backlog: [(operation: Int, seq: Int, intended: NIODeadline, phase: Int)] = []
    private var backlogHead = 0
    private var inFlight = 0
    private var issued = 0
    private var sequence = 0
    private var start = NIODeadline.now()
    private var nextIntended = NIODeadline.now()
    private var issuing = true
    private var flushScheduled = false
    private var done: EventLoopPromise<[Recorder]>?
    private var ticker: RepeatedTask?
    private var phaseEnds: [NIODeadline] = []

    init(loop: any EventLoop, connector: Connector, plan: OperationPlan, schedule: LoadSchedule, index: Int, workers: Int) {
        self.loop = loop
        self.connector = connector
        self.plan = plan
        self.schedule = schedule
        self.seqBase = index
        self.seqStride = workers
        prepared = plan.operations.map { [PreparedRequest?](repeating: nil, count: $0.variants.count) }
        variantCounters = [Int](repeating: index, count: plan.operations.count)
        recorders = [Recorder](repeating: Recorder(operations: plan.operations.count), count: schedule.phases.count)
    }

    /// Opens the connections (all of them before the first call).
    func connect() -> EventLoopFuture<Void> {
        loop.assertInEventLoop()
        var futures: [EventLoopFuture<Void>] = []
        for kind in plan.kinds {
            let count = kind == .h2 ? schedule.connections : max(schedule.connections, 1)
            for _ in 0..<count {
                futures.append(
                    connector.connect(kind, on: loop, streams: schedule.streams).map { [self] box in
                        connections[kind, default: []].append(box)
                    })
            }
        }
        return EventLoopFuture.andAllSucceed(futures, on: loop)
    }

    /// Sends the load from `startAt`; the future gives one recorder per
    /// phase once every call is answered (or the drain deadline passed).
    func run(startAt: NIODeadline) -> EventLoopFuture<[Recorder]> {
        loop.assertInEventLoop()
        let promise = loop.makePromise(of: [Recorder].self)
        done = promise
        start = startAt
        nextIntended = startAt
        var end = startAt
        for phase in schedule.phases {
            end = end + .nanoseconds(Int64(phase.seconds * 1e9))
            phaseEnds.append(end)
        }
        let issueEnd = end
        switch schedule.mode {
        case .open:
            ticker = loop.scheduleRepeatedTask(initialDelay: max(.zero, startAt - .now()), delay: .milliseconds(1)) { [self] _ in
                tick()
            }
        case .closed:
            loop.scheduleTask(deadline: startAt) { [self] in
                let concurrency = schedule.phases.first?.concurrency ?? 1
                for _ in 0..<max(1, concurrency) { issue(intended: .now()) }
                flushAll()
            }
            // Closed loop: the phase's concurrency changes at its start.
            for (index, phase) in schedule.phases.enumerated().dropFirst() {
                let previous = schedule.phases[index - 1].concurrency
                if phase.concurrency > previous {
                    loop.scheduleTask(deadline: phaseEnds[index - 1]) { [self] in
                        for _ in 0..<(phase.concurrency - previous) { issue(intended: .now()) }
                        flushAll()
                    }
                }
            }
        }
        loop.scheduleTask(deadline: issueEnd) { [self] in stopIssuing() }
        loop.scheduleTask(deadline: issueEnd + .nanoseconds(Int64(schedule.drainSeconds * 1e9))) { [self] in
            abandonUnanswered()
        }
        return promise.futureResult
    }

    func snapshot() -> ProgressSnapshot {
        loop.assertInEventLoop()
        var out = progress
        out.inFlight = inFlight
        out.backlog = backlog.count - backlogHead
        progress.interval.reset()
        return out
    }

    // MARK: Sending

    private func phase(at time: NIODeadline) -> Int? {
        for (index, end) in phaseEnds.enumerated() where time < end { return index }
        return nil
    }

    private func tick() {
        let now = NIODeadline.now()
        var sent = false
        while issuing, nextIntended <= now {
            guard let phaseIndex = phase(at: nextIntended) else {
                stopIssuing()
                break
            }
            let phase = schedule.phases[phaseIndex]
            issue(intended: nextIntended)
            sent = true
            let phaseStart = phaseIndex == 0 ? start : phaseEnds[phaseIndex - 1]
            let fraction = phase.seconds > 0 ? Double((nextIntended - phaseStart).nanoseconds) / (phase.seconds * 1e9) : 0
            let rate = phase.rateFrom + (phase.rateTo - phase.rateFrom) * min(1, max(0, fraction))
            nextIntended = nextIntended + .nanoseconds(Int64(1e9 / max(rate, 0.001)))
        }
        if sent { flushAll() }
    }

    private func issue(intended: NIODeadline, preferred: ConnectionBox? = nil) {
        guard issuing else { return }
        if let count = schedule.count, issued >= count {
            stopIssuing()
            return
        }
        guard let phaseIndex = phase(at: intended) else { return }
        issued += 1
        // Unique across workers: worker i sends i, i + n, i + 2n, …
        let seq = seqBase + sequence * seqStride
        let operation = plan.order[seq % plan.order.count]
        sequence += 1
        recorders[phaseIndex].sent += 1
        progress.sent += 1
        dispatch(operation: operation, seq: seq, intended: intended, phase: phaseIndex, preferred: preferred)
    }

    private func freeConnection(_ kind: Connector.Kind) -> ConnectionBox? {
        guard let boxes = connections[kind], !boxes.isEmpty else { return nil }
        let first = nextConnection[kind, default: 0]
        for offset in 0..<boxes.count {
            let box = boxes[(first + offset) % boxes.count]
            if box.connection.isOpen && box.connection.inFlight < box.connection.capacity {
                nextConnection[kind] = (first + offset + 1) % boxes.count
                return box
            }
        }
        return nil
    }

    private func anyOpen(_ kind: Connector.Kind) -> Bool {
        connections[kind]?.contains { $0.connection.isOpen } ?? false
    }

    /// `preferred`: the connection that just freed a stream (a closed loop
    /// reuses it without scanning the others).
    private func dispatch(operation: Int, seq: Int, intended: NIODeadline, phase: Int, preferred: ConnectionBox? = nil) {
        let kind = plan.operations[operation].kind
        let hint = preferred.flatMap { box in
            box.kind == kind && box.connection.isOpen && box.connection.inFlight < box.connection.capacity ? box : nil
        }
        guard let box = hint ?? freeConnection(kind) else {
            if anyOpen(kind) {
                backlog.append((operation, seq, intended, phase))
            } else {
                // Every connection of this kind is gone (the server closed
                // them): the call fails, and no more are sent — a closed
                // loop would otherwise spin on failures.
                recorders[phase].record(
                    WireResponse(transportError: "no open connection (the server closed them all)"), micros: 0,
                    operation: operation, name: plan.operations[operation].name)
                progress.failed += 1
                stopIssuing()
            }
            return
        }
        let request: PreparedRequest
        do {
            request = try preparedRequest(operation, seq: seq)
        } catch {
            complete(WireResponse(transportError: "\(error)"), operation: operation, intended: intended, phase: phase)
            return
        }
        inFlight += 1
        box.connection.send(request) { [self] response in
            inFlight -= 1
            complete(response, operation: operation, intended: intended, phase: phase, on: box)
        }
    }

    private func preparedRequest(_ operation: Int, seq: Int) throws -> PreparedRequest {
        let variants = plan.operations[operation].variants
        let index = variantCounters[operation] % variants.count
        variantCounters[operation] += 1
        if let cached = prepared[operation][index] { return cached }
        let variant = variants[index]
        let request = PreparedRequest(
            try variant.make(seq: seq), authority: connector.target.authority,
            scheme: connector.target.scheme)
        if case .fixed = variant { prepared[operation][index] = request }
        return request
    }

    private func complete(_ response: WireResponse, operation: Int, intended: NIODeadline, phase: Int, on box: ConnectionBox? = nil) {
        let micros = UInt64(max(0, (NIODeadline.now() - intended).nanoseconds / 1000))
        recorders[phase].record(response, micros: micros, operation: operation, name: plan.operations[operation].name)
        if response.succeeded {
            progress.succeeded += 1
            _ = progress.interval.record(max(1, micros))
        } else if response.isRefusal {
            progress.refused += 1
        } else {
            progress.failed += 1
        }
        // A freed stream takes the oldest waiting call first.
        while backlogHead < backlog.count, let _ = freeConnection(plan.operations[backlog[backlogHead].operation].kind) {
            let next = backlog[backlogHead]
            backlogHead += 1
            dispatch(operation: next.operation, seq: next.seq, intended: next.intended, phase: next.phase)
        }
        if backlogHead > 1024 && backlogHead * 2 > backlog.count {
            backlog.removeFirst(backlogHead)
            backlogHead = 0
        }
        if schedule.mode == .closed && issuing { issue(intended: .now(), preferred: box) }
        scheduleFlush()
        finishIfDone()
    }

    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        // After the read burst that answered these calls: one write per
        // connection for every call it started.
        loop.execute { [self] in
            flushScheduled = false
            flushAll()
        }
    }

    private func flushAll() {
        for boxes in connections.values { for box in boxes { box.connection.flush() } }
    }

    private func stopIssuing() {
        guard issuing else { return }
        issuing = false
        ticker?.cancel()
        ticker = nil
        finishIfDone()
    }

    private func finishIfDone() {
        guard !issuing, inFlight == 0, backlogHead >= backlog.count, let promise = done else { return }
        done = nil
        closeAll()
        promise.succeed(recorders)
    }

    /// The drain deadline: calls still unanswered are counted as such.
    private func abandonUnanswered() {
        guard let promise = done else { return }
        done = nil
        issuing = false
        let waiting = backlog[backlogHead...]
        for entry in waiting { recorders[entry.phase].unanswered += 1 }
        backlog = []
        backlogHead = 0
        // Calls on the wire: charged to the last counted phase.
        if inFlight > 0, let last = recorders.indices.last { recorders[last].unanswered += inFlight }
        inFlight = 0
        closeAll()
        promise.succeed(recorders)
    }

    private func closeAll() {
        for boxes in connections.values { for box in boxes { box.connection.close() } }
    }
}
