/* fuzz_ws_deflate.c: permessage-deflate (ws_deflate.c) on arbitrary bytes:
 * the negotiation of Sec-WebSocket-Extensions text in both directions, and
 * the bounded inflate of arbitrary "compressed" payloads.
 *
 * Checks: an accepted offer yields a response line that ends in CRLF and a
 * window of 9..15 bits; the inflate never produces more than its bound
 * (the decompression-bomb guard) and reports TOO_BIG exactly when more
 * would have come; whatever we deflate inflates back to itself. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"
#include "internal.h"

#define BOUND 65536

static void negotiate(const char *text, size_t n) {
  struct cm__ws_pmd p;
  char resp[160];
  if (cm__ws_pmd_negotiate(cm_str_n(text, n), &p, resp, sizeof(resp))) {
    size_t rl = strlen(resp);
    FUZZ_CHECK(rl >= 2 && resp[rl - 2] == '\r' && resp[rl - 1] == '\n');
    FUZZ_CHECK(p.server_bits >= 9 && p.server_bits <= 15);
  }
  int rc = cm__ws_pmd_accept(cm_str_n(text, n), &p);
  FUZZ_CHECK(rc >= -1 && rc <= 1);
  if (rc == 1) FUZZ_CHECK(p.client_bits >= 9 && p.client_bits <= 15);
}

static void inflate_bounded(const char *in, size_t n) {
  struct cm__ws_pmd p;
  memset(&p, 0, sizeof(p));
  struct cm__ws_z *z = cm__ws_z_new(&p, true);
  FUZZ_CHECK(z != NULL);
  struct cm_iobuf out;
  cm_iobuf_init(&out, 0);
  int rc = cm__ws_z_inflate(z, cm_str_n(in, n), &out, BOUND);
  FUZZ_CHECK(rc == 0 || rc == CM__WS_Z_TOO_BIG || rc == CM__WS_Z_CORRUPT);
  FUZZ_CHECK(out.len <= BOUND + 1 && (rc != 0 || out.len <= BOUND));
  /* Our own deflate of the input inflates back to it. */
  struct cm_iobuf zb;
  cm_iobuf_init(&zb, 0);
  cm_iobuf_consume(&out, out.len);
  struct cm__ws_z *tx = cm__ws_z_new(&p, true), *rx = cm__ws_z_new(&p, false);
  FUZZ_CHECK(tx != NULL && rx != NULL);
  FUZZ_CHECK(cm__ws_z_deflate(tx, in, n, &zb) >= 0);
  FUZZ_CHECK(cm__ws_z_inflate(rx, cm_str_n(cm_iobuf_data(&zb), zb.len), &out, n + 1) == 0);
  FUZZ_CHECK(out.len == n && (n == 0 || memcmp(cm_iobuf_data(&out), in, n) == 0));
  cm_iobuf_free(&zb);
  cm_iobuf_free(&out);
  cm__ws_z_free(tx);
  cm__ws_z_free(rx);
  cm__ws_z_free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  char *buf = fuzz_dup(data + 1, size - 1, 0);
  if (data[0] & 1) negotiate(buf, size - 1);
  else
    inflate_bounded(buf, size - 1);
  free(buf);
  return 0;
}
