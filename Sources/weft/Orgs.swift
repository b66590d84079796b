import ArgumentParser
import Foundation
import WeftSQLite
import WeftStore

/// `weft orgs`: operator commands on organizations (on the data directory;
/// safe while the server runs: SQLite serializes the writes).
struct Orgs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Operator commands on organizations.",
        subcommands: [SetPlan.self])

    struct SetPlan: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set-plan",
            abstract: "Put an organization on a plan (a running server applies its quotas within a second).",
            discussion: "The plan is a name the server knows (free, team, enterprise or one given with --plan); an empty name means the server's default plan.")

        @Option(help: "The data directory.") var dataDir: String = "./weft-data"
        @Argument(help: "The organization id (org_...).") var orgId: String
        @Argument(help: "The plan name.") var plan: String

        func run() async throws {
            let path = (dataDir as NSString).appendingPathComponent("weft.sqlite")
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no Weft store at \(path)") }
            guard plan.isEmpty || plan.utf8.count <= 32
                && plan.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-".unicodeScalars.contains($0)) })
            else { throw ValidationError("plan \"\(plan)\" is not a plan name (letters, digits, '_' and '-', at most 32)") }
            let store = try SQLiteStore(.init(path: path))
            do {
                try await store.setPlan(orgId: orgId, plan: plan)
            } catch StoreError.notFound {
                throw ValidationError("no organization \(orgId)")
            }
            print("organization \(orgId) is on plan \(plan.isEmpty ? "(the server's default)" : plan)")
        }
    }
}
