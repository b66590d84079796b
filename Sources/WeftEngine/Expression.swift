public import WeftStore

/// The small expression language of conditions and `{{ templates }}`.
///
/// ```
/// expression := or
/// or         := and ("||" and)*
/// and        := not ("&&" not)*
/// not        := "!" not | comparison
/// comparison := value (("==" | "!=" | "<" | "<=" | ">" | ">=") value)?
/// value      := number | string | true | false | null | path | "(" expression ")"
/// path       := ("input" | "tasks" "." key "." ("output" | "status")) ("." name | "[" integer "]")*
/// ```
/// Strings take single or double quotes. A missing path is `null`. Falsy:
/// null, false, 0, "", [] and {}; everything else is truthy. `==` compares
/// JSON values; `<`-style operators compare two numbers or two strings
/// (anything else is false).
public indirect enum Expression: Sendable, Equatable {
    case literal(JSONValue)
    case path(Path)
    case not(Expression)
    case and(Expression, Expression)
    case or(Expression, Expression)
    case compare(Comparison, Expression, Expression)

    public enum Comparison: String, Sendable {
        case equal = "==", notEqual = "!=", less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    }

    public struct Path: Sendable, Equatable {
        public enum Root: Sendable, Equatable {
            case input
            case taskOutput(String)
            case taskStatus(String)
            /// `secrets.NAME`: an organization secret, in templates only.
            case secret(String)
        }

        public enum Component: Sendable, Equatable {
            case field(String)
            case index(Int)
        }

        public var root: Root
        public var components: [Component]
    }

    /// What an expression reads at run time.
    public struct Context: Sendable {
        public var input: JSONValue
        public var outputs: [String: JSONValue]
        public var statuses: [String: String]
        /// Secret values by name: set only inside the attempt that uses them.
        public var secrets: [String: String] = [:]

        public init(input: JSONValue, outputs: [String: JSONValue] = [:], statuses: [String: String] = [:]) {
            self.input = input
            self.outputs = outputs
            self.statuses = statuses
        }
    }

    /// Keys of the tasks this expression reads.
    public var taskReferences: Set<String> {
        switch self {
        case .literal: return []
        case .path(let path):
            switch path.root {
            case .input, .secret: return []
            case .taskOutput(let key), .taskStatus(let key): return [key]
            }
        case .not(let inner): return inner.taskReferences
        case .and(let a, let b), .or(let a, let b), .compare(_, let a, let b): return a.taskReferences.union(b.taskReferences)
        }
    }

    /// Names of the secrets this expression reads.
    public var secretReferences: Set<String> {
        switch self {
        case .literal: return []
        case .path(let path):
            if case .secret(let name) = path.root { return [name] }
            return []
        case .not(let inner): return inner.secretReferences
        case .and(let a, let b), .or(let a, let b), .compare(_, let a, let b): return a.secretReferences.union(b.secretReferences)
        }
    }

    public func evaluate(_ context: Context) -> JSONValue {
        switch self {
        case .literal(let value): return value
        case .path(let path): return path.resolve(context)
        case .not(let inner): return .bool(!inner.evaluate(context).isTruthy)
        case .and(let a, let b): return .bool(a.evaluate(context).isTruthy && b.evaluate(context).isTruthy)
        case .or(let a, let b): return .bool(a.evaluate(context).isTruthy || b.evaluate(context).isTruthy)
        case .compare(let op, let a, let b):
            let left = a.evaluate(context)
            let right = b.evaluate(context)
            switch op {
            case .equal: return .bool(left == right)
            case .notEqual: return .bool(left != right)
            default:
                let ordering: Int?
                switch (left, right) {
                case (.number(let x), .number(let y)): ordering = x < y ? -1 : (x > y ? 1 : 0)
                case (.string(let x), .string(let y)): ordering = x < y ? -1 : (x > y ? 1 : 0)
                default: ordering = nil
                }
                guard let ordering else { return .bool(false) }
                switch op {
                case .less: return .bool(ordering < 0)
                case .lessOrEqual: return .bool(ordering <= 0)
                case .greater: return .bool(ordering > 0)
                default: return .bool(ordering >= 0)
                }
            }
        }
    }
}

