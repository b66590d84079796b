import Foundation

/// Says which field of a rejected JSON request has the wrong type
/// (`tasks[1].dependsOn: expected an array of strings, got a string`).
/// swift-protobuf's JSON errors name no field; this runs only after a
/// decode failed, walking the body against the schemas generated from
/// proto/ (`APISchemas`).
struct JSONTypeExplainer: Sendable {
    indirect enum FieldType: Sendable {
        case string
        case timestamp
        case duration
        case int32
        case int64
        case number
        case boolean
        case enumeration([String])
        case list(FieldType)
        case message(String)
        case object
        case any
    }

    private let messages: [String: [String: FieldType]]

    init(schemas: [String: Any]) {
        var messages: [String: [String: FieldType]] = [:]
        for (name, raw) in schemas {
            guard let properties = (raw as? [String: Any])?["properties"] as? [String: Any] else { continue }
            var fields: [String: FieldType] = [:]
            for (field, schema) in properties {
                fields[field] = Self.type(of: schema)
            }
            messages[name] = fields
        }
        self.messages = messages
    }

    private static func type(of raw: Any) -> FieldType {
        guard let schema = raw as? [String: Any] else { return .any }
        if let ref = (schema["$ref"] as? String) ?? ((schema["allOf"] as? [[String: Any]])?.first?["$ref"] as? String) {
            return .message(String(ref.split(separator: "/").last ?? ""))
        }
        if let values = schema["enum"] as? [String] { return .enumeration(values) }
        switch (schema["type"] as? String, schema["format"] as? String) {
        case ("string", "date-time"): return .timestamp
        case ("string", "duration"): return .duration
        case ("string", "int64"), ("string", "uint64"): return .int64
        case ("string", _): return .string
        case ("integer", "int32"): return .int32
        case ("integer", _): return .int64
        case ("number", _): return .number
        case ("boolean", _): return .boolean
        case ("array", _): return .list(type(of: schema["items"] ?? [:]))
        case ("object", _): return .object
        default: return .any
        }
    }

    /// The boolean fields of a message (for query parameters).
    func booleanFields(_ messageName: String) -> Set<String> {
        Set((messages[messageName] ?? [:]).compactMap { name, type in
            if case .boolean = type { return name }
            return nil
        })
    }

    /// The first field whose value has the wrong type, described; nil when
    /// none is found (the caller keeps its generic message).
    func explain(_ messageName: String, _ json: [UInt8]) -> String? {
        guard let value = try? JSONSerialization.jsonObject(with: Data(json), options: [.fragmentsAllowed]) else {
            return nil
        }
        return check(value, as: .message(messageName), path: "")
    }

    private func check(_ value: Any, as type: FieldType, path: String) -> String? {
        if value is NSNull { return nil }
        let name = path.isEmpty ? "the body" : path
        switch type {
        case .any, .object:
            if case .object = type, !(value is [String: Any]) { return "\(name): expected an object, got \(kind(value))" }
            return nil
        case .string:
            return value is String ? nil : "\(name): expected a string, got \(kind(value))"
        case .timestamp:
            guard let text = value as? String else { return "\(name): expected an RFC 3339 timestamp string, got \(kind(value))" }
            return text.contains("T") ? nil : "\(name): \"\(text)\" is not an RFC 3339 timestamp (e.g. 2026-11-27T12:00:00Z)"
        case .duration:
            guard let text = value as? String else { return "\(name): expected a duration string such as \"1.5s\", got \(kind(value))" }
            return text.hasSuffix("s") && Double(text.dropLast()) != nil
                ? nil : "\(name): \"\(text)\" is not a duration in seconds with an 's' suffix (e.g. \"30s\", \"1.5s\")"
        case .int32, .int64:
            if let number = value as? NSNumber, !isBool(number) {
                return number.doubleValue == number.doubleValue.rounded() ? nil : "\(name): expected a whole number, got \(number)"
            }
            if let text = value as? String, Int64(text) != nil { return nil }
            return "\(name): expected a whole number, got \(kind(value))"
        case .number:
            if let number = value as? NSNumber, !isBool(number) { return nil }
            return "\(name): expected a number, got \(kind(value))"
        case .boolean:
            if let number = value as? NSNumber, isBool(number) { return nil }
            return "\(name): expected true or false, got \(kind(value))"
        case .enumeration(let values):
            if let text = value as? String {
                let allowed = values.filter { !$0.hasSuffix("_UNSPECIFIED") }
                return values.contains(text)
                    ? nil : "\(name): \"\(text)\" is not one of \(allowed.map { "\"\($0)\"" }.joined(separator: ", "))"
            }
            if let number = value as? NSNumber, !isBool(number) { return nil }
            return "\(name): expected one of \(values.filter { !$0.hasSuffix("_UNSPECIFIED") }.joined(separator: ", ")), got \(kind(value))"
        case .list(let element):
            guard let list = value as? [Any] else {
                return "\(name): expected an array, got \(kind(value))"
            }
            for (index, item) in list.enumerated() {
                if let problem = check(item, as: element, path: "\(path)[\(index)]") { return problem }
            }
            return nil
        case .message(let message):
            guard let fields = messages[message] else { return nil }
            guard let object = value as? [String: Any] else {
                return "\(name): expected an object, got \(kind(value))"
            }
            for key in object.keys.sorted() {
                guard let fieldType = fields[key] ?? fields[Self.lowerCamel(key)] else { continue }
                let child = path.isEmpty ? key : "\(path).\(key)"
                if let problem = check(object[key]!, as: fieldType, path: child) { return problem }
            }
            return nil
        }
    }

    private func isBool(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }

    private func kind(_ value: Any) -> String {
        switch value {
        case is String: return "a string"
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case let number as NSNumber: return isBool(number) ? "a boolean" : "a number"
        default: return "null"
        }
    }

    /// `depends_on` -> `dependsOn` (proto names are accepted in JSON too).
    static func lowerCamel(_ name: String) -> String {
        var out = ""
        var upper = false
        for character in name {
            if character == "_" {
                upper = true
            } else {
                out.append(upper ? Character(character.uppercased()) : character)
                upper = false
            }
        }
        return out
    }
}
