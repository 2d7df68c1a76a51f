/* internal.h: declarations shared between core files; not installed, not
 * part of the API.  Internal non-static names start with cm__. */
#ifndef CM_INTERNAL_H
#define CM_INTERNAL_H

#include "cm.h"

#define CM_IO_GRANULE 1024       /* iobuf sizes are multiples of this */
#define CM_IO_STEP 16384         /* read straight into recv if it has this much room */
#define CM_SCRATCH_SIZE 65536    /* else read into the manager's scratch, then append */
#define CM_RECV_CAP (3u << 20)   /* default recv limit (3 MiB) */
#define CM_SEND_HIWAT (4u << 20) /* default: pause reading above 4 MiB unsent */
#define CM_MAX_EVENTS 256        /* epoll events taken per wait */
#define CM_MAX_ACCEPTS 32        /* accepts per listener per iteration */

/* poll_epoll.c: the only file that calls epoll_*.
 *
 * Stream sockets (accepted or connected TCP) are registered edge-triggered:
 * the poller reports a change of readiness once, and c->can_read /
 * c->can_write keep it until a read comes back short of its buffer (the
 * socket is empty: new bytes make a new edge) or a write would block
 * (c->is_readable / c->is_writable stay what the last report said).  So
 * the kernel does not look at every busy socket twice per request, once
 * to report it and once more to find it drained.  Listeners, UDP sockets
 * and internal plumbing stay level-triggered. */
static inline bool cm__is_edge(const struct cm_conn *c) {
  return !c->is_listening && !c->is_udp && !c->is_internal;
}
int cm__poller_init(struct cm_mgr *mgr);
void cm__poller_free(struct cm_mgr *mgr);
/* Register, change or drop the interest of c->fd: CM__IN/CM__OUT bits. */
enum { CM__IN = 1, CM__OUT = 2 };
int cm__poller_set(struct cm_mgr *mgr, struct cm_conn *c, unsigned mask);
void cm__poller_del(struct cm_mgr *mgr, struct cm_conn *c);
/* Wait up to `ms` (negative: forever); fills `out` with the connections that
 * fired (readable/writable flags set on them).  Returns the count, 0 on
 * timeout or EINTR. */
int cm__poller_wait(struct cm_mgr *mgr, int ms, struct cm_conn **out, int max);

/* Milliseconds now, for protocol timestamps: inside cm_mgr_poll the time
 * taken after the wait (a clock read per iteration, not per event), else
 * the clock.  The reply path calls this several times per request. */
static inline uint64_t cm__now(const struct cm_mgr *mgr) { return mgr->in_poll ? mgr->now : cm_millis(); }

/* conn.c: connection life. */
struct cm_conn *cm__conn_new(struct cm_mgr *mgr, int fd);
void cm__conn_free(struct cm_conn *c);
void cm__conn_unpoll(struct cm_conn *c); /* drop from mgr->pollers */

/* sock.c: sockets. */
struct cm_conn *cm__listen(struct cm_mgr *mgr, const char *url, cm_handler_fn pfn, cm_handler_fn fn,
                           void *fn_data);
struct cm_conn *cm__connect(struct cm_mgr *mgr, const char *url, cm_handler_fn pfn, cm_handler_fn fn,
                            void *fn_data);
void cm__sock_io(struct cm_conn *c);    /* handle readiness of a socket conn */
void cm__sock_read(struct cm_conn *c);  /* one read of a stream socket, CM_EV_READ */
bool cm__sock_flush(struct cm_conn *c); /* write what c->send holds; false on error */
/* Write the first `want` bytes of c->send (fewer if the socket fills up).
 * Returns the bytes written, or -1 after an error (the conn is closing). */
long cm__sock_write(struct cm_conn *c, size_t want);
/* c->rem is known (a literal, or a lookup answered): fire CM_EV_RESOLVE
 * and start the socket-level connect. */
void cm__connect_resolved(struct cm_conn *c);
bool cm__sock_sendto(struct cm_conn *c, const void *buf, size_t len); /* UDP datagram to c->rem */

