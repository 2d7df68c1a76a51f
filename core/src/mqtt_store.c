/* mqtt_store.c: what the broker keeps between packets: stored messages
 * (one copy, reference counted), sessions by client id with their
 * subscriptions, and each session's bounded queues (cm/mqtt_broker.h).
 *
 * A PUBLISH is stored once; each session it reaches at QoS 1/2 gets a
 * small queue entry holding a reference, the way mosquitto shares one
 * stored message among its clients. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_INFLIGHT 20 /* mosquitto's max_inflight_messages */
#define DEFAULT_QUEUED 1000 /* mosquitto's max_queued_messages */

/* ---- stored messages ---------------------------------------------------------- */

struct cm_mqtt_stored *cm_mqtt_stored_new(struct cm_str topic, struct cm_str data, struct cm_str props,
                                          int qos, bool retain) {
  if (topic.len > 65535 || props.len > UINT32_MAX) return NULL;
  if (data.len > SIZE_MAX - sizeof(struct cm_mqtt_stored) - topic.len - props.len) return NULL;
  struct cm_mqtt_stored *m = malloc(sizeof(*m) + topic.len + props.len + data.len);
  if (m == NULL) return NULL;
  char *p = (char *) (m + 1);
  *m = (struct cm_mqtt_stored){.refs = 1,
                               .qos = (uint8_t) qos,
                               .retain = retain,
                               .topic_len = (uint16_t) topic.len,
                               .props_len = (uint32_t) props.len,
                               .data_len = data.len};
  m->topic = p;
  if (topic.len > 0) memcpy(p, topic.buf, topic.len);
  p += topic.len;
  m->props = (const uint8_t *) p;
  if (props.len > 0) memcpy(p, props.buf, props.len);
  p += props.len;
  m->data = (const uint8_t *) p;
  if (data.len > 0) memcpy(p, data.buf, data.len);
  return m;
}

struct cm_mqtt_stored *cm_mqtt_stored_hold(struct cm_mqtt_stored *m) {
  m->refs++;
  return m;
}

void cm_mqtt_stored_release(struct cm_mqtt_stored *m) {
  if (m != NULL && --m->refs == 0) free(m);
}

/* ---- queues -------------------------------------------------------------------- */

void cm_mqtt_queue_push(struct cm_mqtt_queue *q, struct cm_mqtt_qentry *e) {
  e->next = NULL;
  if (q->tail != NULL) q->tail->next = e;
  else
    q->head = e;
  q->tail = e;
  q->len++;
}

static struct cm_mqtt_qentry *q_pop(struct cm_mqtt_queue *q) {
  struct cm_mqtt_qentry *e = q->head;
  if (e == NULL) return NULL;
  q->head = e->next;
  if (q->head == NULL) q->tail = NULL;
  q->len--;
  e->next = NULL;
  return e;
}

/* Unlink `e`, whose predecessor is `prev` (NULL: it is the head). */
static void q_unlink(struct cm_mqtt_queue *q, struct cm_mqtt_qentry *prev, struct cm_mqtt_qentry *e) {
  if (prev != NULL) prev->next = e->next;
  else
    q->head = e->next;
  if (q->tail == e) q->tail = prev;
  q->len--;
  e->next = NULL;
}

static void entry_free(struct cm_mqtt_qentry *e) {
  cm_mqtt_stored_release(e->msg);
  free(e);
}

static void q_clear(struct cm_mqtt_queue *q) {
  struct cm_mqtt_qentry *e;
  while ((e = q_pop(q)) != NULL) entry_free(e);
}

/* ---- the session hash ----------------------------------------------------------- */

static size_t hash_id(const char *s, size_t len) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a 64 */
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t) s[i]) * 1099511628211ULL;
  return (size_t) (h ^ (h >> 29));
}

static struct cm_mqtt_session **bucket(struct cm_mqtt_store *st, const char *id, size_t len) {
  return &st->buckets[hash_id(id, len) & (st->nbuckets - 1)];
}

/* Double the buckets once sessions outnumber them; on failure keep the
 * old table (longer chains, still correct). */
static void rehash(struct cm_mqtt_store *st) {
  size_t n = st->nbuckets * 2;
  struct cm_mqtt_session **b = calloc(n, sizeof(*b)), **old = st->buckets;
  if (b == NULL) return;
  size_t on = st->nbuckets;
  st->buckets = b;
  st->nbuckets = n;
  for (size_t i = 0; i < on; i++) {
    struct cm_mqtt_session *s = old[i], *next;
    for (; s != NULL; s = next) {
      next = s->hnext;
      struct cm_mqtt_session **slot = bucket(st, s->client_id, s->id_len);
      s->hnext = *slot;
      *slot = s;
    }
  }
  free(old);
}

