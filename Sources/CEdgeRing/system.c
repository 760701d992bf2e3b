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
#include <sys/mman.h>

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
int edge_thread_start(void *(*fn)(void *), void *arg, uint64_t *handle) {
    pthread_t t; int rc = pthread_create(&t, NULL, fn, arg); if (rc == 0) *handle = (uint64_t)t; return rc;
}
int edge_thread_join(uint64_t handle) { return pthread_join((pthread_t)handle, NULL); }
int edge_open_append(const char *path) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644); return fd < 0 ? -errno : fd;
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

void *edge_map_file(int fd, size_t length) {
    void *p = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}
void edge_unmap_file(void *base, size_t length) { munmap(base, length); }
int edge_pages_resident(const void *base, size_t offset, size_t length) {
    if (length == 0) return 1;
    static size_t page = 0;
    if (page == 0) { long p = sysconf(_SC_PAGESIZE); page = p > 0 ? (size_t)p : 4096; }
    uintptr_t first = ((uintptr_t)base + offset) & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)base + offset + length;
    unsigned char vec[256];
    while (first < end) {
        size_t pages = (end - first + page - 1) / page;
        if (pages > sizeof vec) pages = sizeof vec;
        if (mincore((void *)first, pages * page, vec) != 0) return 0;
        for (size_t i = 0; i < pages; i++) if (!(vec[i] & 1)) return 0;
        first += pages * page;
    }
    return 1;
}
