import ArgumentParser
import Foundation
import WeftServer

/// `weft auth`: the keys that sign access tokens.
struct Auth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the keys that sign access tokens.",
        subcommands: [RotateKey.self, ListKeys.self])

    struct RotateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Add a new signing key and make it the one that signs.",
            discussion: """
                Older keys still verify the tokens they signed (the newest \(SigningKeyring.kept)
                keys are kept; older ones are dropped, and their tokens refused).
                A running server picks the change up on SIGHUP (or at its next start).
                Not for servers started with WEFT_AUTH_SECRET, which pins one key.
                """)

        @Option(help: "The data directory.") var dataDir: String = "./weft-data"

        func run() async throws {
            let (added, removed) = try SigningKeyring.rotate(dataDirectory: dataDir)
            print("signing key \(added) added and now signs" + (removed.isEmpty ? "" : "; removed \(removed.joined(separator: ", "))"))
            print("send SIGHUP to a running server (kill -HUP <pid>) to use it")
        }
    }

    struct ListKeys: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list-keys", abstract: "List the signing keys (never their secrets).")

        @Option(help: "The data directory.") var dataDir: String = "./weft-data"

        func run() async throws {
            let keys = try SigningKeyring.list(dataDirectory: dataDir)
            let formatter = ISO8601DateFormatter()
            for (index, key) in keys.enumerated() {
                let role = index == keys.count - 1 ? "signs and verifies" : "verifies"
                print("\(key.kid)\t\(formatter.string(from: key.createdAt))\t\(role)")
            }
        }
    }
}
