#include <arpa/inet.h>
#include <openssl/x509v3.h>
#include "CEdgeTLS.h"
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

// ---- TLS ----
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    int allow_h2 = arg != NULL;
    // Server preference: h2 first (when enabled), then http/1.1; anything else: no ALPN (HTTP/1.1).
    static const unsigned char h2[] = "h2", h1[] = "http/1.1";
    const unsigned char *prefs[2]; unsigned char lens[2]; int np = 0;
    if (allow_h2) { prefs[np] = h2; lens[np++] = 2; }
    prefs[np] = h1; lens[np++] = 8;
    for (int p = 0; p < np; p++) {
        for (unsigned i = 0; i < inlen;) {
            unsigned l = in[i];
            if (i + 1 + l > inlen) break;
            if (l == lens[p] && memcmp(in + i + 1, prefs[p], l) == 0) { *out = in + i + 1; *outlen = (unsigned char)l; return SSL_TLSEXT_ERR_OK; }
            i += 1 + l;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}
SSL_CTX *edge_tls_ctx_new(const char *cert_path, const char *key_path, int allow_h2, char *errbuf, size_t errcap) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) { snprintf(errbuf, errcap, "SSL_CTX_new failed"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    // Resumption: the server-side session cache (TLS 1.2 ids) and stateless tickets (both versions).
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"edge", 4);
    SSL_CTX_sess_set_cache_size(ctx, 20000);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        char why[256]; ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        snprintf(errbuf, errcap, "cannot load certificate %s: %s", cert_path, access(cert_path, R_OK) == 0 ? why : "no such readable file");
        SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        char why[256]; ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        snprintf(errbuf, errcap, "cannot load private key %s: %s", key_path, access(key_path, R_OK) == 0 ? why : "no such readable file");
        SSL_CTX_free(ctx); return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(errbuf, errcap, "private key %s does not match certificate %s", key_path, cert_path);
        SSL_CTX_free(ctx); return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, allow_h2 ? (void *)1 : NULL);
    edge_tls13_capture(ctx);
    return ctx;
}
void edge_tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }
SSL_CTX *edge_tls_client_ctx_new(const char *ca_path, const unsigned char *alpn_wire, unsigned alpn_len,
                                 char *errbuf, size_t errcap) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) { snprintf(errbuf, errcap, "SSL_CTX_new failed"); return NULL; }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int loaded = ca_path ? SSL_CTX_load_verify_locations(ctx, ca_path, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (loaded != 1) {
        char why[256]; ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        snprintf(errbuf, errcap, "cannot load trusted certificates %s: %s", ca_path ? ca_path : "(system)", why);
        SSL_CTX_free(ctx); return NULL;
    }
    // SSL_CTX_set_alpn_protos returns 0 on success (unlike most of OpenSSL).
    if (alpn_wire && alpn_len > 0 && SSL_CTX_set_alpn_protos(ctx, alpn_wire, alpn_len) != 0) {
        snprintf(errbuf, errcap, "invalid ALPN protocol list");
        SSL_CTX_free(ctx); return NULL;
    }
    edge_tls13_capture(ctx);
    return ctx;
}
void edge_tls_client_ctx_skip_verify(SSL_CTX *ctx) { SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); }
void edge_tls_verify_error(SSL *ssl, char *out, size_t cap) {
    long v = SSL_get_verify_result(ssl);
    if (v == X509_V_OK) { if (cap) out[0] = 0; return; }
    snprintf(out, cap, "%s", X509_verify_cert_error_string(v));
}
const char *edge_tls_version(SSL *ssl) { return SSL_get_version(ssl); }
int edge_tls_session_reused(SSL *ssl) { return SSL_session_reused(ssl); }
void *edge_tls_get_session(SSL *ssl) {
    SSL_SESSION *s = SSL_get0_session(ssl);
    if (!s || !SSL_SESSION_is_resumable(s)) return NULL;
    // A copy: freeing a connection that was never shut down (an origin's pooled connection
    // closed by either side) marks its own session object not resumable.
    return SSL_SESSION_dup(s);
}
void edge_tls_offer_session(SSL *ssl, void *session) { if (session) SSL_set_session(ssl, (SSL_SESSION *)session); }
void edge_tls_session_free(void *session) { if (session) SSL_SESSION_free((SSL_SESSION *)session); }
// An SSL over a pair of memory BIOs: the ring (or a test) moves the ciphertext.
static SSL *tls_over_memory(SSL_CTX *ctx) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!rb || !wb) { BIO_free(rb); BIO_free(wb); SSL_free(ssl); return NULL; }
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    return ssl;
}
SSL *edge_tls_new(SSL_CTX *ctx) {
    SSL *ssl = tls_over_memory(ctx);
    if (!ssl) return NULL;
    if (edge_tls13_capture_start(ssl) != 0) { SSL_free(ssl); return NULL; }
    SSL_set_accept_state(ssl);
    return ssl;
}
// ---- A read BIO over lent bytes (client connections) ----
// A memory BIO copied every received byte once more than needed, after zeroing the room for it
// (BUF_MEM_grow_clean), and moved what was left at each write: a third of the load generator's
// CPU over TLS. This one reads from the caller's receive buffer in place; what the SSL has not
// read when the loan ends is kept (copied) until the next one.
typedef struct {
    const unsigned char *lent;
    size_t lent_len;
    unsigned char *kept;
    size_t kept_len, kept_off, kept_cap;
} lent_source;

