/* test_mqtt.c: the MQTT protocol handler (mqtt.c) over real loopback
 * sockets: a client (cm_mqtt_connect) against a raw listener
 * (cm_mqtt_listen) whose handler plays a tiny broker, and a plain socket
 * peer for the bytes a well-behaved client would never send. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

#define WAIT_MS 3000 /* upper bound of every wait: no test can hang */

/* What one side saw. */
struct side {
  char log[256]; /* events in order: O<ack> open, M msg, C<cmd> cmd, E error, X close */
  size_t nlog;
  char topic[64], data[64], error[128]; /* of the last MSG / ERROR */
  int version;                          /* server: CONNECT's level */
  char client_id[32];
  uint16_t ids[16]; /* packet ids of the CMD events, in order */
  size_t nids;
  uint8_t connack; /* server: the code it answers CONNECT with */
  bool echo;       /* server: publish every PUBLISH back, QoS 1 */
  bool closed;
  struct cm_conn *conn; /* server: the accepted connection */
};

static void logf_(struct side *s, const char *text) {
  size_t n = strlen(text);
  if (s->nlog + n + 1 < sizeof(s->log)) memcpy(s->log + s->nlog, text, n), s->nlog += n;
  s->log[s->nlog] = '\0';
}

static void copy_slice(char *dst, size_t size, struct cm_str s) {
  size_t n = s.len < size - 1 ? s.len : size - 1;
  if (n > 0) memcpy(dst, s.buf, n);
  dst[n] = '\0';
}

static void record(struct side *s, struct cm_conn *c, int ev, void *ev_data) {
  char buf[16];
  switch (ev) {
    case CM_EV_MQTT_OPEN: snprintf(buf, sizeof(buf), "O%d ", *(const int *) ev_data); break;
    case CM_EV_MQTT_MSG: {
      const struct cm_mqtt_msg *m = ev_data;
      copy_slice(s->topic, sizeof(s->topic), m->topic);
      copy_slice(s->data, sizeof(s->data), m->data);
      snprintf(buf, sizeof(buf), "M ");
      break;
    }
    case CM_EV_MQTT_CMD: {
      const struct cm_mqtt_msg *m = ev_data;
      snprintf(buf, sizeof(buf), "C%d ", m->cmd);
      if (s->nids < 16) s->ids[s->nids++] = m->id;
      break;
    }
    case CM_EV_ERROR:
      snprintf(s->error, sizeof(s->error), "%s", (const char *) ev_data);
      snprintf(buf, sizeof(buf), "E ");
      break;
    case CM_EV_CLOSE:
      s->closed = true;
      snprintf(buf, sizeof(buf), "X");
      break;
    default: return;
  }
  (void) c;
  logf_(s, buf);
}

/* The raw listener's handler: a broker by hand, as SPEC §2.12 has it. */
static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct side *s = c->fn_data;
  if (ev == CM_EV_ACCEPT) s->conn = c;
  if (c->is_listening) return;
  record(s, c, ev, ev_data);
  if (ev != CM_EV_MQTT_CMD) return;
  const struct cm_mqtt_msg *m = ev_data;
  if (m->cmd == CM_MQTT_CONNECT) {
    s->version = m->version;
    copy_slice(s->client_id, sizeof(s->client_id), m->client_id);
    struct cm_mqtt_msg ack = {.cmd = CM_MQTT_CONNACK, .ack = s->connack};
    ASSERT(cm_mqtt_send(c, &ack));
  } else if (m->cmd == CM_MQTT_SUBSCRIBE) {
    struct cm_mqtt_msg ack = {.cmd = CM_MQTT_SUBACK, .id = m->id, .data = cm_str_n("\x01", 1)};
    ASSERT(cm_mqtt_send(c, &ack));
  } else if (m->cmd == CM_MQTT_PUBLISH && s->echo) {
    ASSERT(cm_mqtt_pub(c, m->topic, m->data, 1, false, cm_str_n(NULL, 0), NULL));
  }
}

