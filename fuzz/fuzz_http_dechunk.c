/* fuzz_http_dechunk.c: cm_http_dechunk (cm/http.h), the chunked body decoder
 * (RFC 9112 §7.1), on arbitrary bytes.
 *
 * The protocol handler calls it in a loop over a growing buffer, so besides
 * "no sanitizer report" it checks what that loop relies on:
 *  - a result is -1, 0 or a chunk length in 1..len, and the data slice lies
 *    inside the chunk, followed by its line ending;
 *  - the result depends only on the bytes it covers: a prefix gives 0 until
 *    the chunk is all there, then the same chunk; errors never heal.
 * Then it decodes the whole input as a body, chunk after chunk, as the
 * handler does.  Prefixes are exact-size copies so ASan sees any overread. */
#include <stddef.h>
#include <stdint.h>

#include "cm/http.h"
#include "fuzz_util.h"

/* The result r of decoding buf[0..len) is well-formed. */
static void check_chunk(const char *buf, size_t len, int r, size_t ofs, size_t n) {
  FUZZ_CHECK(r >= -1 && (size_t) (r < 0 ? 0 : r) <= len);
  if (r <= 0) return;
  FUZZ_CHECK(ofs >= 2 && ofs <= (size_t) r); /* at least one digit and a LF */
  FUZZ_CHECK(n <= (size_t) r - ofs);
  if (n > 0) {
    /* chunk-data CRLF: exactly the line ending follows the data. */
    size_t tail = (size_t) r - ofs - n;
    FUZZ_CHECK(tail == 1 || tail == 2);
    FUZZ_CHECK(buf[ofs + n + tail - 1] == '\n');
  } else {
    FUZZ_CHECK(buf[r - 1] == '\n'); /* last-chunk ends with the empty line */
  }
}

static void check_prefix(const uint8_t *data, size_t k, int r, size_t ofs, size_t n) {
  size_t pofs = 0, pn = 0;
  char *buf = fuzz_dup(data, k, 0);
  int rp = cm_http_dechunk(buf, k, &pofs, &pn);
  check_chunk(buf, k, rp, pofs, pn);
  if (r > 0 && k < (size_t) r) FUZZ_CHECK(rp == 0);
  if (r > 0 && k >= (size_t) r) FUZZ_CHECK(rp == r && pofs == ofs && pn == n);
  if (rp > 0) FUZZ_CHECK(rp == r);
  if (rp < 0) FUZZ_CHECK(r < 0);
  free(buf);
}

/* Decode chunk after chunk until the last chunk, more-needed or an error.
 * The decoded size can never exceed the encoded one. */
static void decode_body(const char *buf, size_t len) {
  size_t pos = 0, total = 0;
  for (;;) {
    size_t ofs = 0, n = 0;
    int r = cm_http_dechunk(buf + pos, len - pos, &ofs, &n);
    check_chunk(buf + pos, len - pos, r, ofs, n);
    if (r <= 0) break;
    total += n;
    pos += (size_t) r;
    FUZZ_CHECK(total <= pos);
    if (n == 0) break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *buf = (const char *) data;
  size_t ofs = 0, n = 0;
  int r = cm_http_dechunk(buf, size, &ofs, &n);
  check_chunk(buf, size, r, ofs, n);
  if (size > 0) check_prefix(data, size - 1, r, ofs, n);
  check_prefix(data, size / 2, r, ofs, n);
  if (r > 0) check_prefix(data, (size_t) r - 1, r, ofs, n);
  decode_body(buf, size);
  return 0;
}
