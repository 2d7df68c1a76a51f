/* test_mqtt_codec.c: the pure MQTT codec (mqtt_codec.c).  Every parsed
 * input is placed right before a guard page (cm_test_guard), so a single
 * byte read past `len` crashes the test instead of passing by luck.  The
 * packets are written out byte by byte from the standards (MQTT 3.1.1 and
 * 5.0), not produced by our own writer, so writer and parser cannot agree
 * on a mistake. */
#include "test.h"

struct bytes {
  const char *s;
  size_t n;
};
#define B(lit) \
  { (lit), sizeof(lit) - 1 }

static int parse(struct bytes in, int version, struct cm_mqtt_msg *m) {
  return cm_mqtt_parse(cm_test_guard(in.s, in.n), in.n, version, m);
}

/* Parse a whole packet that must be valid; returns its fields. */
static struct cm_mqtt_msg parse_ok(struct bytes in, int version) {
  struct cm_mqtt_msg m;
  int r = parse(in, version, &m);
  if (r != (int) in.n) fprintf(stderr, "parse: %d (%s)\n", r, cm_mqtt_strerror(r));
  ASSERT_EQ(r, (int) in.n);
  ASSERT_EQ(m.raw.len, in.n);
  return m;
}

static bool bytes_eq(struct cm_str s, const char *b, size_t n) {
  return s.len == n && (n == 0 || memcmp(s.buf, b, n) == 0);
}
#define ASSERT_BYTES(slice, lit) ASSERT(bytes_eq((slice), (lit), sizeof(lit) - 1))

static void test_varint(void) {
  static const struct {
    uint32_t v;
    const char *enc;
    size_t n;
  } cases[] = {
      {0, "\x00", 1},
      {127, "\x7f", 1},
      {128, "\x80\x01", 2},
      {16383, "\xff\x7f", 2},
      {16384, "\x80\x80\x01", 3},
      {2097151, "\xff\xff\x7f", 3},
      {2097152, "\x80\x80\x80\x01", 4},
      {268435455, "\xff\xff\xff\x7f", 4},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    char out[4];
    ASSERT_EQ(cm_mqtt_varint_encode(cases[i].v, out), cases[i].n);
    ASSERT(memcmp(out, cases[i].enc, cases[i].n) == 0);
    uint32_t v = 1;
    ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard(cases[i].enc, cases[i].n), cases[i].n, &v),
              (int) cases[i].n);
    ASSERT_EQ(v, cases[i].v);
    /* every prefix asks for more */
    for (size_t n = 0; n < cases[i].n; n++)
      ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard(cases[i].enc, n), n, &v), 0);
  }
  char out[4];
  ASSERT_EQ(cm_mqtt_varint_encode(268435456, out), 0);
  uint32_t v;
  ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard("\xff\xff\xff\xff\x01", 5), 5, &v), -CM_MQTT_E_LENGTH);
  ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard("\xff\xff\xff\xff", 4), 4, &v), -CM_MQTT_E_LENGTH);
  /* [MQTT-1.5.5-1]: only the shortest form */
  ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard("\x80\x00", 2), 2, &v), -CM_MQTT_E_LENGTH);
  ASSERT_EQ(cm_mqtt_varint_decode(cm_test_guard("\xff\x80\x00", 3), 3, &v), -CM_MQTT_E_LENGTH);
  /* peek: the whole packet's length from its fixed header */
  size_t total = 0;
  ASSERT_EQ(cm_mqtt_peek(cm_test_guard("\x30", 1), 1, &total), 0);
  ASSERT_EQ(cm_mqtt_peek(cm_test_guard("\x30\x80", 2), 2, &total), 0);
  ASSERT_EQ(cm_mqtt_peek(cm_test_guard("\x30\x80\x01", 3), 3, &total), 3);
  ASSERT_EQ(total, 131);
  ASSERT_EQ(cm_mqtt_peek(cm_test_guard("\x30\xff\xff\xff\xff\x7f", 6), 6, &total), -CM_MQTT_E_LENGTH);
}

/* CONNECT as paho-mqtt sends it: clean session, keepalive 60, client id
 * "cid", will "w/t" = "bye" QoS 1 retained, user "u", password "p\0w". */
static const struct bytes connect311 =
    B("\x10\x21"
      "\x00\x04MQTT\x04\xee\x00\x3c"
      "\x00\x03"
      "cid"
      "\x00\x03w/t\x00\x03"
      "bye"
      "\x00\x01u\x00\x03p\x00w");

