/* mqtt_broker.c: the MQTT broker's protocol handler (cm/mqtt_broker.h):
 * CONNECT and sessions, the packets of a connected client, keep-alive,
 * wills, and the broker's life.  Routing and delivery are mqtt_deliver.c's;
 * the bytes of each packet are the codec's (cm/mqtt.h).
 *
 * Section numbers are MQTT 3.1.1's unless marked "5 §" (MQTT 5.0). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_MAX_PACKET (16u << 20)
#define DEFAULT_MAX_SEND (8u << 20)
#define DEFAULT_PERSIST_MS 10000
#define DEFAULT_CONNECT_MS 10000
#define TICK_MS 250 /* keep-alive resolution: a 1.5 x keep-alive deadline is met within this */

/* CONNACK return codes (3.1.1 §3.2.2.3) and their MQTT 5 reason codes. */
enum {
  RC_VERSION = 1,  /* 5: 0x84 Unsupported Protocol Version */
  RC_ID = 2,       /* 5: 0x85 Client Identifier not valid */
  RC_NOT_AUTH = 5, /* 5: 0x87 Not authorized (0x86 Bad User Name or Password) */
};

/* MQTT 5 reason codes used here (5 §2.4). */
enum {
  R5_NO_SUBSCRIPTION = 0x11,
  R5_UNSPECIFIED = 0x80,
  R5_PROTOCOL = 0x82,
  R5_NOT_AUTHORIZED = 0x87,
  R5_TAKEN_OVER = 0x8E,
  R5_KEEPALIVE = 0x8D,
  R5_PID_NOT_FOUND = 0x92,
  R5_TOPIC_ALIAS = 0x94,
  R5_TOO_LARGE = 0x95,
  R5_BAD_AUTH_METHOD = 0x8C,
  R5_SHARED_UNSUPPORTED = 0x9E,
  R5_WITH_WILL = 0x04,
};

static uint64_t now_ms(const struct cm_mqtt_broker *b) { return cm__now(b->mgr); }

struct cm_mqtt_broker *cm_mqtt_broker_of(struct cm_conn *c) {
  if (c == NULL) return NULL;
  if (c->pfn != cm_mqtt_broker_handler) {
    struct cm_mqtt_bconn *bc = cm__mqtt_ws_bconn(c); /* a WebSocket client */
    return bc != NULL ? bc->broker : NULL;
  }
  if (c->is_listening) {
    struct cm_mqtt_blsn *l = c->pfn_data;
    return l != NULL ? l->broker : NULL;
  }
  struct cm_mqtt_bconn *bc = c->pfn_data;
  return bc != NULL ? bc->broker : NULL;
}

/* Close the connection: at once, or with `drain` once what is queued has
 * gone.  A WebSocket client gets a close frame first (RFC 6455 §7.1.2) and
 * always drains. */
static void hang_up(struct cm_mqtt_bconn *bc, bool drain) {
  if (cm__mqtt_ws_close(bc)) return;
  if (drain) cm_drain(bc->c);
  else
    cm_close(bc->c);
}

/* ---- small packets --------------------------------------------------------------------- */

static void send_ack(struct cm_mqtt_bconn *bc, int cmd, uint16_t pid, uint8_t reason) {
  struct cm_mqtt_msg p = {.cmd = (uint8_t) cmd, .id = pid, .ack = reason};
  cm__mqtt_out(bc, &p);
}

/* MQTT 5 closes with a DISCONNECT saying why (5 §4.13); 3.1.1 just closes. */
static void fail(struct cm_mqtt_bconn *bc, uint8_t reason5, const char *why) {
  if (bc->version == CM_MQTT_V5 && bc->connected) {
    struct cm_mqtt_msg p = {.cmd = CM_MQTT_DISCONNECT, .ack = reason5};
    cm__mqtt_out(bc, &p);
    hang_up(bc, true);
  } else {
    hang_up(bc, false);
  }
  CM_DEBUG("conn %llu: MQTT broker: %s", (unsigned long long) bc->c->id, why);
}

/* The CONNACK for a refused CONNECT, then close (§3.2.2.3: "close the
 * Network Connection" after a non-zero code). */
static void refuse(struct cm_mqtt_bconn *bc, int version, uint8_t rc3, uint8_t rc5) {
  struct cm_mqtt_msg p = {.cmd = CM_MQTT_CONNACK, .ack = version == CM_MQTT_V5 ? rc5 : rc3};
  bc->version = (uint8_t) version;
  cm__mqtt_out(bc, &p);
  hang_up(bc, true);
}

/* ---- sessions: connect and disconnect ----------------------------------------------------- */

