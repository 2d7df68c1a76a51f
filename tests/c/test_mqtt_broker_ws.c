/* test_mqtt_broker_ws.c: the broker's WebSocket and TLS listeners
 * (mqtt_broker_ws.c): the upgrade and what other requests get, packets
 * split across messages and several in one, one packet per message out,
 * text frames, a TCP client and a WebSocket client of one broker, wss://
 * and mqtts:// with our own TLS clients, a plaintext client on a TLS port,
 * and a broker freed with WebSocket clients connected.  The raw WebSocket
 * peer here masks its frames as RFC 6455 §5.3 asks; paho-mqtt and
 * mosquitto's clients are the peers of tests/py/test_mqtt_broker_ws.py. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

/* A self-signed P-256 certificate for localhost / 127.0.0.1 (valid until
 * 2126); the clients here skip verification, tests/py checks it. */
static const char cert_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUGgAwIBAgIUeqIc4plmZs29kVDEc5KuQDUNQocwCgYIKoZIzj0EAwIw\n"
    "FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTIwNTE3MTkzNloYDzIxMjYxMTEx\n"
    "MTcxOTM2WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO\n"
    "PQMBBwNCAATd9g+gHmiev/iEMMWx9513x+Cy5xsmHGUd8foDFiYuWW6zIkDQgxeA\n"
    "EwWeOryoOzSh3Rb8yusI/Qfcg/hPnRHRo28wbTAdBgNVHQ4EFgQUnwl7vpN8LLgA\n"
    "EsgBnMKLWTFfE7UwHwYDVR0jBBgwFoAUnwl7vpN8LLgAEsgBnMKLWTFfE7UwDwYD\n"
    "VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI\n"
    "zj0EAwIDSAAwRQIhANCVgVKeDdiOxeGFojE3OshXJ7IjJinQr37wzCydspgvAiA8\n"
    "9Bix1Kd3hgLDEIt8BFk5A5JPkhcf1tnjupRVQ4N51g==\n"
    "-----END CERTIFICATE-----\n";
static const char key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAHzjcF+aNru3im4p\n"
    "2TZ3ixX+SGCED/qYvsNUuqrk+3ahRANCAATd9g+gHmiev/iEMMWx9513x+Cy5xsm\n"
    "HGUd8foDFiYuWW6zIkDQgxeAEwWeOryoOzSh3Rb8yusI/Qfcg/hPnRHR\n"
    "-----END PRIVATE KEY-----\n";

struct fix {
  struct cm_mgr mgr;
  struct cm_mqtt_broker *b;
  int msgs;           /* CM_EV_MQTT_MSG seen */
  int ws_opens;       /* CM_EV_WS_OPEN seen (the user handler sees the upgrade) */
  int errors;         /* CM_EV_ERROR of clients */
  bool refuse_origin; /* close in CM_EV_WS_OPEN when an Origin came */
};

static void on_ev(struct cm_conn *c, int ev, void *ev_data) {
  struct fix *f = c->fn_data;
  if (ev == CM_EV_MQTT_MSG) f->msgs++;
  if (ev == CM_EV_ERROR && !c->is_listening) f->errors++;
  if (ev == CM_EV_WS_OPEN) {
    f->ws_opens++;
    if (f->refuse_origin && cm_http_header(ev_data, "Origin") != NULL) cm_close(c);
  }
}

static void start(struct fix *f, const struct cm_mqtt_broker_opts *o) {
  char err[256] = "";
  ASSERT_EQ(cm_mgr_init(&f->mgr), 0);
  f->b = cm_mqtt_broker_new(&f->mgr, o, err, sizeof(err));
  ASSERT(f->b != NULL);
}

static uint16_t listen_on(struct fix *f, const char *url) {
  struct cm_conn *l = cm_mqtt_broker_listen(f->b, url, on_ev, f);
  ASSERT(l != NULL);
  ASSERT(cm_mqtt_broker_of(l) == f->b);
  return l->loc.port;
}

static void stop(struct fix *f) {
  cm_mqtt_broker_free(f->b);
  cm_mgr_free(&f->mgr);
}

