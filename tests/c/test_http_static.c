/* test_http_static.c: static files (http_static.c) and the file source
 * under it (sendfd.c) over loopback: MIME types, redirects, index files,
 * listings, conditional and range requests, gzip variants, HEAD, 404 and
 * page404, path traversal of every kind, and a 200 MB file streamed in
 * bounded memory.  Files live in a fresh directory under /tmp. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#define WAIT_MS 5000

static char tmp[64];   /* the test directory */
static char root[128]; /* served root: tmp/root */
static const char secret[] = "TOP SECRET\n";

/* --- files ------------------------------------------------------------- */

static void path_of(char *buf, size_t size, const char *rel) { snprintf(buf, size, "%s/%s", tmp, rel); }

static void write_file(const char *rel, const void *data, size_t len) {
  char p[256];
  path_of(p, sizeof(p), rel);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0);
  ASSERT(write(fd, data, len) == (ssize_t) len);
  close(fd);
}

#define WRITE(rel, lit) write_file((rel), (lit), sizeof(lit) - 1)

static void make_dir(const char *rel) {
  char p[256];
  path_of(p, sizeof(p), rel);
  ASSERT(mkdir(p, 0755) == 0);
}

static void make_link(const char *target, const char *rel) {
  char p[256];
  path_of(p, sizeof(p), rel);
  ASSERT(symlink(target, p) == 0);
}

static void make_tree(void) {
  snprintf(tmp, sizeof(tmp), "/tmp/cm_static_XXXXXX");
  ASSERT(mkdtemp(tmp) != NULL);
  snprintf(root, sizeof(root), "%s/root", tmp);
  make_dir("root");
  write_file("secret.txt", secret, sizeof(secret) - 1);
  WRITE("custom404.html", "<h1>lost</h1>");
  WRITE("root/a.txt", "0123456789");
  WRITE("root/page.html", "<p>hi</p>");
  WRITE("root/data.json", "{}");
  WRITE("root/img.png", "\x89PNG");
  WRITE("root/noext", "plain");
  WRITE("root/gz.txt", "plain text");
  WRITE("root/gz.txt.gz",
        "\x1f\x8b"
        "GZIPPED");
  WRITE("root/only.css.gz",
        "\x1f\x8b"
        "CSS");
  make_dir("root/sub");
  WRITE("root/sub/<b>&'\".txt", "x");
  WRITE("root/sub/sp ace%.txt", "y");
  make_dir("root/sub/inner");
  make_dir("root/withindex");
  WRITE("root/withindex/index.html", "<i>index</i>");
  make_dir("root/gzindex");
  WRITE("root/gzindex/index.html.gz",
        "\x1f\x8b"
        "IDX");
  make_link("a.txt", "root/link_in");
  make_link("../secret.txt", "root/link_out");
  make_link("..", "root/dirlink_out");
  char abs[256];
  path_of(abs, sizeof(abs), "secret.txt");
  make_link(abs, "root/abslink_out");
}

static void remove_tree(void) {
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
  ASSERT(system(cmd) == 0);
}

/* --- server ----------------------------------------------------------------- */

struct server {
  struct cm_http_serve_opts opts;
  const char *file;     /* serve this with cm_http_serve_file instead */
  bool tls;             /* mark accepted conns is_tls: the read path of cm_send_fd */
  size_t max_send_size; /* largest c->send allocation seen */
  int msgs;
  int msgs_mid; /* msgs when a streamed body started arriving */
};

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct server *s = c->fn_data;
  if (ev == CM_EV_ACCEPT && s->tls) c->is_tls = 1;
  if (ev == CM_EV_WRITE && c->send.size > s->max_send_size) s->max_send_size = c->send.size;
  if (ev != CM_EV_HTTP_MSG) return;
  s->msgs++;
  if (s->file != NULL) ASSERT(cm_http_serve_file(c, ev_data, s->file, &s->opts));
  else
    ASSERT(cm_http_serve_dir(c, ev_data, &s->opts));
}

struct fixture {
  struct cm_mgr mgr;
  struct server srv;
  uint16_t port;
};

