/* mqtt_codec.c: the pure MQTT 3.1.1 / 5.0 codec (cm/mqtt.h).
 *
 * The parser reads a packet whose full length is known and present (the
 * fixed header says it) through a bounded reader: every field read checks
 * the packet's end, so a short field is an error, never a read past it.
 * The writers run the same body writer twice: once counting (to learn the
 * Remaining Length that precedes the body), once writing. */
#include <string.h>

#include "cm/mqtt.h"

/* ---- errors ------------------------------------------------------------ */

static const struct {
  uint8_t reason;
  const char *text;
} errs[] = {{0, "no error"},
#define CM_X(name, reason, text) {reason, text},
            CM_MQTT_ERR_LIST(CM_X)
#undef CM_X
};

static size_t err_index(int err) {
  size_t e = (size_t) (err < 0 ? -(long) err : err);
  return e < CM_ARRAY_SIZE(errs) ? e : 0;
}

const char *cm_mqtt_strerror(int err) {
  size_t e = err_index(err);
  return e == 0 && err != 0 ? "unknown MQTT error" : errs[e].text;
}

uint8_t cm_mqtt_err_reason(int err) {
  size_t e = err_index(err);
  return e == 0 ? 0x81 : errs[e].reason;
}

/* ---- variable byte integers (§1.5.5) ----------------------------------- */

int cm_mqtt_varint_decode(const char *buf, size_t len, uint32_t *v) {
  uint32_t x = 0;
  for (size_t i = 0; i < 4; i++) {
    if (i >= len) return 0;
    uint8_t b = (uint8_t) buf[i];
    x |= (uint32_t) (b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      /* [MQTT-1.5.5-1]: the shortest form only; a longer one ends in 0x00. */
      if (i > 0 && b == 0) return -CM_MQTT_E_LENGTH;
      *v = x;
      return (int) i + 1;
    }
  }
  return -CM_MQTT_E_LENGTH;
}

size_t cm_mqtt_varint_encode(uint32_t v, char out[4]) {
  if (v > CM_MQTT_MAX_REMAINING) return 0;
  size_t n = 0;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    out[n++] = (char) (v > 0 ? b | 0x80 : b);
  } while (v > 0);
  return n;
}

int cm_mqtt_peek(const char *buf, size_t len, size_t *total) {
  if (len < 2) return 0;
  uint32_t rem;
  int n = cm_mqtt_varint_decode(buf + 1, len - 1, &rem);
  if (n <= 0) return n;
  *total = 1 + (size_t) n + rem;
  return 1 + n;
}

/* ---- field checks ------------------------------------------------------ */

/* §1.5.4: well-formed UTF-8 (shortest forms, no surrogates, at most
 * U+10FFFF) without U+0000 [MQTT-1.5.4-1, -2]. */
static bool utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (c == 0) return false;
      i++;
      continue;
    }
    size_t k;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
      k = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
      k = 3, cp = c & 0x07, min = 0x10000;
    else
      return false;
    if (n - i <= k) return false;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return false;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += k + 1;
  }
  return true;
}

/* A topic name carries no wildcard (§4.7.1, [MQTT-3.3.2-2]). */
static bool topic_name_ok(struct cm_str t) {
  return memchr(t.buf == NULL ? "" : t.buf, '+', t.len) == NULL &&
         memchr(t.buf == NULL ? "" : t.buf, '#', t.len) == NULL;
}

/* A topic filter is not empty; '+' and '#' fill a whole level, '#' is the
 * last level (§4.7.1.2, §4.7.1.3). */
static bool topic_filter_ok(struct cm_str f) {
  if (f.len == 0) return false;
  for (size_t i = 0; i < f.len; i++) {
    char c = f.buf[i];
    if (c != '+' && c != '#') continue;
    bool starts = i == 0 || f.buf[i - 1] == '/';
    bool ends = i + 1 == f.len || f.buf[i + 1] == '/';
    if (!starts || !ends || (c == '#' && i + 1 != f.len)) return false;
  }
  return true;
}

/* ---- the bounded reader ----------------------------------------------- */

struct rd {
  const uint8_t *p, *end;
  int err; /* first CM_MQTT_E_* met; later reads return zeros */
};

