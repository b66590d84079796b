#ifndef WEFT_CNGHTTP2_SESSION_POOL_H
#define WEFT_CNGHTTP2_SESSION_POOL_H
// A per-session memory pool for nghttp2 (its nghttp2_mem hook).
//
// nghttp2 allocates and frees about eight small blocks per request: the
// stream, the outbound items of the response headers, body and trailers,
// the copied header arrays. Through malloc that was ~4% of a health check's
// server CPU. A session lives on one event loop, so its freed blocks can be
// kept in plain free lists by size class and handed out again with no
// locking and no size lookup: a block carries its class in a 16-byte header
// (keeping malloc's 16-byte alignment).
//
// Bounded: at most WEFT_POOL_KEEP_BYTES of free blocks are kept per session
// (a freed block past that goes back to malloc); blocks over 4096 bytes are
// never kept. weft_pool_destroy, after nghttp2_session_del, frees what is left.
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WEFT_POOL_CLASSES 8                 // 32, 64, ..., 4096 bytes
#define WEFT_POOL_HEADER 16                 // class and usable size
#define WEFT_POOL_KEEP_BYTES (64 * 1024)

typedef struct weft_pool {
    void *free_list[WEFT_POOL_CLASSES];     // payload pointers; next in the payload
    size_t kept_bytes;
    uint64_t allocations;                   // blocks handed out (tests, statistics)
    uint64_t reused;                        // of those, from a free list
} weft_pool;

static inline int weft_pool_class(size_t size) {
    if (size <= 32) return 0;
    if (size > 4096) return -1;
    return (64 - __builtin_clzll((unsigned long long)(size - 1))) - 5;
}

static inline void *weft_pool_malloc(size_t size, void *user) {
    weft_pool *pool = (weft_pool *)user;
    int k = weft_pool_class(size);
    pool->allocations++;
    if (k >= 0 && pool->free_list[k]) {
        void *payload = pool->free_list[k];
        pool->free_list[k] = *(void **)payload;
        pool->kept_bytes -= (size_t)32 << k;
        pool->reused++;
        return payload;
    }
    size_t usable = k >= 0 ? ((size_t)32 << k) : size;
    if (usable > SIZE_MAX - WEFT_POOL_HEADER) return NULL;
    char *raw = (char *)malloc(usable + WEFT_POOL_HEADER);
    if (!raw) return NULL;
    ((int64_t *)raw)[0] = k;
    ((uint64_t *)raw)[1] = usable;
    return raw + WEFT_POOL_HEADER;
}

static inline void weft_pool_free(void *ptr, void *user) {
    if (!ptr) return;
    weft_pool *pool = (weft_pool *)user;
    char *raw = (char *)ptr - WEFT_POOL_HEADER;
    int64_t k = ((int64_t *)raw)[0];
    if (k >= 0 && pool->kept_bytes + ((size_t)32 << k) <= WEFT_POOL_KEEP_BYTES) {
        *(void **)ptr = pool->free_list[k];
        pool->free_list[k] = ptr;
        pool->kept_bytes += (size_t)32 << k;
        return;
    }
    free(raw);
}

static inline void *weft_pool_calloc(size_t count, size_t size, void *user) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *ptr = weft_pool_malloc(count * size, user);
    if (ptr) memset(ptr, 0, count * size);
    return ptr;
}

static inline void *weft_pool_realloc(void *ptr, size_t size, void *user) {
    if (!ptr) return weft_pool_malloc(size, user);
    if (size == 0) {
        weft_pool_free(ptr, user);
        return NULL;
    }
    uint64_t usable = ((uint64_t *)((char *)ptr - WEFT_POOL_HEADER))[1];
    if (size <= usable) return ptr;
    void *grown = weft_pool_malloc(size, user);
    if (!grown) return NULL;  // the old block stays valid, as realloc's does
    memcpy(grown, ptr, (size_t)usable);
    weft_pool_free(ptr, user);
    return grown;
}

static inline weft_pool *weft_pool_create(void) { return (weft_pool *)calloc(1, sizeof(weft_pool)); }

// The nghttp2_mem of a pool (nghttp2 copies it into the session).
static inline nghttp2_mem weft_pool_mem(weft_pool *pool) {
    nghttp2_mem mem = {pool, weft_pool_malloc, weft_pool_free, weft_pool_calloc, weft_pool_realloc};
    return mem;
}

// Frees the pool's kept blocks and the pool: after nghttp2_session_del.
static inline void weft_pool_destroy(weft_pool *pool) {
    if (!pool) return;
    for (int k = 0; k < WEFT_POOL_CLASSES; k++) {
        void *payload = pool->free_list[k];
        while (payload) {
            void *next = *(void **)payload;
            free((char *)payload - WEFT_POOL_HEADER);
            payload = next;
        }
    }
    free(pool);
}
#endif
