import Foundation
import Testing
import WeftServer

@Suite("Configuration")
struct ConfigurationTests {
    static let readme: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)) ?? ""
    }()

    @Test("every `weft serve` option is in the README's configuration table, with its variable and default")
    func readmeListsEveryOption() throws {
        let table = Self.readme.split(separator: "\n").filter { $0.hasPrefix("| `--") || $0.hasPrefix("| —") }
        #expect(!table.isEmpty, "README.md has no configuration table")
        for option in WeftServerConfig.Options.all {
            let row = table.first { row in
                option.flag.isEmpty ? row.contains("`\(option.environment)`") : row.hasPrefix("| `\(option.flag)")
            }
            guard let row else {
                Issue.record("README.md lists no row for \(option.flag.isEmpty ? option.environment : option.flag)")
                continue
            }
            #expect(row.contains(option.environment), "\(option.flag): the README row does not name \(option.environment)")
            // Numeric and named defaults appear as written in the help (`128`, `full`, ...); per-core and
            // computed ones are described in words there.
            if let value = option.defaultText, Int(value) != nil || ["full", "text", "info", "127.0.0.1"].contains(value) {
                #expect(row.contains("`\(value)`"), "\(option.flag): the README says another default than \(value)")
            }
        }
    }
}
