/* mgr.c: the manager and its loop: the phases of cm_mgr_poll (documented in
 * cm/mgr.h), the pending list, deferred close, and shutdown.  It knows
 * nothing of HTTP or any other protocol: those are c->pfn. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t cm_millis(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  /* +1: 0 never appears, so callers may use it as "unset". */
  return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u + 1u;
}

int cm_mgr_init(struct cm_mgr *mgr) {
  memset(mgr, 0, sizeof(*mgr));
  mgr->epfd = -1;
  mgr->recv_cap = CM_RECV_CAP;
  mgr->send_hiwat = CM_SEND_HIWAT;
  mgr->ids = cm__idmap_new();
  if (mgr->ids == NULL) return -CM_ENOMEM;
  if (cm__poller_init(mgr) != 0) {
    cm__idmap_free(mgr->ids);
    mgr->ids = NULL;
    return -CM_EIO;
  }
  mgr->now = cm_millis();
  return 0;
}

struct cm_conn *cm_mgr_find(struct cm_mgr *mgr, uint64_t id) {
  struct cm_conn *c = mgr->ids != NULL ? cm__idmap_get(mgr->ids, id) : NULL;
  return (c != NULL && !c->is_internal) ? c : NULL;
}

/* Unsent bytes in c->send, or a file being sent (cm_send_fd). */
static bool has_output(const struct cm_conn *c) { return c->send.len > 0 || c->fsrc != NULL; }

/* Something to write, and a socket in a state to write it. */
static bool can_flush(const struct cm_conn *c) {
  return !c->is_closing && !c->is_listening && !c->is_connecting && c->fd >= 0 && has_output(c);
}

/* Back-pressure: a peer that sends requests but does not read answers
 * stops being read once too much is queued for it, and a protocol that
 * paused there (is_throttled) is resumed once it drains below. */
static void apply_back_pressure(struct cm_conn *c) {
  c->is_full = c->mgr->send_hiwat > 0 && c->send.len >= c->mgr->send_hiwat;
  if (c->is_throttled && !c->is_full) {
    c->is_throttled = 0;
    c->want_resume = 1; /* settle() queues it again */
  }
}

/* The epoll interest a connection wants now. */
static unsigned wanted_mask(const struct cm_conn *c) {
  if (c->is_internal || c->is_listening) return CM__IN;
  if (c->is_connecting) return CM__OUT;
  return (c->is_full ? 0u : CM__IN) | (has_output(c) ? CM__OUT : 0u);
}

/* Edge-triggered sockets (cm__is_edge) get no second report of readiness
 * they already had: the last read filled its buffer, so bytes may wait... */
static bool more_to_read(const struct cm_conn *c) {
  return cm__is_edge(c) && c->can_read && !c->is_full && !c->is_closing && !c->is_connecting && c->fd >= 0;
}

/* ... or a write stopped with room left (a file's burst was used up). */
static bool more_to_write(const struct cm_conn *c) { return cm__is_edge(c) && c->can_write && can_flush(c); }

/* A full edge-triggered socket waits for its edge: no write to try. */
static bool may_write(const struct cm_conn *c) { return !cm__is_edge(c) || c->can_write; }

static void close_conn(struct cm_conn *c) {
  cm_call(c, CM_EV_CLOSE, NULL); /* buffers are still readable here */
  cm__conn_free(c);
}

/* Bring one touched connection up to date: resume a protocol, flush, close
 * when closing (or drained), else apply its interest. */
static void settle(struct cm_conn *c) {
  if (c->want_resume && !c->is_closing) {
    long n = 0;
    c->want_resume = 0;
    cm_call(c, CM_EV_READ, &n);
  }
  if (more_to_read(c)) cm__sock_read(c);
  if (can_flush(c) && may_write(c)) cm__sock_flush(c);
  if (c->is_draining && !has_output(c)) c->is_closing = 1;
  if (c->is_closing) {
    close_conn(c);
    return;
  }
  apply_back_pressure(c);
  if (c->fd >= 0) cm__poller_set(c->mgr, c, wanted_mask(c));
  c->is_pending = 0;
  /* A resume asked for during the flush (a file finished and with it an
   * HTTP response) was not queued, since c was still pending; nor was a
   * socket with more to do than one read or one burst: queue them, so the
   * next iteration does not sleep before coming back. */
  if (c->want_resume || more_to_read(c) || more_to_write(c)) cm__touch(c);
}

/* The pending phase.  Connections touched while it runs (a resumed protocol
 * answering, a handler closing another connection) wait for the next one;
 * the wait is then skipped, so they are not delayed. */
static void run_pending(struct cm_mgr *mgr) {
  struct cm_conn *list = mgr->pending;
  mgr->pending = NULL;
  while (list != NULL) {
    struct cm_conn *c = list;
    list = c->next_pending;
    c->next_pending = NULL;
    /* is_pending stays set during settle() so its own work does not queue
     * it again; settle() clears it (or frees c). */
    settle(c);
  }
}

