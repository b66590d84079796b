import Foundation
import Testing
import WeftStore
import WeftTestSupport

/// The store contract (`StoreConformance`) on the in-memory store.
@Suite("memory store")
struct MemoryStoreTests {
    @Test("conformance", arguments: StoreConformance.all)
    func conformance(_ check: StoreConformance.Case) async throws {
        try await check.run(on: StoreFixture.memory)
    }
}

@Suite("ids")
struct IDGeneratorTests {
    @Test("ids are prefixed, 26 base32 characters, unique and time-ordered")
    func format() async throws {
        let early = IDGenerator.make("wf", now: Date(timeIntervalSince1970: 1_700_000_000))
        let late = IDGenerator.make("wf", now: Date(timeIntervalSince1970: 1_700_000_001))
        #expect(early.hasPrefix("wf_") && early.count == 29)
        #expect(early < late)
        let many = Set((0..<10_000).map { _ in IDGenerator.make("x") })
        #expect(many.count == 10_000)
    }
}

@Suite("typed domain values")
struct DomainValueTests {
    @Test("statuses and types keep the strings the store has always held")
    func rawValues() {
        #expect(ExecutionStatus.allCases.map(\.rawValue) == ["Pending", "Running", "Completed", "Failed", "Cancelled", "TimedOut"])
        #expect(ExecutionStatus.allCases.filter(\.isFinished) == [.completed, .failed, .cancelled, .timedOut])
        #expect(TaskStatus.allCases.map(\.rawValue)
            == ["Pending", "Queued", "Running", "Completed", "Failed", "Retrying", "Skipped", "Cancelled"])
        #expect(TaskStatus.allCases.filter(\.isTerminal) == [.completed, .failed, .skipped, .cancelled])
        #expect(TriggerKind.allCases.map(\.rawValue) == ["manual", "api", "schedule", "webhook", "event"])
        #expect(TaskType.builtin.map(\.rawValue) == ["noop", "log", "http", "delay", "transform", "condition", "external"])
        for type in TaskType.builtin { #expect(TaskType(rawValue: type.rawValue) == type && type.isBuiltin) }
        #expect(TaskType(rawValue: "flaky") == .other("flaky") && !TaskType.other("flaky").isBuiltin)
    }
}
