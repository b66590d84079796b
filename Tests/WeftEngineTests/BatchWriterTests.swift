import Foundation
import Synchronization
import Testing
@testable import WeftEngine
import WeftStore
import WeftTestSupport

@Suite("batch writer")
struct BatchWriterTests {
    /// A write that waits for the test to open it, and records its batches.
    final class GatedWrite: Sendable {
        let batches = Mutex<[[Int]]>([])
        let entered = Latch()
        let gate = Latch()

        func write(_ units: [Int]) async -> [(any Error)?] {
            batches.withLock { $0.append(units) }
            entered.open()
            await gate.wait()
            return units.map { $0 < 0 ? StoreError.invalid("negative \($0)") : nil }
        }
    }

    /// "ok", or the error a submission met.
    static func outcome(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            return "ok"
        } catch {
            return "\(error)"
        }
    }

    @Test("each batch taken reports how long its oldest unit waited (admission control's view of the queue)")
    func queueWait() async throws {
        let gated = GatedWrite()
        let waits = Mutex<[Double]>([])
        let writer = BatchWriter<Int>(name: "test", maxBatchWeight: 1000, queueWait: { wait in waits.withLock { $0.append(wait) } }) {
            await gated.write($0)
        }
        try await withThrowingTaskGroup(of: Void.self) { loop in
            loop.addTask { await writer.run() }
            writer.append(1)
            await gated.entered.wait()
            // Handed over while the first batch is held: they wait for it.
            writer.append(2)
            writer.append(3)
            try await Task.sleep(for: .milliseconds(30))
            gated.gate.open()
            await writer.flush()
            writer.finish()
            try await loop.waitForAll()
        }
        let seen = waits.withLock { $0 }
        #expect(seen.count == 2)
        #expect(seen.allSatisfy { $0 >= 0 })
        // The second batch's oldest unit waited out the held first batch.
        #expect(seen.last! >= 0.02)
    }

    @Test("units handed over while a batch is written go together in the next one; each caller gets its own outcome")
    func batching() async throws {
        let gated = GatedWrite()
        let writer = BatchWriter<Int>(name: "test", maxBatchWeight: 1000) { await gated.write($0) }
        try await withThrowingTaskGroup(of: Void.self) { loop in
            loop.addTask { await writer.run() }
            let outcomes = try await withThrowingTaskGroup(of: (Int, String).self) { group in
                group.addTask { (0, await Self.outcome { try await writer.submit(0) }) }
                await gated.entered.wait()  // the first batch is being written
                for unit in [1, 2, -3, 4] { group.addTask { (unit, await Self.outcome { try await writer.submit(unit) }) } }
                // All four are pending before the gate opens: count them in.
                while writer.pendingCount < 4 { await Task.yield() }
                gated.gate.open()
                return try await group.reduce(into: [Int: String]()) { $0[$1.0] = $1.1 }
            }
            let refused = "\(StoreError.invalid("negative -3"))"
            #expect(outcomes == [0: "ok", 1: "ok", 2: "ok", -3: refused, 4: "ok"], "only -3 fails, with its own error")
            #expect(gated.batches.withLock { $0.count } == 2)
            #expect(gated.batches.withLock { Set($0[1]) } == [1, 2, -3, 4])
            writer.finish()
            try await loop.waitForAll()
        }
        await #expect(throws: BatchWriterError.stopped("test")) { try await writer.submit(5) }
        #expect(!writer.append(6))
    }

    @Test("a batch holds units up to its weight; flush waits for what was appended; finish writes what is pending")
    func weightsAndFlush() async throws {
        let written = Mutex<[[Int]]>([])
        let writer = BatchWriter<Int>(name: "test", maxBatchWeight: 5, weight: { $0 }) { units in
            written.withLock { $0.append(units) }
            return units.map { _ in nil }
        }
        // Appended before the writer runs: they wait for it.
        for unit in [3, 2, 4, 1, 9] { writer.append(unit) }
        await withTaskGroup(of: Void.self) { loop in
            loop.addTask { await writer.run() }
            await writer.flush()
            #expect(written.withLock { $0 } == [[3, 2], [4, 1], [9]])
            writer.append(1)
            writer.finish()
        }
        #expect(written.withLock { $0.last } == [1])
        #expect(writer.isStopped)
    }
}