/* The will goes out as if the client had published it (§3.1.2.5). */
static void publish_will(struct cm_mqtt_bconn *bc) {
  struct cm_mqtt_stored *w = bc->will;
  if (w == NULL) return;
  bc->will = NULL;
  bc->broker->stats.msgs_in++;
  cm__mqtt_route(bc->broker, w, NULL);
  cm_mqtt_stored_release(w);
}

/* `bc` lets go of its session: it stays for a persistent client and goes
 * otherwise (§3.1.2.4). */
static void detach(struct cm_mqtt_bconn *bc, bool will) {
  struct cm_mqtt_broker *b = bc->broker;
  if (will && !bc->graceful) publish_will(bc);
  cm_mqtt_stored_release(bc->will);
  bc->will = NULL;
  struct cm_mqtt_session *s = bc->s;
  if (s == NULL) return;
  bc->s = NULL;
  s->owner = NULL;
  s->offline_since = now_ms(b);
  if (bc->connected) b->stats.clients--;
  bc->connected = false;
  if (!s->persistent || s->expiry == 0) cm_mqtt_session_free(&b->store, s);
  else
    b->dirty = true;
}

/* A second connection with the same client id takes the session over: the
 * first one is closed (§3.1.4, 5 §3.1.4: with DISCONNECT 0x8E). */
static void take_over(struct cm_mqtt_session *s) {
  struct cm_mqtt_bconn *old = s->owner;
  if (old == NULL) return;
  if (old->version == CM_MQTT_V5) {
    struct cm_mqtt_msg p = {.cmd = CM_MQTT_DISCONNECT, .ack = R5_TAKEN_OVER};
    cm__mqtt_out(old, &p);
    hang_up(old, true);
  } else {
    hang_up(old, false);
  }
  old->graceful = false;
  /* Its will is published (5 §3.1.3.2: the network connection of the
   * session ends), but the session stays for the new connection. */
  s->persistent = true;
  s->expiry = UINT32_MAX;
  detach(old, true);
}

/* MQTT 5 CONNECT properties the broker uses. */
struct connect_props {
  uint32_t expiry;      /* Session Expiry Interval (0 if absent) */
  uint16_t receive_max; /* Receive Maximum (65535 if absent) */
  uint32_t max_packet;  /* Maximum Packet Size (0: none) */
  bool has_auth_method; /* enhanced authentication asked for */
};

static struct connect_props read_connect_props(struct cm_str props) {
  struct connect_props cp = {0, 65535, 0, false};
  struct cm_mqtt_prop p;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(props, ofs, &p)) != 0;) {
    if (p.id == CM_MQTT_PROP_SESSION_EXPIRY_INTERVAL) cp.expiry = p.iv;
    if (p.id == CM_MQTT_PROP_RECEIVE_MAXIMUM) cp.receive_max = (uint16_t) p.iv;
    if (p.id == CM_MQTT_PROP_MAXIMUM_PACKET_SIZE) cp.max_packet = p.iv;
    if (p.id == CM_MQTT_PROP_AUTHENTICATION_METHOD) cp.has_auth_method = true;
  }
  return cp;
}

/* A client id for a client that sent none: unique while the broker runs. */
static void assign_id(struct cm_mqtt_broker *b, char *buf, size_t size) {
  char rnd[9] = "";
  cm_random_str(rnd, 8);
  snprintf(buf, size, "auto-%s-%u", rnd, (unsigned) ++b->auto_ids);
}

static bool authorised(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m, struct cm_str id) {
  struct cm_mqtt_broker *b = bc->broker;
  if (b->opts.auth != NULL && !b->opts.auth(b->opts.hook_arg, bc->c, id, m->username, m->has_username,
                                            m->password, m->has_password)) {
    return false;
  }
  /* mosquitto checks the will topic at CONNECT too: a will the client may
   * not publish is refused now, not silently dropped later. */
  return !m->has_will || b->opts.acl == NULL ||
         b->opts.acl(b->opts.hook_arg, bc->c, id, m->username, m->will_topic, true);
}

