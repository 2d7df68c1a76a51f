/* test_mqtt_broker.c: the broker's protocol handler (mqtt_broker.c,
 * mqtt_deliver.c) driven over loopback by raw clients whose packets the
 * codec writes and reads: CONNECT answers, QoS flows, persistent sessions,
 * wills, takeover, malformed input, persistence across a broker restart.
 * The interoperability tests with mosquitto's and paho's clients are in
 * tests/py/test_mqtt_broker*.py. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

struct fix {
  struct cm_mgr mgr;
  struct cm_mqtt_broker *b;
  uint16_t port;
  int msgs;   /* CM_EV_MQTT_MSG seen */
  int closes; /* CM_EV_CLOSE of clients */
  char last_topic[64];
};

static void on_ev(struct cm_conn *c, int ev, void *ev_data) {
  struct fix *f = c->fn_data;
  if (ev == CM_EV_MQTT_MSG) {
    const struct cm_mqtt_msg *m = ev_data;
    f->msgs++;
    snprintf(f->last_topic, sizeof(f->last_topic), "%.*s", (int) m->topic.len, m->topic.buf);
  }
  if (ev == CM_EV_CLOSE && c->is_accepted) f->closes++;
}

static void start(struct fix *f, const struct cm_mqtt_broker_opts *o) {
  char err[256] = "";
  ASSERT_EQ(cm_mgr_init(&f->mgr), 0);
  f->b = cm_mqtt_broker_new(&f->mgr, o, err, sizeof(err));
  if (f->b == NULL) fprintf(stderr, "broker: %s\n", err);
  ASSERT(f->b != NULL);
  struct cm_conn *l = cm_mqtt_broker_listen(f->b, "mqtt://127.0.0.1:0", on_ev, f);
  ASSERT(l != NULL);
  ASSERT(cm_mqtt_broker_of(l) == f->b);
  f->port = l->loc.port;
}

static void stop(struct fix *f) {
  cm_mqtt_broker_free(f->b);
  cm_mgr_free(&f->mgr);
}

/* A raw client: bytes in, packets out. */
struct peer {
  int fd;
  int version;
  char buf[65536];
  size_t len;
};

static void peer_send(struct peer *p, const struct cm_mqtt_msg *m) {
  char out[4096];
  long n = cm_mqtt_encode(m, p->version, out, sizeof(out));
  ASSERT(n > 0 && (size_t) n <= sizeof(out));
  ASSERT(send(p->fd, out, (size_t) n, MSG_NOSIGNAL) == n);
}

static void peer_raw(struct peer *p, const void *bytes, size_t n) {
  ASSERT(send(p->fd, bytes, n, MSG_NOSIGNAL) == (ssize_t) n);
}

/* The next packet, polling the broker meanwhile; false on EOF or after
 * `ms` without one.  The message's slices are valid until the next call. */
static bool peer_recv(struct fix *f, struct peer *p, struct cm_mqtt_msg *m, int ms) {
  static char pkt[65536];
  uint64_t end = cm_millis() + (uint64_t) ms;
  for (;;) {
    int n = cm_mqtt_parse(p->buf, p->len, p->version, m);
    ASSERT(n >= 0);
    if (n > 0) {
      memcpy(pkt, p->buf, (size_t) n);
      cm_mqtt_parse(pkt, (size_t) n, p->version, m); /* slices into the copy */
      memmove(p->buf, p->buf + n, p->len - (size_t) n);
      p->len -= (size_t) n;
      return true;
    }
    if (cm_millis() > end) return false;
    cm_mgr_poll(&f->mgr, 5);
    ssize_t r = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
    if (r == 0) return false;
    if (r > 0) p->len += (size_t) r;
    else
      ASSERT(errno == EAGAIN);
  }
}

/* True once the broker closed the peer's connection. */
static bool peer_closed(struct fix *f, struct peer *p, int ms) {
  struct cm_mqtt_msg m;
  while (peer_recv(f, p, &m, ms)) {
  }
  char b;
  return recv(p->fd, &b, 1, 0) == 0;
}

