import Foundation
import Logging
import ServiceLifecycle
import WeftStore

/// Writes API keys' last-used times in batches (every few seconds, and once
/// more at shutdown), so a call never waits on the store for them; and
/// once an hour deletes expired refresh tokens.
struct ApiKeyUsageWriter: Service {
    let index: ApiKeyIndex
    let store: any CredentialStore
    let logger: Logger
    var interval: Duration = .seconds(5)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var round = 0
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await write()
                round += 1
                if round % 720 == 1 { await purge() }
            }
        }
        await write()
    }

    private func purge() async {
        do {
            let purged = try await store.purgeRefreshTokens(expiredBefore: Date())
            if purged > 0 { logger.info("auth: deleted \(purged) expired refresh tokens") }
        } catch {
            logger.warning("cannot delete expired refresh tokens: \(error)")
        }
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
