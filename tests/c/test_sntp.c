/* test_sntp.c: the SNTP codec (sntp_codec.c) and client (sntp.c).
 *
 * The codec: NTP timestamps across the 2036 era boundary, the request
 * packet, and every reason a reply is refused, each input placed before a
 * guard page.  The client: against a loopback UDP server of our own that
 * answers as told (valid, kiss-o'-death, wrong origin, silent). */
#include "test.h"

#define UNIX_2036_MS 2085978496000LL /* 2036-02-07 06:28:16 UTC: NTP era 1 starts */
#define UNIX_2024_MS 1704067200000LL /* 2024-01-01 00:00:00 UTC */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t) (v >> 24), p[1] = (uint8_t) (v >> 16), p[2] = (uint8_t) (v >> 8), p[3] = (uint8_t) v;
}

static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t) (v >> 32));
  put32(p + 4, (uint32_t) v);
}

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

/* A valid server reply to a request with transmit time `origin`. */
static void make_reply(uint8_t *p, uint64_t origin, int64_t t_ms) {
  memset(p, 0, CM_SNTP_LEN);
  p[0] = (0 << 6) | (4 << 3) | 4; /* LI 0, VN 4, server */
  p[1] = 2;                       /* stratum */
  memcpy(p + 12, "GPS\0", 4);
  put64(p + 24, origin);
  put64(p + 32, cm_sntp_from_ms(t_ms));
  put64(p + 40, cm_sntp_from_ms(t_ms));
}

static int parse(const uint8_t *p, size_t len, uint64_t origin, int64_t pivot, struct cm_sntp_reply *r) {
  return cm_sntp_parse(cm_test_guard(p, len), len, origin, pivot, r);
}

static void test_timestamp_round_trip(void) {
  static const int64_t times[] = {0,
                                  1,
                                  999,
                                  1000,
                                  UNIX_2024_MS + 123,
                                  UNIX_2036_MS - 1,
                                  UNIX_2036_MS,
                                  UNIX_2036_MS + 1,
                                  4102444800000LL /* 2100 */,
                                  -2208988800000LL /* 1900 */};
  for (size_t i = 0; i < CM_ARRAY_SIZE(times); i++) {
    uint64_t ts = cm_sntp_from_ms(times[i]);
    ASSERT_EQ(cm_sntp_to_ms(ts, times[i]), times[i]);
    /* A clock off by decades still reads the right era. */
    ASSERT_EQ(cm_sntp_to_ms(ts, times[i] + 30LL * 365 * 86400 * 1000), times[i]);
    ASSERT_EQ(cm_sntp_to_ms(ts, times[i] - 30LL * 365 * 86400 * 1000), times[i]);
  }
}

static void test_era_boundary(void) {
  /* 2036-02-07 06:28:16 is second 0 of era 1 on the wire. */
  ASSERT_EQ(cm_sntp_from_ms(UNIX_2036_MS), 0u);
  ASSERT_EQ(cm_sntp_from_ms(UNIX_2036_MS - 1000) >> 32, 0xffffffffu);
  /* Read near 2036, 0 is the start of era 1, not 1900. */
  ASSERT_EQ(cm_sntp_to_ms(0, UNIX_2036_MS - 5000), UNIX_2036_MS);
  ASSERT_EQ(cm_sntp_to_ms((uint64_t) 10 << 32, UNIX_2036_MS + 3600000), UNIX_2036_MS + 10000);
  /* Read in 2024, the same small number would be 1900. */
  ASSERT_EQ(cm_sntp_to_ms((uint64_t) 3913056000u << 32, UNIX_2024_MS), UNIX_2024_MS);
  /* Half an ms of fraction is truncated to the ms. */
  ASSERT_EQ(cm_sntp_to_ms(((uint64_t) 3913056000u << 32) | 0x80000000u, UNIX_2024_MS), UNIX_2024_MS + 500);
  /* An absurd pivot does not overflow. */
  (void) cm_sntp_to_ms(UINT64_MAX, INT64_MAX);
  (void) cm_sntp_to_ms(UINT64_MAX, INT64_MIN);
}

static void test_request(void) {
  uint8_t p[CM_SNTP_LEN + 1];
  memset(p, 0xaa, sizeof(p));
  ASSERT_EQ(cm_sntp_request_build(p, CM_SNTP_LEN - 1, 1), 0u);
  ASSERT_EQ(p[0], 0xaa);
  ASSERT_EQ(cm_sntp_request_build(p, sizeof(p), 0x0123456789abcdefULL), (size_t) CM_SNTP_LEN);
  ASSERT_EQ(p[0], 0x23); /* LI 0, VN 4, mode 3 */
  for (int i = 1; i < 40; i++) ASSERT_EQ(p[i], 0);
  ASSERT_EQ(get64(p + 40), 0x0123456789abcdefULL);
  ASSERT_EQ(p[48], 0xaa);
}

