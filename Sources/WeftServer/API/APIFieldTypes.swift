import Foundation

/// The JSON type of every field of every weft.v1 message, read once from the
/// generated schemas (`APISchemas`). Both REST helpers that need field types
/// use it: `JSONDefaults` (which defaults to print) and `JSONTypeExplainer`
/// (which field of a request has the wrong type).
struct APIFieldTypes: Sendable {
    indirect enum FieldType: Sendable {
        case string
        case timestamp
        case duration
        /// proto3 JSON writes 64-bit integers as strings.
        case integer(asString: Bool)
        case number
        case boolean
        case enumeration([String])
        case list(FieldType)
        case message(String)
        /// google.protobuf.Struct: any JSON object.
        case object
        case any
    }

    /// Message name -> JSON field name -> type.
    let messages: [String: [String: FieldType]]

    init(schemas: [String: Any]) {
        var messages: [String: [String: FieldType]] = [:]
        for (name, raw) in schemas {
            guard let properties = (raw as? [String: Any])?["properties"] as? [String: Any] else { continue }
            messages[name] = properties.mapValues(Self.type(of:))
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
        case ("string", "int64"), ("string", "uint64"): return .integer(asString: true)
        case ("string", _): return .string
        case ("integer", _): return .integer(asString: false)
        case ("number", _): return .number
        case ("boolean", _): return .boolean
        case ("array", _): return .list(type(of: schema["items"] ?? [:]))
        case ("object", _): return .object
        default: return .any
        }
    }
}
