/* mqtt_broker_ws.c: MQTT inside WebSocket for the broker (cm/mqtt_broker.h),
 * the transport browsers need (MQTT.js), as MQTT 3.1.1 and 5.0 section 6
 * define it and mosquitto's websockets listeners serve it.
 *
 * A client of a ws:// (or wss://) listener starts as a broker connection
 * that waits for one HTTP request.  A WebSocket upgrade offering the "mqtt"
 * subprotocol is handed to the WebSocket protocol (cm/ws.h), which then owns
 * the connection (c->pfn) and carries the broker inside it (cm__ws_carry):
 * each binary message is a piece of the client's MQTT byte stream, which is
 * reassembled in bc->in and parsed exactly as TCP bytes are, so packets may
 * span messages and a message may hold several.  Every packet the broker
 * sends goes in a binary message of its own, as mosquitto sends them: a
 * client that assumes one packet per message (some browser libraries do)
 * works too.
 *
 * Anything else is answered in HTTP and the connection closed.  The
 * endpoint serves MQTT and nothing else: no files, no other WebSocket
 * subprotocol (a web server on the broker's port would be attack surface
 * nobody asked for; mosquitto serves files only from an http_dir set on
 * purpose).  A clear status tells whoever points curl or a browser at it
 * what it is, where a silent close would not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define KEEP_BUF (64u << 10)      /* reassembly and framing buffers above this are freed after use */
#define WS_CLOSE_UNSUPPORTED 1003 /* RFC 6455 §7.4.1: a data type it cannot accept */

/* ---- the handshake ----------------------------------------------------------------- */

/* Answer a request that is not ours, then close once it is written. */
static void refuse(struct cm_mqtt_bconn *bc, const struct cm_http_msg *hm, int status, const char *headers,
                   const char *why) {
  static const char text[] = "Content-Type: text/plain\r\nConnection: close\r\n";
  char h[256];
  snprintf(h, sizeof(h), "%s%s", headers, text);
  /* RFC 9110 §9.3.2: the answer to HEAD has no body. */
  bool head = hm != NULL && cm_str_eq(hm->method, "HEAD");
  cm_http_reply(bc->c, status, h, strlen(h), why, head ? 0 : strlen(why));
  cm_drain(bc->c);
  CM_DEBUG("conn %llu: MQTT over WebSocket: %d %s", (unsigned long long) bc->c->id, status, why);
}

/* The subprotocol to select: the first of the client's offers that names
 * MQTT (section 6: "mqtt"; "mqttv3.1" is what MQTT 3.1 clients offered,
 * and mosquitto still accepts it), else the empty slice.  Offers are
 * comma-separated, in one or more header lines (RFC 6455 §4.1, §11.3.4);
 * the names are tokens, compared exactly. */
static struct cm_str pick_protocol(const struct cm_http_msg *hm) {
  for (size_t i = 0; i < hm->num_headers && i < CM_HTTP_MAX_HEADERS; i++) {
    if (!cm_str_casecmp(hm->headers[i].name, cm_str_c("Sec-WebSocket-Protocol"))) continue;
    struct cm_str v = hm->headers[i].value;
    for (size_t s = 0, e; s < v.len; s = e + 1) {
      for (e = s; e < v.len && v.buf[e] != ',';) e++;
      struct cm_str t = cm_str_n(v.buf + s, e - s);
      while (t.len > 0 && (t.buf[0] == ' ' || t.buf[0] == '\t')) t.buf++, t.len--;
      while (t.len > 0 && (t.buf[t.len - 1] == ' ' || t.buf[t.len - 1] == '\t')) t.len--;
      if (cm_str_eq(t, "mqtt") || cm_str_eq(t, "mqttv3.1")) return t;
    }
  }
  return cm_str_n(NULL, 0);
}

static void inner(void *arg, int ev, void *ev_data);

/* The request is an acceptable upgrade: hand the connection to WebSocket
 * with "mqtt" selected, and ride inside it. */
static void upgrade(struct cm_mqtt_bconn *bc, const struct cm_http_msg *hm, struct cm_str proto, size_t n) {
  struct cm_conn *c = bc->c;
  char h[64];
  int hl = snprintf(h, sizeof(h), "Sec-WebSocket-Protocol: %.*s\r\n", (int) proto.len, proto.buf);
  /* No permessage-deflate: a message fanned out to N WebSocket clients
   * would be compressed N times (mosquitto does not offer it either).
   * Messages up to the largest packet, and then some for packets that
   * share a message. */
  struct cm_ws_opts o = {.max_message = (uint64_t) bc->broker->opts.max_packet + KEEP_BUF,
                         .no_deflate = true};
  bool ok = cm_ws_upgrade(c, hm, h, (size_t) hl, &o); /* fires CM_EV_WS_OPEN */
  cm_iobuf_consume(&c->recv, n);
  if (!ok) return; /* answered by ws.c (426, 400): not a valid handshake */
  bc->upgraded = true;
  free(bc->ws_path);
  bc->ws_path = NULL;
  cm__ws_carry(c, inner, bc);
  if (c->recv.len > 0) cm_resume(c); /* bytes after the request are WebSocket frames */
}

