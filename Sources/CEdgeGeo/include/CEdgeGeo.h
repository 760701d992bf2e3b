// Country lookups in a MaxMind DB (libmaxminddb): copied into sealed private memory, opened and
// checked whole on a control thread, then read by the workers without a system call (the memory
// is locked when the limits allow it, and touched in full by the check either way). Replacing or
// overwriting the file changes nothing until the next open.
#ifndef CEDGEGEO_H
#define CEDGEGEO_H
#include <stdint.h>
#include <stddef.h>

typedef struct edge_geo edge_geo;

// Opens `path`, refusing a file over `bytes_max`, one libmaxminddb cannot open (bad or missing
// metadata: a truncated file), a search tree with a record pointing outside the file, a data
// record that does not decode, or a database with no country field in any record. NULL on failure
// with the reason in `err`.
edge_geo *edge_geo_open(const char *path, int64_t bytes_max, char *err, size_t errcap);
void edge_geo_close(edge_geo *geo);

// The country of an address given as text (IPv4 or IPv6 literal): 1 with the ISO 3166-1 code's
// two letters in `out`; 0 when the database has no country for it; -1 when `ip` is not an
// address; -2 when the lookup hit damage in the database.
int edge_geo_country(const edge_geo *geo, const char *ip, char out[2]);

// What the database says of itself.
const char *edge_geo_database_type(const edge_geo *geo);
uint64_t edge_geo_build_epoch(const edge_geo *geo);
uint32_t edge_geo_node_count(const edge_geo *geo);
int edge_geo_ip_version(const edge_geo *geo);
int64_t edge_geo_file_bytes(const edge_geo *geo);
// Records whose data carries a country (counted by the check at open).
uint32_t edge_geo_country_records(const edge_geo *geo);
#endif
