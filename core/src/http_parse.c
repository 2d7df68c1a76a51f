/* http_parse.c: the pure HTTP/1.1 message parser (RFC 9112).
 *
 * Bytes in, slices out: no allocation, no connection, no I/O.  Every read
 * goes through a cursor that knows where the input ends, so a truncated
 * message is reported as "need more" (0), never read past; the tests place
 * each input right before a guard page and the fuzzer hammers it.
 *
 * The parser validates as far as the bytes go, so garbage is rejected on the
 * first bytes instead of after the recv buffer filled up. */
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "internal.h"

/* Results of the small parsing steps below, same convention as the API. */
enum { MORE = 0, OK = 1, ERR = -1 };

/* Framing headers seen so far (RFC 9112 §6, SPEC 2.5.4 duplicates). */
enum {
  SEEN_CL = 1,
  SEEN_TE = 2,
  SEEN_CONN = 4,
  SEEN_AUTH = 8,
  SEEN_COOKIE = 16,
  SEEN_HOST = 32,
};

struct cursor {
  const char *p;   /* next byte */
  const char *end; /* one past the last byte we may look at */
};

/* What the header loop learns beyond the slices. */
struct framing {
  unsigned seen;   /* SEEN_* bits */
  bool te_other;   /* a transfer coding other than a final "chunked" */
  bool conn_close; /* "Connection: close" */
  bool conn_keep;  /* "Connection: keep-alive" */
};

/* RFC 9110 §5.6.2: tchar, the characters of a token. */
static bool is_tchar(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) return true;
  return ch == '-' || (ch != 0 && strchr("!#$%&'*+.^_`|~", ch) != NULL); /* '-': common */
}

/* Field values and reason phrases: HTAB, SP, VCHAR, obs-text (RFC 9110
 * §5.5, RFC 9112 §4).  Everything else is a control character. */
static bool is_text(unsigned char ch) { return ch == '\t' || (ch >= 0x20 && ch != 0x7f); }

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

/* Is `s` the literal `lit`, ignoring ASCII case?  The length is known at
 * compile time, so most names are told apart without reading a byte: this
 * runs six times for every header line. */
#define name_is(s, lit) name_is_n((s), (lit), sizeof(lit) - 1)
static bool name_is_n(struct cm_str s, const char *lit, size_t n) {
  return s.len == n && cm_str_casecmp(s, cm_str_n(lit, n));
}

/* A line ending: CRLF, or a bare LF (RFC 9112 §2.2 lets a recipient accept
 * it).  A CR not followed by LF is an error (§2.2: never a line break). */
static int eol(struct cursor *s) {
  if (s->p == s->end) return MORE;
  if (*s->p == '\n') {
    s->p++;
    return OK;
  }
  if (*s->p != '\r') return ERR;
  if (s->p + 1 == s->end) return MORE;
  if (s->p[1] != '\n') return ERR;
  s->p += 2;
  return OK;
}

static int expect(struct cursor *s, char ch) {
  if (s->p == s->end) return MORE;
  if (*s->p != ch) return ERR;
  s->p++;
  return OK;
}

/* 1*tchar; leaves the cursor on the byte after it. */
static int token(struct cursor *s, struct cm_str *out) {
  const char *start = s->p;
  while (s->p < s->end && is_tchar((unsigned char) *s->p)) s->p++;
  if (s->p == s->end) return MORE;
  if (s->p == start) return ERR;
  *out = cm_str_n(start, (size_t) (s->p - start));
  return OK;
}

/* Bytes up to the end of the line that satisfy is_text(); the line ending
 * itself is left for eol(). */
static int text(struct cursor *s, struct cm_str *out) {
  const char *start = s->p;
  while (s->p < s->end && *s->p != '\r' && *s->p != '\n') {
    if (!is_text((unsigned char) *s->p)) return ERR;
    s->p++;
  }
  if (s->p == s->end) return MORE;
  *out = cm_str_n(start, (size_t) (s->p - start));
  return OK;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3).  `*v11` tells
 * whether persistence is the default (1.1 and later). */