static void test_parse_valid(void) {
  uint8_t p[CM_SNTP_LEN + 8];
  struct cm_sntp_reply r;
  uint64_t origin = cm_sntp_from_ms(UNIX_2024_MS) | 0x1234;
  make_reply(p, origin, UNIX_2024_MS + 42);
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2024_MS, &r), CM_SNTP_LEN);
  ASSERT_EQ(r.xmit_ms, UNIX_2024_MS + 42);
  ASSERT_EQ(r.recv_ms, UNIX_2024_MS + 42);
  ASSERT_EQ(r.stratum, 2);
  ASSERT_EQ(r.mode, 4);
  ASSERT_EQ(r.version, 4);
  /* Extensions or a MAC after the header are ignored. */
  ASSERT_EQ(parse(p, sizeof(p), origin, UNIX_2024_MS, &r), CM_SNTP_LEN);
  /* Origin 0: the caller does not check it (broadcast, mode 5). */
  p[0] = (4 << 3) | 5;
  ASSERT_EQ(parse(p, CM_SNTP_LEN, 0, UNIX_2024_MS, &r), CM_SNTP_LEN);
  /* A version 3 server answers a version 4 client in its own version. */
  p[0] = (3 << 3) | 4;
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2024_MS, &r), CM_SNTP_LEN);
  /* After 2036, the pivot picks era 1. */
  make_reply(p, origin, UNIX_2036_MS + 86400000);
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2036_MS + 86400000, &r), CM_SNTP_LEN);
  ASSERT_EQ(r.xmit_ms, UNIX_2036_MS + 86400000);
}

static void test_parse_short(void) {
  uint8_t p[CM_SNTP_LEN];
  struct cm_sntp_reply r;
  make_reply(p, 7, UNIX_2024_MS);
  for (size_t n = 0; n < CM_SNTP_LEN; n++) ASSERT_EQ(parse(p, n, 7, UNIX_2024_MS, &r), 0);
}

static void expect_refused(const uint8_t *p, uint64_t origin, const char *why) {
  struct cm_sntp_reply r;
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2024_MS, &r), -1);
  ASSERT(r.why != NULL && strcmp(r.why, why) == 0);
}

static void test_parse_refused(void) {
  uint8_t p[CM_SNTP_LEN];
  uint64_t origin = 0x1111222233334444ULL;
  struct cm_sntp_reply r;
  for (int mode = 0; mode < 8; mode++) {
    if (mode == 4 || mode == 5) continue;
    make_reply(p, origin, UNIX_2024_MS);
    p[0] = (uint8_t) ((4 << 3) | mode);
    expect_refused(p, origin, "not a server reply");
  }
  make_reply(p, origin, UNIX_2024_MS);
  p[0] = (0 << 3) | 4;
  expect_refused(p, origin, "unknown NTP version");
  p[0] = (5 << 3) | 4;
  expect_refused(p, origin, "unknown NTP version");
  make_reply(p, origin, UNIX_2024_MS);
  p[0] = (3 << 6) | (4 << 3) | 4;
  expect_refused(p, origin, "server clock not synchronised");
  make_reply(p, origin, UNIX_2024_MS);
  p[1] = 16;
  expect_refused(p, origin, "stratum above 15");
  make_reply(p, origin, UNIX_2024_MS);
  memset(p + 40, 0, 8);
  expect_refused(p, origin, "zero transmit time");
  make_reply(p, origin + 1, UNIX_2024_MS);
  expect_refused(p, origin, "origin does not match the request");
  /* Kiss-o'-death (RFC 4330 §8): LI 3, stratum 0, the code in the refid. */
  make_reply(p, origin, UNIX_2024_MS);
  p[0] = (3 << 6) | (4 << 3) | 4;
  p[1] = 0;
  memcpy(p + 12, "RATE", 4);
  expect_refused(p, origin, "kiss-o'-death");
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2024_MS, &r), -1);
  ASSERT(strcmp(r.kiss, "RATE") == 0);
  memcpy(p + 12, "D\nN\x80", 4); /* not printable: shown as '?' */
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin, UNIX_2024_MS, &r), -1);
  ASSERT(strcmp(r.kiss, "D?N?") == 0);
  /* A forged kiss (wrong origin) is only a stale packet. */
  ASSERT_EQ(parse(p, CM_SNTP_LEN, origin + 1, UNIX_2024_MS, &r), -1);
  ASSERT_EQ(r.kiss[0], '\0');
}

/* ---- the client against a loopback server ------------------------------- */

enum answer { ANSWER_OK, ANSWER_KISS, ANSWER_BAD_ORIGIN_THEN_OK, ANSWER_NONE };