static void setup(struct fixture *f) {
  memset(f, 0, sizeof(*f));
  f->srv.opts.root_dir = root;
  ASSERT(cm_mgr_init(&f->mgr) == 0);
  struct cm_conn *lsn = cm_http_listen(&f->mgr, "http://127.0.0.1:0", server_fn, &f->srv);
  ASSERT(lsn != NULL);
  f->port = lsn->loc.port;
}

/* --- the peer ------------------------------------------------------------------ */

static void peer_send(int fd, const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
    ASSERT(k > 0);
    s += k;
    n -= (size_t) k;
  }
}

/* One parsed response. */
struct resp {
  int status;
  char head[2048];
  char body[8192];
  size_t body_len;
  size_t content_length;
};

/* Received bytes of one connection. */
struct wire {
  char buf[65536];
  size_t len;
  bool eof;
};

static void pump(struct cm_mgr *mgr, int fd, struct wire *w) {
  cm_mgr_poll(mgr, 2);
  ssize_t k;
  while (w->len < sizeof(w->buf) && (k = recv(fd, w->buf + w->len, sizeof(w->buf) - w->len, 0)) > 0)
    w->len += (size_t) k;
  if (k == 0) w->eof = true;
}

/* The value of header `name` in a response head, or NULL. */
static const char *header(const struct resp *r, const char *name, char *out, size_t size) {
  char want[64];
  snprintf(want, sizeof(want), "\r\n%s: ", name);
  const char *p = strcasestr(r->head, want);
  if (p == NULL) return NULL;
  p += strlen(want);
  const char *end = strstr(p, "\r\n");
  size_t n = (size_t) (end - p) < size - 1 ? (size_t) (end - p) : size - 1;
  memcpy(out, p, n);
  out[n] = '\0';
  return out;
}

/* Take one complete response off the front of `w` (a HEAD or 304 has no
 * body).  Returns false if it has not all arrived yet. */
static bool take(struct wire *w, bool no_body, struct resp *r) {
  char tmpv[32];
  char *end = memmem(w->buf, w->len, "\r\n\r\n", 4);
  if (end == NULL) return false;
  size_t hlen = (size_t) (end - w->buf) + 4;
  ASSERT(hlen < sizeof(r->head));
  memcpy(r->head, w->buf, hlen);
  r->head[hlen] = '\0';
  ASSERT(sscanf(r->head, "HTTP/1.1 %d", &r->status) == 1);
  r->content_length = header(r, "Content-Length", tmpv, sizeof(tmpv)) ? strtoul(tmpv, NULL, 10) : 0;
  size_t blen = no_body || r->status == 304 ? 0 : r->content_length;
  if (w->len < hlen + blen) return false;
  ASSERT(blen <= sizeof(r->body));
  memcpy(r->body, w->buf + hlen, blen);
  r->body_len = blen;
  memmove(w->buf, w->buf + hlen + blen, w->len - hlen - blen);
  w->len -= hlen + blen;
  return true;
}

static void wait_resp(struct fixture *f, int fd, struct wire *w, bool no_body, struct resp *r) {
  uint64_t end = cm_millis() + WAIT_MS;
  while (!take(w, no_body, r)) {
    ASSERT(cm_millis() < end && !w->eof);
    pump(&f->mgr, fd, w);
  }
}

/* One request on a fresh connection; the response in *r. */
static void fetch(struct fixture *f, const char *req, struct resp *r) {
  struct wire *w = calloc(1, sizeof(*w));
  ASSERT(w != NULL);
  int fd = cm_test_peer_connect(f->port);
  peer_send(fd, req);
  memset(r, 0, sizeof(*r));
  wait_resp(f, fd, w, strncmp(req, "HEAD ", 5) == 0, r);
  ASSERT_EQ(w->len, 0); /* nothing after it */
  close(fd);
  free(w);
}

static void get(struct fixture *f, const char *uri, struct resp *r) {
  char req[512];
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", uri);
  fetch(f, req, r);
}

