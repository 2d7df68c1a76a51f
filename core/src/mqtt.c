/* mqtt.c: the MQTT client and raw-listener protocol handler (cm/mqtt.h),
 * on top of the pure codec (mqtt_codec.c).
 *
 * It runs as c->pfn, before the user handler: on every CM_EV_READ it cuts
 * c->recv into whole packets, answers what the standard makes automatic
 * (the QoS 1 and 2 acknowledgements of §4.3) and fires the typed events;
 * each packet is consumed after its events return, so their slices stay
 * valid during them. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Per-connection protocol state (c->pfn_data). */
struct mqtt_state {
  uint8_t version; /* packets on this connection are parsed and written as this level */
};

static struct mqtt_state *state_of(const struct cm_conn *c) {
  return c->pfn == cm_mqtt_handler ? c->pfn_data : NULL;
}

int cm_mqtt_version(const struct cm_conn *c) {
  const struct mqtt_state *st = state_of(c);
  return st != NULL ? st->version : CM_MQTT_V311;
}

static struct mqtt_state *new_state(struct cm_conn *c) {
  struct mqtt_state *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->version = CM_MQTT_V311;
  c->pfn_data = st;
  return st;
}

/* ---- sending ---------------------------------------------------------- */

bool cm_mqtt_send(struct cm_conn *c, const struct cm_mqtt_msg *m) {
  int version = cm_mqtt_version(c);
  char small[512];
  long n = cm_mqtt_encode(m, version, small, sizeof(small));
  if (n < 0) return false;
  if ((size_t) n <= sizeof(small)) return cm_send(c, small, (size_t) n);
  /* Encoded straight into c->send would save a copy, but cm_send() is
   * the one door to the socket (UDP, closing, and what sits below it). */
  char *big = malloc((size_t) n);
  if (big == NULL) return false;
  cm_mqtt_encode(m, version, big, (size_t) n);
  bool ok = cm_send(c, big, (size_t) n);
  free(big);
  return ok;
}

uint16_t cm_mqtt_next_id(struct cm_mgr *mgr) {
  if (++mgr->mqtt_id == 0) mgr->mqtt_id = 1; /* 0 is not a packet id (§2.2.1) */
  return mgr->mqtt_id;
}

/* Send `m` with a fresh packet id, reported through *id. */
static bool send_with_id(struct cm_conn *c, struct cm_mqtt_msg *m, uint16_t *id) {
  if (id != NULL) *id = 0;
  if (c->is_closing) return false;
  m->id = m->cmd == CM_MQTT_PUBLISH && m->qos == 0 ? 0 : cm_mqtt_next_id(c->mgr);
  if (!cm_mqtt_send(c, m)) return false;
  if (id != NULL) *id = m->id;
  return true;
}

bool cm_mqtt_pub(struct cm_conn *c, struct cm_str topic, struct cm_str data, int qos, bool retain,
                 struct cm_str props, uint16_t *id) {
  struct cm_mqtt_msg m = {
      .cmd = CM_MQTT_PUBLISH, .topic = topic, .data = data, .retain = retain, .props = props};
  if (qos < 0 || qos > 2) {
    if (id != NULL) *id = 0;
    return false;
  }
  m.qos = (uint8_t) qos;
  return send_with_id(c, &m, id);
}

bool cm_mqtt_sub(struct cm_conn *c, struct cm_str topic, int qos, struct cm_str props, uint16_t *id) {
  struct cm_mqtt_sub sub = {.topic = topic, .qos = (uint8_t) qos};
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_SUBSCRIBE, .subs = &sub, .num_subs = 1, .props = props};
  if (qos < 0 || qos > 2) {
    if (id != NULL) *id = 0;
    return false;
  }
  return send_with_id(c, &m, id);
}

bool cm_mqtt_unsub(struct cm_conn *c, struct cm_str topic, struct cm_str props, uint16_t *id) {
  struct cm_mqtt_sub sub = {.topic = topic};
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_UNSUBSCRIBE, .subs = &sub, .num_subs = 1, .props = props};
  return send_with_id(c, &m, id);
}

static bool send_cmd(struct cm_conn *c, uint8_t cmd, uint16_t id) {
  struct cm_mqtt_msg m = {.cmd = cmd, .id = id};
  return cm_mqtt_send(c, &m);
}

bool cm_mqtt_ping(struct cm_conn *c) { return send_cmd(c, CM_MQTT_PINGREQ, 0); }
bool cm_mqtt_pong(struct cm_conn *c) { return send_cmd(c, CM_MQTT_PINGRESP, 0); }
bool cm_mqtt_disconnect(struct cm_conn *c) { return send_cmd(c, CM_MQTT_DISCONNECT, 0); }

/* ---- receiving -------------------------------------------------------- */

/* The protocol's events go to the user handler only (cm_call would hand
 * them back to us first). */
static void fire(struct cm_conn *c, int ev, void *ev_data) {
  if (c->fn != NULL) c->fn(c, ev, ev_data);
}

/* What §4.3 makes automatic, queued before the application sees the
 * packet (it may close the connection from its handler). */
static void acknowledge(struct cm_conn *c, const struct cm_mqtt_msg *m) {
  switch (m->cmd) {
    case CM_MQTT_PUBLISH:
      if (m->qos == 1) send_cmd(c, CM_MQTT_PUBACK, m->id);
      if (m->qos == 2) send_cmd(c, CM_MQTT_PUBREC, m->id);
      break;
    case CM_MQTT_PUBREC: send_cmd(c, CM_MQTT_PUBREL, m->id); break;
    case CM_MQTT_PUBREL: send_cmd(c, CM_MQTT_PUBCOMP, m->id); break;
    default: break;
  }
}