/* The session for an accepted CONNECT: resumed or new.  NULL: no memory. */
static struct cm_mqtt_session *open_session(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m,
                                            struct cm_str id, const struct connect_props *cp, bool *present) {
  struct cm_mqtt_store *st = &bc->broker->store;
  struct cm_mqtt_session *s = cm_mqtt_session_find(st, id);
  if (s != NULL) take_over(s);
  if (s != NULL && m->clean) { /* §3.1.2.4: discard any existing session */
    cm_mqtt_session_free(st, s);
    s = NULL;
  }
  *present = s != NULL;
  if (s == NULL && (s = cm_mqtt_session_new(st, id)) == NULL) return NULL;
  if (m->version == CM_MQTT_V5) { /* 5 §3.1.2.11.2: kept for this long after the connection */
    s->expiry = cp->expiry;
    s->persistent = cp->expiry > 0;
  } else {
    s->expiry = UINT32_MAX;
    s->persistent = !m->clean;
  }
  s->version = m->version;
  uint16_t room = bc->broker->store.max_inflight;
  s->inflight_max = cp->receive_max < room ? cp->receive_max : room;
  s->owner = bc;
  return s;
}

static bool keep_will(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  if (!m->has_will) return true;
  bc->will = cm__mqtt_stored_from(m->will_topic, m->will_data,
                                  m->version == CM_MQTT_V5 ? m->will_props : cm_str_n(NULL, 0), m->will_qos,
                                  m->will_retain);
  return bc->will != NULL;
}

static bool keep_username(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  if (!m->has_username) return true;
  bc->username = malloc(m->username.len + 1);
  if (bc->username == NULL) return false;
  memcpy(bc->username, m->username.buf, m->username.len);
  bc->username[m->username.len] = '\0';
  bc->username_len = (uint16_t) m->username.len;
  return true;
}

static void send_connack(struct cm_mqtt_bconn *bc, bool present, struct cm_str assigned) {
  struct cm_mqtt_msg p = {.cmd = CM_MQTT_CONNACK, .session_present = present};
  char props[128];
  if (bc->version == CM_MQTT_V5) {
    /* 5 §3.2.2.3: what this broker does not do, said up front. */
    struct cm_mqtt_prop list[4] = {
        {.id = CM_MQTT_PROP_MAXIMUM_PACKET_SIZE, .iv = bc->broker->opts.max_packet},
        {.id = CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE, .iv = 0},
        {.id = CM_MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE, .iv = 0},
        {.id = CM_MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER, .val = assigned},
    };
    long n = cm_mqtt_props_encode(list, assigned.len > 0 ? 4 : 3, props, sizeof(props));
    if (n > 0 && (size_t) n <= sizeof(props)) p.props = cm_str_n(props, (size_t) n);
  }
  cm__mqtt_out(bc, &p);
}

static void on_connect(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  struct cm_mqtt_broker *b = bc->broker;
  struct connect_props cp = read_connect_props(m->props);
  int v = m->version;
  char auto_id[48];
  struct cm_str id = m->client_id, assigned = {NULL, 0};
  if (id.len == 0) {
    /* §3.1.3.1: an empty id needs a clean session; 3.1 forbids it; 5 §3.1.3.1
     * has the server assign one and say which. */
    if (v == CM_MQTT_V31 || (v == CM_MQTT_V311 && !m->clean)) {
      refuse(bc, v, RC_ID, 0x85);
      return;
    }
    assign_id(b, auto_id, sizeof(auto_id));
    id = cm_str_c(auto_id);
    if (v == CM_MQTT_V5) assigned = id;
  }
  if (v == CM_MQTT_V5 && cp.has_auth_method) {
    refuse(bc, v, RC_NOT_AUTH, R5_BAD_AUTH_METHOD);
    return;
  }
  if (!authorised(bc, m, id)) {
    {
      refuse(bc, v, RC_NOT_AUTH, m->has_username || m->has_password ? 0x86 : R5_NOT_AUTHORIZED);
      return;
    }
  }
  bool present = false;
  bc->version = (uint8_t) v;
  if (!keep_will(bc, m) || !keep_username(bc, m) ||
      (bc->s = open_session(bc, m, id, &cp, &present)) == NULL) {
    {
      refuse(bc, v, 3, R5_UNSPECIFIED);
      return;
    } /* 3: Server unavailable */
  }
  bc->connected = true;
  bc->keepalive = m->keepalive;
  bc->max_out = cp.max_packet;
  b->stats.clients++;
  b->stats.connects++;
  if (bc->s->persistent) b->dirty = true;
  send_connack(bc, present, assigned);
  if (present) cm__mqtt_resend(bc);
}

/* ---- the packets of a connected client ----------------------------------------------------- */

static bool acl_ok(struct cm_mqtt_bconn *bc, struct cm_str topic, bool publish) {
  struct cm_mqtt_broker *b = bc->broker;
  if (b->opts.acl == NULL) return true;
  struct cm_str id = cm_str_n(bc->s->client_id, bc->s->id_len);
  struct cm_str user = cm_str_n(bc->username, bc->username_len);
  return b->opts.acl(b->opts.hook_arg, bc->c, id, user, topic, publish);
}

