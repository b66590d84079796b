import Foundation
import GRDB
import Testing
import WeftStore
import WeftSQLite

/// The hand-written encoders on the store's hot path agree with what they replace.
@Suite("store encodings")
struct StoreEncodingTests {
    @Test("StoreDate writes exactly the text GRDB writes for a Date")
    func dates() {
        var samples: [Date] = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 951_782_400.123),  // 2000-02-29
            Date(timeIntervalSince1970: 1_795_819_547.999), Date(timeIntervalSince1970: 4_102_444_799.5),
            Date(timeIntervalSince1970: -86_400.25), Date(timeIntervalSince1970: 1_709_164_800.001),  // 2024-02-29
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let ms = Int64.random(in: -2_000_000_000_000...7_000_000_000_000, using: &generator)
            samples.append(Date(timeIntervalSince1970: Double(ms) / 1000))
        }
        for date in samples {
            let grdb = String.fromDatabaseValue(date.databaseValue)
            #expect(StoreDate.text(date) == grdb, "\(date.timeIntervalSince1970)")
        }
    }

    @Test("jsonText is compact JSON with sorted keys that parses back to the same value")
    func json() throws {
        let value: JSONValue = .object([
            "b": .array([.number(1), .number(-2.5), .number(1e21), .number(0.1), .null, .bool(true), .bool(false)]),
            "a": .string("quote \" backslash \\ slash / newline \n tab \t bell \u{07} é 😀"),
            "nested": .object(["z": .emptyObject, "y": .array([])]),
        ])
        let text = value.jsonText()
        #expect(text.hasPrefix(#"{"a":"quote \" backslash \\ slash / newline \n tab \t bell \u0007 é 😀","b":[1,-2.5,"#))
        #expect(text.hasSuffix(#""nested":{"y":[],"z":{}}}"#))
        #expect(try JSONValue(jsonText: text) == value)
        #expect(JSONValue.number(42).jsonText() == "42")
        #expect(JSONValue.string("").jsonText() == #""""#)
    }
}
