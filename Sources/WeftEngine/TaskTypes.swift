import WeftStore
public import Foundation

/// The built-in task types and what their `config` may hold. Configs are
/// checked strictly (unknown keys are errors) so a typo is caught when the
/// workflow is saved, not when it runs.
public enum TaskTypes {
    /// The config fields each built-in type takes.
    static func allowedKeys(_ type: TaskType) -> Set<String>? {
        switch type {
        case .noop: ["output"]
        case .log: ["message", "level"]
        case .http: ["url", "method", "headers", "body", "expectedStatus", "followRedirects", "maxResponseBytes", "integration"]
        case .delay: ["duration", "until"]
        case .transform: ["output"]
        case .condition: ["expression", "then", "else"]
        case .external: ["queue", "input"]
        case .other: nil
        }
    }

    static let httpMethods: Set<String> = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    /// Checks one task's config; `keys` are the task keys of the workflow
    /// (condition branches must name them). Throws a message without the task
    /// prefix; the caller adds it.
    static func validate(action: TaskType, config: JSONValue, keys: Set<String>) throws(ConfigProblem) {
        guard let allowed = allowedKeys(action) else {
            throw ConfigProblem(
                "unknown action (task type) \"\(action)\"; known types: \(TaskType.builtin.map(\.rawValue).joined(separator: ", "))")
        }
        guard let object = config.objectValue else {
            throw ConfigProblem("config must be a JSON object, got \(config.kindName)")
        }
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw ConfigProblem(
                "config of a \(action) task has no field \"\(key)\"; allowed: \(allowed.sorted().joined(separator: ", "))")
        }
        switch action {
        case .log:
            try optionalString(object, "message")
            if let level = object["level"] {
                guard let name = level.stringValue, ["Info", "Warning", "Error"].contains(name) else {
                    throw ConfigProblem("config.level must be \"Info\", \"Warning\" or \"Error\"")
                }
            }
        case .http:
            guard let url = object["url"]?.stringValue, !url.isEmpty else {
                throw ConfigProblem("an http task needs config.url (a string)")
            }
            let lower = url.lowercased()
            if !(lower.hasPrefix("http://") || lower.hasPrefix("https://") || url.hasPrefix("{{")) {
                throw ConfigProblem("config.url must start with http:// or https:// (got \"\(url)\")")
            }
            if let method = object["method"] {
                guard let name = method.stringValue, httpMethods.contains(name.uppercased()) else {
                    throw ConfigProblem("config.method must be one of \(httpMethods.sorted().joined(separator: ", "))")
                }
            }
            if let headers = object["headers"] {
                guard let fields = headers.objectValue else {
                    throw ConfigProblem("config.headers must be an object of strings")
                }
                for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                    guard value.stringValue != nil else {
                        throw ConfigProblem("config.headers.\(name) must be a string, got \(value.kindName)")
                    }
                    if let text = value.stringValue, text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                        throw ConfigProblem("config.headers.\(name) must not contain CR, LF or NUL characters")
                    }
                    if !EgressPolicy.isHeaderName(name) {
                        throw ConfigProblem("config.headers has \"\(name)\", which is not an HTTP header name (RFC 9110 token characters)")
                    }
                    if EgressPolicy.forbiddenHeaders.contains(name.lowercased()) {
                        throw ConfigProblem(
                            "config.headers.\(name) cannot be set by a task (the client sets Host, Content-Length and Transfer-Encoding; hop-by-hop headers are the connection's)")
                    }
                }
            }
            if let integration = object["integration"] {
                // An http_auth integration of this workflow, by id (checked
                // when it runs: integrations are made after the workflow).
                guard let id = integration.stringValue, id.hasPrefix("int_"), id.utf8.count <= 64 else {
                    throw ConfigProblem("config.integration must be the id of an http_auth integration (int_…)")
                }
            }
            if let expected = object["expectedStatus"] {
                guard let codes = expected.arrayValue, !codes.isEmpty else {
                    throw ConfigProblem("config.expectedStatus must be a non-empty array of status codes")
                }
                for code in codes {
                    guard let number = code.numberValue, number == number.rounded(), (100...599).contains(number) else {
                        throw ConfigProblem("config.expectedStatus entries must be integers from 100 to 599")
                    }
                }
            }
            if let follow = object["followRedirects"], case .bool = follow {} else if object["followRedirects"] != nil {
                throw ConfigProblem("config.followRedirects must be a boolean")
            }
            if let limit = object["maxResponseBytes"] {
                guard let number = limit.numberValue, number == number.rounded(), number >= 1, number <= 1e12 else {
                    throw ConfigProblem("config.maxResponseBytes must be a positive whole number of bytes")
                }
            }
        case .delay:
            switch (object["duration"], object["until"]) {
            case (let duration?, nil):
                guard let text = duration.stringValue, let ms = DurationText.milliseconds(text), ms >= 0 else {
                    throw ConfigProblem("config.duration must be a duration such as \"500ms\", \"30s\", \"5m\" or \"1h30m\"")
                }
                guard ms <= 366 * 86_400_000 else { throw ConfigProblem("config.duration must be at most 366 days") }
            case (nil, let until?):
                guard let text = until.stringValue, text.hasPrefix("{{") || RFC3339.parse(text) != nil else {
                    throw ConfigProblem(
                        "config.until must be an RFC 3339 time (e.g. 2026-12-01T09:00:00Z) or a {{ template }}")
                }
            default:
                throw ConfigProblem("a delay task needs exactly one of config.duration and config.until")
            }
        case .transform:
            guard object["output"] != nil else { throw ConfigProblem("a transform task needs config.output") }
        case .condition:
            guard let expression = object["expression"]?.stringValue,
                !expression.trimmingCharacters(in: .whitespaces).isEmpty
            else {
                throw ConfigProblem("a condition task needs config.expression (a non-empty string)")
            }
            for branch in ["then", "else"] {
                guard let value = object[branch] else { continue }
                guard let list = value.arrayValue else {
                    throw ConfigProblem("config.\(branch) must be an array of task keys")
                }
                for item in list {
                    guard let key = item.stringValue, keys.contains(key) else {
                        throw ConfigProblem("config.\(branch) names \(item.stringValue.map { "\"\($0)\"" } ?? item.kindName), which is not a task of this workflow")
                    }
                }
            }
        case .external:
            guard let queue = object["queue"]?.stringValue, isQueueName(queue) else {
                throw ConfigProblem(
                    "an external task needs config.queue: 1 to 64 letters, digits, '.', '_' or '-'")
            }
        default:
            break
        }
    }

    private static func optionalString(_ object: [String: JSONValue], _ key: String) throws(ConfigProblem) {
        if let value = object[key], value.stringValue == nil {
            throw ConfigProblem("config.\(key) must be a string, got \(value.kindName)")
        }
    }

    public static func isQueueName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)) }
    }
}

