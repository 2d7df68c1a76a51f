/* mqtt_deliver.c: how a message goes through the broker: kept as retained,
 * matched against the topic tree, and delivered to each session reached,
 * at once (connected, room in flight) or queued (cm/mqtt_broker.h).  The
 * packets a broker connection sends pass through cm__mqtt_out(), the one
 * place that knows whether the client is on TCP or inside WebSocket. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SESSION_OF(sub) \
  ((struct cm_mqtt_session *) (void *) ((char *) (sub) -offsetof(struct cm_mqtt_session, subscriber)))

/* ---- sending ------------------------------------------------------------------------ */

bool cm__mqtt_out(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  struct cm_conn *c = bc->c;
  if (c->is_closing) return false;
  int version = bc->version == CM_MQTT_V5 ? CM_MQTT_V5 : CM_MQTT_V311;
  if (!bc->ws) {
    if (cm_mqtt_write(&c->send, m, version) != 0) return false;
    cm__touch(c);
    return true;
  }
  return cm__mqtt_ws_out(bc, m, version);
}

/* Bytes of the PUBLISH of `m` with `props_len` property bytes. */
static size_t publish_size(const struct cm_mqtt_stored *m, int qos, bool v5) {
  size_t body = 2 + m->topic_len + (qos > 0 ? 2 : 0) + m->data_len;
  if (v5) {
    char tmp[4];
    body += cm_mqtt_varint_encode(m->props_len, tmp) + m->props_len;
  }
  char tmp[4];
  size_t ll = cm_mqtt_varint_encode((uint32_t) (body > CM_MQTT_MAX_REMAINING ? 0 : body), tmp);
  return 1 + ll + body;
}

/* One PUBLISH of stored message `m` to `bc`.  False if it could not be
 * queued for sending (closing, buffer cap, larger than the client takes). */
static bool send_publish(struct cm_mqtt_bconn *bc, const struct cm_mqtt_stored *m, int qos, uint16_t pid,
                         bool retain, bool dup) {
  bool v5 = bc->version == CM_MQTT_V5;
  if (bc->max_out > 0 && publish_size(m, qos, v5) > bc->max_out) return false; /* MQTT 5 §3.1.2.11.4 */
  struct cm_mqtt_msg p = {
      .cmd = CM_MQTT_PUBLISH, .qos = (uint8_t) qos, .id = pid, .retain = retain, .dup = dup};
  p.topic = cm_str_n(m->topic, m->topic_len);
  p.data = cm_str_n((const char *) m->data, m->data_len);
  if (v5) p.props = cm_str_n((const char *) m->props, m->props_len);
  if (!cm__mqtt_out(bc, &p)) return false;
  bc->broker->stats.msgs_out++;
  return true;
}

static void send_pubrel(struct cm_mqtt_bconn *bc, uint16_t pid) {
  struct cm_mqtt_msg p = {.cmd = CM_MQTT_PUBREL, .id = pid};
  cm__mqtt_out(bc, &p);
}

void cm__mqtt_pump(struct cm_mqtt_bconn *bc) {
  struct cm_mqtt_session *s = bc->s;
  struct cm_mqtt_qentry *e;
  if (s == NULL || bc->c->is_closing) return;
  while ((e = cm_mqtt_session_next(s)) != NULL) {
    /* Not sent (too large for this client): it stays in flight and is
     * retried on the next connection, where the limit may differ. */
    send_publish(bc, e->msg, e->qos, e->pid, e->retain, false);
  }
}

void cm__mqtt_resend(struct cm_mqtt_bconn *bc) {
  /* MQTT 3.1.1 §4.4: on a resumed session, unacknowledged PUBLISH packets
   * go again with DUP set, PUBREL packets as they were, in the order sent. */
  for (struct cm_mqtt_qentry *e = bc->s->inflight.head; e != NULL; e = e->next) {
    if (e->state == CM_MQTT_Q_RELEASED) send_pubrel(bc, e->pid);
    else
      send_publish(bc, e->msg, e->qos, e->pid, e->retain, true);
  }
  cm__mqtt_pump(bc);
}

