/* http_multipart.c: a pure parser of multipart/form-data bodies (RFC 7578,
 * framing from RFC 2046 5.1).  No allocation: parts are slices into the
 * caller's body (cm/http.h).
 *
 *   --B\r\n                         delimiter line (the body's first line)
 *   Content-Disposition: form-data; name="f"; filename="a.txt"\r\n
 *   \r\n
 *   ...content...\r\n--B\r\n        the CRLF before "--B" belongs to the delimiter
 *   ...next part...\r\n--B--\r\n    close delimiter
 *
 * The boundary B is taken from the first line rather than from the request's
 * Content-Type, so the parser needs nothing but the body. */
#include <string.h>

#include "internal.h"

#define MAX_BOUNDARY 70    /* RFC 2046 5.1.1: 1 to 70 characters */
#define NONE ((size_t) -1) /* "not found" offset */

/* Transport padding after a boundary (RFC 2046 5.1.1, LWSP). */
static bool is_lwsp(char ch) { return ch == ' ' || ch == '\t'; }

static struct cm_str slice(const char *p, size_t n) { return n == 0 ? cm_str_n(NULL, 0) : cm_str_n(p, n); }

/* Offset of the first `needle` in hay[from..), or NONE. */
static size_t find(struct cm_str hay, size_t from, const char *needle, size_t nlen) {
  if (from >= hay.len) return NONE;
  const char *p = memmem(hay.buf + from, hay.len - from, needle, nlen);
  return p == NULL ? NONE : (size_t) (p - hay.buf);
}

/* The boundary: the first line without its leading "--" and padding. */
static bool boundary_of(struct cm_str body, struct cm_str *b) {
  size_t eol = find(body, 0, "\r\n", 2), end = eol;
  if (eol == NONE || eol < 3 || memcmp(body.buf, "--", 2) != 0) return false;
  while (end > 2 && is_lwsp(body.buf[end - 1])) end--;
  if (end == 2 || end - 2 > MAX_BOUNDARY) return false;
  *b = cm_str_n(body.buf + 2, end - 2);
  return true;
}

enum { NOT_DELIM, DELIM, CLOSE };

/* What the bytes at d are: a delimiter line "--B" LWSP* CRLF (then *after is
 * the offset after its CRLF), the close delimiter "--B--", or neither. */
static int delim_kind(struct cm_str body, struct cm_str b, size_t d, size_t *after) {
  size_t i = d + 2 + b.len;
  if (i > body.len || memcmp(body.buf + d, "--", 2) != 0 || memcmp(body.buf + d + 2, b.buf, b.len) != 0)
    return NOT_DELIM;
  if (body.len - i >= 2 && memcmp(body.buf + i, "--", 2) == 0) return CLOSE;
  while (i < body.len && is_lwsp(body.buf[i])) i++;
  if (body.len - i < 2 || memcmp(body.buf + i, "\r\n", 2) != 0) return NOT_DELIM;
  *after = i + 2;
  return DELIM;
}

/* The first "\r\n--B" at or after `from` that starts a delimiter (or the
 * close delimiter); returns the offset of its CRLF, or NONE.  "--B" followed
 * by other bytes is content, not a delimiter, so the search goes on. */
static size_t next_delim(struct cm_str body, struct cm_str b, const char *needle, size_t from) {
  size_t after;
  for (size_t x = find(body, from, needle, 4 + b.len); x != NONE; x = find(body, x + 1, needle, 4 + b.len)) {
    if (delim_kind(body, b, x + 2, &after) != NOT_DELIM) return x;
  }
  return NONE;
}

/* Offset where the content starts: after the blank line ending the headers
 * at h, which must come before the part's end x.  NONE if there is none. */
static size_t headers_end(struct cm_str body, size_t h, size_t x) {
  if (x - h >= 2 && memcmp(body.buf + h, "\r\n", 2) == 0) return h + 2; /* no headers */
  size_t e = find(cm_str_n(body.buf, x), h, "\r\n\r\n", 4);
  return e == NONE ? NONE : e + 4;
}

static struct cm_str trim(const char *p, size_t n) {
  while (n > 0 && is_lwsp(*p)) p++, n--;
  while (n > 0 && is_lwsp(p[n - 1])) n--;
  return cm_str_n(p, n);
}

/* Fill name and filename from the Content-Disposition header found in the
 * header lines body[h..e) (each ending in CRLF). */
static void parse_headers(struct cm_str body, size_t h, size_t e, struct cm_http_part *part) {
  while (h < e) {
    size_t eol = find(cm_str_n(body.buf, e), h, "\r\n", 2);
    if (eol == NONE) eol = e;
    const char *line = body.buf + h, *colon = memchr(line, ':', eol - h);
    if (colon != NULL &&
        cm_str_casecmp(trim(line, (size_t) (colon - line)), cm_str_c("Content-Disposition"))) {
      struct cm_str v = trim(colon + 1, (size_t) (body.buf + eol - colon - 1)), s;
      if (cm_http_header_var(v, cm_str_c("name"), &s)) part->name = slice(s.buf, s.len);
      if (cm_http_header_var(v, cm_str_c("filename"), &s)) part->filename = slice(s.buf, s.len);
    }
    h = eol + 2;
  }
}

size_t cm_http_next_multipart(struct cm_str body, size_t offset, struct cm_http_part *part) {
  char needle[4 + MAX_BOUNDARY];
  struct cm_str b;
  size_t d, h = 0, x, c;
  *part = (struct cm_http_part){{NULL, 0}, {NULL, 0}, {NULL, 0}};
  if (!boundary_of(body, &b) || offset > body.len) return 0;
  memcpy(needle, "\r\n--", 4);
  memcpy(needle + 4, b.buf, b.len);
  /* The part starts at the first delimiter at or after `offset`. */
  d = offset == 0 ? 0 : next_delim(body, b, needle, offset < 2 ? 0 : offset - 2);
  if (d == NONE) return 0;
  if (offset != 0) d += 2;
  if (delim_kind(body, b, d, &h) != DELIM) return 0;
  /* It ends where the next delimiter begins; a part without one is cut. */
  if ((x = next_delim(body, b, needle, h)) == NONE) return 0;
  if ((c = headers_end(body, h, x)) == NONE) return 0;
  parse_headers(body, h, c - 2, part);
  part->body = slice(body.buf + c, x - c);
  return x + 2;
}