static bool has_prop(struct cm_str props, uint8_t id) {
  struct cm_mqtt_prop p;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(props, ofs, &p)) != 0;) {
    if (p.id == id) return true;
  }
  return false;
}

static void on_publish(struct cm_mqtt_bconn *bc, struct cm_mqtt_msg *m) {
  struct cm_mqtt_broker *b = bc->broker;
  int ack = m->qos == 1 ? CM_MQTT_PUBACK : CM_MQTT_PUBREC;
  /* No Topic Alias Maximum in our CONNACK means 0: none may be used (5 §3.2.2.3.8). */
  if (bc->version == CM_MQTT_V5 && has_prop(m->props, CM_MQTT_PROP_TOPIC_ALIAS)) {
    {
      fail(bc, R5_TOPIC_ALIAS, "topic alias not allowed");
      return;
    }
  }
  b->stats.msgs_in++;
  if (m->qos == 2) { /* §4.3.3 method B: delivered once, the id remembered until PUBREL */
    int rc = cm_mqtt_session_rx_add(bc->s, m->id);
    if (rc < 0) {
      fail(bc, R5_UNSPECIFIED, "too many QoS 2 messages in flight");
      return;
    }
    if (bc->s->persistent) b->dirty = true;
    if (rc == 0) {
      send_ack(bc, CM_MQTT_PUBREC, m->id, 0);
      return;
    } /* a DUP: not again */
  }
  if (!acl_ok(bc, m->topic, true)) {
    /* 3.1.1 has no way to say no: acknowledged and dropped, as mosquitto does. */
    if (m->qos > 0) send_ack(bc, ack, m->id, bc->version == CM_MQTT_V5 ? R5_NOT_AUTHORIZED : 0);
    return;
  }
  struct cm_mqtt_stored *sm = cm__mqtt_stored_from(m->topic, m->data, m->props, m->qos, m->retain);
  if (sm == NULL) {
    fail(bc, R5_UNSPECIFIED, "out of memory");
    return;
  }
  cm__mqtt_route(b, sm, &bc->s->subscriber);
  cm_mqtt_stored_release(sm);
  if (m->qos > 0) send_ack(bc, ack, m->id, 0);
  cm_call(bc->c, CM_EV_MQTT_MSG, m); /* the embedding program sees it pass */
}

static void on_subscribe(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  struct cm_mqtt_broker *b = bc->broker;
  uint8_t codes[256], *rc = codes;
  size_t n = 0, cap = sizeof(codes);
  struct cm_mqtt_sub e;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_sub(m, ofs, &e)) != 0;) n++;
  if (n > cap && (rc = malloc(n)) == NULL) {
    fail(bc, R5_UNSPECIFIED, "out of memory");
    return;
  }
  bool *fresh = calloc(n > 0 ? n : 1, sizeof(*fresh));
  if (fresh == NULL) {
    if (rc != codes) free(rc);
    {
      fail(bc, R5_UNSPECIFIED, "out of memory");
      return;
    }
  }
  size_t i = 0;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_sub(m, ofs, &e)) != 0; i++) {
    bool shared = e.topic.len >= 7 && memcmp(e.topic.buf, "$share/", 7) == 0;
    int r = 0;
    if (shared && bc->version == CM_MQTT_V5) rc[i] = R5_SHARED_UNSUPPORTED;
    else if (!acl_ok(bc, e.topic, false))
      rc[i] = bc->version == CM_MQTT_V5 ? R5_NOT_AUTHORIZED : 0x80; /* §3.9.3: failure */
    else if ((r = cm_mqtt_session_sub(&b->store, bc->s, e.topic, e.opts)) < 0)
      rc[i] = 0x80;
    else
      rc[i] = e.qos;
    fresh[i] = r == 1;
  }
  if (bc->s->persistent) b->dirty = true;
  struct cm_mqtt_msg ack = {.cmd = CM_MQTT_SUBACK, .id = m->id, .data = cm_str_n((const char *) rc, n)};
  cm__mqtt_out(bc, &ack);
  /* §3.3.1.3: retained messages matching each new subscription follow the
   * SUBACK; 5 §3.8.3.1 Retain Handling: 0 always, 1 if new, 2 never. */
  i = 0;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_sub(m, ofs, &e)) != 0; i++) {
    int rh = (e.opts & CM_MQTT_SUB_RH_MASK) >> 4;
    if (rc[i] > 2 || rh == 2 || (rh == 1 && !fresh[i])) continue;
    cm__mqtt_send_retained(bc, e.topic, e.qos);
  }
  free(fresh);
  if (rc != codes) free(rc);
}

