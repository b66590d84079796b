import Foundation
import WeftObservability
public import SwiftProtobuf

/// Writes response messages as proto3 JSON straight into bytes, with the
/// fields that hold their default value printed too (the REST bridge's
/// stable shape: `"tasks": []`, `"description": ""`), in one pass driven by
/// tables computed once per message type from the descriptor set: each
/// field's `"jsonName":` bytes, enum value names, and the default text of
/// the fields the bridge always prints.
///
/// Why (Step 13): the bridge used to print with swift-protobuf's JSON
/// encoder, which builds Strings field by field, then re-scanned that text
/// to add the defaults (`JSONDefaults`): 35 % of a REST GetWorkflow's CPU.
///
/// The output is byte for byte what that pair printed (`ProtoJSONEncoderTests`
/// compares them): fields in the order swift-protobuf visits them, then the
/// missing defaults in name order, no spaces, swift-protobuf's escaping and
/// number forms. What the tables do not cover (maps, groups, extensions,
/// other well-known types, a message type without a table)
/// falls back to swift-protobuf for that value. Timestamp, Struct, Value
/// and ListValue are written here; Duration and the rest by swift-protobuf.
public final class ProtoJSONEncoder: Sendable {
    /// One message type's table.
    struct Table: Sendable {
        /// Field number -> `"jsonName":` (indexed by number: a lookup per field).
        var keys: [[UInt8]?] = []
        /// Field number -> enum number -> `"NAME"`, for enum fields.
        var enums: [Int: [Int: [UInt8]]] = [:]
        /// Fields always printed, in name order: number, `"name":default`.
        var defaults: [(number: Int, text: [UInt8])] = []
    }

    private let tables: [String: Table]
    /// For a value the tables do not cover: swift-protobuf's JSON, then
    /// the defaults filled in by whoever built the tables (message name, JSON).
    private let fallbackShape: @Sendable (String, [UInt8]) -> [UInt8]

    /// - Parameters:
    ///   - files: the descriptors of every message that may be written.
    ///   - defaults: per message full name, the JSON names of the fields
    ///     always printed and their default text (`""`, `0`, `[]`, …).
    ///   - fallbackShape: fills the defaults into swift-protobuf's JSON of a
    ///     message written by the fallback.
    public init(
        files: [Google_Protobuf_FileDescriptorProto], defaults: [String: [(jsonName: String, text: String)]],
        fallbackShape: @escaping @Sendable (String, [UInt8]) -> [UInt8]
    ) {
        var enumValues: [String: [Int: [UInt8]]] = [:]
        var messages: [(String, Google_Protobuf_DescriptorProto)] = []
        func collect(_ prefix: String, _ message: Google_Protobuf_DescriptorProto) {
            let name = prefix + message.name
            messages.append((name, message))
            for nested in message.nestedType { collect(name + ".", nested) }
            for type in message.enumType { enumValues[name + "." + type.name] = Self.names(type) }
        }
        for file in files {
            let prefix = file.package.isEmpty ? "" : file.package + "."
            for type in file.enumType { enumValues[prefix + type.name] = Self.names(type) }
            for message in file.messageType { collect(prefix, message) }
        }
        var tables: [String: Table] = [:]
        // Well-known types have JSON forms of their own (below, or swift-protobuf's).
        for (name, message) in messages where !message.options.mapEntry && !name.hasPrefix("google.protobuf.") {
            var table = Table()
            var numbers: [String: Int] = [:]
            for field in message.field {
                let json = field.hasJsonName ? field.jsonName : RESTBridge.jsonName(field.name)
                let number = Int(field.number)
                // Numbers past this stay out of the table (the message falls back).
                if number < 4096 {
                    if table.keys.count <= number { table.keys += Array(repeating: nil, count: number + 1 - table.keys.count) }
                    table.keys[number] = Array(JSONText.quoted(json).utf8) + [UInt8(ascii: ":")]
                }
                numbers[json] = number
                if field.type == .enum, let values = enumValues[String(field.typeName.drop { $0 == "." })] {
                    table.enums[number] = values
                }
            }
            for (json, text) in (defaults[name] ?? []).sorted(by: { $0.jsonName < $1.jsonName }) {
                guard let number = numbers[json] else { continue }
                table.defaults.append((number, Array((JSONText.quoted(json) + ":" + text).utf8)))
            }
            tables[name] = table
        }
        self.tables = tables
        self.fallbackShape = fallbackShape
    }

