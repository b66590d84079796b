import Foundation
import GRDB
import Synchronization
import Testing
import WeftTestSupport
@testable import WeftSQLite

/// `GroupCommit`: writes handed over while the writer is busy share one
/// transaction; a write that throws is rolled back alone.
@Suite("group commit")
struct GroupCommitTests {
    @Test("50 writes while the writer is busy commit in one or two transactions; the one that throws leaves no row")
    func batches() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let pool = try DatabasePool(path: directory.path("g.sqlite"))
        try await pool.write { db in try db.execute(sql: "CREATE TABLE t (n INTEGER PRIMARY KEY)") }
        let sizes = Mutex<[Int]>([])
        let commits = GroupCommit(pool: pool) { size in sizes.withLock { $0.append(size) } }
        struct Refused: Error {}
        // Hold the writer until every write below is waiting (not for a fixed
        // time: on a busy machine the tasks may start late).
        let release = DispatchSemaphore(value: 0)
        pool.asyncWriteWithoutTransaction { _ in release.wait() }
        let outcomes = await withTaskGroup(of: (Int, Bool).self) { group in
            for n in 0..<50 {
                group.addTask {
                    do {
                        try await commits.write { db in
                            try db.execute(sql: "INSERT INTO t (n) VALUES (?)", arguments: [n])
                            if n == 7 { throw Refused() }
                        }
                        return (n, true)
                    } catch {
                        return (n, false)
                    }
                }
            }
            let deadline = ContinuousClock.now + .seconds(60)
            while commits.pendingCount < 50, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
            release.signal()
            var outcomes: [Int: Bool] = [:]
            for await (n, ok) in group { outcomes[n] = ok }
            return outcomes
        }
        #expect(outcomes.filter { !$0.value }.map(\.key) == [7])
        let rows = try await pool.read { db in try Int.fetchAll(db, sql: "SELECT n FROM t ORDER BY n") }
        #expect(rows == Array(0..<50).filter { $0 != 7 })
        let batches = sizes.withLock { $0 }
        #expect(batches.reduce(0, +) == 50)
        #expect(batches.count <= 2, "\(batches)")
        // A write after the burst still commits on its own.
        let value = try await commits.write { db in
            try db.execute(sql: "INSERT INTO t (n) VALUES (100)")
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t")
        }
        #expect(value == 50)
    }
}