extension Expression.Path {
    func resolve(_ context: Expression.Context) -> JSONValue {
        var value: JSONValue
        switch root {
        case .input: value = context.input
        case .taskOutput(let key): value = context.outputs[key] ?? .null
        case .taskStatus(let key): value = context.statuses[key].map(JSONValue.string) ?? .null
        // Conditions never read secrets (a branch would reveal them bit by bit).
        case .secret: return .null
        }
        for component in components {
            switch (component, value) {
            case (.field(let name), .object(let object)): value = object[name] ?? .null
            case (.index(let index), .array(let array)): value = array.indices.contains(index) ? array[index] : .null
            default: return .null
            }
        }
        return value
    }
}

extension Expression.Path {
    /// Templates read strictly: a path that does not lead to a value is an
    /// error naming where it broke, except that the output of a task that
    /// did not run (Skipped, or Failed with continue-on-failure) is null.
    /// Conditions read leniently, so they can test whether a field exists.
    func resolveStrict(_ context: Expression.Context) throws(ExpressionError) -> JSONValue {
        var value: JSONValue
        var described: String
        switch root {
        case .input:
            value = context.input
            described = "input"
        case .taskOutput(let key):
            guard let output = context.outputs[key] else {
                // A task that did not run (a branch not taken, a failure the
                // policy let through) reads as null: a join after branches
                // reads whichever ran.
                let state = context.statuses[key] ?? "not run"
                if state == "Skipped" || state == "Failed" { return .null }
                throw ExpressionError(message: "tasks.\(key).output: task \(key) has no output (it is \(state))", offset: -1)
            }
            value = output
            described = "tasks.\(key).output"
        case .taskStatus(let key):
            return context.statuses[key].map(JSONValue.string) ?? .null
        case .secret(let name):
            guard let value = context.secrets[name] else {
                throw ExpressionError(message: "secrets.\(name): the organization has no secret \(name)", offset: -1)
            }
            return .string(value)
        }
        for component in components {
            switch (component, value) {
            case (.field(let name), .object(let object)):
                guard let next = object[name] else {
                    throw ExpressionError(message: "\(described) has no field \"\(name)\"", offset: -1)
                }
                value = next
                described += ".\(name)"
            case (.index(let index), .array(let array)):
                guard array.indices.contains(index) else {
                    throw ExpressionError(
                        message: "\(described) has \(array.count) items; [\(index)] is out of range", offset: -1)
                }
                value = array[index]
                described += "[\(index)]"
            case (.field(let name), let other):
                throw ExpressionError(
                    message: "\(described) is \(other.kindName), not an object: cannot read .\(name)", offset: -1)
            case (.index(let index), let other):
                throw ExpressionError(
                    message: "\(described) is \(other.kindName), not an array: cannot read [\(index)]", offset: -1)
            }
        }
        return value
    }
}

extension JSONValue {
    public var isTruthy: Bool {
        switch self {
        case .null: return false
        case .bool(let b): return b
        case .number(let n): return n != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.isEmpty
        }
    }
}

/// A syntax error in an expression, with the character offset.
public struct ExpressionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public let offset: Int
    /// Set when a template result outgrew this many bytes.
    public var sizeLimit: Int? = nil
    /// A negative offset: an error of evaluation, not of syntax.
    public var description: String { offset < 0 ? message : "\(message) at character \(offset + 1)" }
}

extension Expression {
    /// Longest expression accepted; with `maxDepth` it bounds the recursion
    /// of parsing and evaluation whatever a client sends.
    public static let maxLength = 2048
    public static let maxDepth = 64

    public static func parse(_ text: String) throws(ExpressionError) -> Expression {
        try parse(text, inputName: "input")
    }

