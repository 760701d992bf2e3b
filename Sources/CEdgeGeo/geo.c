#define _GNU_SOURCE
#include "CEdgeGeo.h"
#include <maxminddb.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct edge_geo {
    MMDB_s mmdb;
    uint32_t country_records;
};

// Data records decoded in full by the check at open; beyond this many distinct ones (a City
// database) only their bounds are checked, so opening stays a matter of milliseconds.
#define DECODED_RECORDS_MAX (1u << 18)

// An open-addressing set of data-record offsets, so each distinct record is decoded once.
typedef struct { uint32_t *slots; uint32_t mask; uint32_t count; } offset_set;

static int offset_set_add(offset_set *s, uint32_t offset) {   // 1 when new, 0 when present, -1 when full
    uint32_t key = offset + 1;   // 0 marks an empty slot
    uint32_t i = (key * 2654435761u) & s->mask;
    while (s->slots[i] != 0) {
        if (s->slots[i] == key) return 0;
        i = (i + 1) & s->mask;
    }
    if (s->count >= DECODED_RECORDS_MAX) return -1;
    s->slots[i] = key;
    s->count++;
    return 1;
}

static int country_of(MMDB_entry_s *entry, char out[2]) {   // 1 found, 0 absent, -2 damaged
    static const char *const fields[] = {"country", "registered_country"};
    for (int f = 0; f < 2; f++) {
        MMDB_entry_data_s data;
        int status = MMDB_get_value(entry, &data, fields[f], "iso_code", NULL);
        if (status == MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR) continue;
        if (status != MMDB_SUCCESS) return -2;
        if (!data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2) continue;
        char a = data.utf8_string[0] & ~0x20, b = data.utf8_string[1] & ~0x20;
        if (a < 'A' || a > 'Z' || b < 'A' || b > 'Z') continue;
        out[0] = a; out[1] = b;
        return 1;
    }
    return 0;
}

static int check_record(edge_geo *g, offset_set *seen, uint8_t type, MMDB_entry_s entry, uint32_t node,
                        char *err, size_t errcap) {
    if (type == MMDB_RECORD_TYPE_INVALID) {
        snprintf(err, errcap, "search tree node %u points outside the data section (damaged or truncated file)", node);
        return -1;
    }
    if (type != MMDB_RECORD_TYPE_DATA) return 0;
    if (offset_set_add(seen, entry.offset) != 1) return 0;
    MMDB_entry_data_list_s *list = NULL;
    int status = MMDB_get_entry_data_list(&entry, &list);
    MMDB_free_entry_data_list(list);
    if (status != MMDB_SUCCESS) {
        snprintf(err, errcap, "data record at offset %u (from node %u) does not decode: %s", entry.offset, node,
                 MMDB_strerror(status));
        return -1;
    }
    char code[2];
    int c = country_of(&entry, code);
    if (c < 0) {
        snprintf(err, errcap, "data record at offset %u has a damaged country field", entry.offset);
        return -1;
    }
    g->country_records += (uint32_t)c;
    return 0;
}

// A private, sealed copy of the file in memory: libmaxminddb maps the file it opens, and a mapping
// of the operator's file would change under the workers when it is overwritten in place (`cp` over
// it), or fault with SIGBUS past a new, shorter end. Returns the memfd, or -1 with `err` set.
static int private_copy(const char *path, int64_t bytes_max, char *err, size_t errcap) {
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) { snprintf(err, errcap, "cannot open %s: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errcap, "%s is not a regular file", path);
        close(in);
        return -1;
    }
    if (st.st_size > bytes_max) {
        snprintf(err, errcap, "%s is %lld bytes, over geo.database_bytes_max (%lld)", path, (long long)st.st_size,
                 (long long)bytes_max);
        close(in);
        return -1;
    }
    int out = memfd_create("edge-geo", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (out < 0) { snprintf(err, errcap, "memfd_create: %s", strerror(errno)); close(in); return -1; }
    size_t buffer_bytes = 1 << 16;
    char *buffer = malloc(buffer_bytes);
    if (!buffer) { snprintf(err, errcap, "out of memory"); close(in); close(out); return -1; }
    int64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buffer, buffer_bytes);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errcap, "reading %s: %s", path, strerror(errno));
            goto fail;
        }
        total += n;
        if (total > bytes_max) {   // grew while being read
            snprintf(err, errcap, "%s grew over geo.database_bytes_max (%lld) while being read", path,
                     (long long)bytes_max);
            goto fail;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buffer + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                snprintf(err, errcap, "copying %s into memory: %s", path, strerror(errno));
                goto fail;
            }
            off += w;
        }
    }
    free(buffer);
    close(in);
    if (total == 0) {
        snprintf(err, errcap, "%s is empty (a truncated file, or not a MaxMind DB)", path);
        close(out);
        return -1;
    }
    (void)fcntl(out, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
    return out;
fail:
    free(buffer);
    close(in);
    close(out);
    return -1;
}