/* ---- a raw WebSocket client ------------------------------------------------------ */

struct wpeer {
  int fd;
  char buf[65536]; /* bytes received, not yet taken */
  size_t len;
  int frames;          /* binary frames taken */
  unsigned close_code; /* of the close frame received, 0 before */
  char pkt[4096];      /* the payload of the last binary frame */
};

/* Read what is there, polling the broker; false on EOF. */
static bool pump(struct fix *f, struct wpeer *p) {
  cm_mgr_poll(&f->mgr, 5);
  ssize_t r = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
  if (r == 0) return false;
  if (r > 0) p->len += (size_t) r;
  else
    ASSERT(errno == EAGAIN);
  return true;
}

/* Send the upgrade request `req` and read the response head into out;
 * returns the status. */
static int ws_request(struct fix *f, struct wpeer *p, uint16_t port, const char *req, char *out,
                      size_t size) {
  memset(p, 0, sizeof(*p));
  p->fd = cm_test_peer_connect(port);
  ASSERT(send(p->fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t) strlen(req));
  uint64_t end = cm_millis() + 3000;
  char *eoh = NULL;
  while ((eoh = memmem(p->buf, p->len, "\r\n\r\n", 4)) == NULL && cm_millis() < end) {
    if (!pump(f, p)) break;
  }
  ASSERT(eoh != NULL);
  size_t hl = (size_t) (eoh - p->buf) + 4;
  snprintf(out, size, "%.*s", (int) hl, p->buf);
  memmove(p->buf, p->buf + hl, p->len - hl);
  p->len -= hl;
  return atoi(out + 9);
}

static const char *upgrade_req(const char *path, const char *protocols, char *buf, size_t size) {
  snprintf(buf, size,
           "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Extensions: permessage-deflate\r\n%s%s%s\r\n",
           path, protocols != NULL ? "Sec-WebSocket-Protocol: " : "", protocols != NULL ? protocols : "",
           protocols != NULL ? "\r\n" : "");
  return buf;
}

/* Connect and upgrade on `path` offering "mqtt"; the 101 is checked. */
static void ws_open(struct fix *f, struct wpeer *p, uint16_t port, const char *path) {
  char req[512], resp[1024];
  ASSERT_EQ(ws_request(f, p, port, upgrade_req(path, "mqtt", req, sizeof(req)), resp, sizeof(resp)), 101);
  ASSERT(strstr(resp, "Sec-WebSocket-Protocol: mqtt\r\n") != NULL);
  ASSERT(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n") != NULL); /* RFC 6455 §1.3 */
  ASSERT(strstr(resp, "permessage-deflate") == NULL); /* never negotiated for MQTT */
}

/* One frame from the client: masked (§5.3). */
static void ws_frame(struct wpeer *p, uint8_t flags, const void *data, size_t len) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t out[8192];
  size_t h = cm_ws_header(out, flags, len, key);
  ASSERT(h + len <= sizeof(out));
  memcpy(out + h, data, len);
  cm_ws_mask(out + h, len, key, 0);
  ASSERT(send(p->fd, out, h + len, MSG_NOSIGNAL) == (ssize_t) (h + len));
}

static size_t encode(const struct cm_mqtt_msg *m, char *out, size_t size) {
  long n = cm_mqtt_encode(m, CM_MQTT_V311, out, size);
  ASSERT(n > 0 && (size_t) n <= size);
  return (size_t) n;
}

/* The next binary frame, which must hold exactly one MQTT packet: parsed
 * into *m (slices into p->pkt).  False on EOF, a close frame (close_code
 * set) or after `ms`. */
