/* test_http_parse.c: the pure HTTP parser and chunk decoder (http_parse.c).
 * Every input is placed right before a guard page (cm_test_guard), so a
 * single byte read past `len` crashes the test instead of passing by luck. */
#include "test.h"

/* A byte string that may contain NUL: length from the literal. */
struct bytes {
  const char *s;
  size_t n;
};
#define B(lit) \
  { (lit), sizeof(lit) - 1 }

static int parse(struct bytes in, struct cm_http_msg *hm) {
  return cm_http_parse(cm_test_guard(in.s, in.n), in.n, hm);
}

struct good {
  struct bytes in;
  const char *method, *uri, *query, *proto;
  size_t nheaders;
  int64_t content_length;
  bool chunked, keep_alive, response;
  size_t tail; /* bytes after the head (body, next request) */
};

static const struct good goods[] = {
    {B("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 1, -1, 0, 1, 0, 0},
    {B("GET /a/b?x=1&y=2?z HTTP/1.1\r\n\r\n"), "GET", "/a/b", "x=1&y=2?z", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    {B("GET /? HTTP/1.1\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    {B("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), "CONNECT", "example.com:443", "",
     "HTTP/1.1", 1, -1, 0, 1, 0, 0},
    {B("XYZZY /x HTTP/1.1\r\n\r\n"), "XYZZY", "/x", "", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    {B("M-SEARCH * HTTP/1.1\r\n\r\n"), "M-SEARCH", "*", "", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    {B("OPTIONS http://h/p?q HTTP/1.1\r\n\r\n"), "OPTIONS", "http://h/p", "q", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    /* bare LF line endings (RFC 9112 §2.2) */
    {B("GET / HTTP/1.1\nA: b\n\n"), "GET", "/", "", "HTTP/1.1", 1, -1, 0, 1, 0, 0},
    /* persistence (RFC 9112 §9.3) */
    {B("GET / HTTP/1.0\r\n\r\n"), "GET", "/", "", "HTTP/1.0", 0, -1, 0, 0, 0, 0},
    {B("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), "GET", "/", "", "HTTP/1.0", 1, -1, 0, 1, 0, 0},
    {B("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 1, -1, 0, 0, 0, 0},
    {B("GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 1, -1, 0, 0, 0,
     0},
    {B("GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 1, -1, 0, 1, 0, 0},
    /* framing */
    {B("POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), "POST", "/p", "", "HTTP/1.1", 1, 5, 0, 1, 0, 5},
    {B("POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), "POST", "/p", "", "HTTP/1.1", 1, 0, 0, 1, 0, 0},
    {B("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "POST", "/", "", "HTTP/1.1", 1, -1,
     1, 1, 0, 5},
    {B("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"), "POST", "/", "", "HTTP/1.1", 1, -1, 1,
     1, 0, 0},
    /* two pipelined requests: the head of the first only */
    {B("GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"), "GET", "/1", "", "HTTP/1.1", 0, -1, 0, 1, 0, 19},
    /* empty lines before the request line are skipped (RFC 9112 §2.2) */
    {B("\r\n\nGET / HTTP/1.1\r\n\r\n"), "GET", "/", "", "HTTP/1.1", 0, -1, 0, 1, 0, 0},
    /* obs-text in values and the target */
    {B("GET /caf\xc3\xa9 HTTP/1.1\r\nX: \xc3\xa9t\xc3\xa9\r\n\r\n"), "GET", "/caf\xc3\xa9", "", "HTTP/1.1", 1,
     -1, 0, 1, 0, 0},
    /* responses: method = version, uri = status, proto = reason */
    {B("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"), "HTTP/1.1", "200", "", "OK", 1, 3, 0, 1, 1, 3},
    {B("HTTP/1.1 404 Not Found\r\n\r\n"), "HTTP/1.1", "404", "", "Not Found", 0, -1, 0, 1, 1, 0},
    {B("HTTP/1.0 200 OK\r\n\r\n"), "HTTP/1.0", "200", "", "OK", 0, -1, 0, 0, 1, 0},
    {B("HTTP/1.1 299 \r\n\r\n"), "HTTP/1.1", "299", "", "", 0, -1, 0, 1, 1, 0},
    {B("HTTP/1.1 500\r\n\r\n"), "HTTP/1.1", "500", "", "", 0, -1, 0, 1, 1, 0},
    {B("HTTP/1.1 200 A\tB \x80\r\n\r\n"), "HTTP/1.1", "200", "", "A\tB \x80", 0, -1, 0, 1, 1, 0},
    /* RFC 9112 §6.3 (3): TE overrides CL in a response; other codings are
     * delimited by close there, not an error */
    {B("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), "HTTP/1.1", "200", "",
     "OK", 2, -1, 1, 1, 1, 0},
    {B("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), "HTTP/1.1", "200", "", "OK", 1, -1, 0, 1, 1, 0},
    {B("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), "HTTP/1.1",
     "101", "", "Switching Protocols", 2, -1, 0, 1, 1, 0},
};

static void check_good(const struct good *g) {
  struct cm_http_msg hm;
  int r = parse(g->in, &hm);
  if (r != (int) (g->in.n - g->tail)) fprintf(stderr, "input: %s\n", g->in.s);
  ASSERT_EQ(r, (int) (g->in.n - g->tail));
  ASSERT_STR(hm.method, g->method);
  ASSERT_STR(hm.uri, g->uri);
  ASSERT_STR(hm.query, g->query);
  ASSERT_STR(hm.proto, g->proto);
  ASSERT_EQ(hm.num_headers, g->nheaders);
  ASSERT_EQ(hm.content_length, g->content_length);
  ASSERT_EQ(hm.is_chunked, g->chunked);
  ASSERT_EQ(hm.keep_alive, g->keep_alive);
  ASSERT_EQ(hm.is_response, g->response);
  ASSERT_EQ(hm.body.len, 0);
  /* head runs from the start line through the blank line */
  ASSERT(hm.head.buf == hm.method.buf);
  ASSERT(hm.head.buf[hm.head.len - 1] == '\n');
  ASSERT(hm.message.buf == hm.head.buf && hm.message.len == hm.head.len);
}

static void test_good(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(goods); i++) check_good(&goods[i]);
}

static void test_headers(void) {
  struct bytes in =
      B("GET / HTTP/1.1\r\nName:   value with  spaces \t \r\nEmpty:\r\n"
        "X:\tv\r\nname: second\r\n\r\n");
  struct cm_http_msg hm;
  ASSERT_EQ(parse(in, &hm), (int) in.n);
  ASSERT_EQ(hm.num_headers, 4);
  ASSERT_STR(hm.headers[0].name, "Name");
  ASSERT_STR(hm.headers[0].value, "value with  spaces");
  ASSERT_STR(hm.headers[1].name, "Empty");
  ASSERT_EQ(hm.headers[1].value.len, 0);
  ASSERT_STR(hm.headers[2].value, "v");
  /* cm_http_header: first match, case-insensitive */
  const struct cm_str *v = cm_http_header(&hm, "NAME");
  ASSERT(v != NULL && cm_str_eq(*v, "value with  spaces"));
  ASSERT(cm_http_header(&hm, "x") != NULL);
  ASSERT(cm_http_header(&hm, "missing") == NULL);
  ASSERT(cm_http_header(&hm, "Nam") == NULL);
}

/* A request with 500 headers parses; only the first 30 are kept, and a
 * framing header past the cap still counts. */
static void test_many_headers(void) {
  static char buf[32768];
  size_t n = (size_t) snprintf(buf, sizeof(buf), "POST /many HTTP/1.1\r\n");
  for (int i = 0; i < 500; i++) n += (size_t) snprintf(buf + n, sizeof(buf) - n, "H%d: v%d\r\n", i, i);
  n += (size_t) snprintf(buf + n, sizeof(buf) - n, "Content-Length: 2\r\n\r\nhi");
  struct cm_http_msg hm;
  ASSERT_EQ(cm_http_parse(cm_test_guard(buf, n), n, &hm), (int) n - 2);
  ASSERT_EQ(hm.num_headers, CM_HTTP_MAX_HEADERS);
  ASSERT_STR(hm.headers[29].name, "H29");
  ASSERT(cm_http_header(&hm, "H30") == NULL);
  ASSERT_EQ(hm.content_length, 2);
  /* a conflicting Content-Length past the cap is still caught */
  n -= 2 + 4;
  n += (size_t) snprintf(buf + n, sizeof(buf) - n, "\r\nContent-Length: 3\r\n\r\n");
  ASSERT_EQ(cm_http_parse(cm_test_guard(buf, n), n, &hm), -1);
}

/* Every proper prefix of a valid head is "incomplete", never an error and
 * never a read past the end. */
static void test_prefixes(void) {
  static const struct bytes whole[] = {
      B("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\nConnection: close\r\n\r\n"),
      B("POST / HTTP/1.0\nContent-Length: 0\n\n"),
      B("\r\nCONNECT h:443 HTTP/1.1\r\nA:\t b \t\r\n\r\n"),
      B("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
      B("HTTP/1.1 204\r\n\r\n"),
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(whole); i++) {
    struct cm_http_msg hm;
    for (size_t n = 0; n < whole[i].n; n++) {
      struct bytes part = {whole[i].s, n};
      ASSERT_EQ(parse(part, &hm), 0);
    }
    ASSERT_EQ(parse(whole[i], &hm), (int) whole[i].n);
  }
}

static const struct bytes bads[] = {
    B("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"),                              /* NUL in a value */
    B("GET /\0 HTTP/1.1\r\n\r\n"),                                          /* NUL in the target */
    B("\0"),                                                                /* NUL first: rejected at once */
    B("GET / HTTP/1.1\r\nX: \x01\r\n\r\n"),                                 /* CTL in a value */
    B("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"),                                /* DEL in a value */
    B("GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n"),                             /* CTL in a name */
    B("GET / HTTP/1.1\r\nHost : x\r\n\r\n"),                                /* space before colon (§5.1) */
    B("GET / HTTP/1.1\r\nHost x\r\n\r\n"),                                  /* no colon */
    B("GET / HTTP/1.1\r\n: x\r\n\r\n"),                                     /* empty name */
    B("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"),                              /* obs-fold (§5.2) */
    B("GET / HTTP/1.1\r\n Host: x\r\n\r\n"),                                /* whitespace before 1st header */
    B("GET / HTTP/1.x\r\n\r\n"),                                            /* bad version */
    B("GET / HTTX/1.1\r\n\r\n"),                                            /* bad version */
    B("GET / HTTP/11\r\n\r\n"),                                             /* bad version */
    B("GET / http/1.1\r\n\r\n"),                                            /* version is case-sensitive */
    B("GET /\r\n\r\n"),                                                     /* HTTP/0.9 style: no version */
    B("GET  HTTP/1.1\r\n\r\n"),                                             /* missing target */
    B("GET HTTP/1.1\r\n\r\n"),                                              /* missing target */
    B("GET / HTTP/1.1 x\r\n\r\n"),                                          /* junk after the version */
    B("GET\t/ HTTP/1.1\r\n\r\n"),                                           /* HTAB is not SP here */
    B(" GET / HTTP/1.1\r\n\r\n"),                                           /* leading space */
    B("GE(T / HTTP/1.1\r\n\r\n"),                                           /* non-tchar in method */
    B("GET /\x7f HTTP/1.1\r\n\r\n"),                                        /* DEL in target */
    B("GET / HTTP/1.1\rX: y\r\n\r\n"),                                      /* bare CR */
    B("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n"),                                 /* CR inside a value */
    B("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),                      /* TLS ClientHello */
    B("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), /* CL conflict */
    B("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), /* CL repeated */
    B("POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc"),       /* in any case */
    B("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), /* CL+TE */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), /* TE+CL */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),                         /* unframeable request */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),                /* chunked not last */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),             /* chunked twice */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"),                             /* empty TE */
    B("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
    B("GET / HTTP/1.1\r\nConnection: close\r\nConnection: close\r\n\r\n"), /* dup Connection */
    B("GET / HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n"),             /* dup Cookie */
    B("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),                     /* dup Host */
    B("GET / HTTP/1.1\r\nAuthorization: x\r\nauthorization: y\r\n\r\n"),   /* dup Authorization */
    B("POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n"),                   /* non-digit CL */
    B("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
    B("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
    B("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"),
    B("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
    B("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"), /* overflow */
    B("HTTP/1.1 2x0 OK\r\n\r\n"),                                         /* bad status */
    B("HTTP/1.1 20 OK\r\n\r\n"),                                          /* short status */
    B("HTTP/1.1 200 O\x01K\r\n\r\n"),                                     /* CTL in reason */
    B("HTTP/1.1\r\n\r\n"),                                                /* no status */
    B("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
    B("\r\r\n"), /* CR without LF before the start */
};

static void test_bad(void) {
  ASSERT(CM_ARRAY_SIZE(bads) >= 25);
  for (size_t i = 0; i < CM_ARRAY_SIZE(bads); i++) {
    struct cm_http_msg hm;
    int r = parse(bads[i], &hm);
    if (r != -1) fprintf(stderr, "bad input #%zu parsed as %d\n", i, r);
    ASSERT_EQ(r, -1);
  }
}

/* Garbage is refused as soon as it is seen, without waiting for a full
 * head (otherwise a peer could fill the recv buffer first). */
static void test_early_reject(void) {
  struct cm_http_msg hm;
  static const struct bytes early[] = {B("GET /\x01"), B("G\0"), B("GET / HTTP/2\r"),
                                       B("GET / HTTP/1.1\r\nA\x01"), B("GET / HTTP/1.1\r\n\t")};
  for (size_t i = 0; i < CM_ARRAY_SIZE(early); i++) ASSERT_EQ(parse(early[i], &hm), -1);
  /* ...but a long partial head is just incomplete */
  ASSERT_EQ(parse((struct bytes) B("GET /aaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nX-Long: bbbbbbbb"), &hm), 0);
}

struct chunk_case {
  struct bytes in;
  int ret;
  size_t ofs, len;
};

static void test_dechunk(void) {
  static const struct chunk_case cases[] = {
      {B("5\r\nhello\r\n"), 10, 3, 5},
      {B("5\r\nhello\r\n3\r\nabc\r\n"), 10, 3, 5},
      {B("A;name=val\r\n0123456789\r\n"), 24, 12, 10},
      {B("a ; x\r\n0123456789\r\n"), 19, 7, 10},
      {B("00000010\r\n0123456789abcdef\r\n"), 28, 10, 16},
      {B("5\nhello\n"), 8, 2, 5},
      {B("0\r\n\r\n"), 5, 3, 0},
      {B("0\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 5, 3, 0},
      {B("0\r\nX-Trailer: v\r\n\r\n"), 19, 3, 0},
      {B("0\n\n"), 3, 2, 0},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    size_t ofs = 99, len = 99;
    const char *p = cm_test_guard(cases[i].in.s, cases[i].in.n);
    int r = cm_http_dechunk(p, cases[i].in.n, &ofs, &len);
    if (r != cases[i].ret) fprintf(stderr, "chunk case #%zu gave %d\n", i, r);
    ASSERT_EQ(r, cases[i].ret);
    ASSERT_EQ(ofs, cases[i].ofs);
    ASSERT_EQ(len, cases[i].len);
  }
  /* every prefix of a complete chunk is incomplete */
  static const struct bytes whole[] = {B("1f;x=\"y\"\r\n0123456789012345678901234567890\r\n"),
                                       B("0\r\nA: b\r\nC: d\r\n\r\n")};
  for (size_t i = 0; i < CM_ARRAY_SIZE(whole); i++) {
    for (size_t n = 0; n < whole[i].n; n++) {
      size_t ofs, len;
      ASSERT_EQ(cm_http_dechunk(cm_test_guard(whole[i].s, n), n, &ofs, &len), 0);
    }
  }
  /* data still arriving: the size is known already (http.c refuses an
   * oversized chunk on it); a size line still arriving leaves it alone */
  {
    size_t ofs = 99, len = 99;
    ASSERT_EQ(cm_http_dechunk(cm_test_guard("fffff\r\nab", 9), 9, &ofs, &len), 0);
    ASSERT(ofs == 7 && len == 0xfffff);
    ofs = len = 99;
    ASSERT_EQ(cm_http_dechunk(cm_test_guard("fffff", 5), 5, &ofs, &len), 0);
    ASSERT(ofs == 99 && len == 99);
  }
  static const struct bytes bad[] = {
      B("g\r\n"),
      B("\r\n"),
      B("5\r\nhelloX\r\n"),
      B("5 x\r\n"),
      B("5\rX"),
      B("-5\r\n"),
      B("ffffffffffffffffffff\r\n"),
      B("5;\x01\r\n"),
      B("0\r\nbad trailer\r\n\r\n"),
      B("0\r\n a: b\r\n\r\n"),
      B("5\r\nhello\r\r\n"),
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    size_t ofs, len;
    int r = cm_http_dechunk(cm_test_guard(bad[i].s, bad[i].n), bad[i].n, &ofs, &len);
    if (r != -1) fprintf(stderr, "bad chunk #%zu gave %d\n", i, r);
    ASSERT_EQ(r, -1);
  }
}

static void test_reason(void) {
  ASSERT(strcmp(cm_http_reason(200), "OK") == 0);
  ASSERT(strcmp(cm_http_reason(404), "Not Found") == 0);
  ASSERT(strcmp(cm_http_reason(101), "Switching Protocols") == 0);
  ASSERT(strcmp(cm_http_reason(308), "Permanent Redirect") == 0);
  ASSERT(strcmp(cm_http_reason(418), "I'm a teapot") == 0);
  ASSERT(strcmp(cm_http_reason(431), "Request Header Fields Too Large") == 0);
  ASSERT(strcmp(cm_http_reason(511), "Network Authentication Required") == 0);
  ASSERT(strcmp(cm_http_reason(299), "") == 0);
  ASSERT(strcmp(cm_http_reason(0), "") == 0);
  ASSERT(strcmp(cm_http_reason(-1), "") == 0);
  /* every code the brief lists has a phrase */
  static const int must[][2] = {{100, 101}, {200, 206}, {300, 305}, {307, 308}, {400, 418}, {421, 426},
                                {428, 429}, {431, 431}, {451, 451}, {500, 505}, {511, 511}};
  for (size_t i = 0; i < CM_ARRAY_SIZE(must); i++) {
    for (int s = must[i][0]; s <= must[i][1]; s++) ASSERT(cm_http_reason(s)[0] != '\0');
  }
}

static void test_empty(void) {
  struct cm_http_msg hm;
  ASSERT_EQ(cm_http_parse(cm_test_guard("", 0), 0, &hm), 0);
  ASSERT_EQ(hm.content_length, -1);
  size_t ofs, len;
  ASSERT_EQ(cm_http_dechunk(cm_test_guard("", 0), 0, &ofs, &len), 0);
}

int main(void) {
  RUN(test_good);
  RUN(test_headers);
  RUN(test_many_headers);
  RUN(test_prefixes);
  RUN(test_bad);
  RUN(test_early_reject);
  RUN(test_dechunk);
  RUN(test_reason);
  RUN(test_empty);
  return cm_test_done();
}
