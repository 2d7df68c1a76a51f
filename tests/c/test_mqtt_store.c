/* test_mqtt_store.c: stored messages, sessions and their bounded queues
 * (mqtt_store.c). */
#include "internal.h"
#include "test.h"

static struct cm_str S(const char *s) {
  return cm_str_c(s);
}

static struct cm_mqtt_stored *
msg(const char *topic, const char *data, int qos) {
  struct cm_mqtt_stored *m = cm_mqtt_stored_new(S(topic), S(data), S(""), qos, false);
  ASSERT(m != NULL);
  return m;
}

static void test_stored(void) {
  struct cm_mqtt_stored *m =
      cm_mqtt_stored_new(S("t/x"), cm_str_n("a\0b", 3), cm_str_n("\x01\x01", 2), 2, true);
  ASSERT(m != NULL);
  ASSERT_EQ(m->refs, 1);
  ASSERT(m->topic_len == 3 && memcmp(m->topic, "t/x", 3) == 0);
  ASSERT(m->data_len == 3 && memcmp(m->data, "a\0b", 3) == 0); /* binary-safe */
  ASSERT(m->props_len == 2 && m->props[0] == 1);
  ASSERT(m->qos == 2 && m->retain);
  ASSERT(cm_mqtt_stored_hold(m) == m);
  ASSERT_EQ(m->refs, 2);
  cm_mqtt_stored_release(m);
  cm_mqtt_stored_release(m);
  cm_mqtt_stored_release(NULL);
  char big[70000];
  memset(big, 'a', sizeof(big));
  ASSERT(cm_mqtt_stored_new(cm_str_n(big, sizeof(big)), S(""), S(""), 0, false) == NULL);
}

static void test_sessions(void) {
  struct cm_mqtt_store st;
  ASSERT_EQ(cm_mqtt_store_init(&st, 0, 0), 0);
  ASSERT_EQ(st.max_inflight, 20);
  ASSERT_EQ(st.max_queued, 1000);
  ASSERT(cm_mqtt_session_find(&st, S("c1")) == NULL);
  ASSERT(cm_mqtt_session_new(&st, S("")) == NULL);
  /* Enough sessions to rehash a few times. */
  char id[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof(id), "client-%d", i);
    struct cm_mqtt_session *s = cm_mqtt_session_new(&st, S(id));
    ASSERT(s != NULL);
    ASSERT_EQ(strcmp(s->client_id, id), 0);
  }
  ASSERT_EQ(st.nsessions, 1000);
  for (int i = 0; i < 1000; i += 2) {
    snprintf(id, sizeof(id), "client-%d", i);
    struct cm_mqtt_session *s = cm_mqtt_session_find(&st, S(id));
    ASSERT(s != NULL && strcmp(s->client_id, id) == 0);
    cm_mqtt_session_free(&st, s);
  }
  ASSERT_EQ(st.nsessions, 500);
  for (int i = 0; i < 1000; i++) {
    snprintf(id, sizeof(id), "client-%d", i);
    ASSERT((cm_mqtt_session_find(&st, S(id)) != NULL) == (i % 2 == 1));
  }
  cm_mqtt_store_free(&st); /* frees the other 500 */
}