static struct rd rd_over(struct cm_str s) {
  const uint8_t *p = (const uint8_t *) s.buf;
  return (struct rd){p, p == NULL ? p : p + s.len, 0};
}

static size_t rd_left(const struct rd *r) { return r->err ? 0 : (size_t) (r->end - r->p); }

static bool rd_need(struct rd *r, size_t n) {
  if (r->err) return false;
  if ((size_t) (r->end - r->p) >= n) return true;
  r->err = CM_MQTT_E_SHORT;
  return false;
}

static uint8_t rd_u8(struct rd *r) { return rd_need(r, 1) ? *r->p++ : 0; }

static uint16_t rd_u16(struct rd *r) {
  if (!rd_need(r, 2)) return 0;
  uint16_t v = (uint16_t) (r->p[0] << 8 | r->p[1]);
  r->p += 2;
  return v;
}

static uint32_t rd_u32(struct rd *r) {
  if (!rd_need(r, 4)) return 0;
  uint32_t v = (uint32_t) r->p[0] << 24 | (uint32_t) r->p[1] << 16 | (uint32_t) r->p[2] << 8 | r->p[3];
  r->p += 4;
  return v;
}

static uint32_t rd_varint(struct rd *r) {
  uint32_t v = 0;
  if (r->err) return 0;
  int n = cm_mqtt_varint_decode((const char *) r->p, (size_t) (r->end - r->p), &v);
  if (n <= 0) {
    r->err = n == 0 ? CM_MQTT_E_SHORT : CM_MQTT_E_LENGTH;
    return 0;
  }
  r->p += n;
  return v;
}

static struct cm_str rd_bytes(struct rd *r, size_t n) {
  if (!rd_need(r, n)) return cm_str_n(NULL, 0);
  struct cm_str s = cm_str_n(n > 0 ? (const char *) r->p : NULL, n);
  r->p += n;
  return s;
}

/* Binary Data (§1.5.6): a two-byte length, then the bytes. */
static struct cm_str rd_bin(struct rd *r) { return rd_bytes(r, rd_u16(r)); }

/* UTF-8 Encoded String (§1.5.4). */
static struct cm_str rd_utf8(struct rd *r) {
  struct cm_str s = rd_bin(r);
  if (!r->err && !utf8_ok((const uint8_t *) s.buf, s.len)) r->err = CM_MQTT_E_UTF8;
  return s;
}

/* ---- properties (§2.2.2) ----------------------------------------------- */

/* Where a property may appear: bit CM_MQTT_<cmd> per packet type, and bit 0
 * for the will properties of CONNECT (§3.1.3.2). */
#define IN(cmd) (1u << CM_MQTT_##cmd)
#define WILL 1u
#define ACKS (IN(PUBACK) | IN(PUBREC) | IN(PUBREL) | IN(PUBCOMP))
#define ANY (0xfffeu & ~IN(PINGREQ) & ~IN(PINGRESP))
enum { NONZERO = 1, BOOL01 = 2 };