static int version(struct cursor *s, struct cm_str *out, bool *v11) {
  static const char shape[] = "HTTP/9.9"; /* '9' stands for any digit */
  for (size_t i = 0; i < sizeof(shape) - 1; i++) {
    if (s->p + i == s->end) return MORE;
    char ch = s->p[i];
    bool good = shape[i] == '9' ? (ch >= '0' && ch <= '9') : ch == shape[i];
    if (!good) return ERR;
  }
  *out = cm_str_n(s->p, 8);
  *v11 = s->p[5] > '1' || (s->p[5] == '1' && s->p[7] >= '1');
  s->p += 8;
  return OK;
}

/* request-target: any run of visible bytes (RFC 9112 §3.2); the forms
 * (origin, absolute, authority for CONNECT, "*") are the application's
 * business.  obs-text is let through: clients do send raw UTF-8. */
static int target(struct cursor *s, struct cm_str *out) {
  const char *start = s->p;
  while (s->p < s->end && (unsigned char) *s->p > 0x20 && *s->p != 0x7f) s->p++;
  if (s->p == s->end) return MORE;
  if (s->p == start) return ERR;
  *out = cm_str_n(start, (size_t) (s->p - start));
  return OK;
}

static void split_query(struct cm_str t, struct cm_http_msg *hm) {
  const char *q = memchr(t.buf, '?', t.len);
  if (q == NULL) {
    hm->uri = t;
    return;
  }
  hm->uri = cm_str_n(t.buf, (size_t) (q - t.buf));
  hm->query = cm_str_n(q + 1, t.len - hm->uri.len - 1);
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3). */
static int request_line(struct cursor *s, struct cm_http_msg *hm, bool *v11) {
  struct cm_str t;
  int r;
  if ((r = token(s, &hm->method)) != OK) return r;
  if ((r = expect(s, ' ')) != OK) return r;
  if ((r = target(s, &t)) != OK) return r;
  if ((r = expect(s, ' ')) != OK) return r;
  if ((r = version(s, &hm->proto, v11)) != OK) return r;
  if ((r = eol(s)) != OK) return r;
  split_query(t, hm);
  return OK;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ]
 * (RFC 9112 §4); a missing second SP is tolerated, as most clients do.
 * Mapped as the API says: method = version, uri = code, proto = reason. */
static int status_line(struct cursor *s, struct cm_http_msg *hm, bool *v11) {
  int r;
  if ((r = version(s, &hm->method, v11)) != OK) return r;
  if ((r = expect(s, ' ')) != OK) return r;
  for (int i = 0; i < 3; i++) {
    if (s->p + i == s->end) return MORE;
    if (s->p[i] < '0' || s->p[i] > '9') return ERR;
  }
  hm->uri = cm_str_n(s->p, 3);
  s->p += 3;
  if (s->p == s->end) return MORE;
  if (*s->p == ' ') s->p++;
  if ((r = text(s, &hm->proto)) != OK) return r;
  if ((r = eol(s)) != OK) return r;
  hm->is_response = true;
  return OK;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5).  No
 * whitespace is allowed between name and colon (§5.1: reject, it was a
 * smuggling vector). */
static int field_line(struct cursor *s, struct cm_str *name, struct cm_str *value) {
  int r;
  if ((r = token(s, name)) != OK) return r;
  if ((r = expect(s, ':')) != OK) return r;
  while (s->p < s->end && is_ows(*s->p)) s->p++;
  if ((r = text(s, value)) != OK) return r;
  while (value->len > 0 && is_ows(value->buf[value->len - 1])) value->len--;
  return eol(s);
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6).  A repeated header is refused
 * even with the same value: RFC 9110 lets a recipient reject it, SPEC 2.5.4
 * does, and a proxy in front of us might have framed it otherwise
 * (RFC 9112 §6.3, request smuggling). */
