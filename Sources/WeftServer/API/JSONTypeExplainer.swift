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

    /// The request object with every timestamp field that carries an offset
    /// rewritten as the same instant in UTC ("Z"). RFC 3339 allows any
    /// offset and the proto3 JSON mapping accepts them, but swift-protobuf's
    /// parser refuses offsets of 14 hours or more; the bridge retries with
    /// this after such a refusal. Only fields typed as timestamps change.
    func utcTimestamps(_ messageName: String, _ object: [String: Any]) -> [String: Any] {
        (rewrite(object, as: .message(messageName)) as? [String: Any]) ?? object
    }

    private func rewrite(_ value: Any, as type: FieldType) -> Any {
        switch type {
        case .timestamp:
            guard let text = value as? String else { return value }
            return RFC3339UTC.convert(text) ?? text
        case .list(let element):
            guard let list = value as? [Any] else { return value }
            return list.map { rewrite($0, as: element) }
        case .message(let message):
            guard let fields = messages[message], var object = value as? [String: Any] else { return value }
            for (key, child) in object {
                guard let fieldType = fields[key] ?? fields[RESTBridge.jsonName(key)] else { continue }
                object[key] = rewrite(child, as: fieldType)
            }
            return object
        default:
            return value
        }
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

/// An RFC 3339 timestamp with an offset as the same instant in UTC, the
/// fraction kept digit for digit.
enum RFC3339UTC {
    static func convert(_ text: String) -> String? {
        let chars = Array(text.utf8)
        guard chars.count >= 25, chars.count <= 35, chars[10] == UInt8(ascii: "T") else { return nil }
        let sign = chars[chars.count - 6]
        guard sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-"), chars[chars.count - 3] == UInt8(ascii: ":") else {
            return nil
        }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard chars[index] >= 48, chars[index] <= 57 else { return nil }
                value = value * 10 + Int(chars[index] - 48)
            }
            return value
        }
        guard chars[4] == UInt8(ascii: "-"), chars[7] == UInt8(ascii: "-"), chars[13] == UInt8(ascii: ":"),
            chars[16] == UInt8(ascii: ":"), let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
            let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19),
            let offsetHours = number((chars.count - 5)..<(chars.count - 3)),
            let offsetMinutes = number((chars.count - 2)..<chars.count), offsetMinutes < 60
        else { return nil }
        let fraction = String(decoding: chars[19..<(chars.count - 6)], as: UTF8.self)
        guard fraction.isEmpty || (fraction.first == "." && fraction.count >= 2 && fraction.dropFirst().allSatisfy(\.isNumber))
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let local = calendar.date(from: DateComponents(
            year: year, month: month, day: day, hour: hour, minute: minute, second: second))
        else { return nil }
        let offset = (offsetHours * 60 + offsetMinutes) * 60 * (sign == UInt8(ascii: "+") ? 1 : -1)
        let utc = calendar.dateComponents(
            [.era, .year, .month, .day, .hour, .minute, .second], from: local.addingTimeInterval(Double(-offset)))
        // Era 1 (AD): year 1 BC would read as year 1 without it.
        guard utc.era == 1, let y = utc.year, (1...9999).contains(y), let mo = utc.month, let d = utc.day, let h = utc.hour,
            let mi = utc.minute, let s = utc.second
        else { return nil }
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let yearText = String(repeating: "0", count: 4 - String(y).count) + String(y)
        return "\(yearText)-\(two(mo))-\(two(d))T\(two(h)):\(two(mi)):\(two(s))\(fraction)Z"
    }
}