static void test_connect(void) {
  struct cm_mqtt_msg m = parse_ok(connect311, 0);
  ASSERT_EQ(m.cmd, CM_MQTT_CONNECT);
  ASSERT_EQ(m.version, 4);
  ASSERT(m.clean && m.has_will && m.will_retain && m.has_username && m.has_password);
  ASSERT_EQ(m.will_qos, 1);
  ASSERT_EQ(m.keepalive, 60);
  ASSERT_STR(m.client_id, "cid");
  ASSERT_STR(m.will_topic, "w/t");
  ASSERT_STR(m.will_data, "bye");
  ASSERT_STR(m.username, "u");
  ASSERT_BYTES(m.password, "p\0w");
  ASSERT_EQ(m.props.len, 0);
  /* the smallest: no flags, empty client id; MQTT 3.1's "MQIsdp" */
  m = parse_ok((struct bytes) B("\x10\x0c\x00\x04MQTT\x04\x00\x00\x00\x00\x00"), 4);
  ASSERT(!m.clean && !m.has_will && !m.has_username && m.client_id.len == 0);
  m = parse_ok((struct bytes) B("\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x0a\x00\x01x"), 4);
  ASSERT_EQ(m.version, 3);
  ASSERT_STR(m.client_id, "x");
}

/* MQTT 5 CONNECT: Session Expiry 30, a user property, Receive Maximum 10,
 * and a will with Will Delay 5 and Content Type "t". */
static const struct bytes connect5 =
    B("\x10\x30"
      "\x00\x04MQTT\x05\x06\x00\x0a"
      "\x10"
      "\x11\x00\x00\x00\x1e"
      "\x26\x00\x01k\x00\x02vv"
      "\x21\x00\x0a"
      "\x00\x02id"
      "\x09\x18\x00\x00\x00\x05\x03\x00\x01t"
      "\x00\x01w\x00\x02hi");

static void test_connect5(void) {
  struct cm_mqtt_msg m = parse_ok(connect5, 4);
  ASSERT_EQ(m.version, 5);
  ASSERT(m.clean && m.has_will && !m.has_username);
  ASSERT_STR(m.client_id, "id");
  ASSERT_STR(m.will_topic, "w");
  ASSERT_STR(m.will_data, "hi");
  struct cm_mqtt_prop p;
  size_t ofs = cm_mqtt_next_prop(m.props, 0, &p);
  ASSERT(ofs == 5 && p.id == CM_MQTT_PROP_SESSION_EXPIRY_INTERVAL && p.type == CM_MQTT_PROP_TYPE_INT &&
         p.iv == 30);
  ofs = cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_USER_PROPERTY && p.type == CM_MQTT_PROP_TYPE_STRING_PAIR);
  ASSERT_STR(p.key, "k");
  ASSERT_STR(p.val, "vv");
  ofs = cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_RECEIVE_MAXIMUM && p.type == CM_MQTT_PROP_TYPE_SHORT && p.iv == 10);
  ASSERT_EQ(cm_mqtt_next_prop(m.props, ofs, &p), 0);
  ASSERT_EQ(p.id, 0);
  ofs = cm_mqtt_next_prop(m.will_props, 0, &p);
  ASSERT(p.id == CM_MQTT_PROP_WILL_DELAY_INTERVAL && p.iv == 5);
  ofs = cm_mqtt_next_prop(m.will_props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_CONTENT_TYPE && p.type == CM_MQTT_PROP_TYPE_STRING);
  ASSERT_STR(p.val, "t");
  ASSERT_EQ(cm_mqtt_next_prop(m.will_props, ofs, &p), 0);
}

static void test_publish(void) {
  struct cm_mqtt_msg m = parse_ok((struct bytes) B("\x30\x07\x00\x03"
                                                   "a/bhi"),
                                  4);
  ASSERT(m.cmd == CM_MQTT_PUBLISH && m.qos == 0 && !m.dup && !m.retain && m.id == 0);
  ASSERT_STR(m.topic, "a/b");
  ASSERT_STR(m.data, "hi");
  m = parse_ok((struct bytes) B("\x3b\x07\x00\x01t\x12\x34\x00\xff"), 4);
  ASSERT(m.qos == 1 && m.dup && m.retain && m.id == 0x1234);
  ASSERT_BYTES(m.data, "\x00\xff");
  m = parse_ok((struct bytes) B("\x34\x05\x00\x01t\x00\x07"), 4);
  ASSERT(m.qos == 2 && m.id == 7 && m.data.len == 0);
  /* MQTT 5: Payload Format 1, two Subscription Identifiers (allowed to
   * repeat in PUBLISH), a Topic Alias and an empty topic */
  m = parse_ok((struct bytes) B("\x32\x10\x00\x00\x00\x09\x0a\x01\x01\x0b\x05\x0b\x80\x01\x23\x00\x02x"), 5);
  ASSERT(m.topic.len == 0 && m.id == 9);
  ASSERT_STR(m.data, "x");
  struct cm_mqtt_prop p;
  size_t ofs = cm_mqtt_next_prop(m.props, 0, &p);
  ASSERT(p.id == CM_MQTT_PROP_PAYLOAD_FORMAT_INDICATOR && p.type == CM_MQTT_PROP_TYPE_BYTE && p.iv == 1);
  ofs = cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER && p.type == CM_MQTT_PROP_TYPE_VARIABLE_INT &&
         p.iv == 5);
  ofs = cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER && p.iv == 128);
  ofs = cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT(p.id == CM_MQTT_PROP_TOPIC_ALIAS && p.iv == 2);
  ASSERT_EQ(cm_mqtt_next_prop(m.props, ofs, &p), 0);
  /* a payload past 16 KiB: a three-byte Remaining Length */
  static char big[20000 + 8];
  size_t rem = 3 + 20000;
  big[0] = 0x30, big[1] = (char) (0x80 | (rem & 0x7f)), big[2] = (char) (0x80 | ((rem >> 7) & 0x7f));
  big[3] = (char) (rem >> 14), big[4] = 0, big[5] = 1, big[6] = 'b';
  memset(big + 7, 'z', 20000);
  m = parse_ok((struct bytes){big, 7 + 20000}, 4);
  ASSERT_EQ(m.data.len, 20000);
  /* trailing bytes belong to the next packet */
  struct cm_mqtt_msg m2;
  ASSERT_EQ(parse((struct bytes) B("\x30\x03\x00\x01t\xc0\x00"), 4, &m2), 5);
}

