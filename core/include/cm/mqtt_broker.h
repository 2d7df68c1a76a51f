/* cm/mqtt_broker.h: the MQTT broker (3.1.1 and 5) and the parts it is made of.
 *
 * Layers, each usable and tested on its own:
 *   - stored messages (mqtt_store.c): one PUBLISH kept once, reference
 *     counted; every queue and the retained store hold references, so a
 *     message fanned out to N subscribers is never copied N times;
 *   - the topic tree (mqtt_topic.c): subscriptions and retained messages in
 *     one tree keyed by topic level;
 *   - sessions (mqtt_session.c): per client id, its subscriptions and its
 *     queue of QoS 1/2 messages, bounded;
 *   - persistence (mqtt_persist.c): retained messages and persistent
 *     sessions written to a file atomically, and read back;
 *   - the broker (mqtt_broker.c): the protocol handler on accepted
 *     connections, on top of the codec of cm/mqtt.h.
 * Everything here is poll-thread only. */
#ifndef CM_MQTT_BROKER_H
#define CM_MQTT_BROKER_H

#include "base.h"
#include "event.h"
#include "iobuf.h"
#include "timer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- stored messages (mqtt_store.c) --------------------------------------- */

/* A published message as the broker keeps it: topic, payload and the MQTT 5
 * properties that travel with it, in one allocation.  Immutable once made;
 * freed when the last reference is released. */
struct cm_mqtt_stored {
  uint32_t refs;        /* references (read-only; see hold/release) */
  uint8_t qos;          /* QoS it was published with (0..2) */
  bool retain;          /* published with the RETAIN flag */
  uint16_t topic_len;   /* bytes of topic */
  uint32_t props_len;   /* bytes of props */
  size_t data_len;      /* bytes of data */
  const char *topic;    /* topic name (not NUL-terminated) */
  const uint8_t *props; /* MQTT 5 properties to forward, encoded, without their length */
  const uint8_t *data;  /* payload */
  uint32_t persist_id;  /* private: number given while the persistence file is written */
};

/* A new message with one reference, copying topic, data and props (props
 * may be NULL when props_len is 0).  NULL: no memory, or a topic longer than
 * 65535 bytes. */
struct cm_mqtt_stored *cm_mqtt_stored_new(struct cm_str topic, struct cm_str data, struct cm_str props,
                                          int qos, bool retain);
/* Take one more reference; returns `m`. */
struct cm_mqtt_stored *cm_mqtt_stored_hold(struct cm_mqtt_stored *m);
/* Drop one reference; the last one frees `m`.  NULL is fine. */
void cm_mqtt_stored_release(struct cm_mqtt_stored *m);

/* ---- topics and the topic tree (mqtt_topic.c) ----------------------------- */

/* A topic name (PUBLISH, will): 1..65535 bytes, no '+', '#' or NUL
 * (MQTT 3.1.1 section 4.7.3, 1.5.3).  UTF-8 validity is the codec's check. */
bool cm_mqtt_topic_valid(struct cm_str topic);
/* A topic filter (SUBSCRIBE): 1..65535 bytes, no NUL, '+' only as a whole
 * level, '#' only as the whole last level (section 4.7.1). */
bool cm_mqtt_filter_valid(struct cm_str filter);

/* Subscription options: the MQTT 5 options byte (section 3.8.3.1).  A 3.1.1
 * subscription carries its QoS only. */
enum {
  CM_MQTT_SUB_QOS = 0x03,      /* maximum QoS */
  CM_MQTT_SUB_NO_LOCAL = 0x04, /* not delivered to the connection that published */
  CM_MQTT_SUB_RAP = 0x08,      /* Retain As Published */
  CM_MQTT_SUB_RH_MASK = 0x30,  /* Retain Handling: 0 always, 1 if new, 2 never */
};

/* Who subscribes: embed one in the subscriber's own struct (a session); the
 * tree hands it back on a match (container_of gets the owner). */
struct cm_mqtt_subscriber {
  uint64_t mark; /* private: the match that last reached it */
  uint32_t slot; /* private: its index in that match's result */
};