struct ConfigProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Durations written as text: "500ms", "30s", "5m", "1h30m", "2d".
public enum DurationText {
    public static func milliseconds(_ text: String) -> Int64? {
        var total: Double = 0
        var number = ""
        var sawUnit = false
        var chars = Array(text.trimmingCharacters(in: .whitespaces))
        guard !chars.isEmpty else { return nil }
        var index = 0
        while index < chars.count {
            let c = chars[index]
            if c.isNumber || c == "." {
                number.append(c)
                index += 1
                continue
            }
            guard let value = Double(number) else { return nil }
            var unit = String(c)
            if index + 1 < chars.count, c == "m", chars[index + 1] == "s" {
                unit = "ms"
                index += 1
            }
            index += 1
            switch unit {
            case "ms": total += value
            case "s": total += value * 1000
            case "m": total += value * 60_000
            case "h": total += value * 3_600_000
            case "d": total += value * 86_400_000
            default: return nil
            }
            number = ""
            sawUnit = true
        }
        chars.removeAll()
        guard number.isEmpty, sawUnit, total.isFinite, total < 1e15 else { return nil }
        return Int64(total)
    }
}

/// RFC 3339 timestamps ("2026-12-01T09:00:00Z", with optional fraction and offset).
public enum RFC3339 {
    public static func parse(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        if let date = plain.date(from: text) { return date }
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text)
    }
}

/// Secret names: letters, digits and '_', starting with a letter, at most 64.
public enum SecretNames {
    public static func isValid(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic, name.utf8.count <= 64 else {
            return false
        }
        return name.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_") }
    }
}
