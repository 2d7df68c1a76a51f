/* cm/timer.h: timers on a min-heap, run by the loop after the I/O phase.
 *
 * A timer is caller-owned memory (embed it in your own struct); the manager
 * only links it into its heap.  All functions are poll-thread only. */
#ifndef CM_TIMER_H
#define CM_TIMER_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm_timer;

/* Called when the timer fires.  For a one-shot timer the manager has already
 * forgotten the timer when this runs, so the callback may free it.  A
 * repeating timer is already rescheduled; the callback may stop it. */
typedef void (*cm_timer_fn)(struct cm_timer *t, void *arg);

enum {
  CM_TIMER_ONCE = 0,    /* fire once */
  CM_TIMER_REPEAT = 1,  /* fire every period */
  CM_TIMER_RUN_NOW = 2, /* first fire at the first poll, not after a period */
};

struct cm_timer {
  uint64_t period_ms; /* interval */
  unsigned flags;     /* CM_TIMER_* */
  cm_timer_fn fn;     /* callback */
  void *arg;          /* passed to fn */
  /* private */
  uint64_t expire;           /* deadline in cm_millis() time */
  uint64_t seq;              /* insertion order: equal deadlines fire FIFO */
  size_t slot;               /* heap index + 1; 0 when not in the heap */
  struct cm_timer *next_new; /* list of timers started since the last poll */
  bool is_new;               /* on that list */
};

/* Start `t` on `mgr`.  Its first deadline is set at the next cm_mgr_poll():
 * now + period, or now with CM_TIMER_RUN_NOW.  `t` must stay valid until it
 * fires (one-shot), cm_timer_stop(), or cm_mgr_free().  Returns false if
 * `t` is already running or the heap cannot grow. */
bool cm_timer_start(struct cm_mgr *mgr, struct cm_timer *t, uint64_t period_ms, unsigned flags,
                    cm_timer_fn fn, void *arg);
/* Stop `t`; no more calls follow.  Harmless if it is not running. */
void cm_timer_stop(struct cm_mgr *mgr, struct cm_timer *t);
/* True if `t` is scheduled or waiting for its first deadline. */
bool cm_timer_running(const struct cm_timer *t);

#ifdef __cplusplus
}
#endif
#endif /* CM_TIMER_H */