static int content_length(struct cm_str v, struct cm_http_msg *hm, struct framing *f) {
  int64_t n = 0;
  if (v.len == 0) return ERR;
  for (size_t i = 0; i < v.len; i++) {
    if (v.buf[i] < '0' || v.buf[i] > '9') return ERR;
    if (n > (INT64_MAX - 9) / 10) return ERR;
    n = n * 10 + (v.buf[i] - '0');
  }
  if (f->seen & SEEN_CL) return ERR;
  f->seen |= SEEN_CL;
  hm->content_length = n;
  return OK;
}

/* The next element of a comma-separated list (RFC 9110 §5.6.1), trimmed;
 * empty elements are skipped.  Returns false at the end of the list. */
static bool list_next(struct cm_str *rest, struct cm_str *item) {
  while (rest->len > 0) {
    const char *comma = memchr(rest->buf, ',', rest->len);
    size_t n = comma ? (size_t) (comma - rest->buf) : rest->len;
    *item = cm_str_n(rest->buf, n);
    rest->buf += comma ? n + 1 : n;
    rest->len -= comma ? n + 1 : n;
    while (item->len > 0 && is_ows(item->buf[0])) item->buf++, item->len--;
    while (item->len > 0 && is_ows(item->buf[item->len - 1])) item->len--;
    if (item->len > 0) return true;
  }
  return false;
}

/* Transfer-Encoding (RFC 9112 §6.1): "chunked" may only be the final
 * coding, and only once.  Parameters after ';' are ignored. */
static int transfer_encoding(struct cm_str v, struct cm_http_msg *hm, struct framing *f) {
  struct cm_str item;
  bool any = false;
  if (f->seen & SEEN_TE) return ERR; /* SPEC 2.5.4: duplicate -> error */
  f->seen |= SEEN_TE;
  while (list_next(&v, &item)) {
    const char *semi = memchr(item.buf, ';', item.len);
    if (semi != NULL) item.len = (size_t) (semi - item.buf);
    while (item.len > 0 && is_ows(item.buf[item.len - 1])) item.len--;
    if (hm->is_chunked) return ERR; /* something after "chunked" */
    hm->is_chunked = name_is(item, "chunked");
    f->te_other |= !hm->is_chunked;
    any = true;
  }
  return any ? OK : ERR;
}

/* Connection options (RFC 9110 §7.6.1): only close / keep-alive matter. */
static int connection(struct cm_str v, struct framing *f) {
  struct cm_str item;
  if (f->seen & SEEN_CONN) return ERR; /* SPEC 2.5.4 */
  f->seen |= SEEN_CONN;
  while (list_next(&v, &item)) {
    if (name_is(item, "close")) f->conn_close = true;
    if (name_is(item, "keep-alive")) f->conn_keep = true;
  }
  return OK;
}

static int once(struct framing *f, unsigned bit) {
  if (f->seen & bit) return ERR;
  f->seen |= bit;
  return OK;
}

/* Note one header.  Framing headers count even past the storage cap, or a
 * 31st Content-Length would frame the message differently for us than for
 * a proxy in front of us. */
static int field(struct cm_str name, struct cm_str value, struct cm_http_msg *hm, struct framing *f) {
  if (hm->num_headers < CM_HTTP_MAX_HEADERS) {
    hm->headers[hm->num_headers].name = name;
    hm->headers[hm->num_headers].value = value;
    hm->num_headers++;
  }
  if (name_is(name, "content-length")) return content_length(value, hm, f);
  if (name_is(name, "transfer-encoding")) return transfer_encoding(value, hm, f);
  if (name_is(name, "connection")) return connection(value, f);
  if (name_is(name, "authorization")) return once(f, SEEN_AUTH);
  if (name_is(name, "cookie")) return once(f, SEEN_COOKIE);
  /* RFC 9112 §3.2: more than one Host line is answered 400. */
  if (name_is(name, "host")) return once(f, SEEN_HOST);
  return OK;
}

