/* http_static.c: serving files and directories (cm/http_static.h, SPEC 2.6).
 *
 * A request is turned into a path in three steps: percent-decode the URI,
 * split it into segments (refusing "..", a leading "~", backslashes and
 * NUL outright: 400), then open the result only if its canonical path lies
 * inside the canonical root (symlinks may point within the root, never out
 * of it: 403).  The opened file is checked again through /proc/self/fd, so
 * a path swapped between the check and the open is caught as well.
 *
 * A file answer is built here and sent in one of two ways: small files are
 * read straight into c->send; larger ones are handed to cm_send_fd(), which
 * streams them (sendfile on plain TCP) and calls back when the last byte is
 * out, and only then is the response finished (cm_http_end). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define INLINE_MAX (64u << 10)       /* files up to this size go out in one read */
#define LISTING_MAX_ENTRIES 10000    /* a listing shows at most this many names */
#define LISTING_MAX_BYTES (8u << 20) /* ... and at most this much HTML */

/* What a response needs from the request and the options, read at once:
 * `hm` is only valid during the call. */
struct req {
  const struct cm_http_msg *hm;
  bool head;         /* HEAD: headers only (RFC 9110 §9.3.2) */
  bool gzip_ok;      /* Accept-Encoding names gzip */
  const char *extra; /* extra_headers, "" if none */
  const char *mime;  /* mime_types overrides, or NULL */
  const char *page404;
};

/* ---- a small growable string --------------------------------------------- */

struct sbuf {
  char *p;
  size_t len, cap, max; /* max: refuse to grow past it */
  bool bad;             /* out of memory or past max: the content is unusable */
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
  if (b->bad || n == 0) return;
  if (n > b->max - b->len) {
    b->bad = true;
    return;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 512;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->bad = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_fmt(struct sbuf *b, const char *fmt, ...) CM_PRINTF(2, 3);
static void sb_fmt(struct sbuf *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t) n >= sizeof(tmp)) b->bad = true; /* only short fields go here */
  else
    sb_add(b, tmp, (size_t) n);
}

static void sb_init(struct sbuf *b, size_t max) {
  memset(b, 0, sizeof(*b));
  b->max = max;
}

/* ---- MIME types ----------------------------------------------------------- */

static const struct {
  const char *ext, *type;
} mime_table[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"shtml", "text/html; charset=utf-8"},
    {"txt", "text/plain; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"xml", "application/xml"},
    {"wasm", "application/wasm"},
    {"png", "image/png"},
    {"gif", "image/gif"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"svg", "image/svg+xml"},
    {"ico", "image/x-icon"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"csv", "text/csv"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"tgz", "application/gzip"},
    {"exe", "application/octet-stream"},
    {"doc", "application/msword"},
    {"avi", "video/x-msvideo"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"mpeg", "video/mpeg"},
    {"wav", "audio/wav"},
    {"3gp", "video/3gpp"},
};

/* The extension of the last segment of `path`, without the dot. */
static struct cm_str extension(const char *path) {
  const char *slash = strrchr(path, '/'), *name = slash != NULL ? slash + 1 : path;
  const char *dot = strrchr(name, '.');
  return dot != NULL && dot != name ? cm_str_c(dot + 1) : cm_str_n(NULL, 0);
}

static struct cm_str trim(struct cm_str s) {
  while (s.len > 0 && (s.buf[0] == ' ' || s.buf[0] == '\t')) s.buf++, s.len--;
  while (s.len > 0 && (s.buf[s.len - 1] == ' ' || s.buf[s.len - 1] == '\t')) s.len--;
  return s;
}

/* A type from "ext=type,ext2=type2": "*" matches any file, a key matches
 * the extension ignoring case and a leading dot.  Types with CR or LF are
 * skipped: they would split the header. */
