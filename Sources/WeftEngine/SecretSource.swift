import Foundation
public import WeftStore

/// Where the engine gets secret values, only for the attempt that uses
/// them (the server's sealed secret store; tests use a dictionary).
public protocol SecretSource: Sendable {
    /// The values of the named secrets of `orgId` (names it lacks are
    /// absent: the template then fails naming the secret). Each call is
    /// one use, recorded by the source (audit).
    func reveal(orgId: String, names: Set<String>, for use: SecretUse) async throws -> [String: String]
}

/// Which attempt reads secrets.
public struct SecretUse: Sendable {
    public var executionId: String
    public var workflowId: String
    public var taskKey: String
    public var attempt: Int
    /// Read only to hide them in what an external worker reported (not a use).
    public var forRedaction = false

    public init(executionId: String, workflowId: String, taskKey: String, attempt: Int, forRedaction: Bool = false) {
        self.executionId = executionId
        self.workflowId = workflowId
        self.taskKey = taskKey
        self.attempt = attempt
        self.forRedaction = forRedaction
    }
}

/// Replaces secret values with `[secret:NAME]` in what an attempt leaves
/// behind: its output, error, log lines and span attributes.
public struct SecretRedactor: Sendable {
    /// Longest first, so a value that contains another is replaced whole.
    private let values: [(name: String, value: String)]

    public init(_ secrets: [String: String] = [:]) {
        values = secrets.filter { !$0.value.isEmpty }.map { (name: $0.key, value: $0.value) }
            .sorted { ($0.value.utf8.count, $0.name) > ($1.value.utf8.count, $1.name) }
    }

    public var isEmpty: Bool { values.isEmpty }

    public func redact(_ text: String) -> String {
        guard !values.isEmpty else { return text }
        var out = text
        for (name, value) in values where out.contains(value) {
            out = out.replacingOccurrences(of: value, with: "[secret:\(name)]")
        }
        return out
    }

    public func redact(_ value: JSONValue) -> JSONValue {
        guard !values.isEmpty else { return value }
        switch value {
        case .string(let text): return .string(redact(text))
        case .array(let items): return .array(items.map(redact))
        case .object(let object):
            var out: [String: JSONValue] = [:]
            for (key, item) in object { out[redact(key)] = redact(item) }
            return .object(out)
        default: return value
        }
    }

    public func redact(_ outcome: TaskOutcome) -> TaskOutcome {
        guard !values.isEmpty else { return outcome }
        switch outcome {
        case .completed(let output): return .completed(redact(output))
        case .failed(var error):
            error.message = redact(error.message)
            return .failed(error)
        }
    }
}
