import Foundation
import WeftRPC

/// Says which field of a rejected JSON request has the wrong type
/// (`tasks[1].dependsOn: expected an array of strings, got a string`).
/// swift-protobuf's JSON errors name no field; this runs only after a
/// decode failed, walking the body against the schemas generated from
/// proto/ (`APISchemas`).
struct JSONTypeExplainer: Sendable {
    typealias FieldType = APIFieldTypes.FieldType

    private let messages: [String: [String: FieldType]]

    init(types: APIFieldTypes) {
        messages = types.messages
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
        case .integer:
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
                guard let fieldType = fields[key] ?? fields[RESTBridge.jsonName(key)] else { continue }
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
}
