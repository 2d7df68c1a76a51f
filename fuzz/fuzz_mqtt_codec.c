/* fuzz_mqtt_codec.c: cm_mqtt_parse and the writers (cm/mqtt.h) on
 * arbitrary bytes.  The first byte picks the version the parser is told
 * (odd: 5, even: 3.1.1); the rest is the packet.
 *
 * Beyond "no sanitizer report", it checks the contracts the protocol
 * handlers rely on:
 *  - a result is a negative CM_MQTT_E_* with a text, 0, or a length in
 *    1..len that cm_mqtt_peek agrees with; every slice lies in the packet;
 *  - the result depends only on the packet's bytes: every proper prefix
 *    of an accepted packet is "incomplete";
 *  - the iterators walk an accepted property block or filter list exactly
 *    to its end, and cm_mqtt_props_encode rebuilds the same block;
 *  - whatever the parser accepts, the writer encodes, and the parser reads
 *    that encoding back to the same fields.
 * Parses run on exact-size copies so a read past the given length is an
 * ASan report, not a silent look at the next byte. */
#include <stddef.h>
#include <stdint.h>

#include "cm/mqtt.h"
#include "fuzz_util.h"

static void check_slices(const struct cm_mqtt_msg *m, const char *lo, const char *hi) {
  const struct cm_str all[] = {m->props,      m->raw,        m->topic,     m->data,     m->client_id,
                               m->will_props, m->will_topic, m->will_data, m->username, m->password};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) FUZZ_CHECK(fuzz_slice_in(all[i], lo, hi));
}

/* Walk a validated block; rebuild it from the walked properties. */
static void check_props(struct cm_str block) {
  /* a property takes at least two bytes */
  struct cm_mqtt_prop *list = malloc((block.len / 2 + 1) * sizeof(*list)), p;
  FUZZ_CHECK(list != NULL);
  size_t n = 0, ofs = 0, next;
  while ((next = cm_mqtt_next_prop(block, ofs, &p)) != 0) {
    FUZZ_CHECK(next > ofs && next <= block.len && p.id != 0 && next - ofs >= 2);
    list[n++] = p;
    ofs = next;
  }
  FUZZ_CHECK(ofs == block.len);
  long len = cm_mqtt_props_encode(list, n, NULL, 0);
  FUZZ_CHECK(len == (long) block.len);
  char *copy = fuzz_dup("", 0, 0);
  if (len > 0) {
    free(copy);
    copy = malloc((size_t) len);
    FUZZ_CHECK(copy != NULL);
    FUZZ_CHECK(cm_mqtt_props_encode(list, n, copy, (size_t) len) == len);
    FUZZ_CHECK(memcmp(copy, block.buf, (size_t) len) == 0);
  }
  free(copy);
  free(list);
}

static void check_subs(const struct cm_mqtt_msg *m) {
  struct cm_mqtt_sub s;
  size_t ofs = 0, next, count = 0;
  while ((next = cm_mqtt_next_sub(m, ofs, &s)) != 0) {
    FUZZ_CHECK(next > ofs && s.topic.len > 0 && s.qos <= 2);
    ofs = next;
    count++;
  }
  if (m->cmd == CM_MQTT_SUBSCRIBE || m->cmd == CM_MQTT_UNSUBSCRIBE)
    FUZZ_CHECK(count > 0 && ofs == m->data.len);
}

static int same(struct cm_str a, struct cm_str b) {
  return a.len == b.len && (a.len == 0 || !memcmp(a.buf, b.buf, a.len));
}

/* Encode what was parsed, parse it back: the same packet. */
static void check_roundtrip(const struct cm_mqtt_msg *m, int version) {
  int v = m->cmd == CM_MQTT_CONNECT ? m->version : version;
  long n = cm_mqtt_encode(m, v, NULL, 0);
  FUZZ_CHECK(n > 0);
  char *buf = malloc((size_t) n);
  FUZZ_CHECK(buf != NULL);
  FUZZ_CHECK(cm_mqtt_encode(m, v, buf, (size_t) n) == n);
  struct cm_mqtt_msg b;
  FUZZ_CHECK(cm_mqtt_parse(buf, (size_t) n, version, &b) == (int) n);
  FUZZ_CHECK(b.cmd == m->cmd && b.version == m->version && b.id == m->id && b.ack == m->ack);
  FUZZ_CHECK(b.qos == m->qos && b.dup == m->dup && b.retain == m->retain);
  FUZZ_CHECK(b.session_present == m->session_present && b.clean == m->clean && b.has_will == m->has_will);
  FUZZ_CHECK(b.has_username == m->has_username && b.has_password == m->has_password);
  FUZZ_CHECK(b.will_qos == m->will_qos && b.will_retain == m->will_retain && b.keepalive == m->keepalive);
  FUZZ_CHECK(same(b.props, m->props) && same(b.topic, m->topic) && same(b.data, m->data));
  FUZZ_CHECK(same(b.client_id, m->client_id) && same(b.will_props, m->will_props));
  FUZZ_CHECK(same(b.will_topic, m->will_topic) && same(b.will_data, m->will_data));
  FUZZ_CHECK(same(b.username, m->username) && same(b.password, m->password));
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int version = (data[0] & 1) ? CM_MQTT_V5 : CM_MQTT_V311;
  size_t len = size - 1;
  char *buf = fuzz_dup(data + 1, len, 0);
  struct cm_mqtt_msg m;
  int r = cm_mqtt_parse(buf, len, version, &m);
  if (r < 0) {
    FUZZ_CHECK(strcmp(cm_mqtt_strerror(r), "unknown MQTT error") != 0);
    FUZZ_CHECK(cm_mqtt_err_reason(r) >= 0x80);
  } else if (r > 0) {
    size_t total = 0;
    FUZZ_CHECK((size_t) r <= len && cm_mqtt_peek(buf, len, &total) > 0 && total == (size_t) r);
    FUZZ_CHECK(m.raw.buf == buf && m.raw.len == (size_t) r);
    check_slices(&m, buf, buf + r);
    FUZZ_CHECK(m.cmd >= CM_MQTT_CONNECT && m.cmd <= CM_MQTT_AUTH && m.qos <= 2 && m.will_qos <= 2);
    check_props(m.props);
    check_props(m.will_props);
    check_subs(&m);
    check_roundtrip(&m, version);
    /* every proper prefix is incomplete (two samples: cheap, and the
     * guard-less prefix copies still catch over-reads) */
    size_t cuts[] = {(size_t) r - 1, (size_t) r / 2};
    for (size_t i = 0; i < 2; i++) {
      char *pre = fuzz_dup(buf, cuts[i], 0);
      struct cm_mqtt_msg p;
      FUZZ_CHECK(cm_mqtt_parse(pre, cuts[i], version, &p) == 0);
      free(pre);
    }
  }
  free(buf);
  return 0;
}
