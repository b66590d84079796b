#ifndef WEFT_CJEMALLOC_SHIM_H
#define WEFT_CJEMALLOC_SHIM_H
// jemalloc replaces the C library's malloc for the whole process (linked by
// every binary that imports this module: Swift objects, nghttp2, SQLite).
// Debian's build has no symbol prefix: mallctl, not je_mallctl.
#include <jemalloc/jemalloc.h>
#include <stdint.h>
#include <stddef.h>

// jemalloc's statistics are snapshots refreshed by writing "epoch".
static inline void weft_jemalloc_refresh(void) {
    uint64_t epoch = 1;
    size_t size = sizeof(epoch);
    mallctl("epoch", &epoch, &size, &epoch, size);
}

// A size_t statistic ("stats.allocated", "stats.resident"), or -1.
static inline int64_t weft_jemalloc_stat(const char *name) {
    size_t value = 0;
    size_t size = sizeof(value);
    if (mallctl(name, &value, &size, NULL, 0) != 0) return -1;
    return (int64_t)value;
}
#endif
