/* wakeup.c: the cross-thread channel: a mutex-protected FIFO of
 * (connection id, payload) messages and an eventfd that wakes the loop.
 *
 * Senders write the eventfd only when the queue goes from empty to
 * non-empty, so a burst costs one wakeup; the poll thread resets the eventfd
 * *before* taking the queue, so a message queued after the take always
 * re-arms it.  The eventfd and the lock live as long as the last reference:
 * a sender racing with cm_mgr_free() finds the channel closed, never freed. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

struct msg {
  struct msg *next;
  uint64_t id;
  size_t len;
  char data[]; /* the payload, copied whole */
};

struct cm_wakeup {
  pthread_mutex_t lock; /* guards everything below but `refs` */
  atomic_size_t refs;
  int efd;
  bool closed;
  struct msg *head, **tail;
};

static void free_msgs(struct msg *m) {
  while (m != NULL) {
    struct msg *next = m->next;
    free(m);
    m = next;
  }
}

uint64_t cm_wakeup_init(struct cm_mgr *mgr) {
  if (mgr->wakeup_conn != NULL) return mgr->wakeup_conn->id;
  struct cm_wakeup *w = calloc(1, sizeof(*w));
  if (w == NULL) return 0;
  w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct cm_conn *c = w->efd >= 0 ? cm__conn_new(mgr, w->efd) : NULL;
  if (c == NULL) {
    if (w->efd >= 0) close(w->efd);
    free(w);
    return 0;
  }
  pthread_mutex_init(&w->lock, NULL);
  atomic_init(&w->refs, 1); /* the manager's reference */
  w->tail = &w->head;
  c->is_internal = 1;
  cm_conn_set_poll(c, false);
  cm__poller_set(mgr, c, CM__IN);
  mgr->wakeup = w;
  mgr->wakeup_conn = c;
  return c->id;
}

struct cm_wakeup *cm_wakeup_hold(struct cm_mgr *mgr) {
  struct cm_wakeup *w = mgr->wakeup;
  if (w != NULL) atomic_fetch_add(&w->refs, 1);
  return w;
}

void cm_wakeup_release(struct cm_wakeup *w) {
  if (w == NULL || atomic_fetch_sub(&w->refs, 1) != 1) return;
  free_msgs(w->head);
  close(w->efd);
  pthread_mutex_destroy(&w->lock);
  free(w);
}

bool cm_wakeup_send(struct cm_wakeup *w, uint64_t id, const void *buf, size_t len) {
  if (len > SIZE_MAX - sizeof(struct msg)) return false;
  /* Copy outside the lock: a 1 MiB payload must not stall other senders. */
  struct msg *m = malloc(sizeof(*m) + len);
  if (m == NULL) return false;
  m->next = NULL;
  m->id = id;
  m->len = len;
  if (len > 0) memcpy(m->data, buf, len);
  pthread_mutex_lock(&w->lock);
  bool ok = !w->closed;
  if (ok) {
    bool was_empty = w->head == NULL;
    *w->tail = m;
    w->tail = &m->next;
    if (was_empty) {
      uint64_t one = 1;
      /* Under the lock, so it cannot race with the reset in drain; EAGAIN
       * (counter saturated) still leaves it readable, which is all we need. */
      ssize_t rc = write(w->efd, &one, sizeof(one));
      (void) rc;
    }
  }
  pthread_mutex_unlock(&w->lock);
  if (!ok) free(m);
  return ok;
}

void cm__wakeup_drain(struct cm_conn *c) {
  uint64_t count;
  ssize_t rc = read(c->fd, &count, sizeof(count));
  (void) rc;
}

void cm__wakeup_deliver(struct cm_mgr *mgr) {
  struct cm_wakeup *w = mgr->wakeup;
  if (w == NULL) return;
  pthread_mutex_lock(&w->lock);
  struct msg *m = w->head;
  w->head = NULL;
  w->tail = &w->head;
  pthread_mutex_unlock(&w->lock);
  /* Every message queued so far is delivered now, in order (not one per
   * iteration); ones queued meanwhile re-armed the eventfd. */
  while (m != NULL) {
    struct msg *next = m->next;
    struct cm_conn *c = cm_mgr_find(mgr, m->id);
    if (c != NULL) {
      struct cm_str payload = {m->len > 0 ? m->data : "", m->len};
      mgr->stats.wakeups++;
      cm_call(c, CM_EV_WAKEUP, &payload);
    }
    free(m);
    m = next;
  }
}

void cm__wakeup_free(struct cm_mgr *mgr) {
  struct cm_wakeup *w = mgr->wakeup;
  if (w == NULL) return;
  pthread_mutex_lock(&w->lock);
  w->closed = true;
  struct msg *m = w->head;
  w->head = NULL;
  w->tail = &w->head;
  pthread_mutex_unlock(&w->lock);
  free_msgs(m);
  /* The eventfd belongs to the channel, not to the internal connection. */
  cm__poller_del(mgr, mgr->wakeup_conn);
  mgr->wakeup_conn->fd = -1;
  mgr->wakeup_conn = NULL;
  mgr->wakeup = NULL;
  cm_wakeup_release(w);
}