enum { LENT_KEPT_MAX = 1 << 20 };

static int lent_read(BIO *b, char *out, int cap) {
    lent_source *s = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (cap <= 0) return 0;
    size_t want = (size_t)cap, n = 0;
    if (s->kept_off < s->kept_len) {
        size_t k = s->kept_len - s->kept_off < want ? s->kept_len - s->kept_off : want;
        memcpy(out, s->kept + s->kept_off, k);
        s->kept_off += k; n += k;
    }
    if (n < want && s->lent_len > 0) {
        size_t k = s->lent_len < want - n ? s->lent_len : want - n;
        memcpy(out + n, s->lent, k);
        s->lent += k; s->lent_len -= k; n += k;
    }
    if (n == 0) { BIO_set_retry_read(b); return -1; }   // nothing yet: as an empty memory BIO
    return (int)n;
}
static int lent_write(BIO *b, const char *in, int len) { (void)b; (void)in; (void)len; return -1; }
static long lent_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num; (void)ptr;
    lent_source *s = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_PENDING: return (long)(s->kept_len - s->kept_off + s->lent_len);
    case BIO_CTRL_FLUSH: return 1;
    default: return 0;
    }
}
static int lent_create(BIO *b) {
    lent_source *s = calloc(1, sizeof *s);
    if (!s) return 0;
    BIO_set_data(b, s);
    BIO_set_init(b, 1);
    return 1;
}
static int lent_destroy(BIO *b) {
    lent_source *s = BIO_get_data(b);
    if (s) { free(s->kept); free(s); }
    BIO_set_data(b, NULL);
    return 1;
}
static BIO_METHOD *lent_method_value;
static void lent_method_make(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "edge lent bytes");
    if (!m) return;
    BIO_meth_set_read(m, lent_read);
    BIO_meth_set_write(m, lent_write);
    BIO_meth_set_ctrl(m, lent_ctrl);
    BIO_meth_set_create(m, lent_create);
    BIO_meth_set_destroy(m, lent_destroy);
    lent_method_value = m;
}
static BIO_METHOD *lent_method(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, lent_method_make);
    return lent_method_value;
}
void edge_tls_lend(SSL *ssl, const void *data, int len) {
    lent_source *s = BIO_get_data(SSL_get_rbio(ssl));
    s->lent = data;
    s->lent_len = len > 0 ? (size_t)len : 0;
}
int edge_tls_lend_end(SSL *ssl) {
    lent_source *s = BIO_get_data(SSL_get_rbio(ssl));
    size_t live = s->kept_len - s->kept_off;
    if (s->lent_len == 0) {
        if (live == 0) s->kept_len = s->kept_off = 0;
        return 0;
    }
    size_t need = live + s->lent_len;
    if (need > LENT_KEPT_MAX) { s->lent = NULL; s->lent_len = 0; return -1; }
    if (need > s->kept_cap) {
        unsigned char *k = malloc(need);
        if (!k) { s->lent = NULL; s->lent_len = 0; return -1; }
        if (live) memcpy(k, s->kept + s->kept_off, live);
        free(s->kept);
        s->kept = k; s->kept_cap = need;
    } else if (s->kept_off) {
        memmove(s->kept, s->kept + s->kept_off, live);
    }
    memcpy(s->kept + live, s->lent, s->lent_len);
    s->kept_off = 0; s->kept_len = need;
    s->lent = NULL; s->lent_len = 0;
    return 0;
}