/* One subscription of one subscriber, owned by the subscriber, linked into
 * the tree by cm_mqtt_tree_add until cm_mqtt_tree_del.  `opts` may be
 * changed in place while linked. */
struct cm_mqtt_subscription {
  struct cm_mqtt_subscriber *owner; /* who */
  uint8_t opts;                     /* CM_MQTT_SUB_* bits */
  void *node;                       /* private: tree node, NULL while unlinked */
  uint32_t idx;                     /* private: index at that node */
};

/* One subscriber reached by a topic: once, however many of its
 * subscriptions overlap. */
struct cm_mqtt_match {
  struct cm_mqtt_subscriber *owner; /* the subscriber */
  uint8_t qos;                      /* highest QoS of its matching subscriptions */
  bool rap;                         /* one of them asks Retain As Published */
};

struct cm_mqtt_tree;

/* An empty tree, or NULL (no memory). */
struct cm_mqtt_tree *cm_mqtt_tree_new(void);
/* Free the tree and release every retained message.  Subscriptions still
 * linked are not touched (their `node` dangles): unlink them first, or
 * forget them with the tree.  NULL is fine. */
void cm_mqtt_tree_free(struct cm_mqtt_tree *t);
/* Link `s` under `filter` (valid, see cm_mqtt_filter_valid).  `s` must be
 * unlinked.  Returns 0, or -CM_ENOMEM (s stays unlinked). */
int cm_mqtt_tree_add(struct cm_mqtt_tree *t, struct cm_str filter, struct cm_mqtt_subscription *s);
/* Unlink `s` (no-op if unlinked) in O(1), pruning nodes left empty. */
void cm_mqtt_tree_del(struct cm_mqtt_tree *t, struct cm_mqtt_subscription *s);
/* The subscribers whose filters match `topic` (a valid topic name): each
 * once, with the highest QoS among its matching subscriptions.  Topics
 * starting with '$' are not matched by '+' or '#' as the first level
 * (section 4.7.2).  Subscriptions with CM_MQTT_SUB_NO_LOCAL whose owner is
 * `publisher` (may be NULL) are skipped.  Cost: the levels of the topic
 * times the wildcard branches, plus the matches; no walk over every
 * subscription.  Returns the count and sets *out to an array owned by the
 * tree, valid until the next call on it; -CM_ENOMEM if the result could
 * not grow (nothing matched then). */
long cm_mqtt_tree_match(struct cm_mqtt_tree *t, struct cm_str topic,
                        const struct cm_mqtt_subscriber *publisher, const struct cm_mqtt_match **out);
/* Number of linked subscriptions. */
size_t cm_mqtt_tree_nsubs(const struct cm_mqtt_tree *t);

/* Retained messages live in the same tree, one per topic. */

/* Keep `m` as the retained message of `topic` (a valid topic name), taking a
 * reference and releasing the one it replaces; `m` NULL, or with an empty
 * payload, deletes it (section 3.3.1.3).  Returns 0 or -CM_ENOMEM. */
int cm_mqtt_tree_retain(struct cm_mqtt_tree *t, struct cm_str topic, struct cm_mqtt_stored *m);
/* The retained message of exactly `topic`, or NULL. */
struct cm_mqtt_stored *cm_mqtt_tree_retained_at(struct cm_mqtt_tree *t, struct cm_str topic);
/* Called for each retained message; return false to stop the walk. */
typedef bool (*cm_mqtt_retained_fn)(struct cm_mqtt_stored *m, void *arg);
/* Call `fn` for each retained message whose topic matches `filter` (valid;
 * the '$' rule applies), or, with filter "#" and `all` true, for every one
 * ('$' topics included: persistence uses this).  Returns false if it ran
 * out of memory (some were not visited) or `fn` stopped it.  `fn` must not
 * change the tree. */
bool cm_mqtt_tree_retained(struct cm_mqtt_tree *t, struct cm_str filter, bool all, cm_mqtt_retained_fn fn,
                           void *arg);
/* Number of retained messages. */
size_t cm_mqtt_tree_nretained(const struct cm_mqtt_tree *t);