static void io_phase(struct cm_mgr *mgr, int timeout) {
  struct cm_conn *fired[CM_MAX_EVENTS];
  bool sleeping = timeout != 0 && mgr->sleep_fn != NULL;
  if (sleeping) mgr->sleep_fn(mgr, true, mgr->sleep_arg);
  int n = cm__poller_wait(mgr, timeout, fired, CM_MAX_EVENTS);
  if (sleeping) mgr->sleep_fn(mgr, false, mgr->sleep_arg);
  mgr->now = cm_millis();
  /* Nothing is freed before the pending phase, so every pointer in fired[]
   * stays valid while handlers run, whatever they close. */
  for (int i = 0; i < n; i++) {
    struct cm_conn *c = fired[i];
    if (c == mgr->wakeup_conn) {
      cm__wakeup_drain(c);
      mgr->wakeup_fired = true;
    } else if (c->is_internal) {
      /* Other plumbing (the resolver's eventfd) reads its own fd: it is
       * only told that the fd fired. */
      long zero = 0;
      cm_call(c, CM_EV_READ, &zero);
    } else if (!c->is_closing) {
      cm__sock_io(c);
      /* The answer the handler just produced leaves now, not after every
       * other fired connection: the peer can send its next request sooner.
       * (A writable connection was already flushed by cm__sock_io.) */
      if (!c->is_writable && can_flush(c) && may_write(c)) cm__sock_flush(c);
      cm__touch(c);
    }
  }
}

static void poll_phase(struct cm_mgr *mgr) {
  uint64_t now = mgr->now;
  /* Only connections that want POLL are on this list.  New ones are linked
   * at the head, so ones created by a POLL handler wait for the next walk;
   * ones switched off are unlinked here, where the walk holds no stale
   * pointer (nothing is freed before the pending phase). */
  struct cm_conn *c = mgr->pollers;
  while (c != NULL) {
    struct cm_conn *next = c->next_poller;
    if (!c->want_poll) cm__conn_unpoll(c);
    else if (!c->is_internal)
      cm_call(c, CM_EV_POLL, &now);
    c = next;
  }
}

/* The moment this iteration's wait should end at the latest: the next
 * timer's deadline, or now + ms; 0 for none (an unbounded wait). */
static uint64_t wait_deadline(const struct cm_mgr *mgr, int ms) {
  uint64_t d = ms >= 0 ? mgr->now + (uint64_t) ms : 0;
  if (mgr->nheap > 0 && (d == 0 || mgr->heap[0]->expire < d)) d = mgr->heap[0]->expire;
  return d;
}

static void record_lag(struct cm_mgr *mgr, uint64_t deadline) {
  uint64_t lag = deadline != 0 && mgr->now > deadline ? mgr->now - deadline : 0;
  if (lag > UINT32_MAX) lag = UINT32_MAX;
  mgr->stats.lag_ms = lag;
  mgr->lag[mgr->stats.iterations++ % CM_LAG_WINDOW] = (uint32_t) lag;
}

void cm_mgr_stats(const struct cm_mgr *mgr, struct cm_mgr_stats *out) {
  *out = mgr->stats;
  out->conns_open = 0;
  for (const struct cm_conn *c = mgr->conns; c != NULL; c = c->next) {
    if (!c->is_internal) out->conns_open++;
  }
  out->lag_max_ms = 0;
  for (size_t i = 0; i < CM_LAG_WINDOW; i++) {
    if (mgr->lag[i] > out->lag_max_ms) out->lag_max_ms = mgr->lag[i];
  }
}

int cm_mgr_fd(const struct cm_mgr *mgr) { return mgr->epfd; }

int cm_mgr_timeout(struct cm_mgr *mgr, int ms) {
  if (mgr->pending != NULL || mgr->nnew > 0) return 0;
  if (!mgr->in_poll) mgr->now = cm_millis(); /* the timers count from now */
  return cm__timers_timeout(mgr, ms);
}

int cm_mgr_poll(struct cm_mgr *mgr, int ms) {
  if (mgr->in_poll || mgr->epfd < 0) return -CM_EINVAL;
  mgr->in_poll = true;
  mgr->now = cm_millis();
  run_pending(mgr);
  cm__timers_schedule_new(mgr);
  int timeout = mgr->pending != NULL ? 0 : cm__timers_timeout(mgr, ms);
  uint64_t deadline = wait_deadline(mgr, ms);
  io_phase(mgr, timeout);
  record_lag(mgr, deadline);
  if (mgr->wakeup_fired) {
    mgr->wakeup_fired = false;
    cm__wakeup_deliver(mgr);
  }
  cm__timers_run(mgr);
  poll_phase(mgr);
  run_pending(mgr);
  mgr->in_poll = false;
  return 0;
}

void cm_mgr_free(struct cm_mgr *mgr) {
  if (mgr->epfd < 0 && mgr->conns == NULL) return; /* already freed */
  cm__timers_free(mgr);
  uint64_t now = cm_millis();
  struct cm_conn *c;
  for (c = mgr->conns; c != NULL; c = c->next) c->is_closing = 1;
  for (c = mgr->conns; c != NULL; c = c->next) {
    if (!c->is_internal) cm_call(c, CM_EV_POLL, &now);
  }
  cm__wakeup_free(mgr); /* detaches its eventfd from the internal conn */
  mgr->pending = NULL;
  /* Handlers may open connections while others close; loop until none. */
  while (mgr->conns != NULL) close_conn(mgr->conns);
  cm__idmap_free(mgr->ids);
  mgr->ids = NULL;
  free(mgr->scratch);
  mgr->scratch = NULL;
  cm__poller_free(mgr);
}
