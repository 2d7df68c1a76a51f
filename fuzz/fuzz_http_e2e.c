/* fuzz_http_e2e.c: arbitrary bytes through the real loop and the HTTP
 * protocol handler, over loopback TCP.
 *
 * The core creates connections only through listen/connect/accept, so the
 * peer is a plain socket on 127.0.0.1 (nothing leaves the machine).  One
 * manager and its listeners live for the whole process; each input opens one
 * connection, writes its bytes in pieces, pumps the loop, reads and drops
 * whatever comes back, closes, and pumps until the core has freed the
 * connection.  Loopback delivers synchronously, so cm_mgr_poll(mgr, 0) sees
 * every write at once: the run depends on the input alone.
 *
 * Input layout:
 *   byte 0      flags (F_* below)
 *   bytes 1..3  piece lengths, used in turn; 0 means "all that is left"
 *   the rest    the bytes the peer sends
 * By default the input is a client talking to cm_http_listen(); with
 * F_CLIENT it is a server answering cm_http_connect(). */
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
  F_DEFER = 1,      /* answer on the next CM_EV_POLL (the cm_resume path) */
  F_RAW = 2,        /* answer with cm_send + cm_http_end, not cm_http_reply */
  F_HALF_CLOSE = 4, /* shutdown(SHUT_WR) after the input, then read to the end */
  F_CLIENT = 8,     /* roles swapped: the input answers cm_http_connect */
  F_SMALL_CAP = 16, /* recv cap of one read step: the MG_MAX_RECV_SIZE path */
};

#define CTRL_LEN 4
#define MAX_PUMPS 4096 /* bound on loop iterations while output still flows */
#define MAX_SETTLE 64  /* bound on iterations for the core to free the conn */

static struct cm_mgr mgr;
static uint16_t http_port; /* cm_http_listen's listener */
static int raw_lsn = -1;   /* plain listener that plays the server for F_CLIENT */
static uint16_t raw_port;
static size_t default_cap;   /* mgr.recv_cap as cm_mgr_init set it */
static unsigned flags;       /* of the current input */
static struct cm_conn *live; /* the connection under test, NULL once freed */
static char deferred;        /* its address marks c->userdata "answer owed" */
static bool verbose;         /* FUZZ_E2E_VERBOSE set: echo what the peer gets */

/* Every slice of a delivered message lies inside c->recv, head then body. */
static void check_msg(struct cm_conn *c, const struct cm_http_msg *hm) {
  const char *lo = cm_iobuf_data(&c->recv), *hi = lo + c->recv.len;
  FUZZ_CHECK(fuzz_slice_in(hm->message, lo, hi) && fuzz_slice_in(hm->head, lo, hi));
  FUZZ_CHECK(fuzz_slice_in(hm->body, lo, hi));
  FUZZ_CHECK(hm->message.buf == hm->head.buf);
  FUZZ_CHECK(hm->message.len == hm->head.len + hm->body.len);
  if (hm->body.len > 0) FUZZ_CHECK(hm->body.buf == hm->head.buf + hm->head.len);
  FUZZ_CHECK(fuzz_slice_in(hm->uri, hm->head.buf, hm->head.buf + hm->head.len));
}

static void answer(struct cm_conn *c, const char *body, size_t len) {
  if (flags & F_RAW) {
    char head[80];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
    cm_send(c, head, (size_t) n);
    cm_send(c, body, len);
    cm_http_end(c);
  } else {
    cm_http_reply(c, 200, "X-Fuzz: 1\r\n", 11, body, len);
  }
}