/* ---- sessions and the store (mqtt_store.c) --------------------------------- */

/* Where a queued delivery stands (MQTT 3.1.1 section 4.3). */
enum {
  CM_MQTT_Q_QUEUED = 0,    /* not sent yet (no packet id) */
  CM_MQTT_Q_PUBLISHED = 1, /* PUBLISH sent, PUBACK (QoS 1) or PUBREC (QoS 2) awaited */
  CM_MQTT_Q_RELEASED = 2,  /* QoS 2: PUBREL sent, PUBCOMP awaited (the message is released) */
};

/* One delivery of a stored message to one session.  The payload is the
 * stored message's: a fan-out to N sessions copies no payload. */
struct cm_mqtt_qentry {
  struct cm_mqtt_qentry *next; /* next in its list */
  struct cm_mqtt_stored *msg;  /* a reference; NULL once RELEASED */
  uint16_t pid;                /* packet id once sent, else 0 */
  uint8_t qos;                 /* delivery QoS (1 or 2): min(published, subscribed) */
  uint8_t state;               /* CM_MQTT_Q_* */
  bool retain;                 /* RETAIN flag of the delivery */
};

/* A FIFO of deliveries. */
struct cm_mqtt_queue {
  struct cm_mqtt_qentry *head, *tail; /* oldest, newest */
  uint32_t len;                       /* entries */
};

/* One subscription of a session: the tree link and the filter it was made
 * with (the session's list, for UNSUBSCRIBE, cleanup and persistence). */
struct cm_mqtt_ssub {
  struct cm_mqtt_subscription link; /* in the tree */
  struct cm_mqtt_ssub *next;        /* the session's next subscription */
  uint16_t len;                     /* bytes of filter */
  char filter[];                    /* the filter (not NUL-terminated) */
};

/* The state a client id keeps across connections (section 4.1). */
struct cm_mqtt_session {
  struct cm_mqtt_subscriber subscriber; /* its identity in the tree */
  struct cm_mqtt_session *hnext;        /* private: hash chain */
  char *client_id;                      /* NUL-terminated copy (ids have no NUL) */
  uint16_t id_len;                      /* bytes of client_id */
  uint8_t version;                      /* protocol level of the last connection */
  bool persistent;                      /* survives its connection (not clean) */
  uint32_t expiry;                      /* MQTT 5 session expiry (s); UINT32_MAX: never */
  uint64_t offline_since;               /* ms (cm_millis) when its connection ended */
  struct cm_mqtt_ssub *subs;            /* its subscriptions, newest first */
  uint32_t nsubs;                       /* how many */
  struct cm_mqtt_queue inflight;        /* sent, not yet acknowledged, in send order */
  struct cm_mqtt_queue queued;          /* waiting for room in flight, or for the client */
  uint16_t inflight_max;                /* room in flight (client's Receive Maximum, capped) */
  uint16_t next_pid;                    /* last packet id given out */
  uint16_t *rx;                         /* ids of QoS 2 PUBLISHes received, PUBREL awaited */
  uint32_t nrx, rxcap;                  /* used / allocated */
  uint64_t dropped;                     /* deliveries dropped: queue full */
  void *owner;                          /* the broker's connection state while online, else NULL */
};

/* Append `e` at the tail of `q`. */
void cm_mqtt_queue_push(struct cm_mqtt_queue *q, struct cm_mqtt_qentry *e);

/* The sessions and the tree of one broker, with their limits. */
struct cm_mqtt_store {
  struct cm_mqtt_tree *tree;        /* subscriptions and retained messages */
  struct cm_mqtt_session **buckets; /* private: hash of client ids */
  size_t nbuckets;                  /* private: power of two */
  size_t nsessions;                 /* sessions */
  uint16_t max_inflight;            /* QoS 1/2 deliveries in flight per session (20) */
  uint32_t max_queued;              /* queued per session beyond those (1000); oldest dropped */
  uint64_t dropped;                 /* deliveries dropped, all sessions */
};