/* Header lines up to and including the blank line that ends the head. */
static int fields(struct cursor *s, struct cm_http_msg *hm, struct framing *f) {
  for (;;) {
    struct cm_str name, value;
    int r;
    if (s->p == s->end) return MORE;
    if (*s->p == '\r' || *s->p == '\n') return eol(s);
    /* A line starting with whitespace is obs-fold (RFC 9112 §5.2) or
     * whitespace before the first header (§2.2): both rejected. */
    if (is_ows(*s->p)) return ERR;
    if ((r = field_line(s, &name, &value)) != OK) return r;
    if ((r = field(name, value, hm, f)) != OK) return r;
  }
}

/* Message framing once the whole head is known (RFC 9112 §6.1, §6.3). */
static int finish(struct cm_http_msg *hm, const struct framing *f, bool v11) {
  bool te = (f->seen & SEEN_TE) != 0;
  if (!hm->is_response && te) {
    /* §6.3 (4): a request whose final coding is not chunked cannot be
     * framed; §6.1: CL with TE is a smuggling attempt, refuse it. */
    if (f->te_other && !hm->is_chunked) return ERR;
    if (f->seen & SEEN_CL) return ERR;
  }
  /* §6.3 (3): in a response, Transfer-Encoding overrides Content-Length. */
  if (hm->is_response && te) hm->content_length = -1;
  hm->keep_alive = v11 ? !f->conn_close : (f->conn_keep && !f->conn_close);
  hm->has_host = (f->seen & SEEN_HOST) != 0;
  return OK;
}

/* RFC 9112 §2.2: a server SHOULD ignore empty lines before the
 * request-line (old clients send CRLF after a POST body). */
static int skip_empty_lines(struct cursor *s) {
  while (s->p < s->end && (*s->p == '\r' || *s->p == '\n')) {
    int r = eol(s);
    if (r != OK) return r;
  }
  return s->p == s->end ? MORE : OK;
}

static int parse_head(struct cursor *s, struct cm_http_msg *hm) {
  struct framing f = {0};
  bool v11 = false;
  int r;
  if ((r = skip_empty_lines(s)) != OK) return r;
  hm->head.buf = s->p;
  /* Only a response starts with "HTTP/": no method token contains '/'. */
  size_t avail = (size_t) (s->end - s->p), n = avail < 5 ? avail : 5;
  bool resp = memcmp(s->p, "HTTP/", n) == 0;
  if (resp && n < 5) return MORE;
  r = resp ? status_line(s, hm, &v11) : request_line(s, hm, &v11);
  if (r != OK) return r;
  if ((r = fields(s, hm, &f)) != OK) return r;
  return finish(hm, &f, v11);
}

int cm_http_parse(const char *buf, size_t len, struct cm_http_msg *hm) {
  /* The head length is returned as an int: a head that has not ended in
   * INT_MAX bytes is refused rather than overflowing it. */
  size_t max = len > (size_t) INT_MAX ? (size_t) INT_MAX : len;
  struct cursor s = {buf, buf + max};
  /* Everything but the header slots, which only num_headers makes valid:
   * a kilobyte less to clear for every message. */
  memset(hm, 0, offsetof(struct cm_http_msg, headers));
  memset(&hm->num_headers, 0, sizeof(*hm) - offsetof(struct cm_http_msg, num_headers));
  hm->content_length = -1;
  if (len == 0) return 0;
  int r = parse_head(&s, hm);
  if (r == MORE) return max == len ? 0 : -1;
  if (r == ERR) return -1;
  hm->head.len = (size_t) (s.p - hm->head.buf);
  hm->message = hm->head;
  return (int) (s.p - buf);
}

static int hex_digit(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') return (ch | 0x20) - 'a' + 10;
  return -1;
}

/* chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1).  The extensions carry
 * nothing we use; they are checked for control characters only. */
