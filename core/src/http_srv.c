/* http_srv.c: what an HTTP listener shares with the connections it
 * accepts: its limits, and the deadlines of all of them on one timer.
 *
 * All connections of a listener have the same two timeouts, so their
 * deadlines need no heap.  A connection that shows activity moves to the
 * tail of its queue stamped with the current time; time only grows, so each
 * queue stays sorted by construction and the earliest deadline is at the
 * front of one of the two.  One timer per listener fires for it.  A move is
 * an unlink and an append (none at all twice in one iteration), and a
 * connection carries 32 bytes of deadline state instead of a timer. */
#include <stddef.h>
#include <stdlib.h>

#include "internal.h"

struct queue {
  struct cm__http_wait *first, *last;
};

struct cm__http_srv {
  unsigned refs;               /* the listener, and each accepted connection's state */
  struct cm_mgr *mgr;          /* the timer runs here */
  struct cm_http_limits lim;   /* applied to every accepted connection */
  struct queue q[2];           /* CM__HTTP_Q_HEAD - 1, CM__HTTP_Q_IDLE - 1 */
  cm__http_expired_fn expired; /* told about each wait whose deadline passed */
  struct cm_timer timer;       /* fires at (or before) the earliest deadline */
  uint64_t timer_at;           /* when it fires, while it runs */
  struct cm_ws_opts ws;        /* for the WebSocket upgrades of its connections */
};

struct cm__http_srv *cm__http_srv_new(struct cm_mgr *mgr, const struct cm_http_limits *lim,
                                      cm__http_expired_fn expired) {
  struct cm__http_srv *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->refs = 1;
  s->mgr = mgr;
  s->expired = expired;
  if (lim != NULL) s->lim = *lim;
  else
    cm_http_limits_init(&s->lim);
  return s;
}

void cm__http_srv_hold(struct cm__http_srv *s) { s->refs++; }

void cm__http_srv_drop(struct cm__http_srv *s) {
  if (s == NULL || --s->refs > 0) return;
  cm_timer_stop(s->mgr, &s->timer);
  free(s);
}

const struct cm_http_limits *cm__http_srv_limits(const struct cm__http_srv *s) { return &s->lim; }

struct cm_ws_opts *cm__http_srv_ws(struct cm__http_srv *s) {
  return &s->ws;
}

struct cm_mgr *cm__http_srv_mgr(const struct cm__http_srv *s) {
  return s->mgr;
}

/* The timeout of queue `q`; 0: that deadline is disabled. */
static uint32_t timeout_of(const struct cm__http_srv *s, int q) {
  return q == CM__HTTP_Q_HEAD ? s->lim.head_timeout_ms : s->lim.idle_timeout_ms;
}

static void unlink_wait(struct cm__http_srv *s, struct cm__http_wait *w) {
  struct queue *q = &s->q[w->q - 1];
  if (w->prev != NULL) w->prev->next = w->next;
  else
    q->first = w->next;
  if (w->next != NULL) w->next->prev = w->prev;
  else
    q->last = w->prev;
  w->prev = w->next = NULL;
  w->q = CM__HTTP_Q_NONE;
}

static void append_wait(struct cm__http_srv *s, struct cm__http_wait *w, int q, uint64_t now) {
  struct queue *qu = &s->q[q - 1];
  w->q = (uint8_t) q;
  w->since = now;
  w->prev = qu->last;
  w->next = NULL;
  if (qu->last != NULL) qu->last->next = w;
  else
    qu->first = w;
  qu->last = w;
}

/* The earliest deadline of both queues, 0 if none. */
static uint64_t next_due(const struct cm__http_srv *s) {
  uint64_t due = 0;
  for (int q = CM__HTTP_Q_HEAD; q <= CM__HTTP_Q_IDLE; q++) {
    const struct cm__http_wait *w = s->q[q - 1].first;
    if (w == NULL) continue;
    uint64_t at = w->since + timeout_of(s, q);
    if (due == 0 || at < due) due = at;
  }
  return due;
}

static void on_timer(struct cm_timer *t, void *arg);

/* Make the timer fire no later than the earliest deadline.  A timer that
 * fires early (its front connection moved on) just looks again. */
static void schedule(struct cm__http_srv *s) {
  uint64_t due = next_due(s), now = cm__now(s->mgr);
  if (due == 0) return;
  if (cm_timer_running(&s->timer)) {
    if (s->timer_at <= due) return;
    cm_timer_stop(s->mgr, &s->timer);
  }
  uint64_t wait = due > now ? due - now : 0;
  s->timer_at = now + wait;
  cm_timer_start(s->mgr, &s->timer, wait, CM_TIMER_ONCE, on_timer, s);
}

/* Unlink `w` and append it to queue `q` (not NONE), stamped `now`. */
static void move_wait(struct cm__http_srv *s, struct cm__http_wait *w, int q, uint64_t now) {
  if (w->q != CM__HTTP_Q_NONE) unlink_wait(s, w);
  bool was_empty = s->q[q - 1].first == NULL;
  append_wait(s, w, q, now);
  if (was_empty) schedule(s); /* a tail append never moves the earliest */
}

void cm__http_srv_wait(struct cm__http_srv *s, struct cm__http_wait *w, int q) {
  if (q != CM__HTTP_Q_NONE && timeout_of(s, q) == 0) q = CM__HTTP_Q_NONE;
  if (w->q == q) return;
  if (q == CM__HTTP_Q_NONE) unlink_wait(s, w);
  else
    move_wait(s, w, q, cm__now(s->mgr));
}

void cm__http_srv_touch(struct cm__http_srv *s, struct cm__http_wait *w) {
  uint64_t now = cm__now(s->mgr);
  if (w->q != CM__HTTP_Q_NONE && w->since != now) move_wait(s, w, w->q, now);
}

/* Hand every wait whose deadline passed to `expired`, front first.  It
 * takes them out of their queue: `expired` may queue them again (at the
 * tail, stamped now, so this loop ends). */
static void on_timer(struct cm_timer *t, void *arg) {
  struct cm__http_srv *s = arg;
  uint64_t now = cm__now(s->mgr);
  (void) t;
  s->refs++; /* whatever `expired` does, `s` outlives this loop */
  for (int q = CM__HTTP_Q_HEAD; q <= CM__HTTP_Q_IDLE; q++) {
    struct cm__http_wait *w;
    while ((w = s->q[q - 1].first) != NULL && w->since + timeout_of(s, q) <= now) {
      unlink_wait(s, w);
      s->expired(w, q);
    }
  }
  schedule(s);
  cm__http_srv_drop(s);
}