static const struct {
  uint8_t type;   /* CM_MQTT_PROP_TYPE_* */
  uint8_t rules;  /* NONZERO, BOOL01 */
  uint16_t where; /* 0: not a property identifier */
} props[] = {
    [0x01] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(PUBLISH) | WILL},
    [0x02] = {CM_MQTT_PROP_TYPE_INT, 0, IN(PUBLISH) | WILL},
    [0x03] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(PUBLISH) | WILL},
    [0x08] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(PUBLISH) | WILL},
    [0x09] = {CM_MQTT_PROP_TYPE_BINARY_DATA, 0, IN(PUBLISH) | WILL},
    [0x0B] = {CM_MQTT_PROP_TYPE_VARIABLE_INT, NONZERO, IN(PUBLISH) | IN(SUBSCRIBE)},
    [0x11] = {CM_MQTT_PROP_TYPE_INT, 0, IN(CONNECT) | IN(CONNACK) | IN(DISCONNECT)},
    [0x12] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(CONNACK)},
    [0x13] = {CM_MQTT_PROP_TYPE_SHORT, 0, IN(CONNACK)},
    [0x15] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(CONNECT) | IN(CONNACK) | IN(AUTH)},
    [0x16] = {CM_MQTT_PROP_TYPE_BINARY_DATA, 0, IN(CONNECT) | IN(CONNACK) | IN(AUTH)},
    [0x17] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNECT)},
    [0x18] = {CM_MQTT_PROP_TYPE_INT, 0, WILL},
    [0x19] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNECT)},
    [0x1A] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(CONNACK)},
    [0x1C] = {CM_MQTT_PROP_TYPE_STRING, 0, IN(CONNACK) | IN(DISCONNECT)},
    [0x1F] = {CM_MQTT_PROP_TYPE_STRING, 0,
              IN(CONNACK) | ACKS | IN(SUBACK) | IN(UNSUBACK) | IN(DISCONNECT) | IN(AUTH)},
    [0x21] = {CM_MQTT_PROP_TYPE_SHORT, NONZERO, IN(CONNECT) | IN(CONNACK)},
    [0x22] = {CM_MQTT_PROP_TYPE_SHORT, 0, IN(CONNECT) | IN(CONNACK)},
    [0x23] = {CM_MQTT_PROP_TYPE_SHORT, NONZERO, IN(PUBLISH)},
    [0x24] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNACK)},
    [0x25] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNACK)},
    [0x26] = {CM_MQTT_PROP_TYPE_STRING_PAIR, 0, ANY | WILL},
    [0x27] = {CM_MQTT_PROP_TYPE_INT, NONZERO, IN(CONNECT) | IN(CONNACK)},
    [0x28] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNACK)},
    [0x29] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNACK)},
    [0x2A] = {CM_MQTT_PROP_TYPE_BYTE, BOOL01, IN(CONNACK)},
};

static bool prop_known(uint32_t id) { return id < CM_ARRAY_SIZE(props) && props[id].where != 0; }

/* One property at r; 0 or a CM_MQTT_E_* code. */
static int rd_prop(struct rd *r, struct cm_mqtt_prop *p) {
  memset(p, 0, sizeof(*p));
  uint32_t id = rd_varint(r);
  if (r->err) return CM_MQTT_E_PROPS;
  if (!prop_known(id)) return CM_MQTT_E_PROPS;
  p->id = (uint8_t) id;
  p->type = props[id].type;
  switch (p->type) {
    case CM_MQTT_PROP_TYPE_BYTE: p->iv = rd_u8(r); break;
    case CM_MQTT_PROP_TYPE_SHORT: p->iv = rd_u16(r); break;
    case CM_MQTT_PROP_TYPE_INT: p->iv = rd_u32(r); break;
    case CM_MQTT_PROP_TYPE_VARIABLE_INT: p->iv = rd_varint(r); break;
    case CM_MQTT_PROP_TYPE_STRING: p->val = rd_utf8(r); break;
    case CM_MQTT_PROP_TYPE_BINARY_DATA: p->val = rd_bin(r); break;
    default: p->key = rd_utf8(r), p->val = rd_utf8(r); break;
  }
  return r->err == 0 ? 0 : r->err == CM_MQTT_E_UTF8 ? CM_MQTT_E_UTF8 : CM_MQTT_E_PROPS;
}

/* The rules of §2.2.2.2 for a block found in packet `where` (an IN() bit,
 * or WILL): allowed there, repeated only where the standard lets a property
 * repeat (User Property; Subscription Identifier in PUBLISH, §3.3.4), and
 * values in their range. */
static int check_props(struct cm_str block, unsigned where) {
  struct rd r = rd_over(block);
  uint64_t seen = 0;
  while (r.p < r.end) {
    struct cm_mqtt_prop p;
    int e = rd_prop(&r, &p);
    if (e != 0) return e;
    if ((props[p.id].where & where) == 0) return CM_MQTT_E_PROP_ALLOWED;
    bool may_repeat = p.id == CM_MQTT_PROP_USER_PROPERTY ||
                      (p.id == CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER && where == IN(PUBLISH));
    if ((seen >> p.id & 1) && !may_repeat) return CM_MQTT_E_PROP_DUP;
    seen |= (uint64_t) 1 << p.id;
    if ((props[p.id].rules & NONZERO) && p.iv == 0) return CM_MQTT_E_PROP_VALUE;
    if ((props[p.id].rules & BOOL01) && p.iv > 1) return CM_MQTT_E_PROP_VALUE;
    /* §3.3.2.3.5: a Response Topic is a topic name. */
    if (p.id == CM_MQTT_PROP_RESPONSE_TOPIC && (p.val.len == 0 || !topic_name_ok(p.val)))
      return CM_MQTT_E_PROP_VALUE;
  }
  return 0;
}

