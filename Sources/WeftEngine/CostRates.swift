public import WeftStore
import Synchronization

/// The cost model's rates, in US dollars (docs/COST.md). An execution is
/// charged per task attempt started, per second of worker time by task type,
/// per outbound request and per MB its `http` tasks send and receive.
///
/// The defaults are list prices of the managed services Weft replaces, so the
/// figures read as "what this would cost there": $0.000025 per attempt
/// (AWS Step Functions, $0.025 per 1,000 state transitions), $0.0000166667
/// per worker second (AWS Lambda, one GB-second), $0.0000004 per request and
/// $0.00009 per MB ($0.09 per GB of egress). `delay` and `external` tasks
/// use no worker of Weft's, so their worker second is free unless set.
public struct CostRates: Sendable, Equatable {
    public var perAttempt = 0.000025
    public var perWorkerSecond = 0.0000166667
    public var perWorkerSecondByType: [String: Double] = ["delay": 0, "external": 0]
    public var perRequest = 0.0000004
    public var perMB = 0.00009

    public init() {}

    public struct InvalidRate: Error, CustomStringConvertible {
        public let description: String
    }

    /// Sets one rate from `name=dollars` (`attempt`, `worker_second`,
    /// `worker_second.<type>`, `request`, `egress_mb`).
    public mutating func set(_ entry: String) throws {
        let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let value = Double(parts[1]), value.isFinite, value >= 0 else {
            throw InvalidRate(description: "expected NAME=DOLLARS with a number of dollars >= 0")
        }
        let name = parts[0]
        switch name {
        case "attempt": perAttempt = value
        case "worker_second": perWorkerSecond = value
        case "request": perRequest = value
        case "egress_mb": perMB = value
        case _ where name.hasPrefix("worker_second.") && name.count > "worker_second.".count:
            perWorkerSecondByType[String(name.dropFirst("worker_second.".count))] = value
        default:
            throw InvalidRate(
                description: "unknown rate \"\(name)\"; known: attempt, worker_second, worker_second.<task type>, request, egress_mb")
        }
    }

    /// The worker-second rate of a task type (the default rate for nil).
    public func workerSecond(_ type: TaskType?) -> Double {
        type.flatMap { perWorkerSecondByType[$0.rawValue] } ?? perWorkerSecond
    }

    /// What starting one attempt adds.
    public func attemptStarted() -> ExecutionCost {
        ExecutionCost(taskAttempts: 1, attemptsDollars: perAttempt)
    }

    /// What an attempt that ran `seconds` adds.
    public func attemptEnded(type: TaskType?, seconds: Double, usage: UsageMeter.Reading = .init()) -> ExecutionCost {
        let seconds = max(0, seconds)
        return ExecutionCost(
            workerSeconds: seconds, computeDollars: seconds * workerSecond(type), requests: usage.requests,
            requestsDollars: Double(usage.requests) * perRequest, egressBytes: usage.bytes,
            egressDollars: Double(usage.bytes) / 1_000_000 * perMB)
    }
}

/// Counts the outbound requests and bytes of one task attempt. The engine
/// binds one to the attempt's task; runners that do network I/O add to it.
public final class UsageMeter: Sendable {
    public struct Reading: Sendable, Equatable {
        public var requests = 0
        public var bytes = 0
        public init(requests: Int = 0, bytes: Int = 0) {
            self.requests = requests
            self.bytes = bytes
        }
    }

    @TaskLocal public static var current: UsageMeter?

    private let state = Mutex(Reading())

    public init() {}

    public func add(requests: Int = 0, bytes: Int) {
        state.withLock {
            $0.requests += requests
            $0.bytes += bytes
        }
    }

    public var reading: Reading { state.withLock { $0 } }
}