/* Hand `m` to session `s` at `qos` with RETAIN flag `retain`. */
static void deliver(struct cm_mqtt_broker *b, struct cm_mqtt_session *s, struct cm_mqtt_stored *m, int qos,
                    bool retain) {
  struct cm_mqtt_bconn *bc = s->owner;
  if (qos == 0) {
    /* QoS 0 is never queued (mosquitto's default too): sent now if the
     * client is connected and keeping up, else dropped and counted. */
    if (bc == NULL || bc->c->send.len > b->opts.max_send || !send_publish(bc, m, 0, 0, retain, false)) {
      b->stats.dropped++;
    }
    return;
  }
  if (s->persistent) b->dirty = true;
  uint64_t before = b->store.dropped;
  cm_mqtt_session_enqueue(&b->store, s, m, qos, retain);
  b->stats.dropped += b->store.dropped - before;
  if (bc != NULL) cm__mqtt_pump(bc);
}

/* ---- routing ------------------------------------------------------------------------- */

void cm__mqtt_route(struct cm_mqtt_broker *b, struct cm_mqtt_stored *m,
                    const struct cm_mqtt_subscriber *from) {
  struct cm_str topic = cm_str_n(m->topic, m->topic_len);
  if (m->retain) { /* §3.3.1.3: kept (or, empty, deleted) for future subscribers */
    cm_mqtt_tree_retain(b->store.tree, topic, m);
    b->dirty = true;
  }
  const struct cm_mqtt_match *res;
  long n = cm_mqtt_tree_match(b->store.tree, topic, from, &res);
  for (long i = 0; i < n; i++) {
    int qos = res[i].qos < m->qos ? res[i].qos : m->qos;
    /* §3.3.1.3: forwarded with RETAIN 0, unless Retain As Published. */
    deliver(b, SESSION_OF(res[i].owner), m, qos, res[i].rap && m->retain);
  }
}

/* Is this property forwarded to subscribers?  A Topic Alias is the
 * sender's connection's own (§3.3.2.3.4); Subscription Identifiers are
 * the receiver's (§3.3.4); a will's delay is not a PUBLISH property. */
static bool forwarded(uint8_t id) {
  return id != CM_MQTT_PROP_TOPIC_ALIAS && id != CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER &&
         id != CM_MQTT_PROP_WILL_DELAY_INTERVAL;
}

struct cm_mqtt_stored *cm__mqtt_stored_from(struct cm_str topic, struct cm_str data, struct cm_str props,
                                            int qos, bool retain) {
  /* Usually every property is forwarded and the block is used as is;
   * otherwise the kept ones are copied into a block of their own. */
  struct cm_mqtt_prop p;
  bool all = true;
  for (size_t ofs = 0; all && (ofs = cm_mqtt_next_prop(props, ofs, &p)) != 0;) all = forwarded(p.id);
  if (all) return cm_mqtt_stored_new(topic, data, props, qos, retain);
  char *kept = malloc(props.len);
  if (kept == NULL) return NULL;
  size_t n = 0;
  for (size_t ofs = 0, next; (next = cm_mqtt_next_prop(props, ofs, &p)) != 0; ofs = next) {
    if (!forwarded(p.id)) continue;
    memcpy(kept + n, props.buf + ofs, next - ofs);
    n += next - ofs;
  }
  struct cm_mqtt_stored *m = cm_mqtt_stored_new(topic, data, cm_str_n(kept, n), qos, retain);
  free(kept);
  return m;
}

/* ---- retained messages on SUBSCRIBE --------------------------------------------------- */

struct retained_walk {
  struct cm_mqtt_broker *b;
  struct cm_mqtt_session *s;
  int qos;
};

static bool send_retained(struct cm_mqtt_stored *m, void *arg) {
  struct retained_walk *w = arg;
  int qos = m->qos < w->qos ? m->qos : w->qos;
  deliver(w->b, w->s, m, qos, true); /* §3.3.1.3: RETAIN 1 when sent for a new subscription */
  return true;
}

void cm__mqtt_send_retained(struct cm_mqtt_bconn *bc, struct cm_str filter, int qos) {
  struct retained_walk w = {bc->broker, bc->s, qos};
  cm_mqtt_tree_retained(bc->broker->store.tree, filter, false, send_retained, &w);
}

int cm_mqtt_broker_publish(struct cm_mqtt_broker *b, struct cm_str topic, struct cm_str data, int qos,
                           bool retain) {
  if (!cm_mqtt_topic_valid(topic) || qos < 0 || qos > 2) return -CM_EINVAL;
  struct cm_mqtt_stored *m = cm_mqtt_stored_new(topic, data, cm_str_n(NULL, 0), qos, retain);
  if (m == NULL) return -CM_ENOMEM;
  b->stats.msgs_in++;
  cm__mqtt_route(b, m, NULL);
  cm_mqtt_stored_release(m);
  return 0;
}
