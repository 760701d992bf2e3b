// io_uring, sockets, signals, threads and clocks: thin wrappers over liburing's static-inline
// helpers and the system calls the server makes outside the ring. No policy lives here.
#ifndef CEDGERING_H
#define CEDGERING_H
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/stat.h>

struct io_uring;
struct io_uring_cqe;

// Allocates and initialises a ring; returns NULL and sets *err (negative errno) on failure.
struct io_uring *edge_ring_create(unsigned entries, int *err);
void edge_ring_destroy(struct io_uring *ring);
// Every prep function returns 0, or -EBUSY when the submission queue is full (caller submits and retries).
int edge_prep_multishot_accept(struct io_uring *r, int fd, uint64_t data);
int edge_prep_recv(struct io_uring *r, int fd, void *buf, size_t len, uint64_t data);
int edge_prep_send(struct io_uring *r, int fd, const void *buf, size_t len, uint64_t data);
/* A gathered send (MSG_NOSIGNAL): `message` and its iovecs stay valid until the completion. */
int edge_prep_sendmsg(struct io_uring *r, int fd, const struct msghdr *message, uint64_t data);
int edge_prep_read(struct io_uring *r, int fd, void *buf, unsigned len, uint64_t offset, uint64_t data);
int edge_prep_write(struct io_uring *r, int fd, const void *buf, unsigned len, uint64_t offset, uint64_t data);
int edge_prep_openat(struct io_uring *r, const char *path, int flags, uint64_t data);
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
// A read-only shared mapping of a whole file (NULL when it cannot be made), and whether every
// page of a range of it is in the page cache now (mincore: no I/O, never blocks).
void *edge_map_file(int fd, size_t length);
void edge_unmap_file(void *base, size_t length);
int edge_pages_resident(const void *base, size_t offset, size_t length);
// Creates a non-blocking SO_REUSEPORT listener on host:port (IPv4 or IPv6 literal). Returns fd or -errno.
int edge_listen(const char *host, int port, int backlog);
// 0 when nothing is bound to host:port; -EADDRINUSE (or another -errno) otherwise. Binds without
// SO_REUSEPORT, which fails even against SO_REUSEPORT listeners of another process: so a second
// edge on the same port is refused instead of silently sharing its traffic.
int edge_address_free(const char *host, int port);
int edge_set_nodelay(int fd);
// Formats the peer address of an accepted socket as text ("1.2.3.4" or "::1").
int edge_peer_address(int fd, char *out, size_t cap);
// Resolves a host name (getaddrinfo; blocking: control threads only) into up to `max` 128-byte
// sockaddr_storage entries in `out`, lengths in `lengths`; the count, or -1 with the reason in `err`.
int edge_resolve(const char *host, int port, void *out, int *lengths, int max, char *err, size_t errcap);
// A sockaddr's address as text.
int edge_sockaddr_text(const void *addr, char *out, size_t cap);

// Per-worker counters: written by one thread only, read by the metrics scrape on another. Relaxed
// load + store (not an atomic read-modify-write): no lock prefix, no contention, and the reader
// never sees a torn value.
static inline void edge_counter_add(long *p, long v) {
    __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}
static inline void edge_counter_set(long *p, long v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline long edge_counter_load(const long *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
#endif
