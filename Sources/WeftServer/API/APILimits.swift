/// The limits the API handlers check, in one place: the handlers use these
/// values, and `APIConstraints` publishes them in the OpenAPI document, so
/// the document and the server cannot disagree.
enum APILimits {
    // Accounts.
    static let passwordMinCharacters = 8
    static let passwordMaxBytes = 1024
    static let emailMaxBytes = 254
    static let nameMaxCharacters = 200

    // Executions.
    static let idempotencyKeyMaxBytes = 256
    static let priority = -100...100
    static let executionTimeout = DurationRange(minMs: 0, maxMs: 366 * 86_400_000, minExclusive: true)
    static let cancelReasonMaxBytes = 1000

    // Lists and search.
    static let searchQueryMaxBytes = 1000

    // Versions.
    static let labelMaxCharacters = 200

    // External workers.
    static let pollWait = DurationRange(minMs: 0, maxMs: 60_000)
    static let leaseDuration = DurationRange(minMs: 1000, maxMs: 3_600_000)
    static let workerIdMaxBytes = 128
    static let errorKindMaxBytes = 64
    static let errorMessageMaxBytes = 10_000
    static let logLinesMax = 1000
    static let logLineMaxBytes = 10_000
}
