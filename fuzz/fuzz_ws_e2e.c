/* fuzz_ws_e2e.c: arbitrary frames through the real loop and the WebSocket
 * protocol handler (ws.c), over loopback TCP, after a real handshake.
 *
 * As fuzz_http_e2e.c: one manager and its listeners for the whole process;
 * each input opens one connection, completes the opening handshake, writes
 * the input's bytes in pieces, pumps the loop, reads and drops what comes
 * back, closes, and pumps until the core freed the connection.
 *
 * Server role (default): the peer is a client that upgrades on a
 * cm_http_listen() listener whose handler calls cm_ws_upgrade() and echoes
 * every message.  Client role (F_CLIENT): cm_ws_connect() to a plain
 * listener; the peer answers the handshake with a correct 101, then sends
 * the input as server frames.
 *
 * Checks beyond the sanitizers: text messages are UTF-8, no message passes
 * the limit, a message's flags are FIN | TEXT or BINARY; output stops; the
 * connection is freed after the peer closes; nothing accumulates.
 *
 * Input layout:
 *   byte 0      flags (F_* below)
 *   bytes 1..3  piece lengths, used in turn; 0 means "all that is left"
 *   the rest    the frames the peer sends */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cm.h"
#include "fuzz_util.h"

enum {
  F_CLIENT = 1,  /* roles swapped: our client reads the input */
  F_DEFLATE = 2, /* permessage-deflate negotiated */
  F_SMALL = 4,   /* message limit of 4 KiB (1009 paths) */
};

#define CTRL_LEN 4
#define MAX_PUMPS 4096
#define MAX_SETTLE 64
#define SMALL_MAX 4096

static struct cm_mgr mgr;
static uint16_t ws_port, small_port; /* cm_http_listen listeners: default / small limit */
static int raw_lsn = -1;             /* plain listener that plays the server for F_CLIENT */
static uint16_t raw_port;
static unsigned flags;
static struct cm_conn *live;

static void check_msg(const struct cm_ws_msg *m, bool data) {
  uint64_t max = (flags & F_SMALL) && !(flags & F_CLIENT) ? SMALL_MAX : CM_WS_MAX_MESSAGE;
  FUZZ_CHECK(m->data.len <= max);
  if (!data) {
    FUZZ_CHECK(m->flags >= 0x88 && m->flags <= 0x8a && m->data.len <= CM_WS_MAX_CONTROL);
    return;
  }
  FUZZ_CHECK(m->flags == 0x81 || m->flags == 0x82);
  if (m->flags == 0x81) FUZZ_CHECK(cm_utf8_valid(m->data.len > 0 ? m->data.buf : "", m->data.len));
}

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  if (c->is_listening) return;
  if (ev == CM_EV_ACCEPT) live = c;
  if (ev == CM_EV_CLOSE && c == live) live = NULL;
  if (ev == CM_EV_HTTP_MSG) cm_ws_upgrade(c, ev_data, NULL, 0, NULL);
  if (ev == CM_EV_WS_CTL) check_msg(ev_data, false);
  if (ev == CM_EV_WS_MSG) {
    struct cm_ws_msg *m = ev_data;
    check_msg(m, true);
    cm_ws_send(c, m->data.buf, m->data.len, m->flags & 0x0f); /* echo */
  }
}

static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  if (ev == CM_EV_CLOSE && c == live) live = NULL;
  if (ev == CM_EV_WS_CTL) check_msg(ev_data, false);
  if (ev == CM_EV_WS_MSG) check_msg(ev_data, true);
}

static struct sockaddr_in loopback(uint16_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

static void set_peer_options(int fd) {
  int fl = fcntl(fd, F_GETFL), on = 1;
  FUZZ_CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
  FUZZ_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0);
}

static uint16_t listen_ws(const struct cm_ws_opts *o) {
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", server_fn, NULL);
  FUZZ_CHECK(lsn != NULL && cm_ws_listen_opts(lsn, o));
  return lsn->loc.port;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void) argc, (void) argv;
  FUZZ_CHECK(cm_mgr_init(&mgr) == 0);
  struct cm_ws_opts dflt = {0, false}, small = {SMALL_MAX, false};
  ws_port = listen_ws(&dflt);
  small_port = listen_ws(&small);
  raw_lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = loopback(0);
  socklen_t len = sizeof(sa);
  FUZZ_CHECK(raw_lsn >= 0 && bind(raw_lsn, (struct sockaddr *) &sa, sizeof(sa)) == 0);
  FUZZ_CHECK(listen(raw_lsn, 16) == 0);
  FUZZ_CHECK(getsockname(raw_lsn, (struct sockaddr *) &sa, &len) == 0);
  raw_port = ntohs(sa.sin_port);
  return 0;
}

/* Read and drop what the peer got; -1 once the other side closed.  With
 * `keep`, the bytes are appended there (the handshake). */
static long drain_peer(int fd, char *keep, size_t *kept, size_t size) {
  char buf[16384];
  long total = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      if (keep != NULL && *kept + (size_t) n < size) {
        memcpy(keep + *kept, buf, (size_t) n);
        *kept += (size_t) n;
        keep[*kept] = '\0';
      }
      total += n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return total;
    return -1;
  }
}

static long pump(int fd) {
  FUZZ_CHECK(cm_mgr_poll(&mgr, 0) == 0);
  return drain_peer(fd, NULL, NULL, 0);
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    FUZZ_CHECK(w > 0);
    p += w, n -= (size_t) w;
  }
}

