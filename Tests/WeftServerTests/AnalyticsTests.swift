import Foundation
import SwiftProtobuf
import Testing
import WeftProto
import WeftStore
import WeftTestSupport

@testable import WeftServer

/// Statistics checked exactly against executions with known durations,
/// outcomes, retries and costs; trends across a DST change and a month
/// boundary; predictions against a synthetic history of known mean and
/// spread; who may see what.
@Suite("Analytics")
struct AnalyticsTests {
    /// Stores a finished execution of a, b (after a), c with a total
    /// duration of `seconds`: a retried when `retried`, b failed when
    /// `failed`, cost `cost`.
    static func finished(
        _ store: MemoryStore, _ workflow: WorkflowRecord, start: Date, seconds: Double, failed: Bool = false,
        retried: Bool = false, cost: Double, trigger: TriggerKind = .api
    ) async throws -> String {
        let execution = Records.execution(of: workflow, trigger: trigger, at: start)
        let id = execution.executionId
        func at(_ s: Double) -> Date { start.addingTimeInterval(s) }
        var units: [[ExecutionTransition]] = [[
            .create(execution), .execution(id: id, status: .running, at: at(0)),
            .task(executionId: id, taskKey: "a", status: .running, attempt: 1, at: at(0.1), cost: cost / 3),
        ]]
        if retried {
            units.append([
                .task(executionId: id, taskKey: "a", status: .retrying, attempt: 1, at: at(0.15), error: "flaky upstream"),
                .task(executionId: id, taskKey: "a", status: .running, attempt: 2, at: at(0.16)),
            ])
        }
        units.append([
            .task(executionId: id, taskKey: "a", status: .completed, attempt: retried ? 2 : 1, at: at(0.2)),
            .task(executionId: id, taskKey: "c", status: .running, attempt: 1, at: at(0.2), cost: cost / 3),
            .task(executionId: id, taskKey: "c", status: .completed, attempt: 1, at: at(0.25)),
            .task(executionId: id, taskKey: "b", status: .running, attempt: 1, at: at(0.3), cost: cost / 3),
        ])
        units.append([
            .task(executionId: id, taskKey: "b", status: failed ? .failed : .completed, attempt: 1, at: at(seconds - 0.1),
                  error: failed ? "b broke" : nil),
            .execution(id: id, status: failed ? .failed : .completed, at: at(seconds)),
            .cost(executionId: id, ExecutionCost(attemptsDollars: cost)),
        ])
        for unit in units { try await store.apply(unit) }
        return id
    }

    static func diamond(_ api: APIHarness, token: String) async throws -> WorkflowRecord {
        let made: Weft_V1_Workflow = try await api.call(
            APITests.createWorkflow, APITests.workflow(tasks: [("a", "noop", []), ("b", "noop", ["a"]), ("c", "noop", [])]),
            token: token)
        return try #require(try await api.store.workflow(id: made.id, includeDeleted: false))
    }

    static func ms(_ value: Any?) -> Double {
        guard let text = value as? String, text.hasSuffix("s"), let seconds = Double(text.dropLast()) else { return -1 }
        return seconds * 1000
    }