/* sendfd.c: the file source of cm_send_fd(), written by the loop. */
bool cm__sendfd_flush(struct cm_conn *c); /* like cm__sock_flush, with c->fsrc set */
void cm__sendfd_free(struct cm_conn *c);  /* drop the source and close its file */

/* tls_openssl.c: the socket side of TLS (cm/tls.h).  sock.c hands a
 * connection with c->tls_io set to these instead of recv()/send(). */
void cm__tls_read(struct cm_conn *c);               /* as cm__sock_read: handshake, then data */
long cm__tls_write(struct cm_conn *c, size_t want); /* as cm__sock_write, encrypting */
/* Drive a handshake in progress, or a write OpenSSL owes (tls_want_write).
 * True when application data may be written now; false while the
 * handshake goes on or after a failure (the conn is then closing). */
bool cm__tls_pump(struct cm_conn *c);
void cm__tls_accepted(struct cm_conn *c, struct cm_conn *lsn); /* after CM_EV_ACCEPT: inherit */
void cm__tls_connected(struct cm_conn *c);                     /* after CM_EV_CONNECT: start */
/* A TCP client: remember the host of its URL, the default SNI / host name. */
void cm__tls_note_host(struct cm_conn *c, struct cm_str host);
/* Our side of the conversation is over (a lingering close, http.c): send
 * the TLS close_notify (RFC 8446 §6.1) if a healthy session runs, then shut
 * the socket's write side.  Reading goes on: the peer may still send.  Call
 * it with c->send empty. */
void cm__tls_shutdown_write(struct cm_conn *c);

/* resolve.c: name lookups on worker threads (cm/resolve.h).  Starts looking
 * up `host` for client `c`; the answer sets c->rem (with `port`) and calls
 * cm__connect_resolved(), a failure fires CM_EV_ERROR.  Returns false if
 * the lookup could not even start (no memory, no thread, bad name). */
bool cm__resolve_start(struct cm_conn *c, struct cm_str host, uint16_t port);
/* Tests only: each worker sleeps this long before a lookup (0: never), so
 * timeouts and late answers can be produced on demand. */
extern _Atomic unsigned cm__resolve_test_delay_ms;

/* http_out.c: the requests an HTTP client sends, followed through their
 * framing, so that each response knows whether it answers HEAD. */
struct cm__http_out;
struct cm__http_out *cm__http_out_new(void);
void cm__http_out_free(struct cm__http_out *o); /* NULL is fine */
void cm__http_out_feed(struct cm__http_out *o, const void *buf, size_t len);
/* Pop the oldest request in flight: was it HEAD?  False when none is
 * known (untracked requests are taken for GET). */
bool cm__http_out_next_is_head(struct cm__http_out *o);

/* http_srv.c: an HTTP listener's limits and the deadlines of the
 * connections it accepted, shared by all of them (reference counted: the
 * listener holds one reference, each accepted connection's state one). */
struct cm__http_srv;
/* A connection's place in one of the two deadline queues. */
enum { CM__HTTP_Q_NONE, CM__HTTP_Q_HEAD, CM__HTTP_Q_IDLE };
struct cm__http_wait {
  struct cm__http_wait *prev, *next; /* queue links */
  uint64_t since;                    /* queued at (cm__now time) */
  uint8_t q;                         /* CM__HTTP_Q_*: which queue, if any */
};
/* Called from the timer for a wait whose deadline passed (`q` says which):
 * it is out of its queue already, and may be queued again. */
typedef void (*cm__http_expired_fn)(struct cm__http_wait *w, int q);
/* With `lim` (NULL: the defaults) and one reference.  NULL: no memory. */
struct cm__http_srv *cm__http_srv_new(struct cm_mgr *mgr, const struct cm_http_limits *lim,
                                      cm__http_expired_fn expired);