int cm_mqtt_store_init(struct cm_mqtt_store *st, uint16_t max_inflight, uint32_t max_queued) {
  memset(st, 0, sizeof(*st));
  st->max_inflight = max_inflight > 0 ? max_inflight : DEFAULT_INFLIGHT;
  st->max_queued = max_queued > 0 ? max_queued : DEFAULT_QUEUED;
  st->nbuckets = 64;
  st->buckets = calloc(st->nbuckets, sizeof(*st->buckets));
  st->tree = cm_mqtt_tree_new();
  if (st->buckets == NULL || st->tree == NULL) {
    free(st->buckets);
    cm_mqtt_tree_free(st->tree);
    memset(st, 0, sizeof(*st));
    return -CM_ENOMEM;
  }
  return 0;
}

static void free_one(struct cm_mqtt_session *s, void *arg) { cm_mqtt_session_free(arg, s); }

void cm_mqtt_store_free(struct cm_mqtt_store *st) {
  if (st->buckets != NULL) cm_mqtt_store_each(st, free_one, st);
  free(st->buckets);
  cm_mqtt_tree_free(st->tree);
  memset(st, 0, sizeof(*st));
}

void cm_mqtt_store_each(struct cm_mqtt_store *st, void (*fn)(struct cm_mqtt_session *s, void *arg),
                        void *arg) {
  for (size_t i = 0; i < st->nbuckets; i++) {
    struct cm_mqtt_session *s = st->buckets[i], *next;
    for (; s != NULL; s = next) {
      next = s->hnext; /* fn may free s */
      fn(s, arg);
    }
  }
}

struct cm_mqtt_session *cm_mqtt_session_find(struct cm_mqtt_store *st, struct cm_str id) {
  struct cm_mqtt_session *s = *bucket(st, id.buf, id.len);
  while (s != NULL && !(s->id_len == id.len && memcmp(s->client_id, id.buf, id.len) == 0)) s = s->hnext;
  return s;
}

struct cm_mqtt_session *cm_mqtt_session_new(struct cm_mqtt_store *st, struct cm_str id) {
  if (id.len == 0 || id.len > 65535) return NULL;
  struct cm_mqtt_session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->client_id = malloc(id.len + 1);
  if (s->client_id == NULL) {
    free(s);
    return NULL;
  }
  memcpy(s->client_id, id.buf, id.len);
  s->client_id[id.len] = '\0';
  s->id_len = (uint16_t) id.len;
  s->version = 4;
  s->expiry = UINT32_MAX;
  s->inflight_max = st->max_inflight;
  struct cm_mqtt_session **slot = bucket(st, id.buf, id.len);
  s->hnext = *slot;
  *slot = s;
  if (++st->nsessions > st->nbuckets) rehash(st);
  return s;
}

void cm_mqtt_session_free(struct cm_mqtt_store *st, struct cm_mqtt_session *s) {
  struct cm_mqtt_session **pp = bucket(st, s->client_id, s->id_len);
  while (*pp != s) pp = &(*pp)->hnext;
  *pp = s->hnext;
  st->nsessions--;
  struct cm_mqtt_ssub *sub = s->subs, *next;
  for (; sub != NULL; sub = next) {
    next = sub->next;
    cm_mqtt_tree_del(st->tree, &sub->link);
    free(sub);
  }
  cm_mqtt_session_clear(s);
  free(s->rx);
  free(s->client_id);
  free(s);
}

/* ---- subscriptions ---------------------------------------------------------------- */

struct cm_mqtt_ssub *cm_mqtt_session_sub_find(struct cm_mqtt_session *s, struct cm_str filter) {
  struct cm_mqtt_ssub *sub = s->subs;
  while (sub != NULL && !(sub->len == filter.len && memcmp(sub->filter, filter.buf, filter.len) == 0)) {
    sub = sub->next;
  }
  return sub;
}

int cm_mqtt_session_sub(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_str filter,
                        uint8_t opts) {
  struct cm_mqtt_ssub *sub = cm_mqtt_session_sub_find(s, filter);
  if (sub != NULL) { /* 3.8.4: replaces the existing one, same filter */
    sub->link.opts = opts;
    return 0;
  }
  if (filter.len > 65535) return -CM_EINVAL;
  sub = calloc(1, sizeof(*sub) + filter.len);
  if (sub == NULL) return -CM_ENOMEM;
  memcpy(sub->filter, filter.buf, filter.len);
  sub->len = (uint16_t) filter.len;
  sub->link.owner = &s->subscriber;
  sub->link.opts = opts;
  if (cm_mqtt_tree_add(st->tree, filter, &sub->link) != 0) {
    free(sub);
    return -CM_ENOMEM;
  }
  sub->next = s->subs;
  s->subs = sub;
  s->nsubs++;
  return 1;
}

bool cm_mqtt_session_unsub(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_str filter) {
  for (struct cm_mqtt_ssub **pp = &s->subs; *pp != NULL; pp = &(*pp)->next) {
    struct cm_mqtt_ssub *sub = *pp;
    if (sub->len != filter.len || memcmp(sub->filter, filter.buf, filter.len) != 0) continue;
    *pp = sub->next;
    cm_mqtt_tree_del(st->tree, &sub->link);
    free(sub);
    s->nsubs--;
    return true;
  }
  return false;
}

