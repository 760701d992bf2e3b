#define _GNU_SOURCE
#include "CEdgeRing.h"
#include <liburing.h>
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
int edge_prep_sendmsg(struct io_uring *r, int fd, const struct msghdr *message, uint64_t data) {
    GET_SQE; io_uring_prep_sendmsg(s, fd, message, MSG_NOSIGNAL); io_uring_sqe_set_data64(s, data); return 0;
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

int edge_prep_statx_fd(struct io_uring *r, int fd, struct statx *out, uint64_t data) {
    GET_SQE; io_uring_prep_statx(s, fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BASIC_STATS, out);
    io_uring_sqe_set_data64(s, data); return 0;
}
int edge_prep_eventfd_read(struct io_uring *r, int fd, uint64_t *value, uint64_t data) {
    GET_SQE; io_uring_prep_read(s, fd, value, sizeof(*value), 0); io_uring_sqe_set_data64(s, data); return 0;
}
int edge_eventfd_create(void) { int fd = eventfd(0, EFD_CLOEXEC); return fd < 0 ? -errno : fd; }
int edge_eventfd_signal(int fd) { uint64_t one = 1; return write(fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno; }
