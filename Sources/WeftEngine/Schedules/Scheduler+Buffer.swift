import Foundation
import WeftStore

/// buffer_one: a tick that waits for the schedule's running execution.
extension Scheduler {
    /// Starts the schedule's buffered tick when `running` ends. One watcher
    /// per (schedule, execution): a watcher of an older execution leaving
    /// does not stop a new one from being set up, and two firing the same
    /// buffered tick are kept apart by its guard.
    func watchBuffered(_ scheduleId: String, running executionId: String) {
        let key = scheduleId + "|" + executionId
        state.withLock { state in
            guard state.watching[key] == nil else { return }
            state.watching[key] = Task {
                defer { _ = self.state.withLock { $0.watching.removeValue(forKey: key) } }
                let (updates, cancel) = self.engine.feed.subscribe(executionId)
                defer { cancel() }
                // Subscribed first, then read: the end cannot fall in between.
                if (try? await self.isRunning(executionId)) ?? false {
                    for await update in updates {
                        if case .finished = update { break }
                    }
                }
                // A store error is tried again (the buffered tick must not be
                // left waiting for a restart).
                for attempt in 0..<5 {
                    guard !Task.isCancelled else { return }
                    if await self.fireBuffered(scheduleId) { return }
                    try? await Task.sleep(for: .seconds(1 << attempt))
                }
            }
        }
    }

    /// Starts (or skips) the buffered tick; false after a store error.
    private func fireBuffered(_ scheduleId: String) async -> Bool {
        do {
            guard let schedule = try await schedules.schedule(id: scheduleId), let tick = schedule.bufferedTick else { return true }
            guard let workflow = try await workflows.workflow(id: schedule.workflowId, includeDeleted: false) else {
                let notes = tickNotes(schedule, .scheduleTickSkipped, tick: tick, workflowName: "", reason: "workflow_gone")
                try await executions.apply([.schedule(ScheduleUpdate(
                    scheduleId: scheduleId, expectBuffered: tick, skipped: 1, skippedTick: tick, skipReason: "workflow_gone",
                    buffer: .clear))] + notes)
                engine.notifier?.committed(notes.compactMap(\.outboxEntry))
                return true
            }
            let update = ScheduleUpdate(scheduleId: scheduleId, expectBuffered: tick, fired: tick, buffer: .clear)
            switch try await start(schedule, workflow, tick: tick, update: update, end: [], span: nil) {
            case .started:
                metrics?.tickFired(lag: 0)
            case .refused(let reason):
                let notes = tickNotes(schedule, .scheduleTickSkipped, tick: tick, workflowName: workflow.name, reason: reason)
                try await executions.apply([.schedule(ScheduleUpdate(
                    scheduleId: scheduleId, expectBuffered: tick, skipped: 1, skippedTick: tick, skipReason: reason,
                    buffer: .clear))] + notes)
                engine.notifier?.committed(notes.compactMap(\.outboxEntry))
                metrics?.tickSkipped(reason)
            case .conflict:
                break
            }
            return true
        } catch StoreError.conflict {
            return true  // another watcher fired it
        } catch {
            logger.error("schedule \(scheduleId): buffered tick: \(error)")
            return false
        }
    }
}