static void test_acks(void) {
  struct cm_mqtt_msg m = parse_ok((struct bytes) B("\x20\x02\x00\x00"), 4);
  ASSERT(m.cmd == CM_MQTT_CONNACK && m.ack == 0 && !m.session_present);
  m = parse_ok((struct bytes) B("\x20\x02\x01\x05"), 4);
  ASSERT(m.ack == 5 && m.session_present);
  /* MQTT 5 CONNACK: reason 0x86 with Maximum QoS 1 and a reason string */
  m = parse_ok((struct bytes) B("\x20\x0a\x00\x86\x07\x24\x01\x1f\x00\x02no"), 5);
  ASSERT_EQ(m.ack, 0x86);
  struct cm_mqtt_prop p;
  size_t ofs = cm_mqtt_next_prop(m.props, 0, &p);
  ASSERT(p.id == CM_MQTT_PROP_MAXIMUM_QOS && p.iv == 1);
  cm_mqtt_next_prop(m.props, ofs, &p);
  ASSERT_STR(p.val, "no");
  static const uint8_t cmds[] = {CM_MQTT_PUBACK, CM_MQTT_PUBREC, CM_MQTT_PUBREL, CM_MQTT_PUBCOMP};
  for (size_t i = 0; i < CM_ARRAY_SIZE(cmds); i++) {
    char pkt[] = {(char) (cmds[i] << 4 | (cmds[i] == CM_MQTT_PUBREL ? 2 : 0)), 2, 0x01, 0x02, (char) 0x10, 0};
    m = parse_ok((struct bytes){pkt, 4}, 4);
    ASSERT(m.cmd == cmds[i] && m.id == 0x102 && m.ack == 0);
    /* MQTT 5: with a reason code, and with an empty property block */
    pkt[1] = 3;
    m = parse_ok((struct bytes){pkt, 5}, 5);
    ASSERT_EQ(m.ack, 0x10);
    pkt[1] = 4;
    m = parse_ok((struct bytes){pkt, 6}, 5);
    ASSERT(m.ack == 0x10 && m.props.len == 0);
    /* 3.1.1 has no reason code */
    pkt[1] = 3;
    ASSERT_EQ(parse((struct bytes){pkt, 5}, 4, &m), -CM_MQTT_E_TRAILING);
  }
  m = parse_ok((struct bytes) B("\xc0\x00"), 4);
  ASSERT_EQ(m.cmd, CM_MQTT_PINGREQ);
  m = parse_ok((struct bytes) B("\xd0\x00"), 4);
  ASSERT_EQ(m.cmd, CM_MQTT_PINGRESP);
  m = parse_ok((struct bytes) B("\xe0\x00"), 4);
  ASSERT_EQ(m.cmd, CM_MQTT_DISCONNECT);
  m = parse_ok((struct bytes) B("\xe0\x01\x04"), 5);
  ASSERT_EQ(m.ack, 4);
  m = parse_ok((struct bytes) B("\xf0\x00"), 5);
  ASSERT_EQ(m.cmd, CM_MQTT_AUTH);
  m = parse_ok((struct bytes) B("\xf0\x0a\x18\x08\x15\x00\x01m\x16\x00\x01\x00"), 5);
  ASSERT_EQ(m.ack, 0x18);
}