static bool mime_override(const char *list, struct cm_str ext, struct cm_str *type) {
  struct cm_str rest = cm_str_c(list);
  while (rest.len > 0) {
    const char *comma = memchr(rest.buf, ',', rest.len);
    size_t n = comma != NULL ? (size_t) (comma - rest.buf) : rest.len;
    struct cm_str item = cm_str_n(rest.buf, n);
    rest = comma != NULL ? cm_str_n(comma + 1, rest.len - n - 1) : cm_str_n(NULL, 0);
    const char *eq = item.len > 0 ? memchr(item.buf, '=', item.len) : NULL;
    if (eq == NULL) continue;
    struct cm_str key = trim(cm_str_n(item.buf, (size_t) (eq - item.buf)));
    struct cm_str val = trim(cm_str_n(eq + 1, (size_t) (item.buf + item.len - eq - 1)));
    if (key.len > 0 && key.buf[0] == '.') key.buf++, key.len--;
    if (val.len == 0 || memchr(val.buf, '\r', val.len) || memchr(val.buf, '\n', val.len)) continue;
    if (cm_str_eq(key, "*") || (ext.len > 0 && cm_str_casecmp(key, ext))) {
      *type = val;
      return true;
    }
  }
  return false;
}

struct cm_str cm_http_mime_type(const char *path, const char *mime_types) {
  struct cm_str ext = extension(path), type;
  if (mime_types != NULL && mime_override(mime_types, ext, &type)) return type;
  for (size_t i = 0; i < CM_ARRAY_SIZE(mime_table) && ext.len > 0; i++) {
    if (cm_str_casecmp(ext, cm_str_c(mime_table[i].ext))) return cm_str_c(mime_table[i].type);
  }
  return cm_str_c("text/plain; charset=utf-8");
}

/* ---- request headers --------------------------------------------------- */

/* The next comma-separated element of a header value, trimmed. */
static bool next_item(struct cm_str *rest, struct cm_str *item) {
  while (rest->len > 0) {
    const char *comma = memchr(rest->buf, ',', rest->len);
    size_t n = comma != NULL ? (size_t) (comma - rest->buf) : rest->len;
    *item = trim(cm_str_n(rest->buf, n));
    *rest = comma != NULL ? cm_str_n(comma + 1, rest->len - n - 1) : cm_str_n(NULL, 0);
    if (item->len > 0) return true;
  }
  return false;
}

/* A qvalue (RFC 9110 §12.4.2) above zero: any non-zero digit. */
static bool positive_q(struct cm_str q) {
  for (size_t i = 0; i < q.len; i++) {
    if (q.buf[i] >= '1' && q.buf[i] <= '9') return true;
  }
  return false;
}

/* "gzip" among the codings, not refused with q=0 (RFC 9110 §12.5.3). */
static bool accepts_gzip(const struct cm_http_msg *hm) {
  const struct cm_str *v = cm_http_header(hm, "Accept-Encoding");
  struct cm_str rest = v != NULL ? *v : cm_str_n(NULL, 0), item, q;
  while (next_item(&rest, &item)) {
    const char *semi = memchr(item.buf, ';', item.len);
    size_t n = semi != NULL ? (size_t) (semi - item.buf) : item.len;
    if (!cm_str_casecmp(trim(cm_str_n(item.buf, n)), cm_str_c("gzip"))) continue;
    struct cm_str params = cm_str_n(item.buf + n, item.len - n);
    return !cm_http_header_var(params, cm_str_c("q"), &q) || positive_q(q);
  }
  return false;
}

/* RFC 9110 §13.1.2: If-None-Match matches with the weak comparison: "*",
 * or our tag among the listed ones with or without "W/". */
static bool etag_listed(const struct cm_str *v, const char *etag) {
  struct cm_str rest = v != NULL ? *v : cm_str_n(NULL, 0), item;
  while (next_item(&rest, &item)) {
    if (cm_str_eq(item, "*")) return true;
    if (item.len > 2 && item.buf[0] == 'W' && item.buf[1] == '/') item.buf += 2, item.len -= 2;
    if (cm_str_eq(item, etag)) return true;
  }
  return false;
}

