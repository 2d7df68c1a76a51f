/* fuzz_multipart.c: cm_http_next_multipart (cm/http.h) on arbitrary bodies.
 *
 * The whole input is the body (an exact-size copy, so ASan sees any read
 * past it).  Checked:
 *  - every call makes progress (the returned offset grows), so the caller's
 *    loop ends; every slice of a part lies inside the body, before the next
 *    delimiter; at the end the part is all empty;
 *  - a part counts only once its ending delimiter is there: parsing a prefix
 *    of the body yields the first parts of the whole body, identical, and
 *    never one more;
 *  - an offset at or past the end returns 0 without reading. */
#include <stddef.h>
#include <stdint.h>

#include "cm/http.h"
#include "fuzz_util.h"

#define MAX_PARTS 4096 /* more than any input of libFuzzer's sizes can hold */

struct seen {
  size_t next;
  struct cm_http_part part;
};

static bool empty_part(const struct cm_http_part *p) {
  return p->name.len == 0 && p->name.buf == NULL && p->filename.len == 0 && p->filename.buf == NULL &&
         p->body.len == 0 && p->body.buf == NULL;
}

/* Walk all parts of body[0..len); returns how many, recorded in `out`. */
static size_t walk(const char *buf, size_t len, struct seen *out) {
  struct cm_str body = cm_str_n(buf, len);
  size_t ofs = 0, n = 0;
  for (;;) {
    struct cm_http_part p;
    size_t next = cm_http_next_multipart(body, ofs, &p);
    if (next == 0) {
      FUZZ_CHECK(empty_part(&p));
      return n;
    }
    FUZZ_CHECK(next > ofs && next <= len && n < MAX_PARTS);
    FUZZ_CHECK(fuzz_slice_in(p.name, buf, buf + next) && fuzz_slice_in(p.filename, buf, buf + next));
    FUZZ_CHECK(fuzz_slice_in(p.body, buf + ofs, buf + next));
    out[n].next = next;
    out[n].part = p;
    n++;
    ofs = next;
  }
}

static bool same(struct cm_str a, const char *abuf, struct cm_str b, const char *bbuf) {
  return a.len == b.len && fuzz_ofs(a, abuf) == fuzz_ofs(b, bbuf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static struct seen full[MAX_PARTS], pre[MAX_PARTS];
  char *buf = fuzz_dup(data, size, 0);
  size_t n = walk(buf, size, full);

  /* A prefix: the first parts again, identical, never more. */
  size_t k = size / 2 + (size > 0 ? data[0] % (size / 2 + 1) : 0);
  char *half = fuzz_dup(data, k, 0);
  size_t m = walk(half, k, pre);
  FUZZ_CHECK(m <= n);
  for (size_t i = 0; i < m; i++) {
    FUZZ_CHECK(pre[i].next == full[i].next);
    FUZZ_CHECK(same(pre[i].part.name, half, full[i].part.name, buf));
    FUZZ_CHECK(same(pre[i].part.filename, half, full[i].part.filename, buf));
    FUZZ_CHECK(same(pre[i].part.body, half, full[i].part.body, buf));
  }

  struct cm_http_part p;
  FUZZ_CHECK(cm_http_next_multipart(cm_str_n(buf, size), size, &p) == 0 && empty_part(&p));
  FUZZ_CHECK(cm_http_next_multipart(cm_str_n(buf, size), size + 1, &p) == 0 && empty_part(&p));
  free(half);
  free(buf);
  return 0;
}
