/* test_mgr.c: the loop itself: pacing without sockets, re-entry, the sleep
 * hooks, deferred close, shutdown order. */
#include "test.h"

static void test_sleeps_without_sockets(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  uint64_t start = cm_millis();
  cm_mgr_poll(&mgr, 50);
  uint64_t took = cm_millis() - start;
  ASSERT(took >= 45); /* timer-paced loops rely on this */
  cm_mgr_free(&mgr);
  cm_mgr_free(&mgr); /* idempotent */
  ASSERT(cm_mgr_poll(&mgr, 0) == -CM_EINVAL);
}

static int sleeps, wakes;
static void hook(struct cm_mgr *mgr, bool sleeping, void *arg) {
  (void) mgr;
  (void) arg;
  if (sleeping) ASSERT_EQ(sleeps++, wakes);
  else
    ASSERT_EQ(++wakes, sleeps);
}

static void test_sleep_hook_only_around_waits(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.sleep_fn = hook;
  sleeps = wakes = 0;
  cm_mgr_poll(&mgr, 0); /* no wait: no hook */
  ASSERT_EQ(sleeps, 0);
  cm_mgr_poll(&mgr, 5);
  ASSERT_EQ(sleeps, 1);
  ASSERT_EQ(wakes, 1);
  cm_mgr_free(&mgr);
}

static int reentry_rc = 1;
static void reenter(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_POLL) reentry_rc = cm_mgr_poll(c->mgr, 0);
}

static void test_not_reentrant(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  ASSERT(cm_listen(&mgr, "tcp://127.0.0.1:0", reenter, NULL) != NULL);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(reentry_rc, -CM_EINVAL);
  cm_mgr_free(&mgr);
}

struct trace {
  char text[256];
};

static void trace(struct cm_conn *c, int ev, void *ev_data) {
  struct trace *t = c->fn_data;
  (void) ev_data;
  size_t n = strlen(t->text);
  if (ev == CM_EV_POLL || ev == CM_EV_CLOSE || ev == CM_EV_OPEN)
    snprintf(t->text + n, sizeof(t->text) - n, "%c%llu ",
             ev == CM_EV_POLL   ? 'P'
             : ev == CM_EV_OPEN ? 'O'
                                : 'C',
             (unsigned long long) c->id);
}

static void test_close_is_deferred(void) {
  struct cm_mgr mgr;
  struct trace t = {{0}};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *a = cm_listen(&mgr, "tcp://127.0.0.1:0", trace, &t);
  struct cm_conn *b = cm_listen(&mgr, "tcp://127.0.0.1:0", trace, &t);
  ASSERT(a != NULL && b != NULL);
  cm_close(a);
  cm_close(a);
  ASSERT(a->is_closing);
  ASSERT(strcmp(t.text, "O1 O2 ") == 0); /* nothing fired yet */
  cm_mgr_poll(&mgr, 0);                  /* closed at the start of the next poll */
  ASSERT(strcmp(t.text, "O1 O2 C1 P2 ") == 0);
  ASSERT_EQ(mgr.nconns, 1u);
  t.text[0] = '\0';
  cm_mgr_free(&mgr); /* POLL then CLOSE for every connection */
  ASSERT(strcmp(t.text, "P2 C2 ") == 0);
}

/* A handler that closes *another* connection while the loop walks them. */
static struct cm_conn *victim;
static void closer(struct cm_conn *c, int ev, void *ev_data) {
  (void) c;
  (void) ev_data;
  if (ev == CM_EV_POLL && victim != NULL) {
    cm_close(victim);
    victim = NULL;
  }
}

static void test_close_other_from_handler(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  victim = cm_listen(&mgr, "tcp://127.0.0.1:0", NULL, NULL);
  ASSERT(cm_listen(&mgr, "tcp://127.0.0.1:0", closer, NULL) != NULL);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(mgr.nconns, 1u);
  cm_mgr_free(&mgr);
}

static int polls[3];
static struct cm_conn *trio[3];
/* Each POLL switches the *next* connection off: the walk must survive. */
static void switcher(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev != CM_EV_POLL) return;
  for (int i = 0; i < 3; i++) {
    if (trio[i] == c) {
      polls[i]++;
      if (i > 0) cm_conn_set_poll(trio[i - 1], false);
    }
  }
}

static void test_poll_opt_out(void) {
  struct cm_mgr mgr;
  ASSERT(cm_mgr_init(&mgr) == 0);
  for (int i = 0; i < 3; i++) trio[i] = cm_listen(&mgr, "tcp://127.0.0.1:0", switcher, NULL);
  /* Walk order is newest first: trio[2] switches trio[1] off before its
   * turn, trio[0] is switched off by trio[1]... which no longer runs. */
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(polls[2], 1);
  ASSERT_EQ(polls[1], 0);
  ASSERT_EQ(polls[0], 1);
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(polls[2], 2);
  ASSERT_EQ(polls[1], 0);
  ASSERT_EQ(polls[0], 2);
  cm_conn_set_poll(trio[1], true);
  cm_conn_set_poll(trio[1], true); /* idempotent: linked once */
  cm_mgr_poll(&mgr, 0);
  ASSERT_EQ(polls[1], 1);
  ASSERT_EQ(polls[0], 2); /* trio[1] switched it off this time */
  int linked = 0;
  for (struct cm_conn *c = mgr.pollers; c != NULL; c = c->next_poller) linked++;
  ASSERT_EQ(linked, 2); /* trio[0] was unlinked by the walk */
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_sleeps_without_sockets);
  RUN(test_sleep_hook_only_around_waits);
  RUN(test_not_reentrant);
  RUN(test_close_is_deferred);
  RUN(test_close_other_from_handler);
  RUN(test_poll_opt_out);
  return cm_test_done();
}