int edge_tls_lend_take(SSL *ssl, unsigned char *buf, size_t cap) {
    lent_source *s = BIO_get_data(SSL_get_rbio(ssl));
    size_t live = s->kept_len - s->kept_off;
    if (live + s->lent_len > cap) return -1;
    // The lent bytes may lie in `buf` itself: moved first, then what was kept goes before them.
    if (s->lent_len) memmove(buf + live, s->lent, s->lent_len);
    if (live) memcpy(buf, s->kept + s->kept_off, live);
    size_t n = live + s->lent_len;
    s->kept_len = s->kept_off = 0;
    s->lent = NULL; s->lent_len = 0;
    return (int)n;
}

SSL *edge_tls_client_new(SSL_CTX *ctx, const char *server_name) {
    BIO_METHOD *m = lent_method();
    if (!m) return NULL;
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    BIO *rb = BIO_new(m), *wb = BIO_new(BIO_s_mem());
    if (!rb || !wb) { BIO_free(rb); BIO_free(wb); SSL_free(ssl); return NULL; }
    SSL_set_bio(ssl, rb, wb);
    if (edge_tls13_capture_start(ssl) != 0) { SSL_free(ssl); return NULL; }
    // No read-ahead: from memory, two reads per record (header, body) cost less than the
    // read-ahead's move of each partial next record to the front of the record buffer.
    // An IP literal is checked against the certificate's IP addresses and sent without SNI
    // (RFC 6066 allows host names only); a name, against its DNS names, and sent as SNI.
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, server_name, ip) == 1 || inet_pton(AF_INET6, server_name, ip) == 1;
    if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name) != 1
              : (SSL_set_tlsext_host_name(ssl, server_name) != 1 || SSL_set1_host(ssl, server_name) != 1)) {
        SSL_free(ssl); return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}
void edge_tls_free(SSL *ssl) { edge_tls13_capture_end(ssl); SSL_free(ssl); }
int edge_tls_feed(SSL *ssl, const void *data, int len) { return BIO_write(SSL_get_rbio(ssl), data, len); }
// SSL_get_error reads the thread's error queue, so it must hold nothing stale. Peeking first:
// clearing an empty queue cost 2 % of a TLS client's CPU (one read per 16 KiB record).
static inline void clear_stale_errors(void) { if (ERR_peek_error() != 0) ERR_clear_error(); }
int edge_tls_read(SSL *ssl, void *out, int cap) {
    clear_stale_errors();
    if (!SSL_is_init_finished(ssl)) {
        size_t before = BIO_ctrl_pending(SSL_get_wbio(ssl));
        int rc = SSL_do_handshake(ssl);
        if (rc != 1) {
            int e = SSL_get_error(ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            return -1;
        }
        edge_tls13_note_handshake_end(ssl, before);
    }
    // Only the handshake was asked for: reading on would pull the start of the next record into
    // OpenSSL's buffer, where a client taking the records over (edge_tls13_opener_take) cannot.
    if (cap == 0) return 0;
    int n = SSL_read(ssl, out, cap);
    int e = n > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, n);
    // A client that asked for a key update is answered now (RFC 8446 §4.6.3), not at OpenSSL's
    // next SSL_write: a server that seals its own records (edge_tls13_sealer_take) makes none.
    // An empty write sends only that (OpenSSL writes a pending key update before any data).
    if (SSL_is_server(ssl) && SSL_get_key_update_type(ssl) != SSL_KEY_UPDATE_NONE) {
        size_t written = 0;
        if (SSL_write_ex(ssl, "", 0, &written) != 1) return -1;
    }
    if (n > 0) return n;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -2;
    return -1;
}
int edge_tls_write(SSL *ssl, const void *data, int len) {
    clear_stale_errors();
    int n = SSL_write(ssl, data, len);
    return n > 0 ? n : -1;
}
int edge_tls_drain(SSL *ssl, void *out, int cap) {
    int n = BIO_read(SSL_get_wbio(ssl), out, cap);
    return n > 0 ? n : 0;
}
int edge_tls_pending_out(SSL *ssl) { return (int)BIO_ctrl_pending(SSL_get_wbio(ssl)); }
int edge_tls_handshake_done(SSL *ssl) { return SSL_is_init_finished(ssl); }
int edge_tls_alpn(SSL *ssl) {
    const unsigned char *p; unsigned int l;
    SSL_get0_alpn_selected(ssl, &p, &l);
    return (l == 2 && memcmp(p, "h2", 2) == 0) ? 2 : 1;
}
void edge_tls_shutdown(SSL *ssl) { SSL_shutdown(ssl); }
int edge_tls_key_update(SSL *ssl, int request_peer) {
    clear_stale_errors();
    if (SSL_key_update(ssl, request_peer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) != 1) return -1;
    return SSL_do_handshake(ssl) == 1 ? 0 : -1;
}