static void deliver(struct cm_conn *c, struct mqtt_state *st, struct cm_mqtt_msg *m) {
  /* An accepted connection speaks the level its client chose (§3.1.2.2). */
  if (m->cmd == CM_MQTT_CONNECT && !c->is_client) st->version = m->version;
  acknowledge(c, m);
  if (m->cmd == CM_MQTT_CONNACK) {
    int ack = m->ack;
    fire(c, CM_EV_MQTT_OPEN, &ack);
  } else if (m->cmd == CM_MQTT_PUBLISH) {
    fire(c, CM_EV_MQTT_MSG, m);
  }
  fire(c, CM_EV_MQTT_CMD, m);
  if (m->cmd == CM_MQTT_CONNACK && m->ack != 0) {
    CM_DEBUG("conn %llu: CONNACK refused the connection (code %d)", (unsigned long long) c->id, m->ack);
    cm_close(c);
  }
}

/* One packet from the front of c->recv: returns whether another may follow. */
static bool next_packet(struct cm_conn *c, struct mqtt_state *st) {
  const char *buf = cm_iobuf_data(&c->recv);
  size_t len = c->recv.len, total = 0;
  struct cm_mqtt_msg m;
  int n = cm_mqtt_peek(buf, len, &total);
  /* A packet that can never fit the receive buffer fails now rather than
   * at the cap, after megabytes of waiting. */
  if (n > 0 && c->recv.cap > 0 && total > c->recv.cap) {
    cm_error(c, "MQTT: packet of %zu bytes over the receive limit", total);
    return false;
  }
  if (n >= 0) n = cm_mqtt_parse(buf, len, st->version, &m);
  if (n == 0) return false;
  if (n < 0) {
    cm_iobuf_consume(&c->recv, c->recv.len); /* the rest of the stream cannot be trusted */
    cm_error(c, "MQTT: %s", cm_mqtt_strerror(n));
    return false;
  }
  deliver(c, st, &m);
  cm_iobuf_consume(&c->recv, (size_t) n);
  return !c->is_closing && c->pfn == cm_mqtt_handler;
}

void cm_mqtt_handler(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (c->is_listening || ev == CM_EV_ERROR) return;
  struct mqtt_state *st = c->pfn_data;
  if (ev == CM_EV_CLOSE) {
    free(st);
    c->pfn_data = NULL;
    return;
  }
  if (st == NULL && (st = new_state(c)) == NULL) {
    cm_error(c, "OOM");
    return;
  }
  if (ev != CM_EV_READ) return;
  while (!c->is_closing && c->recv.len > 0 && next_packet(c, st)) {
  }
}

/* ---- connecting, listening -------------------------------------------- */

/* CONNECT from the options, with `id` (20 bytes) holding a random client
 * id if none is given; false if CONNECT cannot carry them. */
static bool build_connect(const struct cm_mqtt_opts *o, int version, char *id, struct cm_mqtt_msg *m) {
  *m = (struct cm_mqtt_msg){.cmd = CM_MQTT_CONNECT,
                            .clean = o->clean,
                            .keepalive = o->keepalive,
                            .client_id = o->client_id,
                            .props = o->props,
                            .has_username = o->username.len > 0,
                            .username = o->username,
                            .has_password = o->password.len > 0,
                            .password = o->password};
  if (m->client_id.len == 0) {
    if (!cm_random_str(id, 20)) return false;
    m->client_id = cm_str_n(id, 20);
  }
  if (o->will_topic.len > 0) {
    m->has_will = true, m->will_topic = o->will_topic, m->will_data = o->will_message;
    m->will_qos = o->will_qos, m->will_retain = o->will_retain, m->will_props = o->will_props;
  }
  /* [MQTT-3.1.2-22]: before 5, a password needs a user name. */
  if (m->has_password && !m->has_username && version != CM_MQTT_V5) return false;
  return o->will_qos <= 2 && cm_mqtt_encode(m, version, NULL, 0) > 0;
}

struct cm_conn *cm_mqtt_connect(struct cm_mgr *mgr, const char *url, const struct cm_mqtt_opts *opts,
                                cm_handler_fn fn, void *fn_data) {
  bool known = opts->version == CM_MQTT_V31 || opts->version == CM_MQTT_V5;
  int version = known ? opts->version : CM_MQTT_V311;
  char id[20];
  struct cm_mqtt_msg m;
  if (!build_connect(opts, version, id, &m)) return NULL;
  struct cm_conn *c = cm__connect(mgr, url, cm_mqtt_handler, fn, fn_data);
  if (c == NULL || c->is_closing || c->pfn != cm_mqtt_handler) return c;
  struct mqtt_state *st = c->pfn_data != NULL ? c->pfn_data : new_state(c);
  if (st == NULL) {
    cm_error(c, "OOM");
    return c;
  }
  st->version = (uint8_t) version;
  if (!cm_mqtt_send(c, &m)) cm_error(c, "MQTT: CONNECT could not be queued");
  return c;
}

struct cm_conn *cm_mqtt_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__listen(mgr, url, cm_mqtt_handler, fn, fn_data);
}
