/* cm/conn.h: connections: listen, connect, send, close.
 *
 * A connection is created only by the manager (cm_listen, cm_connect, accept)
 * and freed only by it, at the end of the iteration in which it was marked
 * closing, right after its CM_EV_CLOSE.  Until then the pointer stays valid,
 * so a handler may close any connection, its own included, at any time.
 *
 * Every event goes first to the protocol handler `pfn` (HTTP, ...), which
 * consumes c->recv and may fire typed events, then to the user handler `fn`.
 * Other threads refer to a connection only by its `id` (cm/wakeup.h). */
#ifndef CM_CONN_H
#define CM_CONN_H

#include "base.h"
#include "event.h"
#include "iobuf.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm__fsrc;
struct cm__tls;

struct cm_conn {
  /* public */
  cm_handler_fn fn;  /* user handler (inherited by accepted connections) */
  void *fn_data;     /* user handler data (inherited) */
  void *userdata;    /* per-connection application data (never inherited) */
  cm_handler_fn pfn; /* protocol handler, runs before fn (inherited) */
  void *pfn_data;    /* protocol state, owned by the protocol (not inherited) */
  /* read-only */
  struct cm_mgr *mgr;         /* owning manager */
  uint64_t id;                /* > 0, unique per manager, never reused */
  struct cm_addr loc;         /* local address */
  struct cm_addr rem;         /* peer address (UDP listener: last sender) */
  struct cm_iobuf recv;       /* bytes received, not yet consumed */
  struct cm_iobuf send;       /* bytes queued, not yet written */
  uint16_t ws_close_code;     /* WebSocket: the peer's close code; 1005 if its close frame had
                                 none, 1006 if the connection ended without one (RFC 6455
                                 §7.1.5); 0 before.  Kept until the connection is freed */
  unsigned is_listening : 1;  /* listening socket */
  unsigned is_client : 1;     /* created by cm_connect */
  unsigned is_accepted : 1;   /* created by accept */
  unsigned is_udp : 1;        /* datagram socket */
  unsigned is_connecting : 1; /* non-blocking connect in progress */
  unsigned is_internal : 1;   /* manager plumbing (wakeup); not user-visible */
  unsigned is_readable : 1;   /* the last readiness report said readable */
  unsigned is_writable : 1;   /* the last readiness report said writable */
  /* public flags: the application may set these */
  unsigned is_tls : 1;       /* TLS requested or active */
  unsigned is_websocket : 1; /* upgraded to WebSocket */
  unsigned is_full : 1;      /* reading paused: too much unsent data */
  unsigned is_draining : 1;  /* close once `send` is empty (see cm_drain) */
  unsigned is_closing : 1;   /* close at the end of this iteration (see cm_close) */
  unsigned is_resp : 1;      /* protocol: a response is in progress */
  unsigned is_throttled : 1; /* protocol: paused at mgr->send_hiwat; the loop resumes it below */
  /* private */
  int fd;                                    /* socket, eventfd, or -1 */
  unsigned ev_mask;                          /* epoll interest currently registered */
  unsigned is_pending : 1;                   /* on mgr->pending */
  unsigned want_resume : 1;                  /* fire a synthetic CM_EV_READ in the pending phase */
  unsigned want_poll : 1;                    /* receives CM_EV_POLL (see cm_conn_set_poll) */
  unsigned on_pollers : 1;                   /* linked on mgr->pollers */
  unsigned can_read : 1;                     /* edge-triggered: bytes may wait unread */
  unsigned can_write : 1;                    /* edge-triggered: the socket may have room */
  unsigned peer_shut : 1;                    /* the peer's FIN was reported: read to EOF */
  unsigned tls_io : 1;                       /* socket I/O goes through OpenSSL (c->tls) */
  unsigned tls_want_write : 1;               /* OpenSSL must write before it can go on */
  unsigned resp_class : 3;                   /* HTTP response: status/100, 0 unseen, 7 other */
  struct cm__fsrc *fsrc;                     /* file being sent (cm_send_fd), or NULL */
  struct cm__tls *tls;                       /* TLS state (cm/tls.h), or NULL */
  struct cm_conn *next, *prev;               /* mgr->conns list */
  struct cm_conn *next_poller, *prev_poller; /* mgr->pollers list */
  struct cm_conn *next_pending;              /* mgr->pending list */
};