static void trace(const char *who, struct cm_conn *c, int ev) {
  char name[32];
  if (verbose && ev != CM_EV_POLL)
    fprintf(stderr, "[%s conn %llu] %s recv=%zu send=%zu\n", who, (unsigned long long) c->id,
            cm_event_name(ev, name, sizeof(name)), c->recv.len, c->send.len);
}

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  if (c->is_listening) return;
  trace("server", c, ev);
  if (ev == CM_EV_ACCEPT) live = c;
  if (ev == CM_EV_CLOSE && c == live) live = NULL;
  if (ev == CM_EV_HTTP_MSG) {
    struct cm_http_msg *hm = ev_data;
    check_msg(c, hm);
    if (flags & F_DEFER) {
      c->userdata = &deferred;
    } else {
      answer(c, hm->uri.buf, hm->uri.len); /* echo: a reply that varies */
    }
  }
  if (ev == CM_EV_POLL && c->userdata == &deferred) {
    c->userdata = NULL;
    answer(c, "late", 4);
  }
}

static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  static const char req[] = "GET /fuzz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  trace("client", c, ev);
  if (ev == CM_EV_CLOSE && c == live) live = NULL;
  if (ev == CM_EV_CONNECT) cm_send(c, req, sizeof(req) - 1);
  if (ev == CM_EV_HTTP_MSG) check_msg(c, ev_data);
}

static uint16_t bound_port(int fd) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  FUZZ_CHECK(getsockname(fd, (struct sockaddr *) &sa, &len) == 0);
  return ntohs(sa.sin_port);
}

static struct sockaddr_in loopback(uint16_t port) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sa;
}

/* Non-blocking, and no Nagle: with it, a small write waits for the ACK of
 * the previous one (up to the peer's delayed-ACK time, 40 ms), so the loop
 * would see the pieces late, merged, and the run would depend on timing. */
static void set_peer_options(int fd) {
  int fl = fcntl(fd, F_GETFL), on = 1;
  FUZZ_CHECK(fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0);
  FUZZ_CHECK(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0);
}

/* The listeners are created once: a listen per input would cost more than
 * the input itself. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void) argc, (void) argv;
  /* For reading a reproducer's run; it only adds output. */
  verbose = getenv("FUZZ_E2E_VERBOSE") != NULL;
  if (verbose) cm_log_set(CM_LL_VERBOSE);
  FUZZ_CHECK(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", server_fn, NULL);
  FUZZ_CHECK(lsn != NULL);
  http_port = lsn->loc.port;
  default_cap = mgr.recv_cap;
  raw_lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = loopback(0);
  FUZZ_CHECK(raw_lsn >= 0 && bind(raw_lsn, (struct sockaddr *) &sa, sizeof(sa)) == 0);
  FUZZ_CHECK(listen(raw_lsn, 16) == 0);
  raw_port = bound_port(raw_lsn);
  return 0;
}

/* Read and drop all the peer has been sent.  Returns the byte count, or -1
 * once the other side has closed. */
static long drain_peer(int fd) {
  char buf[16384];
  long total = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0 && verbose) fprintf(stderr, "[peer got %zd] %.*s\n", n, (int) n, buf);
    if (n > 0) {
      total += n;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return total;
    return -1; /* EOF, reset */
  }
}

/* One loop iteration, then the peer's reading.  Returns what drain_peer
 * returned. */
static long pump(int fd) {
  FUZZ_CHECK(cm_mgr_poll(&mgr, 0) == 0);
  return drain_peer(fd);
}

/* Write the input in pieces, one loop iteration after each.  A peer that
 * was closed on (after a 400) just stops writing. */
static void feed(int fd, const uint8_t *ctrl, const uint8_t *p, size_t n) {
  for (size_t i = 0; n > 0; i++) {
    size_t want = ctrl[1 + i % 3];
    size_t len = want == 0 || want > n ? n : want;
    ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (verbose) fprintf(stderr, "[peer sends %zu of %zu] -> %zd\n", len, n, w);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return;
    if (w > 0) p += w, n -= (size_t) w;
    if (pump(fd) < 0) return;
  }
}

/* Let the loop run until the peer gets no more bytes: each deferred answer
 * lets one more pipelined message through per iteration. */