/* Saturating decimal digits at s[*i..]; false if there are none. */
static bool digits(struct cm_str s, size_t *i, uint64_t *out) {
  size_t start = *i;
  uint64_t v = 0;
  for (; *i < s.len && s.buf[*i] >= '0' && s.buf[*i] <= '9'; (*i)++) {
    unsigned d = (unsigned) (s.buf[*i] - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  *out = v;
  return *i > start;
}

enum { RANGE_NONE = 0, RANGE_OK = 1, RANGE_BAD = -1 };

/* One byte range of a representation of `size` bytes (RFC 9110 §14.1.2):
 * "bytes=a-b", "bytes=a-" or "bytes=-n".  Returns RANGE_OK with the span,
 * RANGE_BAD when it cannot be satisfied (416), RANGE_NONE to ignore it and
 * send everything (absent, malformed, or several ranges: §14.2 lets a
 * server ignore Range). */
static int parse_range(struct cm_str v, uint64_t size, uint64_t *from, uint64_t *len) {
  uint64_t a = 0, b = 0;
  size_t i = 6;
  v = trim(v);
  if (v.len < 7 || strncasecmp(v.buf, "bytes=", 6) != 0) return RANGE_NONE;
  if (v.buf[i] == '-') {
    i++;
    if (!digits(v, &i, &b) || i != v.len) return RANGE_NONE;
    if (b == 0 || size == 0) return RANGE_BAD; /* §14.1.3: a zero suffix is unsatisfiable */
    *from = b < size ? size - b : 0;
    *len = size - *from;
    return RANGE_OK;
  }
  if (!digits(v, &i, &a) || i == v.len || v.buf[i++] != '-') return RANGE_NONE;
  bool has_end = digits(v, &i, &b);
  if (i != v.len || (has_end && b < a)) return RANGE_NONE;
  if (a >= size) return RANGE_BAD;
  uint64_t last = has_end && b < size - 1 ? b : size - 1;
  *from = a;
  *len = last - a + 1;
  return RANGE_OK;
}

/* ---- responses -------------------------------------------------------------- */

/* The end of a streamed file: the response is complete. */
static void file_sent(struct cm_conn *c, void *arg) {
  (void) arg;
  cm_http_end(c);
}

/* A short answer built by cm_http_reply: text body, our headers, then the
 * caller's extra headers. */
static bool reply_text(struct cm_conn *c, const struct req *rq, int status, const char *hdrs,
                       const char *body) {
  struct sbuf h;
  sb_init(&h, SIZE_MAX);
  sb_str(&h, "Content-Type: text/plain; charset=utf-8\r\n");
  sb_str(&h, hdrs);
  sb_str(&h, rq->extra);
  bool ok = !h.bad && cm_http_reply(c, status, h.p, h.len, body, strlen(body));
  free(h.p);
  return ok;
}

static bool not_found(struct cm_conn *c, const struct req *rq) {
  return reply_text(c, rq, 404, "", "Not found\n");
}

/* 301 to the directory's URL with its slash (RFC 9110 §15.4.2), so that
 * relative links inside it resolve against the directory. */
static bool redirect_dir(struct cm_conn *c, const struct req *rq) {
  const struct cm_http_msg *hm = rq->hm;
  struct sbuf h;
  sb_init(&h, SIZE_MAX);
  sb_str(&h, "Location: ");
  sb_add(&h, hm->uri.buf, hm->uri.len);
  sb_str(&h, "/");
  if (hm->query.len > 0) sb_str(&h, "?");
  sb_add(&h, hm->query.buf, hm->query.len);
  sb_str(&h, "\r\n");
  sb_add(&h, "", 1); /* NUL, for reply_text */
  bool ok = !h.bad && reply_text(c, rq, 301, h.p, "");
  free(h.p);
  return ok;
}

/* Head of a file response, after the status line.  Field order follows
 * SPEC 2.6: Content-Type, Etag, Content-Length, then the rest. */
static void file_head(struct sbuf *h, struct cm_str type, const char *etag, uint64_t len) {
  sb_str(h, "Content-Type: ");
  sb_add(h, type.buf, type.len);
  sb_fmt(h, "\r\nEtag: %s\r\nContent-Length: %llu\r\n", etag, (unsigned long long) len);
}

/* A large file: the head now, the body streamed by the loop.  A head
 * queued without its body would corrupt the stream, so the only failure
 * after it (no memory for the source) fails the connection. */
static bool stream_file(struct cm_conn *c, const struct sbuf *h, int fd, uint64_t from, uint64_t len) {
  if (c->fsrc != NULL || !cm_send(c, h->p, h->len)) {
    close(fd);
    return false;
  }
  if (cm_send_fd(c, fd, from, len, file_sent, NULL)) return true;
  close(fd);
  cm_error(c, "OOM");
  return false;
}

/* Queue the head and, for a small file, its bytes in one go; a large one
 * streams.  Takes `fd`. */
static bool send_file_body(struct cm_conn *c, const struct sbuf *h, int fd, uint64_t from, uint64_t len) {
  if (len > INLINE_MAX) return stream_file(c, h, fd, from, len);
  /* Reserve first, read the body behind where the head will go, then put
   * the head: nothing is queued unless both are there. */
  if (cm_iobuf_reserve(&c->send, h->len + (size_t) len) != 0) {
    close(fd);
    return false;
  }
  char *room = cm_iobuf_data(&c->send) + c->send.len;
  ssize_t n = len > 0 ? pread(fd, room + h->len, (size_t) len, (off_t) from) : 0;
  close(fd);
  if (n != (ssize_t) len) return false;
  memcpy(room, h->p, h->len);
  cm_iobuf_commit(&c->send, h->len + (size_t) len);
  cm__touch(c);
  cm_http_end(c);
  return true;
}

/* The caller's extra headers, and "Connection: close" when the connection
 * closes after this response (RFC 9112 §9.6) unless they say otherwise. */
static void extra_fields(struct sbuf *h, struct cm_conn *c, const struct req *rq) {
  sb_str(h, rq->extra);
  if (cm_http_closes_after(c) && !cm_http_has_field(rq->extra, strlen(rq->extra), "Connection"))
    sb_str(h, "Connection: close\r\n");
}

/* The status line, the file head, extra headers; then the body. */
static bool send_file(struct cm_conn *c, const struct req *rq, int fd, int status, const char *fields,
                      struct cm_str type, const char *etag, uint64_t from, uint64_t len) {
  struct sbuf h;
  sb_init(&h, SIZE_MAX);
  sb_fmt(&h, "HTTP/1.1 %d %s\r\n", status, cm_http_reason(status));
  file_head(&h, type, etag, len);
  sb_str(&h, fields);
  extra_fields(&h, c, rq);
  sb_str(&h, "\r\n");
  bool ok = !h.bad && !c->is_closing;
  if (ok && rq->head) {
    ok = cm_send(c, h.p, h.len);
    if (ok) cm_http_end(c);
    close(fd);
  } else if (ok) {
    ok = send_file_body(c, &h, fd, from, len);
  } else {
    close(fd);
  }
  free(h.p);
  return ok;
}

/* 304: the client's copy is current.  No body and no Content-Length
 * (RFC 9110 §15.4.5: only fields a 200 would have had; §8.6). */
static bool not_modified(struct cm_conn *c, const struct req *rq, const char *etag) {
  struct sbuf h;
  sb_init(&h, SIZE_MAX);
  sb_fmt(&h, "HTTP/1.1 304 Not Modified\r\nEtag: %s\r\n", etag);
  extra_fields(&h, c, rq);
  sb_str(&h, "\r\n");
  bool ok = !h.bad && cm_send(c, h.p, h.len);
  if (ok) cm_http_end(c);
  free(h.p);
  return ok;
}

static bool unsatisfiable(struct cm_conn *c, const struct req *rq, uint64_t size) {
  char hdr[64];
  snprintf(hdr, sizeof(hdr), "Content-Range: bytes */%llu\r\n", (unsigned long long) size);
  return reply_text(c, rq, 416, hdr, "");
}

/* How a file is to be sent. */
struct file {
  int fd;
  struct stat st;
  const char *name; /* for the MIME type: without ".gz" for a gzip variant */
  bool gz;          /* a precompressed variant: Content-Encoding: gzip */
  bool plain;       /* page404: status 200, no conditionals, no ranges */
};

/* Answer with an open regular file: 304, 416, 206 or 200.  Takes f->fd. */
static bool serve_open(struct cm_conn *c, const struct req *rq, struct file *f) {
  char etag[48], fields[192];
  uint64_t size = (uint64_t) f->st.st_size, from = 0, len = size;
  struct cm_str type = cm_http_mime_type(f->name, rq->mime);
  snprintf(etag, sizeof(etag), "\"%lld.%llu\"", (long long) f->st.st_mtime, (unsigned long long) size);
  int n = snprintf(fields, sizeof(fields), "%s%s",
                   f->gz ? "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n" : "",
                   f->plain ? "" : "Accept-Ranges: bytes\r\n");
  if (!f->plain && etag_listed(cm_http_header(rq->hm, "If-None-Match"), etag)) {
    close(f->fd);
    return not_modified(c, rq, etag);
  }
  const struct cm_str *range = f->plain ? NULL : cm_http_header(rq->hm, "Range");
  const struct cm_str *if_range = cm_http_header(rq->hm, "If-Range");
  /* RFC 9110 §13.1.5: a Range under a stale If-Range gets the whole file. */
  int r = range != NULL && (if_range == NULL || cm_str_eq(*if_range, etag))
              ? parse_range(*range, size, &from, &len)
              : RANGE_NONE;
  if (r == RANGE_BAD) {
    close(f->fd);
    return unsatisfiable(c, rq, size);
  }
  int status = 200;
  if (r == RANGE_OK) {
    status = 206;
    snprintf(fields + n, sizeof(fields) - (size_t) n, "Content-Range: bytes %llu-%llu/%llu\r\n",
             (unsigned long long) from, (unsigned long long) (from + len - 1), (unsigned long long) size);
  }
  return send_file(c, rq, f->fd, status, fields, type, etag, from, len);
}

/* ---- files on disk ------------------------------------------------------------ */

/* Is `path` `root` or below it?  Both canonical (no "..", no links). */
static bool inside(const char *root, const char *path) {
  size_t n = strlen(root);
  if (n == 1 && root[0] == '/') return path[0] == '/';
  return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* Where the opened file really is, from /proc (true when /proc cannot
 * tell: the canonical path was checked already). */
static bool fd_inside(int fd, const char *root) {
  char link[64], *where = malloc(PATH_MAX + 1);
  if (where == NULL) return false;
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, where, PATH_MAX);
  bool ok = n <= 0 || n >= PATH_MAX;
  if (!ok) {
    where[n] = '\0';
    ok = inside(root, where);
  }
  free(where);
  return ok;
}

/* Open for reading without blocking on a FIFO; only files and directories
 * are served.  `nofollow` for canonical paths: a link there now was put in
 * after the check.  Returns the fd or -(HTTP status). */
static int open_plain(const char *path, bool nofollow, struct stat *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0) return errno == EACCES ? -403 : -404;
  if (fstat(fd, st) != 0 || !(S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))) {
    close(fd);
    return -403;
  }
  return fd;
}