static bool body_is(const struct resp *r, const char *s) {
  return r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

static bool header_is(const struct resp *r, const char *name, const char *value) {
  char v[256];
  return header(r, name, v, sizeof(v)) != NULL && strcmp(v, value) == 0;
}

/* --- tests ------------------------------------------------------------------ */

static void test_mime(void) {
  struct fixture f;
  struct resp r;
  static const struct {
    const char *uri, *type;
  } cases[] = {
      {"/a.txt", "text/plain; charset=utf-8"}, {"/page.html", "text/html; charset=utf-8"},
      {"/data.json", "application/json"},      {"/img.png", "image/png"},
      {"/noext", "text/plain; charset=utf-8"},
  };
  setup(&f);
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    get(&f, cases[i].uri, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT(header_is(&r, "Content-Type", cases[i].type));
  }
  get(&f, "/a.txt", &r);
  ASSERT(body_is(&r, "0123456789"));
  ASSERT(header_is(&r, "Content-Length", "10"));
  /* SPEC 2.6 field order: Content-Type, Etag, Content-Length */
  const char *ct = strstr(r.head, "Content-Type"), *et = strstr(r.head, "Etag"),
             *cl = strstr(r.head, "Content-Length");
  ASSERT(ct != NULL && et != NULL && cl != NULL && ct < et && et < cl);
  /* overrides: per extension (case-insensitive, leading dot allowed), "*" */
  f.srv.opts.mime_types = "TXT=text/x-custom, .png = image/x-png";
  get(&f, "/a.txt", &r);
  ASSERT(header_is(&r, "Content-Type", "text/x-custom"));
  get(&f, "/img.png", &r);
  ASSERT(header_is(&r, "Content-Type", "image/x-png"));
  get(&f, "/data.json", &r);
  ASSERT(header_is(&r, "Content-Type", "application/json"));
  f.srv.opts.mime_types = "*=application/octet-stream";
  get(&f, "/page.html", &r);
  ASSERT(header_is(&r, "Content-Type", "application/octet-stream"));
  /* a type that would split the header is ignored */
  f.srv.opts.mime_types = "txt=a\r\nX-Evil: 1";
  get(&f, "/a.txt", &r);
  ASSERT(header_is(&r, "Content-Type", "text/plain; charset=utf-8"));
  ASSERT(strstr(r.head, "X-Evil") == NULL);
  cm_mgr_free(&f.mgr);
  ASSERT(cm_str_eq(cm_http_mime_type("x/y.MJS", NULL), "text/javascript; charset=utf-8"));
  ASSERT(cm_str_eq(cm_http_mime_type("dir.v2/file", NULL), "text/plain; charset=utf-8"));
  ASSERT(cm_str_eq(cm_http_mime_type(".svg", NULL), "text/plain; charset=utf-8")); /* a dot file */
}

static void test_dirs(void) {
  struct fixture f;
  struct resp r;
  setup(&f);
  get(&f, "/sub", &r);
  ASSERT_EQ(r.status, 301);
  ASSERT(header_is(&r, "Location", "/sub/"));
  get(&f, "/sub?x=1", &r);
  ASSERT(header_is(&r, "Location", "/sub/?x=1"));
  get(&f, "/withindex/", &r);
  ASSERT(r.status == 200 && body_is(&r, "<i>index</i>"));
  ASSERT(header_is(&r, "Content-Type", "text/html; charset=utf-8"));
  get(&f, "/gzindex/", &r);
  ASSERT(r.status == 200 && body_is(&r,
                                    "\x1f\x8b"
                                    "IDX"));
  ASSERT(header_is(&r, "Content-Encoding", "gzip"));
  ASSERT(header_is(&r, "Content-Type", "text/html; charset=utf-8"));
  /* a listing: names escaped for HTML, links percent-encoded */
  get(&f, "/sub/", &r);
  ASSERT_EQ(r.status, 200);
  ASSERT(header_is(&r, "Content-Type", "text/html; charset=utf-8"));
  r.body[r.body_len] = '\0';
  ASSERT(strstr(r.body, ">&lt;b&gt;&amp;&#39;&quot;.txt</a>") != NULL);
  ASSERT(strstr(r.body, "href=\"%3Cb%3E%26%27%22.txt\"") != NULL);
  ASSERT(strstr(r.body, "href=\"sp%20ace%25.txt\"") != NULL);
  ASSERT(strstr(r.body, "href=\"inner/\">inner/</a>") != NULL);
  ASSERT(strstr(r.body, "href=\"../\"") != NULL);
  ASSERT(strstr(r.body, "<b>") == NULL); /* never raw */
  get(&f, "/", &r);                      /* the root lists too, without a parent link */
  r.body[r.body_len] = '\0';
  ASSERT(r.status == 200 && strstr(r.body, "a.txt") != NULL && strstr(r.body, "../") == NULL);
  cm_mgr_free(&f.mgr);
}

static void test_conditional(void) {
  struct fixture f;
  struct resp r;
  char etag[64], req[256];
  struct stat st;
  char p[256];
  setup(&f);
  get(&f, "/a.txt", &r);
  ASSERT(header(&r, "Etag", etag, sizeof(etag)) != NULL);
  path_of(p, sizeof(p), "root/a.txt");
  ASSERT(stat(p, &st) == 0);
  char want[64];
  snprintf(want, sizeof(want), "\"%lld.10\"", (long long) st.st_mtime);
  ASSERT(strcmp(etag, want) == 0);
  const char *matches[] = {"%s", "W/%s", "\"nope\", %s", "*"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(matches); i++) {
    char val[128];
    snprintf(val, sizeof(val), matches[i], etag);
    snprintf(req, sizeof(req), "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: %s\r\n\r\n", val);
    fetch(&f, req, &r);
    ASSERT_EQ(r.status, 304);
    ASSERT(strstr(r.head, "Content-Length") == NULL);
    ASSERT(header_is(&r, "Etag", etag));
  }
  fetch(&f, "GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"other\"\r\n\r\n", &r);
  ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  cm_mgr_free(&f.mgr);
}

static void test_ranges(void) {
  struct fixture f;
  struct resp r;
  char etag[64], req[256];
  setup(&f);
  static const struct {
    const char *range, *body, *content_range;
  } ok[] = {
      {"bytes=2-5", "2345", "bytes 2-5/10"},       {"bytes=7-", "789", "bytes 7-9/10"},
      {"bytes=-3", "789", "bytes 7-9/10"},         {"bytes=8-100", "89", "bytes 8-9/10"},
      {"bytes=-50", "0123456789", "bytes 0-9/10"},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(ok); i++) {
    snprintf(req, sizeof(req), "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n", ok[i].range);
    fetch(&f, req, &r);
    ASSERT_EQ(r.status, 206);
    ASSERT(body_is(&r, ok[i].body));
    ASSERT(header_is(&r, "Content-Range", ok[i].content_range));
  }
  static const char *const bad[] = {"bytes=10-", "bytes=99-100", "bytes=-0"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    snprintf(req, sizeof(req), "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n", bad[i]);
    fetch(&f, req, &r);
    ASSERT_EQ(r.status, 416);
    ASSERT(header_is(&r, "Content-Range", "bytes */10"));
  }
  /* ignored: several ranges, other units, nonsense */
  static const char *const ignored[] = {"bytes=0-1,3-4", "items=0-1", "bytes=5-2", "bytes=x"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(ignored); i++) {
    snprintf(req, sizeof(req), "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: %s\r\n\r\n", ignored[i]);
    fetch(&f, req, &r);
    ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  }
  /* If-Range: the range only while the tag still matches */
  get(&f, "/a.txt", &r);
  ASSERT(header(&r, "Etag", etag, sizeof(etag)) != NULL);
  snprintf(req, sizeof(req), "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nIf-Range: %s\r\n\r\n",
           etag);
  fetch(&f, req, &r);
  ASSERT(r.status == 206 && body_is(&r, "0"));
  fetch(&f, "GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-0\r\nIf-Range: \"old\"\r\n\r\n", &r);
  ASSERT(r.status == 200 && r.body_len == 10);
  cm_mgr_free(&f.mgr);
}

static void test_gzip(void) {
  struct fixture f;
  struct resp r;
  setup(&f);
  fetch(&f, "GET /gz.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: deflate, gzip;q=0.5\r\n\r\n", &r);
  ASSERT(r.status == 200 && body_is(&r,
                                    "\x1f\x8b"
                                    "GZIPPED"));
  ASSERT(header_is(&r, "Content-Encoding", "gzip"));
  ASSERT(header_is(&r, "Content-Type", "text/plain; charset=utf-8"));
  ASSERT(header_is(&r, "Vary", "Accept-Encoding"));
  static const char *const plain[] = {
      "GET /gz.txt HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /gz.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
      "GET /gz.txt HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\n\r\n",
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(plain); i++) {
    fetch(&f, plain[i], &r);
    ASSERT(r.status == 200 && body_is(&r, "plain text"));
    ASSERT(strstr(r.head, "Content-Encoding") == NULL);
  }
  /* only the compressed file exists */
  fetch(&f, "GET /only.css HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n", &r);
  ASSERT(r.status == 200 && body_is(&r,
                                    "\x1f\x8b"
                                    "CSS"));
  ASSERT(header_is(&r, "Content-Type", "text/css; charset=utf-8"));
  get(&f, "/only.css", &r);
  ASSERT_EQ(r.status, 404);
  cm_mgr_free(&f.mgr);
}

static void test_head_404_extra(void) {
  struct fixture f;
  struct resp r;
  char p[256];
  setup(&f);
  f.srv.opts.extra_headers = "X-Extra: 1\r\nCache-Control: no-cache\r\n";
  fetch(&f, "HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  ASSERT(r.status == 200 && r.content_length == 10 && r.body_len == 0);
  ASSERT(header_is(&r, "X-Extra", "1") && header_is(&r, "Cache-Control", "no-cache"));
  get(&f, "/missing.txt", &r);
  ASSERT(r.status == 404 && body_is(&r, "Not found\n"));
  ASSERT(header_is(&r, "X-Extra", "1"));
  path_of(p, sizeof(p), "custom404.html");
  f.srv.opts.page404 = p;
  get(&f, "/missing.txt", &r);
  ASSERT(r.status == 200 && body_is(&r, "<h1>lost</h1>"));
  ASSERT(header_is(&r, "Content-Type", "text/html; charset=utf-8"));
  /* the root itself missing: 404 (page404 still applies) */
  f.srv.opts.page404 = NULL;
  f.srv.opts.root_dir = "/nonexistent/dir";
  get(&f, "/a.txt", &r);
  ASSERT_EQ(r.status, 404);
  cm_mgr_free(&f.mgr);
  /* HEAD then GET pipelined on one connection */
  struct wire w = {0};
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  peer_send(fd, "HEAD /page.html HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_resp(&f, fd, &w, true, &r);
  ASSERT(r.status == 200 && r.content_length == 9);
  wait_resp(&f, fd, &w, false, &r);
  ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  close(fd);
  cm_mgr_free(&f.mgr);
}

static void test_serve_file(void) {
  struct fixture f;
  struct resp r;
  char p[256];
  setup(&f);
  path_of(p, sizeof(p), "root/link_in"); /* the app's own path: links are fine */
  f.srv.file = p;
  get(&f, "/whatever/../ignored", &r);
  ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  ASSERT(header_is(&r, "Content-Type", "text/plain; charset=utf-8")); /* no extension: default */
  path_of(p, sizeof(p), "root/page.html");
  get(&f, "/x", &r);
  ASSERT(r.status == 200 && body_is(&r, "<p>hi</p>"));
  path_of(p, sizeof(p), "root/sub");
  get(&f, "/x", &r);
  ASSERT_EQ(r.status, 404); /* a directory is not a file */
  path_of(p, sizeof(p), "root/nothing");
  get(&f, "/x", &r);
  ASSERT(r.status == 404 && body_is(&r, "Not found\n"));
  cm_mgr_free(&f.mgr);
}

/* Every way out of the root is refused, and the secret never leaks. */
static void test_traversal(void) {
  struct fixture f;
  struct resp r;
  char abs_uri[256];
  snprintf(abs_uri, sizeof(abs_uri), "/%s/secret.txt", tmp);
  const struct {
    const char *uri;
    int status;
  } cases[] = {
      {"/../secret.txt", 400},
      {"/%2e%2e/secret.txt", 400},
      {"/%2E%2E%2Fsecret.txt", 400},
      {"/sub/..%2f..%2fsecret.txt", 400},
      {"/sub/../../secret.txt", 400},
      {"/./../secret.txt", 400},
      {"/..", 400},
      {"/..\\secret.txt", 400},
      {"/%5c..%5csecret.txt", 400},
      {"/a.txt%00.png", 400},
      {"/%00", 400},
      {"/~root", 400},
      {"/%7eroot/x", 400},
      {"/%zz", 400},
      {"/%", 400},
      {"//etc/passwd", 404}, /* under the root, not /etc */
      {abs_uri, 404},        /* likewise */
      {"/link_out", 403},
      {"/abslink_out", 403},
      {"/dirlink_out/secret.txt", 403},
      {"/dirlink_out/", 403},
  };
  setup(&f);
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    get(&f, cases[i].uri, &r);
    if (r.status != cases[i].status) fprintf(stderr, "%s -> %d\n", cases[i].uri, r.status);
    ASSERT_EQ(r.status, cases[i].status);
    ASSERT(memmem(r.body, r.body_len, "SECRET", 6) == NULL);
  }
  /* not a traversal: ".." inside a name, a link within the root */
  WRITE("root/a..b", "dots");
  get(&f, "/a..b", &r);
  ASSERT(r.status == 200 && body_is(&r, "dots"));
  get(&f, "/link_in", &r);
  ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  get(&f, "/sub/./inner/../../a.txt", &r); /* ".." refused even when it stays inside */
  ASSERT_EQ(r.status, 400);
  /* a page404 never turns a refusal into a file */
  char p[256];
  path_of(p, sizeof(p), "custom404.html");
  f.srv.opts.page404 = p;
  get(&f, "/../secret.txt", &r);
  ASSERT_EQ(r.status, 400);
  cm_mgr_free(&f.mgr);
}

/* --- streaming ------------------------------------------------------------------ */

static long vm_rss_kb(void) {
  char line[256];
  long kb = -1;
  FILE *fp = fopen("/proc/self/status", "r");
  ASSERT(fp != NULL);
  while (fgets(line, sizeof(line), fp) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  }
  fclose(fp);
  return kb;
}

/* Read a response with a body of `size` bytes (checking each byte with
 * `expect` when given), then whatever follows into `rest`.  Returns the
 * largest RSS seen while it flowed. */
static long drain_body(struct fixture *f, int fd, uint64_t size, char (*expect)(uint64_t),
                       struct wire *rest) {
  static char buf[1 << 16];
  struct resp r;
  struct wire *w = calloc(1, sizeof(*w));
  uint64_t got = 0, end = cm_millis() + 60000;
  long peak = 0;
  ASSERT(w != NULL);
  while (memmem(w->buf, w->len, "\r\n\r\n", 4) == NULL) {
    ASSERT(cm_millis() < end);
    cm_mgr_poll(&f->mgr, 1);
    ssize_t k = recv(fd, w->buf + w->len, 512, 0);
    if (k > 0) w->len += (size_t) k;
  }
  char *hend = memmem(w->buf, w->len, "\r\n\r\n", 4);
  size_t hlen = (size_t) (hend - w->buf) + 4;
  memcpy(r.head, w->buf, hlen);
  r.head[hlen] = '\0';
  ASSERT(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
  f->srv.msgs_mid = f->srv.msgs;
  got = w->len - hlen;
  for (uint64_t i = 0; expect != NULL && i < got; i++) ASSERT(w->buf[hlen + i] == expect(i));
  for (int spins = 0; got < size; spins++) {
    ASSERT(cm_millis() < end);
    cm_mgr_poll(&f->mgr, 0);
    ssize_t k;
    while (got < size && (k = recv(fd, buf, sizeof(buf) < size - got ? sizeof(buf) : size - got, 0)) > 0) {
      for (ssize_t i = 0; expect != NULL && i < k; i++) ASSERT(buf[i] == expect(got + (uint64_t) i));
      got += (uint64_t) k;
    }
    if ((spins & 255) == 0) {
      long rss = vm_rss_kb();
      if (rss > peak) peak = rss;
    }
  }
  ASSERT_EQ(got, size);
  rest->len = 0;
  free(w);
  return peak;
}

static char pattern(uint64_t i) { return (char) ('a' + (i * 7 + i / 4096) % 26); }

/* A 200 MB file (sparse: no disk needed) goes out with sendfile, and the
 * process grows by less than 10 MB while it does.  A pipelined request
 * behind it is answered after the last byte. */
static void test_big_file(void) {
  struct fixture f;
  struct wire rest = {0};
  struct resp r;
  char p[256];
  const uint64_t size = 200ull << 20;
  path_of(p, sizeof(p), "root/big.bin");
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0 && ftruncate(fd, (off_t) size) == 0);
  ASSERT(pwrite(fd, "END", 3, (off_t) size - 3) == 3);
  close(fd);
  setup(&f);
  int peer = cm_test_peer_connect(f.port);
  /* warm up: the first response allocates the loop's buffers */
  struct wire w = {0};
  peer_send(peer, "GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_resp(&f, peer, &w, false, &r);
  long before = vm_rss_kb();
  peer_send(peer, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
  long peak = drain_body(&f, peer, size, NULL, &rest);
  long after = vm_rss_kb();
  fprintf(stderr, "# RSS before %ld kB, peak %ld kB, after %ld kB\n", before, peak, after);
  ASSERT(peak - before < 10 * 1024 && after - before < 10 * 1024);
  ASSERT(f.srv.max_send_size <= 16384); /* sendfile: the body never passed through c->send */
  ASSERT_EQ(f.srv.msgs_mid, 2);         /* the pipelined request waited for the file */
  wait_resp(&f, peer, &w, false, &r);
  ASSERT(r.status == 200 && body_is(&r, "0123456789"));
  ASSERT_EQ(f.srv.msgs, 3);
  close(peer);
  cm_mgr_free(&f.mgr);
  ASSERT(unlink(p) == 0);
}

/* Where sendfile cannot be used (TLS), the file is read 64 KiB at a time
 * into c->send: exact bytes, bounded buffer; Connection: close closes after
 * the last byte; a range of a large file streams too. */
static void test_read_path(void) {
  struct fixture f;
  struct wire rest = {0}, w = {0};
  char p[256];
  const size_t size = (3u << 20) + 123;
  char *data = malloc(size);
  ASSERT(data != NULL);
  for (size_t i = 0; i < size; i++) data[i] = pattern(i);
  write_file("root/pattern.bin", data, size);
  free(data);
  path_of(p, sizeof(p), "root/pattern.bin");
  setup(&f);
  f.srv.tls = true;
  int peer = cm_test_peer_connect(f.port);
  peer_send(peer, "GET /pattern.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  drain_body(&f, peer, size, pattern, &rest);
  ASSERT(f.srv.max_send_size <= (256u << 10));
  uint64_t end = cm_millis() + WAIT_MS;
  while (!w.eof && cm_millis() < end) pump(&f.mgr, peer, &w);
  ASSERT(w.eof && w.len == 0);
  close(peer);
  /* a range in the middle, over the sendfile path */
  f.srv.tls = false;
  peer = cm_test_peer_connect(f.port);
  peer_send(peer, "GET /pattern.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000000-1099999\r\n\r\n");
  memset(&w, 0, sizeof(w));
  end = cm_millis() + WAIT_MS;
  while (memmem(w.buf, w.len, "\r\n\r\n", 4) == NULL && cm_millis() < end) pump(&f.mgr, peer, &w);
  ASSERT(strncmp(w.buf, "HTTP/1.1 206", 12) == 0);
  ASSERT(memmem(w.buf, w.len, "Content-Range: bytes 1000000-1099999/3145851", 44) != NULL);
  close(peer);
  cm_mgr_free(&f.mgr);
  ASSERT(unlink(p) == 0);
}

/* A file source on a raw connection, with bytes queued before and after
 * it: the output keeps that order; the done callback runs once. */
static int sent_calls;
static void on_sent(struct cm_conn *c, void *arg) {
  (void) arg;
  sent_calls++;
  ASSERT(cm_send(c, "]", 1));
  cm_drain(c);
}

static void raw_server(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  const char *file = c->fn_data;
  if (ev != CM_EV_ACCEPT) return;
  int fd = open(file, O_RDONLY);
  ASSERT(fd >= 0);
  ASSERT(cm_send(c, "[", 1));
  ASSERT(cm_send_fd(c, fd, 2, 5, on_sent, NULL));
  ASSERT(!cm_send_fd(c, fd, 0, 1, NULL, NULL)); /* one at a time */
  ASSERT(cm_send(c, "|", 1));                   /* after the file */
}

static void test_send_fd_order(void) {
  struct cm_mgr mgr;
  struct wire w = {0};
  char p[256];
  path_of(p, sizeof(p), "root/a.txt");
  for (int tls = 0; tls < 2; tls++) {
    sent_calls = 0;
    memset(&w, 0, sizeof(w));
    ASSERT(cm_mgr_init(&mgr) == 0);
    struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", raw_server, p);
    lsn->is_tls = (unsigned) tls; /* inherited: the read path */
    int peer = cm_test_peer_connect(lsn->loc.port);
    uint64_t end = cm_millis() + WAIT_MS;
    while (!w.eof && cm_millis() < end) pump(&mgr, peer, &w);
    ASSERT(w.eof);
    ASSERT(w.len == 8 && memcmp(w.buf, "[23456|]", 8) == 0);
    ASSERT_EQ(sent_calls, 1);
    close(peer);
    cm_mgr_free(&mgr);
  }
}

/* Streams that end early: a peer that goes away mid-file (the file is
 * dropped with the connection, no error, nothing leaks), and a peer that
 * stops reading (the idle deadline notices the stalled write). */
struct watch {
  struct server srv;
  bool closed, error;
  uint64_t last_write, closed_at;
};

static void watch_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct watch *w = c->fn_data;
  if (ev == CM_EV_WRITE) w->last_write = cm_millis();
  if (ev == CM_EV_CLOSE && c->is_accepted) {
    w->closed = true;
    w->closed_at = cm_millis();
  }
  if (ev == CM_EV_ERROR) w->error = true;
  if (ev == CM_EV_HTTP_MSG) ASSERT(cm_http_serve_dir(c, ev_data, &w->srv.opts));
}

static void test_stream_cut(void) {
  char p[256];
  const uint64_t size = 64ull << 20;
  path_of(p, sizeof(p), "root/cut.bin");
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT(fd >= 0 && ftruncate(fd, (off_t) size) == 0);
  close(fd);
  for (int stall = 0; stall < 2; stall++) {
    struct cm_mgr mgr;
    struct watch w = {.srv.opts.root_dir = root};
    struct cm_http_limits lim;
    char buf[4096];
    cm_http_limits_init(&lim);
    lim.idle_timeout_ms = 300;
    ASSERT(cm_mgr_init(&mgr) == 0);
    struct cm_conn *lsn = cm_http_listen_opts(&mgr, "http://127.0.0.1:0", &lim, watch_fn, &w);
    int peer = cm_test_peer_connect(lsn->loc.port);
    peer_send(peer, "GET /cut.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t got = 0, start = cm_millis();
    while (got < (1u << 20) && cm_millis() - start < WAIT_MS) {
      cm_mgr_poll(&mgr, 1);
      ssize_t k = recv(peer, buf, sizeof(buf), 0);
      if (k > 0) got += (uint64_t) k;
    }
    ASSERT(got >= (1u << 20));
    if (!stall) close(peer); /* gone mid-file */
    ASSERT(cm_test_poll_until(&mgr, &w.closed, WAIT_MS));
    ASSERT(!w.error);
    /* stalled: closed one idle period after the last write made progress
     * (the socket buffers filled before the peer stopped reading) */
    if (stall) ASSERT(w.closed_at - w.last_write >= 290 && w.closed_at - w.last_write < 1000);
    if (stall) close(peer);
    cm_mgr_free(&mgr);
  }
  ASSERT(unlink(p) == 0);
}

int main(void) {
  make_tree();
  RUN(test_mime);
  RUN(test_dirs);
  RUN(test_conditional);
  RUN(test_ranges);
  RUN(test_gzip);
  RUN(test_head_404_extra);
  RUN(test_serve_file);
  RUN(test_traversal);
  RUN(test_send_fd_order);
  RUN(test_read_path);
  RUN(test_big_file);
  RUN(test_stream_cut);
  remove_tree();
  return cm_test_done();
}
