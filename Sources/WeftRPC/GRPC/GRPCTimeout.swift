/// The `grpc-timeout` header: 1 to 8 ASCII digits and a unit
/// (H hours, M minutes, S seconds, m ms, u µs, n ns).
public enum GRPCTimeout {
    public static func parse(_ value: some Collection<UInt8>) -> Duration? {
        guard value.count >= 2, value.count <= 9 else { return nil }
        var amount: Int64 = 0
        var iterator = value.makeIterator()
        for _ in 0..<(value.count - 1) {
            let b = iterator.next()!
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            amount = amount * 10 + Int64(b - UInt8(ascii: "0"))
        }
        switch iterator.next()! {
        case UInt8(ascii: "H"): return .seconds(amount * 3600)
        case UInt8(ascii: "M"): return .seconds(amount * 60)
        case UInt8(ascii: "S"): return .seconds(amount)
        case UInt8(ascii: "m"): return .milliseconds(amount)
        case UInt8(ascii: "u"): return .microseconds(amount)
        case UInt8(ascii: "n"): return .nanoseconds(amount)
        default: return nil
        }
    }

    public static func parse(_ value: String) -> Duration? { parse(Array(value.utf8)) }

    /// The longest deadline a call gets: the header allows 99,999,999 hours
    /// (11,000 years), more nanoseconds than an Int64 holds.
    public static let longest: Duration = .seconds(100 * 365 * 86_400)

    /// `timeout` in nanoseconds, capped at `longest` (never overflows).
    public static func nanoseconds(_ timeout: Duration) -> Int64 {
        let capped = min(timeout, longest)
        let (seconds, attoseconds) = capped.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Percent-encoding of `grpc-message` (PROTOCOL-HTTP2.md): UTF-8 bytes outside
/// 0x20...0x7E, and '%', become %XX.
public enum GRPCStatusMessage {
    public static func encode(_ message: String) -> String {
        var needs = false
        for b in message.utf8 where b < 0x20 || b > 0x7E || b == UInt8(ascii: "%") {
            needs = true
            break
        }
        guard needs else { return message }
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count * 3)
        for b in message.utf8 {
            if b < 0x20 || b > 0x7E || b == UInt8(ascii: "%") {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            } else {
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes, leaving malformed escapes as they are (the spec says receivers
    /// must not fail on them).
    public static func decode(_ encoded: String) -> String {
        let bytes = Array(encoded.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        func hexValue(_ b: UInt8) -> UInt8? {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
                let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