/* Open `path` if its canonical form lies inside the canonical `root`.
 * Returns the fd, or -404 (missing), -403 (outside, unreadable, special). */
static int open_inside(const char *root, const char *path, struct stat *st) {
  char *real = realpath(path, NULL);
  if (real == NULL) return errno == EACCES ? -403 : -404;
  int fd = inside(root, real) ? open_plain(real, true, st) : -403;
  free(real);
  if (fd >= 0 && !fd_inside(fd, root)) {
    close(fd);
    return -403;
  }
  return fd;
}

/* `a` + `b` + `c` in fresh memory, or NULL. */
static char *join(const char *a, const char *b, const char *c) {
  size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
  char *p = malloc(na + nb + nc + 1);
  if (p == NULL) return NULL;
  memcpy(p, a, na);
  memcpy(p + na, b, nb);
  memcpy(p + na + nb, c, nc + 1);
  return p;
}

/* The ".gz" sibling of `path`, if the client takes gzip and it exists. */
static int open_gz(const struct req *rq, const char *root, const char *path, struct stat *st) {
  if (!rq->gzip_ok) return -404;
  char *gz = join(path, ".gz", "");
  int fd = gz == NULL ? -404 : root != NULL ? open_inside(root, gz, st) : open_plain(gz, false, st);
  free(gz);
  if (fd >= 0 && !S_ISREG(st->st_mode)) {
    close(fd);
    fd = -404;
  }
  return fd;
}