static void test_subscribe(void) {
  struct cm_mqtt_msg m = parse_ok((struct bytes) B("\x82\x0e\x00\x0a\x00\x03"
                                                   "a/+\x01\x00\x03x/#\x02"),
                                  4);
  ASSERT(m.cmd == CM_MQTT_SUBSCRIBE && m.id == 10);
  struct cm_mqtt_sub s;
  size_t ofs = cm_mqtt_next_sub(&m, 0, &s);
  ASSERT(ofs == 6 && s.qos == 1);
  ASSERT_STR(s.topic, "a/+");
  ofs = cm_mqtt_next_sub(&m, ofs, &s);
  ASSERT(s.qos == 2);
  ASSERT_STR(s.topic, "x/#");
  ASSERT_EQ(cm_mqtt_next_sub(&m, ofs, &s), 0);
  /* MQTT 5: a Subscription Identifier, options No Local | RAP | RH 2 */
  m = parse_ok((struct bytes) B("\x82\x09\x00\x01\x02\x0b\x07\x00\x01+\x2e"), 5);
  cm_mqtt_next_sub(&m, 0, &s);
  ASSERT(s.qos == 2 && s.opts == 0x2e);
  m = parse_ok((struct bytes) B("\x90\x05\x00\x0a\x01\x80\x02"), 4);
  ASSERT(m.cmd == CM_MQTT_SUBACK && m.id == 10);
  ASSERT_BYTES(m.data, "\x01\x80\x02");
  m = parse_ok((struct bytes) B("\x90\x05\x00\x0a\x00\x87\x91"), 5);
  ASSERT_BYTES(m.data, "\x87\x91");
  m = parse_ok((struct bytes) B("\xa2\x0a\x00\x05\x00\x01"
                                "a\x00\x03"
                                "b/#"),
               4);
  ASSERT(m.cmd == CM_MQTT_UNSUBSCRIBE && m.id == 5);
  ofs = cm_mqtt_next_sub(&m, 0, &s);
  ASSERT_STR(s.topic, "a");
  ASSERT_EQ(s.qos, 0);
  ofs = cm_mqtt_next_sub(&m, ofs, &s);
  ASSERT_STR(s.topic, "b/#");
  ASSERT_EQ(cm_mqtt_next_sub(&m, ofs, &s), 0);
  m = parse_ok((struct bytes) B("\xb0\x02\x00\x05"), 4);
  ASSERT(m.cmd == CM_MQTT_UNSUBACK && m.id == 5);
  m = parse_ok((struct bytes) B("\xb0\x05\x00\x05\x00\x00\x11"), 5);
  ASSERT_BYTES(m.data, "\x00\x11");
}

struct bad {
  struct bytes in;
  int version;
  int err; /* CM_MQTT_E_* */
};

