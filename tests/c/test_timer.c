/* test_timer.c: the timer heap driven through the real loop. */
#include "test.h"

static int order[16], norder;

static void record(struct cm_timer *t, void *arg) {
  (void) t;
  order[norder++] = (int) (intptr_t) arg;
}

static void test_fifo_ties(void) {
  struct cm_mgr mgr;
  struct cm_timer t[5];
  memset(t, 0, sizeof(t));
  norder = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  for (int i = 0; i < 5; i++)
    ASSERT(cm_timer_start(&mgr, &t[i], 0, CM_TIMER_ONCE, record, (void *) (intptr_t) i));
  ASSERT(!cm_timer_start(&mgr, &t[0], 0, CM_TIMER_ONCE, record, NULL)); /* already running */
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(norder, 5);
  for (int i = 0; i < 5; i++) ASSERT_EQ(order[i], i);
  for (int i = 0; i < 5; i++) ASSERT(!cm_timer_running(&t[i]));
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(norder, 5); /* one-shot: exactly once */
  cm_mgr_free(&mgr);
}

static void test_deadline_order_and_wait(void) {
  struct cm_mgr mgr;
  struct cm_timer a = {0}, b = {0};
  norder = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_timer_start(&mgr, &a, 60, CM_TIMER_ONCE, record, (void *) 1));
  ASSERT(cm_timer_start(&mgr, &b, 20, CM_TIMER_ONCE, record, (void *) 2));
  uint64_t start = cm_millis();
  /* A long poll timeout must be cut short by the next deadline. */
  while (norder < 2 && cm_millis() - start < 2000) cm_mgr_poll(&mgr, 1000);
  ASSERT_EQ(norder, 2);
  ASSERT_EQ(order[0], 2);
  ASSERT_EQ(order[1], 1);
  ASSERT(cm_millis() - start < 900);
  cm_mgr_free(&mgr);
}

static int fires;
static struct cm_mgr *stop_mgr;

static void count_and_stop(struct cm_timer *t, void *arg) {
  (void) arg;
  if (++fires == 3) cm_timer_stop(stop_mgr, t);
}

static void test_repeat_stop_in_callback(void) {
  struct cm_mgr mgr;
  struct cm_timer t = {0};
  fires = 0;
  stop_mgr = &mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_timer_start(&mgr, &t, 5, CM_TIMER_REPEAT, count_and_stop, NULL));
  uint64_t end = cm_millis() + 500;
  while (cm_millis() < end && fires < 3) cm_mgr_poll(&mgr, 50);
  ASSERT_EQ(fires, 3);
  for (int i = 0; i < 5; i++) cm_mgr_poll(&mgr, 10);
  ASSERT_EQ(fires, 3);
  ASSERT(!cm_timer_running(&t));
  cm_mgr_free(&mgr);
}

static void count(struct cm_timer *t, void *arg) {
  (void) t;
  (*(int *) arg)++;
}

static void test_zero_repeat_does_not_spin(void) {
  struct cm_mgr mgr;
  struct cm_timer t = {0};
  int n = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_timer_start(&mgr, &t, 0, CM_TIMER_REPEAT, count, &n));
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(n, 1);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(n, 2);
  cm_mgr_free(&mgr);
  ASSERT(!cm_timer_running(&t));
}

static void test_run_now_and_stop_before_first(void) {
  struct cm_mgr mgr;
  struct cm_timer now = {0}, never = {0};
  int n = 0, m = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_timer_start(&mgr, &now, 10000, CM_TIMER_RUN_NOW | CM_TIMER_REPEAT, count, &n));
  ASSERT(cm_timer_start(&mgr, &never, 0, CM_TIMER_ONCE, count, &m));
  cm_timer_stop(&mgr, &never); /* stopped while still on the new list */
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(m, 0);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(n, 1); /* next one is 10 s away */
  ASSERT(cm_timer_running(&now));
  cm_timer_stop(&mgr, &now);
  ASSERT(!cm_timer_running(&now));
  cm_mgr_free(&mgr);
}

static uint64_t last_expire, last_seq;
static size_t nfired;

/* Fired timers must come out in (deadline, start order) order. */
static void check_order(struct cm_timer *t, void *arg) {
  (void) arg;
  ASSERT(t->expire > last_expire || (t->expire == last_expire && t->seq > last_seq) || nfired == 0);
  last_expire = t->expire;
  last_seq = t->seq;
  nfired++;
}

static void test_many_random(void) {
  enum { N = 1000 };
  static struct cm_timer t[N];
  struct cm_mgr mgr;
  memset(t, 0, sizeof(t));
  nfired = 0;
  ASSERT(cm_mgr_init(&mgr) == 0);
  unsigned seed = 12345;
  for (int i = 0; i < N; i++) {
    seed = seed * 1103515245u + 12345u;
    ASSERT(cm_timer_start(&mgr, &t[i], 5 + (seed >> 16) % 40, CM_TIMER_ONCE, check_order, NULL));
  }
  for (int i = 0; i < N; i += 3) cm_timer_stop(&mgr, &t[i]); /* from the new list */
  cm_mgr_poll(&mgr, 0);                                      /* schedules the rest */
  for (int i = 1; i < N; i += 3) cm_timer_stop(&mgr, &t[i]); /* from the heap */
  uint64_t end = cm_millis() + 1000;
  while (mgr.nheap > 0 && cm_millis() < end) cm_mgr_poll(&mgr, 5);
  ASSERT_EQ(mgr.nheap, 0);
  ASSERT_EQ(nfired, (size_t) (N / 3)); /* i % 3 == 2: 333 timers */
  for (int i = 0; i < N; i++) ASSERT(!cm_timer_running(&t[i]));
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_fifo_ties);
  RUN(test_deadline_order_and_wait);
  RUN(test_repeat_stop_in_callback);
  RUN(test_zero_repeat_does_not_spin);
  RUN(test_run_now_and_stop_before_first);
  RUN(test_many_random);
  return cm_test_done();
}