static void client_fn(struct cm_conn *c, int ev, void *ev_data) { record(c->fn_data, c, ev, ev_data); }

struct pair {
  struct cm_mgr mgr;
  struct cm_conn *lsn, *cli;
  struct side srv, cl;
  char url[64];
};

static void pair_listen(struct pair *p) {
  memset(p, 0, sizeof(*p));
  ASSERT_EQ(cm_mgr_init(&p->mgr), 0);
  p->lsn = cm_mqtt_listen(&p->mgr, "mqtt://127.0.0.1:0", server_fn, &p->srv);
  ASSERT(p->lsn != NULL);
  snprintf(p->url, sizeof(p->url), "mqtt://127.0.0.1:%u", p->lsn->loc.port);
}

static void pair_connect(struct pair *p, const struct cm_mqtt_opts *o) {
  p->cli = cm_mqtt_connect(&p->mgr, p->url, o, client_fn, &p->cl);
  ASSERT(p->cli != NULL);
}

/* Poll until `log` contains `want`. */
static bool wait_log(struct pair *p, const struct side *s, const char *want) {
  uint64_t end = cm_millis() + WAIT_MS;
  while (strstr(s->log, want) == NULL && cm_millis() < end) cm_mgr_poll(&p->mgr, 10);
  if (strstr(s->log, want) == NULL) fprintf(stderr, "log \"%s\" lacks \"%s\"\n", s->log, want);
  return strstr(s->log, want) != NULL;
}

/* CONNECT / CONNACK, SUBSCRIBE / SUBACK, a QoS 2 publish with its whole
 * handshake, and a QoS 1 publish back with its PUBACK. */
static void test_session(void) {
  struct pair p;
  pair_listen(&p);
  p.srv.echo = true;
  struct cm_mqtt_opts o = {.clean = true, .keepalive = 30, .client_id = cm_str_c("me")};
  pair_connect(&p, &o);
  ASSERT(wait_log(&p, &p.cl, "O0 C2 "));
  ASSERT_EQ(p.srv.version, 4);
  ASSERT(strcmp(p.srv.client_id, "me") == 0);
  ASSERT_EQ(cm_mqtt_version(p.cli), 4);
  uint16_t sid = 0, pid = 0;
  ASSERT(cm_mqtt_sub(p.cli, cm_str_c("t/#"), 1, cm_str_n(NULL, 0), &sid));
  ASSERT(wait_log(&p, &p.cl, "C9 "));
  ASSERT(cm_mqtt_pub(p.cli, cm_str_c("t/x"), cm_str_c("hello"), 2, false, cm_str_n(NULL, 0), &pid));
  ASSERT(sid != 0 && pid == (uint16_t) (sid + 1)); /* one counter */
  /* server: PUBLISH, then PUBREL (it sent PUBREC by itself); client:
   * PUBREC (then PUBREL by itself), PUBCOMP, and the echo: MSG before CMD,
   * its PUBACK reaching the server */
  ASSERT(wait_log(&p, &p.srv, "C1 C8 M C3 C6 "));
  ASSERT(wait_log(&p, &p.cl, "C5 "));
  ASSERT(wait_log(&p, &p.cl, "C7 "));
  ASSERT(wait_log(&p, &p.cl, "M C3 "));
  ASSERT(wait_log(&p, &p.srv, "C4 "));
  ASSERT(strcmp(p.cl.topic, "t/x") == 0 && strcmp(p.cl.data, "hello") == 0);
  ASSERT(strcmp(p.srv.topic, "t/x") == 0 && strcmp(p.srv.data, "hello") == 0);
  /* the ids went around: the server saw pid on PUBLISH and PUBREL */
  ASSERT(p.srv.ids[2] == pid && p.srv.ids[3] == pid);
  ASSERT(cm_mqtt_ping(p.cli));
  ASSERT(wait_log(&p, &p.srv, "C12 "));
  ASSERT(cm_mqtt_pong(p.srv.conn));
  ASSERT(wait_log(&p, &p.cl, "C13 "));
  uint16_t uid = 0;
  ASSERT(cm_mqtt_unsub(p.cli, cm_str_c("t/#"), cm_str_n(NULL, 0), &uid) && uid != 0);
  ASSERT(wait_log(&p, &p.srv, "C10 "));
  ASSERT(cm_mqtt_disconnect(p.cli));
  ASSERT(wait_log(&p, &p.srv, "C14 "));
  ASSERT(!p.cl.closed); /* DISCONNECT does not close by itself */
  ASSERT(strchr(p.cl.log, 'E') == NULL && strchr(p.srv.log, 'E') == NULL);
  cm_mgr_free(&p.mgr);
}