int cm_mqtt_props_check(struct cm_str block, int cmd) {
  if (cmd < 0 || cmd > CM_MQTT_AUTH) return -CM_MQTT_E_PROP_ALLOWED;
  int e = check_props(block, cmd == 0 ? WILL : 1u << cmd);
  return -e;
}

/* A property block with its length prefix, checked for packet `where`. */
static struct cm_str rd_props(struct rd *r, unsigned where) {
  uint32_t n = rd_varint(r);
  if (r->err) {
    r->err = CM_MQTT_E_PROPS;
    return cm_str_n(NULL, 0);
  }
  if (n > rd_left(r)) {
    r->err = CM_MQTT_E_PROPS;
    return cm_str_n(NULL, 0);
  }
  struct cm_str block = rd_bytes(r, n);
  int e = check_props(block, where);
  if (e != 0) r->err = e;
  return block;
}

size_t cm_mqtt_next_prop(struct cm_str block, size_t ofs, struct cm_mqtt_prop *p) {
  memset(p, 0, sizeof(*p));
  if (ofs >= block.len) return 0;
  struct rd r = rd_over(block);
  r.p += ofs;
  if (rd_prop(&r, p) != 0) {
    memset(p, 0, sizeof(*p));
    return 0;
  }
  return (size_t) (r.p - (const uint8_t *) block.buf);
}

/* True if the block holds a Topic Alias (a PUBLISH may then omit its
 * topic name, §3.3.2.3.4). */
static bool has_topic_alias(struct cm_str block) {
  struct cm_mqtt_prop p;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(block, ofs, &p)) != 0;)
    if (p.id == CM_MQTT_PROP_TOPIC_ALIAS) return true;
  return false;
}

/* ---- packets ----------------------------------------------------------- */

/* Fixed-header flags (§2.1.3): fixed per type, but PUBLISH's. */
static int check_fixed(const struct cm_mqtt_msg *m, bool v5) {
  switch (m->cmd) {
    case 0: return CM_MQTT_E_TYPE;
    case CM_MQTT_AUTH:
      if (!v5) return CM_MQTT_E_TYPE;
      return m->flags == 0 ? 0 : CM_MQTT_E_FLAGS;
    case CM_MQTT_PUBLISH:
      if (m->qos == 3) return CM_MQTT_E_QOS;
      return m->qos == 0 && m->dup ? CM_MQTT_E_FLAGS : 0; /* [MQTT-3.3.1-2] */
    case CM_MQTT_PUBREL:
    case CM_MQTT_SUBSCRIBE:
    case CM_MQTT_UNSUBSCRIBE: return m->flags == 2 ? 0 : CM_MQTT_E_FLAGS;
    default: return m->flags == 0 ? 0 : CM_MQTT_E_FLAGS;
  }
}

static uint16_t rd_id(struct rd *r) {
  uint16_t id = rd_u16(r);
  if (!r->err && id == 0) r->err = CM_MQTT_E_ID; /* [MQTT-2.3.1-1] */
  return id;
}

