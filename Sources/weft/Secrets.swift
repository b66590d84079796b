import ArgumentParser
import Foundation
import Logging
import WeftServer
import WeftSQLite

/// `weft secrets`: the master key of the secret store.
struct Secrets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the master key that seals organization secrets.",
        subcommands: [NewKey.self, RotateKey.self])

    struct NewKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "new-key",
            abstract: "Print a new random master key (base64), or write it to a 0600 file.",
            discussion: "Keep the key outside the data directory; a backup of the data must not carry its key.")

        @Option(help: "Write the key to this file (created 0600; refused if it exists).") var out: String?

        func run() async throws {
            let key = MasterKey.generate()
            guard let out else {
                print(key)
                return
            }
            guard !FileManager.default.fileExists(atPath: out) else { throw ValidationError("\(out) exists; not overwritten") }
            guard FileManager.default.createFile(atPath: out, contents: Data((key + "\n").utf8), attributes: [.posixPermissions: 0o600])
            else { throw ValidationError("cannot write \(out)") }
            print("wrote a new master key to \(out)")
        }
    }

    struct RotateKey: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-key",
            abstract: "Seal every secret again under a new master key.",
            discussion: """
                Opens each value with the old key (or the new one, for values sealed
                already) and seals it under the new key, in one transaction; the key
                id stored with each value says which key sealed it. Safe to run while
                the server runs (start it with both keys until the rotation is done),
                and safe to run again. Afterwards start the server with the new key only.
                """)

        @Option(help: "The data directory.") var dataDir: String = "./weft-data"
        @Option(help: "The new master key file.") var keyFile: String
        @Option(help: "An old master key file; repeatable.") var oldKeyFile: [String] = []

        func run() async throws {
            var settings = WeftServerConfig.SecretsSettings()
            settings.keyFile = keyFile
            settings.oldKeyFiles = oldKeyFile
            let path = (dataDir as NSString).appendingPathComponent("weft.sqlite")
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no Weft store at \(path)") }
            do {
                let sealer = try settings.sealer(dataDirectory: dataDir)
                let store = try SQLiteStore(.init(path: path))
                let vault = SecretVault(
                    store: store, sealer: sealer,
                    audit: AuditLog(store: store, logger: Logger(label: "weft.secrets")))
                let count = try await vault.rotate()
                print("re-sealed \(count) secret(s) under key \(sealer?.current.id ?? "?")")
            } catch let error as WeftStartupError {
                throw ValidationError(error.description)
            }
        }
    }
}