static void peer_open(struct fix *f, struct peer *p, int version) {
  memset(p, 0, sizeof(*p));
  p->fd = cm_test_peer_connect(f->port);
  p->version = version;
}

/* CONNECT with these fields; returns the CONNACK code (-1: none). */
static int peer_connect(struct fix *f, struct peer *p, const char *id, bool clean, struct cm_mqtt_msg *ack) {
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_CONNECT, .clean = clean, .keepalive = 60};
  m.client_id = cm_str_c(id);
  peer_send(p, &m);
  if (!peer_recv(f, p, ack, 2000) || ack->cmd != CM_MQTT_CONNACK) return -1;
  return ack->ack;
}

static void subscribe(struct fix *f, struct peer *p, const char *filter, int qos, uint8_t want) {
  struct cm_mqtt_sub s = {.topic = cm_str_c(filter), .qos = (uint8_t) qos};
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_SUBSCRIBE, .id = 7, .subs = &s, .num_subs = 1}, r;
  peer_send(p, &m);
  ASSERT(peer_recv(f, p, &r, 2000));
  ASSERT(r.cmd == CM_MQTT_SUBACK && r.id == 7 && r.data.len == 1 && (uint8_t) r.data.buf[0] == want);
}

static void publish(struct peer *p, const char *topic, const char *data, int qos, uint16_t id, bool retain) {
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_PUBLISH, .qos = (uint8_t) qos, .id = id, .retain = retain};
  m.topic = cm_str_c(topic);
  m.data = cm_str_c(data);
  peer_send(p, &m);
}

static void expect_publish(struct fix *f, struct peer *p, const char *topic, const char *data, int qos,
                           struct cm_mqtt_msg *m) {
  ASSERT(peer_recv(f, p, m, 2000));
  ASSERT_EQ(m->cmd, CM_MQTT_PUBLISH);
  ASSERT_STR(m->topic, topic);
  ASSERT_STR(m->data, data);
  ASSERT_EQ(m->qos, qos);
}

static void test_connect_codes(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct peer p;
  struct cm_mqtt_msg ack;
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "c1", true, &ack), 0);
  ASSERT(!ack.session_present);
  close(p.fd);
  /* Empty client id: fine with a clean session, refused (0x02) without. */
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "", true, &ack), 0);
  close(p.fd);
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "", false, &ack), 2);
  ASSERT(peer_closed(&f, &p, 2000));
  close(p.fd);
  /* MQTT 5 gets an id assigned in CONNACK. */
  peer_open(&f, &p, 5);
  ASSERT_EQ(peer_connect(&f, &p, "", false, &ack), 0);
  struct cm_mqtt_prop pr;
  bool assigned = false;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(ack.props, ofs, &pr)) != 0;) {
    if (pr.id == CM_MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER) assigned = pr.val.len > 0;
  }
  ASSERT(assigned);
  close(p.fd);
  /* Protocol level 6: CONNACK 0x01, closed. */
  peer_open(&f, &p, 4);
  peer_raw(&p, "\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00", 14);
  struct cm_mqtt_msg m;
  ASSERT(peer_recv(&f, &p, &m, 2000) && m.cmd == CM_MQTT_CONNACK && m.ack == 1);
  ASSERT(peer_closed(&f, &p, 2000));
  close(p.fd);
  /* The first packet must be CONNECT. */
  peer_open(&f, &p, 4);
  peer_raw(&p, "\xc0\x00", 2);
  ASSERT(peer_closed(&f, &p, 2000));
  close(p.fd);
  /* A second CONNECT closes the connection. */
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "twice", true, &ack), 0);
  ASSERT_EQ(peer_connect(&f, &p, "twice", true, &ack), -1);
  ASSERT(peer_closed(&f, &p, 2000));
  close(p.fd);
  stop(&f);
}

