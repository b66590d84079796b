public import ServiceLifecycle
import Synchronization
public import Tracing

/// A span recorded on the request path and handed to the tracer later, in
/// batches, with its real start and end times.
///
/// For calls answered inline on the event loop (health checks, cache hits):
/// they start no child spans and log nothing that needs their ids, so their
/// span need not exist while they run. Starting and ending a recorded span in
/// swift-otel costs tens of microseconds of task wake-ups each time; shipped
/// in batches, the tracer's consumers wake once per batch.
public struct DeferredSpan: Sendable {
    let name: String
    let parent: InstrumentationContext
    let kind: SpanKind
    let start: DefaultTracerClock.Timestamp
    public var attributes = SpanAttributes()
    /// Set for a failed call: the span's status is Error with this message.
    public var errorMessage: String?

    init(name: String, parent: InstrumentationContext, kind: SpanKind) {
        self.name = name
        self.parent = parent
        self.kind = kind
        self.start = DefaultTracerClock.now
    }
}

enum DeferredSpans {
    /// At most this many spans wait for the shipper (per 50 ms: 20,000 a
    /// second, more than swift-otel exports); more are dropped and counted.
    /// Dropping here is cheap; handing the tracer spans its exporter will
    /// drop anyway costs tens of microseconds each on the threads the engine
    /// runs on (100 % sampling under heavy load slowed executions tenfold).
    static let capacity = 1024
    static let interval: Duration = .milliseconds(50)

    private static let pending = Mutex<[(DeferredSpan, DefaultTracerClock.Timestamp)]>([])
    nonisolated(unsafe) static var onDrop: (@Sendable (Int) -> Void)?

    static func submit(_ span: DeferredSpan) {
        let end = DefaultTracerClock.now
        let accepted = pending.withLock { queue -> Bool in
            guard queue.count < capacity else { return false }
            queue.append((span, end))
            return true
        }
        if !accepted { onDrop?(1) }
    }


    static func ship(_ tracer: any Tracer) {
        let batch = pending.withLock { queue in
            defer { queue.removeAll(keepingCapacity: true) }
            return queue
        }
        for (record, end) in batch {
            let span = tracer.startSpan(record.name, context: record.parent, ofKind: record.kind, at: record.start)
            span.attributes = record.attributes
            if let message = record.errorMessage { span.setStatus(SpanStatus(code: .error, message: message)) }
            span.end(at: end)
        }
    }
}

/// Hands recorded spans to the tracer every `DeferredSpans.interval`, a
/// service: at graceful shutdown it ships what is left and stops (before
/// the exporter's last flush: it comes after the exporter in the group).
public struct SpanShipper: Service {
    let tracer: any Tracer

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: DeferredSpans.interval)
                DeferredSpans.ship(tracer)
            }
        }
        DeferredSpans.ship(tracer)
    }
}