/* Nothing to serve: page404 (status 200, SPEC 2.6) or 404. */
static bool missing(struct cm_conn *c, const struct req *rq) {
  struct file f = {.plain = true};
  f.fd = rq->page404 != NULL ? open_plain(rq->page404, false, &f.st) : -404;
  if (f.fd >= 0 && S_ISREG(f.st.st_mode)) {
    f.name = rq->page404;
    return serve_open(c, rq, &f);
  }
  if (f.fd >= 0) close(f.fd);
  return not_found(c, rq);
}

/* Serve the regular file `path` (already opened as `fd`, or -1 when it is
 * missing), preferring its gzip variant.  Takes `fd`. */
static bool serve_path(struct cm_conn *c, const struct req *rq, const char *root, const char *path, int fd,
                       const struct stat *st) {
  struct file f = {.name = path};
  f.fd = open_gz(rq, root, path, &f.st);
  if (f.fd >= 0) {
    f.gz = true;
    if (fd >= 0) close(fd);
    return serve_open(c, rq, &f);
  }
  if (fd < 0) return missing(c, rq);
  f.fd = fd;
  f.st = *st;
  return serve_open(c, rq, &f);
}

static bool error_status(struct cm_conn *c, const struct req *rq, int status) {
  if (status == 404) return missing(c, rq);
  if (status == 400) return reply_text(c, rq, 400, "", "Invalid path\n");
  return reply_text(c, rq, 403, "", "Forbidden\n");
}