static bool ws_packet(struct fix *f, struct wpeer *p, struct cm_mqtt_msg *m, int ms) {
  uint64_t end = cm_millis() + (uint64_t) ms;
  for (;;) {
    struct cm_ws_frame fr;
    long n = cm_ws_parse(p->buf, p->len, &fr);
    ASSERT(n >= 0);
    if (n > 0) {
      ASSERT(!fr.masked && fr.fin); /* §5.1: a server never masks; one frame per message */
      ASSERT(fr.payload.len <= sizeof(p->pkt));
      memcpy(p->pkt, fr.payload.buf, fr.payload.len);
      memmove(p->buf, p->buf + n, p->len - (size_t) n);
      p->len -= (size_t) n;
      if (fr.op == CM_WS_OP_CLOSE) {
        p->close_code =
            fr.payload.len >= 2 ? ((unsigned) (uint8_t) p->pkt[0] << 8) | (uint8_t) p->pkt[1] : 1005;
        return false;
      }
      ASSERT_EQ(fr.op, CM_WS_OP_BINARY);
      p->frames++;
      ASSERT_EQ(cm_mqtt_parse(p->pkt, fr.payload.len, CM_MQTT_V311, m), (int) fr.payload.len);
      return true;
    }
    if (cm_millis() > end || !pump(f, p)) return false;
  }
}

/* True once the broker closed the TCP connection (what came before is dropped). */
static bool ws_closed(struct fix *f, struct wpeer *p, int ms) {
  uint64_t end = cm_millis() + (uint64_t) ms;
  while (cm_millis() < end) {
    if (!pump(f, p)) return true;
    p->len = 0;
  }
  return false;
}

/* CONNECT with a will on `will_topic` (NULL: none), CONNACK 0 checked. */
static void ws_connect_will(struct fix *f, struct wpeer *p, const char *id, const char *will_topic) {
  char out[256];
  struct cm_mqtt_msg c = {.cmd = CM_MQTT_CONNECT, .clean = true, .keepalive = 60}, ack;
  c.client_id = cm_str_c(id);
  if (will_topic != NULL) {
    c.has_will = true;
    c.will_topic = cm_str_c(will_topic);
    c.will_data = cm_str_c(id);
  }
  size_t n = encode(&c, out, sizeof(out));
  ws_frame(p, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  ASSERT(ws_packet(f, p, &ack, 3000));
  ASSERT(ack.cmd == CM_MQTT_CONNACK && ack.ack == 0);
}

static void ws_connect_mqtt(struct fix *f, struct wpeer *p, const char *id) {
  ws_connect_will(f, p, id, NULL);
}

/* ---- the tests ----------------------------------------------------------------------- */

static void test_packets_across_and_within_messages(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0");
  struct wpeer p;
  ws_open(&f, &p, port, "/mqtt"); /* no path in the URL: any path */
  ASSERT_EQ(f.ws_opens, 1);
  /* CONNECT cut in three: two binary messages, the second fragmented
   * (a BINARY frame without FIN, then a continuation). */
  char out[1024];
  struct cm_mqtt_msg c = {.cmd = CM_MQTT_CONNECT, .clean = true, .keepalive = 60}, m;
  c.client_id = cm_str_c("split");
  size_t n = encode(&c, out, sizeof(out));
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_BINARY, out, 3);
  ws_frame(&p, CM_WS_OP_BINARY, out + 3, 5);
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_CONTINUE, out + 8, n - 8);
  ASSERT(ws_packet(&f, &p, &m, 3000) && m.cmd == CM_MQTT_CONNACK && m.ack == 0);
  /* SUBSCRIBE, two PUBLISHes and a PINGREQ in one message. */
  struct cm_mqtt_sub s = {.topic = cm_str_c("a/#"), .qos = 1};
  struct cm_mqtt_msg sub = {.cmd = CM_MQTT_SUBSCRIBE, .id = 1, .subs = &s, .num_subs = 1};
  struct cm_mqtt_msg pub = {.cmd = CM_MQTT_PUBLISH, .qos = 1, .id = 2, .topic = cm_str_c("a/b")};
  pub.data = cm_str_c("one");
  n = encode(&sub, out, sizeof(out));
  n += encode(&pub, out + n, sizeof(out) - n);
  pub.id = 3;
  pub.data = cm_str_c("two");
  n += encode(&pub, out + n, sizeof(out) - n);
  out[n++] = (char) 0xc0; /* PINGREQ */
  out[n++] = 0;
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  /* Each answer in a message of its own (ws_packet checks it). */
  int frames = p.frames;
  ASSERT(ws_packet(&f, &p, &m, 3000) && m.cmd == CM_MQTT_SUBACK && m.id == 1);
  int pubacks = 0, delivered = 0, pings = 0;
  for (int i = 0; i < 5; i++) {
    ASSERT(ws_packet(&f, &p, &m, 3000));
    if (m.cmd == CM_MQTT_PUBACK) pubacks++;
    if (m.cmd == CM_MQTT_PINGRESP) pings++;
    if (m.cmd == CM_MQTT_PUBLISH) {
      ASSERT_STR(m.data, delivered == 0 ? "one" : "two");
      delivered++;
      struct cm_mqtt_msg a = {.cmd = CM_MQTT_PUBACK, .id = m.id};
      n = encode(&a, out, sizeof(out));
      ws_frame(&p, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
    }
  }
  ASSERT(pubacks == 2 && delivered == 2 && pings == 1);
  ASSERT_EQ(p.frames - frames, 6);
  ASSERT_EQ(f.msgs, 2);
  /* A ping frame is answered by the WebSocket layer, MQTT unmoved. */
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_PING, "hi", 2);
  uint64_t end = cm_millis() + 3000;
  struct cm_ws_frame fr;
  while (cm_ws_parse(p.buf, p.len, &fr) <= 0 && cm_millis() < end) ASSERT(pump(&f, &p));
  ASSERT(fr.op == CM_WS_OP_PONG && fr.payload.len == 2 && memcmp(fr.payload.buf, "hi", 2) == 0);
  p.len = 0;
  /* DISCONNECT: the broker closes, with a close frame first. */
  n = encode(&(struct cm_mqtt_msg){.cmd = CM_MQTT_DISCONNECT}, out, sizeof(out));
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  ASSERT(!ws_packet(&f, &p, &m, 3000));
  ASSERT_EQ(p.close_code, CM_WS_CLOSE_NORMAL);
  close(p.fd);
  stop(&f);
}

