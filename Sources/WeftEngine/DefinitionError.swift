/// Why a workflow definition was rejected. The message names the bad task
/// (`task "fetch" (#2): ...`) so the author can find it; the API maps this to
/// INVALID_ARGUMENT (HTTP 400).
public struct DefinitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    /// The offending task's key, when one task is at fault.
    public let taskKey: String?

    public init(_ message: String, taskKey: String? = nil) {
        self.message = message
        self.taskKey = taskKey
    }

    public var description: String { message }
}
