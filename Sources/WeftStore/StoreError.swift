/// What a store operation can report besides a backend failure. The API layer
/// maps each case to one gRPC status (and so one HTTP status).
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The thing does not exist (or is deleted).
    case notFound(String)
    /// A uniqueness rule would be broken (e.g. an email already registered).
    case alreadyExists(String)
    /// An optimistic-concurrency check failed: the record changed since it was read.
    case conflict(String)
    /// The request breaks a rule the store enforces (e.g. a bad page cursor).
    case invalid(String)
    /// The actor's role does not allow the change.
    case permissionDenied(String)

    public var description: String {
        switch self {
        case .notFound(let m), .alreadyExists(let m), .conflict(let m), .invalid(let m), .permissionDenied(let m): return m
        }
    }
}
