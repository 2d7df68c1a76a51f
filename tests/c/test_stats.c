/* test_stats.c: the loop's counters (cm_mgr_stats), its lag, SO_REUSEPORT
 * listeners, and what lets another event loop drive ours (cm_mgr_fd,
 * cm_mgr_timeout). */
#include <time.h>

#include "test.h"

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Server: /raw is answered with raw sends + cm_http_end, else cm_http_reply. */
static void server(struct cm_conn *c, int ev, void *ev_data) {
  if (ev != CM_EV_HTTP_MSG) return;
  struct cm_http_msg *hm = ev_data;
  if (cm_str_eq(hm->uri, "/raw")) {
    static const char resp[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    ASSERT(cm_send(c, resp, sizeof(resp) - 1));
    cm_http_end(c);
  } else {
    ASSERT(cm_http_reply(c, 200, NULL, 0, "ok", 2));
  }
}

static int answers;
static void client(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_CONNECT) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /raw HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT(cm_http_send(c, req, sizeof(req) - 1));
  } else if (ev == CM_EV_HTTP_MSG) {
    answers++;
  }
}

static void test_http_counters(void) {
  struct cm_mgr mgr;
  struct cm_mgr_stats st;
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_http_listen(&mgr, "http://127.0.0.1:0", server, NULL);
  ASSERT(lsn != NULL);
  snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned) lsn->loc.port);
  answers = 0;
  ASSERT(cm_http_connect(&mgr, url, client, NULL) != NULL);
  for (int i = 0; i < 500 && answers < 2; i++) cm_mgr_poll(&mgr, 10);
  ASSERT_EQ(answers, 2);
  cm_mgr_stats(&mgr, &st);
  ASSERT_EQ(st.conns_open, 3); /* listener, client, accepted */
  ASSERT_EQ(st.conns_accepted, 1);
  ASSERT_EQ(st.http_requests, 2);
  ASSERT_EQ(st.http_responses[2], 1); /* cm_http_reply(200) */
  ASSERT_EQ(st.http_responses[4], 1); /* the raw "404" */
  ASSERT_EQ(st.http_responses[0], 0);
  ASSERT(st.bytes_in > 0 && st.bytes_out > 0);
  ASSERT_EQ(st.bytes_in, st.bytes_out); /* both ends are ours */
  ASSERT(st.iterations > 0);
  ASSERT_EQ(st.errors, 0);
  cm_mgr_free(&mgr);
}

static void on_timer(struct cm_timer *t, void *arg) {
  (void) t;
  (*(int *) arg)++;
}

/* A timer due while the thread was busy elsewhere: the iteration that runs
 * it starts late by about that long. */
static void test_lag(void) {
  struct cm_mgr mgr;
  struct cm_mgr_stats st;
  struct cm_timer t;
  int fired = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  memset(&t, 0, sizeof(t));
  ASSERT(cm_timer_start(&mgr, &t, 1, CM_TIMER_ONCE, on_timer, &fired));
  cm_mgr_poll(&mgr, 0); /* schedules it: due in 1 ms */
  sleep_ms(60);         /* busy (a slow handler, say) */
  for (int i = 0; i < 10 && fired == 0; i++) cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(fired, 1);
  cm_mgr_stats(&mgr, &st);
  ASSERT(st.lag_max_ms >= 50);
  cm_mgr_poll(&mgr, 1); /* on time */
  cm_mgr_stats(&mgr, &st);
  ASSERT(st.lag_max_ms >= 50); /* still in the window */
  cm_mgr_free(&mgr);
}

static void test_reuse_port(void) {
  struct cm_mgr mgr;
  char url[64];
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.listen_flags = CM_LISTEN_REUSEPORT;
  struct cm_conn *a = cm_listen(&mgr, "tcp://127.0.0.1:0", NULL, NULL);
  ASSERT(a != NULL);
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", (unsigned) a->loc.port);
  ASSERT(cm_listen(&mgr, url, NULL, NULL) != NULL); /* shares the port */
  mgr.listen_flags = 0;
  ASSERT(cm_listen(&mgr, url, NULL, NULL) == NULL); /* without it: in use */
  cm_mgr_free(&mgr);
}

static void test_fd_and_timeout(void) {
  struct cm_mgr mgr;
  struct cm_timer t;
  int fired = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_mgr_fd(&mgr) >= 0);
  ASSERT_EQ(cm_mgr_timeout(&mgr, -1), -1); /* nothing to wait for */
  ASSERT_EQ(cm_mgr_timeout(&mgr, 250), 250);
  memset(&t, 0, sizeof(t));
  ASSERT(cm_timer_start(&mgr, &t, 100000, CM_TIMER_ONCE, on_timer, &fired));
  ASSERT_EQ(cm_mgr_timeout(&mgr, -1), 0); /* a new timer: poll to schedule it */
  cm_mgr_poll(&mgr, 0);
  int ms = cm_mgr_timeout(&mgr, -1);
  ASSERT(ms > 90000 && ms <= 100000);
  ASSERT_EQ(cm_mgr_timeout(&mgr, 10), 10);
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_http_counters);
  RUN(test_lag);
  RUN(test_reuse_port);
  RUN(test_fd_and_timeout);
  return cm_test_done();
}