static void on_unsubscribe(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  uint8_t codes[256];
  size_t n = 0;
  struct cm_mqtt_sub e;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_sub(m, ofs, &e)) != 0; n++) {
    bool had = cm_mqtt_session_unsub(&bc->broker->store, bc->s, e.topic);
    if (n < sizeof(codes)) codes[n] = had ? 0 : R5_NO_SUBSCRIPTION;
  }
  if (bc->s->persistent) bc->broker->dirty = true;
  /* 5 §3.11.3: one reason code per filter (a longer list says "success"). */
  if (n > sizeof(codes)) memset(codes, 0, sizeof(codes)), n = sizeof(codes);
  struct cm_mqtt_msg ack = {.cmd = CM_MQTT_UNSUBACK, .id = m->id, .data = cm_str_n((const char *) codes, n)};
  cm__mqtt_out(bc, &ack);
}

/* PUBACK, PUBREC, PUBCOMP of our deliveries; PUBREL of the client's QoS 2. */
static void on_ack(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  struct cm_mqtt_session *s = bc->s;
  bool v5 = bc->version == CM_MQTT_V5;
  if (s->persistent) bc->broker->dirty = true;
  switch (m->cmd) {
    case CM_MQTT_PUBREL: {
      bool known = cm_mqtt_session_rx_del(s, m->id);
      send_ack(bc, CM_MQTT_PUBCOMP, m->id, known || !v5 ? 0 : R5_PID_NOT_FOUND);
      return;
    }
    case CM_MQTT_PUBREC: {
      /* 5 §4.3.3: a PUBREC with a failure reason ends the exchange. */
      if (v5 && m->ack >= 0x80) {
        struct cm_mqtt_qentry *e = cm_mqtt_session_inflight(s, m->id);
        if (e != NULL && e->state == CM_MQTT_Q_PUBLISHED) cm_mqtt_session_ack(s, m->id, CM_MQTT_PUBREC);
        cm_mqtt_session_ack(s, m->id, CM_MQTT_PUBCOMP);
        break;
      }
      bool known = cm_mqtt_session_ack(s, m->id, CM_MQTT_PUBREC);
      struct cm_mqtt_qentry *e = known ? NULL : cm_mqtt_session_inflight(s, m->id);
      /* A repeated PUBREC (ours already RELEASED) gets its PUBREL again. */
      bool released = known || (e != NULL && e->state == CM_MQTT_Q_RELEASED);
      send_ack(bc, CM_MQTT_PUBREL, m->id, released || !v5 ? 0 : R5_PID_NOT_FOUND);
      return;
    }
    default: cm_mqtt_session_ack(s, m->id, m->cmd); break;
  }
  cm__mqtt_pump(bc);
}

static void on_disconnect(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m) {
  /* §3.14.4: the will is discarded; 5 §3.14.2.1: unless reason 0x04. */
  bc->graceful = !(bc->version == CM_MQTT_V5 && m->ack == R5_WITH_WILL);
  if (bc->version == CM_MQTT_V5 && bc->s != NULL) {
    struct cm_mqtt_prop p;
    for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(m->props, ofs, &p)) != 0;) {
      /* 5 §3.14.2.2.2: may change the expiry, not from 0 to non-zero. */
      if (p.id == CM_MQTT_PROP_SESSION_EXPIRY_INTERVAL && (bc->s->expiry > 0 || p.iv == 0)) {
        bc->s->expiry = p.iv;
        bc->s->persistent = p.iv > 0;
      }
    }
  }
  hang_up(bc, false);
}

/* One parsed packet. */
static void on_packet(struct cm_mqtt_bconn *bc, struct cm_mqtt_msg *m) {
  if (!bc->connected) { /* §3.1.0: the first packet is CONNECT, and only the first */
    if (m->cmd != CM_MQTT_CONNECT || bc->s != NULL) {
      fail(bc, R5_PROTOCOL, "first packet not CONNECT");
      return;
    }
    {
      on_connect(bc, m);
      return;
    }
  }
  switch (m->cmd) {
    case CM_MQTT_PUBLISH: on_publish(bc, m); break;
    case CM_MQTT_PUBACK:
    case CM_MQTT_PUBREC:
    case CM_MQTT_PUBREL:
    case CM_MQTT_PUBCOMP: on_ack(bc, m); break;
    case CM_MQTT_SUBSCRIBE: on_subscribe(bc, m); break;
    case CM_MQTT_UNSUBSCRIBE: on_unsubscribe(bc, m); break;
    case CM_MQTT_PINGREQ: send_ack(bc, CM_MQTT_PINGRESP, 0, 0); break;
    case CM_MQTT_DISCONNECT: on_disconnect(bc, m); break;
    default: fail(bc, R5_PROTOCOL, "unexpected packet type"); break; /* CONNECT again, server packets */
  }
}

