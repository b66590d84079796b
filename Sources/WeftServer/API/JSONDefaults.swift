import Foundation

/// Prints the fields that proto3 JSON leaves out because they hold their
/// default value ("" / 0 / false / [] / the zero enum), so REST clients get a
/// stable shape (`"tasks": []`, `"description": ""`) as the seed shows.
/// Driven by the generated message schemas; unset message fields stay absent.
/// `ProtoJSONEncoder` writes these defaults in its one pass (`texts`); `fill`
/// adds them to swift-protobuf's JSON of what the encoder leaves to it.
struct JSONDefaults: Sendable {
    private let plans: [String: Plan]
    /// Per message: the JSON name and default text of each field printed
    /// when absent (what `ProtoJSONEncoder` writes in the same pass).
    let texts: [String: [(jsonName: String, text: String)]]

    init(types: APIFieldTypes) {
        var plans: [String: Plan] = [:]
        var texts: [String: [(jsonName: String, text: String)]] = [:]
        for (name, fields) in types.messages {
            var plan = Plan()
            for (field, type) in fields.sorted(by: { $0.key < $1.key }) {
                let key = Array(field.utf8)
                let text: String?
                switch type {
                case .string: text = "\"\""
                case .integer(let asString): text = asString ? "\"0\"" : "0"
                case .number: text = "0"
                case .boolean: text = "false"
                case .enumeration(let values): text = values.first.map { "\"\($0)\"" }
                case .list(let element):
                    text = "[]"
                    if case .message(let nested) = element { plan.nested[key] = nested }
                case .message(let nested):
                    // An unset message stays absent (null semantics).
                    text = nil
                    plan.nested[key] = nested
                case .timestamp, .duration, .object, .any: text = nil
                }
                if let text {
                    plan.defaults.append((key, Array("\"\(field)\":\(text)".utf8)))
                    texts[name, default: []].append((field, text))
                }
            }
            plans[name] = plan
        }
        self.plans = plans
        self.texts = texts
    }

    func fill(_ messageName: String, _ json: [UInt8]) -> [UInt8] {
        guard let plan = plans[messageName] else { return json }
        var scanner = Scanner(input: json, plans: plans)
        scanner.output.reserveCapacity(json.count + 128)
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{"), scanner.object(plan), scanner.atEnd else { return json }
        return scanner.output
    }

    /// Per message: the JSON text of each default field, and the message
    /// name behind each field that holds a message (or a list of them).
    struct Plan: Sendable {
        var defaults: [(key: [UInt8], text: [UInt8])] = []
        var nested: [[UInt8]: String] = [:]
    }

    /// A single pass over swift-protobuf's JSON output that copies it and
    /// appends the missing fields at the end of each known object: no parse
    /// into Foundation objects, key order kept.
    struct Scanner {
        let input: [UInt8]
        let plans: [String: Plan]
        var index = 0
        var output: [UInt8] = []

        init(input: [UInt8], plans: [String: Plan]) {
            self.input = input
            self.plans = plans
        }

        var peek: UInt8? { index < input.count ? input[index] : nil }
        var atEnd: Bool {
            mutating get {
                skipWhitespace()
                return index == input.count
            }
        }

        mutating func skipWhitespace() {
            while index < input.count, input[index] == 0x20 || input[index] == 0x0A || input[index] == 0x0D || input[index] == 0x09 {
                index += 1
            }
        }

        /// Copies a string token; returns its raw content (escapes kept).
        mutating func string() -> ArraySlice<UInt8>? {
            guard peek == UInt8(ascii: "\"") else { return nil }
            let start = index + 1
            index += 1
            while index < input.count {
                switch input[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    index += 1
                    output.append(contentsOf: input[(start - 1)..<index])
                    return input[start..<(index - 1)]
                default: index += 1
                }
            }
            return nil
        }

        mutating func value(_ nested: Plan?) -> Bool {
            skipWhitespace()
            switch peek {
            case UInt8(ascii: "{"): return nested.map { object($0) } ?? object(Plan())
            case UInt8(ascii: "["): return array(nested)
            case UInt8(ascii: "\""): return string() != nil
            case nil: return false
            default:
                let start = index
                while index < input.count, !",}] \n\r\t".utf8.contains(input[index]) { index += 1 }
                output.append(contentsOf: input[start..<index])
                return index > start
            }
        }

        mutating func array(_ nested: Plan?) -> Bool {
            output.append(UInt8(ascii: "["))
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") {
                index += 1
                output.append(UInt8(ascii: "]"))
                return true
            }
            while true {
                guard value(nested) else { return false }
                skipWhitespace()
                guard let next = peek else { return false }
                index += 1
                output.append(next)
                if next == UInt8(ascii: "]") { return true }
                guard next == UInt8(ascii: ",") else { return false }
            }
        }

        mutating func object(_ plan: Plan) -> Bool {
            output.append(UInt8(ascii: "{"))
            index += 1
            var seen: [ArraySlice<UInt8>] = []
            skipWhitespace()
            if peek == UInt8(ascii: "}") {
                index += 1
            } else {
                while true {
                    skipWhitespace()
                    guard let key = string() else { return false }
                    seen.append(key)
                    skipWhitespace()
                    guard peek == UInt8(ascii: ":") else { return false }
                    index += 1
                    output.append(UInt8(ascii: ":"))
                    guard value(plan.nested[Array(key)].flatMap { plans[$0] }) else { return false }
                    skipWhitespace()
                    guard let next = peek else { return false }
                    index += 1
                    if next == UInt8(ascii: "}") { break }
                    guard next == UInt8(ascii: ",") else { return false }
                    output.append(next)
                }
            }
            var first = seen.isEmpty
            for field in plan.defaults where !seen.contains(where: { $0.elementsEqual(field.key) }) {
                if !first { output.append(UInt8(ascii: ",")) }
                first = false
                output.append(contentsOf: field.text)
            }
            output.append(UInt8(ascii: "}"))
            return true
        }
    }
}
