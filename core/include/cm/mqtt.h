/* cm/mqtt.h: MQTT 3.1.1 (OASIS 2014) and MQTT 5.0 (OASIS 2019).
 *
 * The codec (mqtt_codec.c) is pure: cm_mqtt_parse() turns the bytes of one
 * control packet into a struct cm_mqtt_msg of slices into those bytes, and
 * cm_mqtt_encode() / cm_mqtt_write() turn such a struct back into bytes.
 * No connection, no allocation, no I/O; one packet per call.
 *
 * Versions are MQTT "protocol levels": 3 (MQTT 3.1, "MQIsdp"), 4 (3.1.1)
 * and 5.  Levels 3 and 4 share every packet layout but CONNECT's protocol
 * name; level 5 adds properties and reason codes.  Functions that take a
 * `version` treat every value other than 5 as the 3.1.1 layout.
 *
 * Section numbers below (§) are those of the MQTT 5.0 standard; the 3.1.1
 * rules cited as [MQTT-x.y.z-n] are its conformance statements. */
#ifndef CM_MQTT_H
#define CM_MQTT_H

#include "base.h"
#include "event.h"
#include "iobuf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Control packet types (§2.1.2): the high nibble of the first byte.  The
 * numbers are part of the Python contract (MqttMessage.cmd). */
enum cm_mqtt_cmd {
  CM_MQTT_CONNECT = 1,
  CM_MQTT_CONNACK = 2,
  CM_MQTT_PUBLISH = 3,
  CM_MQTT_PUBACK = 4,
  CM_MQTT_PUBREC = 5,
  CM_MQTT_PUBREL = 6,
  CM_MQTT_PUBCOMP = 7,
  CM_MQTT_SUBSCRIBE = 8,
  CM_MQTT_SUBACK = 9,
  CM_MQTT_UNSUBSCRIBE = 10,
  CM_MQTT_UNSUBACK = 11,
  CM_MQTT_PINGREQ = 12,
  CM_MQTT_PINGRESP = 13,
  CM_MQTT_DISCONNECT = 14,
  CM_MQTT_AUTH = 15, /* MQTT 5 only */
};

/* Protocol levels (CONNECT's "Protocol Level" byte). */
enum { CM_MQTT_V31 = 3, CM_MQTT_V311 = 4, CM_MQTT_V5 = 5 };

#define CM_MQTT_MAX_REMAINING 268435455u /* largest Remaining Length: 4 bytes of 7 bits (§1.5.5) */
#define CM_MQTT_MAX_HEADER 5             /* fixed header: type byte + up to 4 length bytes */

/* Property value types.  The numbers are part of the Python contract
 * (MQTT_PROP_TYPE_*). */
enum cm_mqtt_prop_type {
  CM_MQTT_PROP_TYPE_BYTE = 0,         /* iv: one byte */
  CM_MQTT_PROP_TYPE_STRING = 1,       /* val: UTF-8 string */
  CM_MQTT_PROP_TYPE_STRING_PAIR = 2,  /* key, val: UTF-8 strings */
  CM_MQTT_PROP_TYPE_BINARY_DATA = 3,  /* val: bytes */
  CM_MQTT_PROP_TYPE_VARIABLE_INT = 4, /* iv: variable byte integer */
  CM_MQTT_PROP_TYPE_INT = 5,          /* iv: four-byte integer */
  CM_MQTT_PROP_TYPE_SHORT = 6,        /* iv: two-byte integer */
};

