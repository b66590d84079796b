import Foundation
import Testing
import WeftEngine
import WeftStore

@Suite("cost model")
struct CostRatesTests {
    @Test("rates parse from NAME=DOLLARS, per-type worker seconds override the default")
    func parsing() throws {
        var rates = CostRates()
        try rates.set("attempt=0.5")
        try rates.set(" worker_second = 2 ")
        try rates.set("worker_second.http=3")
        try rates.set("request=0.25")
        try rates.set("egress_mb=10")
        #expect(rates.perAttempt == 0.5 && rates.perRequest == 0.25 && rates.perMB == 10)
        #expect(rates.workerSecond(.http) == 3 && rates.workerSecond(.noop) == 2)
        // Defaults: delay and external use no worker of ours.
        #expect(CostRates().workerSecond(.delay) == 0 && CostRates().workerSecond(.external) == 0)
        for bad in ["attempt", "attempt=-1", "attempt=nan", "attempt=inf", "cpu=1", "worker_second.=1", "=1"] {
            #expect(throws: CostRates.InvalidRate.self, "\(bad)") { try rates.set(bad) }
        }
    }

    @Test("an attempt is charged its start, its time by type, its requests and bytes")
    func charges() throws {
        var rates = CostRates()
        try rates.set("attempt=0.001")
        try rates.set("worker_second=0.5")
        try rates.set("worker_second.http=1")
        try rates.set("request=0.01")
        try rates.set("egress_mb=2")
        let started = rates.attemptStarted()
        #expect(started.taskAttempts == 1 && started.attemptsDollars == 0.001 && started.total == 0.001)
        let ended = rates.attemptEnded(type: .http, seconds: 1.5, usage: .init(requests: 2, bytes: 500_000))
        #expect(ended.workerSeconds == 1.5 && ended.computeDollars == 1.5)
        #expect(ended.requests == 2 && abs(ended.requestsDollars - 0.02) < 1e-12)
        #expect(ended.egressBytes == 500_000 && abs(ended.egressDollars - 1.0) < 1e-12)
        // A clock step backwards never makes a negative charge.
        #expect(rates.attemptEnded(type: .noop, seconds: -3).isZero)
        let sum = started + ended
        #expect(abs(sum.total - (0.001 + 1.5 + 0.02 + 1.0)) < 1e-12)
    }
}
