/* json.c: the JSON scanner of cm/json.h.  One forward pass over the
 * document with an explicit stack of open containers (no recursion), which
 * validates the grammar of RFC 8259 and notes where the value at the path
 * starts and ends.  Matching the path costs nothing extra: each container
 * remembers whether it lies on the path and which path segment its children
 * are compared with. */
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cm/json.h"
#include "internal.h"

/* An open container. */
struct frame {
  char kind;    /* '{' or '[' */
  bool on_path; /* it is the value at a prefix of the path */
  size_t index; /* number of the element being scanned, for '[' */
  size_t seg;   /* offset in the path of the segment its children must match */
};

struct scan {
  const char *s; /* the document */
  size_t n, i;   /* its length, and the cursor */
  const char *path;
  struct cm_str key; /* the key of the member about to be scanned */
  struct frame st[CM_JSON_MAX_DEPTH];
  size_t depth;     /* frames in use */
  bool in_target;   /* inside the target container, not yet closed */
  bool found;       /* the target is complete: tok_start/tok_len are set */
  size_t tok_start; /* offset of the target */
  size_t tok_len;   /* its length, once found */
  size_t tok_depth; /* the depth of the target container, while in_target */
};

/* What the value about to be scanned is to the path. */
enum role { OTHER, TARGET, ON_PATH };

/* Results of the scanning steps, beside the negative CM_JSON_* codes. */
enum { DONE = 0, OPENED = 1, END = 2 };