/* Property identifiers (§2.2.2.2). */
enum cm_mqtt_prop_id {
  CM_MQTT_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01,
  CM_MQTT_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02,
  CM_MQTT_PROP_CONTENT_TYPE = 0x03,
  CM_MQTT_PROP_RESPONSE_TOPIC = 0x08,
  CM_MQTT_PROP_CORRELATION_DATA = 0x09,
  CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B,
  CM_MQTT_PROP_SESSION_EXPIRY_INTERVAL = 0x11,
  CM_MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12,
  CM_MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
  CM_MQTT_PROP_AUTHENTICATION_METHOD = 0x15,
  CM_MQTT_PROP_AUTHENTICATION_DATA = 0x16,
  CM_MQTT_PROP_REQUEST_PROBLEM_INFORMATION = 0x17,
  CM_MQTT_PROP_WILL_DELAY_INTERVAL = 0x18,
  CM_MQTT_PROP_REQUEST_RESPONSE_INFORMATION = 0x19,
  CM_MQTT_PROP_RESPONSE_INFORMATION = 0x1A,
  CM_MQTT_PROP_SERVER_REFERENCE = 0x1C,
  CM_MQTT_PROP_REASON_STRING = 0x1F,
  CM_MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
  CM_MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
  CM_MQTT_PROP_TOPIC_ALIAS = 0x23,
  CM_MQTT_PROP_MAXIMUM_QOS = 0x24,
  CM_MQTT_PROP_RETAIN_AVAILABLE = 0x25,
  CM_MQTT_PROP_USER_PROPERTY = 0x26,
  CM_MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
  CM_MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28,
  CM_MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29,
  CM_MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A,
};

/* One property.  Slices point into the property block it came from. */
struct cm_mqtt_prop {
  uint8_t id;        /* CM_MQTT_PROP_* */
  uint8_t type;      /* CM_MQTT_PROP_TYPE_*, implied by `id` */
  uint32_t iv;       /* BYTE, SHORT, INT, VARIABLE_INT values */
  struct cm_str key; /* STRING_PAIR: the name; empty otherwise */
  struct cm_str val; /* STRING, BINARY_DATA, STRING_PAIR values; empty otherwise */
};

/* One entry of a SUBSCRIBE or UNSUBSCRIBE list. */
struct cm_mqtt_sub {
  struct cm_str topic; /* topic filter */
  uint8_t qos;         /* SUBSCRIBE: maximum QoS (options bits 0-1); 0 for UNSUBSCRIBE */
  uint8_t opts;        /* SUBSCRIBE: the whole options byte (§3.8.3.1: bit 2 No Local,
                        * bit 3 Retain As Published, bits 4-5 Retain Handling;
                        * 3.1.1 has the QoS only); 0 for UNSUBSCRIBE */
};

/* One control packet.  The parser fills every field (fields a packet does
 * not have are zero / empty); slices point into the parsed buffer, valid as
 * long as it is.  The writers read the fields the packet type has. */
struct cm_mqtt_msg {
  /* every packet */
  uint8_t cmd;         /* CM_MQTT_* */
  uint8_t flags;       /* low nibble of the first byte, as sent */
  uint8_t version;     /* the `version` given to the parser; CONNECT: its Protocol Level */
  uint16_t id;         /* Packet Identifier (PUBLISH with QoS > 0, PUBACK..UNSUBACK), else 0 */
  uint8_t ack;         /* CONNACK: return code (3.1.1) / reason code (5); MQTT 5 PUBACK,
                    * PUBREC, PUBREL, PUBCOMP, DISCONNECT, AUTH: reason code (0 when
                    * the packet omits it) */
  struct cm_str props; /* MQTT 5 properties, without their length prefix: walk them
                        * with cm_mqtt_next_prop() (already validated by the parser);
                        * the writers copy them as they are */
  struct cm_str raw;   /* parser: the whole packet, fixed header included */
  /* PUBLISH (§3.3) */
  uint8_t qos;         /* 0, 1 or 2 */
  bool dup;            /* redelivery */
  bool retain;         /* retain flag */
  struct cm_str topic; /* topic name; may be empty in MQTT 5 with a Topic Alias */
  struct cm_str data;  /* PUBLISH: the payload.  SUBSCRIBE, UNSUBSCRIBE: the encoded
                        * topic filter list (cm_mqtt_next_sub).  SUBACK, UNSUBACK: the
                        * return / reason codes, one byte per filter */
  /* CONNACK (§3.2) */
  bool session_present;
  /* CONNECT (§3.1) */
  bool clean;    /* Clean Session (3.1.1) / Clean Start (5) */
  bool has_will; /* a will message follows */
  bool has_username, has_password;
  bool will_retain;
  uint8_t will_qos;
  uint16_t keepalive;       /* seconds; 0: off */
  struct cm_str client_id;  /* may be empty */
  struct cm_str will_props; /* MQTT 5 will properties (cm_mqtt_next_prop) */
  struct cm_str will_topic; /* will topic name, when has_will */
  struct cm_str will_data;  /* will payload, when has_will */
  struct cm_str username;   /* when has_username */
  struct cm_str password;   /* when has_password */
  /* writers only: SUBSCRIBE / UNSUBSCRIBE list given as an array; when
   * `subs` is NULL the writers copy `data` (an encoded list) instead */
  const struct cm_mqtt_sub *subs;
  size_t num_subs;
};

