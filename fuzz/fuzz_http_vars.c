/* fuzz_http_vars.c: the pure helpers of http_vars.c (cm/http.h):
 * cm_http_url_decode, cm_http_var and cm_http_header_var.
 *
 * Input layout: byte 0 is the length of the variable name (mod 16), the
 * name follows, the rest is the text searched and decoded.  Checked:
 *  - found values are slices inside the text, right after "name=" (query
 *    variables) and free of '&';
 *  - decoding writes only inside the destination (exact-size heap buffers,
 *    so ASan sees one byte too many), NUL-terminates, never grows the text,
 *    and fails rather than truncate when the destination is one byte short. */
#include <stddef.h>
#include <stdint.h>

#include "cm/http.h"
#include "fuzz_util.h"

static bool caseeq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = (char) (x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char) (y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

/* Decode src into a destination of exactly `size` bytes. */
static long decode(struct cm_str src, size_t size, bool form, char **out) {
  char *dst = malloc(size > 0 ? size : 1);
  FUZZ_CHECK(dst != NULL);
  long r = cm_http_url_decode(src.buf, src.len, dst, size, form);
  FUZZ_CHECK(r >= -1 && r <= (long) src.len);
  if (r >= 0) FUZZ_CHECK((size_t) r < size && dst[r] == '\0');
  *out = dst;
  return r;
}

/* With room for every byte the result is the same at any larger size; the
 * exact size fits, one byte less must fail, not cut. */
static void check_decode(struct cm_str src, bool form) {
  char *big, *exact, *small;
  long r = decode(src, src.len + 1, form, &big);
  if (r >= 0) {
    FUZZ_CHECK(decode(src, (size_t) r + 1, form, &exact) == r);
    FUZZ_CHECK(memcmp(big, exact, (size_t) r + 1) == 0);
    FUZZ_CHECK(decode(src, (size_t) r, form, &small) == -1);
    free(exact);
    free(small);
  }
  free(big);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t nlen = data[0] % 16;
  if (size - 1 < nlen) return 0;
  char *all = fuzz_dup(data + 1, size - 1, 0); /* exact size: overreads show */
  struct cm_str name = cm_str_n(all, nlen), text = cm_str_n(all + nlen, size - 1 - nlen);
  const char *lo = text.buf, *hi = text.buf + text.len;
  struct cm_str v;

  if (cm_http_var(text, name, &v)) {
    FUZZ_CHECK(name.len > 0 && fuzz_slice_in(v, lo, hi));
    FUZZ_CHECK(v.buf != NULL && v.buf - lo >= (ptrdiff_t) name.len + 1 && v.buf[-1] == '=');
    FUZZ_CHECK(caseeq(v.buf - 1 - name.len, name.buf, name.len));
    FUZZ_CHECK(v.len == 0 || memchr(v.buf, '&', v.len) == NULL);
    check_decode(v, true);
  }
  if (cm_http_header_var(text, name, &v)) {
    FUZZ_CHECK(name.len > 0 && fuzz_slice_in(v, lo, hi));
  }
  check_decode(text, false);
  check_decode(text, true);
  free(all);
  return 0;
}
