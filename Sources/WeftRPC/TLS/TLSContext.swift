import COpenSSL
import Foundation
import Synchronization

/// What `--tls-cert`, `--tls-key` and `--tls-client-ca` say.
public struct TLSSettings: Sendable, Equatable {
    /// PEM: the server certificate, optionally followed by its chain.
    public var certificateFile: String
    /// PEM: the private key of the certificate.
    public var keyFile: String
    /// PEM: CAs whose client certificates the server accepts (mutual TLS).
    public var clientCAFile: String?
    /// Refuse handshakes without a client certificate (needs `clientCAFile`).
    public var requireClientCertificate = false

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil, requireClientCertificate: Bool = false) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
        self.requireClientCertificate = requireClientCertificate
    }
}

/// A TLS configuration problem (a file that does not load, a key that does
/// not match its certificate), with OpenSSL's reason.
public struct TLSError: Error, CustomStringConvertible {
    public let description: String
    init(_ what: String) {
        description = "\(what)\(TLSError.opensslReason().map { ": \($0)" } ?? "")"
    }

    /// Drains OpenSSL's error queue of this thread; the first reason (the
    /// SMTP client's TLS uses it too).
    public static func opensslReason() -> String? {
        var first: String?
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if first == nil {
                var buffer = [CChar](repeating: 0, count: 256)
                ERR_error_string_n(code, &buffer, buffer.count)
                first = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        return first
    }
}

/// The server's OpenSSL context: certificate, key, protocol floor, cipher
/// suites, ALPN and client-certificate checks. `reload()` (SIGHUP) builds a
/// new context from the same files and swaps it in for new connections;
/// open connections keep the one they started with (each SSL holds a
/// reference to its context), so nothing is dropped.
public final class TLSContext: Sendable {
    public let settings: TLSSettings
    /// The current SSL_CTX, as an address (OpaquePointer is not Sendable).
    private let current: Mutex<UInt>

    /// TLS 1.2 suites of Mozilla's "intermediate" profile: forward secret
    /// AEAD only. TLS 1.3 uses OpenSSL's defaults (all AEAD).
    static let tls12Ciphers =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    public init(_ settings: TLSSettings) throws {
        self.settings = settings
        current = Mutex(UInt(bitPattern: try Self.makeContext(settings)))
    }

    deinit {
        current.withLock { SSL_CTX_free(OpaquePointer(bitPattern: $0)) }
    }

    /// Unix time (seconds) at which the serving certificate expires.
    public var certificateNotAfter: Double {
        current.withLock { Double(weft_ssl_ctx_cert_not_after(OpaquePointer(bitPattern: $0))) }
    }

    /// Re-reads the files. On failure the old context stays and the error
    /// is thrown (a bad file on reload must not take the server down).
    public func reload() throws {
        let fresh = try Self.makeContext(settings)
        let old = current.withLock { value -> UInt in
            let old = value
            value = UInt(bitPattern: fresh)
            return old
        }
        SSL_CTX_free(OpaquePointer(bitPattern: old))  // live SSLs keep their own reference
    }

    /// A server-side SSL for one new connection.
    func makeSSL() -> OpaquePointer? {
        current.withLock { SSL_new(OpaquePointer(bitPattern: $0)) }
    }

    private static func makeContext(_ settings: TLSSettings) throws -> OpaquePointer {
        _ = TLSError.opensslReason()  // a clean error queue
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("cannot create a TLS context") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        guard weft_ssl_ctx_set_min_tls12(ctx) == 1 else { throw TLSError("cannot require TLS 1.2") }
        guard SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1 else { throw TLSError("cannot set the cipher suites") }
        weft_ssl_ctx_harden(ctx)
        // Writes go to a memory BIO and never partly; idle connections give
        // their buffers back.
        _ = weft_ssl_ctx_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
        _ = weft_ssl_ctx_set_session_cache_server(ctx)
        let sessionContext: [UInt8] = Array("weft".utf8)
        _ = SSL_CTX_set_session_id_context(ctx, sessionContext, UInt32(sessionContext.count))
        guard FileManager.default.isReadableFile(atPath: settings.certificateFile) else {
            throw TLSError("cannot read the certificate file \(settings.certificateFile)")
        }
        guard FileManager.default.isReadableFile(atPath: settings.keyFile) else {
            throw TLSError("cannot read the key file \(settings.keyFile)")
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, settings.certificateFile) == 1 else {
            throw TLSError("cannot load the certificate \(settings.certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, settings.keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError("cannot load the private key \(settings.keyFile)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError("the private key \(settings.keyFile) does not match the certificate \(settings.certificateFile)")
        }
        if let ca = settings.clientCAFile {
            guard SSL_CTX_load_verify_locations(ctx, ca, nil) == 1 else {
                throw TLSError("cannot load the client CA file \(ca)")
            }
            if let names = SSL_load_client_CA_file(ca) { SSL_CTX_set_client_CA_list(ctx, names) }
            var mode = SSL_VERIFY_PEER
            if settings.requireClientCertificate { mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
            SSL_CTX_set_verify(ctx, mode, nil)
        } else if settings.requireClientCertificate {
            throw TLSError("--tls-require-client-cert needs --tls-client-ca")
        }
        weft_ssl_ctx_use_alpn(ctx)
        ok = true
        return ctx
    }
}