/* Why a packet was refused.  X(NAME, MQTT 5 reason code for a DISCONNECT
 * or CONNACK that reports it, text).  The parser returns -CM_MQTT_E_NAME. */
#define CM_MQTT_ERR_LIST(X)                                     \
  X(TYPE, 0x81, "reserved packet type")                         \
  X(FLAGS, 0x81, "reserved fixed-header flags set")             \
  X(LENGTH, 0x81, "bad remaining length encoding")              \
  X(SHORT, 0x81, "field runs past the end of the packet")       \
  X(TRAILING, 0x81, "bytes after the last field of the packet") \
  X(UTF8, 0x81, "string is not valid MQTT UTF-8")               \
  X(QOS, 0x81, "invalid QoS")                                   \
  X(ID, 0x82, "packet identifier 0")                            \
  X(TOPIC, 0x90, "invalid topic name")                          \
  X(FILTER, 0x82, "invalid topic filter")                       \
  X(EMPTY, 0x82, "no topic filter")                             \
  X(SUBOPTS, 0x81, "reserved subscription option bits set")     \
  X(CODE, 0x81, "invalid return code")                          \
  X(PROTO, 0x84, "protocol name is not MQTT")                   \
  X(VERSION, 0x84, "unsupported protocol level")                \
  X(CONNFLAGS, 0x81, "invalid CONNECT flags")                   \
  X(PROPS, 0x81, "malformed properties")                        \
  X(PROP_ALLOWED, 0x82, "property not allowed in this packet")  \
  X(PROP_DUP, 0x82, "property repeated")                        \
  X(PROP_VALUE, 0x82, "property value out of range")

enum cm_mqtt_err {
  CM_MQTT_E_NONE = 0,
#define CM_X(name, reason, text) CM_MQTT_E_##name,
  CM_MQTT_ERR_LIST(CM_X)
#undef CM_X
};

/* Text for a parser error (-CM_MQTT_E_* or its positive value); never NULL. */
const char *cm_mqtt_strerror(int err);
/* The MQTT 5 reason code that reports parser error `err` (either sign):
 * 0x81 Malformed Packet, 0x82 Protocol Error, 0x84 Unsupported Protocol
 * Version, 0x90 Topic Name invalid.  0x81 for unknown values. */
uint8_t cm_mqtt_err_reason(int err);

/* Decode a Variable Byte Integer (§1.5.5) at buf[0..len).  Returns the bytes
 * it took (1..4) and sets *v, 0 if more bytes are needed, -CM_MQTT_E_LENGTH
 * if it is longer than 4 bytes or not in its shortest form. */
int cm_mqtt_varint_decode(const char *buf, size_t len, uint32_t *v);
/* Encode `v` as a Variable Byte Integer into out[0..4).  Returns its length
 * (1..4), 0 if v > CM_MQTT_MAX_REMAINING. */
size_t cm_mqtt_varint_encode(uint32_t v, char out[4]);

/* Read the fixed header of the packet at buf[0..len) without parsing the
 * rest, so a caller can refuse an oversized packet before buffering it.
 * Returns the fixed header's length (2..5) and sets *total to the length of
 * the whole packet; 0 if the header is incomplete; -CM_MQTT_E_LENGTH if the
 * Remaining Length is malformed. */
int cm_mqtt_peek(const char *buf, size_t len, size_t *total);

/* Parse the control packet at the start of buf[0..len), sent by a peer that
 * speaks `version` (the level agreed in CONNECT; CONNECT itself carries its
 * own).  Pure: fills `m` (every field, never NULL) with slices into `buf`.
 * Returns the packet's length (the bytes to consume) when it is complete
 * and valid, 0 when more bytes are needed (only the packet's own length
 * decides: nothing after it is read), or -CM_MQTT_E_* when it is invalid:
 * every MUST of the standard a receiver can check on one packet (reserved
 * flags and bits, lengths, UTF-8 strings (§1.5.4: well-formed, no U+0000,
 * no surrogates), topic names without wildcards, topic filters with '+'
 * and '#' only as whole levels, '#' last, non-zero packet identifiers, at
 * least one filter per (UN)SUBSCRIBE, and MQTT 5 properties: known
 * identifiers, allowed in this packet, not repeated unless the standard
 * says so, values in range).  A CONNECT with an unknown Protocol Level
 * returns -CM_MQTT_E_VERSION with m->cmd and m->version set, so a server
 * can answer CONNACK 0x01 (3.1.1) / 0x84 (5) as §3.1.2.2 asks. */
