import Foundation

/// A cron expression, parsed by our own parser: five fields (minute hour
/// day-of-month month day-of-week) or six with a leading seconds field, or
/// a macro (`@daily`). Fields take `*`, `?` (day fields), ranges, steps,
/// lists, month and weekday names, and in the day fields Quartz's `L`,
/// `L-n`, `nW`, `LW`, `dL` and `d#n`. When both day fields are restricted a
/// day matches either (the Vixie cron rule).
///
/// Matching is on wall-clock (civil) time; `ScheduleClock` turns matches
/// into instants in a time zone.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    public let source: String
    var seconds: UInt64 = 0
    var minutes: UInt64 = 0
    var hours: UInt64 = 0
    /// Bits 1…31.
    var daysOfMonth: UInt64 = 0
    /// Bits 1…12.
    var months: UInt64 = 0
    /// Bits 0…6 (Sunday = 0).
    var daysOfWeek: UInt64 = 0
    var dayOfMonthAny = true
    var dayOfWeekAny = true
    /// `L` (0), `L-3` (3): days before the last day of the month.
    var lastDayOffsets: [Int] = []
    /// `15W`: the weekday nearest the 15th, within the month.
    var nearestWeekdays: [Int] = []
    /// `LW`: the last weekday (Mon–Fri) of the month.
    var lastWeekday = false
    /// `5L`: the last Friday of the month.
    var lastWeekdaysOfMonth: [Int] = []
    /// `5#3`: the third Friday of the month (weekday, n).
    var nthWeekdays: [Int] = []  // weekday * 8 + n, Hashable-friendly

    static let macros: [String: String] = [
        "@yearly": "0 0 0 1 1 *", "@annually": "0 0 0 1 1 *", "@monthly": "0 0 0 1 * *",
        "@weekly": "0 0 0 * * 0", "@daily": "0 0 0 * * *", "@midnight": "0 0 0 * * *", "@hourly": "0 0 * * * *",
    ]
    static let monthNames = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
    static let dayNames = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
    /// At most this many characters (a cron expression is short).
    public static let maxLength = 256

    enum Field: String {
        case second, minute, hour
        case dayOfMonth = "day-of-month"
        case month
        case dayOfWeek = "day-of-week"

        var range: ClosedRange<Int> {
            switch self {
            case .second, .minute: 0...59
            case .hour: 0...23
            case .dayOfMonth: 1...31
            case .month: 1...12
            case .dayOfWeek: 0...7
            }
        }
    }

    public init(_ text: String) throws(CronError) {
        source = text
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw CronError("cron expression is empty") }
        guard trimmed.utf8.count <= Self.maxLength else {
            throw CronError("cron expression is longer than \(Self.maxLength) characters")
        }
        var expanded = trimmed
        if trimmed.hasPrefix("@") {
            guard let macro = Self.macros[trimmed.lowercased()] else {
                throw CronError(
                    "unknown macro \"\(trimmed)\"; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")
            }
            expanded = macro
        }
        var fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        switch fields.count {
        case 5: fields.insert("0", at: 0)
        case 6: break
        default:
            throw CronError(
                "cron expression must have 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got \(fields.count)")
        }
        seconds = try Self.parse(fields[0], .second)
        minutes = try Self.parse(fields[1], .minute)
        hours = try Self.parse(fields[2], .hour)
        try parseDayOfMonth(fields[3])
        months = try Self.parse(fields[4], .month)
        try parseDayOfWeek(fields[5])
    }

    public var description: String { source }

    // MARK: Parsing

    private static func isAny(_ field: String) -> Bool { field == "*" || field == "?" }

    /// A list of items (`*`, `a`, `a-b`, with `/step`) as a bit set.
    static func parse(_ field: String, _ kind: Field) throws(CronError) -> UInt64 {
        guard !field.isEmpty else { throw CronError("\(kind.rawValue) field is empty") }
        var bits: UInt64 = 0
        for item in field.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            bits |= try parseItem(item, kind, field: field)
        }
        return bits
    }

    private static func parseItem(_ item: String, _ kind: Field, field: String) throws(CronError) -> UInt64 {
        guard !item.isEmpty else { throw CronError("\(kind.rawValue) field \"\(field)\" has an empty list item") }
        let range = kind.range
        var base = item
        var step = 1
        if let slash = item.firstIndex(of: "/") {
            base = String(item[..<slash])
            let stepText = String(item[item.index(after: slash)...])
            guard let value = Int(stepText) else {
                throw CronError("step \"\(stepText)\" in \(kind.rawValue) field \"\(item)\" is not a number")
            }
            guard value >= 1 else { throw CronError("step must be at least 1 in \(kind.rawValue) field \"\(item)\"") }
            guard value <= range.upperBound else {
                throw CronError("step \(value) in \(kind.rawValue) field \"\(item)\" is larger than \(range.upperBound)")
            }
            step = value
        }
        var low: Int
        var high: Int
        if base == "*" || base == "?" {
            guard base == "*" || kind == .dayOfMonth || kind == .dayOfWeek else {
                throw CronError("? is only allowed in the day-of-month and day-of-week fields, not in \(kind.rawValue)")
            }
            low = range.lowerBound
            high = kind == .dayOfWeek ? 6 : range.upperBound
        } else if let dash = base.firstIndex(of: "-"), dash != base.startIndex {
            low = try value(String(base[..<dash]), kind, item: item)
            high = try value(String(base[base.index(after: dash)...]), kind, item: item)
            guard low <= high else {
                throw CronError("range \"\(base)\" in \(kind.rawValue) field runs backwards (\(low) > \(high))")
            }
        } else {
            low = try value(base, kind, item: item)
            // `5/15`: from 5 to the end of the range.
            high = item.contains("/") ? (kind == .dayOfWeek ? 6 : range.upperBound) : low
        }
        var bits: UInt64 = 0
        var v = low
        while v <= high {
            // Day-of-week 7 is Sunday, as 0.
            bits |= 1 << UInt64(kind == .dayOfWeek && v == 7 ? 0 : v)
            v += step
        }
        return bits
    }

    private static func value(_ text: String, _ kind: Field, item: String) throws(CronError) -> Int {
        let range = kind.range
        let number: Int
        if let parsed = Int(text) {
            number = parsed
        } else if kind == .month, let index = monthNames.firstIndex(of: text.uppercased()) {
            number = index + 1
        } else if kind == .dayOfWeek, let index = dayNames.firstIndex(of: text.uppercased()) {
            number = index
        } else {
            let names = kind == .month ? " or a month name (JAN-DEC)" : kind == .dayOfWeek ? " or a weekday name (SUN-SAT)" : ""
            throw CronError("\(kind.rawValue) field \"\(item)\" is not a number\(names)")
        }
        guard range.contains(number) else {
            throw CronError("\(kind.rawValue) field \"\(text)\" is out of range \(range.lowerBound)-\(range.upperBound)")
        }
        return number
    }

    private mutating func parseDayOfMonth(_ field: String) throws(CronError) {
        if Self.isAny(field) {
            daysOfMonth = (1...31).reduce(0) { $0 | 1 << UInt64($1) }
            return
        }
        dayOfMonthAny = false
        var plain: [String] = []
        for item in field.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let upper = item.uppercased()
            if upper == "L" {
                lastDayOffsets.append(0)
            } else if upper == "LW" {
                lastWeekday = true
            } else if upper.hasPrefix("L-") {
                guard let offset = Int(upper.dropFirst(2)), (0...30).contains(offset) else {
                    throw CronError("day-of-month field \"\(item)\": L-n needs n from 0 to 30")
                }
                lastDayOffsets.append(offset)
            } else if upper.hasSuffix("W") {
                let day = try Self.value(String(upper.dropLast()), .dayOfMonth, item: item)
                nearestWeekdays.append(day)
            } else {
                plain.append(item)
            }
        }
        if !plain.isEmpty { daysOfMonth = try Self.parse(plain.joined(separator: ","), .dayOfMonth) }
    }

    private mutating func parseDayOfWeek(_ field: String) throws(CronError) {
        if Self.isAny(field) {
            daysOfWeek = 0x7F
            return
        }
        dayOfWeekAny = false
        var plain: [String] = []
        for item in field.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            let upper = item.uppercased()
            if let hash = upper.firstIndex(of: "#") {
                let day = try Self.value(String(upper[..<hash]), .dayOfWeek, item: item) % 7
                guard let n = Int(upper[upper.index(after: hash)...]), (1...5).contains(n) else {
                    throw CronError("day-of-week field \"\(item)\": the n of d#n must be from 1 to 5")
                }
                nthWeekdays.append(day * 8 + n)
            } else if upper.count > 1, upper.hasSuffix("L") {
                let day = try Self.value(String(upper.dropLast()), .dayOfWeek, item: item) % 7
                lastWeekdaysOfMonth.append(day)
            } else if upper == "L" {
                throw CronError("day-of-week field \"L\" needs a weekday (5L or FRIL: the last Friday)")
            } else {
                plain.append(item)
            }
        }
        if !plain.isEmpty { daysOfWeek = try Self.parse(plain.joined(separator: ","), .dayOfWeek) }
    }

    // MARK: Matching

    /// Whether the day (year, month, day) is a day this expression fires on.
    public func matches(year: Int, month: Int, day: Int) -> Bool {
        guard months & (1 << UInt64(month)) != 0 else { return false }
        if dayOfMonthAny && dayOfWeekAny { return true }
        let last = CivilTime.daysIn(year: year, month: month)
        let weekday = CivilTime.weekday(year: year, month: month, day: day)
        if dayOfWeekAny { return dayOfMonthMatches(day, last: last, weekday: weekday, year: year, month: month) }
        if dayOfMonthAny { return dayOfWeekMatches(day, last: last, weekday: weekday) }
        return dayOfMonthMatches(day, last: last, weekday: weekday, year: year, month: month)
            || dayOfWeekMatches(day, last: last, weekday: weekday)
    }

    private func dayOfMonthMatches(_ day: Int, last: Int, weekday: Int, year: Int, month: Int) -> Bool {
        if daysOfMonth & (1 << UInt64(day)) != 0 { return true }
        for offset in lastDayOffsets where day == last - offset { return true }
        for target in nearestWeekdays where day == Self.nearestWeekday(to: min(target, last), last: last, year: year, month: month) {
            return true
        }
        if lastWeekday, day == Self.nearestWeekday(to: last, last: last, year: year, month: month) { return true }
        return false
    }

    private func dayOfWeekMatches(_ day: Int, last: Int, weekday: Int) -> Bool {
        if daysOfWeek & (1 << UInt64(weekday)) != 0 { return true }
        for target in lastWeekdaysOfMonth where target == weekday && day + 7 > last { return true }
        for code in nthWeekdays where code / 8 == weekday && (day - 1) / 7 + 1 == code % 8 { return true }
        return false
    }

    /// The weekday (Mon–Fri) nearest `target`, without leaving the month.
    static func nearestWeekday(to target: Int, last: Int, year: Int, month: Int) -> Int {
        switch CivilTime.weekday(year: year, month: month, day: target) {
        case 6: return target == 1 ? 3 : target - 1  // Saturday: Friday before, or Monday the 3rd
        case 0: return target == last ? target - 2 : target + 1  // Sunday: Monday after, or Friday before
        default: return target
        }
    }

    /// The first set bit at or above `from` (nil when none up to `limit`).
    private static func next(_ bits: UInt64, from: Int, limit: Int) -> Int? {
        guard from <= limit else { return nil }
        let shifted = bits >> UInt64(from)
        guard shifted != 0 else { return nil }
        let found = from + shifted.trailingZeroBitCount
        return found <= limit ? found : nil
    }

    /// The first time of day at or after h:m:s this expression fires at.
    private func timeOfDay(atOrAfter h: Int, _ m: Int, _ s: Int) -> (Int, Int, Int)? {
        var hour = h
        while let hh = Self.next(hours, from: hour, limit: 23) {
            var minute = hh == h ? m : 0
            while let mm = Self.next(minutes, from: minute, limit: 59) {
                let from = (hh == h && mm == m) ? s : 0
                if let ss = Self.next(seconds, from: from, limit: 59) { return (hh, mm, ss) }
                minute = mm + 1
            }
            hour = hh + 1
        }
        return nil
    }

    /// The first civil time strictly after `time` this expression fires at;
    /// nil when there is none within 400 years (e.g. February 30).
    public func next(after time: CivilTime) -> CivilTime? {
        var t = CivilTime(epochSeconds: time.epochSeconds + 1)
        let endYear = t.year + 400
        while t.year <= endYear {
            if months & (1 << UInt64(t.month)) == 0 {
                // The first day of the next month.
                t = t.month == 12
                    ? CivilTime(year: t.year + 1, month: 1, day: 1) : CivilTime(year: t.year, month: t.month + 1, day: 1)
                continue
            }
            if matches(year: t.year, month: t.month, day: t.day),
                let (h, m, s) = timeOfDay(atOrAfter: t.hour, t.minute, t.second)
            {
                return CivilTime(year: t.year, month: t.month, day: t.day, hour: h, minute: m, second: s)
            }
            // The next day at midnight.
            let days = CivilTime.days(year: t.year, month: t.month, day: t.day) + 1
            t = CivilTime(epochSeconds: Int64(days) * 86_400)
        }
        return nil
    }

    /// The expression in six fields (seconds first), macros expanded.
    public var normalized: String {
        let expanded = source.trimmingCharacters(in: .whitespaces)
        let text = Self.macros[expanded.lowercased()] ?? expanded
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        return (fields.count == 5 ? ["0"] + fields : fields).joined(separator: " ")
    }
}

/// A cron expression or time zone that cannot be used, with a message that
/// names the bad field.
public struct CronError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "cron: \(message)" }
}