/* Initialise `st` with its limits (0: the defaults 20 and 1000).  Returns 0
 * or -CM_ENOMEM. */
int cm_mqtt_store_init(struct cm_mqtt_store *st, uint16_t max_inflight, uint32_t max_queued);
/* Free every session, the tree and its retained messages. */
void cm_mqtt_store_free(struct cm_mqtt_store *st);
/* The session of `client_id`, or NULL. */
struct cm_mqtt_session *cm_mqtt_session_find(struct cm_mqtt_store *st, struct cm_str client_id);
/* A new, empty session for `client_id` (1..65535 bytes, no NUL), which must
 * have none.  NULL: no memory. */
struct cm_mqtt_session *cm_mqtt_session_new(struct cm_mqtt_store *st, struct cm_str client_id);
/* Remove `s` from the store and free it: its subscriptions leave the tree,
 * its queued messages are released. */
void cm_mqtt_session_free(struct cm_mqtt_store *st, struct cm_mqtt_session *s);
/* Call `fn` for each session (it may free the session it is given). */
void cm_mqtt_store_each(struct cm_mqtt_store *st, void (*fn)(struct cm_mqtt_session *s, void *arg),
                        void *arg);

/* Subscribe `s` to `filter` (valid) with options `opts`; an existing
 * subscription to the same filter gets the new options (section 3.8.4).
 * Returns 1 if new, 0 if replaced, -CM_ENOMEM. */
int cm_mqtt_session_sub(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_str filter,
                        uint8_t opts);
/* Unsubscribe `s` from exactly `filter`.  Returns true if it had it. */
bool cm_mqtt_session_unsub(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_str filter);
/* The subscription of `s` to exactly `filter`, or NULL. */
struct cm_mqtt_ssub *cm_mqtt_session_sub_find(struct cm_mqtt_session *s, struct cm_str filter);

/* Queue a QoS 1/2 delivery of `m` (takes a reference) at `qos` with RETAIN
 * flag `retain`.  Past st->max_queued the oldest queued (never in-flight)
 * delivery is dropped and counted.  Returns 0, or -CM_ENOMEM (not queued,
 * counted as dropped). */
int cm_mqtt_session_enqueue(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct cm_mqtt_stored *m,
                            int qos, bool retain);
/* Move the oldest queued delivery in flight if there is room
 * (s->inflight_max), giving it a packet id and state PUBLISHED: the caller
 * sends it.  NULL when nothing is queued or the flight is full. */
struct cm_mqtt_qentry *cm_mqtt_session_next(struct cm_mqtt_session *s);
/* The in-flight delivery with packet id `pid`, or NULL. */
struct cm_mqtt_qentry *cm_mqtt_session_inflight(struct cm_mqtt_session *s, uint16_t pid);
/* The peer acknowledged `pid` with packet type `cmd` (4 PUBACK, 5 PUBREC,
 * 7 PUBCOMP): PUBACK of a QoS 1 and PUBCOMP of a RELEASED delivery end it;
 * PUBREC of a PUBLISHED QoS 2 delivery makes it RELEASED (the caller sends
 * PUBREL).  Returns true if the acknowledgement matched a delivery in the
 * right state. */
bool cm_mqtt_session_ack(struct cm_mqtt_session *s, uint16_t pid, int cmd);
/* Release every delivery (queued and in flight). */
void cm_mqtt_session_clear(struct cm_mqtt_session *s);

/* Incoming QoS 2 (section 4.3.3, method B): the ids of PUBLISHes received
 * and delivered whose PUBREL has not come.  Remember `pid`: 1 if new, 0 if
 * already there (a DUP: not delivered again), -CM_EFULL past 65535 ids,
 * -CM_ENOMEM. */
int cm_mqtt_session_rx_add(struct cm_mqtt_session *s, uint16_t pid);
/* Forget `pid` (PUBREL came).  Returns true if it was there. */
bool cm_mqtt_session_rx_del(struct cm_mqtt_session *s, uint16_t pid);

/* ---- persistence (mqtt_persist.c) ------------------------------------------- */

