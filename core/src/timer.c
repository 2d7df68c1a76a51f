/* timer.c: timers on a binary min-heap ordered by (deadline, insertion
 * number), so equal deadlines fire in FIFO order.  mgr.c drives it: new
 * timers are scheduled at the start of an iteration, due ones run after the
 * I/O phase, and the wait never outlasts the next deadline. */
#include <limits.h>
#include <stdlib.h>

#include "internal.h"

static bool earlier(const struct cm_timer *a, const struct cm_timer *b) {
  return a->expire < b->expire || (a->expire == b->expire && a->seq < b->seq);
}

static void place(struct cm_mgr *mgr, size_t i, struct cm_timer *t) {
  mgr->heap[i] = t;
  t->slot = i + 1;
}

static void sift_up(struct cm_mgr *mgr, size_t i) {
  struct cm_timer *t = mgr->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(t, mgr->heap[parent])) break;
    place(mgr, i, mgr->heap[parent]);
    i = parent;
  }
  place(mgr, i, t);
}

static void sift_down(struct cm_mgr *mgr, size_t i) {
  struct cm_timer *t = mgr->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= mgr->nheap) break;
    if (child + 1 < mgr->nheap && earlier(mgr->heap[child + 1], mgr->heap[child])) child++;
    if (!earlier(mgr->heap[child], t)) break;
    place(mgr, i, mgr->heap[child]);
    i = child;
  }
  place(mgr, i, t);
}

static void heap_remove(struct cm_mgr *mgr, struct cm_timer *t) {
  size_t i = t->slot - 1;
  struct cm_timer *last = mgr->heap[--mgr->nheap];
  t->slot = 0;
  if (last == t) return;
  place(mgr, i, last);
  sift_down(mgr, i);
  sift_up(mgr, last->slot - 1);
}

/* Capacity for every running timer is reserved when it starts, so
 * scheduling inside the loop can never fail. */
static bool reserve(struct cm_mgr *mgr, size_t need) {
  if (need <= mgr->heap_size) return true;
  size_t size = mgr->heap_size ? mgr->heap_size * 2 : 16;
  while (size < need) size *= 2;
  struct cm_timer **heap = realloc(mgr->heap, size * sizeof(*heap));
  if (heap == NULL) return false;
  mgr->heap = heap;
  mgr->heap_size = size;
  return true;
}

bool cm_timer_running(const struct cm_timer *t) { return t->is_new || t->slot != 0; }

bool cm_timer_start(struct cm_mgr *mgr, struct cm_timer *t, uint64_t period_ms, unsigned flags,
                    cm_timer_fn fn, void *arg) {
  if (cm_timer_running(t) || mgr->epfd < 0) return false;
  if (!reserve(mgr, mgr->nheap + mgr->nnew + 1)) return false;
  t->period_ms = period_ms;
  t->flags = flags;
  t->fn = fn;
  t->arg = arg;
  t->seq = mgr->timer_seq++;
  t->is_new = true;
  t->next_new = mgr->new_timers;
  mgr->new_timers = t;
  mgr->nnew++;
  return true;
}

void cm_timer_stop(struct cm_mgr *mgr, struct cm_timer *t) {
  if (t->slot != 0) {
    heap_remove(mgr, t);
  } else if (t->is_new) {
    struct cm_timer **p = &mgr->new_timers;
    while (*p != t) p = &(*p)->next_new;
    *p = t->next_new;
    t->is_new = false;
    t->next_new = NULL;
    mgr->nnew--;
  }
}

void cm__timers_schedule_new(struct cm_mgr *mgr) {
  struct cm_timer *t = mgr->new_timers;
  mgr->new_timers = NULL;
  mgr->nnew = 0;
  for (; t != NULL; t = t->next_new) {
    t->is_new = false;
    t->expire = mgr->now + ((t->flags & CM_TIMER_RUN_NOW) ? 0 : t->period_ms);
    mgr->heap[mgr->nheap++] = t;
    sift_up(mgr, mgr->nheap - 1);
  }
}

int cm__timers_timeout(struct cm_mgr *mgr, int ms) {
  if (mgr->nheap == 0) return ms;
  uint64_t due = mgr->heap[0]->expire;
  uint64_t wait = due > mgr->now ? due - mgr->now : 0;
  if (wait > INT_MAX) wait = INT_MAX;
  return (ms >= 0 && (uint64_t) ms < wait) ? ms : (int) wait;
}

static void reschedule(struct cm_mgr *mgr, struct cm_timer *t) {
  /* Late by more than a period: fire once and restart from now, rather
   * than firing a burst to catch up. */
  if (mgr->now - t->expire > t->period_ms) t->expire = mgr->now + t->period_ms;
  else
    t->expire += t->period_ms;
  t->seq = mgr->timer_seq++;
  sift_down(mgr, t->slot - 1);
}

void cm__timers_run(struct cm_mgr *mgr) {
  /* Timers (re)scheduled during this phase get seq >= limit and wait for
   * the next iteration: a 0 ms repeating timer cannot spin the loop. */
  uint64_t limit = mgr->timer_seq;
  while (mgr->nheap > 0) {
    struct cm_timer *t = mgr->heap[0];
    if (t->expire > mgr->now || t->seq >= limit) break;
    if (t->flags & CM_TIMER_REPEAT) reschedule(mgr, t);
    else
      heap_remove(mgr, t);
    t->fn(t, t->arg); /* may stop or free t: not touched afterwards */
  }
}

void cm__timers_free(struct cm_mgr *mgr) {
  for (size_t i = 0; i < mgr->nheap; i++) mgr->heap[i]->slot = 0;
  for (struct cm_timer *t = mgr->new_timers; t != NULL; t = t->next_new) t->is_new = false;
  free(mgr->heap);
  mgr->heap = NULL;
  mgr->nheap = mgr->heap_size = mgr->nnew = 0;
  mgr->new_timers = NULL;
}
