/* http_vars.c: pure helpers over HTTP text: percent-decoding, variables in a
 * "a=1&b=2" string, and parameters inside a header value.  No allocation, no
 * connection; results are slices into the caller's bytes (cm/http.h). */
#include <string.h>

#include "internal.h"

static struct cm_str slice(const char *buf, size_t len) { return (struct cm_str){buf, len}; }

/* Value of one hex digit, or -1. */
static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char) (ch - 'A' + 'a') : ch; }

/* ASCII case-insensitive equality of n bytes. */
static bool caseeq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

long cm_http_url_decode(const char *src, size_t len, char *dst, size_t size, bool form) {
  size_t j = 0;
  if (size == 0) return -1;
  for (size_t i = 0; i < len; i++, j++) {
    char ch = src[i];
    if (j + 1 >= size) return -1; /* keep room for this byte and the NUL */
    if (ch == '%') {
      /* RFC 3986 2.1: exactly two hex digits; a cut or bad escape is an
       * error rather than a literal '%', so the caller can reject it. */
      if (len - i < 3) return -1;
      int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      ch = (char) (hi << 4 | lo);
      i += 2;
    } else if (form && ch == '+') {
      ch = ' '; /* application/x-www-form-urlencoded */
    }
    dst[j] = ch;
  }
  dst[j] = '\0';
  return (long) j;
}

bool cm_http_var(struct cm_str buf, struct cm_str name, struct cm_str *value) {
  size_t i = 0;
  if (name.len == 0 || buf.len == 0) return false;
  while (i < buf.len) {
    /* One "key=value" pair runs up to the next '&' (or the end). */
    const char *start = buf.buf + i;
    const char *amp = memchr(start, '&', buf.len - i);
    size_t n = amp != NULL ? (size_t) (amp - start) : buf.len - i;
    if (n > name.len && start[name.len] == '=' && caseeq(start, name.buf, name.len)) {
      *value = slice(start + name.len + 1, n - name.len - 1);
      return true;
    }
    i += n + 1;
  }
  return false;
}

/* Separators before a parameter name in a header value. */
static bool is_sep(char ch) { return ch == ' ' || ch == '\t' || ch == ';' || ch == ','; }

/* Index of the quote closing the quoted string that opens at `i`, or s.len
 * if it is never closed. */
static size_t closing_quote(struct cm_str s, size_t i) {
  for (i++; i < s.len; i++) {
    if (s.buf[i] == '"') return i;
    if (s.buf[i] == '\\' && i + 1 < s.len) i++; /* skip a quoted-pair, RFC 9110 5.6.4 */
  }
  return s.len;
}

/* The value starting at `v`: a quoted string without its quotes, or a token
 * running up to a separator. */
static struct cm_str param_value(struct cm_str s, size_t v) {
  size_t end;
  if (v < s.len && s.buf[v] == '"') {
    end = closing_quote(s, v);
    return slice(s.buf + v + 1, end - v - 1);
  }
  for (end = v; end < s.len && !is_sep(s.buf[end]); end++) {
  }
  return slice(s.buf + v, end - v);
}

bool cm_http_header_var(struct cm_str s, struct cm_str name, struct cm_str *value) {
  size_t i = 0;
  if (name.len == 0) return false;
  while (i < s.len) {
    if (s.buf[i] == '"') { /* a name inside a quoted value is not a name */
      i = closing_quote(s, i) + 1;
      continue;
    }
    bool at_start = i == 0 || is_sep(s.buf[i - 1]);
    if (at_start && s.len - i > name.len && s.buf[i + name.len] == '=' &&
        caseeq(s.buf + i, name.buf, name.len)) {
      *value = param_value(s, i + name.len + 1);
      return true;
    }
    i++;
  }
  return false;
}