    /// An event trigger's filter: the event's payload is the input, named
    /// `event`; there are no tasks and no secrets.
    public static func parseEventFilter(_ text: String) throws(ExpressionError) -> Expression {
        try parse(text, inputName: "event")
    }

    static func parse(_ text: String, inputName: String) throws(ExpressionError) -> Expression {
        guard text.count <= maxLength else {
            throw ExpressionError(message: "expression is longer than \(maxLength) characters", offset: maxLength)
        }
        var parser = ExpressionParser(text)
        parser.inputName = inputName
        let expression = try parser.parseOr()
        parser.skipSpaces()
        guard parser.atEnd else { throw parser.error("unexpected \(parser.describeNext())") }
        return expression
    }
}

struct ExpressionParser {
    let chars: [Character]
    var index = 0
    var depth = 0

    /// The name of the input root ("input"; "event" in event filters,
    /// which have only that root).
    var inputName = "input"

    init(_ text: String) { chars = Array(text) }

    var atEnd: Bool { index >= chars.count }

    mutating func skipSpaces() {
        while index < chars.count, chars[index].isWhitespace { index += 1 }
    }

    func error(_ message: String) -> ExpressionError { ExpressionError(message: message, offset: index) }

    func describeNext() -> String { atEnd ? "end of expression" : "\"\(chars[index])\"" }

    mutating func consume(_ token: String) -> Bool {
        skipSpaces()
        let token = Array(token)
        guard index + token.count <= chars.count, Array(chars[index..<index + token.count]) == token else { return false }
        index += token.count
        return true
    }

    mutating func parseOr() throws(ExpressionError) -> Expression {
        var left = try parseAnd()
        while consume("||") { left = .or(left, try parseAnd()) }
        return left
    }

    mutating func parseAnd() throws(ExpressionError) -> Expression {
        var left = try parseNot()
        while consume("&&") { left = .and(left, try parseNot()) }
        return left
    }

    mutating func parseNot() throws(ExpressionError) -> Expression {
        skipSpaces()
        if index < chars.count, chars[index] == "!", index + 1 >= chars.count || chars[index + 1] != "=" {
            index += 1
            try enter()
            defer { depth -= 1 }
            return .not(try parseNot())
        }
        return try parseComparison()
    }

    mutating func parseComparison() throws(ExpressionError) -> Expression {
        let left = try parseValue()
        for op in ["==", "!=", "<=", ">=", "<", ">"] where consume(op) {
            return .compare(Expression.Comparison(rawValue: op)!, left, try parseValue())
        }
        return left
    }

    mutating func parseValue() throws(ExpressionError) -> Expression {
        skipSpaces()
        guard !atEnd else { throw error("expected a value, found the end of the expression") }
        let c = chars[index]
        if c == "(" {
            index += 1
            try enter()
            defer { depth -= 1 }
            let inner = try parseOr()
            guard consume(")") else { throw error("expected \")\", found \(describeNext())") }
            return inner
        }
        if c == "\"" || c == "'" { return .literal(.string(try parseString(quote: c))) }
        if c.isNumber || (c == "-" && index + 1 < chars.count && chars[index + 1].isNumber) {
            let start = index
            index += 1
            while index < chars.count, chars[index].isNumber || chars[index] == "." { index += 1 }
            guard let number = Double(String(chars[start..<index])) else {
                throw ExpressionError(message: "malformed number", offset: start)
            }
            return .literal(.number(number))
        }
        if c.isLetter || c == "_" {
            let start = index
            let word = identifier()
            switch word {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "null": return .literal(.null)
            case inputName: return .path(.init(root: .input, components: try pathComponents()))
            case _ where inputName != "input":
                throw ExpressionError(
                    message: "unknown name \"\(word)\" (paths start with \"\(inputName)\")", offset: start)
            case "secrets":
                guard consume(".") else { throw error("expected \".\" after \"secrets\"") }
                let name = identifier()
                guard !name.isEmpty else { throw error("expected a secret name after \"secrets.\"") }
                return .path(.init(root: .secret(name), components: []))
            case "tasks":
                guard consume(".") else { throw error("expected \".\" after \"tasks\"") }
                let key = identifier()
                guard !key.isEmpty else { throw error("expected a task key after \"tasks.\"") }
                guard consume(".") else { throw error("expected \".output\" or \".status\" after \"tasks.\(key)\"") }
                switch identifier() {
                case "output": return .path(.init(root: .taskOutput(key), components: try pathComponents()))
                case "status": return .path(.init(root: .taskStatus(key), components: []))
                default: throw error("expected \"output\" or \"status\" after \"tasks.\(key).\"")
                }
            default:
                throw ExpressionError(
                    message: "unknown name \"\(word)\" (paths start with \"input\", \"tasks.<key>\" or \"secrets.<name>\")",
                    offset: start)
            }
        }
        throw error("unexpected \(describeNext())")
    }