/* ---- input ---------------------------------------------------------------------------------- */

void cm__mqtt_input(struct cm_mqtt_bconn *bc, struct cm_iobuf *in) {
  struct cm_conn *c = bc->c;
  struct cm_mqtt_broker *b = bc->broker;
  int version = bc->connected ? bc->version : CM_MQTT_V311;
  while (in->len > 0 && !c->is_closing && !c->is_draining) {
    size_t total = 0;
    int hl = cm_mqtt_peek(cm_iobuf_data(in), in->len, &total);
    if (hl > 0 && total > b->opts.max_packet) {
      fail(bc, R5_TOO_LARGE, "packet too large");
      return;
    }
    struct cm_mqtt_msg m;
    int n = hl < 0 ? hl : cm_mqtt_parse(cm_iobuf_data(in), in->len, version, &m);
    if (n == 0) return;
    if (n < 0) {
      if (!bc->connected && -n == CM_MQTT_E_VERSION && m.cmd == CM_MQTT_CONNECT) {
        {
          refuse(bc, CM_MQTT_V311, RC_VERSION, 0x84);
          return;
        } /* §3.1.2.2 */
      }
      /* A malformed packet closes the connection (§4.8; 5 §4.13 with a
       * DISCONNECT saying why); the will goes out. */
      bc->graceful = false;
      if (bc->connected && bc->version == CM_MQTT_V5) {
        struct cm_mqtt_msg d = {.cmd = CM_MQTT_DISCONNECT, .ack = cm_mqtt_err_reason(n)};
        cm__mqtt_out(bc, &d);
        cm_drain(c);
        cm_call(c, CM_EV_ERROR, (void *) cm_mqtt_strerror(n));
      } else {
        cm_error(c, "MQTT: %s", cm_mqtt_strerror(n));
      }
      return;
    }
    bc->last_rx = now_ms(b);
    on_packet(bc, &m);
    if (bc->connected) version = bc->version;
    cm_iobuf_consume(in, (size_t) n);
  }
}

/* ---- connections ------------------------------------------------------------------------------ */

static struct cm_mqtt_bconn *bconn_new(const struct cm_mqtt_blsn *l, struct cm_conn *c) {
  struct cm_mqtt_broker *b = l->broker;
  struct cm_mqtt_bconn *bc = calloc(1, sizeof(*bc));
  if (bc == NULL) return NULL;
  if (l->path != NULL && (bc->ws_path = strdup(l->path)) == NULL) {
    free(bc);
    return NULL;
  }
  bc->broker = b;
  bc->c = c;
  bc->ws = l->ws;
  bc->need_tls = c->is_tls; /* the listener's scheme (or its tls_init) asks for TLS */
  bc->opened = bc->last_rx = now_ms(b);
  cm_iobuf_init(&bc->in, (size_t) b->opts.max_packet + 16);
  bc->next = b->conns;
  if (b->conns != NULL) b->conns->prev = bc;
  b->conns = bc;
  /* Room for the largest packet accepted (the default recv cap is less). */
  if (c->recv.cap != 0 && c->recv.cap < (size_t) b->opts.max_packet + 16)
    c->recv.cap = (size_t) b->opts.max_packet + 16;
  return bc;
}

void cm__mqtt_bconn_free(struct cm_mqtt_bconn *bc, bool will) {
  struct cm_mqtt_broker *b = bc->broker;
  detach(bc, will);
  if (bc->prev != NULL) bc->prev->next = bc->next;
  else
    b->conns = bc->next;
  if (bc->next != NULL) bc->next->prev = bc->prev;
  if (bc->c->pfn_data == bc) bc->c->pfn_data = NULL;
  if (bc->upgraded) cm__ws_carry(bc->c, NULL, NULL);
  cm_iobuf_free(&bc->in);
  free(bc->ws_path);
  free(bc->username);
  free(bc);
}

static void blsn_free(struct cm_mqtt_blsn *l) {
  free(l->path);
  free(l);
}

static void forget_listener(struct cm_mqtt_blsn *l) {
  struct cm_mqtt_broker *b = l->broker;
  for (size_t i = 0; i < b->nlsn; i++) {
    if (b->lsn[i] != l) continue;
    b->lsn[i] = b->lsn[--b->nlsn];
    break;
  }
  l->c->pfn_data = NULL;
  blsn_free(l);
}

