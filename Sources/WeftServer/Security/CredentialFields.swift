import Foundation
import WeftEngine
import WeftStore

/// Fields of task configs that hold credentials: headers and keys named
/// like Authorization, Cookie, X-Api-Key, *token*, *secret*, *password*,
/// and the user info of URLs. Viewers see them masked; a save that writes
/// a literal value into one is warned to use a secret instead. A value that
/// is only a `{{ secrets.NAME }}` reference is no credential and shows as is.
enum CredentialFields {
    static let mask = "[masked]"

    static func isCredentialName(_ name: String) -> Bool {
        let lower = name.lowercased()
        if ["authorization", "proxy-authorization", "cookie", "set-cookie", "auth", "x-auth", "basic-auth"].contains(lower) {
            return true
        }
        let squashed = lower.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: "_", with: "")
        return ["token", "secret", "password", "passwd", "apikey", "credential", "privatekey", "accesskey", "authkey"]
            .contains { squashed.contains($0) }
    }

    /// Whether `text` is nothing but secret references (and whitespace/`Bearer `).
    static func onlyReferencesSecrets(_ text: String) -> Bool {
        guard text.contains("{{") else { return false }
        var rest = text
        while let open = rest.range(of: "{{"), let close = rest.range(of: "}}", range: open.upperBound..<rest.endIndex) {
            let inner = rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)
            guard inner.hasPrefix("secrets.") else { return false }
            rest.removeSubrange(open.lowerBound..<close.upperBound)
        }
        let left = rest.trimmingCharacters(in: .whitespaces).lowercased()
        return left.isEmpty || left == "bearer" || left == "basic" || left == "token"
    }

    /// The config with credential values masked.
    static func masked(_ config: JSONValue) -> JSONValue {
        switch config {
        case .object(let object):
            var out: [String: JSONValue] = [:]
            for (key, value) in object {
                if isCredentialName(key), let text = value.stringValue, !onlyReferencesSecrets(text) {
                    out[key] = .string(mask)
                } else if key == "url", let text = value.stringValue {
                    out[key] = .string(maskUserInfo(text))
                } else {
                    out[key] = masked(value)
                }
            }
            return .object(out)
        case .array(let items): return .array(items.map(masked))
        default: return config
        }
    }

    /// `https://user:pass@host/` -> `https://user:[masked]@host/`.
    static func maskUserInfo(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let afterScheme = url[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@") else { return url }
        let userInfo = authority[..<at]
        if onlyReferencesSecrets(String(userInfo)) { return url }
        let user = userInfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        return String(url[..<schemeEnd.upperBound]) + user + ":" + mask + String(afterScheme[at...])
    }

    /// Where a task config holds a literal credential ("config.headers.Authorization").
    static func literals(in config: JSONValue, at path: String = "config") -> [String] {
        switch config {
        case .object(let object):
            var found: [String] = []
            for key in object.keys.sorted() {
                let value = object[key]!
                if isCredentialName(key), let text = value.stringValue, !text.isEmpty, !onlyReferencesSecrets(text) {
                    found.append("\(path).\(key)")
                } else if key == "url", let text = value.stringValue, maskUserInfo(text) != text {
                    found.append("\(path).url (user info)")
                } else {
                    found += literals(in: value, at: "\(path).\(key)")
                }
            }
            return found
        case .array(let items):
            return items.enumerated().flatMap { literals(in: $1, at: "\(path)[\($0)]") }
        default: return []
        }
    }

    /// The `warning` header of a save that stores literal credentials (RFC 7234 form), or nil.
    static func warning(for tasks: [TaskRecord]) -> String? {
        let found = tasks.flatMap { task in literals(in: task.config).map { "task \(task.key): \($0)" } }
        guard !found.isEmpty else { return nil }
        return "299 weft \"literal credentials in \(found.prefix(5).joined(separator: ", ")): store them as organization secrets and write {{secrets.NAME}}\""
    }
}