static void read_request(struct req *rq, const struct cm_http_msg *hm, const struct cm_http_serve_opts *o) {
  rq->hm = hm;
  rq->head = cm_str_eq(hm->method, "HEAD");
  rq->gzip_ok = accepts_gzip(hm);
  rq->extra = o != NULL && o->extra_headers != NULL ? o->extra_headers : "";
  rq->mime = o != NULL ? o->mime_types : NULL;
  rq->page404 = o != NULL && o->page404 != NULL && o->page404[0] != '\0' ? o->page404 : NULL;
}

bool cm_http_serve_file(struct cm_conn *c, const struct cm_http_msg *hm, const char *path,
                        const struct cm_http_serve_opts *opts) {
  struct req rq;
  struct stat st;
  if (c->is_closing || hm == NULL || path == NULL) return false;
  read_request(&rq, hm, opts);
  int fd = open_plain(path, false, &st);
  if (fd >= 0 && !S_ISREG(st.st_mode)) {
    close(fd);
    fd = -404;
  }
  return serve_path(c, &rq, NULL, path, fd, &st);
}

/* ---- the URI as a path --------------------------------------------------------- */

/* Percent-decode the URI and reduce it to segments joined by '/': empty
 * and "." segments go away; "..", a first segment starting with '~', a
 * backslash (a separator elsewhere) or a NUL make it invalid, and so does
 * a URI not starting with '/' (RFC 9112 §3.2.1 origin-form).  Returns the
 * relative path in fresh memory ("" for the root), or NULL; *bad tells an
 * invalid URI from an allocation failure. */
static char *uri_to_rel(struct cm_str uri, bool *bad) {
  char *dec = malloc(uri.len + 1), *out = malloc(uri.len + 1);
  *bad = false;
  if (dec == NULL || out == NULL) {
    free(dec);
    free(out);
    return NULL;
  }
  long n = cm_http_url_decode(uri.buf, uri.len, dec, uri.len + 1, false);
  bool ok = n > 0 && strlen(dec) == (size_t) n && dec[0] == '/' && strchr(dec, '\\') == NULL;
  size_t o = 0;
  for (const char *seg = dec + 1; ok && *seg != '\0';) {
    const char *end = strchr(seg, '/');
    size_t len = end != NULL ? (size_t) (end - seg) : strlen(seg);
    if ((len == 2 && seg[0] == '.' && seg[1] == '.') || (o == 0 && len > 0 && seg[0] == '~')) ok = false;
    if (ok && len > 0 && !(len == 1 && seg[0] == '.')) {
      if (o > 0) out[o++] = '/';
      memcpy(out + o, seg, len);
      o += len;
    }
    seg += end != NULL ? len + 1 : len;
  }
  free(dec);
  out[o] = '\0';
  if (!ok) {
    free(out);
    *bad = true;
    return NULL;
  }
  return out;
}