/* RFC 8259 section 2: the four whitespace bytes. */
static void skip_ws(struct scan *sc) {
  while (sc->i < sc->n) {
    char ch = sc->s[sc->i];
    if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
    sc->i++;
  }
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int hexval(char ch) {
  if (is_digit(ch)) return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* ---- path ----------------------------------------------------------------- */

/* Digits of "[i]" that surely fit in a size_t, with room for one more. */
#define MAX_INDEX_DIGITS 18

/* Parse the index at path[pos] (just after '['); *end becomes the offset
 * after ']'.  False if it is not 1..18 digits and a ']'. */
static bool parse_index(const char *path, size_t pos, size_t *index, size_t *end) {
  size_t v = 0, k = pos;
  while (is_digit(path[k]) && k - pos < MAX_INDEX_DIGITS) v = v * 10 + (size_t) (path[k++] - '0');
  if (k == pos || path[k] != ']') return false;
  *index = v;
  *end = k + 1;
  return true;
}

/* The key starting at path[pos] (just after '.') runs to '.', '[' or NUL. */
static size_t key_len(const char *path, size_t pos) { return strcspn(path + pos, ".["); }

static bool path_ok(const char *path) {
  size_t pos = 1, idx;
  if (path == NULL || path[0] != '$') return false;
  while (path[pos] != '\0') {
    if (path[pos] == '.') {
      pos += 1 + key_len(path, pos + 1);
    } else if (path[pos] != '[' || !parse_index(path, pos + 1, &idx, &pos)) {
      return false;
    }
  }
  return true;
}

/* Does the child being scanned in `f` match the path segment at f->seg?
 * On a match *next is the offset of the following segment. */
static bool seg_match(const struct scan *sc, const struct frame *f, size_t *next) {
  const char *path = sc->path;
  size_t pos = f->seg;
  if (path[pos] == '.') {
    size_t n = key_len(path, pos + 1);
    *next = pos + 1 + n;
    return f->kind == '{' && sc->key.len == n && memcmp(sc->key.buf, path + pos + 1, n) == 0;
  }
  size_t idx;
  if (!parse_index(path, pos + 1, &idx, next)) return false; /* path_ok ran: not reached */
  return f->kind == '[' && f->index == idx;
}

/* The role of the value at the cursor; for ON_PATH, *next is the path
 * offset its own children are matched against. */
static enum role role_of(const struct scan *sc, size_t *next) {
  if (sc->found || sc->in_target) return OTHER; /* the first match wins */
  if (sc->depth == 0) {
    *next = 1; /* just after '$' */
  } else {
    const struct frame *f = &sc->st[sc->depth - 1];
    if (!f->on_path || !seg_match(sc, f, next)) return OTHER;
  }
  return sc->path[*next] == '\0' ? TARGET : ON_PATH;
}

/* ---- tokens --------------------------------------------------------------- */

/* The escape after a backslash at s[i-1]; returns the offset after it, or 0. */
static size_t scan_escape(const struct scan *sc, size_t i) {
  if (i >= sc->n) return 0;
  if (sc->s[i] != '\0' && strchr("\"\\/bfnrt", sc->s[i]) != NULL) return i + 1;
  if (sc->s[i] != 'u' || sc->n - i < 5) return 0;
  for (size_t k = 1; k <= 4; k++)
    if (hexval(sc->s[i + k]) < 0) return 0;
  return i + 5;
}

/* A string at the cursor (which is on '"'); leaves the cursor after it.
 * Raw control characters are not allowed in JSON strings (RFC 8259 7). */
static int scan_string(struct scan *sc) {
  size_t i = sc->i + 1;
  while (i < sc->n) {
    unsigned char ch = (unsigned char) sc->s[i];
    if (ch == '"') {
      sc->i = i + 1;
      return DONE;
    }
    if (ch < 0x20) return CM_JSON_INVALID;
    i = ch == '\\' ? scan_escape(sc, i + 1) : i + 1;
    if (i == 0) return CM_JSON_INVALID;
  }
  return CM_JSON_INVALID;
}

static size_t skip_digits(const struct scan *sc, size_t i) {
  while (i < sc->n && is_digit(sc->s[i])) i++;
  return i;
}

/* RFC 8259 section 6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int scan_number(struct scan *sc) {
  size_t i = sc->i, d;
  if (i < sc->n && sc->s[i] == '-') i++;
  if (i >= sc->n || !is_digit(sc->s[i])) return CM_JSON_INVALID;
  i = sc->s[i] == '0' ? i + 1 : skip_digits(sc, i); /* no leading zeros */
  if (i < sc->n && sc->s[i] == '.') {
    d = skip_digits(sc, i + 1);
    if (d == i + 1) return CM_JSON_INVALID;
    i = d;
  }
  if (i < sc->n && (sc->s[i] == 'e' || sc->s[i] == 'E')) {
    i++;
    if (i < sc->n && (sc->s[i] == '+' || sc->s[i] == '-')) i++;
    d = skip_digits(sc, i);
    if (d == i) return CM_JSON_INVALID;
    i = d;
  }
  sc->i = i;
  return DONE;
}

static int scan_literal(struct scan *sc, const char *word) {
  size_t n = strlen(word);
  if (sc->n - sc->i < n || memcmp(sc->s + sc->i, word, n) != 0) return CM_JSON_INVALID;
  sc->i += n;
  return DONE;
}

/* A member's key and its ':'; the cursor is on the key's opening quote. */
static int scan_key(struct scan *sc) {
  skip_ws(sc);
  if (sc->i >= sc->n || sc->s[sc->i] != '"') return CM_JSON_INVALID;
  size_t start = sc->i + 1;
  int rc = scan_string(sc);
  if (rc < 0) return rc;
  sc->key = cm_str_n(sc->s + start, sc->i - 1 - start);
  skip_ws(sc);
  if (sc->i >= sc->n || sc->s[sc->i] != ':') return CM_JSON_INVALID;
  sc->i++;
  return DONE;
}

static int scan_scalar(struct scan *sc) {
  switch (sc->s[sc->i]) {
    case '"': return scan_string(sc);
    case 't': return scan_literal(sc, "true");
    case 'f': return scan_literal(sc, "false");
    case 'n': return scan_literal(sc, "null");
    default: return scan_number(sc);
  }
}

/* ---- structure ------------------------------------------------------------ */

/* Pop the innermost container, whose closing byte was just consumed. */
static void close_container(struct scan *sc) {
  if (sc->in_target && sc->tok_depth == sc->depth) {
    sc->tok_len = sc->i - sc->tok_start;
    sc->in_target = false;
    sc->found = true;
  }
  sc->depth--;
}

/* Open a container at the cursor.  Returns DONE if it was empty (and is
 * closed again), OPENED if its first element or member value comes next. */
static int open_container(struct scan *sc, enum role role, size_t next) {
  char kind = sc->s[sc->i++];
  if (sc->depth == CM_JSON_MAX_DEPTH) return CM_JSON_TOO_DEEP;
  struct frame *f = &sc->st[sc->depth++];
  *f = (struct frame){kind, role == ON_PATH, 0, next};
  if (role == TARGET) {
    sc->in_target = true;
    sc->tok_depth = sc->depth;
  }
  skip_ws(sc);
  if (sc->i < sc->n && sc->s[sc->i] == (kind == '{' ? '}' : ']')) {
    sc->i++;
    close_container(sc);
    return DONE;
  }
  return kind == '{' ? (scan_key(sc) < 0 ? CM_JSON_INVALID : OPENED) : OPENED;
}

/* One value at the cursor: a whole scalar, or the opening of a container. */
static int scan_value(struct scan *sc) {
  size_t next = 0, start;
  skip_ws(sc);
  if (sc->i >= sc->n) return CM_JSON_INVALID;
  enum role role = role_of(sc, &next);
  start = sc->i;
  if (role == TARGET) sc->tok_start = start;
  if (sc->s[start] == '{' || sc->s[start] == '[') return open_container(sc, role, next);
  int rc = scan_scalar(sc);
  if (rc == DONE && role == TARGET) {
    sc->tok_len = sc->i - start;
    sc->found = true;
  }
  return rc;
}

/* What follows a complete value: closing brackets, then a ',' and the next
 * key (OPENED: scan the next value), or the end of the document (END). */
static int after_value(struct scan *sc) {
  for (;;) {
    skip_ws(sc);
    if (sc->depth == 0) return sc->i == sc->n ? END : CM_JSON_INVALID;
    if (sc->i >= sc->n) return CM_JSON_INVALID;
    struct frame *f = &sc->st[sc->depth - 1];
    char ch = sc->s[sc->i++];
    if (ch == ',') {
      f->index++;
      return f->kind == '{' ? (scan_key(sc) < 0 ? CM_JSON_INVALID : OPENED) : OPENED;
    }
    if (ch != (f->kind == '{' ? '}' : ']')) return CM_JSON_INVALID;
    close_container(sc);
  }
}

static int scan_document(struct scan *sc) {
  for (;;) {
    int rc = scan_value(sc);
    if (rc == DONE) rc = after_value(sc);
    if (rc < 0) return rc;
    if (rc == END) return DONE;
  }
}

int cm_json_get(struct cm_str json, const char *path, int *toklen) {
  struct scan sc = {.s = json.buf, .n = json.len, .path = path};
  if (!path_ok(path)) return CM_JSON_BAD_PATH;
  if (json.len > INT_MAX || (json.buf == NULL && json.len > 0)) return CM_JSON_INVALID;
  int rc = scan_document(&sc);
  if (rc < 0) return rc;
  if (!sc.found) return CM_JSON_NOT_FOUND;
  if (toklen != NULL) *toklen = (int) sc.tok_len;
  return (int) sc.tok_start;
}

/* ---- typed getters -------------------------------------------------------- */

/* The token at `path`, or false. */
static bool token(struct cm_str json, const char *path, struct cm_str *tok) {
  int len, ofs = cm_json_get(json, path, &len);
  if (ofs < 0) return false;
  *tok = cm_str_n(json.buf + ofs, (size_t) len);
  return true;
}

/* A "C" locale for strtod_l: the process locale may use ',' as the decimal
 * point (a Python program that called setlocale), JSON never does. */
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0); }

