/* test_wakeup.c: the cross-thread channel: ordering and integrity under
 * concurrent senders, large payloads, unknown ids, shutdown races. */
#include <pthread.h>

#include "test.h"

enum { THREADS = 4, PER_THREAD = 2000 };

struct sender {
  struct cm_wakeup *w;
  uint64_t id;
  int thread;
};

/* Payload: thread, seq, then `len` bytes derived from both. */
static size_t payload_len(int seq) { return seq % 100 == 99 ? 300000u : (size_t) (seq * 37) % 3000u; }

static void *send_all(void *arg) {
  struct sender *s = arg;
  static __thread char buf[300000 + 8];
  for (int seq = 0; seq < PER_THREAD; seq++) {
    size_t len = payload_len(seq);
    buf[0] = (char) s->thread;
    memcpy(buf + 1, &seq, sizeof(seq));
    for (size_t i = 0; i < len; i++) buf[5 + i] = (char) (i + (size_t) seq + (size_t) s->thread);
    ASSERT(cm_wakeup_send(s->w, s->id, buf, len + 5));
  }
  return NULL;
}

static int next_seq[THREADS], received;

static void check(struct cm_conn *c, int ev, void *ev_data) {
  (void) c;
  if (ev != CM_EV_WAKEUP) return;
  const struct cm_str *p = ev_data;
  ASSERT(p->len >= 5);
  int thread = p->buf[0], seq;
  memcpy(&seq, p->buf + 1, sizeof(seq));
  ASSERT(thread >= 0 && thread < THREADS);
  ASSERT_EQ(seq, next_seq[thread]); /* each thread's order kept */
  next_seq[thread]++;
  size_t len = payload_len(seq);
  ASSERT_EQ(p->len, len + 5); /* never cut */
  for (size_t i = 0; i < len; i++) ASSERT(p->buf[5 + i] == (char) (i + (size_t) seq + (size_t) thread));
  received++;
}

static void test_concurrent_senders(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  uint64_t wid = cm_wakeup_init(&mgr);
  ASSERT(wid == 1);
  ASSERT(cm_wakeup_init(&mgr) == wid);
  ASSERT(cm_mgr_find(&mgr, wid) == NULL); /* internal: not user-visible */
  struct cm_conn *target = cm_listen(&mgr, "tcp://127.0.0.1:0", check, NULL);
  ASSERT(target != NULL);
  pthread_t th[THREADS];
  struct sender s[THREADS];
  for (int i = 0; i < THREADS; i++) {
    s[i] = (struct sender){cm_wakeup_hold(&mgr), target->id, i};
    ASSERT(pthread_create(&th[i], NULL, send_all, &s[i]) == 0);
  }
  uint64_t end = cm_millis() + 60000;
  while (received < THREADS * PER_THREAD && cm_millis() < end) cm_mgr_poll(&mgr, 50);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(received, THREADS * PER_THREAD);
  cm_mgr_free(&mgr);
  /* The manager is gone; held references still work and say "closed". */
  for (int i = 0; i < THREADS; i++) {
    ASSERT(!cm_wakeup_send(s[i].w, 2, "x", 1));
    cm_wakeup_release(s[i].w);
  }
}

static int got_in_one;
static void count(struct cm_conn *c, int ev, void *ev_data) {
  (void) c;
  (void) ev_data;
  if (ev == CM_EV_WAKEUP) got_in_one++;
}

static void test_all_pending_in_one_iteration(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_wakeup_hold(&mgr) == NULL); /* not enabled yet */
  ASSERT(cm_wakeup_init(&mgr) > 0);
  struct cm_wakeup *w = cm_wakeup_hold(&mgr);
  struct cm_conn *c = cm_listen(&mgr, "tcp://127.0.0.1:0", count, NULL);
  got_in_one = 0;
  for (int i = 0; i < 100; i++) ASSERT(cm_wakeup_send(w, c->id, "", 0));
  ASSERT(cm_wakeup_send(w, 999999, "lost", 4)); /* unknown id: dropped */
  cm_mgr_poll(&mgr, 1000);
  ASSERT_EQ(got_in_one, 100);
  cm_wakeup_release(w);
  cm_mgr_free(&mgr);
}

static void test_wakes_a_blocking_poll(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  uint64_t wid = cm_wakeup_init(&mgr);
  struct cm_wakeup *w = cm_wakeup_hold(&mgr);
  ASSERT(cm_wakeup_send(w, wid, "", 0)); /* to the channel itself: just wakes */
  uint64_t start = cm_millis();
  cm_mgr_poll(&mgr, 5000);
  ASSERT(cm_millis() - start < 1000);
  cm_mgr_free(&mgr); /* the mgr's reference goes; ours keeps the channel */
  ASSERT(!cm_wakeup_send(w, wid, "", 0));
  cm_wakeup_release(w);
}

int main(void) {
  RUN(test_concurrent_senders);
  RUN(test_all_pending_in_one_iteration);
  RUN(test_wakes_a_blocking_poll);
  return cm_test_done();
}