edge_geo *edge_geo_open(const char *path, int64_t bytes_max, char *err, size_t errcap) {
    int copy = private_copy(path, bytes_max, err, errcap);
    if (copy < 0) return NULL;
    char copy_path[64];
    snprintf(copy_path, sizeof copy_path, "/proc/self/fd/%d", copy);
    edge_geo *g = calloc(1, sizeof *g);
    if (!g) { snprintf(err, errcap, "out of memory"); close(copy); return NULL; }
    int status = MMDB_open(copy_path, MMDB_MODE_MMAP, &g->mmdb);
    int open_errno = errno;
    close(copy);   // the mapping keeps the memory
    if (status != MMDB_SUCCESS) {
        snprintf(err, errcap, "%s is not a usable MaxMind DB: %s%s%s", path, MMDB_strerror(status),
                 status == MMDB_IO_ERROR ? ": " : "",
                 status == MMDB_IO_ERROR                ? strerror(open_errno)
                 : status == MMDB_INVALID_METADATA_ERROR ? " (a truncated file, or not a MaxMind DB)"
                                                         : "");
        free(g);
        return NULL;
    }
    // Workers must not take a page fault that waits for the disk: lock the mapping where the
    // limits allow (failure is harmless), and the check below reads every node anyway.
    (void)mlock(g->mmdb.file_content, (size_t)g->mmdb.file_size);

    offset_set seen = {0};
    uint32_t nodes = g->mmdb.metadata.node_count;
    uint32_t capacity = 1024;
    while (capacity < 2 * DECODED_RECORDS_MAX && capacity < 2 * nodes) capacity <<= 1;
    seen.slots = calloc(capacity, sizeof(uint32_t));
    seen.mask = capacity - 1;
    if (!seen.slots) { snprintf(err, errcap, "out of memory"); edge_geo_close(g); return NULL; }
    int bad = 0;
    for (uint32_t n = 0; n < nodes && !bad; n++) {
        MMDB_search_node_s node;
        status = MMDB_read_node(&g->mmdb, n, &node);
        if (status != MMDB_SUCCESS) {
            snprintf(err, errcap, "search tree node %u: %s", n, MMDB_strerror(status));
            bad = 1;
            break;
        }
        if (check_record(g, &seen, node.left_record_type, node.left_record_entry, n, err, errcap) != 0
            || check_record(g, &seen, node.right_record_type, node.right_record_entry, n, err, errcap) != 0)
            bad = 1;
    }
    free(seen.slots);
    if (!bad && g->country_records == 0) {
        snprintf(err, errcap, "%s has no record with a country (country.iso_code): not a Country or City database",
                 path);
        bad = 1;
    }
    if (bad) {
        // Name the file in every message.
        char reason[512];
        snprintf(reason, sizeof reason, "%s", err);
        if (strncmp(reason, path, strlen(path)) != 0) snprintf(err, errcap, "%s: %s", path, reason);
        edge_geo_close(g);
        return NULL;
    }
    // Page the data section in too (the tree walk paged in the tree).
    volatile uint8_t sink = 0;
    for (ssize_t i = 0; i < g->mmdb.file_size; i += 4096) sink ^= g->mmdb.file_content[i];
    (void)sink;
    return g;
}

void edge_geo_close(edge_geo *g) {
    if (!g) return;
    MMDB_close(&g->mmdb);
    free(g);
}

int edge_geo_country(const edge_geo *g, const char *ip, char out[2]) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        ss.ss_family = AF_INET;
    } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {   // a dual-stack listener's IPv4 client
            struct in_addr a;
            memcpy(&a, &v6->sin6_addr.s6_addr[12], 4);
            memset(&ss, 0, sizeof ss);
            v4->sin_addr = a;
            ss.ss_family = AF_INET;
        } else {
            ss.ss_family = AF_INET6;
        }
    } else {
        return -1;
    }
    int error = 0;
    MMDB_lookup_result_s r = MMDB_lookup_sockaddr(&g->mmdb, (struct sockaddr *)&ss, &error);
    if (error == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) return 0;
    if (error != MMDB_SUCCESS) return -2;
    if (!r.found_entry) return 0;
    return country_of(&r.entry, out);
}

const char *edge_geo_database_type(const edge_geo *g) {
    return g->mmdb.metadata.database_type ? g->mmdb.metadata.database_type : "";
}
uint64_t edge_geo_build_epoch(const edge_geo *g) { return g->mmdb.metadata.build_epoch; }
uint32_t edge_geo_node_count(const edge_geo *g) { return g->mmdb.metadata.node_count; }
int edge_geo_ip_version(const edge_geo *g) { return g->mmdb.metadata.ip_version; }
int64_t edge_geo_file_bytes(const edge_geo *g) { return (int64_t)g->mmdb.file_size; }
uint32_t edge_geo_country_records(const edge_geo *g) { return g->country_records; }