static void run_out(int fd) {
  for (int i = 0; i < MAX_PUMPS; i++) {
    long got = pump(fd);
    if (got < 0) return;
    bool owed = live != NULL && live->userdata == &deferred;
    if (got == 0 && !owed) return;
  }
  FUZZ_CHECK(!"output never stopped: a loop in the protocol handler?");
}

/* After the peer closed, the core must notice and free the connection. */
static void settle(void) {
  for (int i = 0; i < MAX_SETTLE && live != NULL; i++) FUZZ_CHECK(cm_mgr_poll(&mgr, i < 8 ? 0 : 1) == 0);
  FUZZ_CHECK(live == NULL);
}

/* The peer closes first, so every run leaves a TIME_WAIT socket on its side
 * for a minute, and one source address has only ~28K ephemeral ports: at
 * thousands of runs a second they last only as long as the kernel reuses
 * TIME_WAIT ports on loopback (tcp_tw_reuse, not on every machine).  So each
 * run dials from the next address of 127.0.0.0/16 (all of 127/8 is
 * loopback); the server sees another peer address, nothing else changes. */
static void bind_source(int fd) {
  static uint32_t next;
  struct sockaddr_in src = loopback(0);
  int on = 1;
  src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + next);
  next = (next + 1) % 65534;
  /* The port is then chosen by connect(), unique per 4-tuple. */
  FUZZ_CHECK(setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &on, sizeof(on)) == 0);
  FUZZ_CHECK(bind(fd, (struct sockaddr *) &src, sizeof(src)) == 0);
}

/* Wait for `events` on fd.  libFuzzer's -timeout watchdog is a SIGALRM, so
 * any blocking call here may see EINTR: retried, never taken as failure. */
static void wait_fd(int fd, short events) {
  struct pollfd pfd = {.fd = fd, .events = events};
  int r;
  do r = poll(&pfd, 1, 5000);
  while (r < 0 && errno == EINTR);
  FUZZ_CHECK(r == 1);
}

/* A blocking connect() interrupted by that SIGALRM fails with EINTR while the
 * connection goes on in the background (a long run died of it after 390,729
 * inputs), so connect without blocking and wait for the outcome. */
static void connect_peer(int fd, uint16_t port) {
  struct sockaddr_in sa = loopback(port);
  int err = 0;
  socklen_t len = sizeof(err);
  set_peer_options(fd);
  if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) return;
  FUZZ_CHECK(errno == EINPROGRESS || errno == EINTR);
  wait_fd(fd, POLLOUT);
  FUZZ_CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0);
  if (err != 0) fprintf(stderr, "connect to the listener: %s\n", strerror(err));
  FUZZ_CHECK(err == 0);
}

static int dial_server(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0);
  bind_source(fd);
  connect_peer(fd, http_port);
  FUZZ_CHECK(cm_mgr_poll(&mgr, 0) == 0); /* accept */
  FUZZ_CHECK(live != NULL);
  return fd;
}

static int accept_client(void) {
  char url[40];
  int fd;
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) raw_port);
  live = cm_http_connect(&mgr, url, client_fn, NULL);
  FUZZ_CHECK(live != NULL);
  wait_fd(raw_lsn, POLLIN);
  do fd = accept4(raw_lsn, NULL, NULL, SOCK_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  FUZZ_CHECK(fd >= 0);
  set_peer_options(fd);
  return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CTRL_LEN) return 0;
  flags = data[0];
  mgr.recv_cap = (flags & F_SMALL_CAP) ? 16384 : default_cap;
  int fd = (flags & F_CLIENT) ? accept_client() : dial_server();
  feed(fd, data, data + CTRL_LEN, size - CTRL_LEN);
  run_out(fd);
  if (flags & F_HALF_CLOSE) {
    shutdown(fd, SHUT_WR);
    run_out(fd);
  }
  close(fd);
  settle();
  FUZZ_CHECK(mgr.nconns == 1); /* the listener alone: nothing accumulates */
  return 0;
}
