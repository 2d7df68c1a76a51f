/* test_sock.c: loopback tests of sockets through the real loop: TCP echo
 * over IPv4 and IPv6, UDP, refused connects, drain, EOF, the recv cap. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

struct log {
  int events[64];
  int n;
  char error[256];
  struct cm_iobuf got; /* bytes a client received */
  bool done;
};

static void note(struct log *lg, int ev) {
  if (ev != CM_EV_POLL && lg->n < (int) CM_ARRAY_SIZE(lg->events)) lg->events[lg->n++] = ev;
}

/* Server: echo every READ back, consuming what it echoed. */
static void echo(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_READ && (!c->is_listening || c->is_udp)) { /* UDP: the listener itself */
    ASSERT(cm_send(c, cm_iobuf_data(&c->recv), c->recv.len));
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
}

static void client(struct cm_conn *c, int ev, void *ev_data) {
  struct log *lg = c->fn_data;
  note(lg, ev);
  if (ev == CM_EV_CONNECT) ASSERT(cm_send(c, "hello", 5));
  if (ev == CM_EV_ERROR) snprintf(lg->error, sizeof(lg->error), "%s", (const char *) ev_data);
  if (ev == CM_EV_READ) {
    cm_iobuf_add(&lg->got, cm_iobuf_data(&c->recv), c->recv.len);
    cm_iobuf_consume(&c->recv, c->recv.len);
    if (lg->got.len >= 5) lg->done = true;
  }
  if (ev == CM_EV_CLOSE) lg->done = true;
}

static void echo_over(const char *listen_url, const char *fmt) {
  struct cm_mgr mgr;
  struct log lg = {0};
  char url[128];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, listen_url, echo, NULL);
  ASSERT(l != NULL);
  ASSERT(l->is_listening && l->loc.port != 0);
  snprintf(url, sizeof(url), fmt, l->loc.port);
  struct cm_conn *c = cm_connect(&mgr, url, client, &lg);
  ASSERT(c != NULL && c->is_client);
  ASSERT(cm_test_poll_until(&mgr, &lg.done, 2000));
  ASSERT_EQ(lg.got.len, 5u);
  ASSERT(memcmp(cm_iobuf_data(&lg.got), "hello", 5) == 0);
  ASSERT_EQ(lg.events[0], CM_EV_OPEN);
  ASSERT_EQ(lg.events[1], CM_EV_RESOLVE);
  cm_iobuf_free(&lg.got);
  cm_mgr_free(&mgr);
}

static void test_tcp_echo_ipv4(void) { echo_over("tcp://127.0.0.1:0", "tcp://127.0.0.1:%u"); }
static void test_tcp_echo_localhost(void) { echo_over("tcp://localhost:0", "tcp://localhost:%u"); }

static void test_tcp_echo_ipv6(void) {
  int fd = socket(AF_INET6, SOCK_STREAM, 0);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  bool have6 = fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
  if (fd >= 0) close(fd);
  if (!have6) return; /* no IPv6 loopback on this machine */
  echo_over("tcp://[::1]:0", "tcp://[::1]:%u");
}

static void test_udp_echo(void) { echo_over("udp://127.0.0.1:0", "udp://127.0.0.1:%u"); }

