public import Foundation

/// A cron expression in a time zone: turns its wall-clock matches into
/// instants, correctly across daylight-saving changes.
///
/// - A local time that a spring-forward skips fires once, at the first
///   valid instant after the gap (the transition).
/// - A local time that a fall-back repeats fires once, at its first
///   occurrence. Every wall-clock time fires at most once: the search never
///   goes back in local time, so the repeated hour's second pass is not
///   run again (an interval schedule that must not pause belongs in UTC).
public struct ScheduleClock: Sendable {
    public let cron: CronExpression
    public let zone: TimeZone

    public init(cron: CronExpression, zone: TimeZone) {
        self.cron = cron
        self.zone = zone
    }

    /// Parses both; throws a `CronError` naming what is wrong.
    public init(cron text: String, timezone: String) throws(CronError) {
        let cron = try CronExpression(text)
        guard let zone = Self.zone(named: timezone) else { throw CronError("unknown time zone \"\(timezone)\"") }
        self.init(cron: cron, zone: zone)
    }

    /// An IANA zone by name ("" is UTC). Names are checked against the
    /// system's tz database (/usr/share/zoneinfo) when it is installed, so
    /// only its names pass, spelled exactly (not "europe/berlin").
    public static func zone(named name: String) -> TimeZone? {
        if name.isEmpty || name == "UTC" { return TimeZone(identifier: "UTC") }
        guard name.utf8.count <= 64, !name.contains(".."), !name.hasPrefix("/") else { return nil }
        let database = "/usr/share/zoneinfo"
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: database, isDirectory: &isDirectory), isDirectory.boolValue {
            var isZoneDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: database + "/" + name, isDirectory: &isZoneDirectory),
                !isZoneDirectory.boolValue
            else { return nil }
        }
        return TimeZone(identifier: name)
    }

    /// The UTC offset at an instant, in seconds.
    func offset(_ epochSeconds: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(epochSeconds))))
    }

    /// The wall-clock time at an instant (whole seconds, rounded down).
    public func civil(at date: Date) -> CivilTime {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        return CivilTime(epochSeconds: seconds + offset(seconds))
    }

    enum Resolution: Equatable {
        case unique(Int64)
        case repeated(first: Int64, second: Int64)
        /// The local time does not exist; the first valid instant after it.
        case skipped(next: Int64)
    }

    /// The instants at which a wall-clock time occurs.
    func resolve(_ time: CivilTime) -> Resolution {
        let local = time.epochSeconds
        // The offsets in effect a day either side (zone transitions are
        // further apart than that).
        let before = offset(local - 86_400)
        let after = offset(local + 86_400)
        let candidates = Set([before, after]).map { local - $0 }.filter { offset($0) == local - $0 }.sorted()
        switch candidates.count {
        case 1: return .unique(candidates[0])
        case 2: return .repeated(first: candidates[0], second: candidates[1])
        default:
            // A gap: the transition lies between the two readings; find its
            // first second on the later offset.
            var low = min(local - before, local - after)
            var high = max(local - before, local - after)
            while low < high {
                let mid = low + (high - low) / 2
                if offset(mid) == after { high = mid } else { low = mid + 1 }
            }
            return .skipped(next: low)
        }
    }

    /// No fire time is later than this (9000-01-01T00:00:00Z): the store
    /// writes four-digit years, and the arithmetic stays far from overflow.
    public static let latest = Date(timeIntervalSince1970: TimeInterval(CivilTime.days(year: 9000, month: 1, day: 1)) * 86_400)

    /// The first fire time strictly after `date`; nil when there is none
    /// (before `latest`).
    public func next(after date: Date) -> Date? {
        guard date.timeIntervalSince1970 >= 0, date < Self.latest else { return nil }
        let instant = Int64(date.timeIntervalSince1970.rounded(.down))
        var floor = civil(at: date)
        // Each loop moves `floor` forward in local time; a handful suffice.
        for _ in 0..<1000 {
            guard let match = cron.next(after: floor) else { return nil }
            guard match.year < 9000 else { return nil }
            switch resolve(match) {
            case .unique(let at) where at > instant:
                return Date(timeIntervalSince1970: TimeInterval(at))
            case .repeated(let first, let second):
                if first > instant { return Date(timeIntervalSince1970: TimeInterval(first)) }
                // `date` is inside the repeated hour's second pass.
                if second > instant { return Date(timeIntervalSince1970: TimeInterval(second)) }
            case .skipped(let next) where next > instant:
                return Date(timeIntervalSince1970: TimeInterval(next))
            default:
                break
            }
            floor = match
        }
        return nil
    }

    /// Up to `count` fire times after `date`, at or after `start` and at or
    /// before `end`.
    public func upcoming(after date: Date, count: Int, start: Date? = nil, end: Date? = nil) -> [Date] {
        var times: [Date] = []
        var cursor = date
        // At or after `start`: ticks are whole seconds, so from the second
        // before its first whole second.
        if let start, start > cursor {
            guard start < Self.latest else { return [] }
            cursor = Date(timeIntervalSince1970: start.timeIntervalSince1970.rounded(.up) - 1)
        }
        while times.count < count, let next = next(after: cursor) {
            if let end, next > end { break }
            times.append(next)
            cursor = next
        }
        return times
    }

    /// An instant as local time in the zone, RFC 3339 with its offset
    /// ("2027-03-14T03:00:00-04:00").
    public func localText(_ date: Date) -> String {
        let seconds = Int64(min(max(date.timeIntervalSince1970, 0), Self.latest.timeIntervalSince1970).rounded(.down))
        let offset = self.offset(seconds)
        let civil = CivilTime(epochSeconds: seconds + offset)
        if offset == 0 { return civil.description + "Z" }
        let sign = offset < 0 ? "-" : "+"
        let minutes = abs(offset) / 60
        func two(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return civil.description + sign + two(minutes / 60) + ":" + two(minutes % 60)
    }
}
