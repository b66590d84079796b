import Logging
import ServiceLifecycle

/// Turns health NOT_SERVING the moment graceful shutdown starts. It is the
/// last service of the group, so the first to hear of the shutdown: load
/// balancers stop sending calls while the worker pool drains, before the
/// RPC server drains its connections.
struct HealthDrain: Service {
    let health: HealthStatusStore
    let logger: Logger

    func run() async throws {
        // Returns at graceful shutdown; throws if cancelled (no drain then).
        try await gracefulShutdown()
        logger.info("graceful shutdown: health NOT_SERVING")
        health.enterDrain()
    }
}