struct server {
  enum answer how;
  int requests;
};

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct server *s = c->fn_data;
  (void) ev_data;
  if (ev != CM_EV_READ) return;
  const uint8_t *req = (const uint8_t *) cm_iobuf_data(&c->recv);
  ASSERT_EQ(c->recv.len, (size_t) CM_SNTP_LEN);
  ASSERT_EQ(req[0], 0x23);
  uint64_t origin = get64(req + 40);
  uint8_t p[CM_SNTP_LEN];
  s->requests++;
  if (s->how == ANSWER_BAD_ORIGIN_THEN_OK) {
    make_reply(p, origin ^ 1, 1000); /* a stale answer first: dropped */
    ASSERT(cm_send(c, p, sizeof(p)));
  }
  make_reply(p, origin, cm_time_ms());
  if (s->how == ANSWER_KISS) {
    p[0] = (3 << 6) | (4 << 3) | 4;
    p[1] = 0;
    memcpy(p + 12, "DENY", 4);
  }
  if (s->how != ANSWER_NONE) ASSERT(cm_send(c, p, sizeof(p)));
  cm_iobuf_consume(&c->recv, c->recv.len);
}

struct client {
  int64_t time_ms;
  int times;
  char error[256];
  bool closed;
};

static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct client *cl = c->fn_data;
  if (ev == CM_EV_SNTP_TIME) {
    cl->time_ms = *(const int64_t *) ev_data;
    cl->times++;
  }
  if (ev == CM_EV_ERROR) snprintf(cl->error, sizeof(cl->error), "%s", (const char *) ev_data);
  if (ev == CM_EV_CLOSE) cl->closed = true;
}

static void run_client(enum answer how, struct server *s, struct client *cl, int wait_ms) {
  struct cm_mgr mgr;
  char url[64];
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  s->how = how;
  struct cm_conn *srv = cm_listen(&mgr, "udp://127.0.0.1:0", server_fn, s);
  ASSERT(srv != NULL);
  snprintf(url, sizeof(url), "sntp://127.0.0.1:%u", srv->loc.port);
  struct cm_conn *c = cm_sntp_connect(&mgr, url, client_fn, cl);
  ASSERT(c != NULL && c->id > 0 && c->is_udp);
  ASSERT(cm_test_poll_until(&mgr, &cl->closed, wait_ms));
  cm_mgr_free(&mgr);
}

static void test_client_gets_time(void) {
  struct server s = {0};
  struct client cl = {0};
  int64_t before = cm_time_ms();
  run_client(ANSWER_OK, &s, &cl, 5000);
  ASSERT_EQ(cl.times, 1);
  ASSERT_EQ(s.requests, 1);
  ASSERT(cl.time_ms >= before - 1000 && cl.time_ms <= cm_time_ms() + 1000);
  ASSERT_EQ(cl.error[0], '\0');
}

static void test_client_drops_stale_reply(void) {
  struct server s = {0};
  struct client cl = {0};
  run_client(ANSWER_BAD_ORIGIN_THEN_OK, &s, &cl, 5000);
  ASSERT_EQ(cl.times, 1);
  ASSERT(cl.time_ms > 1000000);
}

static void test_client_kiss_of_death(void) {
  struct server s = {0};
  struct client cl = {0};
  run_client(ANSWER_KISS, &s, &cl, 5000);
  ASSERT_EQ(cl.times, 0);
  ASSERT(strstr(cl.error, "DENY") != NULL);
}

static void test_client_silent_server(void) {
  struct server s = {0};
  struct client cl = {0};
  uint64_t start = cm_millis();
  run_client(ANSWER_NONE, &s, &cl, 10000);
  ASSERT_EQ(cl.times, 0);
  ASSERT_EQ(cl.error[0], '\0'); /* closed silently */
  ASSERT(cm_millis() - start >= CM_SNTP_TIMEOUT_MS - 50);
}

static void test_request_while_resolving(void) {
  struct cm_mgr mgr;
  struct client cl = {0};
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  struct cm_conn *c = cm_sntp_connect(&mgr, "sntp://name.invalid", client_fn, &cl);
  ASSERT(c != NULL && c->id > 0);
  ASSERT(!cm_sntp_request(c)); /* no socket yet: ignored */
  ASSERT(cm_test_poll_until(&mgr, &cl.closed, 5000));
  ASSERT(strstr(cl.error, "DNS lookup failed") != NULL);
  ASSERT_EQ(cm_sntp_connect(&mgr, "", client_fn, &cl), NULL);
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_timestamp_round_trip);
  RUN(test_era_boundary);
  RUN(test_request);
  RUN(test_parse_valid);
  RUN(test_parse_short);
  RUN(test_parse_refused);
  RUN(test_client_gets_time);
  RUN(test_client_drops_stale_reply);
  RUN(test_client_kiss_of_death);
  RUN(test_client_silent_server);
  RUN(test_request_while_resolving);
  return cm_test_done();
}