#define NUM_COPY 256 /* bytes of a number copied when nothing follows it */

/* Convert a validated number token.  strtod_l stops at the first byte that
 * cannot continue a number; when the token ends the document there is no
 * such byte inside the caller's memory, so the token is copied first. */
static bool to_double(struct cm_str json, struct cm_str tok, double *out) {
  char copy[NUM_COPY];
  const char *p = tok.buf;
  pthread_once(&c_locale_once, make_c_locale);
  if (c_locale == (locale_t) 0) return false;
  if (tok.buf + tok.len == json.buf + json.len) {
    if (tok.len >= sizeof(copy)) return false;
    memcpy(copy, tok.buf, tok.len);
    copy[tok.len] = '\0';
    p = copy;
  }
  *out = strtod_l(p, NULL, c_locale);
  return true;
}

static bool is_number(struct cm_str tok) { return tok.buf[0] == '-' || is_digit(tok.buf[0]); }

bool cm_json_get_num(struct cm_str json, const char *path, double *out) {
  struct cm_str tok;
  if (!token(json, path, &tok) || !is_number(tok)) return false;
  return to_double(json, tok, out);
}

/* An integer token without fraction or exponent, read exactly; false on
 * overflow.  Accumulating downward covers LONG_MIN, whose magnitude is one
 * more than LONG_MAX. */
static bool exact_long(struct cm_str tok, long *out) {
  bool neg = tok.buf[0] == '-';
  long v = 0;
  for (size_t i = neg ? 1 : 0; i < tok.len; i++) {
    int d = tok.buf[i] - '0';
    if (v < (LONG_MIN + d) / 10) return false;
    v = v * 10 - d;
  }
  if (!neg && v == LONG_MIN) return false;
  *out = neg ? v : -v;
  return true;
}