static void test_other_requests_are_answered(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t any = listen_on(&f, "ws://127.0.0.1:0");
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0/mqtt?ignored");
  struct wpeer p;
  char req[512], resp[1024];
  /* Not a WebSocket upgrade: 426 naming websocket. */
  ASSERT_EQ(ws_request(&f, &p, any, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", resp, sizeof(resp)), 426);
  ASSERT(strstr(resp, "Upgrade: websocket\r\n") != NULL);
  ASSERT(ws_closed(&f, &p, 3000));
  close(p.fd);
  /* An upgrade without the mqtt subprotocol, or with another one: 400. */
  ASSERT_EQ(ws_request(&f, &p, any, upgrade_req("/", NULL, req, sizeof(req)), resp, sizeof(resp)), 400);
  ASSERT(ws_closed(&f, &p, 3000));
  close(p.fd);
  ASSERT_EQ(ws_request(&f, &p, any, upgrade_req("/", "chat, MQTT", req, sizeof(req)), resp, sizeof(resp)),
            400);
  close(p.fd);
  /* mqttv3.1 (MQTT 3.1 clients) is MQTT too; the client's first MQTT offer wins. */
  ASSERT_EQ(
      ws_request(&f, &p, any, upgrade_req("/", "chat, mqttv3.1, mqtt", req, sizeof(req)), resp, sizeof(resp)),
      101);
  ASSERT(strstr(resp, "Sec-WebSocket-Protocol: mqttv3.1\r\n") != NULL);
  close(p.fd);
  /* A listener with a path serves that path only; the query does not matter. */
  ASSERT_EQ(ws_request(&f, &p, port, upgrade_req("/other", "mqtt", req, sizeof(req)), resp, sizeof(resp)),
            404);
  close(p.fd);
  ASSERT_EQ(ws_request(&f, &p, port, upgrade_req("/mqtt?x=1", "mqtt", req, sizeof(req)), resp, sizeof(resp)),
            101);
  close(p.fd);
  /* The checks of RFC 6455 are ws.c's: a bad version is 426, POST 400. */
  snprintf(req, sizeof(req), "%s", upgrade_req("/", "mqtt", resp, sizeof(resp)));
  char *v = strstr(req, "Version: 13");
  memcpy(v, "Version: 12", 11);
  ASSERT_EQ(ws_request(&f, &p, any, req, resp, sizeof(resp)), 426);
  close(p.fd);
  memcpy(v, "Version: 13", 11);
  memcpy(req, "PUT", 3);
  ASSERT_EQ(ws_request(&f, &p, any, req, resp, sizeof(resp)), 400);
  close(p.fd);
  /* Not HTTP at all (an MQTT client on the wrong port): 400. */
  ASSERT_EQ(ws_request(&f, &p, any, "\x10\x0cMQTT\r\n\r\n", resp, sizeof(resp)), 400);
  close(p.fd);
  ASSERT_EQ(cm_mqtt_broker_stats(f.b).connects, 0);
  stop(&f);
}

static void test_text_frame_closes(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0");
  struct wpeer p;
  ws_open(&f, &p, port, "/");
  ws_connect_mqtt(&f, &p, "texter");
  ws_frame(&p, CM_WS_FIN | CM_WS_OP_TEXT, "hello", 5);
  struct cm_mqtt_msg m;
  ASSERT(!ws_packet(&f, &p, &m, 3000));
  ASSERT_EQ(p.close_code, 1003);
  ASSERT(ws_closed(&f, &p, 3000));
  ASSERT(f.errors >= 1);
  ASSERT_EQ(cm_mqtt_broker_stats(f.b).clients, 0);
  close(p.fd);
  stop(&f);
}

static void test_wills_of_websocket_clients(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0");
  struct wpeer sub, gone, texter, polite;
  ws_open(&f, &sub, port, "/");
  ws_connect_mqtt(&f, &sub, "sub");
  char out[256];
  struct cm_mqtt_sub s = {.topic = cm_str_c("will/#")};
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_SUBSCRIBE, .id = 1, .subs = &s, .num_subs = 1};
  size_t n = encode(&m, out, sizeof(out));
  ws_frame(&sub, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  ASSERT(ws_packet(&f, &sub, &m, 3000) && m.cmd == CM_MQTT_SUBACK);
  ws_open(&f, &gone, port, "/");
  ws_connect_will(&f, &gone, "gone", "will/gone");
  ws_open(&f, &texter, port, "/");
  ws_connect_will(&f, &texter, "texter", "will/texter");
  ws_open(&f, &polite, port, "/");
  ws_connect_will(&f, &polite, "polite", "will/polite");
  /* The TCP connection drops under the WebSocket: the will goes out. */
  close(gone.fd);
  ASSERT(ws_packet(&f, &sub, &m, 3000) && m.cmd == CM_MQTT_PUBLISH);
  ASSERT_STR(m.topic, "will/gone");
  /* A text message fails the client: its will too. */
  ws_frame(&texter, CM_WS_FIN | CM_WS_OP_TEXT, "hello", 5);
  ASSERT(ws_packet(&f, &sub, &m, 3000) && m.cmd == CM_MQTT_PUBLISH);
  ASSERT_STR(m.topic, "will/texter");
  /* DISCONNECT, then a close: no will. */
  n = encode(&(struct cm_mqtt_msg){.cmd = CM_MQTT_DISCONNECT}, out, sizeof(out));
  ws_frame(&polite, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  ASSERT(ws_closed(&f, &polite, 3000));
  ASSERT(!ws_packet(&f, &sub, &m, 300));
  close(texter.fd);
  close(polite.fd);
  close(sub.fd);
  stop(&f);
}

/* A raw MQTT-over-TCP client. */
static int tcp_connect(struct fix *f, uint16_t port, const char *id) {
  int fd = cm_test_peer_connect(port);
  char out[256], in[64];
  struct cm_mqtt_msg c = {.cmd = CM_MQTT_CONNECT, .clean = true, .keepalive = 60};
  c.client_id = cm_str_c(id);
  size_t n = encode(&c, out, sizeof(out));
  ASSERT(send(fd, out, n, MSG_NOSIGNAL) == (ssize_t) n);
  uint64_t end = cm_millis() + 3000;
  ssize_t r = -1;
  while (r < 4 && cm_millis() < end) {
    cm_mgr_poll(&f->mgr, 5);
    r = recv(fd, in, sizeof(in), 0);
  }
  ASSERT(r == 4 && in[0] == 0x20 && in[3] == 0);
  return fd;
}

static void test_tcp_and_websocket_share_the_broker(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t tport = listen_on(&f, "mqtt://127.0.0.1:0");
  uint16_t wport = listen_on(&f, "ws://127.0.0.1:0");
  struct wpeer w;
  ws_open(&f, &w, wport, "/");
  ws_connect_mqtt(&f, &w, "web");
  char out[256], in[256];
  struct cm_mqtt_sub s = {.topic = cm_str_c("x/+"), .qos = 0};
  struct cm_mqtt_msg sub = {.cmd = CM_MQTT_SUBSCRIBE, .id = 1, .subs = &s, .num_subs = 1}, m;
  size_t n = encode(&sub, out, sizeof(out));
  ws_frame(&w, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  ASSERT(ws_packet(&f, &w, &m, 3000) && m.cmd == CM_MQTT_SUBACK);
  int t = tcp_connect(&f, tport, "tcp");
  n = encode(&(struct cm_mqtt_msg){.cmd = CM_MQTT_SUBSCRIBE,
                                   .id = 2,
                                   .subs = &(struct cm_mqtt_sub){.topic = cm_str_c("y")},
                                   .num_subs = 1},
             out, sizeof(out));
  ASSERT(send(t, out, n, MSG_NOSIGNAL) == (ssize_t) n);
  struct cm_mqtt_msg pub = {.cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("x/1"), .data = cm_str_c("tcp->ws")};
  n = encode(&pub, out, sizeof(out));
  ASSERT(send(t, out, n, MSG_NOSIGNAL) == (ssize_t) n);
  ASSERT(ws_packet(&f, &w, &m, 3000) && m.cmd == CM_MQTT_PUBLISH);
  ASSERT_STR(m.topic, "x/1");
  ASSERT_STR(m.data, "tcp->ws");
  /* And back: from the WebSocket client to the TCP one. */
  pub.topic = cm_str_c("y");
  pub.data = cm_str_c("ws->tcp");
  n = encode(&pub, out, sizeof(out));
  ws_frame(&w, CM_WS_FIN | CM_WS_OP_BINARY, out, n);
  size_t got = 0;
  uint64_t end = cm_millis() + 3000;
  struct cm_mqtt_msg r = {0};
  int k = 0;
  while (cm_millis() < end) {
    cm_mgr_poll(&f.mgr, 5);
    ssize_t rr = recv(t, in + got, sizeof(in) - got, 0);
    if (rr > 0) got += (size_t) rr;
    while (got > 0 && (k = cm_mqtt_parse(in, got, CM_MQTT_V311, &r)) > 0 && r.cmd != CM_MQTT_PUBLISH) {
      memmove(in, in + k, got - (size_t) k);
      got -= (size_t) k;
    }
    if (k > 0 && r.cmd == CM_MQTT_PUBLISH) break;
  }
  ASSERT(k > 0 && r.cmd == CM_MQTT_PUBLISH);
  ASSERT_STR(r.data, "ws->tcp");
  struct cm_mqtt_broker_stats st = cm_mqtt_broker_stats(f.b);
  ASSERT(st.clients == 2 && st.subscriptions == 2 && st.msgs_in == 2 && st.msgs_out == 2);
  /* The same client id over the other transport takes the session over. */
  int t2 = tcp_connect(&f, tport, "web");
  ASSERT(ws_closed(&f, &w, 3000));
  close(t2);
  close(t);
  close(w.fd);
  stop(&f);
}

static void test_handshake_deadline_and_refusal_in_ws_open(void) {
  struct cm_mqtt_broker_opts o = {.connect_timeout_ms = 300};
  struct fix f = {0};
  start(&f, &o);
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0");
  /* Half a request, then nothing: closed at the CONNECT deadline. */
  struct wpeer p = {0};
  p.fd = cm_test_peer_connect(port);
  ASSERT(send(p.fd, "GET / HTTP/1.1\r\n", 16, MSG_NOSIGNAL) == 16);
  ASSERT(ws_closed(&f, &p, 5000));
  close(p.fd);
  /* The user handler may refuse in CM_EV_WS_OPEN (an Origin check). */
  f.refuse_origin = true;
  char req[600], resp[1024];
  upgrade_req("/", "mqtt\r\nOrigin: http://evil.test", req, sizeof(req));
  p.fd = cm_test_peer_connect(port);
  ASSERT(send(p.fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t) strlen(req));
  ASSERT(ws_closed(&f, &p, 3000));
  ASSERT_EQ(f.ws_opens, 1);
  close(p.fd);
  /* Without an Origin, served. */
  ASSERT_EQ(ws_request(&f, &p, port, upgrade_req("/", "mqtt", req, sizeof(req)), resp, sizeof(resp)), 101);
  ws_connect_mqtt(&f, &p, "no-origin");
  close(p.fd);
  stop(&f);
}

static void test_free_with_websocket_clients(void) {
  struct fix f = {0};
  start(&f, NULL);
  uint16_t port = listen_on(&f, "ws://127.0.0.1:0");
  struct wpeer a, b;
  ws_open(&f, &a, port, "/");
  ws_connect_mqtt(&f, &a, "a");
  ws_open(&f, &b, port, "/"); /* upgraded, no CONNECT yet */
  struct wpeer c = {0};
  c.fd = cm_test_peer_connect(port); /* not even upgraded */
  cm_mgr_poll(&f.mgr, 10);
  stop(&f); /* LeakSanitizer: nothing of theirs is left */
  close(a.fd);
  close(b.fd);
  close(c.fd);
}

/* ---- TLS: mqtts:// and wss:// ------------------------------------------------------------ */

static const struct cm_tls_opts server_tls = {.cert = {cert_pem, sizeof(cert_pem) - 1},
                                              .key = {key_pem, sizeof(key_pem) - 1}};
static const struct cm_tls_opts client_tls = {.skip_verification = true};

struct cli {
  bool open, got, closed;
  int connack;
  char data[64];
};

static void on_cli(struct cm_conn *c, int ev, void *ev_data) {
  struct cli *k = c->fn_data;
  if (ev == CM_EV_MQTT_OPEN) {
    k->open = true;
    k->connack = *(const int *) ev_data;
  }
  if (ev == CM_EV_MQTT_MSG) {
    const struct cm_mqtt_msg *m = ev_data;
    snprintf(k->data, sizeof(k->data), "%.*s", (int) m->data.len, m->data.buf);
    k->got = true;
  }
  /* our WebSocket client: CONNECT when open, the CONNACK as a message */
  if (ev == CM_EV_WS_OPEN) {
    char out[64];
    struct cm_mqtt_msg m = {.cmd = CM_MQTT_CONNECT, .clean = true, .client_id = cm_str_c("wss")};
    long n = cm_mqtt_encode(&m, CM_MQTT_V311, out, sizeof(out));
    ASSERT(n > 0 && cm_ws_send(c, out, (size_t) n, CM_WS_OP_BINARY));
  }
  if (ev == CM_EV_WS_MSG) {
    const struct cm_ws_msg *w = ev_data;
    struct cm_mqtt_msg m;
    ASSERT(cm_mqtt_parse(w->data.buf, w->data.len, CM_MQTT_V311, &m) == (int) w->data.len);
    if (m.cmd == CM_MQTT_CONNACK) {
      k->open = true;
      k->connack = m.ack;
    }
    if (m.cmd == CM_MQTT_PUBLISH) {
      snprintf(k->data, sizeof(k->data), "%.*s", (int) m.data.len, m.data.buf);
      k->got = true;
    }
  }
  if (ev == CM_EV_CLOSE) k->closed = true;
}

static void test_mqtts_and_wss(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct cm_conn *l = cm_mqtt_broker_listen(f.b, "mqtts://127.0.0.1:0", on_ev, &f);
  ASSERT(l != NULL && cm_tls_init(l, &server_tls));
  char url[64];
  snprintf(url, sizeof(url), "mqtts://127.0.0.1:%u", (unsigned) l->loc.port);
  struct cm_conn *w = cm_mqtt_broker_listen(f.b, "wss://127.0.0.1:0/mqtt", on_ev, &f);
  ASSERT(w != NULL && cm_tls_init(w, &server_tls));
  /* our MQTT client over TLS */
  struct cli k = {0};
  struct cm_mqtt_opts mo = {.clean = true, .client_id = cm_str_c("tls")};
  struct cm_conn *c = cm_mqtt_connect(&f.mgr, url, &mo, on_cli, &k);
  ASSERT(c != NULL && cm_tls_init(c, &client_tls));
  ASSERT(cm_test_poll_until(&f.mgr, &k.open, 5000));
  ASSERT_EQ(k.connack, 0);
  ASSERT(c->is_tls);
  ASSERT(cm_mqtt_sub(c, cm_str_c("s/#"), 0, cm_str_n(NULL, 0), NULL));
  /* our WebSocket client over TLS */
  struct cli ws = {0};
  snprintf(url, sizeof(url), "wss://127.0.0.1:%u/mqtt", (unsigned) w->loc.port);
  struct cm_conn *wc = cm_ws_connect(&f.mgr, url, "Sec-WebSocket-Protocol: mqtt\r\n", NULL, on_cli, &ws);
  ASSERT(wc != NULL && cm_tls_init(wc, &client_tls));
  ASSERT(cm_test_poll_until(&f.mgr, &ws.open, 5000));
  ASSERT_EQ(ws.connack, 0);
  for (int i = 0; i < 50 && cm_mqtt_broker_stats(f.b).subscriptions < 1; i++) cm_mgr_poll(&f.mgr, 10);
  char out[64];
  struct cm_mqtt_msg pub = {.cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("s/1"), .data = cm_str_c("over wss")};
  long n = cm_mqtt_encode(&pub, CM_MQTT_V311, out, sizeof(out));
  ASSERT(n > 0 && cm_ws_send(wc, out, (size_t) n, CM_WS_OP_BINARY));
  ASSERT(cm_test_poll_until(&f.mgr, &k.got, 5000));
  ASSERT(strcmp(k.data, "over wss") == 0);
  ASSERT_EQ(cm_mqtt_broker_stats(f.b).clients, 2);
  stop(&f);
}

static void test_tls_port_refuses_plaintext(void) {
  struct fix f = {0};
  start(&f, NULL);
  /* No tls_init anywhere: a plaintext CONNECT is not served. */
  uint16_t port = listen_on(&f, "mqtts://127.0.0.1:0");
  int fd = cm_test_peer_connect(port);
  ASSERT(send(fd, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", 14, MSG_NOSIGNAL) == 14);
  uint64_t end = cm_millis() + 3000;
  ssize_t r = -1;
  char b[16];
  while (cm_millis() < end && r != 0) {
    cm_mgr_poll(&f.mgr, 5);
    r = recv(fd, b, sizeof(b), 0);
    ASSERT(r <= 0);
  }
  ASSERT_EQ(r, 0);
  ASSERT_EQ(f.errors, 1);
  ASSERT_EQ(cm_mqtt_broker_stats(f.b).connects, 0);
  close(fd);
  stop(&f);
}

int main(void) {
  RUN(test_packets_across_and_within_messages);
  RUN(test_other_requests_are_answered);
  RUN(test_text_frame_closes);
  RUN(test_wills_of_websocket_clients);
  RUN(test_tcp_and_websocket_share_the_broker);
  RUN(test_handshake_deadline_and_refusal_in_ws_open);
  RUN(test_free_with_websocket_clients);
  RUN(test_mqtts_and_wss);
  RUN(test_tls_port_refuses_plaintext);
  return cm_test_done();
}
