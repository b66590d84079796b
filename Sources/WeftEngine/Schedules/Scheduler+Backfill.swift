public import Foundation
import WeftObservability
public import WeftStore

/// Backfills: a schedule's ticks over a past range, each with the same
/// idempotency key as the live tick (so a repeat, or a range that overlaps
/// live ticks, runs no tick twice), at most `maxConcurrent` running at once.
/// Progress is written after every tick; a restart resumes after the last
/// tick written (executions still running then no longer count against
/// the concurrency, which is known only in memory).
extension Scheduler {
    /// The ticks of a range [start, end), at most `limit` + 1 (to tell an
    /// over-long range).
    public static func ticks(_ clock: ScheduleClock, from start: Date, to end: Date, limit: Int) -> [Date] {
        var ticks: [Date] = []
        var cursor = start.addingTimeInterval(-1)
        while ticks.count <= limit, let next = clock.next(after: cursor), next < end {
            if next >= start { ticks.append(next) }
            cursor = next
        }
        return ticks
    }

    /// Runs a stored backfill (status Running) in this process.
    public func startBackfill(_ id: String) { launch(id) }

    func launch(_ id: String) {
        state.withLock { state in
            guard state.backfills[id] == nil else { return }
            state.backfills[id] = Task {
                await self.runBackfill(id)
                _ = self.state.withLock { $0.backfills.removeValue(forKey: id) }
                self.metrics?.setBackfillsRunning(self.state.withLock { $0.backfills.count })
            }
        }
        metrics?.setBackfillsRunning(state.withLock { $0.backfills.count })
    }

    /// Cancels a running backfill: no more ticks start (executions already
    /// started go on). Returns the stored record once the runner stopped.
    public func cancelBackfill(_ id: String) async throws -> BackfillRecord? {
        let task = state.withLock { state -> Task<Void, Never>? in
            state.cancelledBackfills.insert(id)
            return state.backfills[id]
        }
        if let task {
            // Ends a wait for a running execution at once; the runner stops
            // without writing, and the record is marked here.
            task.cancel()
            await task.value
        }
        if var record = try await schedules.backfill(id: id), record.status == .running {
            record.status = .cancelled
            record.finishedAt = now()
            try await schedules.updateBackfill(record)
        }
        state.withLock { _ = $0.cancelledBackfills.remove(id) }
        return try await schedules.backfill(id: id)
    }

    private func isCancelled(_ id: String) -> Bool { state.withLock { $0.cancelledBackfills.contains(id) } }

    private func runBackfill(_ id: String) async {
        do {
            guard var record = try await schedules.backfill(id: id), record.status == .running else { return }
            func finish(_ status: BackfillRecord.Status, error: String? = nil) async throws {
                record.status = status
                record.error = error
                record.finishedAt = now()
                try await schedules.updateBackfill(record)
                logger.info("backfill \(id) of schedule \(record.scheduleId): \(status.rawValue), \(record.ticksDone)/\(record.ticksTotal) ticks")
            }
            guard let schedule = try await schedules.schedule(id: record.scheduleId) else {
                return try await finish(.failed, error: "schedule \(record.scheduleId) was deleted")
            }
            let clock = try clock(for: schedule)
            let from = record.lastTick.map { $0.addingTimeInterval(1) } ?? record.startTime
            let ticks = Self.ticks(clock, from: from, to: record.endTime, limit: Self.maxBackfillTicks)
            // Executions of this run still going, and their ends as they come.
            var running: Set<String> = []
            let (ends, endsIn) = AsyncStream<(String, ExecutionStatus)>.makeStream()
            var endsIterator = ends.makeAsyncIterator()
            func counted(_ end: (String, ExecutionStatus)) {
                guard running.remove(end.0) != nil else { return }
                if end.1 == .completed { record.executionsCompleted += 1 } else { record.executionsFailed += 1 }
            }
            for tick in ticks {
                if Task.isCancelled { return }
                if isCancelled(id) { return try await finish(.cancelled) }
                while running.count >= record.maxConcurrent {
                    guard let end = await endsIterator.next() else { return }
                    counted(end)
                    if isCancelled(id) { return try await finish(.cancelled) }
                }
                guard let workflow = try await workflows.workflow(id: schedule.workflowId, includeDeleted: false) else {
                    return try await finish(.failed, error: "workflow \(schedule.workflowId) was deleted")
                }
                var outcome: StartOutcome
                // A tick the quotas refuse waits and tries again (a backfill
                // slows down instead of dropping ticks).
                while true {
                    outcome = try await start(
                        schedule, workflow, tick: tick,
                        update: ScheduleUpdate(scheduleId: schedule.id), end: [], span: nil)
                    guard case .refused = outcome else { break }
                    if Task.isCancelled { return }
                    if isCancelled(id) { return try await finish(.cancelled) }
                    try? await Task.sleep(for: .seconds(1))
                }
                if case .conflict = outcome {
                    return try await finish(.failed, error: "schedule \(schedule.id) was deleted")
                }
                if case .started(let execution, let created) = outcome {
                    metrics?.backfillTick(existing: !created)
                    if created {
                        running.insert(execution.executionId)
                        watchEnd(execution.executionId, into: endsIn)
                    } else {
                        record.ticksExisting += 1
                    }
                }
                record.ticksDone += 1
                record.lastTick = tick
                try await schedules.updateBackfill(record)
            }
            while !running.isEmpty, !isCancelled(id), let end = await endsIterator.next() { counted(end) }
            try await finish(isCancelled(id) ? .cancelled : .completed)
        } catch {
            logger.error("backfill \(id): \(error)")
            if var record = try? await schedules.backfill(id: id), record.status == .running, !Task.isCancelled {
                record.status = .failed
                record.error = "\(error)"
                record.finishedAt = now()
                try? await schedules.updateBackfill(record)
            }
        }
    }

    /// Yields the execution's final status into `ends` when it ends.
    private func watchEnd(_ executionId: String, into ends: AsyncStream<(String, ExecutionStatus)>.Continuation) {
        let (updates, cancel) = engine.feed.subscribe(executionId)
        Task {
            defer { cancel() }
            if let record = try? await executions.execution(id: executionId), record.isFinished {
                ends.yield((executionId, record.status))
                return
            }
            for await update in updates {
                if case .finished(let status) = update {
                    ends.yield((executionId, status))
                    return
                }
            }
        }
    }
}