static void test_qos_flows(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct peer sub, pub;
  struct cm_mqtt_msg ack, m;
  peer_open(&f, &sub, 4);
  peer_open(&f, &pub, 4);
  ASSERT_EQ(peer_connect(&f, &sub, "sub", true, &ack), 0);
  ASSERT_EQ(peer_connect(&f, &pub, "pub", true, &ack), 0);
  subscribe(&f, &sub, "t/+", 2, 2);
  subscribe(&f, &sub, "t/#", 0, 0); /* overlapping: one delivery, the higher QoS */
  publish(&pub, "t/1", "q0", 0, 0, false);
  expect_publish(&f, &sub, "t/1", "q0", 0, &m);
  publish(&pub, "t/1", "q1", 1, 11, false);
  ASSERT(peer_recv(&f, &pub, &m, 2000) && m.cmd == CM_MQTT_PUBACK && m.id == 11);
  expect_publish(&f, &sub, "t/1", "q1", 1, &m);
  uint16_t id1 = m.id;
  struct cm_mqtt_msg a = {.cmd = CM_MQTT_PUBACK, .id = id1};
  peer_send(&sub, &a);
  /* QoS 2 in, twice with the same id (a DUP): delivered once. */
  publish(&pub, "t/2", "q2", 2, 12, false);
  ASSERT(peer_recv(&f, &pub, &m, 2000) && m.cmd == CM_MQTT_PUBREC && m.id == 12);
  publish(&pub, "t/2", "q2", 2, 12, false);
  ASSERT(peer_recv(&f, &pub, &m, 2000) && m.cmd == CM_MQTT_PUBREC && m.id == 12);
  struct cm_mqtt_msg rel = {.cmd = CM_MQTT_PUBREL, .id = 12};
  peer_send(&pub, &rel);
  ASSERT(peer_recv(&f, &pub, &m, 2000) && m.cmd == CM_MQTT_PUBCOMP && m.id == 12);
  expect_publish(&f, &sub, "t/2", "q2", 2, &m);
  uint16_t id2 = m.id;
  ASSERT(!peer_recv(&f, &sub, &m, 200)); /* not twice */
  struct cm_mqtt_msg rec = {.cmd = CM_MQTT_PUBREC, .id = id2};
  peer_send(&sub, &rec);
  ASSERT(peer_recv(&f, &sub, &m, 2000) && m.cmd == CM_MQTT_PUBREL && m.id == id2);
  struct cm_mqtt_msg comp = {.cmd = CM_MQTT_PUBCOMP, .id = id2};
  peer_send(&sub, &comp);
  /* PINGREQ, UNSUBSCRIBE. */
  peer_raw(&sub, "\xc0\x00", 2);
  ASSERT(peer_recv(&f, &sub, &m, 2000) && m.cmd == CM_MQTT_PINGRESP);
  struct cm_mqtt_sub u[2] = {{.topic = cm_str_c("t/+")}, {.topic = cm_str_c("t/#")}};
  struct cm_mqtt_msg un = {.cmd = CM_MQTT_UNSUBSCRIBE, .id = 9, .subs = u, .num_subs = 2};
  peer_send(&sub, &un);
  ASSERT(peer_recv(&f, &sub, &m, 2000) && m.cmd == CM_MQTT_UNSUBACK && m.id == 9);
  publish(&pub, "t/3", "gone", 0, 0, false);
  ASSERT(!peer_recv(&f, &sub, &m, 200));
  ASSERT_EQ(f.msgs, 4); /* the embedding program saw each PUBLISH pass once (the DUP too) */
  ASSERT(strcmp(f.last_topic, "t/3") == 0);
  struct cm_mqtt_broker_stats st = cm_mqtt_broker_stats(f.b);
  ASSERT(st.clients == 2 && st.msgs_in == 5 && st.msgs_out == 3 && st.subscriptions == 0);
  close(sub.fd);
  close(pub.fd);
  stop(&f);
}

