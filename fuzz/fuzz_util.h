/* fuzz_util.h: what the fuzz targets share: an invariant check that libFuzzer
 * sees as a crash, and the "slice lies inside its buffer" test that every
 * parser contract (results are slices into the input) comes down to. */
#ifndef CM_FUZZ_UTIL_H
#define CM_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm/base.h"

/* A broken contract is a finding like any sanitizer report: abort() so
 * libFuzzer saves the input, and say which invariant it was.  Not assert():
 * it must stay on whatever the buildtype does with NDEBUG. */
#define FUZZ_CHECK(cond)                                                           \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                     \
    }                                                                              \
  } while (0)

/* True if `s` lies inside [lo, hi).  Empty slices may be NULL or point
 * anywhere inside or at the end of the range.  Compared as integers: pointer
 * comparisons across objects would be undefined exactly when the parser is
 * wrong, which is when this must answer. */
static inline int fuzz_slice_in(struct cm_str s, const char *lo, const char *hi) {
  uintptr_t b = (uintptr_t) s.buf, l = (uintptr_t) lo, h = (uintptr_t) hi;
  if (s.len == 0) return s.buf == NULL || (b >= l && b <= h);
  return s.buf != NULL && b >= l && b <= h && s.len <= h - b;
}

/* Offset of a slice from `base`, for comparing results over two copies of
 * the same bytes; empty NULL slices get SIZE_MAX so they compare equal. */
static inline size_t fuzz_ofs(struct cm_str s, const char *base) {
  return s.buf == NULL ? SIZE_MAX : (size_t) ((uintptr_t) s.buf - (uintptr_t) base);
}

/* An exact-size heap copy: ASan then reports a read even one byte past
 * `n`, which it cannot do inside a larger buffer.  Never returns NULL. */
static inline char *fuzz_dup(const void *data, size_t n, int nul) {
  char *p = malloc(n + (nul ? 1 : 0) + (n == 0 && !nul));
  FUZZ_CHECK(p != NULL);
  if (n > 0) memcpy(p, data, n);
  if (nul) p[n] = '\0';
  return p;
}

#endif /* CM_FUZZ_UTIL_H */