/* The bytes of a client that is not inside WebSocket (or not yet). */
static void on_read(struct cm_mqtt_bconn *bc) {
  struct cm_conn *c = bc->c;
  if (bc->need_tls && !c->is_tls) {
    /* Bytes, but no TLS: nobody set it up for this mqtts:// / wss:// port. */
    cm_error(c, "MQTT broker: plaintext on a TLS listener (no tls_init)");
    return;
  }
  if (bc->ws) cm__mqtt_ws_handshake(bc);
  else
    cm__mqtt_input(bc, &c->recv);
}

void cm_mqtt_broker_handler(struct cm_conn *c, int ev, void *ev_data) {
  if (c->is_listening) {
    if (ev == CM_EV_CLOSE && c->pfn_data != NULL) forget_listener(c->pfn_data);
    return;
  }
  struct cm_mqtt_bconn *bc = c->pfn_data;
  if (bc == NULL) {
    struct cm_conn *lsn = ev == CM_EV_OPEN ? ev_data : NULL;
    if (lsn == NULL || lsn->pfn != cm_mqtt_broker_handler || lsn->pfn_data == NULL) return;
    if ((c->pfn_data = bconn_new(lsn->pfn_data, c)) == NULL) cm_error(c, "OOM");
    return;
  }
  switch (ev) {
    case CM_EV_READ: on_read(bc); break;
    case CM_EV_CLOSE: cm__mqtt_bconn_free(bc, true); break;
    default: break;
  }
}

/* ---- the clock: keep-alive, CONNECT deadline, session expiry, autosave ------------------------ */

static void expire_sessions(struct cm_mqtt_session *s, void *arg) {
  struct cm_mqtt_broker *b = arg;
  if (s->owner != NULL || s->expiry == UINT32_MAX) return;
  if (now_ms(b) - s->offline_since >= (uint64_t) s->expiry * 1000) {
    cm_mqtt_session_free(&b->store, s);
    b->dirty = true;
  }
}

static void tick(struct cm_timer *t, void *arg) {
  struct cm_mqtt_broker *b = arg;
  uint64_t now = now_ms(b);
  (void) t;
  for (struct cm_mqtt_bconn *bc = b->conns; bc != NULL; bc = bc->next) {
    if (bc->c->is_closing) continue;
    if (!bc->connected && now - bc->opened > b->opts.connect_timeout_ms) {
      /* §3.1.4 leaves the wait to the server: no CONNECT, no connection.
       * (A WebSocket handshake must be done within the same time.) */
      hang_up(bc, false);
    } else if (bc->connected && bc->keepalive > 0 && now - bc->last_rx > (uint64_t) bc->keepalive * 1500) {
      /* §3.1.2.10: one and a half keep-alive periods of silence. */
      fail(bc, R5_KEEPALIVE, "keep-alive timeout");
    }
  }
  if (now - b->last_expiry >= 1000) {
    b->last_expiry = now;
    cm_mqtt_store_each(&b->store, expire_sessions, b);
  }
  if (b->opts.persist != NULL && b->dirty && now - b->last_save >= b->opts.persist_interval_ms) {
    char err[256];
    if (cm_mqtt_broker_save(b, err, sizeof(err)) != 0) CM_ERROR("MQTT broker: %s", err);
  }
}

/* ---- the broker --------------------------------------------------------------------------------- */

static void defaults(struct cm_mqtt_broker_opts *o) {
  if (o->max_packet == 0 || o->max_packet > CM_MQTT_MAX_REMAINING + 5) o->max_packet = DEFAULT_MAX_PACKET;
  if (o->max_send == 0) o->max_send = DEFAULT_MAX_SEND;
  if (o->persist_interval_ms == 0) o->persist_interval_ms = DEFAULT_PERSIST_MS;
  if (o->connect_timeout_ms == 0) o->connect_timeout_ms = DEFAULT_CONNECT_MS;
}

static void mark_loaded(struct cm_mqtt_session *s, void *arg) { s->offline_since = *(uint64_t *) arg; }

