/* poll_epoll.c: the readiness backend, and the only file that calls epoll_*.
 *
 * A connection stays registered for input while it wants to read, and for
 * output only while it has unsent bytes or a connect in flight (mgr.c
 * decides the mask; this file only applies it).  Stream sockets are
 * edge-triggered (see cm__is_edge): a change of the mask (EPOLL_CTL_MOD)
 * makes the kernel look at the socket again, so resuming input that was
 * paused reports the bytes that wait. */
#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal.h"

/* ev_mask bit meaning "fd is in the epoll set", beside CM__IN and CM__OUT. */
#define REGISTERED 4u

int cm__poller_init(struct cm_mgr *mgr) {
  mgr->epfd = epoll_create1(EPOLL_CLOEXEC);
  return mgr->epfd < 0 ? -CM_EIO : 0;
}

void cm__poller_free(struct cm_mgr *mgr) {
  if (mgr->epfd >= 0) close(mgr->epfd);
  mgr->epfd = -1;
}

static uint32_t epoll_bits(const struct cm_conn *c, unsigned mask) {
  uint32_t bits = ((mask & CM__IN) ? EPOLLIN : 0u) | ((mask & CM__OUT) ? EPOLLOUT : 0u);
  /* EPOLLRDHUP: a FIN that arrives with the last bytes comes on their
   * edge, and no edge follows; the reader must know to read on to EOF. */
  return cm__is_edge(c) ? bits | EPOLLET | EPOLLRDHUP : bits;
}

int cm__poller_set(struct cm_mgr *mgr, struct cm_conn *c, unsigned mask) {
  if (c->fd < 0) return -CM_EINVAL;
  if ((c->ev_mask & REGISTERED) && (c->ev_mask & ~REGISTERED) == mask) return 0;
  struct epoll_event ev = {.events = epoll_bits(c, mask), .data.ptr = c};
  int op = (c->ev_mask & REGISTERED) ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(mgr->epfd, op, c->fd, &ev) != 0) {
    CM_ERROR("conn %llu: epoll_ctl: errno %d", (unsigned long long) c->id, errno);
    return -CM_EIO;
  }
  c->ev_mask = mask | REGISTERED;
  return 0;
}

void cm__poller_del(struct cm_mgr *mgr, struct cm_conn *c) {
  if (c->fd >= 0 && (c->ev_mask & REGISTERED)) epoll_ctl(mgr->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  c->ev_mask = 0;
}

int cm__poller_wait(struct cm_mgr *mgr, int ms, struct cm_conn **out, int max) {
  struct epoll_event evs[CM_MAX_EVENTS];
  if (max > CM_MAX_EVENTS) max = CM_MAX_EVENTS;
  int n = epoll_wait(mgr->epfd, evs, max, ms);
  if (n < 0) return 0; /* EINTR: end the wait; signals are the caller's business */
  for (int i = 0; i < n; i++) {
    struct cm_conn *c = evs[i].data.ptr;
    uint32_t e = evs[i].events;
    /* Errors and hang-ups count as both: the read or write that follows
     * reports what happened.  An edge adds to what the reader and writer
     * know (they clear it). */
    c->is_readable = (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
    c->is_writable = (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0;
    if (cm__is_edge(c)) {
      c->can_read |= c->is_readable;
      c->can_write |= c->is_writable;
      c->peer_shut |= (e & (EPOLLRDHUP | EPOLLHUP)) != 0;
    }
    out[i] = c;
  }
  return n;
}
