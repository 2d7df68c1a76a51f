/* test_ws_late.c: a WebSocket upgrade answered after CM_EV_HTTP_MSG
 * returned (cm/ws.h: cm_ws_upgrade from a timer, with a copy of the
 * request made by cm_http_msg_copy), as an application that looks
 * something up before accepting does.  The peer is a plain socket, so the
 * bytes it sends right after its request (a frame sent before the 101
 * came) are under the test's control.  Leaks of HTTP's state are the
 * sanitizer's to find: every test frees its manager. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

#define WAIT_MS 5000
#define LATE_MS 50

static const char upgrade_req[] =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* The server's side: the request kept for later, what happened. */
struct late {
  struct cm_mgr *mgr;
  uint64_t id;           /* the connection whose request waits */
  struct cm_http_msg hm; /* its copy ... */
  char *bytes;           /* ... and the bytes the copy points into */
  struct cm_timer timer; /* answers it LATE_MS later */
  bool reply_first;      /* answer 200 in the event, then try the upgrade late */
  bool fired, upgraded, refused, opened, closed;
  unsigned close_code; /* c->ws_close_code at CM_EV_CLOSE */
  int msgs;
  char last[64];
  size_t last_len;
};

static void on_timer(struct cm_timer *t, void *arg) {
  struct late *l = arg;
  (void) t;
  l->fired = true;
  struct cm_conn *c = cm_mgr_find(l->mgr, l->id);
  if (c == NULL) return; /* gone meanwhile: nothing to answer */
  size_t sent = c->send.len;
  static const char h[] = "X-Late: yes\r\n";
  l->upgraded = cm_ws_upgrade(c, &l->hm, h, sizeof(h) - 1, NULL);
  /* Refused: nothing queued, still HTTP. */
  l->refused = !l->upgraded && c->send.len == sent && c->pfn == cm_http_handler && !c->is_websocket;
}

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct late *l = c->fn_data;
  if (ev == CM_EV_HTTP_MSG) {
    const struct cm_http_msg *hm = ev_data;
    if (l->reply_first) ASSERT(cm_http_reply(c, 200, NULL, 0, "ok", 2));
    l->bytes = malloc(hm->message.len);
    ASSERT(l->bytes != NULL);
    cm_http_msg_copy(&l->hm, hm, l->bytes);
    l->id = c->id;
    cm_timer_start(c->mgr, &l->timer, LATE_MS, CM_TIMER_ONCE, on_timer, l);
  } else if (ev == CM_EV_WS_OPEN) {
    const struct cm_http_msg *hm = ev_data;
    l->opened = hm == &l->hm && cm_str_eq(hm->uri, "/chat");
  } else if (ev == CM_EV_WS_MSG) {
    struct cm_ws_msg *m = ev_data;
    l->msgs++;
    l->last_len = m->data.len < sizeof(l->last) ? m->data.len : sizeof(l->last);
    memcpy(l->last, m->data.buf, l->last_len);
    ASSERT(cm_ws_send(c, m->data.buf, m->data.len, CM_WS_OP_TEXT)); /* echo */
  } else if (ev == CM_EV_CLOSE && c->id == l->id) {
    l->closed = true;
    l->close_code = c->ws_close_code;
  }
}

/* A masked client frame (RFC 6455 §5.3) into out; returns its length. */
static size_t client_frame(uint8_t *out, uint8_t flags, const char *payload, size_t len) {
  static const uint8_t key[4] = {1, 2, 3, 4};
  size_t h = cm_ws_header(out, flags, len, key);
  memcpy(out + h, payload, len);
  cm_ws_mask(out + h, len, key, 0);
  return h + len;
}

/* Read what the server sent into buf (appending at *n) until `want`
 * appears or the peer closes or the time is up. */
static bool read_until(struct cm_mgr *mgr, int fd, char *buf, size_t size, size_t *n, const char *want) {
  for (int i = 0; i < WAIT_MS / 10; i++) {
    cm_mgr_poll(mgr, 10);
    ssize_t r = recv(fd, buf + *n, size - 1 - *n, 0);
    if (r == 0) return false;
    if (r > 0) *n += (size_t) r;
    buf[*n] = '\0';
    if (memmem(buf, *n, want, strlen(want)) != NULL) return true;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
  }
  return false;
}