/* ---- directory listings --------------------------------------------------------- */

struct entry {
  char *name;
  bool dir;
  uint64_t size;
  time_t mtime;
};

static int by_name(const void *a, const void *b) {
  return strcmp(((const struct entry *) a)->name, ((const struct entry *) b)->name);
}

/* HTML text (WHATWG: escape the five specials). */
static void sb_html(struct sbuf *b, const char *s) {
  for (; *s != '\0'; s++) {
    switch (*s) {
      case '&': sb_str(b, "&amp;"); break;
      case '<': sb_str(b, "&lt;"); break;
      case '>': sb_str(b, "&gt;"); break;
      case '"': sb_str(b, "&quot;"); break;
      case '\'': sb_str(b, "&#39;"); break;
      default: sb_add(b, s, 1);
    }
  }
}

/* A path segment for an href: all but RFC 3986 §2.3 unreserved bytes are
 * percent-encoded, so a name is never read as a scheme, query or tag. */
static void sb_urlenc(struct sbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char) *s;
    bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '.' || ch == '_' || ch == '~';
    char esc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
    if (plain) sb_add(b, s, 1);
    else
      sb_add(b, esc, 3);
  }
}

/* Read up to LISTING_MAX_ENTRIES names of the open directory `fd` (taken). */
static struct entry *read_dir(int fd, size_t *count, bool *more) {
  DIR *d = fdopendir(fd);
  struct entry *list = NULL;
  size_t n = 0, cap = 0;
  struct dirent *de;
  *more = false;
  if (d == NULL) {
    close(fd);
    return NULL;
  }
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (n == LISTING_MAX_ENTRIES) {
      *more = true;
      break;
    }
    if (n == cap) {
      size_t grown = cap ? cap * 2 : 64;
      struct entry *p = realloc(list, grown * sizeof(*list));
      if (p == NULL) break;
      list = p;
      cap = grown;
    }
    /* Not following links: a link's target may lie outside the root. */
    if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    list[n].name = strdup(de->d_name);
    if (list[n].name == NULL) break;
    list[n].dir = S_ISDIR(st.st_mode);
    list[n].size = (uint64_t) st.st_size;
    list[n].mtime = st.st_mtime;
    n++;
  }
  closedir(d);
  *count = n;
  return list;
}

static void listing_row(struct sbuf *b, const struct entry *e) {
  char when[32] = "";
  struct tm tm;
  if (gmtime_r(&e->mtime, &tm) != NULL) strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
  sb_str(b, "<tr><td><a href=\"");
  sb_urlenc(b, e->name);
  sb_str(b, e->dir ? "/\">" : "\">");
  sb_html(b, e->name);
  sb_str(b, e->dir ? "/</a></td><td>-" : "</a></td><td>");
  if (!e->dir) sb_fmt(b, "%llu", (unsigned long long) e->size);
  sb_fmt(b, "</td><td>%s</td></tr>\n", when);
}