static void test_session_will_takeover(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct peer a, w, b;
  struct cm_mqtt_msg ack, m;
  /* A persistent subscriber, offline while QoS 1 messages arrive. */
  peer_open(&f, &a, 4);
  ASSERT_EQ(peer_connect(&f, &a, "persist", false, &ack), 0);
  subscribe(&f, &a, "p/#", 1, 1);
  close(a.fd);
  peer_open(&f, &w, 4);
  struct cm_mqtt_msg c = {
      .cmd = CM_MQTT_CONNECT, .clean = true, .keepalive = 60, .has_will = true, .will_qos = 1};
  c.client_id = cm_str_c("willer");
  c.will_topic = cm_str_c("p/will");
  c.will_data = cm_str_c("gone");
  peer_send(&w, &c);
  ASSERT(peer_recv(&f, &w, &m, 2000) && m.cmd == CM_MQTT_CONNACK && m.ack == 0);
  publish(&w, "p/x", "one", 1, 1, false);
  ASSERT(peer_recv(&f, &w, &m, 2000) && m.cmd == CM_MQTT_PUBACK);
  publish(&w, "p/x", "zero", 0, 0, false); /* QoS 0 for an offline session: dropped */
  close(w.fd);                             /* abrupt: the will goes */
  for (int i = 0; i < 20 && f.closes < 2; i++) cm_mgr_poll(&f.mgr, 10);
  /* Back: session present, the queued messages in order. */
  peer_open(&f, &a, 4);
  ASSERT_EQ(peer_connect(&f, &a, "persist", false, &ack), 0);
  ASSERT(ack.session_present);
  expect_publish(&f, &a, "p/x", "one", 1, &m);
  expect_publish(&f, &a, "p/will", "gone", 1, &m);
  uint16_t unacked = m.id;
  /* A takeover by a second connection with the same id: the first is
   * closed, and the unacknowledged delivery comes again with DUP. */
  peer_open(&f, &b, 4);
  ASSERT_EQ(peer_connect(&f, &b, "persist", false, &ack), 0);
  ASSERT(ack.session_present);
  ASSERT(peer_closed(&f, &a, 2000));
  expect_publish(&f, &b, "p/x", "one", 1, &m);
  ASSERT(m.dup);
  expect_publish(&f, &b, "p/will", "gone", 1, &m);
  ASSERT(m.dup && m.id == unacked);
  /* A clean DISCONNECT: no will. */
  struct cm_mqtt_msg d = {.cmd = CM_MQTT_DISCONNECT};
  peer_send(&b, &d);
  ASSERT(peer_closed(&f, &b, 2000));
  close(a.fd);
  close(b.fd);
  struct cm_mqtt_broker_stats st = cm_mqtt_broker_stats(f.b);
  ASSERT(st.clients == 0 && st.sessions == 1 && st.dropped >= 1);
  stop(&f);
}

static void test_retained_and_malformed(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct peer p, q;
  struct cm_mqtt_msg ack, m;
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "r", true, &ack), 0);
  publish(&p, "r/a", "kept", 1, 5, true);
  ASSERT(peer_recv(&f, &p, &m, 2000) && m.cmd == CM_MQTT_PUBACK);
  publish(&p, "$SYS/r", "sys", 0, 0, true);
  subscribe(&f, &p, "#", 2, 2); /* '#' does not see $SYS */
  expect_publish(&f, &p, "r/a", "kept", 1, &m);
  ASSERT(m.retain);
  ASSERT(!peer_recv(&f, &p, &m, 200));
  publish(&p, "r/a", "", 0, 0, true); /* empty: deletes, and is forwarded */
  expect_publish(&f, &p, "r/a", "", 0, &m);
  ASSERT(!m.retain);
  peer_open(&f, &q, 4);
  ASSERT_EQ(peer_connect(&f, &q, "r2", true, &ack), 0);
  subscribe(&f, &q, "r/#", 0, 0);
  ASSERT(!peer_recv(&f, &q, &m, 200));
  /* Malformed: a PUBLISH with a wildcard topic closes the connection. */
  peer_raw(&q, "\x30\x05\x00\x03r/#", 7);
  ASSERT(peer_closed(&f, &q, 2000));
  close(p.fd);
  close(q.fd);
  stop(&f);
}