/* Listen on `url`: "tcp://", "http://", "udp://", ... with host an IPv4
 * literal, "[IPv6]", "localhost" or empty (any address), and a port (0: the
 * OS picks; c->loc.port tells which).  Fires CM_EV_OPEN before returning.
 * Returns the listener, or NULL (bad URL, bind/listen failure). */
struct cm_conn *cm_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* Connect to `url` without blocking.  Fires CM_EV_OPEN, then CM_EV_RESOLVE
 * once the address is known (synchronously for literals and "localhost"),
 * then CM_EV_CONNECT when established (synchronously for UDP).  Failure later
 * arrives as CM_EV_ERROR.  Returns NULL only for errors found at once (empty
 * or malformed URL, no memory). */
struct cm_conn *cm_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* Queue `len` bytes.  TCP: appended to c->send and written by the loop (at
 * the latest in this iteration's pending phase).  UDP: sent at once to
 * c->rem.  Returns false if the connection is closing, the send cap would be
 * passed, or memory ran out (nothing queued then). */
bool cm_send(struct cm_conn *c, const void *buf, size_t len);
/* Called once, from the loop, when a file given to cm_send_fd() has been
 * handed to the kernel in full.  Not called if the connection closes or
 * fails first (CM_EV_CLOSE tells the protocol then). */
typedef void (*cm_sent_fn)(struct cm_conn *c, void *arg);
/* Send `len` bytes of the open file `fd`, starting at `offset`, after the
 * bytes c->send holds now; bytes queued with cm_send() afterwards go out
 * after the file.  The file streams in bounded pieces as the socket drains,
 * so its size costs no memory: with sendfile(2) on a plain TCP connection,
 * else (c->is_tls, where bytes must pass through c->send to be encrypted)
 * read 64 KiB at a time into c->send.  The connection owns `fd` from then
 * on and closes it when done, on failure, or when it closes.  A file that
 * turns out shorter than `len` fails the connection with CM_EV_ERROR.
 * `done` (may be NULL) is called as cm_sent_fn says.  Returns false, not
 * taking `fd`, if a file is already being sent, the connection is closing,
 * is a listener or UDP, or memory ran out. */
bool cm_send_fd(struct cm_conn *c, int fd, uint64_t offset, uint64_t len, cm_sent_fn done, void *arg);
/* Mark `c` closing: unsent data is dropped, and at the end of this iteration
 * (or of the next cm_mgr_poll) the socket is closed, CM_EV_CLOSE fires and
 * `c` is freed.  Idempotent. */
void cm_close(struct cm_conn *c);
/* Close `c` once everything queued has been written: c->send, and a file
 * being sent (cm_send_fd). */
void cm_drain(struct cm_conn *c);
/* The error path: log `fmt` at CM_LL_ERROR, mark `c` closing and fire
 * CM_EV_ERROR with the formatted message (at most 255 bytes) synchronously.
 * `fmt` must be a literal; pass user text as an argument. */
void cm_error(struct cm_conn *c, const char *fmt, ...) CM_PRINTF(2, 3);
/* Deliver `ev` to c->pfn then c->fn.  For protocols and the application
 * (CM_EV_USER and above). */
void cm_call(struct cm_conn *c, int ev, void *ev_data);
/* Ask the loop to fire a synthetic CM_EV_READ (n = 0) on `c` in the next
 * pending phase, so a protocol can resume work on buffered input (HTTP does
 * this when a deferred response finishes and pipelined requests wait). */
void cm_resume(struct cm_conn *c);
/* Choose whether `c` receives CM_EV_POLL every iteration (the default for
 * every new connection, as in Mongoose).  The poll phase walks only the
 * connections that do, so an iteration with 10,000 idle connections that
 * don't costs what one with 10 costs.  Safe from any handler. */
void cm_conn_set_poll(struct cm_conn *c, bool on);
/* Note that `c` has new work for the pending phase (unsent data, interest
 * change); the loop then flushes it without waiting. */
void cm__touch(struct cm_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* CM_CONN_H */
