#define _GNU_SOURCE
#include "CEdgeRing.h"
#include <liburing.h>
#include <arpa/inet.h>
#include <netdb.h>
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

// Resolves a host name for the origin client (getaddrinfo: blocking, so a control thread's work,
// never a worker's). Up to `max` addresses of both families, duplicates dropped, in the
// resolver's order (RFC 6724), each a 128-byte sockaddr_storage in `out` with its length in
// `lengths`. Returns the count, or -1 with the resolver's reason in `err`.
int edge_resolve(const char *host, int port, void *out, int *lengths, int max, char *err, size_t errcap) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char service[8];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int n = 0;
    for (struct addrinfo *a = res; a && n < max; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > 128) continue;
        int seen = 0;
        for (int k = 0; k < n && !seen; k++)
            seen = lengths[k] == (int)a->ai_addrlen && memcmp((char *)out + 128 * k, a->ai_addr, a->ai_addrlen) == 0;
        if (seen) continue;
        memset((char *)out + 128 * n, 0, 128);
        memcpy((char *)out + 128 * n, a->ai_addr, a->ai_addrlen);
        lengths[n++] = (int)a->ai_addrlen;
    }
    freeaddrinfo(res);
    if (n == 0) { snprintf(err, errcap, "no IPv4 or IPv6 address"); return -1; }
    return n;
}

// The text of a sockaddr (for logs): "192.0.2.1" or "2001:db8::1".
int edge_sockaddr_text(const void *addr, char *out, size_t cap) {
    const struct sockaddr *sa = addr;
    const void *src = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)addr)->sin_addr
                                               : (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr;
    return inet_ntop(sa->sa_family, src, out, (socklen_t)cap) ? 0 : -1;
}