    /// The proto3 JSON of `message`, defaults filled in.
    public func encode<M: SwiftProtobuf.Message>(_ message: M) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        try write(message, into: &out)
        return out
    }

    func write<M: SwiftProtobuf.Message>(_ message: M, into out: inout [UInt8]) throws {
        let name = M.protoMessageName
        if name.hasPrefix("google.protobuf.") {
            if let timestamp = message as? Google_Protobuf_Timestamp, Self.writeTimestamp(timestamp, into: &out) { return }
            if let object = message as? Google_Protobuf_Struct { return try Self.writeStruct(object, into: &out) }
            if let value = message as? Google_Protobuf_Value { return try Self.writeValue(value, into: &out) }
            if let list = message as? Google_Protobuf_ListValue { return try Self.writeList(list, into: &out) }
        }
        guard let table = tables[name] else {
            out += fallbackShape(name, try message.jsonUTF8Bytes())
            return
        }
        // The visitor takes the buffer over (one owner: appends never copy it).
        var visitor = Visitor(encoder: self, table: table, out: out)
        out = []
        visitor.out.append(UInt8(ascii: "{"))
        do {
            try message.traverse(visitor: &visitor)
        } catch is Unsupported {
            // Something the tables do not cover: this message as swift-protobuf prints it.
            out = visitor.out
            out.removeSubrange(visitor.start...)
            out += fallbackShape(name, try message.jsonUTF8Bytes())
            return
        }
        for (number, text) in table.defaults where !visitor.seen.contains(number) {
            if !visitor.first { visitor.out.append(UInt8(ascii: ",")) }
            visitor.first = false
            visitor.out += text
        }
        visitor.out.append(UInt8(ascii: "}"))
        out = visitor.out
    }

    struct Unsupported: Error {}

    /// Walks one message, appending its fields.
    struct Visitor: SwiftProtobuf.Visitor {
        let encoder: ProtoJSONEncoder
        let table: Table
        /// Where this message starts in `out` (for the fallback).
        let start: Int
        var out: [UInt8]
        var first = true
        var seen: [Int] = []

        init(encoder: ProtoJSONEncoder, table: Table, out: [UInt8]) {
            self.encoder = encoder
            self.table = table
            self.start = out.count
            self.out = out
        }

        private mutating func key(_ number: Int) throws {
            guard number < table.keys.count, let key = table.keys[number] else { throw Unsupported() }
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            seen.append(number)
            out += key
        }

        private mutating func list<T>(_ values: [T], _ number: Int, _ each: (inout [UInt8], T) throws -> Void) throws {
            try key(number)
            out.append(UInt8(ascii: "["))
            for (index, value) in values.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try each(&out, value)
            }
            out.append(UInt8(ascii: "]"))
        }

        mutating func visitUnknown(bytes: Data) throws {}

        mutating func visitSingularFloatField(value: Float, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeFloat(value, into: &out)
        }

        mutating func visitSingularDoubleField(value: Double, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeDouble(value, into: &out)
        }

        mutating func visitSingularInt32Field(value: Int32, fieldNumber: Int) throws {
            try key(fieldNumber)
            out += String(value).utf8
        }

        mutating func visitSingularSInt32Field(value: Int32, fieldNumber: Int) throws {
            try visitSingularInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularSFixed32Field(value: Int32, fieldNumber: Int) throws {
            try visitSingularInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularUInt32Field(value: UInt32, fieldNumber: Int) throws {
            try key(fieldNumber)
            out += String(value).utf8
        }

        mutating func visitSingularFixed32Field(value: UInt32, fieldNumber: Int) throws {
            try visitSingularUInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularInt64Field(value: Int64, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeQuoted(String(value), into: &out)
        }

        mutating func visitSingularSInt64Field(value: Int64, fieldNumber: Int) throws {
            try visitSingularInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularSFixed64Field(value: Int64, fieldNumber: Int) throws {
            try visitSingularInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularUInt64Field(value: UInt64, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeQuoted(String(value), into: &out)
        }

        mutating func visitSingularFixed64Field(value: UInt64, fieldNumber: Int) throws {
            try visitSingularUInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitSingularBoolField(value: Bool, fieldNumber: Int) throws {
            try key(fieldNumber)
            out += (value ? "true" : "false").utf8
        }

        mutating func visitSingularStringField(value: String, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeString(value, into: &out)
        }

        mutating func visitSingularBytesField(value: Data, fieldNumber: Int) throws {
            try key(fieldNumber)
            ProtoJSONEncoder.writeQuoted(value.base64EncodedString(), into: &out)
        }

        mutating func visitSingularEnumField<E: SwiftProtobuf.Enum>(value: E, fieldNumber: Int) throws {
            try key(fieldNumber)
            encoder.writeEnum(value.rawValue, field: fieldNumber, table: table, into: &out)
        }

        mutating func visitSingularMessageField<M: SwiftProtobuf.Message>(value: M, fieldNumber: Int) throws {
            try key(fieldNumber)
            try encoder.write(value, into: &out)
        }

        mutating func visitSingularGroupField<G: SwiftProtobuf.Message>(value: G, fieldNumber: Int) throws {
            throw Unsupported()
        }

        mutating func visitRepeatedFloatField(value: [Float], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeFloat($1, into: &$0) }
        }

        mutating func visitRepeatedDoubleField(value: [Double], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeDouble($1, into: &$0) }
        }

        mutating func visitRepeatedInt32Field(value: [Int32], fieldNumber: Int) throws {
            try list(value, fieldNumber) { $0 += String($1).utf8 }
        }

        mutating func visitRepeatedSInt32Field(value: [Int32], fieldNumber: Int) throws {
            try visitRepeatedInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedSFixed32Field(value: [Int32], fieldNumber: Int) throws {
            try visitRepeatedInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedUInt32Field(value: [UInt32], fieldNumber: Int) throws {
            try list(value, fieldNumber) { $0 += String($1).utf8 }
        }

        mutating func visitRepeatedFixed32Field(value: [UInt32], fieldNumber: Int) throws {
            try visitRepeatedUInt32Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedInt64Field(value: [Int64], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeQuoted(String($1), into: &$0) }
        }

        mutating func visitRepeatedSInt64Field(value: [Int64], fieldNumber: Int) throws {
            try visitRepeatedInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedSFixed64Field(value: [Int64], fieldNumber: Int) throws {
            try visitRepeatedInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedUInt64Field(value: [UInt64], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeQuoted(String($1), into: &$0) }
        }

        mutating func visitRepeatedFixed64Field(value: [UInt64], fieldNumber: Int) throws {
            try visitRepeatedUInt64Field(value: value, fieldNumber: fieldNumber)
        }

        mutating func visitRepeatedBoolField(value: [Bool], fieldNumber: Int) throws {
            try list(value, fieldNumber) { $0 += ($1 ? "true" : "false").utf8 }
        }

        mutating func visitRepeatedStringField(value: [String], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeString($1, into: &$0) }
        }

        mutating func visitRepeatedBytesField(value: [Data], fieldNumber: Int) throws {
            try list(value, fieldNumber) { ProtoJSONEncoder.writeQuoted($1.base64EncodedString(), into: &$0) }
        }

        mutating func visitRepeatedEnumField<E: SwiftProtobuf.Enum>(value: [E], fieldNumber: Int) throws {
            let (encoder, table) = (encoder, table)
            try list(value, fieldNumber) { encoder.writeEnum($1.rawValue, field: fieldNumber, table: table, into: &$0) }
        }

        mutating func visitRepeatedMessageField<M: SwiftProtobuf.Message>(value: [M], fieldNumber: Int) throws {
            let encoder = encoder
            try list(value, fieldNumber) { try encoder.write($1, into: &$0) }
        }

        mutating func visitRepeatedGroupField<G: SwiftProtobuf.Message>(value: [G], fieldNumber: Int) throws {
            throw Unsupported()
        }

        mutating func visitMapField<KeyType, ValueType: MapValueType>(
            fieldType: _ProtobufMap<KeyType, ValueType>.Type, value: _ProtobufMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws {
            throw Unsupported()
        }

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufEnumMap<KeyType, ValueType>.Type, value: _ProtobufEnumMap<KeyType, ValueType>.BaseType,
            fieldNumber: Int
        ) throws where ValueType.RawValue == Int {
            throw Unsupported()
        }

        mutating func visitMapField<KeyType, ValueType>(
            fieldType: _ProtobufMessageMap<KeyType, ValueType>.Type,
            value: _ProtobufMessageMap<KeyType, ValueType>.BaseType, fieldNumber: Int
        ) throws {
            throw Unsupported()
        }

        mutating func visitExtensionFields(fields: ExtensionFieldValueSet, start: Int, end: Int) throws {
            throw Unsupported()
        }
    }

    // MARK: Values, as swift-protobuf writes them

    func writeEnum(_ raw: Int, field: Int, table: Table, into out: inout [UInt8]) {
        if let name = table.enums[field]?[raw] {
            out += name
        } else {
            out += String(raw).utf8  // a value this build does not know: its number
        }
    }

    static func writeQuoted(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        out += text.utf8
        out.append(UInt8(ascii: "\""))
    }

    static func writeDouble(_ value: Double, into out: inout [UInt8]) {
        if value.isNaN {
            out += "\"NaN\"".utf8
        } else if !value.isFinite {
            out += (value < 0 ? "\"-Infinity\"" : "\"Infinity\"").utf8
        } else {
            out += value.debugDescription.utf8
        }
    }

    static func writeFloat(_ value: Float, into out: inout [UInt8]) {
        if value.isNaN {
            out += "\"NaN\"".utf8
        } else if !value.isFinite {
            out += (value < 0 ? "\"-Infinity\"" : "\"Infinity\"").utf8
        } else {
            out += value.debugDescription.utf8
        }
    }

    private static let hex = Array("0123456789ABCDEF".utf8)

    /// A JSON string with swift-protobuf's escapes: the short forms, and
    /// \u00XX for C0 and C1 control characters and DEL; everything else as
    /// UTF-8.
    static func writeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Most text needs no escape: copied at once.
        let plain = text.utf8.withContiguousStorageIfAvailable { bytes in
            !bytes.contains { $0 < 0x20 || $0 == 34 || $0 == 92 || $0 == 127 || $0 == 0xC2 }
        }
        if plain == true {
            out += text.utf8
            out.append(UInt8(ascii: "\""))
            return
        }
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            switch byte {
            case 8: out += "\\b".utf8
            case 9: out += "\\t".utf8
            case 10: out += "\\n".utf8
            case 12: out += "\\f".utf8
            case 13: out += "\\r".utf8
            case 34: out += "\\\"".utf8
            case 92: out += "\\\\".utf8
            case 0...31, 127:
                out += "\\u00".utf8
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 15)])
            case 0xC2:
                // U+0080…U+009F (C1 controls) are escaped; the rest of U+00A0…U+00BF is not.
                guard let next = utf8.next() else {
                    out.append(byte)
                    break
                }
                if next >= 0x80 && next <= 0x9F {
                    out += "\\u00".utf8
                    out.append(hex[Int(next >> 4)])
                    out.append(hex[Int(next & 15)])
                } else {
                    out.append(byte)
                    out.append(next)
                }
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// google.protobuf.Struct as a JSON object (entries in the map's order,
    /// as swift-protobuf writes them).
    static func writeStruct(_ object: Google_Protobuf_Struct, into out: inout [UInt8]) throws {
        out.append(UInt8(ascii: "{"))
        var first = true
        for (key, value) in object.fields {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
            writeString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            try writeValue(value, into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func writeList(_ list: Google_Protobuf_ListValue, into out: inout [UInt8]) throws {
        out.append(UInt8(ascii: "["))
        for (index, value) in list.values.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            try writeValue(value, into: &out)
        }
        out.append(UInt8(ascii: "]"))
    }

    /// google.protobuf.Value; a non-finite number or no kind fails as in swift-protobuf.
    static func writeValue(_ value: Google_Protobuf_Value, into out: inout [UInt8]) throws {
        switch value.kind {
        case .nullValue?: out += "null".utf8
        case .numberValue(let number)?:
            guard number.isFinite else { throw JSONEncodingError.valueNumberNotFinite }
            writeDouble(number, into: &out)
        case .stringValue(let text)?: writeString(text, into: &out)
        case .boolValue(let flag)?: out += (flag ? "true" : "false").utf8
        case .structValue(let object)?: try writeStruct(object, into: &out)
        case .listValue(let list)?: try writeList(list, into: &out)
        case nil: throw JSONEncodingError.missingValue
        }
    }

    /// RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits; false (nothing
    /// written) outside years 1…9999 or for invalid nanos (swift-protobuf
    /// then says why).
    static func writeTimestamp(_ timestamp: Google_Protobuf_Timestamp, into out: inout [UInt8]) -> Bool {
        let seconds = timestamp.seconds
        let nanos = timestamp.nanos
        guard seconds >= -62_135_596_800, seconds <= 253_402_300_799, nanos >= 0, nanos <= 999_999_999 else { return false }
        var days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let dayOfEra = days - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        var year = yearOfEra + era * 400
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        if month <= 2 { year += 1 }
        func digits(_ value: Int64, _ count: Int) {
            var divisor: Int64 = 1
            for _ in 1..<count { divisor *= 10 }
            var rest = value
            while divisor > 0 {
                out.append(UInt8(ascii: "0") + UInt8(rest / divisor))
                rest %= divisor
                divisor /= 10
            }
        }
        out.append(UInt8(ascii: "\""))
        digits(year, 4)
        out.append(UInt8(ascii: "-"))
        digits(month, 2)
        out.append(UInt8(ascii: "-"))
        digits(day, 2)
        out.append(UInt8(ascii: "T"))
        digits(secondOfDay / 3600, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay / 60 % 60, 2)
        out.append(UInt8(ascii: ":"))
        digits(secondOfDay % 60, 2)
        if nanos != 0 {
            out.append(UInt8(ascii: "."))
            if nanos % 1_000_000 == 0 {
                digits(Int64(nanos / 1_000_000), 3)
            } else if nanos % 1000 == 0 {
                digits(Int64(nanos / 1000), 6)
            } else {
                digits(Int64(nanos), 9)
            }
        }
        out += "Z\"".utf8
        return true
    }

    // MARK: Tables

    private static func names(_ type: Google_Protobuf_EnumDescriptorProto) -> [Int: [UInt8]] {
        var names: [Int: [UInt8]] = [:]
        // The first name of a number wins (aliases), as swift-protobuf prints it.
        for value in type.value where names[Int(value.number)] == nil {
            names[Int(value.number)] = Array(JSONText.quoted(value.name).utf8)
        }
        return names
    }
}