bool cm_json_get_long(struct cm_str json, const char *path, long *out) {
  struct cm_str tok;
  double d;
  if (!token(json, path, &tok) || !is_number(tok)) return false;
  if (memchr(tok.buf, '.', tok.len) == NULL && memchr(tok.buf, 'e', tok.len) == NULL &&
      memchr(tok.buf, 'E', tok.len) == NULL)
    return exact_long(tok, out);
  if (!to_double(json, tok, &d)) return false;
  /* -(double) LONG_MIN is 2^63 exactly, while LONG_MAX has no double of its
   * own; written this way NaN fails too. */
  if (!(d >= (double) LONG_MIN && d < -(double) LONG_MIN)) return false;
  *out = (long) d; /* the conversion truncates toward zero (C11 6.3.1.4) */
  return true;
}

bool cm_json_get_bool(struct cm_str json, const char *path, bool *out) {
  struct cm_str tok;
  if (!token(json, path, &tok) || !(cm_str_eq(tok, "true") || cm_str_eq(tok, "false"))) return false;
  *out = cm_str_eq(tok, "true");
  return true;
}

long cm_json_get_str(struct cm_str json, const char *path, char *buf, size_t len) {
  struct cm_str tok;
  if (!token(json, path, &tok) || tok.buf[0] != '"') return -1;
  return cm_json_unescape(cm_str_n(tok.buf + 1, tok.len - 2), buf, len);
}

/* ---- unescaping ----------------------------------------------------------- */

/* The 4 hex digits at s[i..i+4) as a code unit, or -1. */
static long hex4(struct cm_str s, size_t i) {
  long v = 0;
  if (s.len < 4 || i > s.len - 4) return -1;
  for (size_t k = 0; k < 4; k++) {
    int h = hexval(s.buf[i + k]);
    if (h < 0) return -1;
    v = v << 4 | h;
  }
  return v;
}

/* Read the \u escape whose 'u' is at s[i] (and a low surrogate after a high
 * one, RFC 8259 7); returns the code point and sets *end, or -1. */
static long code_point(struct cm_str s, size_t i, size_t *end) {
  long hi = hex4(s, i + 1), lo;
  *end = i + 5;
  if (hi < 0 || (hi >= 0xDC00 && hi <= 0xDFFF)) return -1;
  if (hi < 0xD800 || hi > 0xDBFF) return hi;
  if (*end + 1 >= s.len || s.buf[*end] != '\\' || s.buf[*end + 1] != 'u') return -1;
  lo = hex4(s, *end + 2);
  if (lo < 0xDC00 || lo > 0xDFFF) return -1;
  *end += 6;
  return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
}

/* Encode `cp` (at most 0x10FFFF) as UTF-8 into out; returns the byte count. */
static size_t utf8(long cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char) cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char) (0xC0 | cp >> 6);
    out[1] = (char) (0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char) (0xE0 | cp >> 12);
    out[1] = (char) (0x80 | (cp >> 6 & 0x3F));
    out[2] = (char) (0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char) (0xF0 | cp >> 18);
  out[1] = (char) (0x80 | (cp >> 12 & 0x3F));
  out[2] = (char) (0x80 | (cp >> 6 & 0x3F));
  out[3] = (char) (0x80 | (cp & 0x3F));
  return 4;
}

/* Decode the escape whose backslash is at s[i] into out; returns the count
 * of bytes written and sets *end, or returns 0 for a bad escape. */
static size_t unescape_one(struct cm_str s, size_t i, size_t *end, char out[4]) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  const char *p;
  if (i + 1 >= s.len) return 0;
  if (s.buf[i + 1] == 'u') {
    long cp = code_point(s, i + 1, end);
    return cp < 0 ? 0 : utf8(cp, out);
  }
  p = s.buf[i + 1] == '\0' ? NULL : strchr(from, s.buf[i + 1]);
  if (p == NULL) return 0;
  out[0] = to[p - from];
  *end = i + 2;
  return 1;
}

long cm_json_unescape(struct cm_str s, char *buf, size_t len) {
  size_t i = 0, j = 0, n, end;
  char tmp[4];
  if (len == 0 || s.len > LONG_MAX) return -1;
  while (i < s.len) {
    if (s.buf[i] != '\\') {
      tmp[0] = s.buf[i];
      n = 1;
      end = i + 1;
    } else if ((n = unescape_one(s, i, &end, tmp)) == 0) {
      return -1;
    }
    if (len - 1 - j < n) return -1; /* keep room for the NUL */
    memcpy(buf + j, tmp, n);
    j += n;
    i = end;
  }
  buf[j] = '\0';
  return (long) j;
}