static void test_subscriptions(void) {
  struct cm_mqtt_store st;
  ASSERT_EQ(cm_mqtt_store_init(&st, 0, 0), 0);
  struct cm_mqtt_session *a = cm_mqtt_session_new(&st, S("a"));
  struct cm_mqtt_session *b = cm_mqtt_session_new(&st, S("b"));
  ASSERT_EQ(cm_mqtt_session_sub(&st, a, S("x/+"), 1), 1);
  ASSERT_EQ(cm_mqtt_session_sub(&st, a, S("x/+"), 2), 0); /* replaced, not doubled */
  ASSERT_EQ(a->nsubs, 1);
  ASSERT_EQ(cm_mqtt_session_sub(&st, a, S("x/y"), 0), 1);
  ASSERT_EQ(cm_mqtt_session_sub(&st, b, S("#"), 1), 1);
  ASSERT_EQ(cm_mqtt_tree_nsubs(st.tree), 3);
  const struct cm_mqtt_match *m;
  long n = cm_mqtt_tree_match(st.tree, S("x/y"), NULL, &m);
  ASSERT_EQ(n, 2);
  for (long i = 0; i < n; i++) {
    if (m[i].owner == &a->subscriber) ASSERT_EQ(m[i].qos, 2);
    else
      ASSERT(m[i].owner == &b->subscriber && m[i].qos == 1);
  }
  ASSERT(cm_mqtt_session_unsub(&st, a, S("x/+")));
  ASSERT(!cm_mqtt_session_unsub(&st, a, S("x/+")));
  ASSERT(!cm_mqtt_session_unsub(&st, a, S("x")));
  ASSERT(cm_mqtt_session_sub_find(a, S("x/y")) != NULL);
  ASSERT_EQ(a->nsubs, 1);
  n = cm_mqtt_tree_match(st.tree, S("x/z"), NULL, &m);
  ASSERT(n == 1 && m[0].owner == &b->subscriber);
  cm_mqtt_session_free(&st, b); /* its subscription leaves the tree */
  ASSERT_EQ(cm_mqtt_tree_nsubs(st.tree), 1);
  n = cm_mqtt_tree_match(st.tree, S("x/z"), NULL, &m);
  ASSERT_EQ(n, 0);
  cm_mqtt_store_free(&st);
}

static void test_queue_bounds(void) {
  struct cm_mqtt_store st;
  ASSERT_EQ(cm_mqtt_store_init(&st, 3, 5), 0);
  struct cm_mqtt_session *s = cm_mqtt_session_new(&st, S("q"));
  struct cm_mqtt_stored *msgs[10];
  for (int i = 0; i < 10; i++) {
    char data[8];
    snprintf(data, sizeof(data), "%d", i);
    msgs[i] = msg("t", data, 1);
    ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, msgs[i], 1, false), 0);
  }
  /* 10 queued against a limit of 5: the 5 oldest dropped and counted. */
  ASSERT_EQ(s->queued.len, 5);
  ASSERT_EQ(s->dropped, 5);
  ASSERT_EQ(st.dropped, 5);
  for (int i = 0; i < 5; i++) ASSERT_EQ(msgs[i]->refs, 1);  /* the queue let go */
  for (int i = 5; i < 10; i++) ASSERT_EQ(msgs[i]->refs, 2); /* shared, not copied */
  /* Three go in flight (the limit), in order, with ids 1, 2, 3. */
  struct cm_mqtt_qentry *e;
  for (int i = 0; i < 3; i++) {
    e = cm_mqtt_session_next(s);
    ASSERT(e != NULL && e->msg == msgs[5 + i] && e->pid == i + 1 && e->state == CM_MQTT_Q_PUBLISHED);
  }
  ASSERT(cm_mqtt_session_next(s) == NULL);
  ASSERT_EQ(s->inflight.len, 3);
  /* In-flight deliveries are never the ones dropped. */
  for (int i = 0; i < 4; i++) ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, msgs[0], 1, false), 0);
  ASSERT_EQ(s->queued.len, 5);
  ASSERT_EQ(s->inflight.len, 3);
  ASSERT_EQ(s->dropped, 6);
  ASSERT(cm_mqtt_session_inflight(s, 2) != NULL);
  ASSERT(!cm_mqtt_session_ack(s, 9, 4)); /* unknown id */
  ASSERT(!cm_mqtt_session_ack(s, 2, 7)); /* PUBCOMP for a QoS 1 */
  ASSERT(cm_mqtt_session_ack(s, 2, 4));  /* out of order is fine */
  ASSERT(!cm_mqtt_session_ack(s, 2, 4)); /* once */
  e = cm_mqtt_session_next(s);
  ASSERT(e != NULL && e->pid == 4);
  ASSERT(cm_mqtt_session_ack(s, 1, 4));
  e = cm_mqtt_session_next(s);
  ASSERT(e != NULL && e->pid == 5);
  cm_mqtt_session_clear(s);
  ASSERT(s->inflight.len == 0 && s->queued.len == 0);
  for (int i = 0; i < 10; i++) {
    ASSERT_EQ(msgs[i]->refs, 1);
    cm_mqtt_stored_release(msgs[i]);
  }
  cm_mqtt_store_free(&st);
}