/* The file holds the retained messages and the persistent sessions
 * (subscriptions, deliveries queued and in flight, QoS 2 ids received) of a
 * store.  Format, all integers big-endian:
 *   "CMMQTTDB", u32 version (1), u32 0 (reserved)
 *   records: u8 type, u32 body length, body
 *     1 message:  u32 number (1, 2, ... in order), u8 qos, u8 retain,
 *                 u16 + topic, u32 + properties, u32 + payload
 *     2 retained: u32 message number
 *     3 session:  u16 + client id, u8 version, u32 expiry, u16 last packet
 *                 id, u32 count + (u16 + filter, u8 options) each,
 *                 u32 count + (u32 message number or 0, u16 packet id,
 *                 u8 qos, u8 state, u8 retain) each, u32 count + u16 ids
 *   u32 CRC-32 (cm_crc32) of every byte before it.
 * A message is written once however many queues refer to it. */
#define CM_MQTT_PERSIST_VERSION 1

/* Write `st` to `path` so that a crash at any moment leaves either the old
 * file or the new one whole: the bytes go to "<path>.new", which is
 * fsync'ed, renamed over `path`, and the directory fsync'ed.  Returns 0, or
 * a negative CM_E* code with a message in err[0..errlen) (errno text). */
int cm_mqtt_persist_save(struct cm_mqtt_store *st, const char *path, char *err, size_t errlen);
/* Read the file at `path` into `st` (empty, just initialised): 0 with
 * nothing read when there is no file, 0 after a whole file, or a negative
 * CM_E* code with what is wrong in err[0..errlen) (-CM_EPROTO: not our
 * format, another version, a bad checksum, a truncated or inconsistent
 * record).  After an error `st` may hold part of the file: free it. */
int cm_mqtt_persist_read(struct cm_mqtt_store *st, const char *path, char *err, size_t errlen);
/* The encoder and decoder under those two, on memory.  `sink` receives the
 * bytes in order; it returns false to stop (the encoder then returns
 * -CM_EIO).  cm_mqtt_persist_decode() checks everything before trusting a
 * byte, so any input is safe (it is the fuzz target); errors as for
 * cm_mqtt_persist_read(). */
typedef bool (*cm_mqtt_sink_fn)(const void *buf, size_t len, void *arg);
int cm_mqtt_persist_encode(struct cm_mqtt_store *st, cm_mqtt_sink_fn sink, void *arg);
int cm_mqtt_persist_decode(struct cm_mqtt_store *st, const void *buf, size_t len, char *err, size_t errlen);

/* ---- the broker (mqtt_broker.c, mqtt_deliver.c) ----------------------------- */

struct cm_conn;
struct cm_mgr;
struct cm_mqtt_broker;

/* May this client connect?  `username` / `password` are empty slices when
 * absent (has_* say which).  Return true to accept. */
typedef bool (*cm_mqtt_auth_fn)(void *arg, struct cm_conn *c, struct cm_str client_id, struct cm_str username,
                                bool has_username, struct cm_str password, bool has_password);
/* May this client publish to `topic` (is_publish true: PUBLISH and its
 * will), or subscribe to filter `topic` (false)?  Asked once per PUBLISH
 * and per filter, not per delivery. */
typedef bool (*cm_mqtt_acl_fn)(void *arg, struct cm_conn *c, struct cm_str client_id, struct cm_str username,
                               struct cm_str topic, bool is_publish);

/* Options of cm_mqtt_broker_new(); zero means the default. */
struct cm_mqtt_broker_opts {
  uint16_t max_inflight;        /* QoS 1/2 deliveries unacknowledged per client (20) */
  uint32_t max_queued;          /* deliveries waiting per client; oldest dropped past it (1000) */
  uint32_t max_packet;          /* largest packet accepted, bytes (16 MiB) */
  size_t max_send;              /* QoS 0 deliveries are dropped (counted) while a client has more
                                 * unsent bytes than this (8 MiB): a slow reader costs no memory */
  const char *persist;          /* persistence file (copied), or NULL: nothing survives a restart */
  uint32_t persist_interval_ms; /* save this often while something changed (10000), and at the end */
  uint32_t connect_timeout_ms;  /* a connection must send CONNECT within this (10000) */
  cm_mqtt_auth_fn auth;         /* NULL: every client may connect */
  cm_mqtt_acl_fn acl;           /* NULL: every topic is allowed */
  void *hook_arg;               /* passed to auth and acl */
};

