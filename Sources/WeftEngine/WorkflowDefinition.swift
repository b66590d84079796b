public import WeftStore

/// Checks and completes a workflow definition before it is stored: every
/// write (create, replace, task-by-task edits) goes through `validate`.
public enum WorkflowDefinition {
    public static let maxTasks = 500
    public static let maxNameLength = 200
    public static let maxDescriptionLength = 10_000
    public static let maxTimeoutMs: Int64 = 7 * 24 * 3_600_000
    public static let maxBackoffMs: Int64 = 24 * 3_600_000
    /// A retry policy's `totalTimeout` bound, and the ranges of its numbers
    /// (the API's OpenAPI document publishes the same).
    public static let maxTotalTimeoutMs: Int64 = 366 * 86_400_000
    public static let maxAttempts = 1...100
    public static let backoffMultiplier = 1.0...100.0

    /// Validates name, description and tasks; fills in missing task keys (a
    /// slug of the name). Returns the tasks to store, in order.
    public static func validate(name: String, description: String, tasks: [TaskRecord]) throws(DefinitionError)
        -> [TaskRecord]
    {
        if name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw DefinitionError("workflow name must not be empty")
        }
        // SQLite text stops at NUL on the way back; refuse it on the way in.
        if name.unicodeScalars.contains("\0") || description.unicodeScalars.contains("\0") {
            throw DefinitionError("workflow name and description must not contain NUL characters")
        }
        if name.count > maxNameLength {
            throw DefinitionError("workflow name is longer than \(maxNameLength) characters")
        }
        if description.count > maxDescriptionLength {
            throw DefinitionError("workflow description is longer than \(maxDescriptionLength) characters")
        }
        if tasks.count > maxTasks {
            throw DefinitionError("a workflow has at most \(maxTasks) tasks (got \(tasks.count))")
        }
        var tasks = tasks
        // Keys first: dependencies and branches refer to them.
        var firstByKey: [String: Int] = [:]
        var ids: [String: Int] = [:]
        for index in tasks.indices {
            if tasks[index].name.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw DefinitionError("task #\(index + 1): name must not be empty", taskKey: tasks[index].key.isEmpty ? nil : tasks[index].key)
            }
            for text in [tasks[index].name, tasks[index].description, tasks[index].key, tasks[index].action.rawValue]
            where text.unicodeScalars.contains("\0") {
                throw DefinitionError("task #\(index + 1): name, description, key and action must not contain NUL characters")
            }
            if tasks[index].name.count > maxNameLength {
                throw DefinitionError("task #\(index + 1) \"\(tasks[index].name)\": name is longer than \(maxNameLength) characters")
            }
            if tasks[index].key.isEmpty {
                tasks[index].key = slug(tasks[index].name, position: index)
            } else if !isKey(tasks[index].key) {
                throw DefinitionError(
                    "task #\(index + 1) \"\(tasks[index].name)\": key \"\(tasks[index].key)\" must start with a letter and hold only letters, digits, '_' or '-' (at most 64)",
                    taskKey: tasks[index].key)
            }
            let key = tasks[index].key
            if let first = firstByKey[key] {
                throw DefinitionError(
                    "task #\(index + 1) \"\(tasks[index].name)\": key \"\(key)\" is already used by task #\(first + 1); task keys must be unique (set `key` to tell them apart)",
                    taskKey: key)
            }
            firstByKey[key] = index
            if !tasks[index].id.isEmpty {
                if let first = ids[tasks[index].id] {
                    throw DefinitionError(
                        "task #\(index + 1) \"\(tasks[index].name)\": id \(tasks[index].id) is already used by task #\(first + 1)",
                        taskKey: key)
                }
                ids[tasks[index].id] = index
            }
        }
        let keys = Set(firstByKey.keys)
        for (index, task) in tasks.enumerated() {
            let label = "task \"\(task.key)\" (#\(index + 1))"
            var seen: Set<String> = []
            for dependency in task.dependsOn {
                if dependency == task.key {
                    throw DefinitionError("\(label): depends on itself", taskKey: task.key)
                }
                if !keys.contains(dependency) {
                    throw DefinitionError(
                        "\(label): dependsOn names \"\(dependency)\", which is not a task of this workflow", taskKey: task.key)
                }
                if !seen.insert(dependency).inserted {
                    throw DefinitionError("\(label): dependsOn names \"\(dependency)\" twice", taskKey: task.key)
                }
            }
            do {
                try TaskTypes.validate(action: task.action, config: task.config, keys: keys)
            } catch {
                throw DefinitionError("\(label): \(error.message)", taskKey: task.key)
            }
            if task.action == .condition {
                for branch in ["then", "else"] {
                    for target in task.config[branch]?.arrayValue?.compactMap(\.stringValue) ?? [] {
                        let targetTask = tasks[firstByKey[target]!]
                        if !targetTask.dependsOn.contains(task.key) {
                            throw DefinitionError(
                                "\(label): branch task \"\(target)\" must list \"\(task.key)\" in its dependsOn", taskKey: task.key)
                        }
                    }
                }
            }
            if let timeout = task.timeoutMs, timeout <= 0 || timeout > maxTimeoutMs {
                throw DefinitionError("\(label): timeout must be more than 0 and at most 7 days", taskKey: task.key)
            }
            if let retry = task.retry {
                try validateRetry(retry, label: label, key: task.key)
            }
        }
        if let cycle = findCycle(tasks) {
            throw DefinitionError(
                "task \"\(cycle[0])\": the dependencies form a cycle (\(cycle.joined(separator: " -> "))); a workflow must be acyclic",
                taskKey: cycle[0])
        }
        try validateExpressions(tasks, keys: keys)
        return tasks
    }

    /// Templates in configs and condition expressions must parse, and may
    /// only read tasks that run before (ancestors through `dependsOn`).
    static func validateExpressions(_ tasks: [TaskRecord], keys: Set<String>) throws(DefinitionError) {
        let byKey = Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, $0) })
        var ancestorsCache: [String: Set<String>] = [:]
        func ancestors(_ key: String) -> Set<String> {
            if let cached = ancestorsCache[key] { return cached }
            var result: Set<String> = []
            for dependency in byKey[key]?.dependsOn ?? [] {
                result.insert(dependency)
                result.formUnion(ancestors(dependency))
            }
            ancestorsCache[key] = result
            return result
        }
        for (index, task) in tasks.enumerated() {
            let label = "task \"\(task.key)\" (#\(index + 1))"
            var found: [(String, Expression)] = []
            do {
                if task.action == .condition, let text = task.config["expression"]?.stringValue {
                    found.append(("config.expression", try conditionExpression(text)))
                    var rest = task.config.objectValue ?? [:]
                    rest["expression"] = nil
                    found += try Template.expressions(in: .object(rest), at: "config")
                } else {
                    found += try Template.expressions(in: task.config, at: "config")
                }
            } catch {
                throw DefinitionError("\(label): \(error.description)", taskKey: task.key)
            }
            let before = ancestors(task.key)
            for (field, expression) in found where !expression.secretReferences.isEmpty {
                if field == "config.expression" {
                    throw DefinitionError(
                        "\(label): config.expression reads secrets.\(expression.secretReferences.sorted()[0]); conditions cannot read secrets",
                        taskKey: task.key)
                }
                for name in expression.secretReferences.sorted() where !SecretNames.isValid(name) {
                    throw DefinitionError(
                        "\(label): \(field): secrets.\(name) is not a secret name (letters, digits and '_', starting with a letter, at most 64)",
                        taskKey: task.key)
                }
            }
            for (field, expression) in found {
                for reference in expression.taskReferences.sorted() where !before.contains(reference) {
                    if !keys.contains(reference) {
                        throw DefinitionError(
                            "\(label): \(field) reads task \"\(reference)\", which is not a task of this workflow", taskKey: task.key)
                    }
                    throw DefinitionError(
                        "\(label): \(field) reads task \"\(reference)\", which does not run before it (add \"\(reference)\" to dependsOn, directly or through another task)",
                        taskKey: task.key)
                }
            }
        }
    }

    /// A condition's expression, written bare (`input.total > 100`) or as
    /// one template (`{{ input.total > 100 }}`).
    public static func conditionExpression(_ text: String) throws(ExpressionError) -> Expression {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{{"), trimmed.hasSuffix("}}"), trimmed.count >= 4 {
            let inner = trimmed.dropFirst(2).dropLast(2)
            if !inner.contains("{{") { return try Expression.parse(String(inner)) }
        }
        return try Expression.parse(trimmed)
    }

    public static let retryableErrorKinds: Set<String> = [
        "timeout", "http_5xx", "http_4xx", "http_3xx", "connection", "response_too_large", "external", "any",
    ]

    static func validateRetry(_ retry: RetryPolicyRecord, label: String, key: String) throws(DefinitionError) {
        if let total = retry.totalTimeoutMs, total <= 0 || total > maxTotalTimeoutMs {
            throw DefinitionError("\(label): retry.totalTimeout must be more than 0 and at most 366 days", taskKey: key)
        }
        if !maxAttempts.contains(retry.maxAttempts) {
            throw DefinitionError("\(label): retry.maxAttempts must be from 1 to 100", taskKey: key)
        }
        if retry.initialBackoffMs < 0 || retry.maxBackoffMs < 0 {
            throw DefinitionError("\(label): retry backoffs must not be negative", taskKey: key)
        }
        if retry.initialBackoffMs > maxBackoffMs || retry.maxBackoffMs > maxBackoffMs {
            throw DefinitionError("\(label): retry backoffs must be at most 1 day", taskKey: key)
        }
        if retry.maxBackoffMs > 0, retry.maxBackoffMs < retry.initialBackoffMs {
            throw DefinitionError("\(label): retry.maxBackoff must not be less than retry.initialBackoff", taskKey: key)
        }
        if retry.backoffMultiplier != 0, !backoffMultiplier.contains(retry.backoffMultiplier) {
            throw DefinitionError("\(label): retry.backoffMultiplier must be from 1 to 100", taskKey: key)
        }
        if !(retry.jitter >= 0 && retry.jitter <= 1) {
            throw DefinitionError("\(label): retry.jitter must be from 0 to 1", taskKey: key)
        }
        for kind in retry.retryableErrors where !retryableErrorKinds.contains(kind) {
            throw DefinitionError(
                "\(label): retry.retryableErrors has unknown kind \"\(kind)\"; known: \(retryableErrorKinds.sorted().joined(separator: ", "))",
                taskKey: key)
        }
    }

    /// A cycle as a path of keys (first == last), or nil if the graph is a DAG.
    static func findCycle(_ tasks: [TaskRecord]) -> [String]? {
        let byKey = Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, $0) })
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var stack: [String] = []
        func visit(_ key: String) -> [String]? {
            switch marks[key] {
            case .done: return nil
            case .visiting:
                let start = stack.firstIndex(of: key)!
                return Array(stack[start...]) + [key]
            case nil: break
            }
            marks[key] = .visiting
            stack.append(key)
            for dependency in byKey[key]?.dependsOn ?? [] {
                if let cycle = visit(dependency) { return cycle }
            }
            stack.removeLast()
            marks[key] = .done
            return nil
        }
        for task in tasks {
            if let cycle = visit(task.key) { return cycle }
        }
        return nil
    }

    static func isKey(_ key: String) -> Bool {
        guard let first = key.unicodeScalars.first, first.isASCII, first.properties.isAlphabetic, key.utf8.count <= 64 else {
            return false
        }
        return key.unicodeScalars.allSatisfy {
            $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "_" || $0 == "-")
        }
    }

    /// "Fetch the Order!" -> "fetch_the_order". Falls back to "task_N".
    static func slug(_ name: String, position: Int) -> String {
        var out = ""
        var pendingSeparator = false
        for scalar in name.lowercased().unicodeScalars {
            if scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar)) {
                if pendingSeparator && !out.isEmpty { out.append("_") }
                out.unicodeScalars.append(scalar)
                pendingSeparator = false
            } else {
                pendingSeparator = true
            }
            if out.utf8.count >= 60 { break }
        }
        if out.isEmpty { return "task_\(position + 1)" }
        if let first = out.unicodeScalars.first, !first.properties.isAlphabetic { out = "t_" + out }
        return out
    }
}