/* §3.1: CONNECT.  The level comes from the packet itself. */
static int parse_connect(struct rd *r, struct cm_mqtt_msg *m) {
  struct cm_str name = rd_bin(r);
  uint8_t level = rd_u8(r);
  if (r->err) return r->err;
  m->version = level;
  bool mqtt = cm_str_eq(name, "MQTT"), isdp = cm_str_eq(name, "MQIsdp");
  if (!mqtt && !isdp) return CM_MQTT_E_PROTO;
  /* "MQIsdp" goes with level 3, "MQTT" with 4 and 5 (§3.1.2.2). */
  if (isdp ? level != CM_MQTT_V31 : (level != CM_MQTT_V311 && level != CM_MQTT_V5)) return CM_MQTT_E_VERSION;
  uint8_t f = rd_u8(r);
  m->keepalive = rd_u16(r);
  if (r->err) return r->err;
  m->clean = f & 0x02, m->has_will = f & 0x04, m->will_qos = (f >> 3) & 3;
  m->will_retain = f & 0x20, m->has_password = f & 0x40, m->has_username = f & 0x80;
  if (f & 0x01) return CM_MQTT_E_CONNFLAGS;   /* [MQTT-3.1.2-3] */
  if (m->will_qos == 3) return CM_MQTT_E_QOS; /* [MQTT-3.1.2-14] */
  if (!m->has_will && (m->will_qos != 0 || m->will_retain)) return CM_MQTT_E_CONNFLAGS;
  /* 3.1.1 ties a password to a user name [MQTT-3.1.2-22]; 5 does not. */
  if (level != CM_MQTT_V5 && m->has_password && !m->has_username) return CM_MQTT_E_CONNFLAGS;
  bool v5 = level == CM_MQTT_V5;
  if (v5) m->props = rd_props(r, IN(CONNECT));
  m->client_id = rd_utf8(r);
  if (m->has_will) {
    if (v5) m->will_props = rd_props(r, WILL);
    m->will_topic = rd_utf8(r);
    m->will_data = rd_bin(r);
    if (!r->err && (m->will_topic.len == 0 || !topic_name_ok(m->will_topic))) return CM_MQTT_E_TOPIC;
  }
  if (m->has_username) m->username = rd_utf8(r);
  if (m->has_password) m->password = rd_bin(r);
  return r->err;
}

/* §3.3: PUBLISH.  The payload is whatever follows the variable header. */
static int parse_publish(struct rd *r, struct cm_mqtt_msg *m, bool v5) {
  m->topic = rd_utf8(r);
  if (m->qos > 0) m->id = rd_id(r);
  if (v5) m->props = rd_props(r, IN(PUBLISH));
  if (r->err) return r->err;
  if (!topic_name_ok(m->topic)) return CM_MQTT_E_TOPIC;
  if (m->topic.len == 0 && !(v5 && has_topic_alias(m->props))) return CM_MQTT_E_TOPIC;
  m->data = rd_bytes(r, rd_left(r));
  return 0;
}

/* §3.4-3.7, §3.14, §3.15: an optional reason code, then optional
 * properties (MQTT 5; 3.1.1 has neither). */
static void rd_reason(struct rd *r, struct cm_mqtt_msg *m, bool v5) {
  if (!v5 || rd_left(r) == 0) return;
  m->ack = rd_u8(r);
  if (rd_left(r) > 0) m->props = rd_props(r, 1u << m->cmd);
}

/* §3.8, §3.10: the topic filter list (at least one, [MQTT-3.8.3-3],
 * [MQTT-3.10.3-2]). */
static int parse_filters(struct rd *r, struct cm_mqtt_msg *m, bool v5) {
  bool sub = m->cmd == CM_MQTT_SUBSCRIBE;
  const uint8_t *start = r->p;
  if (rd_left(r) == 0) return r->err ? r->err : CM_MQTT_E_EMPTY;
  while (rd_left(r) > 0) {
    struct cm_str f = rd_utf8(r);
    uint8_t opts = sub ? rd_u8(r) : 0;
    if (r->err) return r->err;
    if (!topic_filter_ok(f)) return CM_MQTT_E_FILTER;
    /* 3.1.1: only the QoS bits [MQTT-3.8.3-4]; 5: bits 6-7 reserved, and
     * Retain Handling 3 is a protocol error (§3.8.3.1). */
    if ((opts & 3) == 3) return CM_MQTT_E_QOS;
    if (v5 ? (opts & 0xc0) != 0 || (opts >> 4 & 3) == 3 : (opts & 0xfc) != 0) return CM_MQTT_E_SUBOPTS;
  }
  m->data = cm_str_n((const char *) start, (size_t) (r->p - start));
  return 0;
}