/* A refusing CONNACK: MQTT_OPEN(code), then CMD, then the close. */
static void test_refused(void) {
  struct pair p;
  pair_listen(&p);
  p.srv.connack = 5;
  struct cm_mqtt_opts o = {.username = cm_str_c("u"), .password = cm_str_c("bad")};
  pair_connect(&p, &o);
  ASSERT(wait_log(&p, &p.cl, "O5 C2 X"));
  ASSERT_EQ(strlen(p.srv.client_id), 20); /* a random client id */
  cm_mgr_free(&p.mgr);
}

/* MQTT 5: the accepted connection speaks the level of its CONNECT, and
 * properties travel both ways. */
static void test_v5(void) {
  struct pair p;
  pair_listen(&p);
  p.srv.echo = true;
  char props[32];
  struct cm_mqtt_prop pr = {.id = CM_MQTT_PROP_USER_PROPERTY, .key = cm_str_c("k"), .val = cm_str_c("v")};
  long n = cm_mqtt_props_encode(&pr, 1, props, sizeof(props));
  ASSERT(n == 7);
  struct cm_mqtt_opts o = {.version = 5,
                           .props = cm_str_n(props, (size_t) n),
                           .will_topic = cm_str_c("w"),
                           .will_message = cm_str_c("gone"),
                           .will_qos = 1};
  pair_connect(&p, &o);
  ASSERT(wait_log(&p, &p.cl, "O0 C2 "));
  ASSERT_EQ(p.srv.version, 5);
  ASSERT_EQ(cm_mqtt_version(p.srv.conn), 5);
  ASSERT(cm_mqtt_pub(p.cli, cm_str_c("a"), cm_str_c("b"), 1, true, cm_str_n(props, (size_t) n), NULL));
  ASSERT(wait_log(&p, &p.cl, "M C3 "));
  ASSERT(wait_log(&p, &p.cl, "C4 "));
  cm_mgr_free(&p.mgr);
}

/* Options CONNECT cannot carry fail before any connection exists. */
static void test_bad_opts(void) {
  struct cm_mgr mgr;
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  struct cm_mqtt_opts o = {.password = cm_str_c("p")};
  ASSERT(cm_mqtt_connect(&mgr, "mqtt://127.0.0.1:1", &o, NULL, NULL) == NULL);
  o = (struct cm_mqtt_opts){.will_topic = cm_str_c("w"), .will_qos = 3};
  ASSERT(cm_mqtt_connect(&mgr, "mqtt://127.0.0.1:1", &o, NULL, NULL) == NULL);
  ASSERT(mgr.conns == NULL);
  /* a password alone is fine in MQTT 5 */
  o = (struct cm_mqtt_opts){.version = 5, .password = cm_str_c("p")};
  ASSERT(cm_mqtt_connect(&mgr, "mqtt://127.0.0.1:1", &o, NULL, NULL) != NULL);
  cm_mgr_free(&mgr);
}

/* One counter per manager, wrapping past 0. */
static void test_ids(void) {
  struct cm_mgr mgr;
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  ASSERT_EQ(cm_mqtt_next_id(&mgr), 1);
  mgr.mqtt_id = 65535;
  ASSERT_EQ(cm_mqtt_next_id(&mgr), 1);
  cm_mgr_free(&mgr);
}

/* A raw peer's bytes into the listener: the packet arrives one byte per
 * read and still makes one event; a malformed one fails the connection
 * with the reason, and the peer sees the close. */
