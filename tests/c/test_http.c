/* test_http.c: the HTTP protocol handler (http.c) over real loopback
 * sockets, driving the real loop.  The peer is a plain non-blocking socket,
 * so the bytes on the wire are checked exactly. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* the request tracker of http_out.c */
#include "test.h"

#define WAIT_MS 3000 /* upper bound of every wait: no test can hang */

/* What the server handler saw, and how it answers. */
struct server {
  int hdrs, msgs, reads; /* events seen */
  char order[64];        /* 'H' HDRS, 'M' MSG, 'R' READ (n > 0), 'r' READ (n == 0) */
  size_t norder;
  char uri[8][32]; /* uris of the requests, in order */
  char body[4096]; /* body of the last request */
  size_t body_len;
  size_t recv_in_msg;      /* c->recv.len inside HTTP_MSG */
  size_t recv_in_read;     /* c->recv.len inside the READ that followed */
  size_t head_len_in_msg;  /* hm->head.len inside HTTP_MSG */
  bool defer;              /* don't answer in HTTP_MSG; keep the conn */
  bool close_in_hdrs;      /* cm_close() in HTTP_HDRS */
  bool upgrade;            /* answer 101 and switch to a raw protocol */
  int fail;                /* 1: fail the request (500); 2: after a partial answer */
  const char *fields;      /* headers of the 200 (NULL: Content-Type only) */
  struct cm_conn *pending; /* deferred connection */
  bool closed;             /* an accepted connection got CLOSE */
};

static void note(struct server *s, char ch) {
  if (s->norder + 1 < sizeof(s->order)) s->order[s->norder++] = ch;
}

static void copy_slice(char *dst, size_t size, struct cm_str s) {
  size_t n = s.len < size - 1 ? s.len : size - 1;
  if (n > 0) memcpy(dst, s.buf, n);
  dst[n] = '\0';
}

/* The protocol that takes over after an upgrade: counts what it gets. */
static size_t raw_bytes;
static void raw_proto(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_READ) {
    raw_bytes += c->recv.len;
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
}

static void on_msg(struct cm_conn *c, struct server *s, struct cm_http_msg *hm) {
  if (s->msgs < 8) copy_slice(s->uri[s->msgs], sizeof(s->uri[0]), hm->uri);
  s->msgs++;
  s->body_len = hm->body.len < sizeof(s->body) ? hm->body.len : sizeof(s->body);
  memcpy(s->body, hm->body.buf, s->body_len);
  s->recv_in_msg = c->recv.len;
  s->head_len_in_msg = hm->head.len;
  if (s->fail != 0) {
    ASSERT(!cm_http_response_started(c));
    if (s->fail == 2) ASSERT(cm_send(c, "HTTP/1.1 200 OK\r\n", 17));
    ASSERT_EQ(cm_http_internal_error(c), s->fail == 1);
    ASSERT(cm_http_response_started(c));
    if (s->fail == 2) cm_close(c);
  } else if (s->upgrade) {
    static const char h[] = "Upgrade: test\r\nConnection: Upgrade\r\n";
    ASSERT(cm_http_reply(c, 101, h, sizeof(h) - 1, NULL, 0));
    c->pfn = raw_proto;
  } else if (s->defer) {
    s->pending = c;
  } else {
    const char *h = s->fields != NULL ? s->fields : "Content-Type: text/plain\r\n";
    ASSERT(cm_http_reply(c, 200, h, strlen(h), hm->uri.buf, hm->uri.len));
  }
}

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct server *s = c->fn_data;
  if (ev == CM_EV_HTTP_HDRS) {
    s->hdrs++;
    note(s, 'H');
    if (s->close_in_hdrs) cm_close(c);
  } else if (ev == CM_EV_HTTP_MSG) {
    note(s, 'M');
    on_msg(c, s, ev_data);
  } else if (ev == CM_EV_READ) {
    long n = *(const long *) ev_data;
    note(s, n > 0 ? 'R' : 'r');
    s->reads++;
    s->recv_in_read = c->recv.len;
  } else if (ev == CM_EV_CLOSE && c->is_accepted) {
    s->closed = true;
  }
}

/* --- the peer: a plain socket ------------------------------------------ */

static void peer_send(int fd, const char *s, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
    ASSERT(k > 0);
    s += k;
    n -= (size_t) k;
  }
}

#define SEND(fd, lit) peer_send((fd), (lit), sizeof(lit) - 1)

/* What the peer received so far. */
struct inbox {
  char buf[16384];
  size_t len;
  bool eof;
};

static void peer_recv(int fd, struct inbox *in) {
  ssize_t k;
  while ((k = recv(fd, in->buf + in->len, sizeof(in->buf) - 1 - in->len, 0)) > 0) {
    in->len += (size_t) k;
    in->buf[in->len] = '\0';
  }
  if (k == 0) in->eof = true;
  if (k < 0) ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Poll until the peer has `want` bytes (or EOF with want == SIZE_MAX). */
static void peer_wait(struct cm_mgr *mgr, int fd, struct inbox *in, size_t want) {
  uint64_t end = cm_millis() + WAIT_MS;
  while (cm_millis() < end && !in->eof && in->len < want) {
    cm_mgr_poll(mgr, 5);
    peer_recv(fd, in);
  }
}

/* Poll a few rounds; for checking that nothing happens. */
static void spin(struct cm_mgr *mgr, int rounds) {
  for (int i = 0; i < rounds; i++) cm_mgr_poll(mgr, 2);
}

static void wait_for(struct cm_mgr *mgr, const int *counter, int value) {
  uint64_t end = cm_millis() + WAIT_MS;
  while (cm_millis() < end && *counter < value) cm_mgr_poll(mgr, 5);
  ASSERT(*counter >= value);
}

struct fixture {
  struct cm_mgr mgr;
  struct server srv;
  uint16_t port;
};

static void setup(struct fixture *f) {
  memset(f, 0, sizeof(*f));
  ASSERT(cm_mgr_init(&f->mgr) == 0);
  struct cm_conn *lsn = cm_http_listen(&f->mgr, "http://127.0.0.1:0", server_fn, &f->srv);
  ASSERT(lsn != NULL);
  f->port = lsn->loc.port;
  ASSERT(f->port != 0);
}

/* setup() with explicit limits. */
static void setup_limits(struct fixture *f, const struct cm_http_limits *lim) {
  memset(f, 0, sizeof(*f));
  ASSERT(cm_mgr_init(&f->mgr) == 0);
  struct cm_conn *lsn = cm_http_listen_opts(&f->mgr, "http://127.0.0.1:0", lim, server_fn, &f->srv);
  ASSERT(lsn != NULL);
  f->port = lsn->loc.port;
}

#define RESP(body) "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " body

/* --- server tests ------------------------------------------------------- */

static void test_simple_get(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char req[] = "GET /hello?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
  static const char want[] = RESP("6\r\n\r\n/hello");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, req);
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 1);
  ASSERT(strcmp(f.srv.uri[0], "/hello") == 0);
  /* SPEC 2.5.2: HDRS, MSG, then READ; raw request visible in MSG, consumed
   * by the time READ arrives */
  ASSERT(strncmp(f.srv.order, "HMR", 3) == 0);
  ASSERT_EQ(f.srv.recv_in_msg, sizeof(req) - 1);
  ASSERT_EQ(f.srv.head_len_in_msg, sizeof(req) - 1);
  ASSERT_EQ(f.srv.recv_in_read, 0);
  /* keep-alive: the connection stays open */
  spin(&f.mgr, 3);
  peer_recv(fd, &in);
  ASSERT(!in.eof && !f.srv.closed);
  close(fd);
  cm_mgr_free(&f.mgr);
}