/* §3.9, §3.11: return / reason codes, one per filter. */
static int parse_codes(struct rd *r, struct cm_mqtt_msg *m, bool v5) {
  if (rd_left(r) == 0) return r->err ? r->err : CM_MQTT_E_SHORT;
  m->data = rd_bytes(r, rd_left(r));
  if (v5) return 0;
  for (size_t i = 0; i < m->data.len; i++) {
    uint8_t c = (uint8_t) m->data.buf[i];
    if (c > 2 && c != 0x80) return CM_MQTT_E_CODE; /* §3.9.3 of 3.1.1 */
  }
  return 0;
}

static int parse_body(struct rd *r, struct cm_mqtt_msg *m, bool v5) {
  switch (m->cmd) {
    case CM_MQTT_CONNECT: return parse_connect(r, m);
    case CM_MQTT_CONNACK: {
      uint8_t f = rd_u8(r);
      m->ack = rd_u8(r);
      if (r->err) return r->err;
      if (f & 0xfe) return CM_MQTT_E_CONNFLAGS; /* [MQTT-3.2.2-1] */
      m->session_present = f & 1;
      if (v5 && rd_left(r) > 0) m->props = rd_props(r, IN(CONNACK));
      return r->err;
    }
    case CM_MQTT_PUBLISH: return parse_publish(r, m, v5);
    case CM_MQTT_PUBACK:
    case CM_MQTT_PUBREC:
    case CM_MQTT_PUBREL:
    case CM_MQTT_PUBCOMP:
      m->id = rd_id(r);
      rd_reason(r, m, v5);
      return r->err;
    case CM_MQTT_SUBSCRIBE:
    case CM_MQTT_UNSUBSCRIBE:
      m->id = rd_id(r);
      if (v5) m->props = rd_props(r, 1u << m->cmd);
      if (r->err) return r->err;
      return parse_filters(r, m, v5);
    case CM_MQTT_SUBACK:
      m->id = rd_id(r);
      if (v5) m->props = rd_props(r, IN(SUBACK));
      return r->err ? r->err : parse_codes(r, m, v5);
    case CM_MQTT_UNSUBACK:
      m->id = rd_id(r);
      if (!v5) return r->err;
      m->props = rd_props(r, IN(UNSUBACK));
      if (!r->err && rd_left(r) > 0) m->data = rd_bytes(r, rd_left(r));
      return r->err;
    case CM_MQTT_DISCONNECT:
    case CM_MQTT_AUTH: rd_reason(r, m, v5); return r->err;
    default: return 0; /* PINGREQ, PINGRESP: no body */
  }
}

int cm_mqtt_parse(const char *buf, size_t len, int version, struct cm_mqtt_msg *m) {
  memset(m, 0, sizeof(*m));
  size_t total = 0;
  int hl = cm_mqtt_peek(buf, len, &total);
  if (hl <= 0) return hl;
  if (total > len) return 0;
  uint8_t b0 = (uint8_t) buf[0];
  bool v5 = version == CM_MQTT_V5;
  m->cmd = b0 >> 4, m->flags = b0 & 0x0f, m->version = (uint8_t) version;
  if (m->cmd == CM_MQTT_PUBLISH) m->dup = b0 & 0x08, m->qos = (b0 >> 1) & 3, m->retain = b0 & 1;
  m->raw = cm_str_n(buf, total);
  int e = check_fixed(m, v5);
  if (e == 0) {
    struct rd r = {(const uint8_t *) buf + hl, (const uint8_t *) buf + total, 0};
    e = parse_body(&r, m, m->cmd == CM_MQTT_CONNECT ? m->version == CM_MQTT_V5 : v5);
    if (e == 0 && r.p != r.end) e = CM_MQTT_E_TRAILING;
  }
  return e == 0 ? (int) total : -e;
}

size_t cm_mqtt_next_sub(const struct cm_mqtt_msg *m, size_t ofs, struct cm_mqtt_sub *s) {
  memset(s, 0, sizeof(*s));
  bool sub = m->cmd == CM_MQTT_SUBSCRIBE;
  if ((!sub && m->cmd != CM_MQTT_UNSUBSCRIBE) || ofs >= m->data.len) return 0;
  struct rd r = rd_over(m->data);
  r.p += ofs;
  s->topic = rd_bin(&r);
  if (sub) s->opts = rd_u8(&r), s->qos = s->opts & 3;
  if (r.err) {
    memset(s, 0, sizeof(*s));
    return 0;
  }
  return (size_t) (r.p - (const uint8_t *) m->data.buf);
}

