/* cm/base.h: slices, addresses, error codes and small helpers shared by every
 * other header.  Nothing here allocates. */
#ifndef CM_BASE_H
#define CM_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A non-owning slice of bytes.  `buf` is not NUL-terminated; it points into
 * memory owned by someone else (an iobuf, a caller's string) and is valid only
 * as long as that owner says. */
struct cm_str {
  const char *buf; /* first byte, or NULL for the empty slice */
  size_t len;      /* number of bytes */
};

/* Slice over a NUL-terminated C string (NULL gives the empty slice). */
struct cm_str cm_str_c(const char *s);
/* Slice over `len` bytes at `buf`. */
struct cm_str cm_str_n(const char *buf, size_t len);
/* True if `s` equals the C string `c` byte for byte. */
bool cm_str_eq(struct cm_str s, const char *c);
/* True if `a` and `b` are equal ignoring ASCII case. */
bool cm_str_casecmp(struct cm_str a, struct cm_str b);

/* An IPv4 or IPv6 endpoint.  `ip` holds 4 (IPv4) or 16 (IPv6) bytes in network
 * order; `port` is in host order. */
struct cm_addr {
  uint8_t ip[16];    /* address bytes; IPv4 uses ip[0..3] */
  uint16_t port;     /* port, host byte order */
  bool is_ip6;       /* true for IPv6 */
  uint32_t scope_id; /* IPv6 scope (interface) id, 0 if none */
};

/* Error codes returned (negated) by core functions that return int.
 * One list makes the enum and the name table, so they cannot drift. */
#define CM_ERRNO_LIST(X)             \
  X(INVAL, 1, "invalid argument")    \
  X(NOMEM, 2, "out of memory")       \
  X(IO, 3, "I/O error")              \
  X(ADDR, 4, "bad address")          \
  X(CLOSED, 5, "connection closed")  \
  X(FULL, 6, "buffer limit reached") \
  X(PROTO, 7, "protocol error")      \
  X(AGAIN, 8, "try again")

enum cm_errno {
#define CM_X(name, num, text) CM_E##name = num,
  CM_ERRNO_LIST(CM_X)
#undef CM_X
};

/* Human-readable text for a CM_E* code (positive or negative); never NULL. */
const char *cm_strerror(int err);

/* Number of elements of a true array. */
#define CM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define CM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CM_LIKELY(x) __builtin_expect(!!(x), 1)
#define CM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CM_PRINTF(f, a)
#define CM_LIKELY(x) (x)
#define CM_UNLIKELY(x) (x)
#endif

#ifdef __cplusplus
}
#endif
#endif /* CM_BASE_H */