static void test_pipelined(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] = RESP("2\r\n\r\n/1") RESP("2\r\n\r\n/2") RESP("2\r\n\r\n/3");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd,
       "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\nGET /3 HTTP/1.1\r\nHost: "
       "x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 3);
  ASSERT(strcmp(f.srv.uri[2], "/3") == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* A timer stands in for a worker thread's wakeup. */
static void reply_later(struct cm_timer *t, void *arg) {
  (void) t;
  struct server *s = arg;
  ASSERT(s->pending != NULL);
  s->defer = false;
  ASSERT(cm_http_reply(s->pending, 200, "Content-Type: text/plain\r\n", 26, "late", 4));
  s->pending = NULL;
}

static void test_deferred(void) {
  struct fixture f;
  struct inbox in = {0};
  struct cm_timer t = {0};
  static const char want[] = RESP("4\r\n\r\nlate") RESP("2\r\n\r\n/b");
  setup(&f);
  f.srv.defer = true;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_for(&f.mgr, &f.srv.msgs, 1);
  /* the second request waits while the first response is pending */
  spin(&f.mgr, 5);
  ASSERT_EQ(f.srv.msgs, 1);
  peer_recv(fd, &in);
  ASSERT_EQ(in.len, 0);
  ASSERT(cm_timer_start(&f.mgr, &t, 20, CM_TIMER_ONCE, reply_later, &f.srv));
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 2);
  ASSERT(strcmp(f.srv.uri[1], "/b") == 0);
  ASSERT(strchr(f.srv.order, 'r') != NULL); /* the resumed read */
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* Deferred by hand, outside any handler (as after a wakeup), for a request
 * that asked to close: the late response still drains the connection. */
static void test_deferred_close(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 4\r\n\r\nlate";
  setup(&f);
  f.srv.defer = true;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_for(&f.mgr, &f.srv.msgs, 1);
  spin(&f.mgr, 3);
  reply_later(NULL, &f.srv);
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 1);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* A request that ends its connection gets a response that says so (RFC
 * 9112 §9.6), once: a Connection field of the handler's is not doubled. */
static void test_connection_close(void) {
  static const char *const reqs[] = {
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /c HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n",
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      "GET /c HTTP/1.0\r\n\r\n",
  };
  static const char *const hdrs[] = {
      NULL,
      NULL,
      NULL,
      "Content-Type: text/plain\r\nconnection: close\r\n",
      "Content-Type: text/plain\r\nCONNECTION:close\r\n",
  };
  static const char *const want[] = {
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 2\r\n\r\n/c",
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 2\r\n\r\n/c",
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 2\r\n\r\n/c",
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\nContent-Length: 2\r\n\r\n/c",
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCONNECTION:close\r\nContent-Length: 2\r\n\r\n/c",
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(reqs); i++) {
    struct fixture f;
    struct inbox in = {0};
    setup(&f);
    f.srv.fields = hdrs[i];
    int fd = cm_test_peer_connect(f.port);
    peer_send(fd, reqs[i], strlen(reqs[i]));
    peer_wait(&f.mgr, fd, &in, SIZE_MAX);
    ASSERT(in.eof); /* the peer sees FIN after the whole response */
    ASSERT_EQ(in.len, strlen(want[i]));
    ASSERT(memcmp(in.buf, want[i], in.len) == 0);
    ASSERT_EQ(f.srv.msgs, 1);
    close(fd);
    cm_mgr_free(&f.mgr);
  }
  static const char keep[] = RESP("2\r\n\r\n/c");
  /* HTTP/1.0 with keep-alive stays open */
  struct fixture f;
  struct inbox in = {0};
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, sizeof(keep) - 1);
  spin(&f.mgr, 3);
  peer_recv(fd, &in);
  ASSERT(!in.eof && in.len == sizeof(keep) - 1 && memcmp(in.buf, keep, in.len) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

static void test_body_split(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] = RESP("2\r\n\r\n/p");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "POST /p HTTP/1.1\r\nHost: x\r\nCont");
  spin(&f.mgr, 3);
  ASSERT_EQ(f.srv.hdrs, 0);
  SEND(fd, "ent-Length: 10\r\n\r\n012");
  wait_for(&f.mgr, &f.srv.hdrs, 1);
  spin(&f.mgr, 3);
  ASSERT_EQ(f.srv.msgs, 0);
  SEND(fd, "3456");
  spin(&f.mgr, 3);
  ASSERT_EQ(f.srv.msgs, 0);
  SEND(fd, "789GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_for(&f.mgr, &f.srv.msgs, 2);
  ASSERT_EQ(f.srv.hdrs, 2); /* once per message */
  ASSERT(strcmp(f.srv.uri[0], "/p") == 0 && strcmp(f.srv.uri[1], "/next") == 0);
  peer_wait(&f.mgr, fd, &in, 2 * (sizeof(want) - 1) + 3);
  ASSERT(memcmp(in.buf, want, sizeof(want) - 1) == 0);
  close(fd);
  /* the body itself, on a fresh connection, one byte at a time */
  fd = cm_test_peer_connect(f.port);
  static const char req[] = "PUT /q HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
  for (size_t i = 0; i < sizeof(req) - 1; i++) {
    peer_send(fd, req + i, 1);
    spin(&f.mgr, 1);
  }
  wait_for(&f.mgr, &f.srv.msgs, 3);
  ASSERT(f.srv.body_len == 5 && memcmp(f.srv.body, "hello", 5) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

static void test_chunked_request(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] = RESP("2\r\n\r\n/c") RESP("2\r\n\r\n/d");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n wo");
  spin(&f.mgr, 3);
  ASSERT_EQ(f.srv.msgs, 0);
  SEND(fd, "rld\r\n0\r\nTrailer: t\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT_EQ(f.srv.msgs, 2);
  ASSERT(strcmp(f.srv.uri[0], "/c") == 0 && strcmp(f.srv.uri[1], "/d") == 0);
  ASSERT(memcmp(in.buf, want, sizeof(want) - 1) == 0);
  /* the body of /c was de-chunked; /d has none */
  ASSERT_EQ(f.srv.body_len, 0);
  close(fd);
  fd = cm_test_peer_connect(f.port);
  SEND(fd,
       "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n");
  wait_for(&f.mgr, &f.srv.msgs, 3);
  ASSERT(f.srv.body_len == 4 && memcmp(f.srv.body, "abcd", 4) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

static const char bad_request[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nBad Request\n";

static void test_bad_request(void) {
  static const char *const junk[] = {
      "\x01\x02 junk\r\n\r\n", "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\n\r\n", /* a response sent to a server */
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(junk); i++) {
    struct fixture f;
    struct inbox in = {0}, in2 = {0};
    static const char want[] = RESP("3\r\n\r\n/ok");
    setup(&f);
    int good = cm_test_peer_connect(f.port);
    int bad = cm_test_peer_connect(f.port);
    SEND(good, "GET /ok HTTP/1.1\r\nHost: x\r\n");
    spin(&f.mgr, 2);
    peer_send(bad, junk[i], strlen(junk[i]));
    peer_wait(&f.mgr, bad, &in, SIZE_MAX);
    ASSERT(in.eof);
    ASSERT_EQ(in.len, sizeof(bad_request) - 1);
    ASSERT(memcmp(in.buf, bad_request, in.len) == 0);
    ASSERT_EQ(f.srv.msgs, 0);
    /* the other connection is still served */
    SEND(good, "\r\n");
    peer_wait(&f.mgr, good, &in2, sizeof(want) - 1);
    ASSERT_EQ(in2.len, sizeof(want) - 1);
    ASSERT(memcmp(in2.buf, want, in2.len) == 0);
    close(good);
    close(bad);
    cm_mgr_free(&f.mgr);
  }
}

static void test_close_in_hdrs(void) {
  struct fixture f;
  struct inbox in = {0};
  setup(&f);
  f.srv.close_in_hdrs = true;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof && in.len == 0);
  ASSERT_EQ(f.srv.hdrs, 1);
  ASSERT_EQ(f.srv.msgs, 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* A handler that swaps the protocol in HTTP_MSG (as a WebSocket upgrade
 * does): the HTTP state goes away and the bytes after the request reach
 * the new protocol. */
static void test_upgrade(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\n"
      "Connection: Upgrade\r\n\r\n";
  setup(&f);
  f.srv.upgrade = true;
  raw_bytes = 0;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nPING");
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  uint64_t end = cm_millis() + WAIT_MS;
  while (raw_bytes < 4 && cm_millis() < end) cm_mgr_poll(&f.mgr, 5);
  ASSERT_EQ(raw_bytes, 4);
  SEND(fd, "MORE");
  end = cm_millis() + WAIT_MS;
  while (raw_bytes < 8 && cm_millis() < end) cm_mgr_poll(&f.mgr, 5);
  ASSERT_EQ(raw_bytes, 8);
  ASSERT_EQ(f.srv.msgs, 1);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* Replies that carry no body on the wire: HEAD, 204, 1xx. */
static void test_reply_shapes(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] = RESP("5\r\n\r\n");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  spin(&f.mgr, 2);
  peer_recv(fd, &in);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);

  /* status formatting straight into c->send, checked without a socket */
  struct cm_mgr mgr;
  struct cm_conn c;
  ASSERT(cm_mgr_init(&mgr) == 0);
  memset(&c, 0, sizeof(c));
  cm_iobuf_init(&c.send, 0);
  c.fd = -1;
  c.mgr = &mgr; /* cm__touch() links c into mgr's pending list */
  ASSERT(cm_http_reply(&c, 299, NULL, 0, "a\0b", 3));
  static const char w1[] = "HTTP/1.1 299 \r\nContent-Length: 3\r\n\r\na\0b";
  ASSERT(c.send.len == sizeof(w1) - 1 && memcmp(cm_iobuf_data(&c.send), w1, c.send.len) == 0);
  cm_iobuf_consume(&c.send, c.send.len);
  ASSERT(cm_http_reply(&c, 204, "X: y\r\n", 6, NULL, 0));
  static const char w2[] = "HTTP/1.1 204 No Content\r\nX: y\r\n\r\n";
  ASSERT(c.send.len == sizeof(w2) - 1 && memcmp(cm_iobuf_data(&c.send), w2, c.send.len) == 0);
  ASSERT(!cm_http_reply(&c, 204, NULL, 0, "x", 1)); /* 204 has no content */
  cm_iobuf_consume(&c.send, c.send.len);
  ASSERT(cm_http_reply(&c, 304, "Etag: \"1\"\r\n", 11, NULL, 0)); /* no length: not the 200's */
  static const char w3[] = "HTTP/1.1 304 Not Modified\r\nEtag: \"1\"\r\n\r\n";
  ASSERT(c.send.len == sizeof(w3) - 1 && memcmp(cm_iobuf_data(&c.send), w3, c.send.len) == 0);
  cm_iobuf_consume(&c.send, c.send.len);
  /* an interim response neither has a length nor finishes the request */
  c.is_resp = 1;
  ASSERT(cm_http_reply(&c, 100, NULL, 0, NULL, 0));
  ASSERT(c.send.len == 25 && memcmp(cm_iobuf_data(&c.send), "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
  ASSERT(c.is_resp);
  ASSERT(cm_http_reply(&c, 200, NULL, 0, NULL, 0));
  ASSERT(!c.is_resp);
  ASSERT(!cm_http_reply(&c, 99, NULL, 0, NULL, 0));
  ASSERT(!cm_http_reply(&c, 1000, NULL, 0, NULL, 0));
  c.is_closing = 1;
  ASSERT(!cm_http_reply(&c, 200, NULL, 0, NULL, 0));
  cm_iobuf_free(&c.send);
  mgr.pending = NULL; /* c is not a real connection: never settle it */
  cm_mgr_free(&mgr);
}

/* Send a large request while the loop runs (the socket buffers fill). */
static void peer_send_big(struct cm_mgr *mgr, int fd, const char *s, size_t n) {
  uint64_t end = cm_millis() + WAIT_MS;
  while (n > 0 && cm_millis() < end) {
    ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
    if (k > 0) {
      s += k;
      n -= (size_t) k;
    } else {
      ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
      cm_mgr_poll(mgr, 1);
    }
  }
  ASSERT_EQ(n, 0);
}

/* A 16 KB header (SPEC Decision 14's line limit) and a body of megabytes
 * both work. */
static void test_large(void) {
  struct fixture f;
  struct inbox in = {0};
  size_t hdr = 16 * 1024 - 7, body = 2u << 20, cap = hdr + body + 256;
  char *req = malloc(cap);
  ASSERT(req != NULL);
  size_t n =
      (size_t) snprintf(req, cap, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\nX-Big: ", body);
  memset(req + n, 'h', hdr);
  n += hdr;
  memcpy(req + n, "\r\n\r\n", 4);
  n += 4;
  for (size_t i = 0; i < body; i++) req[n + i] = (char) ('a' + i % 26);
  n += body;
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  peer_send_big(&f.mgr, fd, req, n);
  wait_for(&f.mgr, &f.srv.msgs, 1);
  ASSERT_EQ(f.srv.hdrs, 1);
  ASSERT(memcmp(f.srv.body, "abcdefghijklmnopqrstuvwxyzab", 28) == 0);
  static const char want[] = RESP("4\r\n\r\n/big");
  peer_wait(&f.mgr, fd, &in, sizeof(want) - 1);
  ASSERT(in.len == sizeof(want) - 1 && memcmp(in.buf, want, in.len) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
  free(req);
}

/* A peer that closes mid-request: no message, no leak (ASan checks). */
static void test_peer_abort(void) {
  struct fixture f;
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial");
  wait_for(&f.mgr, &f.srv.hdrs, 1);
  close(fd);
  uint64_t end = cm_millis() + WAIT_MS;
  while (!f.srv.closed && cm_millis() < end) cm_mgr_poll(&f.mgr, 5);
  ASSERT(f.srv.closed);
  ASSERT_EQ(f.srv.msgs, 0);
  cm_mgr_free(&f.mgr);
}

/* --- client tests ------------------------------------------------------- */

struct client {
  const char *request;
  int msgs;
  bool got_msg, closed, error;
  char method[16], uri[16], proto[32], body[256];
  size_t body_len;
};

static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct client *cl = c->fn_data;
  if (ev == CM_EV_CONNECT) {
    ASSERT(cm_send(c, cl->request, strlen(cl->request)));
  } else if (ev == CM_EV_HTTP_MSG) {
    struct cm_http_msg *hm = ev_data;
    copy_slice(cl->method, sizeof(cl->method), hm->method);
    copy_slice(cl->uri, sizeof(cl->uri), hm->uri);
    copy_slice(cl->proto, sizeof(cl->proto), hm->proto);
    cl->body_len = hm->body.len < sizeof(cl->body) ? hm->body.len : sizeof(cl->body);
    memcpy(cl->body, hm->body.buf, cl->body_len);
    cl->msgs++;
    cl->got_msg = true;
  } else if (ev == CM_EV_ERROR) {
    cl->error = true;
  } else if (ev == CM_EV_CLOSE) {
    cl->closed = true;
  }
}

static void test_client_own_server(void) {
  struct fixture f;
  struct client cl = {.request = "GET /client HTTP/1.1\r\nHost: x\r\n\r\n"};
  char url[64];
  setup(&f);
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) f.port);
  ASSERT(cm_http_connect(&f.mgr, url, client_fn, &cl) != NULL);
  ASSERT(cm_test_poll_until(&f.mgr, &cl.got_msg, WAIT_MS));
  ASSERT(strcmp(cl.method, "HTTP/1.1") == 0);
  ASSERT(strcmp(cl.uri, "200") == 0);
  ASSERT(strcmp(cl.proto, "OK") == 0);
  ASSERT(cl.body_len == 7 && memcmp(cl.body, "/client", 7) == 0);
  ASSERT(!cl.error);
  cm_mgr_free(&f.mgr);
}

/* A raw server that answers every read with a canned response. */
struct canned {
  const char *text;
  bool close_after;
};

static void canned_fn(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  const struct canned *k = c->fn_data;
  if (ev != CM_EV_READ || c->recv.len == 0) return;
  cm_iobuf_consume(&c->recv, c->recv.len);
  ASSERT(cm_send(c, k->text, strlen(k->text)));
  if (k->close_after) cm_drain(c);
}

static void run_canned(const struct canned *k, struct client *cl) {
  struct cm_mgr mgr;
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", canned_fn, (void *) k);
  ASSERT(lsn != NULL);
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) lsn->loc.port);
  cl->request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT(cm_http_connect(&mgr, url, client_fn, cl) != NULL);
  ASSERT(cm_test_poll_until(&mgr, k->close_after ? &cl->closed : &cl->got_msg, WAIT_MS));
  cm_mgr_free(&mgr);
}

static void test_client_close_delimited(void) {
  struct canned k = {"HTTP/1.1 200 OK\r\nX: y\r\n\r\nhello by close", true};
  struct client cl = {0};
  run_canned(&k, &cl);
  ASSERT_EQ(cl.msgs, 1);
  ASSERT(strcmp(cl.uri, "200") == 0);
  ASSERT(cl.body_len == 14 && memcmp(cl.body, "hello by close", 14) == 0);
  ASSERT(!cl.error);
}

static void test_client_framed(void) {
  /* chunked, then a bodiless 204, then 304 with a (meaningless) length */
  struct canned k = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
      "HTTP/1.1 204 No Content\r\n\r\n"
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
      true};
  struct client cl = {0};
  run_canned(&k, &cl);
  ASSERT_EQ(cl.msgs, 3);
  ASSERT(strcmp(cl.uri, "304") == 0 && strcmp(cl.proto, "Not Modified") == 0);
  ASSERT_EQ(cl.body_len, 0);
  ASSERT(!cl.error);
  /* a Content-Length response that the server does not close */
  struct canned k2 = {"HTTP/1.0 404 Not Found\r\nContent-Length: 4\r\n\r\nnope", false};
  struct client cl2 = {0};
  run_canned(&k2, &cl2);
  ASSERT(strcmp(cl2.method, "HTTP/1.0") == 0 && strcmp(cl2.uri, "404") == 0);
  ASSERT(cl2.body_len == 4 && memcmp(cl2.body, "nope", 4) == 0);
}

static void test_client_garbage(void) {
  struct canned k = {"SSH-2.0-OpenSSH\r\n\r\n", true};
  struct client cl = {0};
  run_canned(&k, &cl);
  ASSERT(cl.error);
  ASSERT_EQ(cl.msgs, 0);
}

/* --- limits and deadlines ----------------------------------------------- */

/* The refusal a limit produces: status, "Connection: close", reason as body. */
static size_t refusal(char *buf, size_t size, int status) {
  const char *r = cm_http_reason(status);
  return (size_t) snprintf(buf, size,
                           "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                           "Connection: close\r\n\r\n%s\n",
                           status, r, strlen(r) + 1, r);
}

/* Send `req` on a fresh connection; the answer must be exactly the
 * refusal `status` followed by EOF, with no message delivered, while a
 * good request on another connection is still answered. */
static void expect_refused(const struct cm_http_limits *lim, const char *req, size_t len, int status) {
  struct fixture f;
  struct inbox in = {0}, in2 = {0};
  char want[256];
  static const char ok[] = RESP("3\r\n\r\n/ok");
  size_t n = refusal(want, sizeof(want), status);
  setup_limits(&f, lim);
  int bad = cm_test_peer_connect(f.port);
  int good = cm_test_peer_connect(f.port);
  peer_send_big(&f.mgr, bad, req, len);
  peer_wait(&f.mgr, bad, &in, SIZE_MAX);
  ASSERT(in.eof);
  ASSERT_EQ(in.len, n);
  ASSERT(memcmp(in.buf, want, n) == 0);
  ASSERT_EQ(f.srv.msgs, 0);
  SEND(good, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, good, &in2, sizeof(ok) - 1);
  ASSERT(in2.len == sizeof(ok) - 1 && memcmp(in2.buf, ok, in2.len) == 0);
  close(bad);
  close(good);
  cm_mgr_free(&f.mgr);
}

/* Send `req` and expect the plain 200 answer of server_fn for `uri`. */
static void expect_served(const struct cm_http_limits *lim, const char *req, size_t len, const char *uri) {
  struct fixture f;
  struct inbox in = {0};
  char want[256];
  size_t n = (size_t) snprintf(want, sizeof(want), RESP("%zu\r\n\r\n%s"), strlen(uri), uri);
  setup_limits(&f, lim);
  int fd = cm_test_peer_connect(f.port);
  peer_send_big(&f.mgr, fd, req, len);
  peer_wait(&f.mgr, fd, &in, n);
  ASSERT(in.len == n && memcmp(in.buf, want, n) == 0);
  close(fd);
  cm_mgr_free(&f.mgr);
}

static char *repeat(const char *prefix, char ch, size_t count, const char *suffix, size_t *len) {
  size_t p = strlen(prefix), q = strlen(suffix);
  char *buf = malloc(p + count + q + 1);
  ASSERT(buf != NULL);
  memcpy(buf, prefix, p);
  memset(buf + p, ch, count);
  memcpy(buf + p + count, suffix, q + 1);
  *len = p + count + q;
  return buf;
}

static void test_limit_defaults(void) {
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  ASSERT_EQ(lim.max_head, CM_HTTP_MAX_HEAD);
  ASSERT(lim.max_headers >= 500); /* SPEC 2.5.4 */
  ASSERT(lim.max_uri >= 16384);   /* a 12 KB query string is answered (tests/py) */
  ASSERT_EQ(lim.max_body, CM_HTTP_MAX_BODY);
  ASSERT_EQ(lim.head_timeout_ms, 30000u);
  ASSERT_EQ(lim.idle_timeout_ms, 60000u);
  ASSERT_EQ(lim.max_head, 65536u); /* SPEC Decision 14 */
  ASSERT_EQ(lim.max_header_line, 16384u);
  /* 500 headers pass the defaults (cm_http_listen) */
  char *req = malloc(500 * 16 + 64);
  ASSERT(req != NULL);
  size_t n = (size_t) sprintf(req, "GET /many HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 500; i++) n += (size_t) sprintf(req + n, "X-H%d: v\r\n", i);
  n += (size_t) sprintf(req + n, "\r\n");
  expect_served(NULL, req, n, "/many");
  free(req);
}

static void test_limit_head_size(void) {
  struct cm_http_limits lim;
  size_t len;
  cm_http_limits_init(&lim);
  lim.max_head = 1024;
  /* incomplete: refused as soon as it passes the limit */
  char *req = repeat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 2000, "", &len);
  expect_refused(&lim, req, len, 431);
  free(req);
  /* complete but too large */
  req = repeat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 1001, "\r\n\r\n", &len);
  ASSERT(len > 1024);
  expect_refused(&lim, req, len, 431);
  free(req);
  /* exactly at the limit */
  req = repeat("GET /fit HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 1024 - 39, "\r\n\r\n", &len);
  ASSERT_EQ(len, 1024u);
  expect_served(&lim, req, len, "/fit");
  free(req);
}

static void test_limit_header_count(void) {
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.max_headers = 5;
  static const char five[] = "GET /five HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  static const char six[] = "GET /six HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
  expect_served(&lim, five, sizeof(five) - 1, "/five");
  expect_refused(&lim, six, sizeof(six) - 1, 431);
  /* counted beyond the 30 kept: 40 headers against a limit of 35 */
  lim.max_headers = 35;
  char req[1024];
  size_t n = (size_t) sprintf(req, "GET /forty HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 40; i++) n += (size_t) sprintf(req + n, "H%d: x\r\n", i);
  n += (size_t) sprintf(req + n, "\r\n");
  expect_refused(&lim, req, n, 431);
}

static void test_limit_uri(void) {
  struct cm_http_limits lim;
  size_t len;
  cm_http_limits_init(&lim);
  lim.max_uri = 100;
  char *req = repeat("GET /", 'u', 200, " HTTP/1.1\r\nHost: x\r\n\r\n", &len);
  expect_refused(&lim, req, len, 414);
  free(req);
  /* still arriving: judged as soon as the target is too long */
  req = repeat("GET /", 'u', 150, "", &len);
  expect_refused(&lim, req, len, 414);
  free(req);
  /* 414 wins over 431 for a long request line */
  lim.max_head = 120;
  req = repeat("GET /", 'u', 300, "", &len);
  expect_refused(&lim, req, len, 414);
  free(req);
  /* the query counts: the target is "/q?" and the rest */
  lim.max_head = CM_HTTP_MAX_HEAD;
  req = repeat("GET /q?", 'x', 99, " HTTP/1.1\r\nHost: x\r\n\r\n", &len);
  expect_refused(&lim, req, len, 414);
  free(req);
  req = repeat("GET /q?", 'x', 97, " HTTP/1.1\r\nHost: x\r\n\r\n", &len); /* 100 bytes */
  expect_served(&lim, req, len, "/q");
  free(req);
}

static void test_limit_body(void) {
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.max_body = 100;
  /* announced by Content-Length: refused before any body byte */
  static const char big[] = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n";
  expect_refused(&lim, big, sizeof(big) - 1, 413);
  char req[256];
  size_t n = (size_t) sprintf(req, "POST /fit HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
  memset(req + n, 'b', 100);
  expect_served(&lim, req, n + 100, "/fit");
  /* chunked: the sum of chunks passes the limit */
  n = (size_t) sprintf(req, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3c\r\n");
  memset(req + n, 'c', 60);
  n += 60;
  n += (size_t) sprintf(req + n, "\r\n3c\r\n");
  memset(req + n, 'c', 60);
  n += 60;
  n += (size_t) sprintf(req + n, "\r\n0\r\n\r\n");
  expect_refused(&lim, req, n, 413);
  /* one chunk size announcing too much: refused before its data */
  static const char one[] = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\nabc";
  expect_refused(&lim, one, sizeof(one) - 1, 413);
  /* a body that could never fit in the receive buffer, with no limit set */
  lim.max_body = 0;
  static const char huge[] = "POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n";
  expect_refused(&lim, huge, sizeof(huge) - 1, 413);
}

/* Expect: 100-continue (RFC 9110 §10.1.1). */
static void test_expect_continue(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  static const char want[] = RESP("2\r\n\r\n/e");
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, sizeof(cont) - 1);
  ASSERT(in.len == sizeof(cont) - 1 && memcmp(in.buf, cont, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 0);
  SEND(fd, "hello");
  peer_wait(&f.mgr, fd, &in, sizeof(cont) - 1 + sizeof(want) - 1);
  ASSERT(memcmp(in.buf + sizeof(cont) - 1, want, sizeof(want) - 1) == 0);
  ASSERT(f.srv.body_len == 5 && memcmp(f.srv.body, "hello", 5) == 0);
  close(fd);
  /* body sent with the head, HTTP/1.0, or no body: no interim response */
  static const char *const quiet[] = {
      "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
      "POST /e HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
      "GET /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(quiet); i++) {
    struct inbox q = {0};
    fd = cm_test_peer_connect(f.port);
    peer_send(fd, quiet[i], strlen(quiet[i]));
    if (i == 1) {
      spin(&f.mgr, 5);
      peer_recv(fd, &q);
      ASSERT_EQ(q.len, 0);
      SEND(fd, "hello");
    }
    peer_wait(&f.mgr, fd, &q, sizeof(want) - 1);
    ASSERT(q.len == sizeof(want) - 1 && memcmp(q.buf, want, q.len) == 0);
    close(fd);
  }
  cm_mgr_free(&f.mgr);
  /* too large: the final 413 instead of 100 */
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.max_body = 4;
  static const char big[] =
      "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
  expect_refused(&lim, big, sizeof(big) - 1, 413);
}

/* The server side of the peer socket `fd`, or NULL (not accepted yet, or
 * closed). */
static struct cm_conn *server_side(struct cm_mgr *mgr, int fd) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  ASSERT(getsockname(fd, (struct sockaddr *) &sa, &len) == 0);
  for (struct cm_conn *c = mgr->conns; c != NULL; c = c->next) {
    if (c->is_accepted && c->rem.port == ntohs(sa.sin_port)) return c;
  }
  return NULL;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The loop's clock across polls.  The deadline timer of http_srv.c is
 * armed in one iteration and counts from the start of the next (timer.c),
 * so a deadline is met at its time, never before, and at the latest one
 * inter-poll gap after it (the largest gap seen since it was armed). */
struct watch {
  uint64_t prev; /* mgr->now after the last poll */
  uint64_t gap;  /* the largest step of mgr->now from one poll to the next */
};

static void watch_poll(struct cm_mgr *mgr, struct watch *w) {
  cm_mgr_poll(mgr, 5);
  if (mgr->now - w->prev > w->gap) w->gap = mgr->now - w->prev;
  w->prev = mgr->now;
}

/* peer_wait() with every poll watched. */
static void watch_wait(struct cm_mgr *mgr, struct watch *w, int fd, struct inbox *in, size_t want) {
  uint64_t end = cm_millis() + 20 * WAIT_MS;
  while (cm_millis() < end && !in->eof && in->len < want) {
    watch_poll(mgr, w);
    peer_recv(fd, in);
  }
}

/* Poll until the server has read some bytes of a request; returns the
 * loop's time of the poll that read them, when the head's deadline
 * started (http.c stamps it with the loop's time of the read). */
static uint64_t wait_server_read(struct cm_mgr *mgr, int fd) {
  uint64_t end = cm_millis() + 20 * WAIT_MS;
  struct cm_conn *c = NULL;
  while (cm_millis() < end && ((c = server_side(mgr, fd)) == NULL || c->recv.len == 0)) cm_mgr_poll(mgr, 5);
  ASSERT(c != NULL && c->recv.len > 0);
  return mgr->now;
}

/* Slowloris: a head trickling in is cut off at the head deadline with 408,
 * however often bytes arrive.  Judged by the loop's own clock, so that a
 * loaded machine (a stalled test process) cannot make it fail: after every
 * poll, the 408 has gone out if that poll ran past the deadline (give or
 * take the timer's gap, struct watch), and never before it, however many
 * bytes came meanwhile. */
static void test_head_deadline(void) {
  struct fixture f;
  struct inbox in = {0};
  struct cm_http_limits lim;
  char want[256];
  size_t n = refusal(want, sizeof(want), 408);
  cm_http_limits_init(&lim);
  lim.head_timeout_ms = 300;
  setup_limits(&f, &lim);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /slow HTTP/1.1\r\nHost: x\r\n");
  struct watch w = {wait_server_read(&f.mgr, fd), 0};
  uint64_t due = w.prev + 300;
  int sent = 0;
  bool refused = false;
  for (int round = 0; round < 2000 && !refused; round++) {
    SEND(fd, "X");
    sent++;
    for (int i = 0; i < 10 && !refused; i++) {
      watch_poll(&f.mgr, &w);
      refused = f.mgr.stats.http_responses[4] > 0;
      if (refused) ASSERT(f.mgr.now >= due);
      if (f.mgr.now >= due + w.gap) ASSERT(refused);
    }
  }
  ASSERT(refused && sent >= 2); /* bytes kept coming, and did not move the deadline */
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof);
  ASSERT(in.len == n && memcmp(in.buf, want, n) == 0);
  ASSERT_EQ(f.srv.msgs, 0);
  close(fd);
  /* a head completed in time is served, and its deadline does not carry
   * over to the idle connection.  The rest of the head is sent once the
   * server has read its start; the loop reads before it runs its timers,
   * so the head is complete in time however long this process stalls. */
  struct inbox in2 = {0};
  static const char ok[] = RESP("2\r\n\r\n/q");
  uint64_t served = f.mgr.stats.http_responses[2];
  fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /q HTTP/1.1\r\nHost: x\r\n");
  wait_server_read(&f.mgr, fd);
  ASSERT_EQ(f.mgr.stats.http_responses[2], served); /* not complete yet: one head, two reads */
  SEND(fd, "\r\n");
  peer_wait(&f.mgr, fd, &in2, sizeof(ok) - 1);
  ASSERT(in2.len == sizeof(ok) - 1 && memcmp(in2.buf, ok, in2.len) == 0);
  /* twice the head timeout on the loop's clock, the connection is open */
  uint64_t until = f.mgr.now + 600;
  while (f.mgr.now < until) cm_mgr_poll(&f.mgr, 10);
  peer_recv(fd, &in2);
  ASSERT(!in2.eof && in2.len == sizeof(ok) - 1);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* Idle keep-alive connections close after idle_timeout_ms without a
 * request; a connection that keeps asking stays open.  Judged by the
 * loop's clock: the peer waits between requests without polling (the loop
 * reads a request before it runs its timers, so a stalled test process
 * cannot make the server see a gap the client did not leave), and the close
 * is checked after every poll against the time the loop last saw the
 * connection active. */
static void test_idle_timeout(void) {
  struct fixture f;
  struct cm_http_limits lim;
  static const char ok[] = RESP("2\r\n\r\n/i");
  cm_http_limits_init(&lim);
  lim.idle_timeout_ms = 300;
  setup_limits(&f, &lim);
  /* busy: a request every 100 ms, nine times: over twice the timeout */
  struct inbox busy = {0};
  struct watch w = {cm_millis(), 0}; /* every poll from the first on */
  int b = cm_test_peer_connect(f.port);
  for (size_t k = 1; k <= 9; k++) {
    SEND(b, "GET /i HTTP/1.1\r\nHost: x\r\n\r\n");
    watch_wait(&f.mgr, &w, b, &busy, k * (sizeof(ok) - 1));
    ASSERT(!busy.eof && busy.len == k * (sizeof(ok) - 1));
    if (k < 9) sleep_ms(100);
  }
  /* The poll that wrote the last answer (the peer read it right after):
   * the busy connection's last activity. */
  uint64_t busy_at = f.mgr.now;
  uint64_t busy_id = server_side(&f.mgr, b)->id;
  /* then idle: each connection closes once past its last activity + the
   * timeout (give or take the timer's gap), not before */
  int s = cm_test_peer_connect(f.port); /* never sends anything */
  uint64_t silent_at = 0, silent_id = 0, end = cm_millis() + 20 * WAIT_MS;
  bool busy_open = true, silent_open = true;
  while ((busy_open || silent_open) && cm_millis() < end) {
    watch_poll(&f.mgr, &w);
    struct cm_conn *sc = server_side(&f.mgr, s);
    if (silent_id == 0 && sc != NULL) {
      silent_id = sc->id;
      silent_at = f.mgr.now; /* accepted in this poll: its idle time starts */
    }
    busy_open = cm_mgr_find(&f.mgr, busy_id) != NULL;
    silent_open = silent_id == 0 || cm_mgr_find(&f.mgr, silent_id) != NULL;
    if (!busy_open) ASSERT(f.mgr.now >= busy_at + 300);
    if (f.mgr.now >= busy_at + 300 + w.gap) ASSERT(!busy_open);
    if (silent_id != 0 && !silent_open) ASSERT(f.mgr.now >= silent_at + 300);
    if (silent_id != 0 && f.mgr.now >= silent_at + 300 + w.gap) ASSERT(!silent_open);
  }
  ASSERT(!busy_open && !silent_open);
  struct inbox silent = {0};
  peer_wait(&f.mgr, b, &busy, SIZE_MAX);
  peer_wait(&f.mgr, s, &silent, SIZE_MAX);
  ASSERT(busy.eof && silent.eof && silent.len == 0);
  close(b);
  close(s);
  cm_mgr_free(&f.mgr);
}

/* The listener's deadline queues outlive it: connections it accepted
 * still time out after it closed, in the order they went quiet, and the
 * shared part is freed with the last of them (LeakSanitizer).  On the
 * loop's clock (struct watch), as test_idle_timeout. */
static void test_idle_after_listener(void) {
  struct fixture f;
  struct cm_http_limits lim;
  static const char ok[] = RESP("2\r\n\r\n/i");
  cm_http_limits_init(&lim);
  lim.idle_timeout_ms = 300;
  memset(&f, 0, sizeof(f));
  ASSERT(cm_mgr_init(&f.mgr) == 0);
  struct cm_conn *lsn = cm_http_listen_opts(&f.mgr, "http://127.0.0.1:0", &lim, server_fn, &f.srv);
  ASSERT(lsn != NULL);
  int early = cm_test_peer_connect(lsn->loc.port);
  int late = cm_test_peer_connect(lsn->loc.port);
  uint64_t end = cm_millis() + 20 * WAIT_MS;
  struct cm_conn *ec = NULL, *lc = NULL;
  uint64_t early_at = 0; /* the poll that accepted `early`: its idle time starts */
  struct watch w = {0, 0};
  while ((ec == NULL || lc == NULL) && cm_millis() < end) {
    watch_poll(&f.mgr, &w);
    if (ec == NULL && (ec = server_side(&f.mgr, early)) != NULL) w = (struct watch){early_at = f.mgr.now, 0};
    lc = server_side(&f.mgr, late);
  }
  ASSERT(ec != NULL && lc != NULL);
  uint64_t early_id = ec->id, late_id = lc->id;
  cm_close(lsn);
  watch_poll(&f.mgr, &w); /* the deadline timer armed at the accept counts from here */
  uint64_t arm_gap = w.gap;
  /* `late` asks once, 150 ms on, so its idle time starts then.  The peer
   * waits without polling: the loop reads the request before its timers. */
  struct inbox a = {0}, b = {0};
  sleep_ms(150);
  SEND(late, "GET /i HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, late, &b, sizeof(ok) - 1);
  ASSERT(b.len == sizeof(ok) - 1);
  uint64_t late_at = f.mgr.now; /* the poll that answered */
  ASSERT(late_at >= early_at + 150);
  w = (struct watch){f.mgr.now, 0};
  bool early_open = true, late_open = true;
  while (late_open && cm_millis() < end) {
    watch_poll(&f.mgr, &w);
    early_open = cm_mgr_find(&f.mgr, early_id) != NULL;
    late_open = cm_mgr_find(&f.mgr, late_id) != NULL;
    if (!early_open) ASSERT(f.mgr.now >= early_at + 300);
    if (f.mgr.now >= early_at + 300 + arm_gap) ASSERT(!early_open);
    if (!late_open) ASSERT(f.mgr.now >= late_at + 300 && !early_open); /* in order */
    if (f.mgr.now >= late_at + 300 + w.gap) ASSERT(!late_open);
  }
  ASSERT(!early_open && !late_open);
  peer_wait(&f.mgr, early, &a, SIZE_MAX);
  peer_wait(&f.mgr, late, &b, SIZE_MAX);
  ASSERT(a.eof && b.eof && a.len == 0);
  close(early);
  close(late);
  cm_mgr_free(&f.mgr);
}

/* A connection whose protocol is replaced outside the HTTP events (by
 * hand, between polls) and then closed leaves its HTTP state behind in a
 * deadline queue: the deadline finds the connection gone and frees the
 * state, without touching freed memory (ASan) or leaking it (LSan). */
static struct cm_conn *accepted;
static void grab(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_ACCEPT) accepted = c;
}

static void test_idle_after_switch(void) {
  struct cm_mgr mgr;
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.idle_timeout_ms = 100;
  accepted = NULL;
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_http_listen_opts(&mgr, "http://127.0.0.1:0", &lim, grab, NULL);
  ASSERT(lsn != NULL);
  int a = cm_test_peer_connect(lsn->loc.port);
  uint64_t end = cm_millis() + WAIT_MS;
  while (accepted == NULL && cm_millis() < end) cm_mgr_poll(&mgr, 5);
  ASSERT(accepted != NULL);
  struct cm_conn *first = accepted;
  accepted = NULL;
  int b = cm_test_peer_connect(lsn->loc.port);
  while (accepted == NULL && cm_millis() < end) cm_mgr_poll(&mgr, 5);
  ASSERT(accepted != NULL);
  first->pfn = NULL; /* a raw connection from now on */
  cm_close(first);
  /* the other one still times out as usual, after the first one's
   * deadline, which reclaimed the state the switch left behind */
  struct inbox ina = {0}, inb = {0};
  peer_wait(&mgr, a, &ina, SIZE_MAX);
  peer_wait(&mgr, b, &inb, SIZE_MAX);
  ASSERT(ina.eof && inb.eof);
  close(a);
  close(b);
  cm_mgr_free(&mgr);
}

/* A deferred answer is the application's business: no idle timeout while
 * it is owed, and the idle time starts when it is finished. */
static void test_idle_deferred(void) {
  struct fixture f;
  struct inbox in = {0};
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.idle_timeout_ms = 200;
  setup_limits(&f, &lim);
  f.srv.defer = true;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /d HTTP/1.1\r\nHost: x\r\n\r\n");
  wait_for(&f.mgr, &f.srv.msgs, 1);
  uint64_t start = cm_millis();
  while (cm_millis() - start < 600) cm_mgr_poll(&f.mgr, 10);
  peer_recv(fd, &in);
  ASSERT(!in.eof && !f.srv.closed);
  reply_later(NULL, &f.srv);
  start = cm_millis();
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof && cm_millis() - start >= 150);
  ASSERT(in.len == sizeof(RESP("4\r\n\r\nlate")) - 1);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* --- chunked responses and SSE -------------------------------------------- */

/* A connection that is not on a socket: what the calls queue is checked
 * in c->send directly. */
struct fake {
  struct cm_mgr mgr;
  struct cm_conn c;
};

static void fake_init(struct fake *k) {
  ASSERT(cm_mgr_init(&k->mgr) == 0);
  memset(&k->c, 0, sizeof(k->c));
  cm_iobuf_init(&k->c.send, 0);
  k->c.fd = -1;
  k->c.mgr = &k->mgr;
}

static bool sent_is(struct fake *k, const char *want, size_t n) {
  bool same = k->c.send.len == n && memcmp(cm_iobuf_data(&k->c.send), want, n) == 0;
  cm_iobuf_consume(&k->c.send, k->c.send.len);
  return same;
}

#define SENT_IS(k, lit) sent_is((k), (lit), sizeof(lit) - 1)

static void fake_free(struct fake *k) {
  cm_iobuf_free(&k->c.send);
  k->mgr.pending = NULL;
  cm_mgr_free(&k->mgr);
}

static void test_chunk_format(void) {
  struct fake k;
  char big[300];
  fake_init(&k);
  k.c.is_resp = 1;
  ASSERT(cm_http_chunk(&k.c, "hello", 5));
  ASSERT(SENT_IS(&k, "5\r\nhello\r\n"));
  memset(big, 'z', sizeof(big));
  ASSERT(cm_http_chunk(&k.c, big, sizeof(big)));
  ASSERT(k.c.send.len == 5 + 300 + 2 && memcmp(cm_iobuf_data(&k.c.send), "12c\r\n", 5) == 0);
  cm_iobuf_consume(&k.c.send, k.c.send.len);
  ASSERT(cm_http_chunk(&k.c, "a\0b", 3)); /* binary-exact */
  ASSERT(SENT_IS(&k, "3\r\na\0b\r\n"));
  ASSERT(k.c.is_resp);
  ASSERT(cm_http_chunk(&k.c, NULL, 0)); /* the last chunk finishes the response */
  ASSERT(SENT_IS(&k, "0\r\n\r\n"));
  ASSERT(!k.c.is_resp);
  /* SSE: one chunk per event; line breaks in data become data: lines */
  ASSERT(cm_http_sse(&k.c, cm_str_c("update"), cm_str_c("42")));
  ASSERT(SENT_IS(&k, "18\r\nevent: update\ndata: 42\n\n\r\n"));
  ASSERT(cm_http_sse(&k.c, cm_str_c("m"), cm_str_c("a\nb\r\nc\rd")));
  ASSERT(SENT_IS(&k, "2a\r\nevent: m\ndata: a\ndata: b\ndata: c\ndata: d\n\n\r\n"));
  ASSERT(cm_http_sse(&k.c, cm_str_c(""), cm_str_c("")));
  ASSERT(SENT_IS(&k, "10\r\nevent: \ndata: \n\n\r\n"));
  ASSERT(!cm_http_sse(&k.c, cm_str_c("a\nevent: b"), cm_str_c("x")));
  ASSERT(k.c.send.len == 0);
  k.c.is_closing = 1;
  ASSERT(!cm_http_chunk(&k.c, "x", 1));
  ASSERT(!cm_http_sse(&k.c, cm_str_c("e"), cm_str_c("x")));
  fake_free(&k);
}

/* A streamed answer over the wire: raw head, chunks, the last chunk; the
 * pipelined request behind it waits for the last chunk.  In answer to HEAD
 * the chunks are not sent. */
static void streaming_fn(struct cm_conn *c, int ev, void *ev_data) {
  static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  struct server *s = c->fn_data;
  if (ev != CM_EV_HTTP_MSG) return;
  struct cm_http_msg *hm = ev_data;
  s->msgs++;
  if (cm_str_eq(hm->uri, "/plain")) {
    ASSERT(cm_http_reply(c, 200, NULL, 0, "p", 1));
    return;
  }
  ASSERT(cm_send(c, head, sizeof(head) - 1));
  ASSERT(cm_http_chunk(c, "ab", 2));
  ASSERT(cm_http_sse(c, cm_str_c("t"), cm_str_c("x")));
  s->pending = c;
}

static void finish_stream(struct cm_timer *t, void *arg) {
  struct server *s = arg;
  (void) t;
  ASSERT(cm_http_chunk(s->pending, "", 0));
  s->pending = NULL;
}

static void test_chunked_stream(void) {
  struct cm_mgr mgr;
  struct server srv = {0};
  struct inbox in = {0};
  struct cm_timer t = {0};
  static const char want[] =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n12\r\nevent: t\ndata: x\n\n\r\n"
      "0\r\n\r\n"
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" /* HEAD: no chunks */
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n";         /* HEAD: no body */
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", streaming_fn, &srv);
  ASSERT(lsn != NULL);
  int fd = cm_test_peer_connect(lsn->loc.port);
  SEND(fd,
       "GET /s HTTP/1.1\r\nHost: x\r\n\r\nHEAD /s HTTP/1.1\r\nHost: x\r\n\r\nHEAD /plain HTTP/1.1\r\nHost: "
       "x\r\n\r\n");
  wait_for(&mgr, &srv.msgs, 1);
  spin(&mgr, 5);
  ASSERT_EQ(srv.msgs, 1); /* the second waits for the last chunk */
  ASSERT(cm_timer_start(&mgr, &t, 10, CM_TIMER_ONCE, finish_stream, &srv));
  wait_for(&mgr, &srv.msgs, 2);
  ASSERT(cm_timer_start(&mgr, &t, 10, CM_TIMER_ONCE, finish_stream, &srv));
  peer_wait(&mgr, fd, &in, sizeof(want) - 1);
  spin(&mgr, 3);
  peer_recv(fd, &in);
  ASSERT_EQ(in.len, sizeof(want) - 1);
  ASSERT(memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(srv.msgs, 3);
  close(fd);
  cm_mgr_free(&mgr);
}

/* --- client: the response to HEAD ------------------------------------------ */

/* The request tracker alone: bytes in any split, bodies skipped by their
 * framing, even when they contain text that looks like a request. */
static void test_out_tracker(void) {
  static const char stream[] =
      "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /b HTTP/1.1\r\nContent-Length: 20\r\n\r\nHEAD /fake HTTP/1.1\r"
      "PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "13;ext=1\r\nHEAD / HTTP/1.1\r\n\r\n\r\n0\r\nTrailer: y\r\n\r\n"
      "HEAD /d HTTP/1.1\r\n\r\n"
      "GET /e HTTP/1.1\r\n\r\n";
  static const bool heads[] = {true, false, false, true, false};
  size_t splits[] = {sizeof(stream) - 1, 1, 2, 7, 64};
  for (size_t s = 0; s < CM_ARRAY_SIZE(splits); s++) {
    struct cm__http_out *o = cm__http_out_new();
    ASSERT(o != NULL);
    for (size_t i = 0; i < sizeof(stream) - 1; i += splits[s]) {
      size_t n = sizeof(stream) - 1 - i < splits[s] ? sizeof(stream) - 1 - i : splits[s];
      cm__http_out_feed(o, stream + i, n);
    }
    for (size_t i = 0; i < CM_ARRAY_SIZE(heads); i++) ASSERT_EQ(cm__http_out_next_is_head(o), heads[i]);
    ASSERT(!cm__http_out_next_is_head(o)); /* none left: taken for GET */
    cm__http_out_free(o);
  }
  /* not HTTP: tracking stops, everything is taken for GET */
  struct cm__http_out *o = cm__http_out_new();
  cm__http_out_feed(o, "HEAD / HTTP/1.1\r\n\r\n\x01garbage\r\n\r\n", 29);
  ASSERT(!cm__http_out_next_is_head(o));
  cm__http_out_free(o);
}

struct head_client {
  int msgs;
  size_t body_len[4];
  char uri[4][8];
  bool error;
};

static void head_client_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct head_client *hc = c->fn_data;
  if (ev == CM_EV_CONNECT) {
    /* two writes, split inside the first head */
    static const char a[] = "HEAD /h HTTP/1.1\r\nHo",
                      b[] = "st: x\r\n\r\nGET /g HTTP/1.1\r\n\r\nHEAD /z HTTP/1.1\r\n\r\n";
    ASSERT(cm_http_send(c, a, sizeof(a) - 1));
    ASSERT(cm_http_send(c, b, sizeof(b) - 1));
  } else if (ev == CM_EV_HTTP_MSG && hc->msgs < 4) {
    struct cm_http_msg *hm = ev_data;
    hc->body_len[hc->msgs] = hm->body.len;
    copy_slice(hc->uri[hc->msgs], sizeof(hc->uri[0]), hm->uri);
    hc->msgs++;
  } else if (ev == CM_EV_ERROR) {
    hc->error = true;
  }
}

static void test_client_head(void) {
  /* 100 Continue is interim: it answers no request */
  struct canned k = {
      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
      "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n",
      false};
  struct cm_mgr mgr;
  struct head_client hc = {0};
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", canned_fn, &k);
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) lsn->loc.port);
  ASSERT(cm_http_connect(&mgr, url, head_client_fn, &hc) != NULL);
  wait_for(&mgr, &hc.msgs, 4);
  ASSERT(!hc.error);
  ASSERT(strcmp(hc.uri[0], "200") == 0 && hc.body_len[0] == 0);
  ASSERT(strcmp(hc.uri[1], "100") == 0);
  ASSERT(strcmp(hc.uri[2], "200") == 0 && hc.body_len[2] == 3);
  ASSERT(strcmp(hc.uri[3], "404") == 0 && hc.body_len[3] == 0);
  cm_mgr_free(&mgr);
}

/* --- strictness (SPEC Decision 14) ---------------------------------------- */

static void test_header_line_limit(void) {
  struct cm_http_limits lim;
  size_t len;
  /* The default: 16 KiB per line, the line ending not counted. */
  char *req = repeat("GET /fit HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 16384 - 7, "\r\n\r\n", &len);
  expect_served(NULL, req, len, "/fit");
  free(req);
  req = repeat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 16384 - 6, "\r\n\r\n", &len);
  expect_refused(NULL, req, len, 431);
  free(req);
  /* Still arriving: refused once the line passes the limit. */
  req = repeat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 20000, "", &len);
  expect_refused(NULL, req, len, 431);
  free(req);
  /* The request line is max_uri's: a 20 KB target passes the line limit. */
  req = repeat("GET /q?", 'u', 20000, " HTTP/1.1\r\nHost: x\r\n\r\n", &len);
  expect_served(NULL, req, len, "/q");
  free(req);
  /* Settable, and 0 lifts it (the head limit remains). */
  cm_http_limits_init(&lim);
  lim.max_header_line = 100;
  req = repeat("GET / HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 100, "\r\n\r\n", &len);
  expect_refused(&lim, req, len, 431);
  free(req);
  lim.max_header_line = 0;
  req = repeat("GET /big HTTP/1.1\r\nHost: x\r\nX-Big: ", 'a', 30000, "\r\n\r\n", &len);
  expect_served(&lim, req, len, "/big");
  free(req);
  /* The default head limit: 64 KiB in lines that each fit. */
  char *many = malloc(80000);
  ASSERT(many != NULL);
  size_t n = (size_t) sprintf(many, "GET / HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 8; i++) n += (size_t) sprintf(many + n, "X-%d: %09000d\r\n", i, 0);
  n += (size_t) sprintf(many + n, "\r\n");
  ASSERT(n > 65536);
  expect_refused(NULL, many, n, 431);
  free(many);
}

static void test_version_505(void) {
  static const char *bad[] = {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                              "GET / HTTP/0.9\r\nHost: x\r\n\r\n"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) expect_refused(NULL, bad[i], strlen(bad[i]), 505);
  /* A later HTTP/1 minor version is still HTTP/1 (RFC 9110 §2.5). */
  static const char minor[] = "GET /m HTTP/1.9\r\nHost: x\r\n\r\n";
  expect_served(NULL, minor, sizeof(minor) - 1, "/m");
}

static void test_host_required(void) {
  static const char no_host[] = "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n";
  expect_refused(NULL, no_host, sizeof(no_host) - 1, 400);
  static const char v10[] = "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  expect_served(NULL, v10, sizeof(v10) - 1, "/old");
  static const char empty_host[] = "GET /e HTTP/1.1\r\nHost:\r\n\r\n"; /* allowed: RFC 9112 §3.2 */
  expect_served(NULL, empty_host, sizeof(empty_host) - 1, "/e");
  /* Host among more headers than are kept still counts. */
  char req[2048];
  size_t n = (size_t) sprintf(req, "GET /late HTTP/1.1\r\n");
  for (int i = 0; i < 40; i++) n += (size_t) sprintf(req + n, "H%d: x\r\n", i);
  n += (size_t) sprintf(req + n, "Host: x\r\n\r\n");
  expect_served(NULL, req, n, "/late");
}

/* A body refused (413) while the client is still sending it: the server
 * reads and drops the rest, so every send succeeds (no reset), and the
 * client then reads the whole answer and the server's FIN. */
static void test_lingering_close(void) {
  struct fixture f;
  struct cm_http_limits lim;
  struct inbox in = {0};
  char want[256];
  size_t body = 1u << 20;
  cm_http_limits_init(&lim);
  lim.max_body = 1000;
  setup_limits(&f, &lim);
  size_t n = refusal(want, sizeof(want), 413);
  char *req = malloc(body + 128);
  ASSERT(req != NULL);
  size_t head = (size_t) sprintf(req, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", body);
  memset(req + head, 'b', body);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, n); /* the answer came before the body */
  ASSERT(in.len == n && memcmp(in.buf, want, n) == 0);
  peer_send_big(&f.mgr, fd, req + head, body); /* asserts: never EPIPE or ECONNRESET */
  shutdown(fd, SHUT_WR);
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof && in.len == n);
  ASSERT(cm_test_poll_until(&f.mgr, &f.srv.closed, WAIT_MS));
  ASSERT_EQ(f.srv.msgs, 0);
  close(fd);
  free(req);
  cm_mgr_free(&f.mgr);
}

/* A client that never closes: the lingering ends after CM_HTTP_LINGER_MS. */
static void test_lingering_bounded(void) {
  struct fixture f;
  struct inbox in = {0};
  setup(&f);
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET / HTTP/7.0\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof && strncmp(in.buf, "HTTP/1.1 505 ", 13) == 0);
  uint64_t start = cm_millis();
  bool *closed = &f.srv.closed;
  uint64_t end = start + CM_HTTP_LINGER_MS + WAIT_MS;
  while (!*closed && cm_millis() < end) {
    cm_mgr_poll(&f.mgr, 5);
    ASSERT(send(fd, "x", 1, MSG_NOSIGNAL) == 1); /* dropped, never reset */
  }
  ASSERT(*closed);
  ASSERT(cm_millis() - start >= CM_HTTP_LINGER_MS - 100);
  close(fd);
  cm_mgr_free(&f.mgr);
}

/* A handler that failed before answering: 500 and close. */
static void test_internal_error(void) {
  struct fixture f;
  struct inbox in = {0};
  static const char want[] =
      "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n"
      "Content-Length: 22\r\n\r\nInternal Server Error\n";
  setup(&f);
  f.srv.fail = 1;
  int fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof);
  ASSERT(in.len == sizeof(want) - 1 && memcmp(in.buf, want, in.len) == 0);
  ASSERT_EQ(f.srv.msgs, 1); /* the pipelined /b is not served */
  close(fd);
  /* After a partial answer: no 500 on top of it. */
  f.srv.fail = 2;
  memset(&in, 0, sizeof(in));
  fd = cm_test_peer_connect(f.port);
  SEND(fd, "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  peer_wait(&f.mgr, fd, &in, SIZE_MAX);
  ASSERT(in.eof && strstr(in.buf, "500") == NULL);
  close(fd);
  cm_mgr_free(&f.mgr);
}

int main(void) {
  RUN(test_header_line_limit);
  RUN(test_version_505);
  RUN(test_host_required);
  RUN(test_lingering_close);
  RUN(test_lingering_bounded);
  RUN(test_internal_error);
  RUN(test_simple_get);
  RUN(test_pipelined);
  RUN(test_deferred);
  RUN(test_deferred_close);
  RUN(test_connection_close);
  RUN(test_body_split);
  RUN(test_chunked_request);
  RUN(test_bad_request);
  RUN(test_close_in_hdrs);
  RUN(test_upgrade);
  RUN(test_reply_shapes);
  RUN(test_large);
  RUN(test_peer_abort);
  RUN(test_client_own_server);
  RUN(test_client_close_delimited);
  RUN(test_client_framed);
  RUN(test_client_garbage);
  RUN(test_limit_defaults);
  RUN(test_limit_head_size);
  RUN(test_limit_header_count);
  RUN(test_limit_uri);
  RUN(test_limit_body);
  RUN(test_expect_continue);
  RUN(test_head_deadline);
  RUN(test_idle_timeout);
  RUN(test_idle_deferred);
  RUN(test_idle_after_listener);
  RUN(test_idle_after_switch);
  RUN(test_chunk_format);
  RUN(test_chunked_stream);
  RUN(test_out_tracker);
  RUN(test_client_head);
  return cm_test_done();
}