static void test_refused(void) {
  /* Find a port nobody listens on: bind, read the port, close. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  ASSERT(bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
  ASSERT(getsockname(fd, (struct sockaddr *) &a, &len) == 0);
  close(fd);
  char url[64];
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", ntohs(a.sin_port));
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_connect(&mgr, url, client, &lg) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &lg.done, 2000));
  ASSERT(strcmp(lg.error, "socket error") == 0);
  ASSERT_EQ(lg.events[lg.n - 2], CM_EV_ERROR);
  ASSERT_EQ(lg.events[lg.n - 1], CM_EV_CLOSE);
  cm_mgr_free(&mgr);
}

static void test_bad_urls(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_listen(&mgr, "invalid://address", NULL, NULL) == NULL);
  ASSERT(cm_listen(&mgr, "tcp://256.1.1.1:0", NULL, NULL) == NULL);
  ASSERT(cm_connect(&mgr, "", NULL, NULL) == NULL);
  /* A name that cannot resolve: cm_connect returns at once, the lookup
   * runs on the resolver's thread, and the failure arrives as an error
   * event from the loop (test_resolve.c covers the resolver itself). */
  struct cm_conn *c = cm_connect(&mgr, "tcp://no.such.host.invalid:80", client, &lg);
  ASSERT(c != NULL && !c->is_closing);
  ASSERT(cm_test_poll_until(&mgr, &lg.done, 2000));
  ASSERT(strstr(lg.error, "no.such.host.invalid DNS lookup failed") != NULL);
  ASSERT_EQ(mgr.nconns, 1u); /* the resolver's internal connection */
  cm_mgr_free(&mgr);
}

/* A raw server that sends 1 MiB and drains; the peer must get every byte,
 * then EOF. */
static void big_sender(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_ACCEPT) {
    static char chunk[65536];
    for (size_t i = 0; i < sizeof(chunk); i++) chunk[i] = (char) (i * 7);
    for (int i = 0; i < 16; i++) ASSERT(cm_send(c, chunk, sizeof(chunk)));
    cm_drain(c);
  }
}

static void collector(struct cm_conn *c, int ev, void *ev_data) {
  struct log *lg = c->fn_data;
  (void) ev_data;
  note(lg, ev);
  if (ev == CM_EV_READ) {
    ASSERT(cm_iobuf_add(&lg->got, cm_iobuf_data(&c->recv), c->recv.len) == 0);
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
  if (ev == CM_EV_ERROR) snprintf(lg->error, sizeof(lg->error), "%s", (const char *) ev_data);
  if (ev == CM_EV_CLOSE) lg->done = true;
}

static void test_drain_then_eof(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", big_sender, NULL);
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", l->loc.port);
  ASSERT(cm_connect(&mgr, url, collector, &lg) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &lg.done, 5000));
  ASSERT_EQ(lg.got.len, 16u * 65536u);
  for (size_t i = 0; i < lg.got.len; i++) ASSERT(cm_iobuf_data(&lg.got)[i] == (char) ((i % 65536) * 7));
  ASSERT(lg.error[0] == '\0'); /* EOF is a close, not an error */
  ASSERT_EQ(mgr.nconns, 1u);   /* only the listener is left */
  cm_iobuf_free(&lg.got);
  cm_mgr_free(&mgr);
}

static void flood(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_CONNECT) {
    static char chunk[65536];
    for (int i = 0; i < 8; i++) ASSERT(cm_send(c, chunk, sizeof(chunk)));
  }
}

/* Server side that never consumes its input. */
static void hold(struct cm_conn *c, int ev, void *ev_data) {
  struct log *lg = c->fn_data;
  if (ev == CM_EV_ERROR) {
    snprintf(lg->error, sizeof(lg->error), "%s", (const char *) ev_data);
    lg->done = true;
  }
}

static void test_recv_cap(void) {
  /* With a 100 KiB cap and 512 KiB arriving, the connection fails cleanly
   * through the error path instead of growing. */
  struct cm_mgr mgr;
  struct log lg = {0};
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.recv_cap = 100 * 1024;
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", hold, &lg);
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", l->loc.port);
  ASSERT(cm_connect(&mgr, url, flood, NULL) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &lg.done, 5000));
  ASSERT(strcmp(lg.error, "MG_MAX_RECV_SIZE") == 0);
  cm_mgr_free(&mgr);
}

static void test_ids_never_reused(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  uint64_t last = 0;
  for (int i = 0; i < 50; i++) {
    struct cm_conn *c = cm_listen(&mgr, "tcp://127.0.0.1:0", NULL, NULL);
    ASSERT(c != NULL && c->id > last);
    last = c->id;
    ASSERT(cm_mgr_find(&mgr, c->id) == c);
    cm_close(c);
    cm_mgr_poll(&mgr, 0);
    ASSERT(cm_mgr_find(&mgr, last) == NULL);
  }
  cm_mgr_free(&mgr);
}

