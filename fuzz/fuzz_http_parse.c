/* fuzz_http_parse.c: cm_http_parse (cm/http.h) on arbitrary bytes.
 *
 * Beyond "no sanitizer report", it checks the contract the protocol handler
 * relies on when it calls the parser again and again on a growing buffer:
 *  - a result is -1, 0 or a head length in 1..len; every slice lies inside
 *    the head, and the head ends exactly at the returned length;
 *  - the result depends only on the bytes it covers: parsing any prefix
 *    gives 0 while the head is not all there, then the same head (and the
 *    same slices) once it is; an error on a prefix stays an error, and a
 *    prefix never completes where the whole input did not;
 *  - cm_http_msg_copy moves every slice into its own buffer.
 * Prefixes are parsed from exact-size copies so a read past the given
 * length is an ASan report, not a silent look at the next byte. */
#include <stddef.h>
#include <stdint.h>

#include "cm/http.h"
#include "fuzz_util.h"

static int in_head(struct cm_str s, const struct cm_http_msg *hm) {
  return fuzz_slice_in(s, hm->head.buf, hm->head.buf + hm->head.len);
}

/* Slices of a successful parse of buf[0..r). */
static void check_success(const char *buf, int r, const struct cm_http_msg *hm) {
  FUZZ_CHECK(hm->head.buf != NULL && hm->head.len > 0);
  FUZZ_CHECK(fuzz_slice_in(hm->head, buf, buf + r));
  FUZZ_CHECK(hm->head.buf + hm->head.len == buf + r);
  /* Only empty lines may precede the head (RFC 9112 §2.2). */
  for (const char *p = buf; p < hm->head.buf; p++) FUZZ_CHECK(*p == '\r' || *p == '\n');
  FUZZ_CHECK(hm->message.buf == hm->head.buf && hm->message.len == hm->head.len);
  FUZZ_CHECK(hm->body.len == 0);
  FUZZ_CHECK(in_head(hm->method, hm) && in_head(hm->uri, hm));
  FUZZ_CHECK(in_head(hm->query, hm) && in_head(hm->proto, hm));
  FUZZ_CHECK(hm->num_headers <= CM_HTTP_MAX_HEADERS);
  for (size_t i = 0; i < hm->num_headers; i++) {
    FUZZ_CHECK(hm->headers[i].name.len > 0);
    FUZZ_CHECK(in_head(hm->headers[i].name, hm) && in_head(hm->headers[i].value, hm));
  }
  FUZZ_CHECK(hm->content_length >= -1);
  /* Chunked framing wins (response) or excludes Content-Length (request). */
  if (hm->is_chunked) FUZZ_CHECK(hm->content_length == -1);
  if (hm->is_response) {
    FUZZ_CHECK(hm->method.len == 8 && memcmp(hm->method.buf, "HTTP/", 5) == 0);
    FUZZ_CHECK(hm->uri.len == 3);
    for (size_t i = 0; i < 3; i++) FUZZ_CHECK(hm->uri.buf[i] >= '0' && hm->uri.buf[i] <= '9');
    int status = (hm->uri.buf[0] - '0') * 100 + (hm->uri.buf[1] - '0') * 10 + (hm->uri.buf[2] - '0');
    FUZZ_CHECK(cm_http_reason(status) != NULL);
  } else {
    FUZZ_CHECK(hm->method.len > 0 && hm->proto.len == 8);
  }
}

/* cm_http_header finds every stored header by its own name, and returns the
 * first one with that name. */
static void check_lookup(const struct cm_http_msg *hm) {
  for (size_t i = 0; i < hm->num_headers; i++) {
    char *name = fuzz_dup(hm->headers[i].name.buf, hm->headers[i].name.len, 1);
    size_t first = 0;
    while (!cm_str_casecmp(hm->headers[first].name, hm->headers[i].name)) first++;
    FUZZ_CHECK(cm_http_header(hm, name) == &hm->headers[first].value);
    free(name);
  }
}

/* Same parse result over two copies of the same bytes. */
static void check_same(const struct cm_http_msg *a, const char *abuf, const struct cm_http_msg *b,
                       const char *bbuf) {
#define SAME(f) FUZZ_CHECK(fuzz_ofs(a->f, abuf) == fuzz_ofs(b->f, bbuf) && a->f.len == b->f.len)
  SAME(method);
  SAME(uri);
  SAME(query);
  SAME(proto);
  SAME(head);
  SAME(message);
  FUZZ_CHECK(a->num_headers == b->num_headers);
  for (size_t i = 0; i < a->num_headers; i++) {
    SAME(headers[i].name);
    SAME(headers[i].value);
  }
#undef SAME
  FUZZ_CHECK(a->content_length == b->content_length && a->is_response == b->is_response);
  FUZZ_CHECK(a->is_chunked == b->is_chunked && a->keep_alive == b->keep_alive);
}

/* cm_http_msg_copy into an exact-size buffer: the same message, every slice
 * at the same place relative to the message's start. */
static void check_copy(const struct cm_http_msg *hm) {
  struct cm_http_msg cp;
  char *buf = fuzz_dup(hm->message.buf, hm->message.len, 0);
  cm_http_msg_copy(&cp, hm, buf);
  FUZZ_CHECK(cp.message.buf == buf && cp.message.len == hm->message.len);
  check_same(&cp, buf, hm, hm->message.buf);
  free(buf);
}

/* Parse the first k bytes (an exact-size copy) against the full result r. */
static void check_prefix(const uint8_t *data, size_t k, int r, const struct cm_http_msg *full) {
  struct cm_http_msg hm;
  char *buf = fuzz_dup(data, k, 0);
  int rp = cm_http_parse(buf, k, &hm);
  FUZZ_CHECK(rp >= -1 && (size_t) (rp < 0 ? 0 : rp) <= k);
  if (r > 0 && k < (size_t) r) FUZZ_CHECK(rp == 0); /* not all there: wait, never fail */
  if (r > 0 && k >= (size_t) r) FUZZ_CHECK(rp == r);
  if (rp > 0) FUZZ_CHECK(rp == r); /* a prefix cannot complete differently */
  if (rp < 0) FUZZ_CHECK(r < 0);   /* an error never heals with more bytes */
  if (rp > 0) check_same(&hm, buf, full, (const char *) data);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct cm_http_msg hm;
  const char *buf = (const char *) data;
  int r = cm_http_parse(buf, size, &hm);
  FUZZ_CHECK(r >= -1 && (size_t) (r < 0 ? 0 : r) <= size);
  if (r > 0) {
    check_success(buf, r, &hm);
    check_lookup(&hm);
    check_copy(&hm);
  }
  /* A few prefixes per input: every one would cost O(n^2) per input and
   * slow the fuzzer down more than it finds. */
  if (size > 0) check_prefix(data, size - 1, r, &hm);
  check_prefix(data, size / 2, r, &hm);
  if (r > 0) {
    check_prefix(data, (size_t) r, r, &hm);
    check_prefix(data, (size_t) r - 1, r, &hm);
  }
  return 0;
}
