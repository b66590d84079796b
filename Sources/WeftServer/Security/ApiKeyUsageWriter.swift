import Logging
import ServiceLifecycle
import WeftStore

/// Writes API keys' last-used times in batches (every few seconds, and once
/// more at shutdown), so a call never waits on the store for them.
struct ApiKeyUsageWriter: Service {
    let index: ApiKeyIndex
    let store: any CredentialStore
    let logger: Logger
    var interval: Duration = .seconds(5)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await write()
            }
        }
        await write()
    }

    private func write() async {
        let unwritten = index.takeUnwritten()
        guard !unwritten.isEmpty else { return }
        do {
            try await store.touchApiKeys(unwritten)
        } catch {
            logger.warning("cannot record API key use: \(error)")
        }
    }
}