static void feed(int fd, const uint8_t *ctrl, const uint8_t *p, size_t n) {
  for (size_t i = 0; n > 0; i++) {
    size_t want = ctrl[1 + i % 3];
    size_t len = want == 0 || want > n ? n : want;
    ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return;
    if (w > 0) p += w, n -= (size_t) w;
    if (pump(fd) < 0) return;
  }
}

static void run_out(int fd) {
  for (int i = 0; i < MAX_PUMPS; i++) {
    long got = pump(fd);
    if (got <= 0) return;
  }
  FUZZ_CHECK(!"output never stopped: a loop in the protocol handler?");
}

static void settle(void) {
  for (int i = 0; i < MAX_SETTLE && live != NULL; i++) FUZZ_CHECK(cm_mgr_poll(&mgr, i < 8 ? 0 : 1) == 0);
  FUZZ_CHECK(live == NULL);
}

static void wait_fd(int fd, short events) {
  struct pollfd pfd = {.fd = fd, .events = events};
  int r;
  do r = poll(&pfd, 1, 5000);
  while (r < 0 && errno == EINTR);
  FUZZ_CHECK(r == 1);
}

/* Pump until the peer has a complete HTTP head; returns its length. */
static size_t read_head(int fd, char *buf, size_t size) {
  size_t n = 0;
  for (int i = 0; i < MAX_SETTLE; i++) {
    FUZZ_CHECK(cm_mgr_poll(&mgr, i < 8 ? 0 : 1) == 0);
    FUZZ_CHECK(drain_peer(fd, buf, &n, size) >= 0);
    char *end = strstr(buf, "\r\n\r\n");
    if (end != NULL) return (size_t) (end + 4 - buf);
  }
  FUZZ_CHECK(!"no handshake");
  return 0;
}

/* A new source address of 127.0.0.0/16 per run: the peer closes first, and
 * its TIME_WAIT sockets would use up one address's ephemeral ports (see
 * fuzz_http_e2e.c). */
static void bind_source(int fd) {
  static uint32_t next;
  struct sockaddr_in src = loopback(0);
  int on = 1;
  src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + next);
  next = (next + 1) % 65534;
  FUZZ_CHECK(setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on)) == 0);
  FUZZ_CHECK(bind(fd, (struct sockaddr *) &src, sizeof(src)) == 0);
}

static int dial_server(void) {
  static const char req[] =
      "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  static const char pmd[] = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
  char head[1024];
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = loopback((flags & F_SMALL) ? small_port : ws_port);
  FUZZ_CHECK(fd >= 0);
  bind_source(fd);
  int rc;
  do rc = connect(fd, (struct sockaddr *) &sa, sizeof(sa));
  while (rc != 0 && errno == EINTR);
  FUZZ_CHECK(rc == 0 || errno == EISCONN);
  set_peer_options(fd);
  send_all(fd, req, sizeof(req) - 1);
  if (flags & F_DEFLATE) send_all(fd, pmd, sizeof(pmd) - 1);
  send_all(fd, "\r\n", 2);
  memset(head, 0, sizeof(head));
  read_head(fd, head, sizeof(head) - 1);
  FUZZ_CHECK(strncmp(head, "HTTP/1.1 101 ", 13) == 0 && live != NULL && live->is_websocket);
  return fd;
}

static int accept_client(void) {
  char url[40], head[2048], key[64], acc[64], resp[256];
  snprintf(url, sizeof(url), "ws://127.0.0.1:%u/", (unsigned) raw_port);
  live = cm_ws_connect(&mgr, url, NULL, NULL, client_fn, NULL);
  FUZZ_CHECK(live != NULL);
  int fd;
  wait_fd(raw_lsn, POLLIN);
  do fd = accept4(raw_lsn, NULL, NULL, SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  FUZZ_CHECK(fd >= 0);
  set_peer_options(fd);
  memset(head, 0, sizeof(head));
  read_head(fd, head, sizeof(head) - 1);
  const char *k = strstr(head, "Sec-WebSocket-Key: ");
  FUZZ_CHECK(k != NULL && sscanf(k + 19, "%24s", key) == 1);
  /* base64(SHA-1(key + GUID)), computed with the core's own helpers. */
  char cat[128];
  uint8_t sha[CM_SHA1_LEN];
  int n = snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  FUZZ_CHECK(cm_sha1(cat, (size_t) n, sha));
  long an = cm_base64_encode(sha, sizeof(sha), acc, sizeof(acc) - 1);
  FUZZ_CHECK(an == 28);
  acc[an] = '\0';
  n = snprintf(resp, sizeof(resp),
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n%s\r\n",
               acc, (flags & F_DEFLATE) ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
  send_all(fd, resp, (size_t) n);
  for (int i = 0; i < MAX_SETTLE && live != NULL && !live->is_websocket; i++)
    FUZZ_CHECK(cm_mgr_poll(&mgr, i < 8 ? 0 : 1) == 0);
  FUZZ_CHECK(live != NULL && live->is_websocket);
  return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CTRL_LEN) return 0;
  flags = data[0];
  int fd = (flags & F_CLIENT) ? accept_client() : dial_server();
  feed(fd, data, data + CTRL_LEN, size - CTRL_LEN);
  run_out(fd);
  close(fd);
  settle();
  FUZZ_CHECK(mgr.nconns == 2); /* the two listeners alone: nothing accumulates */
  return 0;
}