static struct cm_conn *listen_late(struct cm_mgr *mgr, struct late *l) {
  memset(l, 0, sizeof(*l));
  l->mgr = mgr;
  ASSERT_EQ(cm_mgr_init(mgr), 0);
  struct cm_http_limits lim;
  cm_http_limits_init(&lim);
  lim.idle_timeout_ms = 200; /* shorter than the wait below: HTTP's deadline must not apply */
  struct cm_conn *lsn = cm_http_listen_opts(mgr, "http://127.0.0.1:0", &lim, server_fn, l);
  ASSERT(lsn != NULL);
  return lsn;
}

/* A peer of `lsn` that has sent the upgrade request: its socket. */
static int send_upgrade(const struct cm_conn *lsn) {
  int fd = cm_test_peer_connect(lsn->loc.port);
  ASSERT(send(fd, upgrade_req, sizeof(upgrade_req) - 1, 0) == (ssize_t) sizeof(upgrade_req) - 1);
  return fd;
}

/* The request and a frame sent before the answer: the 101 comes late, the
 * frame is delivered once the connection is a WebSocket, and no HTTP
 * deadline closes it afterwards. */
static void test_upgrade_from_timer(void) {
  struct cm_mgr mgr;
  struct late l;
  struct cm_conn *lsn = listen_late(&mgr, &l);
  int fd = send_upgrade(lsn);
  uint8_t frame[64];
  size_t fl = client_frame(frame, CM_WS_FIN | CM_WS_OP_TEXT, "early", 5);
  ASSERT(send(fd, frame, fl, 0) == (ssize_t) fl);
  char buf[2048];
  size_t n = 0;
  ASSERT(read_until(&mgr, fd, buf, sizeof(buf), &n, "early"));
  ASSERT(l.fired && l.upgraded && l.opened && l.msgs == 1);
  ASSERT(strncmp(buf, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0);
  ASSERT(strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL);
  ASSERT(strstr(buf, "X-Late: yes\r\n") != NULL);
  /* Past the HTTP idle timeout, the WebSocket still answers. */
  for (int i = 0; i < 40; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(!l.closed);
  fl = client_frame(frame, CM_WS_FIN | CM_WS_OP_TEXT, "later", 5);
  ASSERT(send(fd, frame, fl, 0) == (ssize_t) fl);
  ASSERT(read_until(&mgr, fd, buf, sizeof(buf), &n, "later"));
  ASSERT(l.msgs == 2 && l.last_len == 5 && memcmp(l.last, "later", 5) == 0);
  /* The peer closes with 4001: the code is kept on the connection. */
  struct cm_conn *c = cm_mgr_find(&mgr, l.id);
  ASSERT(c != NULL && c->ws_close_code == 0);
  fl = client_frame(frame, CM_WS_FIN | CM_WS_OP_CLOSE, "\x0f\xa1", 2);
  ASSERT(send(fd, frame, fl, 0) == (ssize_t) fl);
  for (int i = 0; i < WAIT_MS / 10 && !l.closed; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.closed);
  ASSERT_EQ(l.close_code, 4001);
  close(fd);
  free(l.bytes);
  cm_mgr_free(&mgr);
}

/* The peer goes before the answer: the connection is freed with HTTP's
 * state, and the late upgrade finds nothing to answer. */
static void test_peer_gone_before_upgrade(void) {
  struct cm_mgr mgr;
  struct late l;
  struct cm_conn *lsn = listen_late(&mgr, &l);
  int fd = send_upgrade(lsn);
  for (int i = 0; i < WAIT_MS / 10 && l.id == 0; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.id != 0);
  close(fd);
  for (int i = 0; i < WAIT_MS / 10 && !(l.closed && l.fired); i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.closed && l.fired && !l.upgraded && !l.refused && !l.opened);
  free(l.bytes);
  cm_mgr_free(&mgr);
}

/* A connection marked closing refuses the upgrade without sending. */
static void test_closing_refuses(void) {
  struct cm_mgr mgr;
  struct late l;
  struct cm_conn *lsn = listen_late(&mgr, &l);
  int fd = send_upgrade(lsn);
  for (int i = 0; i < WAIT_MS / 10 && l.id == 0; i++) cm_mgr_poll(&mgr, 10);
  struct cm_conn *c = cm_mgr_find(&mgr, l.id);
  ASSERT(c != NULL);
  cm_close(c);
  size_t sent = c->send.len;
  ASSERT(!cm_ws_upgrade(c, &l.hm, NULL, 0, NULL));
  ASSERT(c->send.len == sent && !c->is_websocket && c->pfn == cm_http_handler);
  for (int i = 0; i < WAIT_MS / 10 && !l.closed; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.closed);
  close(fd);
  free(l.bytes);
  cm_mgr_free(&mgr);
}

/* Answered in the event (200): the late upgrade fails cleanly, nothing is
 * sent after the 200, and the connection goes on serving HTTP. */
static void test_answered_refuses(void) {
  struct cm_mgr mgr;
  struct late l;
  struct cm_conn *lsn = listen_late(&mgr, &l);
  l.reply_first = true;
  int fd = send_upgrade(lsn);
  char buf[2048];
  size_t n = 0;
  ASSERT(read_until(&mgr, fd, buf, sizeof(buf), &n, "\r\n\r\nok"));
  for (int i = 0; i < WAIT_MS / 10 && !l.fired; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.fired && !l.upgraded && l.refused && !l.opened);
  ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
  /* Still HTTP, keep-alive: the next request is answered too. */
  static const char get[] = "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n";
  l.fired = false;
  free(l.bytes);
  ASSERT(send(fd, get, sizeof(get) - 1, 0) == (ssize_t) sizeof(get) - 1);
  n = 0;
  ASSERT(read_until(&mgr, fd, buf, sizeof(buf), &n, "\r\n\r\nok"));
  ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0 && strstr(buf, "101") == NULL);
  for (int i = 0; i < WAIT_MS / 10 && !l.fired; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.refused);
  close(fd);
  free(l.bytes);
  cm_mgr_free(&mgr);
}

/* The peer drops the TCP connection without a close frame: 1006. */
static void test_close_code_abnormal(void) {
  struct cm_mgr mgr;
  struct late l;
  struct cm_conn *lsn = listen_late(&mgr, &l);
  int fd = send_upgrade(lsn);
  char buf[2048];
  size_t n = 0;
  ASSERT(read_until(&mgr, fd, buf, sizeof(buf), &n, "\r\n\r\n"));
  ASSERT(l.upgraded);
  struct cm_conn *c = cm_mgr_find(&mgr, l.id);
  ASSERT(c != NULL && c->ws_close_code == 0);
  close(fd);
  for (int i = 0; i < WAIT_MS / 10 && !l.closed; i++) cm_mgr_poll(&mgr, 10);
  ASSERT(l.closed);
  ASSERT_EQ(l.close_code, 1006);
  free(l.bytes);
  cm_mgr_free(&mgr);
}

/* cm_http_msg_copy: every slice moves into the new buffer. */
static void test_msg_copy(void) {
  static const char req[] = "POST /a/b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody";
  char src[sizeof(req)];
  memcpy(src, req, sizeof(req));
  struct cm_http_msg hm, cp;
  int n = cm_http_parse(src, sizeof(req) - 1, &hm);
  ASSERT(n > 0);
  hm.body = cm_str_n(src + n, 4);
  hm.message = cm_str_n(src, sizeof(req) - 1);
  char *bytes = malloc(hm.message.len);
  ASSERT(bytes != NULL);
  cm_http_msg_copy(&cp, &hm, bytes);
  memset(src, 'Z', sizeof(src)); /* the original bytes are gone */
  ASSERT_STR(cp.method, "POST");
  ASSERT_STR(cp.uri, "/a/b");
  ASSERT_STR(cp.query, "x=1");
  ASSERT_STR(cp.proto, "HTTP/1.1");
  ASSERT_STR(cp.body, "body");
  ASSERT(cp.num_headers == 2 && cm_str_eq(*cm_http_header(&cp, "host"), "h"));
  ASSERT(cp.message.buf == bytes && cp.message.len == sizeof(req) - 1 && cp.head.len == (size_t) n);
  ASSERT(cp.content_length == 4);
  free(bytes);
}

int main(void) {
  RUN(test_msg_copy);
  RUN(test_upgrade_from_timer);
  RUN(test_peer_gone_before_upgrade);
  RUN(test_closing_refuses);
  RUN(test_answered_refuses);
  RUN(test_close_code_abnormal);
  return cm_test_done();
}
