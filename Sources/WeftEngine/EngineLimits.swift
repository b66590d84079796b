/// The caps on what one tenant's workflows may make the engine hold or do,
/// whatever their definitions say (ARCHITECTURE: every tenant-controlled
/// size has a cap). An attempt over a size cap fails with kind
/// `output_too_large`, never retried, and the message names the cap.
public struct EngineLimits: Sendable {
    /// Bytes one task's resolved config may reach while its templates are
    /// resolved (`{{ tasks.prev.output }}` twice per task doubles per task).
    public var maxTemplateBytes = 1 << 20
    /// Bytes of one task's output (JSON, about).
    public var maxTaskOutputBytes = 2 << 20
    /// Bytes of all task outputs of one execution together, plus its input.
    public var maxExecutionBytes = 16 << 20
    /// The longest any attempt may run (a task's own timeout is capped by
    /// it; delays do not hold a worker and are not bounded by it), so no
    /// tenant holds a shared worker slot for days.
    public var maxAttemptTimeoutMs: Int64 = 3_600_000

    public init() {}
}