static int chunk_size(struct cursor *s, size_t *size) {
  size_t n = 0, digits = 0;
  for (int d; s->p < s->end && (d = hex_digit((unsigned char) *s->p)) >= 0; s->p++, digits++) {
    if (n > (size_t) (INT_MAX >> 4)) return ERR; /* could never be buffered */
    n = n * 16 + (size_t) d;
  }
  if (s->p == s->end) return MORE;
  if (digits == 0) return ERR;
  while (s->p < s->end && is_ows(*s->p)) s->p++; /* BWS before ';' */
  if (s->p < s->end && *s->p == ';') {
    struct cm_str ext;
    int r = text(s, &ext);
    if (r != OK) return r;
  }
  *size = n;
  return eol(s);
}

/* trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 §7.1.2).
 * Trailers are validated and dropped: nothing downstream asks for them. */
static int trailers(struct cursor *s) {
  for (;;) {
    struct cm_str name, value;
    int r;
    if (s->p == s->end) return MORE;
    if (*s->p == '\r' || *s->p == '\n') return eol(s);
    if ((r = field_line(s, &name, &value)) != OK) return r;
  }
}

int cm_http_dechunk(const char *buf, size_t len, size_t *data_ofs, size_t *data_len) {
  size_t max = len > (size_t) INT_MAX ? (size_t) INT_MAX : len;
  struct cursor s = {buf, buf + max};
  size_t n = 0;
  int r = chunk_size(&s, &n);
  if (r != OK) return r;
  *data_ofs = (size_t) (s.p - buf);
  *data_len = n;
  if (n > 0) {
    if ((size_t) (s.end - s.p) < n) return MORE;
    s.p += n;
    r = eol(&s); /* chunk-data is followed by CRLF */
  } else {
    r = trailers(&s);
  }
  if (r != OK) return r;
  return (int) (s.p - buf);
}

/* `s` moved from src->message to `buf`; empty if it lies elsewhere. */
static struct cm_str rebase(struct cm_str s, struct cm_str from, char *buf) {
  if (s.buf == NULL || from.buf == NULL || s.buf < from.buf || s.len > from.len ||
      (size_t) (s.buf - from.buf) > from.len - s.len)
    return cm_str_n(NULL, 0);
  return cm_str_n(buf + (s.buf - from.buf), s.len);
}

void cm_http_msg_copy(struct cm_http_msg *dst, const struct cm_http_msg *src, char *buf) {
  struct cm_str from = src->message;
  size_t n = src->num_headers < CM_HTTP_MAX_HEADERS ? src->num_headers : CM_HTTP_MAX_HEADERS;
  if (dst != src) *dst = *src;
  if (from.len > 0) memcpy(buf, from.buf, from.len);
  dst->method = rebase(src->method, from, buf);
  dst->uri = rebase(src->uri, from, buf);
  dst->query = rebase(src->query, from, buf);
  dst->proto = rebase(src->proto, from, buf);
  for (size_t i = 0; i < n; i++) {
    dst->headers[i].name = rebase(src->headers[i].name, from, buf);
    dst->headers[i].value = rebase(src->headers[i].value, from, buf);
  }
  dst->body = rebase(src->body, from, buf);
  dst->head = rebase(src->head, from, buf);
  dst->message = rebase(from, from, buf);
}

const struct cm_str *cm_http_header(const struct cm_http_msg *hm, const char *name) {
  struct cm_str want = cm_str_c(name);
  for (size_t i = 0; i < hm->num_headers; i++) {
    if (cm_str_casecmp(hm->headers[i].name, want)) return &hm->headers[i].value;
  }
  return NULL;
}

struct reason {
  int status;
  const char *text;
};

/* The IANA status code registry, with RFC 9110 §15 phrases. */
static const struct reason reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {102, "Processing"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {207, "Multi-Status"},
    {208, "Already Reported"},
    {226, "IM Used"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {305, "Use Proxy"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {418, "I'm a teapot"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {423, "Locked"},
    {424, "Failed Dependency"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {506, "Variant Also Negotiates"},
    {507, "Insufficient Storage"},
    {508, "Loop Detected"},
    {510, "Not Extended"},
    {511, "Network Authentication Required"},
};

const char *cm_http_reason(int status) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(reasons); i++) {
    if (reasons[i].status == status) return reasons[i].text;
  }
  return "";
}