static const struct bad bads[] = {
    {B("\x00\x00"), 4, CM_MQTT_E_TYPE},
    {B("\xf0\x00"), 4, CM_MQTT_E_TYPE}, /* AUTH is MQTT 5 only */
    {B("\xc1\x00"), 4, CM_MQTT_E_FLAGS},
    {B("\x60\x02\x00\x01"), 4, CM_MQTT_E_FLAGS}, /* PUBREL needs 0x2 */
    {B("\x80\x06\x00\x01\x00\x01t\x00"), 4, CM_MQTT_E_FLAGS},
    {B("\x36\x05\x00\x01t\x00\x01"), 4, CM_MQTT_E_QOS},
    {B("\x38\x03\x00\x01t"), 4, CM_MQTT_E_FLAGS}, /* DUP with QoS 0 */
    {B("\x30\xff\xff\xff\xff\x01"), 4, CM_MQTT_E_LENGTH},
    {B("\x30\x80\x00"), 4, CM_MQTT_E_LENGTH},
    {B("\xc0\x01\x00"), 4, CM_MQTT_E_TRAILING},
    {B("\xe0\x01\x00"), 4, CM_MQTT_E_TRAILING},
    {B("\x20\x03\x00\x00\x00"), 4, CM_MQTT_E_TRAILING},
    {B("\x20\x01\x00"), 4, CM_MQTT_E_SHORT},
    {B("\x20\x02\x02\x00"), 4, CM_MQTT_E_CONNFLAGS},
    {B("\x30\x01\x00"), 4, CM_MQTT_E_SHORT},
    {B("\x30\x03\x00\x05t"), 4, CM_MQTT_E_SHORT},
    {B("\x30\x02\x00\x00"), 4, CM_MQTT_E_TOPIC}, /* empty topic without an alias */
    {B("\x30\x03\x00\x00\x00"), 5, CM_MQTT_E_TOPIC},
    {B("\x30\x05\x00\x03"
       "a/+"),
     4, CM_MQTT_E_TOPIC},
    {B("\x30\x03\x00\x01#"), 4, CM_MQTT_E_TOPIC},
    {B("\x30\x03\x00\x01\x00"), 4, CM_MQTT_E_UTF8},
    {B("\x30\x04\x00\x02\xc0\x80"), 4, CM_MQTT_E_UTF8},         /* overlong NUL */
    {B("\x30\x05\x00\x03\xed\xa0\x80"), 4, CM_MQTT_E_UTF8},     /* surrogate */
    {B("\x30\x06\x00\x04\xf4\x90\x80\x80"), 4, CM_MQTT_E_UTF8}, /* over U+10FFFF */
    {B("\x30\x04\x00\x02\xe2\x82"), 4, CM_MQTT_E_UTF8},         /* cut short */
    {B("\x30\x03\x00\x01\xff"), 4, CM_MQTT_E_UTF8},
    {B("\x32\x05\x00\x01t\x00\x00"), 4, CM_MQTT_E_ID},
    {B("\x40\x02\x00\x00"), 4, CM_MQTT_E_ID},
    {B("\x82\x02\x00\x01"), 4, CM_MQTT_E_EMPTY},
    {B("\xa2\x02\x00\x01"), 4, CM_MQTT_E_EMPTY},
    {B("\x82\x0f\x00\x0a\x00\x03"
       "a/+\x01\x00\x04#\x00/#\x02"),
     4, CM_MQTT_E_UTF8},
    {B("\x82\x06\x00\x01\x00\x01t\x04"), 4, CM_MQTT_E_SUBOPTS},
    {B("\x82\x06\x00\x01\x00\x01t\x03"), 4, CM_MQTT_E_QOS},
    {B("\x82\x07\x00\x01\x00\x00\x01t\x40"), 5, CM_MQTT_E_SUBOPTS},
    {B("\x82\x07\x00\x01\x00\x00\x01t\x30"), 5, CM_MQTT_E_SUBOPTS}, /* Retain Handling 3 */
    {B("\x82\x05\x00\x01\x00\x00\x00"), 4, CM_MQTT_E_FILTER},
    {B("\x82\x07\x00\x01\x00\x02"
       "a+\x00"),
     4, CM_MQTT_E_FILTER},
    {B("\x82\x08\x00\x01\x00\x03#/a\x00"), 4, CM_MQTT_E_FILTER},
    {B("\xa2\x0b\x00\x05\x00\x01"
       "a\x00\x04"
       "b/#+"),
     4, CM_MQTT_E_FILTER},
    {B("\x82\x05\x00\x01\x00\x01t"), 4, CM_MQTT_E_SHORT},
    {B("\x90\x03\x00\x01\x03"), 4, CM_MQTT_E_CODE},
    {B("\x90\x02\x00\x01"), 4, CM_MQTT_E_SHORT},
    {B("\xb0\x03\x00\x01\x00"), 4, CM_MQTT_E_TRAILING},
    /* CONNECT */
    {B("\x10\x0c\x00\x04MQTX\x04\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_PROTO},
    {B("\x10\x0c\x00\x04MQTT\x06\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_VERSION},
    {B("\x10\x0c\x00\x04MQTT\x03\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_VERSION},
    {B("\x10\x0c\x00\x04MQTT\x04\x01\x00\x00\x00\x00"), 4, CM_MQTT_E_CONNFLAGS},
    {B("\x10\x0c\x00\x04MQTT\x04\x08\x00\x00\x00\x00"), 4, CM_MQTT_E_CONNFLAGS}, /* will QoS, no will */
    {B("\x10\x0c\x00\x04MQTT\x04\x20\x00\x00\x00\x00"), 4, CM_MQTT_E_CONNFLAGS}, /* will retain, no will */
    {B("\x10\x0c\x00\x04MQTT\x04\x1c\x00\x00\x00\x00"), 4, CM_MQTT_E_QOS},
    {B("\x10\x0e\x00\x04MQTT\x04\x40\x00\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_CONNFLAGS}, /* password alone */
    {B("\x10\x0c\x00\x04MQTT\x04\x80\x00\x00\x00\x00"), 4, CM_MQTT_E_SHORT}, /* user name missing */
    {B("\x10\x0d\x00\x04MQTT\x04\x00\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_TRAILING},
    {B("\x10\x11\x00\x04MQTT\x04\x04\x00\x00\x00\x00\x00\x01#\x00\x00"), 4, CM_MQTT_E_TOPIC},
    {B("\x10\x10\x00\x04MQTT\x04\x04\x00\x00\x00\x00\x00\x00\x00\x00"), 4, CM_MQTT_E_TOPIC},
    /* MQTT 5 properties */
    {B("\x10\x0d\x00\x04MQTT\x05\x00\x00\x00\x05\x00\x00"), 4, CM_MQTT_E_PROPS}, /* longer than the packet */
    {B("\x10\x0f\x00\x04MQTT\x05\x00\x00\x00\x02\x7f\x00\x00\x00"), 4, CM_MQTT_E_PROPS}, /* unknown id */
    {B("\x10\x0f\x00\x04MQTT\x05\x00\x00\x00\x02\x23\x00\x00\x00"), 4, CM_MQTT_E_PROPS}, /* cut short */
    {B("\x10\x10\x00\x04MQTT\x05\x00\x00\x00\x03\x23\x00\x01\x00\x00"), 4, CM_MQTT_E_PROP_ALLOWED},
    {B("\x10\x11\x00\x04MQTT\x05\x00\x00\x00\x04\x17\x01\x17\x01\x00\x00"), 4, CM_MQTT_E_PROP_DUP},
    {B("\x10\x10\x00\x04MQTT\x05\x00\x00\x00\x03\x21\x00\x00\x00\x00"), 4, CM_MQTT_E_PROP_VALUE},
    {B("\x10\x0f\x00\x04MQTT\x05\x00\x00\x00\x02\x17\x02\x00\x00"), 4, CM_MQTT_E_PROP_VALUE},
    {B("\x30\x09\x00\x01t\x05\x03\x00\x02\xc0\x80"), 5, CM_MQTT_E_UTF8},
    {B("\x30\x07\x00\x01t\x03\x08\x00\x00"), 5, CM_MQTT_E_PROP_VALUE}, /* empty Response Topic */
    {B("\x30\x06\x00\x01t\x02\x0b\x00"), 5, CM_MQTT_E_PROP_VALUE},     /* Subscription Identifier 0 */
    {B("\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01t\x00"), 5, CM_MQTT_E_PROP_DUP},
    {B("\x30\x05\x00\x01t\x01\x11"), 5, CM_MQTT_E_PROPS},
    {B("\x40\x04\x00\x01\x00\x01"), 5, CM_MQTT_E_PROPS},
};

static void test_bad(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(bads); i++) {
    struct cm_mqtt_msg m;
    int r = parse(bads[i].in, bads[i].version, &m);
    if (r != -bads[i].err) fprintf(stderr, "bads[%zu]: %d (%s)\n", i, r, cm_mqtt_strerror(r));
    ASSERT_EQ(r, -bads[i].err);
    ASSERT(strcmp(cm_mqtt_strerror(r), "unknown MQTT error") != 0);
  }
  /* an unknown level still names the packet and the level, for CONNACK 0x01 */
  struct cm_mqtt_msg m;
  ASSERT_EQ(parse((struct bytes) B("\x10\x0c\x00\x04MQTT\x06\x00\x00\x00\x00\x00"), 4, &m),
            -CM_MQTT_E_VERSION);
  ASSERT(m.cmd == CM_MQTT_CONNECT && m.version == 6);
  ASSERT_EQ(cm_mqtt_err_reason(-CM_MQTT_E_VERSION), 0x84);
  ASSERT_EQ(cm_mqtt_err_reason(-CM_MQTT_E_UTF8), 0x81);
  ASSERT_EQ(cm_mqtt_err_reason(-CM_MQTT_E_TOPIC), 0x90);
  ASSERT_EQ(cm_mqtt_err_reason(-999), 0x81);
  ASSERT(strcmp(cm_mqtt_strerror(-999), "unknown MQTT error") == 0);
}

/* Every proper prefix of a valid packet is "incomplete", never an error. */
static void test_prefixes(void) {
  const struct {
    struct bytes in;
    int version;
  } whole[] = {
      {connect311, 4},
      {connect5, 4},
      {B("\x30\x07\x00\x03"
         "a/bhi"),
       4},
      {B("\x82\x0e\x00\x0a\x00\x03"
         "a/+\x01\x00\x03x/#\x02"),
       4},
      {B("\x20\x0a\x00\x86\x07\x24\x01\x1f\x00\x02no"), 5},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(whole); i++) {
    struct cm_mqtt_msg m;
    struct bytes in = whole[i].in;
    for (size_t n = 0; n < in.n; n++) ASSERT_EQ(parse((struct bytes){in.s, n}, whole[i].version, &m), 0);
    ASSERT_EQ(parse(in, whole[i].version, &m), (int) in.n);
  }
}

/* Encode, compare with the bytes of the standard, parse back. */
static void check_encode(const struct cm_mqtt_msg *m, int version, struct bytes want) {
  long n = cm_mqtt_encode(m, version, NULL, 0);
  ASSERT_EQ(n, (long) want.n);
  char buf[256];
  memset(buf, 0x5a, sizeof(buf));
  /* too small by one: nothing written */
  ASSERT_EQ(cm_mqtt_encode(m, version, buf, (size_t) n - 1), n);
  for (size_t i = 0; i < sizeof(buf); i++) ASSERT(buf[i] == 0x5a);
  ASSERT_EQ(cm_mqtt_encode(m, version, buf, (size_t) n), n);
  if (memcmp(buf, want.s, want.n) != 0) {
    for (long i = 0; i < n; i++) fprintf(stderr, "%02x ", (unsigned char) buf[i]);
    fprintf(stderr, "\n");
  }
  ASSERT(memcmp(buf, want.s, want.n) == 0);
  ASSERT(buf[n] == 0x5a);
  struct cm_mqtt_msg back;
  ASSERT_EQ(parse(want, version, &back), (int) want.n);
  ASSERT_EQ(back.cmd, m->cmd);
}

static void test_encode(void) {
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_CONNECT,
                          .clean = true,
                          .keepalive = 60,
                          .client_id = cm_str_c("cid"),
                          .has_will = true,
                          .will_qos = 1,
                          .will_retain = true,
                          .will_topic = cm_str_c("w/t"),
                          .will_data = cm_str_c("bye"),
                          .has_username = true,
                          .username = cm_str_c("u"),
                          .has_password = true,
                          .password = cm_str_n("p\0w", 3)};
  check_encode(&m, 4, connect311);
  /* MQTT 5 CONNECT, properties from cm_mqtt_props_encode */
  struct cm_mqtt_prop cp[] = {
      {.id = CM_MQTT_PROP_SESSION_EXPIRY_INTERVAL, .iv = 30},
      {.id = CM_MQTT_PROP_USER_PROPERTY, .key = cm_str_c("k"), .val = cm_str_c("vv")},
      {.id = CM_MQTT_PROP_RECEIVE_MAXIMUM, .iv = 10},
  };
  struct cm_mqtt_prop wp[] = {
      {.id = CM_MQTT_PROP_WILL_DELAY_INTERVAL, .iv = 5},
      {.id = CM_MQTT_PROP_CONTENT_TYPE, .val = cm_str_c("t")},
  };
  char pb[64], wb[64];
  long pn = cm_mqtt_props_encode(cp, CM_ARRAY_SIZE(cp), pb, sizeof(pb));
  long wn = cm_mqtt_props_encode(wp, CM_ARRAY_SIZE(wp), wb, sizeof(wb));
  ASSERT(pn == 16 && wn == 9);
  ASSERT_EQ(cm_mqtt_props_encode(cp, CM_ARRAY_SIZE(cp), NULL, 0), 16);
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_CONNECT,
                           .clean = true,
                           .keepalive = 10,
                           .props = cm_str_n(pb, (size_t) pn),
                           .client_id = cm_str_c("id"),
                           .has_will = true,
                           .will_props = cm_str_n(wb, (size_t) wn),
                           .will_topic = cm_str_c("w"),
                           .will_data = cm_str_c("hi")};
  check_encode(&m, 5, connect5);
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_CONNACK};
  check_encode(&m, 4, (struct bytes) B("\x20\x02\x00\x00"));
  check_encode(&m, 5, (struct bytes) B("\x20\x03\x00\x00\x00"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("a/b"), .data = cm_str_c("hi")};
  check_encode(&m, 4,
               (struct bytes) B("\x30\x07\x00\x03"
                                "a/bhi"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBLISH,
                           .qos = 1,
                           .dup = true,
                           .retain = true,
                           .id = 0x1234,
                           .topic = cm_str_c("t"),
                           .data = cm_str_n("\0\xff", 2)};
  check_encode(&m, 4, (struct bytes) B("\x3b\x07\x00\x01t\x12\x34\x00\xff"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBREL, .id = 0x102};
  check_encode(&m, 4, (struct bytes) B("\x62\x02\x01\x02"));
  check_encode(&m, 5, (struct bytes) B("\x62\x02\x01\x02")); /* §3.6.2.1: the short form */
  m.ack = 0x92;
  check_encode(&m, 5, (struct bytes) B("\x62\x03\x01\x02\x92"));
  struct cm_mqtt_sub subs[] = {{cm_str_c("a/+"), 1, 0}, {cm_str_c("x/#"), 2, 0}};
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_SUBSCRIBE, .id = 10, .subs = subs, .num_subs = 2};
  check_encode(&m, 4,
               (struct bytes) B("\x82\x0e\x00\x0a\x00\x03"
                                "a/+\x01\x00\x03x/#\x02"));
  m.cmd = CM_MQTT_UNSUBSCRIBE;
  check_encode(&m, 5,
               (struct bytes) B("\xa2\x0d\x00\x0a\x00\x00\x03"
                                "a/+\x00\x03x/#"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_SUBACK, .id = 10, .data = cm_str_n("\x01\x80", 2)};
  check_encode(&m, 4, (struct bytes) B("\x90\x04\x00\x0a\x01\x80"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_UNSUBACK, .id = 5, .data = cm_str_n("\x00", 1)};
  check_encode(&m, 4, (struct bytes) B("\xb0\x02\x00\x05"));
  check_encode(&m, 5, (struct bytes) B("\xb0\x04\x00\x05\x00\x00"));
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PINGREQ};
  check_encode(&m, 4, (struct bytes) B("\xc0\x00"));
  m.cmd = CM_MQTT_PINGRESP;
  check_encode(&m, 4, (struct bytes) B("\xd0\x00"));
  m.cmd = CM_MQTT_DISCONNECT;
  check_encode(&m, 5, (struct bytes) B("\xe0\x00"));
  m.ack = 4;
  check_encode(&m, 4, (struct bytes) B("\xe0\x00"));
  check_encode(&m, 5, (struct bytes) B("\xe0\x01\x04"));
  m.cmd = CM_MQTT_AUTH;
  check_encode(&m, 5, (struct bytes) B("\xf0\x01\x04"));
  /* what cannot be encoded */
  ASSERT_EQ(cm_mqtt_encode(&m, 4, NULL, 0), -CM_EINVAL); /* AUTH in 3.1.1 */
  m = (struct cm_mqtt_msg){.cmd = 0};
  ASSERT_EQ(cm_mqtt_encode(&m, 4, NULL, 0), -CM_EINVAL);
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBLISH, .qos = 3, .topic = cm_str_c("t")};
  ASSERT_EQ(cm_mqtt_encode(&m, 4, NULL, 0), -CM_EINVAL);
  static char huge[70000];
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBLISH, .topic = cm_str_n(huge, sizeof(huge))};
  ASSERT_EQ(cm_mqtt_encode(&m, 4, NULL, 0), -CM_EINVAL);
  m = (struct cm_mqtt_msg){.cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("t"), .data = cm_str_n(huge, 268435455)};
  ASSERT_EQ(cm_mqtt_encode(&m, 4, NULL, 0), -CM_EINVAL);
  /* blocks built by an application, checked before sending */
  struct cm_mqtt_prop alias = {.id = CM_MQTT_PROP_TOPIC_ALIAS, .iv = 3};
  char ab[8];
  long an = cm_mqtt_props_encode(&alias, 1, ab, sizeof(ab));
  ASSERT_EQ(an, 3);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 3), CM_MQTT_PUBLISH), 0);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 3), CM_MQTT_CONNECT), -CM_MQTT_E_PROP_ALLOWED);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 3), 0), -CM_MQTT_E_PROP_ALLOWED);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 2), CM_MQTT_PUBLISH), -CM_MQTT_E_PROPS);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(wb, (size_t) wn), 0), 0);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(NULL, 0), CM_MQTT_PINGREQ), 0);
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 3), 16), -CM_MQTT_E_PROP_ALLOWED);
  alias.iv = 0;
  cm_mqtt_props_encode(&alias, 1, ab, sizeof(ab));
  ASSERT_EQ(cm_mqtt_props_check(cm_str_n(ab, 3), CM_MQTT_PUBLISH), -CM_MQTT_E_PROP_VALUE);
  struct cm_mqtt_prop unknown = {.id = 0x7f};
  ASSERT_EQ(cm_mqtt_props_encode(&unknown, 1, NULL, 0), -CM_EINVAL);
}

