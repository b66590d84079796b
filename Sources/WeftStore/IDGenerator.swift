public import Foundation

/// Opaque, prefixed, time-ordered ids (`wf_01JDQ3...`): a ULID (48-bit
/// millisecond time + 80 random bits, Crockford base32) behind a type prefix.
/// Sorting ids sorts by creation time, so keyset pagination can use the id alone.
public enum IDGenerator {
    public static let workflow = "wf"
    public static let task = "tsk"
    public static let user = "usr"
    public static let version = "ver"
    public static let execution = "exe"
    public static let taskExecution = "tex"
    public static let schedule = "sch"
    public static let subscription = "sub"
    public static let integration = "int"
    public static let organization = "org"
    public static let invitation = "inv"
    public static let apiKey = "key"

    private static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)

    public static func make(_ prefix: String, now: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        return make(prefix, milliseconds: UInt64(max(0, now.timeIntervalSince1970 * 1000)), using: &generator)
    }

    static func make(_ prefix: String, milliseconds: UInt64, using generator: inout some RandomNumberGenerator) -> String {
        var chars = [UInt8](repeating: 0, count: 26)
        var time = milliseconds
        for index in stride(from: 9, through: 0, by: -1) {
            chars[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        // 80 random bits: 16 from `high`, 64 from `low`, 5 at a time.
        var bits = (high & 0xFFFF, low)
        for index in stride(from: 25, through: 10, by: -1) {
            chars[index] = alphabet[Int(bits.1 & 31)]
            bits.1 = (bits.1 >> 5) | ((bits.0 & 31) << 59)
            bits.0 >>= 5
        }
        return prefix + "_" + String(decoding: chars, as: UTF8.self)
    }

    /// The smallest id `prefix` can have for a time at or after `date`:
    /// every id made before `date` sorts below it (retention scans by it).
    public static func lowerBound(_ prefix: String, at date: Date) -> String {
        var time = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var chars = [UInt8](repeating: alphabet[0], count: 26)
        for index in stride(from: 9, through: 0, by: -1) {
            chars[index] = alphabet[Int(time & 31)]
            time >>= 5
        }
        return prefix + "_" + String(decoding: chars, as: UTF8.self)
    }
}