/* Counters (cm_mqtt_broker_stats). */
struct cm_mqtt_broker_stats {
  uint64_t clients;       /* connections with an accepted CONNECT now */
  uint64_t sessions;      /* sessions kept, connected or not */
  uint64_t subscriptions; /* subscriptions, all sessions */
  uint64_t retained;      /* retained messages */
  uint64_t msgs_in;       /* PUBLISH packets received (wills included) */
  uint64_t msgs_out;      /* PUBLISH packets sent (redeliveries included) */
  uint64_t dropped;       /* deliveries dropped: a full queue, a slow QoS 0 reader, an offline
                           * session's QoS 0, a packet larger than the client accepts */
  uint64_t connects;      /* CONNECTs accepted since the start */
};

/* One connection's broker state (c->pfn_data of an accepted connection). */
struct cm_mqtt_bconn {
  struct cm_mqtt_broker *broker;     /* owner */
  struct cm_conn *c;                 /* the connection */
  struct cm_mqtt_bconn *next, *prev; /* broker->conns */
  struct cm_mqtt_session *s;         /* NULL until CONNECT is accepted, and after a takeover */
  struct cm_mqtt_stored *will;       /* will message (retain flag inside), or NULL */
  char *username;                    /* copy, for the ACL hook; NULL if none */
  uint16_t username_len;             /* bytes of username */
  uint8_t version;                   /* protocol level of its CONNECT */
  bool connected;                    /* CONNECT accepted */
  bool graceful;                     /* DISCONNECT received: no will */
  bool ws;                           /* MQTT inside WebSocket binary messages */
  bool upgraded;                     /* ws: the WebSocket handshake is done */
  bool need_tls;                     /* accepted by an mqtts:// or wss:// listener */
  char *ws_path;                     /* ws: the only path served (copy), NULL: any; freed on upgrade */
  uint16_t keepalive;                /* seconds, 0: none */
  uint32_t max_out;                  /* client's Maximum Packet Size (MQTT 5), 0: none */
  uint64_t opened;                   /* ms (cm_millis) */
  uint64_t last_rx;                  /* ms of the last packet received */
  struct cm_iobuf in;                /* WebSocket only: the MQTT byte stream reassembled */
};

struct cm_mqtt_broker {
  /* read-only */
  struct cm_mgr *mgr;                /* owning manager */
  struct cm_mqtt_store store;        /* sessions, subscriptions, retained messages */
  struct cm_mqtt_broker_opts opts;   /* options, defaults filled in */
  struct cm_mqtt_broker_stats stats; /* counters (clients, sessions ... kept current on read) */
  /* private */
  struct cm_mqtt_bconn *conns;     /* accepted connections */
  struct cm_mqtt_blsn **lsn;       /* listeners serving it */
  size_t nlsn, lsn_cap;            /* used / allocated */
  struct cm_timer timer;           /* keep-alive, CONNECT deadline, expiry, autosave */
  uint64_t last_save, last_expiry; /* ms */
  bool dirty;                      /* persistent state changed since the last save */
  uint32_t auto_ids;               /* counter of assigned client ids */
  struct cm_iobuf wsout;           /* one packet for a WebSocket client, being framed */
};

/* One listener of a broker (its c->pfn_data); private. */
struct cm_mqtt_blsn {
  struct cm_mqtt_broker *broker; /* owner */
  struct cm_conn *c;             /* the listening connection */
  bool ws;                       /* ws:// or wss://: MQTT inside WebSocket */
  char *path;                    /* ws: the only path served, NULL: any */
};

/* A broker on `mgr` with `opts` (NULL: all defaults), its store loaded from
 * opts->persist when that file exists.  Returns NULL with a message in
 * err[0..errlen) (no memory, an unreadable or damaged persistence file:
 * the broker does not start over a file it could not read, so nothing in
 * it is overwritten). */