/* ---- writers ------------------------------------------------------------ */

/* Writes into buf[0..size) while it fits, counts always. */
struct wr {
  char *buf;
  size_t size, n;
  bool bad; /* a field cannot be encoded */
};

static void w_bytes(struct wr *w, const void *d, size_t n) {
  if (n > 0 && w->n + n <= w->size) memcpy(w->buf + w->n, d, n);
  w->n += n;
}

static void w_u8(struct wr *w, unsigned v) {
  uint8_t b = (uint8_t) v;
  w_bytes(w, &b, 1);
}

static void w_u16(struct wr *w, unsigned v) {
  uint8_t b[2] = {(uint8_t) (v >> 8), (uint8_t) v};
  w_bytes(w, b, 2);
}

static void w_u32(struct wr *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v};
  w_bytes(w, b, 4);
}

static void w_varint(struct wr *w, size_t v) {
  char b[4];
  size_t n = v <= CM_MQTT_MAX_REMAINING ? cm_mqtt_varint_encode((uint32_t) v, b) : 0;
  if (n == 0) w->bad = true;
  w_bytes(w, b, n);
}

/* A two-byte length and the bytes (§1.5.4, §1.5.6). */
static void w_str(struct wr *w, struct cm_str s) {
  if (s.len > 0xffff) {
    w->bad = true;
    return;
  }
  w_u16(w, (unsigned) s.len);
  w_bytes(w, s.buf, s.len);
}

static void w_props(struct wr *w, struct cm_str block) {
  w_varint(w, block.len);
  w_bytes(w, block.buf, block.len);
}

long cm_mqtt_props_encode(const struct cm_mqtt_prop *p, size_t n, char *buf, size_t size) {
  struct wr w = {buf, size, 0, false};
  for (size_t i = 0; i < n; i++) {
    if (!prop_known(p[i].id)) return -CM_EINVAL;
    w_varint(&w, p[i].id);
    switch (props[p[i].id].type) {
      case CM_MQTT_PROP_TYPE_BYTE: w_u8(&w, p[i].iv); break;
      case CM_MQTT_PROP_TYPE_SHORT: w_u16(&w, p[i].iv); break;
      case CM_MQTT_PROP_TYPE_INT: w_u32(&w, p[i].iv); break;
      case CM_MQTT_PROP_TYPE_VARIABLE_INT: w_varint(&w, p[i].iv); break;
      case CM_MQTT_PROP_TYPE_STRING_PAIR: w_str(&w, p[i].key); /* fall through */
      default: w_str(&w, p[i].val); break;
    }
  }
  return w.bad || w.n > CM_MQTT_MAX_REMAINING ? -CM_EINVAL : (long) w.n;
}

static void write_connect(struct wr *w, const struct cm_mqtt_msg *m, int version) {
  bool v5 = version == CM_MQTT_V5;
  w_str(w, cm_str_c(version == CM_MQTT_V31 ? "MQIsdp" : "MQTT"));
  w_u8(w, version == CM_MQTT_V31 || v5 ? (unsigned) version : CM_MQTT_V311);
  unsigned f = (m->has_username ? 0x80u : 0) | (m->has_password ? 0x40u : 0) | (m->clean ? 0x02u : 0);
  if (m->has_will) f |= 0x04u | (unsigned) m->will_qos << 3 | (m->will_retain ? 0x20u : 0);
  if (m->will_qos > 2) w->bad = true;
  w_u8(w, f);
  w_u16(w, m->keepalive);
  if (v5) w_props(w, m->props);
  w_str(w, m->client_id);
  if (m->has_will) {
    if (v5) w_props(w, m->will_props);
    w_str(w, m->will_topic);
    w_str(w, m->will_data);
  }
  if (m->has_username) w_str(w, m->username);
  if (m->has_password) w_str(w, m->password);
}

static void write_list(struct wr *w, const struct cm_mqtt_msg *m) {
  if (m->subs == NULL) {
    w_bytes(w, m->data.buf, m->data.len);
    return;
  }
  for (size_t i = 0; i < m->num_subs; i++) {
    w_str(w, m->subs[i].topic);
    if (m->cmd != CM_MQTT_SUBSCRIBE) continue;
    if (m->subs[i].qos > 2) w->bad = true;
    w_u8(w, (m->subs[i].opts & 0xfcu) | m->subs[i].qos);
  }
}

