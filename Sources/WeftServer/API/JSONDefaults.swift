import Foundation

/// Prints the fields that proto3 JSON leaves out because they hold their
/// default value ("" / 0 / false / [] / the zero enum), so REST clients get a
/// stable shape (`"tasks": []`, `"description": ""`) as the seed shows.
/// Driven by the generated message schemas; unset message fields stay absent.
struct JSONDefaults: Sendable {
    enum Value: Sendable {
        case string(String)
        case zero
        case `false`
        case emptyArray
        case absent

        var json: Any? {
            switch self {
            case .string(let s): return s
            case .zero: return 0
            case .false: return false
            case .emptyArray: return [Any]()
            case .absent: return nil
            }
        }
    }

    private let defaults: [String: [(String, Value, String?)]]

    // The schema dictionaries are read-only after init.
    init(schemas: [String: Any]) {
        var defaults: [String: [(String, Value, String?)]] = [:]
        for (name, schema) in schemas {
            guard let properties = (schema as? [String: Any])?["properties"] as? [String: Any] else { continue }
            var fields: [(String, Value, String?)] = []
            for (field, raw) in properties.sorted(by: { $0.key < $1.key }) {
                guard let property = raw as? [String: Any] else { continue }
                // (default value or nil, nested message name for arrays/refs)
                if let ref = (property["$ref"] as? String) ?? ((property["allOf"] as? [[String: Any]])?.first?["$ref"] as? String) {
                    fields.append((field, .absent, String(ref.split(separator: "/").last ?? "")))
                    continue
                }
                switch property["type"] as? String {
                case "string":
                    if let values = property["enum"] as? [String], let first = values.first {
                        fields.append((field, .string(first), nil))
                    } else if property["format"] == nil || property["format"] as? String == "int64" || property["format"] as? String == "uint64" || property["format"] as? String == "byte" {
                        let isInt = (property["format"] as? String)?.hasSuffix("int64") == true
                        fields.append((field, .string(isInt ? "0" : ""), nil))
                    }
                case "integer", "number": fields.append((field, .zero, nil))
                case "boolean": fields.append((field, .false, nil))
                case "array":
                    let items = property["items"] as? [String: Any]
                    let ref = (items?["$ref"] as? String).map { String($0.split(separator: "/").last ?? "") }
                    fields.append((field, .emptyArray, ref))
                default: break
                }
            }
            defaults[name] = fields
        }
        self.defaults = defaults
    }

    func fill(_ messageName: String, _ json: [UInt8]) -> [UInt8] {
        guard defaults[messageName] != nil,
            var object = (try? JSONSerialization.jsonObject(with: Data(json))) as? [String: Any]
        else { return json }
        fill(messageName, &object)
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return json
        }
        return Array(data)
    }

    private func fill(_ messageName: String, _ object: inout [String: Any]) {
        guard let fields = defaults[messageName] else { return }
        for (name, value, nested) in fields {
            if let nested {
                if var child = object[name] as? [String: Any] {
                    fill(nested, &child)
                    object[name] = child
                } else if let list = object[name] as? [Any] {
                    object[name] = list.map { item -> Any in
                        guard var child = item as? [String: Any] else { return item }
                        fill(nested, &child)
                        return child
                    }
                } else if case .emptyArray = value {
                    object[name] = [Any]()
                }
            } else if object[name] == nil, let json = value.json {
                object[name] = json
            }
        }
    }
}
