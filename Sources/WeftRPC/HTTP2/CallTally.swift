import Prometheus

/// A connection's counter increments of one read burst, added to the
/// shared counters once at its end.
///
/// Each counter increment is an atomic read-modify-write on memory every
/// event loop shares; a health check made ten of them (started, messages
/// and bytes each way, handled, open streams up and down). Calls handled
/// within one read burst of a connection — nearly all of them, under load
/// 16 to 32 at a time — are tallied here in plain integers and added in
/// one go after the burst's output is flushed, which is before any of
/// them reaches its client. A burst's calls usually share one method; the
/// tally holds one method at a time and adds what it has when another
/// comes. Outside a burst (handler tasks) the transport counts directly.
struct CallTally {
    private var method: RPCMethodMetrics?
    private var started = 0
    private var messagesReceived = 0
    private var bytesReceived = 0
    private var messagesSent = 0
    private var bytesSent = 0
    private var handledOK = 0
    /// Streams opened minus streams closed.
    private var streams = 0

    mutating func started(_ metrics: RPCMethodMetrics) {
        select(metrics)
        started += 1
    }

    mutating func received(_ metrics: RPCMethodMetrics, bytes: Int) {
        select(metrics)
        messagesReceived += 1
        bytesReceived += bytes
    }

    mutating func sent(_ metrics: RPCMethodMetrics, bytes: Int) {
        select(metrics)
        messagesSent += 1
        bytesSent += bytes
    }

    mutating func handledOK(_ metrics: RPCMethodMetrics) {
        select(metrics)
        handledOK += 1
    }

    mutating func streamOpened() { streams += 1 }
    mutating func streamClosed() { streams -= 1 }

    /// Adds everything to the shared counters and starts over.
    mutating func flush(_ rpc: RPCMetrics) {
        if streams > 0 {
            rpc.streamsActive.increment(by: Double(streams))
        } else if streams < 0 {
            rpc.streamsActive.decrement(by: Double(-streams))
        }
        streams = 0
        flushMethod()
    }

    private mutating func select(_ metrics: RPCMethodMetrics) {
        if method !== metrics {
            flushMethod()
            method = metrics
        }
    }

    private mutating func flushMethod() {
        guard let method else { return }
        if started > 0 { method.started.increment(by: Int64(started)) }
        if messagesReceived > 0 { method.messagesReceived.increment(by: Int64(messagesReceived)) }
        if bytesReceived > 0 { method.bytesReceived.increment(by: Int64(bytesReceived)) }
        if messagesSent > 0 { method.messagesSent.increment(by: Int64(messagesSent)) }
        if bytesSent > 0 { method.bytesSent.increment(by: Int64(bytesSent)) }
        if handledOK > 0 { method.handledOKCounter.increment(by: Int64(handledOK)) }
        started = 0
        messagesReceived = 0
        bytesReceived = 0
        messagesSent = 0
        bytesSent = 0
        handledOK = 0
    }
}
