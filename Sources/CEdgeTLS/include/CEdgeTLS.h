// TLS over memory BIOs (OpenSSL 3): the ring moves the ciphertext, these calls seal and open it.
#ifndef CEDGETLS_H
#define CEDGETLS_H
#include <stddef.h>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

// Creates a server context: TLS 1.2+, ALPN h2 (if allow_h2) then http/1.1, session cache and tickets.
// Returns NULL and writes a message into errbuf on failure.
SSL_CTX *edge_tls_ctx_new(const char *cert_path, const char *key_path, int allow_h2, char *errbuf, size_t errcap);
void edge_tls_ctx_free(SSL_CTX *ctx);
// Creates a client context: TLS 1.2+, peers verified against the PEM bundle ca_path (NULL: the
// system's trust store), ALPN offering alpn_wire (protocol names in wire format: length-prefixed;
// NULL: no ALPN). Returns NULL and writes a message into errbuf on failure.
SSL_CTX *edge_tls_client_ctx_new(const char *ca_path, const unsigned char *alpn_wire, unsigned alpn_len,
                                 char *errbuf, size_t errcap);
// Client contexts for a test rig only: the peer's certificate is not checked (a logged choice).
void edge_tls_client_ctx_skip_verify(SSL_CTX *ctx);
// Client connections: why the peer's certificate was refused (OpenSSL's text), or "" when it was not.
void edge_tls_verify_error(SSL *ssl, char *out, size_t cap);
// The negotiated protocol version ("TLSv1.3") and whether the session was resumed.
const char *edge_tls_version(SSL *ssl);
int edge_tls_session_reused(SSL *ssl);
// Client session resumption across a pool of connections: the session to offer next time (a
// reference the caller frees; NULL when none is resumable yet), offered by edge_tls_offer_session
// before the handshake.
void *edge_tls_get_session(SSL *ssl);
void edge_tls_offer_session(SSL *ssl, void *session);
void edge_tls_session_free(void *session);
// A client connection that sends SNI server_name and checks that the certificate names it. The
// handshake starts at the first edge_tls_read. Its ciphertext is lent (edge_tls_lend), not fed;
// its output is drained from a memory BIO as the server's.
SSL *edge_tls_client_new(SSL_CTX *ctx, const char *server_name);
// Client connections: lends received ciphertext, read in place by the edge_tls_read calls that
// follow, until edge_tls_lend_end, which keeps (copies) what they left unread. 0, or -1 when what
// is kept would exceed 1 MiB (the caller stopped reading: the connection is dead).
void edge_tls_lend(SSL *ssl, const void *data, int len);
int edge_tls_lend_end(SSL *ssl);
// Client connections: moves what the reads left of the loan (and what earlier loans kept) to the
// start of buf, which may hold the loan itself. The count, or -1 when it exceeds cap.
int edge_tls_lend_take(SSL *ssl, unsigned char *buf, size_t cap);
SSL *edge_tls_new(SSL_CTX *ctx);
void edge_tls_free(SSL *ssl);
// Gives received ciphertext to the engine. Returns bytes taken or -1.
int edge_tls_feed(SSL *ssl, const void *data, int len);
// Runs the handshake / reads plaintext. Returns >0 bytes, 0 = need more input, -1 = fatal error, -2 = peer closed.
int edge_tls_read(SSL *ssl, void *out, int cap);
// Encrypts plaintext. Returns bytes consumed, or -1 on error.
int edge_tls_write(SSL *ssl, const void *data, int len);
// Copies pending ciphertext out. Returns bytes copied (0 if none).
int edge_tls_drain(SSL *ssl, void *out, int cap);
int edge_tls_pending_out(SSL *ssl);
int edge_tls_handshake_done(SSL *ssl);
// 2 = h2, 1 = http/1.1 or none negotiated.
int edge_tls_alpn(SSL *ssl);
void edge_tls_shutdown(SSL *ssl);
// TLS 1.3: sends a KeyUpdate (new keys for what this side sends from now on), asking the peer to
// update its own when request_peer. 0, or -1 (TLS 1.2, or an error).
int edge_tls_key_update(SSL *ssl, int request_peer);

// ---- TLS 1.3 records opened in place (client connections, after the handshake) ----
typedef struct edge_tls13_opener edge_tls13_opener;
enum {
    EDGE_TLS13_BAD_RECORD = -1,   // damaged, forged, or not allowed here: the connection is dead
    EDGE_TLS13_CLOSED = -2,       // close_notify
    EDGE_TLS13_ALERT = -3,        // any other alert
    EDGE_TLS13_FRAGMENTED = -4,   // a post-handshake message split across records (not supported)
};
// Client contexts: OpenSSL's key log reports each connection's secrets (kept per connection from
// edge_tls13_capture_start until the opener takes them or edge_tls13_capture_end).
void edge_tls13_capture(SSL_CTX *ctx);
int edge_tls13_capture_start(SSL *ssl);
void edge_tls13_capture_end(SSL *ssl);
// After the handshake: the peer's records opened here from now on (TLS 1.3 with an AES-GCM or
// ChaCha20-Poly1305 suite, nothing left buffered in OpenSSL), or NULL (OpenSSL keeps reading).
edge_tls13_opener *edge_tls13_opener_take(SSL *ssl);
void edge_tls13_opener_free(edge_tls13_opener *o);
// Opens the first record of buf[0..len) in place: the bytes it took, its application data at
// buf[*plain_offset ..< +*plain_len] (0 long for a post-handshake message); 0 when no whole record
// is there yet; an EDGE_TLS13_ value otherwise.
int edge_tls13_open(edge_tls13_opener *o, SSL *ssl, unsigned char *buf, size_t len, size_t *plain_offset,
                    size_t *plain_len);

// ---- TLS 1.3 records sealed here (server connections, after the handshake) ----
typedef struct edge_tls13_sealer edge_tls13_sealer;
// Called by edge_tls_read when the handshake ends, with the write BIO's pending count before the
// call: counts the records OpenSSL sealed since (its session tickets).
void edge_tls13_note_handshake_end(SSL *ssl, size_t before);
// After the handshake, with the write BIO drained: what the server sends is sealed here from now
// on (TLS 1.3 with an AES-GCM or ChaCha20-Poly1305 suite), or NULL (OpenSSL keeps sealing).
edge_tls13_sealer *edge_tls13_sealer_take(SSL *ssl);
void edge_tls13_sealer_free(edge_tls13_sealer *t);
// Seals staged_len bytes then len bytes (at most 16384 in all) of application data into one
// record at out (their count + 22 bytes of room): its length, 0 on failure.
size_t edge_tls13_seal(edge_tls13_sealer *t, const void *staged, size_t staged_len, const void *in, size_t len,
                       unsigned char *out);
// The records OpenSSL wrote itself since the take-over (alerts, close_notify, the key update that
// answers a client's), moved from its write BIO to out sealed under this side's keys: the count
// (at most edge_tls_pending_out's), or -1 (the connection cannot go on).
long edge_tls13_transcribe(edge_tls13_sealer *t, SSL *ssl, unsigned char *out, size_t cap);
#endif