static void send_slowly(struct pair *p, int fd, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(send(fd, b + i, 1, 0), 1);
    for (int k = 0; k < 3; k++) cm_mgr_poll(&p->mgr, 1);
  }
}

static bool peer_sees_eof(struct pair *p, int fd) {
  uint64_t end = cm_millis() + WAIT_MS;
  char buf[256];
  while (cm_millis() < end) {
    cm_mgr_poll(&p->mgr, 10);
    ssize_t r = recv(fd, buf, sizeof(buf), 0);
    if (r == 0) return true;
    if (r < 0 && errno != EAGAIN) return true;
  }
  return false;
}

static void test_raw_peer(void) {
  static const struct {
    const char *bytes;
    size_t n;
    const char *why;
  } bad[] = {
      {"\x30\x02\x00\x00", 4, "MQTT: invalid topic name"},
      {"\x00\x00", 2, "MQTT: reserved packet type"},
      {"\x30\x03\x00\x01#", 5, "MQTT: invalid topic name"},
      {"\x30\xff\xff\xff\x7f", 5, "MQTT: packet of 268435460 bytes over the receive limit"},
      {"\x30\xff\xff\xff\xff\x7f", 6, "MQTT: bad remaining length encoding"},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    struct pair p;
    pair_listen(&p);
    int fd = cm_test_peer_connect(p.lsn->loc.port);
    static const char pub[] = "\x32\x08\x00\x03t/a\x00\x07x";
    send_slowly(&p, fd, pub, sizeof(pub) - 1);
    ASSERT(wait_log(&p, &p.srv, "M C3 "));
    ASSERT(strcmp(p.srv.data, "x") == 0);
    /* the automatic PUBACK came back */
    char ack[8];
    uint64_t end = cm_millis() + WAIT_MS;
    ssize_t r = -1;
    while (r < 0 && cm_millis() < end) cm_mgr_poll(&p.mgr, 10), r = recv(fd, ack, sizeof(ack), 0);
    ASSERT(r == 4 && memcmp(ack, "\x40\x02\x00\x07", 4) == 0);
    ASSERT_EQ(send(fd, bad[i].bytes, bad[i].n, 0), (ssize_t) bad[i].n);
    ASSERT(wait_log(&p, &p.srv, "E X"));
    if (strcmp(p.srv.error, bad[i].why) != 0) fprintf(stderr, "error: %s\n", p.srv.error);
    ASSERT(strcmp(p.srv.error, bad[i].why) == 0);
    ASSERT(peer_sees_eof(&p, fd));
    close(fd);
    cm_mgr_free(&p.mgr);
  }
}

/* MQTT calls on a connection that is not MQTT write the bytes (3.1.1). */
static void test_not_mqtt(void) {
  struct cm_mgr mgr;
  ASSERT_EQ(cm_mgr_init(&mgr), 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", NULL, NULL);
  ASSERT(lsn != NULL);
  ASSERT_EQ(cm_mqtt_version(lsn), 4);
  ASSERT(cm_mqtt_ping(lsn));
  uint16_t id = 9;
  ASSERT(cm_mqtt_pub(lsn, cm_str_c("t"), cm_str_c("d"), 0, false, cm_str_n(NULL, 0), &id));
  ASSERT_EQ(id, 0);
  ASSERT(!cm_mqtt_pub(lsn, cm_str_c("t"), cm_str_c("d"), 3, false, cm_str_n(NULL, 0), &id));
  ASSERT_EQ(lsn->send.len, 2 + 6);
  ASSERT(memcmp(cm_iobuf_data(&lsn->send), "\xc0\x00\x30\x04\x00\x01td", 8) == 0);
  cm_mgr_free(&mgr);
}

int main(void) {
  RUN(test_session);
  RUN(test_refused);
  RUN(test_v5);
  RUN(test_bad_opts);
  RUN(test_ids);
  RUN(test_raw_peer);
  RUN(test_not_mqtt);
  return cm_test_done();
}