static void listing_html(struct sbuf *b, const char *title, const struct entry *list, size_t n, bool more) {
  sb_str(b, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
  sb_html(b, title);
  sb_str(b, "</title></head>\n<body><h1>Index of ");
  sb_html(b, title);
  sb_str(b, "</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified (UTC)</th></tr>\n");
  if (strcmp(title, "/") != 0) sb_str(b, "<tr><td><a href=\"../\">../</a></td><td>-</td><td></td></tr>\n");
  for (size_t i = 0; i < n; i++) listing_row(b, &list[i]);
  sb_str(b, "</table>\n");
  if (more) sb_str(b, "<p>(more entries not shown)</p>\n");
  sb_str(b, "</body></html>\n");
}

/* An HTML index of the directory `fd` (taken), names sorted. */
static bool send_listing(struct cm_conn *c, const struct req *rq, int fd) {
  size_t n = 0;
  bool more;
  struct entry *list = read_dir(fd, &n, &more);
  char *title = malloc(rq->hm->uri.len + 1);
  long tn = title != NULL
                ? cm_http_url_decode(rq->hm->uri.buf, rq->hm->uri.len, title, rq->hm->uri.len + 1, false)
                : -1;
  struct sbuf b, h;
  sb_init(&b, LISTING_MAX_BYTES);
  sb_init(&h, SIZE_MAX);
  if (list != NULL) qsort(list, n, sizeof(*list), by_name);
  listing_html(&b, tn >= 0 ? title : "", list, n, more);
  sb_str(&h, "Content-Type: text/html; charset=utf-8\r\n");
  sb_str(&h, rq->extra);
  bool ok = !b.bad && !h.bad && cm_http_reply(c, 200, h.p, h.len, b.p, b.len);
  for (size_t i = 0; i < n; i++) free(list[i].name);
  free(list);
  free(title);
  free(b.p);
  free(h.p);
  return ok;
}

/* ---- directories ------------------------------------------------------------------ */

/* A directory (open as `fd`, taken): its index file, else a listing. */
static bool serve_directory(struct cm_conn *c, const struct req *rq, const char *root, const char *path,
                            int fd) {
  static const char *const index[] = {"index.html", "index.shtml", "index.html.gz"};
  const struct cm_str uri = rq->hm->uri;
  if (uri.len == 0 || uri.buf[uri.len - 1] != '/') {
    close(fd);
    return redirect_dir(c, rq);
  }
  for (size_t i = 0; i < CM_ARRAY_SIZE(index); i++) {
    struct stat st;
    char *file = join(path, "/", index[i]);
    int ifd = file != NULL ? open_inside(root, file, &st) : -404;
    if (ifd >= 0 && S_ISREG(st.st_mode)) {
      close(fd);
      bool ok;
      if (i == 2) { /* precompressed index: typed as the page it holds */
        struct file f = {.fd = ifd, .st = st, .name = "index.html", .gz = true};
        ok = serve_open(c, rq, &f);
      } else {
        ok = serve_path(c, rq, root, file, ifd, &st);
      }
      free(file);
      return ok;
    }
    if (ifd >= 0) close(ifd);
    free(file);
  }
  return send_listing(c, rq, fd);
}

/* The URI's file under the canonical `root`. */
static bool serve_under(struct cm_conn *c, const struct req *rq, const char *root, const char *rel) {
  struct stat st;
  char *path = join(root, rel[0] != '\0' ? "/" : "", rel);
  if (path == NULL) return false;
  int fd = open_inside(root, path, &st);
  bool ok;
  if (fd >= 0 && S_ISDIR(st.st_mode)) ok = serve_directory(c, rq, root, path, fd);
  else if (fd >= 0 || fd == -404)
    ok = serve_path(c, rq, root, path, fd, &st);
  else
    ok = error_status(c, rq, -fd);
  free(path);
  return ok;
}

bool cm_http_serve_dir(struct cm_conn *c, const struct cm_http_msg *hm,
                       const struct cm_http_serve_opts *opts) {
  struct req rq;
  bool bad, ok = false;
  if (c->is_closing || hm == NULL) return false;
  read_request(&rq, hm, opts);
  const char *dir =
      opts != NULL && opts->root_dir != NULL && opts->root_dir[0] != '\0' ? opts->root_dir : ".";
  char *rel = uri_to_rel(hm->uri, &bad);
  if (rel == NULL) return bad && error_status(c, &rq, 400);
  char *root = realpath(dir, NULL);
  if (root != NULL) ok = serve_under(c, &rq, root, rel);
  else
    ok = missing(c, &rq); /* no root, nothing under it */
  free(rel);
  free(root);
  return ok;
}
