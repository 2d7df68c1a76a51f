/* cm/mgr.h: the event manager and its loop.
 *
 * One thread (the poll thread) owns a manager and all of its connections and
 * timers; every function here is poll-thread only, except the wakeup channel
 * (cm/wakeup.h).
 *
 * One cm_mgr_poll() iteration runs these phases, in order:
 *   1. pending work:  flush send buffers of connections touched since the
 *      last iteration, read on where the last read filled its buffer (TCP
 *      sockets are edge-triggered), apply epoll interest changes, close what
 *      is closing; schedule timers started since the last iteration.
 *   2. wait:          epoll_wait for at most min(ms, next timer deadline),
 *                     or 0 if pending work remains; before_sleep/after_sleep
 *                     hooks run around the wait alone (the binding drops the
 *                     GIL there).  EINTR ends the wait early.
 *   3. I/O:           accept / connect completion / read / write on the fds
 *                     that fired (and only those).
 *   4. wakeups:       every queued cm_wakeup_send() payload, in order.
 *   5. timers:        each due timer fires at most once per iteration.
 *   6. poll:          CM_EV_POLL to every connection that wants it (all by
 *                     default; see cm_conn_set_poll), never internal ones.
 *   7. pending work:  as phase 1, so responses produced in this iteration
 *                     leave now, and closing connections are freed now.
 */
#ifndef CM_MGR_H
#define CM_MGR_H

#include "base.h"
#include "event.h"
#include "iobuf.h"
#include "timer.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_conn;
struct cm_idmap;

/* Counters the loop keeps for Manager.stats(): plain increments on the poll
 * thread, so cheap enough to be always on.  Read them with cm_mgr_stats(). */
struct cm_mgr_stats {
  uint64_t conns_open;        /* live connections (listeners too, internal ones not) */
  uint64_t conns_accepted;    /* accepted since init */
  uint64_t bytes_in;          /* bytes received (TCP and UDP) */
  uint64_t bytes_out;         /* bytes written to sockets (files sent included) */
  uint64_t http_requests;     /* requests parsed by HTTP servers */
  uint64_t http_responses[6]; /* finished responses: [1]..[5] 1xx..5xx, [0] status unknown */
  uint64_t errors;            /* CM_EV_ERROR fired (cm_error) */
  uint64_t wakeups;           /* wakeup payloads delivered */
  uint64_t iterations;        /* cm_mgr_poll calls */
  uint64_t lag_ms;            /* lateness of the last iteration (see cm_mgr_stats) */
  uint64_t lag_max_ms;        /* the largest over the last CM_LAG_WINDOW iterations */
};

#define CM_LAG_WINDOW 64 /* iterations whose lag lag_max_ms covers */

/* Options of listening sockets (cm_mgr.listen_flags). */
#define CM_LISTEN_REUSEPORT 1u /* SO_REUSEPORT: several processes accept on one port */
struct cm_resolver;
struct cm_wakeup;

/* Called just before (`sleeping` true) and just after (false) the blocking
 * wait.  Nothing else runs between the two calls. */
typedef void (*cm_sleep_fn)(struct cm_mgr *mgr, bool sleeping, void *arg);

struct cm_mgr {
  /* public */
  void *userdata;          /* application data */
  cm_sleep_fn sleep_fn;    /* optional hook around the wait */
  void *sleep_arg;         /* passed to sleep_fn */
  size_t recv_cap;         /* recv buffer limit for new connections (3 MiB) */
  size_t send_cap;         /* send buffer limit for new connections (0: none) */
  size_t send_hiwat;       /* stop reading a connection above this many unsent bytes */
  uint32_t dns_timeout_ms; /* name lookup limit, "DNS timeout" after it (0: 5000) */
  unsigned listen_flags;   /* CM_LISTEN_* for the listeners opened from now on */
  /* read-only */
  struct cm_conn *conns;     /* all connections, newest first */
  size_t nconns;             /* number of connections, internal ones included */
  uint64_t next_id;          /* last id handed out; ids start at 1, never reused */
  uint64_t now;              /* cm_millis() at the start of the current phase */
  struct cm_mgr_stats stats; /* counters (conns_open, lag_max_ms: see cm_mgr_stats) */
  /* private */
  int epfd;                     /* epoll instance */
  struct cm_conn *pending;      /* connections with work for the pending phase */
  struct cm_conn *pollers;      /* connections that may want CM_EV_POLL, newest first */
  struct cm_idmap *ids;         /* id -> connection */
  struct cm_timer **heap;       /* timer min-heap */
  size_t nheap, heap_size;      /* used / allocated heap slots */
  uint64_t timer_seq;           /* next timer insertion number */
  struct cm_timer *new_timers;  /* started since the last poll */
  size_t nnew;                  /* length of new_timers */
  struct cm_wakeup *wakeup;     /* cross-thread channel, NULL until enabled */
  struct cm_conn *wakeup_conn;  /* internal connection over its eventfd */
  struct cm_resolver *resolver; /* name lookups (resolve.c), NULL until the first */
  char *scratch;                /* CM_SCRATCH_SIZE bytes for reads (lazily allocated) */
  bool in_poll;                 /* inside cm_mgr_poll: guards re-entry */
  bool wakeup_fired;            /* the wakeup eventfd fired in this iteration */
  uint32_t lag[CM_LAG_WINDOW];  /* lag of recent iterations, a ring */
};

/* Initialise `mgr` (caller-owned memory).  Returns 0, or a negative CM_E*
 * code if the epoll instance cannot be created. */
int cm_mgr_init(struct cm_mgr *mgr);
/* Run one iteration (see above), waiting at most `ms` milliseconds (negative:
 * no limit, 0: don't wait).  With no connections it still sleeps `ms`, so a
 * timer-paced loop keeps its pace.  Returns 0, or -CM_EINVAL if called from
 * inside itself. */
int cm_mgr_poll(struct cm_mgr *mgr, int ms);
/* Shut down: stop all timers, mark every connection closing and drop its
 * unsent data, fire CM_EV_POLL then CM_EV_CLOSE on each, and free them all.
 * The wakeup channel is closed (later sends return false).  `mgr` may be
 * initialised again afterwards. */
void cm_mgr_free(struct cm_mgr *mgr);
/* The live connection with this id, or NULL (closed, unknown, internal). */
struct cm_conn *cm_mgr_find(struct cm_mgr *mgr, uint64_t id);
/* The epoll descriptor: it polls readable when an iteration would find I/O
 * to do, so another event loop (asyncio) can drive this one, calling
 * cm_mgr_poll(mgr, 0) when it is readable and when cm_mgr_timeout says. */
int cm_mgr_fd(const struct cm_mgr *mgr);
/* How long the loop may sleep now, at most `ms` (negative: no limit): 0 when
 * work is pending (a flush, a resumed read, a close, a timer just added),
 * else until the next timer; -1 for no limit. */
int cm_mgr_timeout(struct cm_mgr *mgr, int ms);
/* Copy the counters into `out`, with conns_open counted now and lag_max_ms
 * taken over the last CM_LAG_WINDOW iterations.  An iteration's lag is how
 * late its wait ended past the deadline it was computed for (the next
 * timer, or the `ms` of cm_mgr_poll): handlers that ran long make the next
 * timers late, and a loaded machine makes the wait itself overrun. */
void cm_mgr_stats(const struct cm_mgr *mgr, struct cm_mgr_stats *out);
/* Milliseconds from a monotonic clock (never 0). */
uint64_t cm_millis(void);

#ifdef __cplusplus
}
#endif
#endif /* CM_MGR_H */