    @Test("workflow statistics are exact where they are sums, within the stated bound where they are percentiles")
    func statsAreExact() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let workflow = try await Self.diamond(api, token: owner)
            let base = Date().addingTimeInterval(-3 * 3600)
            // 20 runs of 1…20 s; every 5th fails, every 4th retries task a;
            // run i costs i mills.
            for i in 1...20 {
                _ = try await Self.finished(
                    api.store, workflow, start: base.addingTimeInterval(Double(i) * 60), seconds: Double(i),
                    failed: i % 5 == 0, retried: i % 4 == 0, cost: 0.001 * Double(i), trigger: i <= 15 ? .api : .schedule)
            }
            let response = await api.rest("GET", "/workflows/\(workflow.id)/stats?window=day", token: owner)
            #expect(response.status == 200)
            let stats = response.json
            #expect(stats["finished"] as? String == "20" && stats["totalExecutions"] as? String == "20")
            #expect(stats["completed"] as? String == "16" && stats["failed"] as? String == "4")
            #expect(stats["successRate"] as? Double == 0.8 && stats["retryRate"] as? Double == 0.25)
            #expect(abs((stats["totalCost"] as? Double ?? 0) - 0.21) < 1e-12)
            #expect(abs((stats["averageCost"] as? Double ?? 0) - 0.0105) < 1e-12)
            let triggers = (stats["byTrigger"] as? [[String: Any]] ?? []).map { "\($0["trigger"] ?? "")=\($0["executions"] ?? "")" }
            #expect(triggers == ["api=15", "schedule=5"])
            #expect(Self.ms(stats["maxDuration"]) == 20_000 && Self.ms(stats["meanDuration"]) == 10_500)
            // Nearest rank: p50 is the 10th of 20 (10 s), p95 the 19th, p99 the 20th.
            let bound = stats["durationErrorBound"] as? Double ?? 0
            #expect(bound == 1.0 / 128)
            for (field, exact) in [("p50Duration", 10_000.0), ("p95Duration", 19_000.0), ("p99Duration", 20_000.0)] {
                #expect(abs(Self.ms(stats[field]) - exact) <= exact * bound, "\(field)")
            }
            let p95Cost = stats["p95Cost"] as? Double ?? 0
            #expect(abs(p95Cost - 0.019) <= 0.019 * bound)
            let tasks = try #require(stats["tasks"] as? [[String: Any]])
            let byKey = Dictionary(uniqueKeysWithValues: tasks.map { ($0["taskKey"] as? String ?? "", $0) })
            #expect(byKey["a"]?["runs"] as? String == "20" && byKey["a"]?["retried"] as? String == "5")
            #expect(byKey["a"]?["flaky"] as? String == "5" && byKey["a"]?["attempts"] as? String == "25")
            #expect(byKey["b"]?["failed"] as? String == "4" && byKey["b"]?["failureRate"] as? Double == 0.2)
            #expect(abs((byKey["b"]?["costShare"] as? Double ?? 0) - 1.0 / 3) < 1e-9)
            // b is on every critical path (it ends last), after a.
            #expect(byKey["b"]?["criticalPathRuns"] as? String == "20" && (byKey["c"]?["criticalPathRuns"] as? String ?? "0") == "0")
            #expect(stats["mostFailingTasks"] as? [String] == ["b"])
            #expect((stats["slowestTasks"] as? [String])?.first == "b")
            let versions = try #require(stats["versions"] as? [[String: Any]])
            #expect(versions.count == 1 && versions[0]["finished"] as? String == "20")
            // Windows are whole hours.
            let start = stats["windowStart"] as? String ?? ""
            #expect(start.hasSuffix(":00:00Z"))
            // Bad input: a clear 400.
            let bad = await api.rest("GET", "/workflows/\(workflow.id)/stats?window=fortnight", token: owner)
            #expect(bad.status == 400 && (bad.json["message"] as? String ?? "").contains("fortnight"))
        }
    }

    @Test("statistics only cover what the caller may see")
    func authorization() async throws {
        try await APIHarness.with { api in
            let (owner, _) = try await api.signUp("Owner")
            let (stranger, _) = try await api.signUp("Stranger")
            let workflow = try await Self.diamond(api, token: owner)
            _ = try await Self.finished(api.store, workflow, start: Date().addingTimeInterval(-600), seconds: 2, cost: 0.01)
            for path in ["/workflows/\(workflow.id)/stats", "/workflows/\(workflow.id)/insights", "/workflows/\(workflow.id)/budget"] {
                #expect(await api.rest("GET", path, token: stranger).status == 404, "\(path)")
            }
            let theirs = await api.rest("GET", "/analytics/workflow-executions", token: stranger)
            #expect(theirs.status == 200 && (theirs.json["daily"] as? [Any] ?? []).isEmpty)
            let mine = await api.rest("GET", "/analytics/workflow-executions", token: owner)
            let days = try #require(mine.json["daily"] as? [[String: Any]])
            #expect(days.reduce(0) { $0 + (Int($1["started"] as? String ?? "0") ?? 0) } == 1)
            #expect(await api.rest("GET", "/analytics/workflow-executions?workflowId=\(workflow.id)", token: stranger).status == 404)
            #expect(await api.rest("PUT", "/workflows/\(workflow.id)/budget", body: #"{"monthlyLimitUsd": 5}"#, token: stranger).status == 404)
        }
    }

    @Test("trends bucket hours into local days across a DST change and a month boundary")
    func trendsAcrossDST() throws {
        // 72 UTC hours from 2026-10-31T00:00Z; New York leaves DST on
        // 2026-11-01 at 02:00 EDT, so that local day has 25 hours.
        let first = RollupHour(containing: Date(timeIntervalSince1970: 1_793_404_800))
        var rows: [(key: ExecutionRollupKey, value: ExecutionRollup)] = []
        for offset in 0..<72 {
            var rollup = ExecutionRollup()
            rollup.executions = 1
            rollup.costSum = 0.5
            rollup.durations.record(1000)
            rollup.durationMsMax = 1000
            rows.append((ExecutionRollupKey(
                workflowId: "wf", version: 1, hour: RollupHour(first.value + Int64(offset)), trigger: .api,
                status: offset % 3 == 0 ? .failed : .completed), rollup))
        }
        let builder = TrendBuilder(timeZone: try #require(TimeZone(identifier: "America/New_York")))
        let end = first.start.addingTimeInterval(72 * 3600 - 1)
        let starts = builder.dayStarts(from: first.start, to: end)
        // Local midnights: 2026-10-30 00:00 EDT (04:00Z) … 2026-11-02 00:00 EST (05:00Z).
        #expect(starts.map { Int64($0.start.timeIntervalSince1970) } == [1_793_332_800, 1_793_419_200, 1_793_505_600, 1_793_595_600])
        let (daily, monthly, yearly) = builder.build(days: HourlyTotal.of(rows.shuffled(), buckets: starts).shuffled())
        #expect(daily.map(\.period) == ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"])
        #expect(daily.map(\.started) == [4, 24, 25, 19])
        #expect(monthly.map(\.period) == ["2026-10", "2026-11"] && monthly.map(\.started) == [28, 44])
        #expect(yearly.map(\.period) == ["2026"] && yearly[0].started == 72 && yearly[0].failed == 24)
        #expect(abs(yearly[0].cost - 36) < 1e-9 && yearly[0].completed == 48)
        // The local day starts at local midnight: 04:00Z in EDT, 05:00Z in EST.
        #expect(daily[2].start.seconds == 1_793_505_600 && daily[3].start.seconds == 1_793_595_600)
        #expect(!builder.offHour(from: first.start, to: first.start.addingTimeInterval(72 * 3600)))
        let kolkata = TrendBuilder(timeZone: try #require(TimeZone(identifier: "Asia/Kolkata")))
        #expect(kolkata.offHour(from: first.start, to: first.start.addingTimeInterval(3600)))
        // Berlin: the same hours, one local day earlier ends at 23:00Z.
        let berlinBuilder = TrendBuilder(timeZone: try #require(TimeZone(identifier: "Europe/Berlin")))
        let berlin = berlinBuilder.build(
            days: HourlyTotal.of(rows, buckets: berlinBuilder.dayStarts(from: first.start, to: end))).daily
        #expect(berlin.map(\.started).reduce(0, +) == 72 && berlin.first?.period == "2026-10-31")
        // Kolkata (+05:30): a day's hours begin at the first whole UTC hour
        // after local midnight (18:30Z -> 19:00Z).
        let kolkataStarts = kolkata.dayStarts(from: first.start, to: end)
        #expect(kolkataStarts.allSatisfy { Int64($0.start.timeIntervalSince1970) % 86_400 == 19 * 3600 })
    }

    @Test("local days where midnight does not exist (Santiago leaves 00:00 for 01:00 on 2024-09-08)")
    func dayStartsAcrossMidnightChange() throws {
        let builder = TrendBuilder(timeZone: try #require(TimeZone(identifier: "America/Santiago")))
        let starts = builder.dayStarts(
            from: Date(timeIntervalSince1970: 1_725_595_200), to: Date(timeIntervalSince1970: 1_725_937_200 + 3600))
        #expect(starts.map { Int64($0.start.timeIntervalSince1970) } == [1_725_595_200, 1_725_681_600, 1_725_768_000, 1_725_850_800, 1_725_937_200])
    }

    @Test("the next-run prediction of a synthetic history of known mean and spread")
    func predictionMatchesKnownDistribution() throws {
        // 10,000 runs from N(1000 ms, 100 ms), deterministic.
        var generator = SplitMix(seed: 42)
        var rollup = ExecutionRollup()
        for _ in 0..<10_000 {
            let u1 = max(Double.leastNonzeroMagnitude, Double(generator.next() >> 11) / Double(1 << 53))
            let u2 = Double(generator.next() >> 11) / Double(1 << 53)
            let sample = 1000 + 100 * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
            let ms = Int64(sample.rounded())
            rollup.executions += 1
            rollup.durations.record(ms)
            rollup.durationMsSum += Double(ms)
            rollup.durationMsSquares += Double(ms) * Double(ms)
            rollup.durationMsMax = max(rollup.durationMsMax, ms)
        }
        let key = ExecutionRollupKey(workflowId: "wf", version: 1, hour: RollupHour(0), trigger: .api, status: .completed)
        let prediction = Insights(executions: [(key, rollup)], tasks: []).nextRun()
        func ms(_ d: Google_Protobuf_Duration) -> Double { Double(d.seconds) * 1000 + Double(d.nanos) / 1e6 }
        // Median 1000, 10th/90th percentiles 1000 ∓ 1.2816·100; tolerances:
        // sampling error (~1.3 ms for the median, ~2 ms for the tails) plus
        // the histogram's 0.78 %.
        #expect(abs(ms(prediction.predicted) - 1000) <= 12)
        #expect(abs(ms(prediction.low) - 871.8) <= 12)
        #expect(abs(ms(prediction.high) - 1128.2) <= 12)
        #expect(abs(ms(prediction.mean) - 1000) <= 4 && abs(ms(prediction.standardDeviation) - 100) <= 4)
        #expect(prediction.sampleSize == 10_000 && abs(prediction.confidence - 8001.0 / 10_001) < 1e-12)
        // Nothing to predict from.
        #expect(Insights(executions: [], tasks: []).nextRun().sampleSize == 0)
    }

    @Test("a success rate that dropped after a version change is flagged; chance-sized changes are not")
    func successRateDrop() {
        func rows(_ v1: (Int64, Int64), _ v2: (Int64, Int64)) -> [(key: ExecutionRollupKey, value: ExecutionRollup)] {
            [(1, v1), (2, v2)].flatMap { version, counts in
                [(ExecutionStatus.completed, counts.0), (.failed, counts.1 - counts.0)].map { status, n in
                    var rollup = ExecutionRollup()
                    rollup.executions = n
                    return (ExecutionRollupKey(workflowId: "wf", version: version, hour: RollupHour(0), trigger: .api, status: status), rollup)
                }
            }
        }
        let drop = Insights(executions: rows((95, 100), (70, 100)), tasks: []).successRateDrop()
        #expect(drop?.kind == "success_rate_drop" && drop?.version == 2)
        #expect(abs((drop?.score ?? 0) - -4.652) < 0.01 && (drop?.confidence ?? 0) > 0.999)
        #expect(Insights(executions: rows((95, 100), (93, 100)), tasks: []).successRateDrop() == nil)
        #expect(Insights(executions: rows((9, 9), (1, 9)), tasks: []).successRateDrop() == nil)  // too few runs
    }

    @Test("budget forecast: spent this month, the daily rate, the month-end forecast")
    func budgetForecast() throws {
        let zone = try #require(TimeZone(identifier: "UTC"))
        // Now: 2027-01-11T00:00Z; $1 an hour since 2027-01-01T00:00Z and
        // during the last 5 days of December.
        let now = Date(timeIntervalSince1970: 1_799_625_600)
        let monthStart = RollupHour(containing: Date(timeIntervalSince1970: 1_798_761_600))
        var rows: [(key: ExecutionRollupKey, value: ExecutionRollup)] = []
        for hour in (monthStart.value - 5 * 24)..<RollupHour(containing: now).value {
            var rollup = ExecutionRollup()
            rollup.executions = 1
            rollup.costSum = 1
            rows.append((ExecutionRollupKey(workflowId: "wf", version: 1, hour: RollupHour(hour), trigger: .api, status: .completed), rollup))
        }
        let hours = HourlyTotal.of(rows)
        let forecast = BudgetForecast.compute(limit: 500, timeZone: zone, now: now, hours: hours)
        #expect(forecast.month == "2027-01" && forecast.spent == 240)
        // The last 7 days: 168 hours, $168, of a span of 169 hours (the
        // current one counts): $23.86 a day.
        #expect(abs(forecast.dailyRate - 168.0 / 169 * 24) < 1e-9)
        #expect(abs(forecast.daysLeft - 21) < 1e-9 && abs(forecast.forecast - (240 + forecast.dailyRate * 21)) < 1e-9)
        #expect(forecast.level == 1 && forecast.status == "forecast_over")
        #expect(forecast.low == forecast.forecast && forecast.high == forecast.forecast)  // no spread: every day $24
        #expect(BudgetForecast.compute(limit: 200, timeZone: zone, now: now, hours: hours).status == "over")
        #expect(BudgetForecast.compute(limit: 5000, timeZone: zone, now: now, hours: hours).status == "ok")
    }

    @Test("store dates read back by arithmetic as they were written")
    func storeDates() {
        var generator = SplitMix(seed: 3)
        for _ in 0..<2000 {
            let ms = Int64(generator.next() % 8_000_000_000_000) - 1_000_000_000_000
            let date = Date(timeIntervalSince1970: Double(ms) / 1000)
            #expect(StoreDate.date(StoreDate.text(date)).map { Int64(($0.timeIntervalSince1970 * 1000).rounded()) } == ms)
        }
        #expect(StoreDate.date("2026-12-05 11:04:14") == Date(timeIntervalSince1970: 1_796_468_654))
        #expect(StoreDate.date("2026-12-05T11:04:14.000Z") == nil && StoreDate.date("2026-13-05 11:04:14") == nil)
    }

    @Test("task error messages survive their stored form: spaces, line breaks, backslashes")
    func errorsText() {
        let errors: [String: Int64] = ["HTTP 503: upstream\nbusy": 3, #"path C:\tmp\x"#: 1, "plain error with spaces": 12, "": 2]
        var read = TaskRollup()
        read.addErrors(text: TaskRollup.errorsText(errors))
        #expect(read.errors == errors)
        read.addErrors(text: "nonsense\n-1 negative\n")
        #expect(read.errors == errors)
    }

    @Test("log histograms: exact below 128, within 1/128 above, merge and encode losslessly")
    func histogram() throws {
        var histogram = LogHistogram()
        var other = LogHistogram()
        var values: [Int64] = []
        var generator = SplitMix(seed: 7)
        for index in 0..<5000 {
            let value = Int64(generator.next() % 10_000_000)
            values.append(value)
            if index % 2 == 0 { histogram.record(value) } else { other.record(value) }
        }
        histogram.merge(other)
        values.sort()
        for p in [0.01, 0.5, 0.9, 0.99, 1.0] {
            let exact = values[Int((p * Double(values.count)).rounded(.up)) - 1]
            let got = try #require(histogram.quantile(p))
            #expect(abs(Double(got - exact)) <= Double(exact) / 128 + 1, "p\(p)")
        }
        for value: Int64 in [0, 1, 127] {
            var small = LogHistogram()
            small.record(value)
            #expect(small.quantile(0.5) == value)
        }
        #expect(LogHistogram(encoded: histogram.encoded) == histogram)
        // Merging an encoding in place equals decoding and merging it.
        var inPlace = other
        #expect(histogram.encoded.withUnsafeBytes { inPlace.merge(encoded: $0) })
        var decoded = other
        decoded.merge(histogram)
        #expect(inPlace == decoded)
        #expect(!Data([0x05, 0x01, 0x00, 0x01]).withUnsafeBytes { inPlace.merge(encoded: $0) })  // not ascending
        #expect(inPlace == decoded)
        #expect(LogHistogram(encoded: Data([0xFF])) == nil)
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