struct cm_mqtt_broker *cm_mqtt_broker_new(struct cm_mgr *mgr, const struct cm_mqtt_broker_opts *opts,
                                          char *err, size_t errlen);
/* Listen on `url` for MQTT clients of broker `b`:
 *   "mqtt://host:port" (or "tcp://"): MQTT on TCP;
 *   "mqtts://host:port": the same over TLS: call cm_tls_init() on the
 *     listener (cm/tls.h), whose options every accepted connection takes;
 *   "ws://host:port[/path]": MQTT inside WebSocket (RFC 6455), as browsers
 *     (MQTT.js) and mosquitto's websockets listeners speak it (MQTT 3.1.1
 *     and 5 section 6): the listener answers one HTTP request per
 *     connection, an upgrade offering the subprotocol "mqtt" (or the older
 *     "mqttv3.1"), which it selects; then MQTT packets travel in binary
 *     messages, any number per message and split across messages as the
 *     client likes, and each packet the broker sends is one binary message.
 *     A path other than "/" restricts the upgrade to that path.  Any other
 *     request is answered and the connection closed: no WebSocket upgrade ->
 *     426 (this endpoint serves nothing else), no "mqtt" subprotocol -> 400
 *     (section 6 makes it mandatory), another path -> 404, a bad request ->
 *     400, a head over 64 KiB -> 431.  A text frame closes the connection
 *     (close code 1003, section 6: binary frames only);
 *   "wss://host:port[/path]": the same over TLS (cm_tls_init on the listener).
 * An mqtts:// or wss:// connection still without TLS when its first bytes
 * arrive (no cm_tls_init on the listener, nor in its CM_EV_ACCEPT) fails
 * with CM_EV_ERROR rather than serve plaintext on a port meant for TLS.
 * `fn(c, ev, ev_data)` sees CM_EV_OPEN, CM_EV_CLOSE and the other
 * connection events of every client, CM_EV_WS_OPEN (the upgrade request:
 * path, Origin, cookies; closing the connection there refuses it) of a
 * WebSocket client, and CM_EV_MQTT_MSG (struct cm_mqtt_msg *, the PUBLISH
 * as received) for each message a client publishes, after it was routed.
 * Any number of listeners of any kind may serve one broker: they share its
 * sessions and topic tree.  Returns the listener, or NULL as cm_listen()
 * (also for no memory). */
struct cm_conn *cm_mqtt_broker_listen(struct cm_mqtt_broker *b, const char *url, cm_handler_fn fn,
                                      void *fn_data);
/* Save the persistent state now (opts.persist set).  Returns 0 or a
 * negative CM_E* code with a message in err. */
int cm_mqtt_broker_save(struct cm_mqtt_broker *b, char *err, size_t errlen);
/* Publish a message from the broker itself, as if a client had (no ACL).
 * Returns 0 or -CM_ENOMEM / -CM_EINVAL (bad topic or QoS). */
int cm_mqtt_broker_publish(struct cm_mqtt_broker *b, struct cm_str topic, struct cm_str data, int qos,
                           bool retain);
/* The counters, current. */
struct cm_mqtt_broker_stats cm_mqtt_broker_stats(struct cm_mqtt_broker *b);
/* The broker a connection belongs to (a listener or an accepted client),
 * or NULL. */
struct cm_mqtt_broker *cm_mqtt_broker_of(struct cm_conn *c);
/* Save (when persisting; errors are logged), close every client and
 * listener of `b` (their CM_EV_CLOSE comes as usual, without wills:
 * shutting down is not a client failing) and free it.  NULL is fine.
 * Call before cm_mgr_free(). */
void cm_mqtt_broker_free(struct cm_mqtt_broker *b);
/* The protocol handler of broker connections (c->pfn). */
void cm_mqtt_broker_handler(struct cm_conn *c, int ev, void *ev_data);

#ifdef __cplusplus
}
#endif
#endif /* CM_MQTT_BROKER_H */