    mutating func enter() throws(ExpressionError) {
        depth += 1
        if depth > Expression.maxDepth { throw error("expression nests deeper than \(Expression.maxDepth) levels") }
    }

    mutating func identifier() -> String {
        skipSpaces()
        let start = index
        while index < chars.count, chars[index].isLetter || chars[index].isNumber || chars[index] == "_" || chars[index] == "-" {
            index += 1
        }
        return String(chars[start..<index])
    }

    mutating func pathComponents() throws(ExpressionError) -> [Expression.Path.Component] {
        var components: [Expression.Path.Component] = []
        while true {
            if index < chars.count, chars[index] == "." {
                index += 1
                let name = identifier()
                guard !name.isEmpty else { throw error("expected a field name after \".\"") }
                components.append(.field(name))
            } else if index < chars.count, chars[index] == "[" {
                index += 1
                let start = index
                while index < chars.count, chars[index].isNumber { index += 1 }
                guard let value = Int(String(chars[start..<index])), consume("]") else {
                    throw error("expected an index like [0]")
                }
                components.append(.index(value))
            } else {
                return components
            }
        }
    }

    mutating func parseString(quote: Character) throws(ExpressionError) -> String {
        let start = index
        index += 1
        var out = ""
        while index < chars.count {
            let c = chars[index]
            if c == quote {
                index += 1
                return out
            }
            if c == "\\", index + 1 < chars.count {
                out.append(chars[index + 1])
                index += 2
                continue
            }
            out.append(c)
            index += 1
        }
        throw ExpressionError(message: "unterminated string", offset: start)
    }
}

/// `{{ expression }}` templates inside JSON configs, resolved when a task
/// starts. A string that is exactly one template takes the value's JSON
/// type (`"{{ input.count }}"` becomes a number); otherwise values are
/// written into the string.
public enum Template {
    /// The expressions of every template in `value`, with where they are.
    public static func expressions(in value: JSONValue, at path: String) throws(ExpressionError) -> [(String, Expression)] {
        switch value {
        case .string(let text):
            return try parts(text).compactMap { part in
                if case .expression(let expression) = part { return (path, expression) }
                return nil
            }
        case .array(let items):
            var found: [(String, Expression)] = []
            for (index, item) in items.enumerated() { found += try expressions(in: item, at: "\(path)[\(index)]") }
            return found
        case .object(let object):
            var found: [(String, Expression)] = []
            for key in object.keys.sorted() { found += try expressions(in: object[key]!, at: "\(path).\(key)") }
            return found
        default:
            return []
        }
    }

    /// Resolves every template in `value`. Bytes are counted as the result
    /// is built and resolution stops once they pass `maxBytes`: a template
    /// that doubles its input at each task cannot grow without bound.
    /// The secrets `value`'s templates read (`{{ secrets.NAME }}`); cheap
    /// when there are none (no parsing unless a string mentions "secrets").
    public static func secretNames(in value: JSONValue) -> Set<String> {
        var names: Set<String> = []
        collectSecrets(value, into: &names)
        return names
    }

