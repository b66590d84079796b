import ArgumentParser
import Foundation
import WeftSQLite
import WeftStore

/// `weft analytics`: operator commands on the analytics rollups.
struct Analytics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operator commands on the analytics rollups.",
        subcommands: [Rebuild.self])

    struct Rebuild: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recompute every rollup from the stored executions.",
            discussion: """
                The rollups (statistics, trends, budgets) are kept as executions finish; this rebuilds them if they \
                were lost or came from an older version. Executions deleted by --execution-retention-days are no \
                longer stored, so their share of the rollups is lost by a rebuild. One write transaction: the server \
                may run meanwhile (its commits wait for it).
                """)

        @Option(help: "The data directory.") var dataDir: String = "./weft-data"

        func run() async throws {
            let path = (dataDir as NSString).appendingPathComponent("weft.sqlite")
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no Weft store at \(path)") }
            let store = try SQLiteStore(.init(path: path))
            let start = ContinuousClock.now
            let folded = try await store.rebuildRollups()
            let elapsed = ContinuousClock.now - start
            print("rebuilt the rollups from \(folded) finished executions in \(elapsed.formatted(.units(allowed: [.seconds, .milliseconds])))")
        }
    }
}