/* Edge-triggered reads: a burst far larger than one read is taken in
 * full although the peer then goes quiet (no new edge ever comes): each
 * read that fills its buffer brings the loop back for the rest.  And echo
 * under back-pressure: reading pauses while the peer does not read the
 * echo (is_full), and resumes with the bytes that waited meanwhile. */
struct echo_count {
  struct cm_conn *conn; /* the accepted connection */
  size_t got;           /* bytes it received */
  bool echo;            /* send them back */
  bool was_full;        /* reading was paused at least once */
};

static void counter(struct cm_conn *c, int ev, void *ev_data) {
  struct echo_count *ec = c->fn_data;
  (void) ev_data;
  if (ev == CM_EV_ACCEPT) ec->conn = c;
  if (ev == CM_EV_READ && !c->is_listening) {
    ec->got += c->recv.len;
    if (ec->echo) ASSERT(cm_send(c, cm_iobuf_data(&c->recv), c->recv.len));
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
  if (ev == CM_EV_POLL && ec->conn == c && c->is_full) ec->was_full = true;
}

/* Send up to `*left` bytes of a pattern without blocking. */
static void peer_push(int fd, size_t *left) {
  static char chunk[65536];
  while (*left > 0) {
    size_t n = *left < sizeof(chunk) ? *left : sizeof(chunk);
    ssize_t k = send(fd, chunk, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k <= 0) return;
    *left -= (size_t) k;
  }
}

static void test_burst_then_quiet(void) {
  struct cm_mgr mgr;
  struct echo_count ec = {0};
  const size_t total = 2u << 20;
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", counter, &ec);
  int fd = cm_test_peer_connect(l->loc.port);
  size_t left = total;
  uint64_t end = cm_millis() + 5000;
  while (left > 0 && cm_millis() < end) {
    peer_push(fd, &left);
    cm_mgr_poll(&mgr, 1);
  }
  ASSERT_EQ(left, 0u);
  /* the peer is quiet from here on */
  while (ec.got < total && cm_millis() < end) cm_mgr_poll(&mgr, 50);
  ASSERT_EQ(ec.got, total);
  close(fd);
  cm_mgr_free(&mgr);
}

static void test_echo_back_pressure(void) {
  struct cm_mgr mgr;
  struct echo_count ec = {.echo = true};
  const size_t total = 32u << 20; /* more than the kernel buffers hold */
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.send_hiwat = 64u << 10;
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", counter, &ec);
  int fd = cm_test_peer_connect(l->loc.port);
  size_t left = total, back = 0;
  uint64_t end = cm_millis() + 8000;
  /* push without reading until the server stops reading */
  while (!ec.was_full && cm_millis() < end) {
    peer_push(fd, &left);
    cm_mgr_poll(&mgr, 1);
  }
  ASSERT(ec.was_full);
  /* then read the echo as it comes, pushing the rest */
  static char sink[65536];
  while (back < total && cm_millis() < end) {
    peer_push(fd, &left);
    cm_mgr_poll(&mgr, 1);
    ssize_t k;
    while ((k = recv(fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0) back += (size_t) k;
  }
  ASSERT_EQ(ec.got, total);
  ASSERT_EQ(back, total);
  close(fd);
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_tcp_echo_ipv4);
  RUN(test_tcp_echo_localhost);
  RUN(test_tcp_echo_ipv6);
  RUN(test_udp_echo);
  RUN(test_refused);
  RUN(test_bad_urls);
  RUN(test_drain_then_eof);
  RUN(test_recv_cap);
  RUN(test_burst_then_quiet);
  RUN(test_echo_back_pressure);
  RUN(test_ids_never_reused);
  return cm_test_done();
}