int cm_mqtt_parse(const char *buf, size_t len, int version, struct cm_mqtt_msg *m);

/* Walk a property block (m->props or m->will_props): start with ofs 0; each
 * call fills *p with the property at `ofs` and returns the offset of the
 * next one.  Returns 0, leaving *p zeroed, at the end of the block or at
 * anything malformed (blocks the parser accepted never are). */
size_t cm_mqtt_next_prop(struct cm_str props, size_t ofs, struct cm_mqtt_prop *p);
/* Walk the topic filter list of a parsed SUBSCRIBE or UNSUBSCRIBE `m` (its
 * `data`): start with ofs 0; returns the offset of the next entry after
 * filling *s, or 0 at the end (or for any other packet type). */
size_t cm_mqtt_next_sub(const struct cm_mqtt_msg *m, size_t ofs, struct cm_mqtt_sub *s);

/* Check a property block as the parser checks the blocks it reads: for
 * packet type `cmd` (CM_MQTT_*), or 0 for the will properties of CONNECT.
 * Returns 0, or -CM_MQTT_E_* (PROPS, UTF8, PROP_ALLOWED, PROP_DUP,
 * PROP_VALUE).  For a block an application built before sending it. */
int cm_mqtt_props_check(struct cm_str props, int cmd);
/* Encode `n` properties into buf[0..size) as a property block (without its
 * length prefix, which the writers add), ready for m->props.  The type of
 * each comes from its id (p->type is ignored).  Returns the block's length;
 * writes only if it fits in `size`, so a first call with size 0 measures.
 * Returns -CM_EINVAL for an unknown id or a string over 65,535 bytes. */
long cm_mqtt_props_encode(const struct cm_mqtt_prop *p, size_t n, char *buf, size_t size);

/* Encode packet `m` for a peer speaking `version` into buf[0..size).
 * Every packet type; the fields read are those the parser fills for it
 * (version 5 adds the properties and reason codes; the short forms of
 * §3.4.2.1 and §3.14.2.1 are used when the reason is 0 and there are no
 * properties).  The packet type comes from m->cmd, the first byte's flags
 * from the type (PUBLISH: dup, qos, retain; PUBREL, SUBSCRIBE,
 * UNSUBSCRIBE: 0x2).  Nothing is validated beyond what encoding needs.
 * Returns the packet's length, and writes it only if it fits in `size` (a
 * call with size 0 measures).  Returns -CM_EINVAL for an unknown type, a
 * QoS over 2, a string over 65,535 bytes or a packet over the MQTT limit. */
long cm_mqtt_encode(const struct cm_mqtt_msg *m, int version, char *buf, size_t size);
/* cm_mqtt_encode() appended to `io`.  Returns 0, or a negative CM_E* code
 * (-CM_EINVAL, -CM_EFULL, -CM_ENOMEM) with nothing appended. */
int cm_mqtt_write(struct cm_iobuf *io, const struct cm_mqtt_msg *m, int version);

/* ---- mqtt.c: the client and the raw listener ------------------------------
 *
 * The protocol handler (cm_mqtt_handler) cuts c->recv into packets and
 * fires, for every complete packet, CM_EV_MQTT_CMD (struct cm_mqtt_msg *,
 * slices into c->recv valid during the event).  Before that CMD event:
 *  - CONNACK fires CM_EV_MQTT_OPEN (const int *: the return / reason
 *    code); a non-zero code closes the connection after the CMD event;
 *  - PUBLISH fires CM_EV_MQTT_MSG, after its acknowledgement is queued:
 *    PUBACK for QoS 1, PUBREC for QoS 2 (§4.3).
 * A PUBREC received is answered with PUBREL, a PUBREL with PUBCOMP.  A
 * packet the codec refuses fails the connection: CM_EV_ERROR with
 * "MQTT: <reason>", then it closes.  Nothing else is automatic: no
 * PINGREQ, no retransmission, no keep-alive enforcement.
 *
 * On an accepted connection (cm_mqtt_listen) the version is 3.1.1 until a
 * CONNECT says otherwise; the application plays the broker (it answers
 * CONNECT with a CONNACK it sends itself). */

