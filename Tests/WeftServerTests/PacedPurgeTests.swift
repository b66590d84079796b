import Foundation
import Testing
@testable import WeftServer

@Suite("Paced purge")
struct PacedPurgeTests {
    @Test("batches grow towards the target duration by at most 2x, shrink by at most 2x, within the limits")
    func nextLimit() {
        let pace = PacedPurge(batchTarget: .milliseconds(2), batchLimits: 10...5_000)
        #expect(pace.nextLimit(after: 100, took: .milliseconds(2)) == 100)
        #expect(pace.nextLimit(after: 100, took: .microseconds(100)) == 200)   // 20x too fast: doubled
        #expect(pace.nextLimit(after: 100, took: .milliseconds(50)) == 50)     // 25x too slow: halved
        #expect(pace.nextLimit(after: 100, took: .milliseconds(3)) == 66)
        #expect(pace.nextLimit(after: 4_000, took: .microseconds(10)) == 5_000)
        #expect(pace.nextLimit(after: 12, took: .seconds(1)) == 10)
        #expect(pace.nextLimit(after: 100, took: .zero) == 200)
    }

    @Test("runs batches until one deletes fewer than allowed, resting between them, and counts each")
    func run() async throws {
        let pace = PacedPurge(minimumRest: .milliseconds(1), initialBatch: 10)
        let rows = Counter(left: 95)
        let counted = Counter(left: 0)
        let clock = ContinuousClock()
        let started = clock.now
        let total = try await pace.run({ limit in await rows.take(limit) }, deleted: { counted.add($0) })
        #expect(total == 95)
        #expect(counted.value == 95)
        #expect(await rows.value == 0)
        // At least one rest per full batch: 10, then up to 20, 40 … (fast batches double).
        #expect(clock.now - started >= .milliseconds(2))
        #expect(try await pace.run({ _ in 0 }) == 0)
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    init(left: Int) { self.left = left }
    var value: Int { lock.withLock { left } }
    func take(_ n: Int) async -> Int { lock.withLock { let taken = min(n, left); left -= taken; return taken } }
    func add(_ n: Int) { lock.withLock { left += n } }
}