/* ---- deliveries --------------------------------------------------------------------- */

int cm_mqtt_session_enqueue(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_mqtt_stored *m,
                            int qos, bool retain) {
  struct cm_mqtt_qentry *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    s->dropped++;
    st->dropped++;
    return -CM_ENOMEM;
  }
  e->msg = cm_mqtt_stored_hold(m);
  e->qos = (uint8_t) qos;
  e->retain = retain;
  e->state = CM_MQTT_Q_QUEUED;
  cm_mqtt_queue_push(&s->queued, e);
  /* Bounded: a subscriber that never reads cannot hold the broker's memory
   * hostage; the oldest waiting delivery goes, as in mosquitto. */
  while (s->queued.len > st->max_queued) {
    entry_free(q_pop(&s->queued));
    s->dropped++;
    st->dropped++;
  }
  return 0;
}

static bool pid_in_flight(const struct cm_mqtt_session *s, uint16_t pid) {
  for (const struct cm_mqtt_qentry *e = s->inflight.head; e != NULL; e = e->next) {
    if (e->pid == pid) return true;
  }
  return false;
}

/* The next packet id not in flight (section 2.3.1: an id is free again once
 * its exchange is complete).  The flight is at most 65535 long, so one is
 * always free. */
static uint16_t next_pid(struct cm_mqtt_session *s) {
  do {
    s->next_pid = (uint16_t) (s->next_pid + 1);
  } while (s->next_pid == 0 || pid_in_flight(s, s->next_pid));
  return s->next_pid;
}

struct cm_mqtt_qentry *cm_mqtt_session_next(struct cm_mqtt_session *s) {
  uint32_t room = s->inflight_max > 0 ? s->inflight_max : DEFAULT_INFLIGHT;
  if (s->queued.head == NULL || s->inflight.len >= room) return NULL;
  struct cm_mqtt_qentry *e = q_pop(&s->queued);
  e->pid = next_pid(s);
  e->state = CM_MQTT_Q_PUBLISHED;
  cm_mqtt_queue_push(&s->inflight, e);
  return e;
}

struct cm_mqtt_qentry *cm_mqtt_session_inflight(struct cm_mqtt_session *s, uint16_t pid) {
  struct cm_mqtt_qentry *e = s->inflight.head;
  while (e != NULL && e->pid != pid) e = e->next;
  return e;
}

bool cm_mqtt_session_ack(struct cm_mqtt_session *s, uint16_t pid, int cmd) {
  struct cm_mqtt_qentry *prev = NULL, *e = s->inflight.head;
  while (e != NULL && e->pid != pid) {
    prev = e;
    e = e->next;
  }
  if (e == NULL) return false;
  bool done = (cmd == 4 && e->qos == 1 && e->state == CM_MQTT_Q_PUBLISHED) ||
              (cmd == 7 && e->state == CM_MQTT_Q_RELEASED);
  if (cmd == 5 && e->qos == 2 && e->state == CM_MQTT_Q_PUBLISHED) {
    /* 4.3.3: after PUBREC the message itself is no longer needed, only its
     * id until PUBCOMP. */
    cm_mqtt_stored_release(e->msg);
    e->msg = NULL;
    e->state = CM_MQTT_Q_RELEASED;
    return true;
  }
  if (!done) return false;
  q_unlink(&s->inflight, prev, e);
  entry_free(e);
  return true;
}

void cm_mqtt_session_clear(struct cm_mqtt_session *s) {
  q_clear(&s->inflight);
  q_clear(&s->queued);
  s->nrx = 0;
}

/* ---- incoming QoS 2 ----------------------------------------------------------------- */

int cm_mqtt_session_rx_add(struct cm_mqtt_session *s, uint16_t pid) {
  for (uint32_t i = 0; i < s->nrx; i++) {
    if (s->rx[i] == pid) return 0;
  }
  if (s->nrx == s->rxcap) {
    if (s->rxcap >= 65535) return -CM_EFULL;
    uint32_t cap = s->rxcap == 0 ? 8 : s->rxcap * 2;
    if (cap > 65535) cap = 65535;
    uint16_t *rx = realloc(s->rx, cap * sizeof(*rx));
    if (rx == NULL) return -CM_ENOMEM;
    s->rx = rx;
    s->rxcap = cap;
  }
  s->rx[s->nrx++] = pid;
  return 1;
}

bool cm_mqtt_session_rx_del(struct cm_mqtt_session *s, uint16_t pid) {
  for (uint32_t i = 0; i < s->nrx; i++) {
    if (s->rx[i] != pid) continue;
    s->rx[i] = s->rx[--s->nrx];
    return true;
  }
  return false;
}
