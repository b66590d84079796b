public import Foundation

/// Dates as the store writes them: "yyyy-MM-dd HH:mm:ss.SSS" in UTC, the
/// text GRDB writes for a `Date`, so values written either way compare and
/// read back alike. GRDB formats through a `DateFormatter` (ICU), which cost
/// ~5% of the CPU of a busy engine; this is plain arithmetic.
public enum StoreDate {
    public static func text(_ date: Date) -> String {
        // Through whole microseconds first, so a value like 1.999 stored as
        // 1.99899999… still gives 999 ms (as the formatter does).
        let micros = (date.timeIntervalSince1970 * 1_000_000).rounded()
        let totalMs = Int64((micros / 1000).rounded(.down))
        var days = totalMs >= 0 ? totalMs / 86_400_000 : (totalMs - 86_399_999) / 86_400_000
        let msOfDay = totalMs - days * 86_400_000
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
        guard (0...9999).contains(year) else {
            // Outside 4-digit years: leave it to Foundation.
            let formatter = DateFormatter()
            formatter.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(secondsFromGMT: 0)
            return formatter.string(from: date)
        }
        let hour = msOfDay / 3_600_000
        let minute = msOfDay / 60_000 % 60
        let second = msOfDay / 1000 % 60
        let ms = msOfDay % 1000
        var bytes = [UInt8](repeating: 0, count: 23)
        func put(_ value: Int64, _ digits: Int, at offset: Int) {
            var rest = value
            for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                bytes[index] = UInt8(48 + rest % 10)
                rest /= 10
            }
        }
        put(year, 4, at: 0)
        bytes[4] = 45  // -
        put(month, 2, at: 5)
        bytes[7] = 45
        put(day, 2, at: 8)
        bytes[10] = 32  // space
        put(hour, 2, at: 11)
        bytes[13] = 58  // :
        put(minute, 2, at: 14)
        bytes[16] = 58
        put(second, 2, at: 17)
        bytes[19] = 46  // .
        put(ms, 3, at: 20)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// RFC 3339 in UTC with milliseconds ("2026-12-05T09:41:17.123Z"), as
    /// fast as `text` (notifications stamp every event with it).
    /// Reads `text`'s form ("yyyy-MM-dd HH:mm:ss" with optional ".SSS",
    /// UTC) by arithmetic; nil for any other form (the caller falls back
    /// to a general parser). The writer reads dates of every execution it
    /// folds into the rollups.
    public static func date(_ text: String) -> Date? {
        var text = text
        return text.withUTF8 { bytes -> Date? in
            guard bytes.count == 19 || bytes.count == 23 else { return nil }
            func number(_ start: Int, _ length: Int) -> Int64? {
                var value: Int64 = 0
                for offset in start..<(start + length) {
                    let digit = Int64(bytes[offset]) - 48
                    guard digit >= 0 && digit <= 9 else { return nil }
                    value = value * 10 + digit
                }
                return value
            }
            guard bytes[4] == 45, bytes[7] == 45, bytes[10] == 32 || bytes[10] == 84, bytes[13] == 58, bytes[16] == 58,
                let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
                let minute = number(14, 2), let second = number(17, 2), (1...12).contains(month), (1...31).contains(day),
                hour < 24, minute < 60, second < 61
            else { return nil }
            var ms: Int64 = 0
            if bytes.count == 23 {
                guard bytes[19] == 46, let fraction = number(20, 3) else { return nil }
                ms = fraction
            }
            // Days since 1970-01-01 from the civil date (H. Hinnant's algorithm).
            let y = month <= 2 ? year - 1 : year
            let era = (y >= 0 ? y : y - 399) / 400
            let yearOfEra = y - era * 400
            let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
            let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
            let days = era * 146_097 + dayOfEra - 719_468
            let totalMs = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms
            return Date(timeIntervalSince1970: Double(totalMs) / 1000)
        }
    }

    public static func rfc3339(_ date: Date) -> String {
        var value = text(date)
        guard value.utf8.count == 23 else { return date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)) }
        value = String(value.prefix(10)) + "T" + String(value.dropFirst(11)) + "Z"
        return value
    }
}
