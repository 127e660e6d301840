/* The row hash of metaxy in C: XXH64 of each row's canonical string, rendered as hex.
 *
 * Loaded with ctypes by metaxy_core/native_hash.py (no Python headers needed). A row's canonical
 * string is an optional prefix followed by one value per column, joined by a separator; a null
 * value is written as the sentinel. Columns are Arrow string arrays in any of their three
 * layouts, so Polars and DuckDB hand them over without a copy. The canonical string is never
 * stored: rows are assembled a block at a time in a small buffer and hashed from there.
 *
 * XXH64 is the published algorithm (https://github.com/Cyan4973/xxHash, XXH64 specification);
 * tests compare every path with the `xxhash` package.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

#define PRIME1 0x9E3779B185EBCA87ULL
#define PRIME2 0xC2B2AE3D27D4EB4FULL
#define PRIME3 0x165667B19E3779F9ULL
#define PRIME4 0x85EBCA77C2B2AE63ULL
#define PRIME5 0x27D4EB2F165667C5ULL

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LITTLE(x, bits) __builtin_bswap##bits(x)
#define BIG(x, bits) (x)
#else
#define LITTLE(x, bits) (x)
#define BIG(x, bits) __builtin_bswap##bits(x)
#endif

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t read64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return LITTLE(v, 64);
}

static inline uint32_t read32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return LITTLE(v, 32);
}

static inline uint64_t round64(uint64_t acc, uint64_t input) {
    acc += input * PRIME2;
    return rotl(acc, 31) * PRIME1;
}

static inline uint64_t merge64(uint64_t acc, uint64_t v) {
    acc ^= round64(0, v);
    return acc * PRIME1 + PRIME4;
}

static uint64_t xxh64(const uint8_t *p, size_t len, uint64_t seed) {
    const uint8_t *end = p + len;
    uint64_t h;
    if (len >= 32) {
        const uint8_t *limit = end - 32;
        uint64_t v1 = seed + PRIME1 + PRIME2, v2 = seed + PRIME2, v3 = seed, v4 = seed - PRIME1;
        do {
            v1 = round64(v1, read64(p));
            v2 = round64(v2, read64(p + 8));
            v3 = round64(v3, read64(p + 16));
            v4 = round64(v4, read64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = merge64(h, v1);
        h = merge64(h, v2);
        h = merge64(h, v3);
        h = merge64(h, v4);
    } else {
        h = seed + PRIME5;
    }
    h += (uint64_t)len;
    while (p + 8 <= end) {
        h ^= round64(0, read64(p));
        h = rotl(h, 27) * PRIME1 + PRIME4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)read32(p) * PRIME1;
        h = rotl(h, 23) * PRIME2 + PRIME3;
        p += 4;
    }
    while (p < end) {
        h ^= (*p) * PRIME5;
        h = rotl(h, 11) * PRIME1;
        p++;
    }
    h ^= h >> 33;
    h *= PRIME2;
    h ^= h >> 29;
    h *= PRIME3;
    h ^= h >> 32;
    return h;
}

/* The 8 lowercase hex digits of x, most significant first, as the bytes of a u64 in memory. */
static inline uint64_t hex8(uint32_t x) {
    uint64_t v = x;
    v = (v | (v << 16)) & 0x0000FFFF0000FFFFULL;
    v = (v | (v << 8)) & 0x00FF00FF00FF00FFULL;
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0FULL; /* nibble k (from the low end) in byte k */
    uint64_t letters = ((v + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
    v += 0x3030303030303030ULL + letters * ('a' - '0' - 10);
    return BIG(v, 64); /* the most significant digit first in memory */
}

/* memcpy of a short string: values are mostly hex digests (16 bytes), and a call to memcpy
 * with a length it cannot see costs more than the copy. Fixed-size moves that overlap in the
 * middle cover every length up to 32 without reading or writing past either end. */
static inline void copy(uint8_t *dst, const uint8_t *src, size_t n) {
    if (n >= 8 && n <= 16) {
        uint64_t head, tail;
        memcpy(&head, src, 8);
        memcpy(&tail, src + n - 8, 8);
        memcpy(dst, &head, 8);
        memcpy(dst + n - 8, &tail, 8);
    } else if (n > 16 && n <= 32) {
        uint8_t head[16], tail[16];
        memcpy(head, src, 16);
        memcpy(tail, src + n - 16, 16);
        memcpy(dst, head, 16);
        memcpy(dst + n - 16, tail, 16);
    } else if (n >= 4 && n < 8) {
        uint32_t head, tail;
        memcpy(&head, src, 4);
        memcpy(&tail, src + n - 4, 4);
        memcpy(dst, &head, 4);
        memcpy(dst + n - 4, &tail, 4);
    } else if (n > 0 && n < 4) {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    } else if (n > 32) {
        memcpy(dst, src, n);
    }
}

enum { OFFSETS32 = 0, OFFSETS64 = 1, VIEWS = 2 };

/* One Arrow string column, from its first row to hash. */
typedef struct {
    int32_t layout;            /* OFFSETS32 (string), OFFSETS64 (large_string), VIEWS */
    int64_t offset;            /* index of the first row in the buffers below */
    const uint8_t *validity;   /* bitmap, or NULL when no value is null */
    const void *index;         /* offsets, or 16-byte views */
    const uint8_t *const *data; /* the data buffer (offsets), or the variadic buffers (views) */
} column_t;

#define BLOCK 256
#define BLOCK_BYTES (1 << 20)

static int grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap;
    while (cap2 < need) cap2 *= 2;
    uint8_t *grown = realloc(*buf, cap2);
    if (!grown) return -1;
    *buf = grown;
    *cap = cap2;
    return 0;
}

static inline void value(const column_t *c, int64_t j, const uint8_t *sentinel,
                         const uint8_t **s, size_t *len) {
    if (c->validity && !((c->validity[j >> 3] >> (j & 7)) & 1)) {
        *s = sentinel;
        *len = 1;
    } else if (c->layout == OFFSETS32) {
        const int32_t *o = (const int32_t *)c->index;
        *s = c->data[0] + o[j];
        *len = (size_t)(o[j + 1] - o[j]);
    } else if (c->layout == OFFSETS64) {
        const int64_t *o = (const int64_t *)c->index;
        *s = c->data[0] + o[j];
        *len = (size_t)(o[j + 1] - o[j]);
    } else {
        const uint8_t *v = (const uint8_t *)c->index + 16 * j;
        int32_t l, buffer, at;
        memcpy(&l, v, 4);
        *len = (size_t)l;
        if (l <= 12) {
            *s = v + 4;
        } else {
            memcpy(&buffer, v + 8, 4);
            memcpy(&at, v + 12, 4);
            *s = c->data[buffer] + at;
        }
    }
}

/* Hash n rows. Row i is `prefix` (when has_prefix), then the value of each column at row i,
 * joined by `sep`. Writes 16 hex digits per row to hex + 16 * i and, when views is not NULL, an
 * Arrow string view of them to views + 16 * i, pointing at byte view_offset + 16 * i of the
 * buffer that holds `hex`. Returns 0, or -1 when out of memory.
 *
 * Rows are copied into a block buffer first and hashed afterwards: hashing a row right after
 * writing it in pieces stalls on store forwarding, which costs about a third of the time. */
EXPORT int metaxy_hash_rows(int64_t n, const column_t *cols, int32_t ncols,
                            const uint8_t *prefix, int64_t prefix_len, int32_t has_prefix,
                            uint8_t sep, uint8_t sentinel, uint64_t seed, uint8_t *hex,
                            uint8_t *views, int64_t view_offset) {
    size_t cap = 1 << 16;
    size_t starts[BLOCK + 1];
    uint8_t *buf = malloc(cap);
    if (!buf) return -1;
    int64_t rows;
    for (int64_t first = 0; first < n; first += rows) {
        size_t len = 0;
        /* Up to BLOCK rows, and no more rows once the buffer holds BLOCK_BYTES: a block of very
         * long values stays one row long instead of growing the buffer without bound. */
        for (rows = 0; rows < BLOCK && first + rows < n && len < BLOCK_BYTES; rows++) {
            int64_t r = rows;
            starts[r] = len;
            if (grow(&buf, &cap, len + (size_t)prefix_len) != 0) goto oom;
            copy(buf + len, prefix, (size_t)prefix_len);
            len += (size_t)prefix_len;
            for (int32_t k = 0; k < ncols; k++) {
                const uint8_t *s;
                size_t sl;
                value(&cols[k], cols[k].offset + first + r, &sentinel, &s, &sl);
                if (grow(&buf, &cap, len + sl + 1) != 0) goto oom;
                if (k > 0 || has_prefix) buf[len++] = sep;
                copy(buf + len, s, sl);
                len += sl;
            }
        }
        starts[rows] = len;
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = first + r;
            uint64_t h = xxh64(buf + starts[r], starts[r + 1] - starts[r], seed);
            uint64_t digits[2] = {hex8((uint32_t)(h >> 32)), hex8((uint32_t)h)};
            memcpy(hex + 16 * i, digits, 16);
            if (views) {
                int32_t view[4] = {16, 0, 0, (int32_t)(view_offset + 16 * i)};
                memcpy(&view[1], digits, 4); /* the first four digits, inline */
                memcpy(views + 16 * i, view, 16);
            }
        }
    }
    free(buf);
    return 0;
oom:
    free(buf);
    return -1;
}