void cm__http_srv_hold(struct cm__http_srv *s);
void cm__http_srv_drop(struct cm__http_srv *s); /* the last one frees; NULL is fine */
const struct cm_http_limits *cm__http_srv_limits(const struct cm__http_srv *s);
struct cm_mgr *cm__http_srv_mgr(const struct cm__http_srv *s);
/* Put `w` at the tail of queue `q`, stamped now (CM__HTTP_Q_NONE: out of
 * both; a queue whose timeout is 0 counts as NONE).  Already in `q`: it
 * keeps its place and stamp. */
void cm__http_srv_wait(struct cm__http_srv *s, struct cm__http_wait *w, int q);
/* Stamp `w` now in the queue it is in, moving it to the tail (none: no-op;
 * stamped in this iteration already: no work). */
void cm__http_srv_touch(struct cm__http_srv *s, struct cm__http_wait *w);

/* timer.c: the heap, driven by mgr.c. */
void cm__timers_schedule_new(struct cm_mgr *mgr);
int cm__timers_timeout(struct cm_mgr *mgr, int ms);
void cm__timers_run(struct cm_mgr *mgr);
void cm__timers_free(struct cm_mgr *mgr);

/* wakeup.c */
void cm__wakeup_drain(struct cm_conn *c);    /* the eventfd fired: reset it */
void cm__wakeup_deliver(struct cm_mgr *mgr); /* fire every queued message */
void cm__wakeup_free(struct cm_mgr *mgr);

/* idmap.c: open-addressing hash of id -> connection. */
struct cm_idmap;
struct cm_idmap *cm__idmap_new(void);
void cm__idmap_free(struct cm_idmap *m);
bool cm__idmap_put(struct cm_idmap *m, uint64_t id, struct cm_conn *c);
struct cm_conn *cm__idmap_get(const struct cm_idmap *m, uint64_t id);
void cm__idmap_del(struct cm_idmap *m, uint64_t id);

/* http.c / http_srv.c: what a WebSocket upgrade needs from HTTP: the
 * listener block an HTTP connection (or listener) shares, NULL for none,
 * and the WebSocket settings kept in it (cm_ws_listen_opts). */
struct cm__http_srv *cm__http_srv_of(struct cm_conn *c);
struct cm_ws_opts *cm__http_srv_ws(struct cm__http_srv *s);

/* http.c: WebSocket takes a server connection over from HTTP (cm_ws_upgrade),
 * inside the request's CM_EV_HTTP_MSG or later.  _may_upgrade: may `c`
 * switch now?  An HTTP server connection only while its request is
 * delivered and unanswered (is_resp, no answer begun, not closing); a
 * connection of another protocol decides for itself (true).  _hand_over:
 * call it just before replacing c->pfn and c->pfn_data.  Inside the
 * request's dispatch HTTP lets go when the event returns (detach); outside
 * it, nobody would: the state is freed now (leaving its deadline queue, so
 * no head or idle timeout fires on the new protocol) and a read is resumed
 * for the bytes already buffered, which are the new protocol's. */
bool cm__http_may_upgrade(const struct cm_conn *c);
void cm__http_hand_over(struct cm_conn *c);

/* ws.c: another core protocol carried inside the messages of a WebSocket
 * (the MQTT broker's ws:// listeners).  After cm__ws_carry(c, inner, arg)
 * on an open WebSocket, `inner(arg, ev, ev_data)` receives CM_EV_WS_MSG and
 * CM_EV_WS_CTL in place of c->fn, and CM_EV_CLOSE before the WebSocket
 * state goes; c->fn still sees every other event (CM_EV_ERROR, ...).
 * `inner` NULL stops it.  False if `c` is not an open WebSocket.
 * cm__ws_carried() gives `arg` back when `inner` carries `c`, else NULL. */
typedef void (*cm__ws_inner_fn)(void *arg, int ev, void *ev_data);
bool cm__ws_carry(struct cm_conn *c, cm__ws_inner_fn inner, void *arg);
void *cm__ws_carried(const struct cm_conn *c, cm__ws_inner_fn inner);