void cm__mqtt_ws_handshake(struct cm_mqtt_bconn *bc) {
  struct cm_conn *c = bc->c;
  if (c->is_draining || c->is_closing) { /* answered already: the rest is dropped */
    cm_iobuf_consume(&c->recv, c->recv.len);
    return;
  }
  struct cm_http_msg hm;
  int n = cm_http_parse(cm_iobuf_data(&c->recv), c->recv.len, &hm);
  if (n == 0 && c->recv.len <= CM_HTTP_MAX_HEAD) return; /* more to come */
  if (n < 0 || (n > 0 && (hm.is_response || hm.content_length > 0 || hm.is_chunked))) {
    refuse(bc, NULL, 400, "", "Bad request\n"); /* an upgrade request has no body (RFC 6455 §4.1) */
  } else if (n == 0 || (size_t) n > CM_HTTP_MAX_HEAD) {
    refuse(bc, NULL, 431, "", "Request header too large\n");
  } else if (bc->ws_path != NULL && !cm_str_eq(hm.uri, bc->ws_path)) {
    refuse(bc, &hm, 404, "", "Not found: MQTT over WebSocket is served on another path\n");
  } else if (cm_http_header(&hm, "Sec-WebSocket-Key") == NULL) {
    /* RFC 9110 §15.5.22: 426 names the protocol to switch to. */
    refuse(bc, &hm, 426, "Upgrade: websocket\r\n",
           "MQTT over WebSocket: connect with a WebSocket client offering Sec-WebSocket-Protocol: mqtt\n");
  } else {
    struct cm_str proto = pick_protocol(&hm);
    if (proto.len == 0) { /* MQTT 3.1.1 and 5.0 section 6: the client MUST offer "mqtt" */
      refuse(bc, &hm, 400, "", "MQTT over WebSocket needs Sec-WebSocket-Protocol: mqtt\n");
    } else {
      upgrade(bc, &hm, proto, (size_t) n);
      return;
    }
  }
  cm_iobuf_consume(&c->recv, c->recv.len);
}

/* ---- inside the WebSocket ------------------------------------------------------------ */

/* The bytes of one binary message: appended to the stream, then every
 * whole packet handled.  A message larger than the stream buffer is taken
 * in pieces (a packet larger than max_packet fails in cm__mqtt_input, as
 * on TCP). */
static void feed(struct cm_mqtt_bconn *bc, struct cm_str data) {
  struct cm_conn *c = bc->c;
  while (data.len > 0 && !c->is_closing && !c->is_draining) {
    size_t room = bc->in.cap - bc->in.len, n = data.len < room ? data.len : room;
    if (n == 0 || cm_iobuf_add(&bc->in, data.buf, n) != 0) {
      cm_error(c, "MQTT broker: out of memory");
      return;
    }
    data.buf += n;
    data.len -= n;
    cm__mqtt_input(bc, &bc->in);
  }
  if (bc->in.len == 0 && bc->in.size > KEEP_BUF) cm_iobuf_free(&bc->in);
}

/* What the WebSocket protocol hands the broker (cm__ws_carry). */
static void inner(void *arg, int ev, void *ev_data) {
  struct cm_mqtt_bconn *bc = arg;
  struct cm_conn *c = bc->c;
  if (ev == CM_EV_CLOSE) {
    cm__mqtt_bconn_free(bc, true);
    return;
  }
  if (ev != CM_EV_WS_MSG || c->is_closing || c->is_draining) return; /* pings are answered by ws.c */
  const struct cm_ws_msg *m = ev_data;
  if ((m->flags & 0x0f) != CM_WS_OP_BINARY) {
    /* Section 6 [MQTT-6.0.0-1]: any other data frame closes the connection. */
    static const char why[] = "MQTT over WebSocket: a text message (MQTT travels in binary messages)";
    bc->graceful = false;
    cm_ws_close(c, WS_CLOSE_UNSUPPORTED, cm_str_c("MQTT needs binary messages"));
    cm_drain(c);
    CM_ERROR("conn %llu: %s", (unsigned long long) c->id, why);
    cm_call(c, CM_EV_ERROR, (void *) why);
    return;
  }
  feed(bc, m->data);
}

struct cm_mqtt_bconn *cm__mqtt_ws_bconn(const struct cm_conn *c) {
  return cm__ws_carried(c, inner);
}

bool cm__mqtt_ws_out(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m, int version) {
  if (!bc->upgraded) return false;
  struct cm_iobuf *buf = &bc->broker->wsout;
  cm_iobuf_consume(buf, buf->len);
  bool ok =
      cm_mqtt_write(buf, m, version) == 0 && cm_ws_send(bc->c, cm_iobuf_data(buf), buf->len, CM_WS_OP_BINARY);
  cm_iobuf_consume(buf, buf->len);
  if (buf->size > KEEP_BUF) cm_iobuf_free(buf);
  return ok;
}

bool cm__mqtt_ws_close(struct cm_mqtt_bconn *bc) {
  if (!bc->upgraded) return false;
  cm_ws_close(bc->c, CM_WS_CLOSE_NORMAL, cm_str_n(NULL, 0)); /* false if one went already: fine */
  cm_drain(bc->c);
  return true;
}
