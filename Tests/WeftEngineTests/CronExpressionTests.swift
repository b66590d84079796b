import Foundation
import Testing
import WeftEngine

@Suite("cron expressions and fire times")
struct CronExpressionTests {
    func date(_ text: String) -> Date { try! Date(text, strategy: .iso8601) }
    func text(_ date: Date) -> String { date.formatted(.iso8601) }

    func upcoming(_ cron: String, _ zone: String, after: String, count: Int) throws -> [String] {
        let clock = try ScheduleClock(cron: cron, timezone: zone)
        return clock.upcoming(after: date(after), count: count).map(text)
    }

    @Test("next fire times in UTC", arguments: [
        ("*/2 * * * * *", "2026-12-05T10:00:00Z", ["2026-12-05T10:00:02Z", "2026-12-05T10:00:04Z", "2026-12-05T10:00:06Z"]),
        ("* * * * *", "2026-12-05T10:00:30Z", ["2026-12-05T10:01:00Z", "2026-12-05T10:02:00Z", "2026-12-05T10:03:00Z"]),
        ("0 0 * * *", "2026-12-31T12:00:00Z", ["2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z", "2027-01-03T00:00:00Z"]),
        ("*/7 * * * *", "2026-12-05T10:50:00Z", ["2026-12-05T10:56:00Z", "2026-12-05T11:00:00Z", "2026-12-05T11:07:00Z"]),
        ("0 0 29 2 *", "2026-03-01T00:00:00Z", ["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z", "2036-02-29T00:00:00Z"]),
        ("0 12 L * *", "2027-01-15T00:00:00Z", ["2027-01-31T12:00:00Z", "2027-02-28T12:00:00Z", "2027-03-31T12:00:00Z"]),
        ("0 12 L-2 * *", "2028-02-01T00:00:00Z", ["2028-02-27T12:00:00Z", "2028-03-29T12:00:00Z", "2028-04-28T12:00:00Z"]),
        ("0 9 * * FRI#3", "2027-01-01T00:00:00Z", ["2027-01-15T09:00:00Z", "2027-02-19T09:00:00Z", "2027-03-19T09:00:00Z"]),
        ("0 9 * * 5L", "2027-01-01T00:00:00Z", ["2027-01-29T09:00:00Z", "2027-02-26T09:00:00Z", "2027-03-26T09:00:00Z"]),
        // 2027-05-15 is a Saturday (Friday the 14th), 2027-08-15 a Sunday (Monday the 16th).
        ("0 0 15W * *", "2027-05-01T00:00:00Z", ["2027-05-14T00:00:00Z", "2027-06-15T00:00:00Z", "2027-07-15T00:00:00Z"]),
        ("0 0 15W 8 *", "2027-01-01T00:00:00Z", ["2027-08-16T00:00:00Z", "2028-08-15T00:00:00Z", "2029-08-15T00:00:00Z"]),
        // 2027-05-01 is a Saturday: 1W is Monday the 3rd. 2027-10-31 is a Sunday: LW is Friday the 29th.
        ("0 0 1W 5 *", "2027-01-01T00:00:00Z", ["2027-05-03T00:00:00Z", "2028-05-01T00:00:00Z", "2029-05-01T00:00:00Z"]),
        ("0 0 LW 10 *", "2027-01-01T00:00:00Z", ["2027-10-29T00:00:00Z", "2028-10-31T00:00:00Z", "2029-10-31T00:00:00Z"]),
        // Both day fields restricted: either matches (the 1st, or any Monday).
        ("0 0 1 * MON", "2027-02-01T00:00:00Z", ["2027-02-08T00:00:00Z", "2027-02-15T00:00:00Z", "2027-02-22T00:00:00Z"]),
        ("0 0 1 JAN-MAR/2 *", "2027-01-01T00:00:00Z", ["2027-03-01T00:00:00Z", "2028-01-01T00:00:00Z", "2028-03-01T00:00:00Z"]),
        ("0 0 * * 7", "2027-01-01T00:00:00Z", ["2027-01-03T00:00:00Z", "2027-01-10T00:00:00Z", "2027-01-17T00:00:00Z"]),
        ("5/20 * * * *", "2027-01-01T00:00:00Z", ["2027-01-01T00:05:00Z", "2027-01-01T00:25:00Z", "2027-01-01T00:45:00Z"]),
        ("@hourly", "2027-01-01T00:30:00Z", ["2027-01-01T01:00:00Z", "2027-01-01T02:00:00Z", "2027-01-01T03:00:00Z"]),
        ("@weekly", "2027-01-01T00:00:00Z", ["2027-01-03T00:00:00Z", "2027-01-10T00:00:00Z", "2027-01-17T00:00:00Z"]),
        ("@monthly", "2027-01-01T00:00:00Z", ["2027-02-01T00:00:00Z", "2027-03-01T00:00:00Z", "2027-04-01T00:00:00Z"]),
        ("@yearly", "2027-01-01T00:00:00Z", ["2028-01-01T00:00:00Z", "2029-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]),
    ])
    func utc(cron: String, after: String, expected: [String]) throws {
        #expect(try upcoming(cron, "UTC", after: after, count: 3) == expected)
    }

    @Test("daylight-saving transitions: a skipped time fires once at the next valid instant, a repeated one once", arguments: [
        // New York springs forward 2027-03-14 02:00 EST -> 03:00 EDT.
        ("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z",
         ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z", "2027-03-16T06:30:00Z"]),
        ("*/30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z",
         ["2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z", "2027-03-15T06:30:00Z"]),
        // ...and falls back 2027-11-07 02:00 EDT -> 01:00 EST.
        ("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z",
         ["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z", "2027-11-09T06:30:00Z"]),
        ("0 */1 * * *", "America/New_York", "2027-11-07T04:30:00Z",
         ["2027-11-07T05:00:00Z", "2027-11-07T07:00:00Z", "2027-11-07T08:00:00Z"]),
        // Berlin: 2027-03-28 02:00 CET -> 03:00 CEST; 2027-10-31 03:00 CEST -> 02:00 CET.
        ("15 2 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z",
         ["2027-03-28T01:00:00Z", "2027-03-29T00:15:00Z", "2027-03-30T00:15:00Z"]),
        ("30 2 * * *", "Europe/Berlin", "2027-10-30T12:00:00Z",
         ["2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z", "2027-11-02T01:30:00Z"]),
        ("0 0 * * *", "Europe/Berlin", "2027-03-27T12:00:00Z",
         ["2027-03-27T23:00:00Z", "2027-03-28T22:00:00Z", "2027-03-29T22:00:00Z"]),
    ])
    func daylightSaving(cron: String, zone: String, after: String, expected: [String]) throws {
        #expect(try upcoming(cron, zone, after: after, count: 3) == expected)
    }

    @Test("starting inside the repeated hour's second pass continues in it")
    func insideRepeatedHour() throws {
        // 06:10Z is 01:10 EST, the second pass of 01:xx on 2027-11-07.
        #expect(try upcoming("*/20 * * * *", "America/New_York", after: "2027-11-07T06:10:00Z", count: 3)
            == ["2027-11-07T06:20:00Z", "2027-11-07T06:40:00Z", "2027-11-07T07:00:00Z"])
    }

    @Test("local times show their offset")
    func localText() throws {
        let clock = try ScheduleClock(cron: "30 2 * * *", timezone: "America/New_York")
        #expect(clock.localText(date("2027-03-14T07:00:00Z")) == "2027-03-14T03:00:00-04:00")
        #expect(try ScheduleClock(cron: "* * * * *", timezone: "UTC").localText(date("2027-03-14T07:00:00Z"))
            == "2027-03-14T07:00:00Z")
    }

    @Test("start and end bound the preview")
    func bounds() throws {
        let clock = try ScheduleClock(cron: "0 * * * *", timezone: "UTC")
        let times = clock.upcoming(
            after: date("2027-01-01T00:00:00Z"), count: 10, start: date("2027-01-01T05:00:00Z"),
            end: date("2027-01-01T07:30:00Z"))
        #expect(times.map(text) == ["2027-01-01T05:00:00Z", "2027-01-01T06:00:00Z", "2027-01-01T07:00:00Z"])
    }

    @Test("invalid expressions name the bad field", arguments: [
        ("61 * * * *", "cron: minute field \"61\" is out of range 0-59"),
        ("* 24 * * *", "cron: hour field \"24\" is out of range 0-23"),
        ("* * 0 * *", "cron: day-of-month field \"0\" is out of range 1-31"),
        ("* * * 13 *", "cron: month field \"13\" is out of range 1-12"),
        ("* * * * 8", "cron: day-of-week field \"8\" is out of range 0-7"),
        ("60 * * * * *", "cron: second field \"60\" is out of range 0-59"),
        ("* * *", "cron: cron expression must have 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got 3"),
        ("*/0 * * * *", "cron: step must be at least 1 in minute field \"*/0\""),
        ("x * * * *", "cron: minute field \"x\" is not a number"),
        ("* * * FOO *", "cron: month field \"FOO\" is not a number or a month name (JAN-DEC)"),
        ("30-10 * * * *", "cron: range \"30-10\" in minute field runs backwards (30 > 10)"),
        ("1,,2 * * * *", "cron: minute field \"1,,2\" has an empty list item"),
        ("? * * * *", "cron: ? is only allowed in the day-of-month and day-of-week fields, not in minute"),
        ("* * * * 5#6", "cron: day-of-week field \"5#6\": the n of d#n must be from 1 to 5"),
        ("* * * * L", "cron: day-of-week field \"L\" needs a weekday (5L or FRIL: the last Friday)"),
        ("@often", "cron: unknown macro \"@often\"; known: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
        ("", "cron: cron expression is empty"),
    ])
    func invalid(cron: String, message: String) {
        #expect(throws: CronError.self) { try CronExpression(cron) }
        do {
            _ = try CronExpression(cron)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test("unknown time zones and impossible dates are refused")
    func impossible() throws {
        #expect(throws: CronError("unknown time zone \"Mars/Base\"")) { try ScheduleClock(cron: "* * * * *", timezone: "Mars/Base") }
        #expect(throws: CronError("unknown time zone \"europe/berlin\"")) { try ScheduleClock(cron: "* * * * *", timezone: "europe/berlin") }
        let never = try ScheduleClock(cron: "0 0 30 2 *", timezone: "UTC")
        #expect(never.next(after: date("2027-01-01T00:00:00Z")) == nil)
    }

    @Test("normalized form has six fields")
    func normalized() throws {
        #expect(try CronExpression("0 0 * * *").normalized == "0 0 0 * * *")
        #expect(try CronExpression("@daily").normalized == "0 0 0 * * *")
        #expect(try CronExpression("*/2 * * * * *").normalized == "*/2 * * * * *")
    }
}
