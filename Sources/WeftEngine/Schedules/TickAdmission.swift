public import WeftStore

/// Whether a tick's execution may start: the workflow's organization's
/// quotas (the server implements it). A refusal skips the tick.
public protocol TickAdmission: Sendable {
    /// Reserves one execution of the organization; returns its cap of
    /// concurrent executions (0: none). Throws `TickRefused`.
    func admit(_ workflow: WorkflowRecord) async throws -> Int
    /// Gives back a reservation that started nothing.
    func release(_ workflow: WorkflowRecord) async
}

/// A tick the organization's quotas refused; `reason` is a skip reason.
public struct TickRefused: Error, Sendable {
    public let reason: String
    public let message: String

    public init(reason: String, message: String) {
        self.reason = reason
        self.message = message
    }
}
