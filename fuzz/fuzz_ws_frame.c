/* fuzz_ws_frame.c: the WebSocket codec (cm/ws.h, ws_frame.c) on arbitrary
 * bytes, read as a stream of frames the way ws.c reads c->recv.
 *
 * Beyond "no sanitizer report", it checks the contract the handler relies
 * on:
 *  - cm_ws_parse_header gives -1, 0 or a header length of 2..14 within the
 *    input; every prefix of a complete header is incomplete (0), and the
 *    header read from an exact-size copy is the same;
 *  - cm_ws_parse adds the payload only when all of it is there, as a slice
 *    right after the header;
 *  - writing the parsed header again (cm_ws_header) gives a header that
 *    parses to the same frame;
 *  - masking twice is the identity, in one piece or two;
 *  - cm_utf8_valid agrees with the same bytes fed in two pieces, and
 *    cm_ws_close_parse accepts only what its rules say. */
#include <stddef.h>
#include <stdint.h>

#include "cm/ws.h"
#include "fuzz_util.h"

static void check_header(const char *buf, size_t len, int h, const struct cm_ws_frame *f) {
  FUZZ_CHECK(h >= 2 && h <= CM_WS_MAX_HEADER && (size_t) h <= len && f->head_len == (size_t) h);
  FUZZ_CHECK(f->op == (f->flags & 0x0f) && f->fin == ((f->flags & 0x80) != 0));
  FUZZ_CHECK(f->len < (1ull << 63));
  for (int cut = 0; cut < h; cut++) {
    struct cm_ws_frame g;
    char *p = fuzz_dup(buf, (size_t) cut, 0);
    FUZZ_CHECK(cm_ws_parse_header(p, (size_t) cut, &g) == 0);
    free(p);
  }
  /* The writer makes a header that reads back the same. */
  uint8_t out[CM_WS_MAX_HEADER];
  size_t n = cm_ws_header(out, f->flags, f->len, f->masked ? f->mask : NULL);
  struct cm_ws_frame g;
  FUZZ_CHECK(cm_ws_parse_header((const char *) out, n, &g) == (int) n && n <= (size_t) h);
  FUZZ_CHECK(g.flags == f->flags && g.len == f->len && g.masked == f->masked);
  FUZZ_CHECK(!g.masked || memcmp(g.mask, f->mask, 4) == 0);
}

/* Mask and unmask a copy of the payload, whole and in two pieces. */
static void check_mask(struct cm_str payload, const uint8_t key[4]) {
  char *a = fuzz_dup(payload.buf, payload.len, 0);
  char *b = fuzz_dup(payload.buf, payload.len, 0);
  size_t cut = payload.len / 3;
  cm_ws_mask(a, payload.len, key, 0);
  cm_ws_mask(b, cut, key, 0);
  cm_ws_mask(b + cut, payload.len - cut, key, cut);
  FUZZ_CHECK(payload.len == 0 || memcmp(a, b, payload.len) == 0);
  cm_ws_mask(a, payload.len, key, 0);
  FUZZ_CHECK(payload.len == 0 || memcmp(a, payload.buf, payload.len) == 0);
  free(a);
  free(b);
}

static void check_payload(struct cm_str p, uint8_t op) {
  bool whole = cm_utf8_valid(p.buf, p.len);
  struct cm_utf8 u = {0, 0, 0, 0};
  size_t cut = p.len / 2;
  bool ok = cm_utf8_feed(&u, p.buf, cut) && cm_utf8_feed(&u, p.buf + cut, p.len - cut);
  FUZZ_CHECK(whole == (ok && cm_utf8_done(&u)));
  if (op != CM_WS_OP_CLOSE) return;
  unsigned code;
  struct cm_str reason;
  int rc = cm_ws_close_parse(p, &code, &reason);
  if (p.len == 0) FUZZ_CHECK(rc == 0 && code == 1005);
  else if (p.len == 1)
    FUZZ_CHECK(rc == CM_WS_CLOSE_PROTOCOL);
  else if (rc == 0)
    FUZZ_CHECK(cm_ws_close_code_ok(code) && reason.len == p.len - 2 && cm_utf8_valid(reason.buf, reason.len));
  else
    FUZZ_CHECK(rc == CM_WS_CLOSE_PROTOCOL || rc == CM_WS_CLOSE_INVALID_DATA);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = fuzz_dup(data, size, 0);
  size_t pos = 0;
  for (int frames = 0; frames < 64 && pos < size; frames++) {
    const char *p = buf + pos;
    size_t len = size - pos;
    struct cm_ws_frame f;
    int h = cm_ws_parse_header(p, len, &f);
    if (h <= 0) break;
    check_header(p, len, h, &f);
    (void) cm_ws_check(&f, f.masked, CM_WS_RSV1);
    long n = cm_ws_parse(p, len, &f);
    if (n == 0) {
      FUZZ_CHECK(f.len > len - (size_t) h);
      break;
    }
    FUZZ_CHECK(n > 0 && (size_t) n == (size_t) h + f.len && (size_t) n <= len);
    FUZZ_CHECK(fuzz_slice_in(f.payload, p + h, p + n) && f.payload.len == f.len);
    if (f.masked) check_mask(f.payload, f.mask);
    check_payload(f.payload, f.op);
    pos += (size_t) n;
  }
  free(buf);
  return 0;
}