/* ws_deflate.c: permessage-deflate (RFC 7692) for ws.c. */
struct cm__ws_pmd {
  bool server_no_context; /* server_no_context_takeover */
  bool client_no_context; /* client_no_context_takeover */
  bool client_bits_given; /* client_max_window_bits came with a value */
  uint8_t server_bits;    /* server_max_window_bits (0: absent) */
  uint8_t client_bits;    /* client_max_window_bits (0: absent) */
};
/* Server: pick the first acceptable permessage-deflate offer in the
 * Sec-WebSocket-Extensions value `offers` (§5.1 of RFC 7692 says which to
 * decline), fill *p, and write the response header line ("...\r\n", NUL
 * terminated) into resp[0..size).  False: none accepted. */
bool cm__ws_pmd_negotiate(struct cm_str offers, struct cm__ws_pmd *p, char *resp, size_t size);
/* Client: check the server's Sec-WebSocket-Extensions against our offer.
 * 1: permessage-deflate accepted (*p filled), 0: none, -1: invalid. */
int cm__ws_pmd_accept(struct cm_str response, struct cm__ws_pmd *p);
struct cm__ws_z;
enum { CM__WS_Z_NOMEM = -1, CM__WS_Z_TOO_BIG = -2, CM__WS_Z_CORRUPT = -3 };
struct cm__ws_z *cm__ws_z_new(const struct cm__ws_pmd *p, bool server); /* NULL: no memory */
void cm__ws_z_free(struct cm__ws_z *z);                                 /* NULL is fine */
/* Compress one whole message, appending to `out` without the 00 00 ff ff
 * tail.  Returns the bytes appended, or -1 (no memory). */
long cm__ws_z_deflate(struct cm__ws_z *z, const void *data, size_t len, struct cm_iobuf *out);
/* Inflate one whole message's payload `in`, appending to `out` at most
 * `max` bytes.  0, or CM__WS_Z_*. */
int cm__ws_z_inflate(struct cm__ws_z *z, struct cm_str in, struct cm_iobuf *out, uint64_t max);

/* mqtt_broker.c, mqtt_deliver.c, mqtt_broker_ws.c: the broker's inside
 * (cm/mqtt_broker.h). */
bool cm__mqtt_out(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m); /* send one packet */
void cm__mqtt_input(struct cm_mqtt_bconn *bc, struct cm_iobuf *in);       /* parse and handle packets */
void cm__mqtt_bconn_free(struct cm_mqtt_bconn *bc, bool will);            /* its connection closed */
/* mqtt_broker_ws.c: a client inside WebSocket.  _handshake: the bytes of a
 * ws:// client before its upgrade (answers the request); _out: one packet
 * in one binary message; _close: a close frame then drain (false: not an
 * upgraded client, nothing done); _bconn: the client state of a WebSocket
 * connection that carries MQTT, else NULL. */
void cm__mqtt_ws_handshake(struct cm_mqtt_bconn *bc);
bool cm__mqtt_ws_out(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m, int version);
bool cm__mqtt_ws_close(struct cm_mqtt_bconn *bc);
struct cm_mqtt_bconn *cm__mqtt_ws_bconn(const struct cm_conn *c);
void cm__mqtt_pump(struct cm_mqtt_bconn *bc);   /* send queued deliveries while there is room */
void cm__mqtt_resend(struct cm_mqtt_bconn *bc); /* a resumed session: in-flight ones again */
/* Retain and fan out `m`; `from` is the publisher (NULL: the broker). */
void cm__mqtt_route(struct cm_mqtt_broker *b, struct cm_mqtt_stored *m,
                    const struct cm_mqtt_subscriber *from);
void cm__mqtt_send_retained(struct cm_mqtt_bconn *bc, struct cm_str filter, int qos);
/* A stored message of a PUBLISH or will, with the properties that are
 * forwarded (no Topic Alias, Subscription Identifier, Will Delay). */
struct cm_mqtt_stored *cm__mqtt_stored_from(struct cm_str topic, struct cm_str data, struct cm_str props,
                                            int qos, bool retain);

#endif /* CM_INTERNAL_H */