static void test_keepalive(void) {
  struct fix f = {0};
  start(&f, NULL);
  struct peer p;
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_CONNECT, .clean = true, .keepalive = 1}, ack;
  peer_open(&f, &p, 4);
  m.client_id = cm_str_c("ka");
  peer_send(&p, &m);
  ASSERT(peer_recv(&f, &p, &ack, 2000) && ack.cmd == CM_MQTT_CONNACK);
  uint64_t t0 = cm_millis();
  ASSERT(peer_closed(&f, &p, 5000));
  uint64_t waited = cm_millis() - t0;
  ASSERT(waited >= 1400); /* 1.5 x 1 s, not before */
  close(p.fd);
  stop(&f);
}

static void test_persist_restart(void) {
  char dir[] = "/tmp/cm_broker_XXXXXX", path[64];
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof(path), "%s/db", dir);
  struct cm_mqtt_broker_opts o = {.persist = path};
  struct fix f = {0};
  start(&f, &o);
  struct peer p;
  struct cm_mqtt_msg ack, m;
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "durable", false, &ack), 0);
  subscribe(&f, &p, "d/#", 1, 1);
  close(p.fd);
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "pub", true, &ack), 0);
  publish(&p, "d/1", "queued", 1, 1, false);
  publish(&p, "d/2", "retained", 1, 2, true);
  ASSERT(peer_recv(&f, &p, &m, 2000) && m.cmd == CM_MQTT_PUBACK);
  ASSERT(peer_recv(&f, &p, &m, 2000) && m.cmd == CM_MQTT_PUBACK && m.id == 2);
  close(p.fd);
  stop(&f); /* saves */
  memset(&f, 0, sizeof(f));
  start(&f, &o);
  peer_open(&f, &p, 4);
  ASSERT_EQ(peer_connect(&f, &p, "durable", false, &ack), 0);
  ASSERT(ack.session_present);
  expect_publish(&f, &p, "d/1", "queued", 1, &m);
  expect_publish(&f, &p, "d/2", "retained", 1, &m); /* queued too: the session had d/# */
  ASSERT(!m.retain);
  struct cm_mqtt_sub s = {.topic = cm_str_c("d/2"), .qos = 0};
  struct cm_mqtt_msg sm = {.cmd = CM_MQTT_SUBSCRIBE, .id = 3, .subs = &s, .num_subs = 1};
  peer_send(&p, &sm);
  ASSERT(peer_recv(&f, &p, &m, 2000) && m.cmd == CM_MQTT_SUBACK);
  expect_publish(&f, &p, "d/2", "retained", 0, &m);
  ASSERT(m.retain);
  close(p.fd);
  stop(&f);
  /* A damaged file: the broker refuses to start over it. */
  FILE *fp = fopen(path, "r+b");
  ASSERT(fp != NULL && fseek(fp, 20, SEEK_SET) == 0 && fputc('X', fp) != EOF);
  fclose(fp);
  char err[256] = "";
  ASSERT_EQ(cm_mgr_init(&f.mgr), 0);
  ASSERT(cm_mqtt_broker_new(&f.mgr, &o, err, sizeof(err)) == NULL);
  ASSERT(strstr(err, "checksum") != NULL);
  cm_mgr_free(&f.mgr);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  RUN(test_connect_codes);
  RUN(test_qos_flows);
  RUN(test_session_will_takeover);
  RUN(test_retained_and_malformed);
  RUN(test_keepalive);
  RUN(test_persist_restart);
  return cm_test_done();
}