struct cm_mqtt_broker *cm_mqtt_broker_new(struct cm_mgr *mgr, const struct cm_mqtt_broker_opts *opts,
                                          char *err, size_t errlen) {
  struct cm_mqtt_broker *b = calloc(1, sizeof(*b));
  if (b == NULL) goto oom;
  b->mgr = mgr;
  cm_iobuf_init(&b->wsout, 0);
  if (opts != NULL) b->opts = *opts;
  defaults(&b->opts);
  if (opts != NULL && opts->persist != NULL && (b->opts.persist = strdup(opts->persist)) == NULL) goto oom;
  if (cm_mqtt_store_init(&b->store, b->opts.max_inflight, b->opts.max_queued) != 0) goto oom;
  b->opts.max_inflight = b->store.max_inflight;
  b->opts.max_queued = b->store.max_queued;
  if (b->opts.persist != NULL && cm_mqtt_persist_read(&b->store, b->opts.persist, err, errlen) != 0)
    goto fail;
  b->last_save = b->last_expiry = cm__now(mgr);
  cm_mqtt_store_each(&b->store, mark_loaded, &b->last_save);
  if (!cm_timer_start(mgr, &b->timer, TICK_MS, CM_TIMER_REPEAT, tick, b)) goto oom;
  return b;
oom:
  snprintf(err, errlen, "%s", "out of memory");
fail:
  if (b != NULL) {
    cm_mqtt_store_free(&b->store);
    free((char *) b->opts.persist);
    free(b);
  }
  return NULL;
}

/* The listener state for `url`: WebSocket or not, and the path served.
 * NULL: no memory. */
static struct cm_mqtt_blsn *blsn_new(struct cm_mqtt_broker *b, const char *url) {
  struct cm_url u;
  cm_url_split(url, &u);
  struct cm_mqtt_blsn *l = calloc(1, sizeof(*l));
  if (l == NULL) return NULL;
  l->broker = b;
  l->ws = cm_str_casecmp(u.scheme, cm_str_c("ws")) || cm_str_casecmp(u.scheme, cm_str_c("wss"));
  struct cm_str path = u.uri;
  for (size_t i = 0; i < path.len; i++) { /* a query in the URL is not part of the path */
    if (path.buf[i] == '?' || path.buf[i] == '#') path.len = i;
  }
  if (l->ws && path.len > 1 && (l->path = strndup(path.buf, path.len)) == NULL) {
    free(l);
    return NULL;
  }
  return l;
}

struct cm_conn *cm_mqtt_broker_listen(struct cm_mqtt_broker *b, const char *url, cm_handler_fn fn,
                                      void *fn_data) {
  if (b->nlsn == b->lsn_cap) {
    size_t cap = b->lsn_cap == 0 ? 4 : b->lsn_cap * 2;
    struct cm_mqtt_blsn **l = realloc(b->lsn, cap * sizeof(*l));
    if (l == NULL) return NULL;
    b->lsn = l;
    b->lsn_cap = cap;
  }
  struct cm_mqtt_blsn *l = url != NULL ? blsn_new(b, url) : NULL;
  if (l == NULL) return NULL;
  struct cm_conn *c = cm__listen(b->mgr, url, cm_mqtt_broker_handler, fn, fn_data);
  if (c == NULL || c->is_closing || c->pfn != cm_mqtt_broker_handler) {
    blsn_free(l);
    return c;
  }
  l->c = c;
  c->pfn_data = l;
  b->lsn[b->nlsn++] = l;
  return c;
}

int cm_mqtt_broker_save(struct cm_mqtt_broker *b, char *err, size_t errlen) {
  if (b->opts.persist == NULL) return 0;
  int rc = cm_mqtt_persist_save(&b->store, b->opts.persist, err, errlen);
  b->last_save = now_ms(b);
  if (rc == 0) b->dirty = false;
  return rc;
}

struct cm_mqtt_broker_stats cm_mqtt_broker_stats(struct cm_mqtt_broker *b) {
  b->stats.sessions = b->store.nsessions;
  b->stats.subscriptions = cm_mqtt_tree_nsubs(b->store.tree);
  b->stats.retained = cm_mqtt_tree_nretained(b->store.tree);
  return b->stats;
}

void cm_mqtt_broker_free(struct cm_mqtt_broker *b) {
  if (b == NULL) return;
  char err[256];
  cm_timer_stop(b->mgr, &b->timer);
  /* Shutting down: clients go without wills, persistent sessions stay. */
  while (b->conns != NULL) {
    struct cm_conn *c = b->conns->c;
    cm__mqtt_bconn_free(b->conns, false);
    cm_close(c);
  }
  if (b->opts.persist != NULL && cm_mqtt_broker_save(b, err, sizeof(err)) != 0)
    CM_ERROR("MQTT broker: %s", err);
  for (size_t i = 0; i < b->nlsn; i++) {
    b->lsn[i]->c->pfn_data = NULL;
    cm_close(b->lsn[i]->c);
    blsn_free(b->lsn[i]);
  }
  free(b->lsn);
  cm_iobuf_free(&b->wsout);
  cm_mqtt_store_free(&b->store);
  free((char *) b->opts.persist);
  free(b);
}
