#ifndef WEFT_COPENSSL_SHIM_H
#define WEFT_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <string.h>
#include <time.h>

// OpenSSL's function-like macros are not imported into Swift: thin wrappers.

static inline long weft_ssl_ctx_set_min_tls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

// No renegotiation (a DoS lever, gone in TLS 1.3), no TLS compression (CRIME).
static inline void weft_ssl_ctx_harden(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
}

static inline long weft_ssl_ctx_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

static inline long weft_bio_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}

static inline long weft_ssl_ctx_set_session_cache_server(SSL_CTX *ctx) {
    return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
}

// ALPN: the server's preference, h2 first, then http/1.1. A client that
// offers neither gets no ALPN (the server sniffs the protocol instead).
static const unsigned char weft_alpn_protocols[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

static inline int weft_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                   const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    unsigned char *selected = NULL;
    unsigned char selectedLength = 0;
    if (SSL_select_next_proto(&selected, &selectedLength, weft_alpn_protocols, sizeof(weft_alpn_protocols), in, inlen)
        != OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    *outlen = selectedLength;
    return SSL_TLSEXT_ERR_OK;
}

static inline void weft_ssl_ctx_use_alpn(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, weft_alpn_select, NULL);
}

/// The verified peer certificate's subject common name into `buffer`;
/// returns its length, or -1 when there is no verified certificate.
static inline int weft_ssl_peer_common_name(SSL *ssl, char *buffer, int size) {
    if (SSL_get_verify_result(ssl) != X509_V_OK) return -1;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL) return -1;
    int length = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buffer, size);
    X509_free(cert);
    // A name that fills the buffer may have been cut: no identity rather than a wrong one.
    return length >= size - 1 ? -1 : length;
}

/// Seconds since the epoch at which the context's certificate expires
/// (0 if unknown).
static inline long long weft_ssl_ctx_cert_not_after(SSL_CTX *ctx) {
    X509 *cert = SSL_CTX_get0_certificate(ctx);
    if (cert == NULL) return 0;
    const ASN1_TIME *notAfter = X509_get0_notAfter(cert);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(notAfter, &tm) != 1) return 0;
    return (long long)timegm(&tm);
}

// Client side (SMTP STARTTLS): SNI, which OpenSSL only offers as a macro.
static inline long weft_ssl_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, (char *)name);
}
#endif
