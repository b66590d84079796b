/// The legal order of events on the server side of one gRPC call, apart from
/// any I/O: request headers, request messages, end of request; response
/// headers, response messages, exactly one status. Illegal transitions are
/// reported, never silently ignored, so the transport cannot send a second
/// status or a message after the status.
public struct GRPCServerStreamStateMachine: Sendable {
    public enum Inbound: Sendable, Equatable { case idle, open, closed }
    public enum Outbound: Sendable, Equatable { case idle, headersSent, closed }

    public enum Violation: Error, Equatable {
        case messageBeforeHeaders
        case messageAfterEndOfRequest
        case duplicateEndOfRequest
        case sendAfterStatus
        case secondStatus
    }

    /// How the status goes out.
    public enum StatusFraming: Sendable, Equatable {
        /// No response headers went out yet: one HEADERS frame with :status,
        /// content-type and grpc-status, END_STREAM.
        case trailersOnly
        /// After headers (and messages): a trailing HEADERS frame.
        case trailers
    }

    public private(set) var inbound: Inbound = .idle
    public private(set) var outbound: Outbound = .idle

    public init() {}

    public mutating func receiveHeaders() {
        if inbound == .idle { inbound = .open }
    }

    public mutating func receiveMessage() throws(Violation) {
        switch inbound {
        case .idle: throw .messageBeforeHeaders
        case .open: return
        case .closed: throw .messageAfterEndOfRequest
        }
    }

    public mutating func receiveEnd() throws(Violation) {
        guard inbound != .closed else { throw .duplicateEndOfRequest }
        inbound = .closed
    }

    /// Before a response message: whether headers must go out first.
    public mutating func sendMessage() throws(Violation) -> Bool {
        switch outbound {
        case .idle:
            outbound = .headersSent
            return true
        case .headersSent:
            return false
        case .closed:
            throw .sendAfterStatus
        }
    }

    public mutating func sendStatus() throws(Violation) -> StatusFraming {
        switch outbound {
        case .idle:
            outbound = .closed
            return .trailersOnly
        case .headersSent:
            outbound = .closed
            return .trailers
        case .closed:
            throw .secondStatus
        }
    }

    public var isStatusSent: Bool { outbound == .closed }
}