/* cm_mqtt_write appends whole packets to an iobuf, or nothing. */
static void test_write_iobuf(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 64);
  struct cm_mqtt_msg m = {.cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("a/b"), .data = cm_str_c("hi")};
  ASSERT_EQ(cm_mqtt_write(&io, &m, 4), 0);
  m.cmd = CM_MQTT_PINGREQ;
  ASSERT_EQ(cm_mqtt_write(&io, &m, 4), 0);
  ASSERT_EQ(io.len, 11);
  ASSERT(memcmp(cm_iobuf_data(&io),
                "\x30\x07\x00\x03"
                "a/bhi\xc0\x00",
                11) == 0);
  static char big[100];
  m = (struct cm_mqtt_msg){
      .cmd = CM_MQTT_PUBLISH, .topic = cm_str_c("t"), .data = cm_str_n(big, sizeof(big))};
  ASSERT_EQ(cm_mqtt_write(&io, &m, 4), -CM_EFULL);
  ASSERT_EQ(io.len, 11);
  m.qos = 3;
  ASSERT_EQ(cm_mqtt_write(&io, &m, 4), -CM_EINVAL);
  /* parse what was written, one packet at a time */
  struct cm_mqtt_msg back;
  ASSERT_EQ(cm_mqtt_parse(cm_iobuf_data(&io), io.len, 4, &back), 9);
  ASSERT_STR(back.topic, "a/b");
  ASSERT_EQ(cm_mqtt_parse(cm_iobuf_data(&io) + 9, 2, 4, &back), 2);
  ASSERT_EQ(back.cmd, CM_MQTT_PINGREQ);
  cm_iobuf_free(&io);
}

int main(void) {
  RUN(test_varint);
  RUN(test_connect);
  RUN(test_connect5);
  RUN(test_publish);
  RUN(test_acks);
  RUN(test_subscribe);
  RUN(test_bad);
  RUN(test_prefixes);
  RUN(test_encode);
  RUN(test_write_iobuf);
  return cm_test_done();
}
