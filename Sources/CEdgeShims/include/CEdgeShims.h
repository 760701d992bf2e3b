// Thin C wrappers over liburing's static-inline helpers and OpenSSL's macros, so that Swift calls
// plain functions with fixed signatures. No policy lives here: every decision is in Swift.
#ifndef CEDGESHIMS_H
#define CEDGESHIMS_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/stat.h>

struct io_uring;
struct io_uring_cqe;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

// ---- io_uring ----
// Allocates and initialises a ring; returns NULL and sets *err (negative errno) on failure.
struct io_uring *edge_ring_create(unsigned entries, int *err);
void edge_ring_destroy(struct io_uring *ring);
// Every prep function returns 0, or -EBUSY when the submission queue is full (caller submits and retries).
int edge_prep_multishot_accept(struct io_uring *r, int fd, uint64_t data);
int edge_prep_recv(struct io_uring *r, int fd, void *buf, size_t len, uint64_t data);
int edge_prep_send(struct io_uring *r, int fd, const void *buf, size_t len, uint64_t data);
int edge_prep_read(struct io_uring *r, int fd, void *buf, unsigned len, uint64_t offset, uint64_t data);
int edge_prep_write(struct io_uring *r, int fd, const void *buf, unsigned len, uint64_t offset, uint64_t data);
int edge_prep_openat(struct io_uring *r, const char *path, int flags, uint64_t data);
int edge_prep_statx(struct io_uring *r, const char *path, struct statx *out, uint64_t data);
// statx of an open descriptor (AT_EMPTY_PATH).
int edge_prep_statx_fd(struct io_uring *r, int fd, struct statx *out, uint64_t data);
int edge_prep_eventfd_read(struct io_uring *r, int fd, uint64_t *value, uint64_t data);
int edge_eventfd_create(void);
int edge_eventfd_signal(int fd);
// Blocks SIGINT, SIGTERM, SIGPIPE, SIGHUP in the calling thread (and threads it creates); waits for one of them.
void edge_block_signals(void);
int edge_wait_signal(void);
int edge_online_cpus(void);
// Monotonic and wall clocks (vDSO: no system call).
int64_t edge_monotonic_microseconds(void);
int64_t edge_wall_milliseconds(void);
// Fields of a statx result.
int edge_statx_is_regular(const struct statx *s);
uint64_t edge_statx_size_of(const struct statx *s);
int64_t edge_statx_mtime_seconds(const struct statx *s);
uint32_t edge_statx_mtime_nanoseconds(const struct statx *s);
uint64_t edge_statx_inode(const struct statx *s);
// Starts a thread running fn(arg); returns 0 or an errno.
int edge_thread_start(void *(*fn)(void *), void *arg, uint64_t *handle);
int edge_thread_join(uint64_t handle);
int edge_open_append(const char *path);
// Reopens `path` onto the same descriptor number `fd` (log rotation): 0 or -errno.
int edge_reopen_append(int fd, const char *path);
int edge_prep_close(struct io_uring *r, int fd, uint64_t data);
int edge_prep_shutdown_close(struct io_uring *r, int fd, uint64_t data);
int edge_prep_timeout(struct io_uring *r, void *ts_storage, uint64_t milliseconds, uint64_t data);
int edge_prep_cancel_fd(struct io_uring *r, int fd, uint64_t data);
int edge_prep_socket(struct io_uring *r, int ipv6, uint64_t data);
// Resolves host (IPv4/IPv6 literal) and port into `addr` (a struct sockaddr_storage, 128 bytes);
// returns the address length, or -EINVAL.
int edge_make_sockaddr(const char *host, int port, void *addr);
int edge_prep_connect(struct io_uring *r, int fd, const void *addr, int addrlen, uint64_t data);
// Posts a completion with `data` and `res` to another ring (cross-worker wake-up).
int edge_prep_msg_ring(struct io_uring *r, int target_ring_fd, uint64_t data, int32_t res, uint64_t own_data);
int edge_ring_fd(struct io_uring *r);
int edge_prep_open_create(struct io_uring *r, const char *path, uint64_t data);
int edge_prep_fsync(struct io_uring *r, int fd, uint64_t data);
int edge_prep_rename(struct io_uring *r, const char *from, const char *to, uint64_t data);
int edge_prep_unlink(struct io_uring *r, const char *path, uint64_t data);
int edge_ring_submit(struct io_uring *r);
// Submits, waits for at least one completion (or the timeout), then copies up to `max` completions
// (user_data, res, flags) into the arrays and marks them seen. Returns the count or -errno.
int edge_ring_submit_wait_drain(struct io_uring *r, uint64_t *datas, int32_t *results, uint32_t *flags, int max);
int edge_cqe_more(uint32_t flags);
size_t edge_statx_size(void);

// ---- sockets ----
// Creates a non-blocking SO_REUSEPORT listener on host:port (IPv4 or IPv6 literal). Returns fd or -errno.
int edge_listen(const char *host, int port, int backlog);
// 0 when nothing is bound to host:port; -EADDRINUSE (or another -errno) otherwise. Binds without
// SO_REUSEPORT, which fails even against SO_REUSEPORT listeners of another process: so a second
// edge on the same port is refused instead of silently sharing its traffic.
int edge_address_free(const char *host, int port);
int edge_set_nodelay(int fd);
// Formats the peer address of an accepted socket as text ("1.2.3.4" or "::1").
int edge_peer_address(int fd, char *out, size_t cap);

// ---- TLS (OpenSSL 3, memory BIOs) ----
// Creates a server context: TLS 1.2+, ALPN h2 (if allow_h2) then http/1.1, session cache and tickets.
// Returns NULL and writes a message into errbuf on failure.
SSL_CTX *edge_tls_ctx_new(const char *cert_path, const char *key_path, int allow_h2, char *errbuf, size_t errcap);
void edge_tls_ctx_free(SSL_CTX *ctx);
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
int edge_tls_session_reused(SSL *ssl);
const char *edge_tls_version(SSL *ssl);
void edge_tls_shutdown(SSL *ssl);

// ---- crypto ----
// HMAC-SHA256; returns 0 on success.
int edge_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32]);
int edge_constant_time_equal(const void *a, const void *b, size_t len);
int edge_random_bytes(uint8_t *out, int len);
int edge_sha256(const void *data, size_t len, uint8_t out[32]);
// AES-128-CTR over `len` bytes that start `offset` bytes into the stream whose counter block 0 is
// `iv` (the counter for byte o is iv + o/16, big-endian 128-bit). Encrypt and decrypt are the same.
int edge_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], uint64_t offset, const uint8_t *in, uint8_t *out, size_t len);
// AES-256-GCM with a 12-byte nonce and a 16-byte tag. Open returns -1 when the tag does not verify.
int edge_aes256_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]);
int edge_aes256_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out);
#endif
