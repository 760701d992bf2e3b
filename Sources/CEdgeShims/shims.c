#define _GNU_SOURCE
#include "CEdgeShims.h"
#include <liburing.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <pthread.h>
#include <time.h>

struct io_uring *edge_ring_create(unsigned entries, int *err) {
    struct io_uring *r = calloc(1, sizeof(*r));
    if (!r) { *err = -ENOMEM; return NULL; }
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    // One thread owns the ring, and it only wants task work run when it waits: the cheapest mode.
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, r, &p);
    if (rc == -EINVAL) { // older kernel: plain ring
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE; p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, r, &p);
    }
    if (rc < 0) { free(r); *err = rc; return NULL; }
    *err = 0;
    return r;
}
void edge_ring_destroy(struct io_uring *r) { if (r) { io_uring_queue_exit(r); free(r); } }

static inline struct io_uring_sqe *sqe_or_null(struct io_uring *r) { return io_uring_get_sqe(r); }
#define GET_SQE struct io_uring_sqe *s = sqe_or_null(r); if (!s) return -EBUSY

int edge_prep_multishot_accept(struct io_uring *r, int fd, uint64_t data) {
    GET_SQE; io_uring_prep_multishot_accept(s, fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_recv(struct io_uring *r, int fd, void *buf, size_t len, uint64_t data) {
    GET_SQE; io_uring_prep_recv(s, fd, buf, len, 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_send(struct io_uring *r, int fd, const void *buf, size_t len, uint64_t data) {
    GET_SQE; io_uring_prep_send(s, fd, buf, len, MSG_NOSIGNAL); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_read(struct io_uring *r, int fd, void *buf, unsigned len, uint64_t offset, uint64_t data) {
    GET_SQE; io_uring_prep_read(s, fd, buf, len, offset); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_write(struct io_uring *r, int fd, const void *buf, unsigned len, uint64_t offset, uint64_t data) {
    GET_SQE; io_uring_prep_write(s, fd, buf, len, offset); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_openat(struct io_uring *r, const char *path, int flags, uint64_t data) {
    GET_SQE; io_uring_prep_openat(s, AT_FDCWD, path, flags | O_CLOEXEC, 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_statx(struct io_uring *r, const char *path, struct statx *out, uint64_t data) {
    GET_SQE; io_uring_prep_statx(s, AT_FDCWD, path, AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, out);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_close(struct io_uring *r, int fd, uint64_t data) {
    GET_SQE; io_uring_prep_close(s, fd); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_shutdown_close(struct io_uring *r, int fd, uint64_t data) {
    // Two hard-linked operations: shutdown wakes any recv still parked on the socket, then close.
    // A hard link: the close runs even when shutdown fails (ENOTCONN after a peer reset).
    if (io_uring_sq_space_left(r) < 2) return -EBUSY;
    struct io_uring_sqe *a = io_uring_get_sqe(r);
    io_uring_prep_shutdown(a, fd, SHUT_RDWR); io_uring_sqe_set_data64(a, 0); a->flags |= IOSQE_IO_HARDLINK | IOSQE_CQE_SKIP_SUCCESS;
    struct io_uring_sqe *b = io_uring_get_sqe(r);
    io_uring_prep_close(b, fd); io_uring_sqe_set_data64(b, data);
    return 0;
}
int edge_prep_timeout(struct io_uring *r, void *ts_storage, uint64_t milliseconds, uint64_t data) {
    GET_SQE;
    struct __kernel_timespec *ts = ts_storage;
    ts->tv_sec = milliseconds / 1000; ts->tv_nsec = (milliseconds % 1000) * 1000000;
    io_uring_prep_timeout(s, ts, 0, 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_cancel_fd(struct io_uring *r, int fd, uint64_t data) {
    GET_SQE; io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_socket(struct io_uring *r, int ipv6, uint64_t data) {
    GET_SQE; io_uring_prep_socket(s, ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0, 0);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_make_sockaddr(const char *host, int port, void *addr) {
    struct sockaddr_storage *ss = addr; memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss; struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) { a4->sin_family = AF_INET; a4->sin_port = htons(port); return sizeof(*a4); }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) { a6->sin6_family = AF_INET6; a6->sin6_port = htons(port); return sizeof(*a6); }
    return -EINVAL;
}
int edge_prep_connect(struct io_uring *r, int fd, const void *addr, int addrlen, uint64_t data) {
    GET_SQE; io_uring_prep_connect(s, fd, (const struct sockaddr *)addr, addrlen); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_msg_ring(struct io_uring *r, int target_ring_fd, uint64_t data, int32_t res, uint64_t own_data) {
    GET_SQE; io_uring_prep_msg_ring(s, target_ring_fd, (unsigned)res, data, 0);
    io_uring_sqe_set_data64(s, own_data); return 0;
}
int edge_ring_fd(struct io_uring *r) { return r->ring_fd; }
int edge_prep_open_create(struct io_uring *r, const char *path, uint64_t data) {
    GET_SQE; io_uring_prep_openat(s, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_fsync(struct io_uring *r, int fd, uint64_t data) {
    GET_SQE; io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_rename(struct io_uring *r, const char *from, const char *to, uint64_t data) {
    GET_SQE; io_uring_prep_renameat(s, AT_FDCWD, from, AT_FDCWD, to, 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_unlink(struct io_uring *r, const char *path, uint64_t data) {
    GET_SQE; io_uring_prep_unlinkat(s, AT_FDCWD, path, 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_ring_submit(struct io_uring *r) { return io_uring_submit(r); }
int edge_ring_submit_wait_drain(struct io_uring *r, uint64_t *datas, int32_t *results, uint32_t *flags, int max) {
    int rc = io_uring_submit_and_wait(r, 1);
    if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY) return rc;
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(r, head, cqe) {
        if ((int)n == max) break;
        datas[n] = cqe->user_data; results[n] = cqe->res; flags[n] = cqe->flags; n++;
    }
    io_uring_cq_advance(r, n);
    return (int)n;
}
int edge_cqe_more(uint32_t flags) { return (flags & IORING_CQE_F_MORE) != 0; }
size_t edge_statx_size(void) { return sizeof(struct statx); }

static int edge_bind_socket(const char *host, int port, int reuseport) {
    struct sockaddr_storage ss; memset(&ss, 0, sizeof(ss));
    socklen_t len; int family;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss; struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        family = AF_INET; a4->sin_family = AF_INET; a4->sin_port = htons(port); len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        family = AF_INET6; a6->sin6_family = AF_INET6; a6->sin6_port = htons(port); len = sizeof(*a6);
    } else return -EINVAL;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) { int e = -errno; close(fd); return e; }
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) { int e = -errno; close(fd); return e; }
    return fd;
}
int edge_listen(const char *host, int port, int backlog) {
    int fd = edge_bind_socket(host, port, 1);
    if (fd < 0) return fd;
    if (listen(fd, backlog) < 0) { int e = -errno; close(fd); return e; }
    return fd;
}
int edge_address_free(const char *host, int port) {
    int fd = edge_bind_socket(host, port, 0);
    if (fd < 0) return fd;
    close(fd);
    return 0;
}
int edge_set_nodelay(int fd) { int one = 1; return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); }
int edge_peer_address(int fd, char *out, size_t cap) {
    struct sockaddr_storage ss; socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) { snprintf(out, cap, "-"); return -errno; }
    if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, cap);
    else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, cap);
    return 0;
}

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
    return ctx;
}
void edge_tls_ctx_free(SSL_CTX *ctx) { SSL_CTX_free(ctx); }
SSL *edge_tls_new(SSL_CTX *ctx) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return NULL;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!rb || !wb) { BIO_free(rb); BIO_free(wb); SSL_free(ssl); return NULL; }
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_accept_state(ssl);
    return ssl;
}
void edge_tls_free(SSL *ssl) { SSL_free(ssl); }
int edge_tls_feed(SSL *ssl, const void *data, int len) { return BIO_write(SSL_get_rbio(ssl), data, len); }
int edge_tls_read(SSL *ssl, void *out, int cap) {
    ERR_clear_error();
    if (!SSL_is_init_finished(ssl)) {
        int rc = SSL_do_handshake(ssl);
        if (rc != 1) {
            int e = SSL_get_error(ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            return -1;
        }
    }
    int n = SSL_read(ssl, out, cap);
    if (n > 0) return n;
    int e = SSL_get_error(ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -2;
    return -1;
}
int edge_tls_write(SSL *ssl, const void *data, int len) {
    ERR_clear_error();
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
int edge_tls_session_reused(SSL *ssl) { return SSL_session_reused(ssl); }
const char *edge_tls_version(SSL *ssl) { return SSL_get_version(ssl); }
void edge_tls_shutdown(SSL *ssl) { SSL_shutdown(ssl); }

int edge_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t len, uint8_t out[32]) {
    unsigned int outlen = 32;
    return HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) ? 0 : -1;
}
int edge_constant_time_equal(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len) == 0; }
int edge_random_bytes(uint8_t *out, int len) { return RAND_bytes(out, len) == 1 ? 0 : -1; }
int edge_sha256(const void *data, size_t len, uint8_t out[32]) {
    unsigned int n = 32;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

int edge_prep_statx_fd(struct io_uring *r, int fd, struct statx *out, uint64_t data) {
    GET_SQE; io_uring_prep_statx(s, fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, out);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_eventfd_read(struct io_uring *r, int fd, uint64_t *value, uint64_t data) {
    GET_SQE; io_uring_prep_read(s, fd, value, sizeof(*value), 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_eventfd_create(void) { int fd = eventfd(0, EFD_CLOEXEC); return fd < 0 ? -errno : fd; }
int edge_eventfd_signal(int fd) { uint64_t one = 1; return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno; }
static sigset_t edge_signals(void) {
    sigset_t set; sigemptyset(&set);
    sigaddset(&set, SIGINT); sigaddset(&set, SIGTERM); sigaddset(&set, SIGPIPE); sigaddset(&set, SIGHUP);
    return set;
}
void edge_block_signals(void) { sigset_t set = edge_signals(); pthread_sigmask(SIG_BLOCK, &set, NULL); }
int edge_wait_signal(void) {
    sigset_t set = edge_signals();
    for (;;) { int sig = 0; if (sigwait(&set, &sig) == 0 && sig != SIGPIPE) return sig; }
}
int edge_online_cpus(void) { long n = sysconf(_SC_NPROCESSORS_ONLN); return n > 0 ? (int)n : 1; }
int64_t edge_monotonic_microseconds(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
int64_t edge_wall_milliseconds(void) {
    struct timespec ts; clock_gettime(CLOCK_REALTIME, &ts); return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
int edge_statx_is_regular(const struct statx *s) { return S_ISREG(s->stx_mode); }
uint64_t edge_statx_size_of(const struct statx *s) { return s->stx_size; }
int64_t edge_statx_mtime_seconds(const struct statx *s) { return s->stx_mtime.tv_sec; }
uint32_t edge_statx_mtime_nanoseconds(const struct statx *s) { return s->stx_mtime.tv_nsec; }
uint64_t edge_statx_inode(const struct statx *s) { return s->stx_ino; }
int edge_thread_start(void *(*fn)(void *), void *arg, uint64_t *handle) {
    pthread_t t; int rc = pthread_create(&t, NULL, fn, arg); if (rc == 0) *handle = (uint64_t)t; return rc;
}
int edge_thread_join(uint64_t handle) { return pthread_join((pthread_t)handle, NULL); }
int edge_open_append(const char *path) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644); return fd < 0 ? -errno : fd;
}

int edge_aes128_ctr(const uint8_t key[16], const uint8_t iv[16], uint64_t offset, const uint8_t *in, uint8_t *out, size_t len) {
    // Counter block for this offset: iv + offset/16 (128-bit big-endian addition).
    uint8_t ctr[16]; memcpy(ctr, iv, 16);
    uint64_t add = offset / 16; int carry = 0;
    for (int i = 15; i >= 0; i--) {
        unsigned v = ctr[i] + (unsigned)(add & 0xff) + carry;
        ctr[i] = (uint8_t)v; carry = v >> 8; add >>= 8;
    }
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c) return -1;
    int ok = EVP_EncryptInit_ex(c, EVP_aes_128_ctr(), NULL, key, ctr) == 1;
    int n = 0;
    unsigned skip = (unsigned)(offset % 16);
    if (ok && skip) { uint8_t z[16] = {0}, d[16]; ok = EVP_EncryptUpdate(c, d, &n, z, (int)skip) == 1; }
    size_t done = 0;
    while (ok && done < len) {
        int chunk = (int)((len - done) > (1u << 30) ? (1u << 30) : (len - done));
        ok = EVP_EncryptUpdate(c, out + done, &n, in + done, chunk) == 1;
        done += (size_t)n;
    }
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}
int edge_aes256_gcm_seal(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[16]) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(); int n = 0, ok;
    ok = c && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
        && EVP_EncryptUpdate(c, out, &n, in, (int)len) == 1
        && EVP_EncryptFinal_ex(c, out + n, &n) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}
int edge_aes256_gcm_open(const uint8_t key[32], const uint8_t nonce[12], const uint8_t *in, size_t len, const uint8_t tag[16], uint8_t *out) {
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new(); int n = 0, ok;
    ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1
        && EVP_DecryptUpdate(c, out, &n, in, (int)len) == 1
        && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)tag) == 1
        && EVP_DecryptFinal_ex(c, out + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int edge_reopen_append(int fd, const char *path) {
    int n = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (n < 0) return -errno;
    // dup2 swaps the file behind the number atomically: writers keep their descriptor, writes
    // already submitted finish on the old file, the next ones go to the new one.
    int rc = dup3(n, fd, O_CLOEXEC) < 0 ? -errno : 0;
    close(n);
    return rc;
}
