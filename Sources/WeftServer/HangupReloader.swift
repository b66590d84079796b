import Dispatch
import Foundation
import Logging
import ServiceLifecycle
import WeftObservability
import WeftRPC

/// SIGHUP re-reads the TLS certificate, key and client CA, and the token
/// signing keys. New connections get the new certificate; open ones keep
/// theirs, so nothing is dropped. A file that does not load is logged and
/// the old configuration stays.
struct HangupReloader: Service {
    let tls: TLSContext?
    let keyring: SigningKeyring
    let metrics: WeftMetrics
    let logger: Logger

    func run() async throws {
        updateExpiry()
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "weft.sighup"))
        source.setEventHandler { reload() }
        source.resume()
        try? await gracefulShutdown()
        source.cancel()
    }

    func reload() {
        logger.info("SIGHUP: reloading TLS certificate and signing keys")
        if let tls {
            do {
                try tls.reload()
                count("ok")
                updateExpiry()
                logger.info("tls: certificate reloaded", metadata: ["not_after": "\(Date(timeIntervalSince1970: tls.certificateNotAfter))"])
            } catch {
                count("failed")
                logger.error("tls: reload failed, keeping the previous certificate: \(error)")
            }
        }
        do {
            try keyring.reload()
            logger.info("auth: signing keys reloaded", metadata: ["kids": "\(keyring.current.keys.map(\.kid).joined(separator: ","))"])
        } catch {
            logger.error("auth: cannot reload the signing keys, keeping the previous ones: \(error)")
        }
    }

    private func count(_ result: String) {
        metrics.counter(
            MetricNames.tlsReloads, help: "TLS certificate reloads (SIGHUP), by result.", labels: [("result", result)]
        ).increment()
    }

    private func updateExpiry() {
        guard let tls else { return }
        if tls.certificateNotAfter < Date().timeIntervalSince1970 {
            logger.warning(
                "tls: the serving certificate expired at \(Date(timeIntervalSince1970: tls.certificateNotAfter)); clients will refuse it")
        }
        metrics.gauge(
            MetricNames.tlsCertificateExpiry, help: "Unix time at which the serving TLS certificate expires."
        ).set(tls.certificateNotAfter)
    }
}