    private static func collectSecrets(_ value: JSONValue, into names: inout Set<String>) {
        switch value {
        case .string(let text):
            guard text.contains("secrets"), let parts = try? parts(text) else { return }
            for case .expression(let expression) in parts {
                if case .path(let path) = expression, case .secret(let name) = path.root { names.insert(name) }
            }
        case .array(let items): for item in items { collectSecrets(item, into: &names) }
        case .object(let object): for item in object.values { collectSecrets(item, into: &names) }
        default: break
        }
    }

    public static func resolve(
        _ value: JSONValue, _ context: Expression.Context, maxBytes: Int = .max
    ) throws(ExpressionError) -> JSONValue {
        var budget = maxBytes
        return try resolve(value, context, budget: &budget, maxBytes: maxBytes)
    }

    private static func spend(_ bytes: Int, _ budget: inout Int, _ maxBytes: Int) throws(ExpressionError) {
        budget -= bytes
        if budget < 0 {
            throw ExpressionError(
                message: "output_too_large: a template result is larger than the cap of \(maxBytes) bytes", offset: -1,
                sizeLimit: maxBytes)
        }
    }

    private static func resolve(
        _ value: JSONValue, _ context: Expression.Context, budget: inout Int, maxBytes: Int
    ) throws(ExpressionError) -> JSONValue {
        switch value {
        case .string(let text):
            let parts = try parts(text)
            if parts.count == 1, case .expression(let expression) = parts[0] {
                let resolved = try Template.value(of: expression, context)
                try spend(resolved.encodedSize(limit: max(budget, 0)), &budget, maxBytes)
                return resolved
            }
            var out = ""
            for part in parts {
                switch part {
                case .text(let text):
                    try spend(text.utf8.count, &budget, maxBytes)
                    out += text
                case .expression(let expression):
                    let resolved = try Template.value(of: expression, context)
                    try spend(resolved.encodedSize(limit: max(budget, 0)), &budget, maxBytes)
                    if case .string(let s) = resolved { out += s } else if resolved != .null { out += resolved.jsonText() }
                }
            }
            return .string(out)
        case .array(let items):
            var out: [JSONValue] = []
            for item in items { out.append(try resolve(item, context, budget: &budget, maxBytes: maxBytes)) }
            return .array(out)
        case .object(let object):
            var out: [String: JSONValue] = [:]
            for (key, item) in object {
                try spend(key.utf8.count, &budget, maxBytes)
                out[key] = try resolve(item, context, budget: &budget, maxBytes: maxBytes)
            }
            return .object(out)
        default:
            try spend(value.encodedSize(), &budget, maxBytes)
            return value
        }
    }

    static func value(of expression: Expression, _ context: Expression.Context) throws(ExpressionError) -> JSONValue {
        if case .path(let path) = expression { return try path.resolveStrict(context) }
        return expression.evaluate(context)
    }

    enum Part {
        case text(String)
        case expression(Expression)
    }

    static func parts(_ text: String) throws(ExpressionError) -> [Part] {
        var parts: [Part] = []
        var rest = Substring(text)
        while let open = rest.range(of: "{{") {
            if open.lowerBound > rest.startIndex { parts.append(.text(String(rest[..<open.lowerBound]))) }
            guard let close = rest[open.upperBound...].range(of: "}}") else {
                throw ExpressionError(message: "\"{{\" without \"}}\"", offset: text.distance(from: text.startIndex, to: open.lowerBound))
            }
            do {
                parts.append(.expression(try Expression.parse(String(rest[open.upperBound..<close.lowerBound]))))
            } catch {
                throw ExpressionError(
                    message: "in {{\(rest[open.upperBound..<close.lowerBound])}}: \(error.message)", offset: error.offset)
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(.text(String(rest))) }
        return parts
    }
}
