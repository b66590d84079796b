import Foundation
import Testing
import WeftEngine
import WeftStore
import WeftTestSupport

/// The engine's caps: template results, task outputs, an execution's
/// stored bytes, and the server's maximum attempt timeout.
@Suite("engine limits")
struct LimitsTests {
    @Test("template resolution stops at its cap and says which cap")
    func templateCap() throws {
        let context = Expression.Context(input: .object(["text": .string(String(repeating: "a", count: 600))]), outputs: [:])
        let fits = try Template.resolve(.string("{{ input.text }}"), context, maxBytes: 1000)
        #expect(fits == .string(String(repeating: "a", count: 600)))
        do {
            _ = try Template.resolve(.string("{{ input.text }}{{ input.text }}"), context, maxBytes: 1000)
            Issue.record("expected the cap to stop resolution")
        } catch {
            #expect(error.sizeLimit == 1000)
            #expect(error.message.contains("output_too_large") && error.message.contains("1000 bytes"))
        }
        // A whole-value template counts the value it yields.
        let big = Expression.Context(input: .object(["list": .array(Array(repeating: .string("xxxxxxxxxx"), count: 200))]), outputs: [:])
        #expect(throws: ExpressionError.self) { try Template.resolve(.object(["v": .string("{{ input.list }}")]), big, maxBytes: 1000) }
    }

    @Test("the expansion bomb: each task doubling the last fails with output_too_large, memory stays bounded")
    func expansionBomb() async throws {
        var limits = EngineLimits()
        limits.maxTemplateBytes = 64 * 1024
        try await EngineHarness.with(limits: limits) { h in
            var tasks: [(String, TaskType, [String], JSONValue)] = [
                ("t0", .transform, [], .object(["output": .string("{{ input.seed }}")]))
            ]
            for level in 1...30 {
                tasks.append((
                    "t\(level)", .transform, ["t\(level - 1)"],
                    .object(["output": .string("{{tasks.t\(level - 1).output}}{{tasks.t\(level - 1).output}}")])))
            }
            let workflow = try await h.workflow(tasks)
            let started = try await h.execute(workflow, input: .object(["seed": .string(String(repeating: "x", count: 1024))]))
            let done = try await h.drive(started.executionId)
            #expect(done.status == .failed)
            let byKey = Dictionary(uniqueKeysWithValues: done.tasks.map { ($0.taskKey, $0) })
            // 1 KiB doubles to 32 KiB at t5; t6 would be 64 KiB plus: over the cap.
            #expect(byKey["t5"]?.status == .completed)
            #expect(byKey["t6"]?.status == .failed)
            #expect(byKey["t6"]?.error?.contains("output_too_large") == true)
            #expect(byKey["t6"]?.error?.contains("\(64 * 1024) bytes") == true)
            #expect(byKey["t6"]?.attempt == 1, "a size cap is not retried")
        }
    }

    @Test("a task output over its cap, and outputs past the execution's cap, fail the attempt")
    func outputCaps() async throws {
        var limits = EngineLimits()
        limits.maxTaskOutputBytes = 10_000
        limits.maxExecutionBytes = 25_000
        try await EngineHarness.with(limits: limits) { h in
            let chunk = String(repeating: "y", count: 9_000)
            let big = String(repeating: "z", count: 12_000)
            let one = try await h.workflow([("big", .transform, [], .object(["output": .string(big)]))])
            let first = try await h.drive(try await h.execute(one).executionId)
            #expect(first.status == .failed)
            #expect(first.tasks[0].error?.contains("task's output is larger than the cap of 10000 bytes") == true)

            let three = try await h.workflow([
                ("a", .transform, [], .object(["output": .string(chunk)])),
                ("b", .transform, ["a"], .object(["output": .string(chunk)])),
                ("c", .transform, ["b"], .object(["output": .string(chunk)])),
            ])
            let second = try await h.drive(try await h.execute(three).executionId)
            #expect(second.status == .failed)
            let byKey = Dictionary(uniqueKeysWithValues: second.tasks.map { ($0.taskKey, $0) })
            #expect(byKey["a"]?.status == .completed && byKey["b"]?.status == .completed)
            #expect(byKey["c"]?.error?.contains("execution's outputs would pass its cap of 25000 bytes") == true)
        }
    }

    @Test("the server's maximum attempt timeout stops an attempt whose task sets none")
    func maxAttemptTimeout() async throws {
        let gated = GatedRunner(gatedCalls: 1)
        var limits = EngineLimits()
        limits.maxAttemptTimeoutMs = 500
        try await EngineHarness.with(runners: [gated], limits: limits) { h in
            let workflow = try await h.workflow([("slow", gated.action, [], .emptyObject)], retry: Records.retry(maxAttempts: 1))
            let started = try await h.execute(workflow)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await h.runUntilIdle(worker: "w1") }
                await gated.waitForCall(1)
                try await h.advance(by: 0.499)
                #expect(gated.cancelled == 0)
                try await h.advance(by: 0.001)
                try await group.waitForAll()
            }
            #expect(gated.cancelled == 1)
            let done = try await h.drive(started.executionId)
            #expect(done.status == .failed)
            #expect(done.tasks[0].error?.contains("timed out after 500 ms") == true)
        }
    }
}
