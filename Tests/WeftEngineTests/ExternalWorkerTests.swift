import Foundation
import Testing
import WeftEngine
import WeftStore
import WeftTestSupport

/// The external-worker protocol on the engine (in-memory store, manual clock).
@Suite("external workers")
struct ExternalWorkerTests {
    /// Which refusal `body` met (the case of `Engine.ExternalError`), or nil if it succeeded.
    static func refusal(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as Engine.ExternalError {
            switch error {
            case .malformedToken: return "malformedToken"
            case .leaseLost: return "leaseLost"
            case .attemptEnded: return "attemptEnded"
            }
        } catch {
            return "\(error)"
        }
    }

    @Test("per-owner queues, resolved input, heartbeat, complete once, stale and foreign tokens refused")
    func externalWorkers() async throws {
        try await EngineHarness.with { h in
            let workflow = try await h.workflow([
                ("ext", .external, [], .object(["queue": .string("q"), "input": .object(["id": .string("{{ input.id }}")])])),
                ("after", .transform, ["ext"], .object(["output": .string("{{ tasks.ext.output.done }}")])),
            ])
            let engine = h.engine
            let queue = EngineQueues.external(owner: workflow.ownerId, name: "q")
            let started = try await h.execute(workflow, input: .object(["id": .number(7)]))
            // Another account's queue of the same name sees nothing.
            #expect(try await engine.pollExternal(
                queue: EngineQueues.external(owner: "usr_other", name: "q"), worker: "w", leaseDuration: 60) == nil)
            let task = try #require(try await engine.pollExternal(queue: queue, worker: "w", leaseDuration: 60))
            #expect(task.input == .object(["id": .number(7)]))
            #expect(task.attempt == 1 && task.taskKey == "ext" && task.executionId == started.executionId)
            let running = try #require(try await h.store.execution(id: started.executionId))
            #expect(running.tasks[0].status == .running, "the start is committed before the worker hears of it")
            let renewed = try await engine.heartbeatExternal(task.lease.handle, owner: workflow.ownerId, duration: 30)
            #expect(renewed.expiresAt == h.clock.now.addingTimeInterval(30))
            await #expect(throws: Engine.ExternalError.malformedToken) {
                try await engine.completeExternal("garbage", owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
            }
            #expect(
                await Self.refusal {
                    try await engine.completeExternal(
                        task.lease.handle, owner: "usr_other", outcome: .completed(.emptyObject), logLines: [])
                } == "leaseLost", "another owner's worker cannot use the lease")
            try await engine.completeExternal(
                task.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["done": .bool(true)])),
                logLines: ["worker says hi"])
            #expect(
                await Self.refusal {
                    try await engine.completeExternal(
                        task.lease.handle, owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
                } == "leaseLost", "a second result for the same lease is refused")
            let done = try await h.drive(started.executionId)
            #expect(done.status == .completed)
            #expect(done.tasks.map(\.output) == [.object(["done": .bool(true)]), .bool(true)])
            let lines = try await h.logLines(started.executionId)
            #expect(lines.filter { $0 == "worker says hi" }.count == 1)
        }
    }

    @Test("an expired lease goes to the next poller; the first worker's result is refused")
    func externalLeaseExpiry() async throws {
        try await EngineHarness.with { h in
            let workflow = try await h.workflow([("ext", .external, [], .object(["queue": .string("q")]))])
            let queue = EngineQueues.external(owner: workflow.ownerId, name: "q")
            let started = try await h.execute(workflow)
            let first = try #require(try await h.engine.pollExternal(queue: queue, worker: "w1", leaseDuration: 0.05))
            #expect(try await h.engine.pollExternal(queue: queue, worker: "w2", leaseDuration: 60) == nil)
            h.clock.advance(by: 0.05)
            let second = try #require(try await h.engine.pollExternal(queue: queue, worker: "w2", leaseDuration: 60))
            #expect(second.attempt == first.attempt && second.lease.handle != first.lease.handle)
            #expect(
                await Self.refusal {
                    try await h.engine.completeExternal(
                        first.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["by": .string("w1")])),
                        logLines: [])
                } == "leaseLost")
            try await h.engine.completeExternal(
                second.lease.handle, owner: workflow.ownerId, outcome: .completed(.object(["by": .string("w2")])), logLines: [])
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .completed && done.tasks[0].output == .object(["by": .string("w2")]))
        }
    }

    @Test("after an attempt timeout the worker's heartbeat and result are refused as over")
    func externalAttemptTimeout() async throws {
        try await EngineHarness.with { h in
            let workflow = try await h.workflow([("ext", .external, [], .object(["queue": .string("q")]))], timeoutMs: 100)
            let queue = EngineQueues.external(owner: workflow.ownerId, name: "q")
            let started = try await h.execute(workflow)
            let task = try #require(try await h.engine.pollExternal(queue: queue, worker: "w1", leaseDuration: 60))
            try await h.advance(by: 0.1)
            let done = try #require(try await h.store.execution(id: started.executionId))
            #expect(done.status == .failed && done.tasks[0].status == .failed)
            #expect(done.error?.contains("timed out") == true)
            #expect(
                await Self.refusal {
                    _ = try await h.engine.heartbeatExternal(task.lease.handle, owner: workflow.ownerId, duration: 30)
                } == "attemptEnded")
            // The refused heartbeat gave the moot lease up: the result finds no lease.
            #expect(
                await Self.refusal {
                    try await h.engine.completeExternal(
                        task.lease.handle, owner: workflow.ownerId, outcome: .completed(.emptyObject), logLines: [])
                } == "leaseLost")
            let after = try #require(try await h.store.execution(id: started.executionId))
            #expect(after.tasks[0].status == .failed && after.tasks[0].output == nil)
        }
    }
}