/* The optional reason code and properties of §3.4.2.1 and its kin. */
static void write_reason(struct wr *w, const struct cm_mqtt_msg *m, bool v5) {
  if (!v5 || (m->ack == 0 && m->props.len == 0)) return;
  w_u8(w, m->ack);
  if (m->props.len > 0) w_props(w, m->props);
}

static void write_body(struct wr *w, const struct cm_mqtt_msg *m, int version) {
  bool v5 = version == CM_MQTT_V5;
  switch (m->cmd) {
    case CM_MQTT_CONNECT: write_connect(w, m, version); break;
    case CM_MQTT_CONNACK:
      w_u8(w, m->session_present ? 1 : 0);
      w_u8(w, m->ack);
      if (v5) w_props(w, m->props);
      break;
    case CM_MQTT_PUBLISH:
      w_str(w, m->topic);
      if (m->qos > 0) w_u16(w, m->id);
      if (v5) w_props(w, m->props);
      w_bytes(w, m->data.buf, m->data.len);
      break;
    case CM_MQTT_PUBACK:
    case CM_MQTT_PUBREC:
    case CM_MQTT_PUBREL:
    case CM_MQTT_PUBCOMP:
      w_u16(w, m->id);
      write_reason(w, m, v5);
      break;
    case CM_MQTT_SUBSCRIBE:
    case CM_MQTT_UNSUBSCRIBE:
      w_u16(w, m->id);
      if (v5) w_props(w, m->props);
      write_list(w, m);
      break;
    case CM_MQTT_SUBACK:
    case CM_MQTT_UNSUBACK:
      w_u16(w, m->id);
      if (v5) w_props(w, m->props);
      if (v5 || m->cmd == CM_MQTT_SUBACK) w_bytes(w, m->data.buf, m->data.len);
      break;
    case CM_MQTT_DISCONNECT:
    case CM_MQTT_AUTH: write_reason(w, m, v5); break;
    default: break; /* PINGREQ, PINGRESP */
  }
}

static unsigned first_byte(const struct cm_mqtt_msg *m) {
  unsigned b = (unsigned) m->cmd << 4;
  if (m->cmd == CM_MQTT_PUBLISH) b |= (m->dup ? 8u : 0) | (unsigned) m->qos << 1 | (m->retain ? 1u : 0);
  if (m->cmd == CM_MQTT_PUBREL || m->cmd == CM_MQTT_SUBSCRIBE || m->cmd == CM_MQTT_UNSUBSCRIBE) b |= 2;
  return b;
}

long cm_mqtt_encode(const struct cm_mqtt_msg *m, int version, char *buf, size_t size) {
  if (m->cmd < CM_MQTT_CONNECT || m->cmd > CM_MQTT_AUTH || m->qos > 2) return -CM_EINVAL;
  if (m->cmd == CM_MQTT_AUTH && version != CM_MQTT_V5) return -CM_EINVAL;
  struct wr count = {NULL, 0, 0, false};
  write_body(&count, m, version);
  if (count.bad || count.n > CM_MQTT_MAX_REMAINING) return -CM_EINVAL;
  char len[4];
  size_t ll = cm_mqtt_varint_encode((uint32_t) count.n, len);
  size_t total = 1 + ll + count.n;
  if (total > size) return (long) total;
  struct wr w = {buf, size, 0, false};
  w_u8(&w, first_byte(m));
  w_bytes(&w, len, ll);
  write_body(&w, m, version);
  return (long) total;
}

int cm_mqtt_write(struct cm_iobuf *io, const struct cm_mqtt_msg *m, int version) {
  long n = cm_mqtt_encode(m, version, NULL, 0);
  if (n < 0) return (int) n;
  int e = cm_iobuf_reserve(io, (size_t) n);
  if (e != 0) return e;
  cm_mqtt_encode(m, version, cm_iobuf_data(io) + io->len, (size_t) n);
  cm_iobuf_commit(io, (size_t) n);
  return 0;
}