static void test_qos2_and_pids(void) {
  struct cm_mqtt_store st;
  ASSERT_EQ(cm_mqtt_store_init(&st, 2, 10), 0);
  struct cm_mqtt_session *s = cm_mqtt_session_new(&st, S("q2"));
  struct cm_mqtt_stored *m = msg("t", "x", 2);
  s->next_pid = 65534; /* wrap: 65535, then 1 (never 0) */
  ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, m, 2, true), 0);
  ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, m, 2, false), 0);
  ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, m, 1, false), 0);
  struct cm_mqtt_qentry *e1 = cm_mqtt_session_next(s), *e2 = cm_mqtt_session_next(s);
  ASSERT(e1->pid == 65535 && e2->pid == 1);
  ASSERT(e1->retain && !e2->retain);
  ASSERT(!cm_mqtt_session_ack(s, 65535, 4)); /* PUBACK for a QoS 2 */
  ASSERT(!cm_mqtt_session_ack(s, 65535, 7)); /* PUBCOMP before PUBREC */
  ASSERT(cm_mqtt_session_ack(s, 65535, 5));
  ASSERT(e1->state == CM_MQTT_Q_RELEASED && e1->msg == NULL);
  ASSERT(!cm_mqtt_session_ack(s, 65535, 5)); /* PUBREC again: not in PUBLISHED */
  ASSERT(cm_mqtt_session_next(s) == NULL);   /* still in flight until PUBCOMP */
  ASSERT(cm_mqtt_session_ack(s, 65535, 7));
  struct cm_mqtt_qentry *e3 = cm_mqtt_session_next(s);
  ASSERT(e3 != NULL && e3->pid == 2 && e3->qos == 1);
  /* An id still in flight is skipped when the counter comes round. */
  ASSERT(cm_mqtt_session_ack(s, 2, 4));
  s->next_pid = 0;
  ASSERT_EQ(cm_mqtt_session_enqueue(&st, s, m, 1, false), 0);
  struct cm_mqtt_qentry *e4 = cm_mqtt_session_next(s);
  ASSERT_EQ(e4->pid, 2); /* 1 is e2's */
  /* Received QoS 2 ids. */
  ASSERT_EQ(cm_mqtt_session_rx_add(s, 7), 1);
  ASSERT_EQ(cm_mqtt_session_rx_add(s, 7), 0);
  for (int i = 100; i < 200; i++) ASSERT_EQ(cm_mqtt_session_rx_add(s, (uint16_t) i), 1);
  ASSERT(cm_mqtt_session_rx_del(s, 7));
  ASSERT(!cm_mqtt_session_rx_del(s, 7));
  ASSERT(cm_mqtt_session_rx_del(s, 150));
  ASSERT_EQ(cm_mqtt_session_rx_add(s, 199), 0);
  ASSERT_EQ(s->nrx, 99);
  cm_mqtt_stored_release(m);
  cm_mqtt_store_free(&st); /* frees in-flight entries and their references */
}

int main(void) {
  RUN(test_stored);
  RUN(test_sessions);
  RUN(test_subscriptions);
  RUN(test_queue_bounds);
  RUN(test_qos2_and_pids);
  return cm_test_done();
}