struct cm_mgr;
struct cm_conn;

/* What CONNECT carries (§3.1).  Zero-initialise, then set what you need. */
struct cm_mqtt_opts {
  uint8_t version;          /* CM_MQTT_V311 (also for 0), CM_MQTT_V5 or CM_MQTT_V31 */
  bool clean;               /* Clean Session / Clean Start */
  uint16_t keepalive;       /* seconds, sent as is (nothing pings for you) */
  struct cm_str client_id;  /* empty: 20 random alphanumerics */
  struct cm_str username;   /* sent when not empty */
  struct cm_str password;   /* sent when not empty */
  struct cm_str will_topic; /* a will is sent when not empty */
  struct cm_str will_message;
  uint8_t will_qos;
  bool will_retain;
  struct cm_str props;      /* MQTT 5 CONNECT properties (cm_mqtt_props_encode) */
  struct cm_str will_props; /* MQTT 5 will properties */
};

/* Connect to an MQTT broker at `url` ("mqtt://host:port"; 1883 when no
 * port is given) as cm_connect() does, and queue CONNECT at once: it goes
 * out as soon as the connection is established.  Returns NULL for errors
 * found at once (those of cm_connect, or options CONNECT cannot carry: a
 * QoS over 2, a field over 65,535 bytes, a password without a user name
 * before MQTT 5). */
struct cm_conn *cm_mqtt_connect(struct cm_mgr *mgr, const char *url, const struct cm_mqtt_opts *opts,
                                cm_handler_fn fn, void *fn_data);
/* Listen for MQTT clients on `url` ("mqtt://host:port"): every accepted
 * connection gets the protocol handler.  Not a broker.  Same contract as
 * cm_listen(). */
struct cm_conn *cm_mqtt_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* The protocol handler, for setting c->pfn by hand. */
void cm_mqtt_handler(struct cm_conn *c, int ev, void *ev_data);
/* The version packets on `c` are encoded and parsed with: the client's,
 * the CONNECT's on an accepted connection, 3.1.1 on any other connection. */
int cm_mqtt_version(const struct cm_conn *c);

/* The senders encode with cm_mqtt_version(c) and queue the packet with
 * cm_send(), on any connection (on one that is not MQTT they write the
 * bytes all the same).  They return false when nothing was queued
 * (closing, over the send limit, or a packet that cannot be encoded). */

/* Queue `m` as it is. */
bool cm_mqtt_send(struct cm_conn *c, const struct cm_mqtt_msg *m);
/* The next packet id of the manager: one counter for every connection,
 * 1..65535, wrapping past 0 (§2.2.1). */
uint16_t cm_mqtt_next_id(struct cm_mgr *mgr);
/* PUBLISH.  QoS 1 and 2 take a packet id from cm_mqtt_next_id(), stored
 * in *id (when not NULL; 0 for QoS 0 and on failure).  `props`: MQTT 5
 * properties, ignored before 5.  Nothing is retransmitted. */
bool cm_mqtt_pub(struct cm_conn *c, struct cm_str topic, struct cm_str data, int qos, bool retain,
                 struct cm_str props, uint16_t *id);
/* SUBSCRIBE to one filter with maximum QoS `qos`; *id as cm_mqtt_pub. */
bool cm_mqtt_sub(struct cm_conn *c, struct cm_str topic, int qos, struct cm_str props, uint16_t *id);
/* UNSUBSCRIBE from one filter; *id as cm_mqtt_pub. */
bool cm_mqtt_unsub(struct cm_conn *c, struct cm_str topic, struct cm_str props, uint16_t *id);
/* PINGREQ, PINGRESP, DISCONNECT (which does not close: the broker does). */
bool cm_mqtt_ping(struct cm_conn *c);
bool cm_mqtt_pong(struct cm_conn *c);
bool cm_mqtt_disconnect(struct cm_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* CM_MQTT_H */
