/* conn.c: connection life (creation, the pending list, close/drain/error,
 * dispatch).  Sockets themselves are sock.c's business. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct cm_conn *cm__conn_new(struct cm_mgr *mgr, int fd) {
  struct cm_conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->mgr = mgr;
  c->fd = fd;
  c->id = mgr->next_id + 1;
  if (!cm__idmap_put(mgr->ids, c->id, c)) {
    free(c);
    return NULL;
  }
  mgr->next_id = c->id; /* consumed only on success, still never reused */
  cm_iobuf_init(&c->recv, mgr->recv_cap);
  cm_iobuf_init(&c->send, mgr->send_cap);
  c->next = mgr->conns;
  if (mgr->conns != NULL) mgr->conns->prev = c;
  mgr->conns = c;
  mgr->nconns++;
  cm_conn_set_poll(c, true);
  return c;
}

static void unlink_poller(struct cm_conn *c) {
  if (!c->on_pollers) return;
  if (c->prev_poller != NULL) c->prev_poller->next_poller = c->next_poller;
  else
    c->mgr->pollers = c->next_poller;
  if (c->next_poller != NULL) c->next_poller->prev_poller = c->prev_poller;
  c->next_poller = c->prev_poller = NULL;
  c->on_pollers = 0;
}

void cm_conn_set_poll(struct cm_conn *c, bool on) {
  /* Turning it off only clears the flag; the poll walk unlinks lazily, so a
   * handler can switch any connection off while the walk is under way. */
  c->want_poll = on;
  if (!on || c->on_pollers) return;
  c->next_poller = c->mgr->pollers;
  if (c->mgr->pollers != NULL) c->mgr->pollers->prev_poller = c;
  c->mgr->pollers = c;
  c->on_pollers = 1;
}

void cm__conn_unpoll(struct cm_conn *c) { unlink_poller(c); }

void cm__conn_free(struct cm_conn *c) {
  struct cm_mgr *mgr = c->mgr;
  if (c->prev != NULL) c->prev->next = c->next;
  else
    mgr->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  mgr->nconns--;
  unlink_poller(c);
  cm__idmap_del(mgr->ids, c->id);
  cm__sendfd_free(c);
  if (c->fd >= 0) {
    cm__poller_del(mgr, c);
    close(c->fd);
  }
  cm_iobuf_free(&c->recv);
  cm_iobuf_free(&c->send);
  memset(c, 0, sizeof(*c)); /* a stale pointer then reads zeros, not data */
  free(c);
}

void cm__touch(struct cm_conn *c) {
  if (c->is_pending) return;
  c->is_pending = 1;
  c->next_pending = c->mgr->pending;
  c->mgr->pending = c;
}

void cm_call(struct cm_conn *c, int ev, void *ev_data) {
  /* The protocol first: it consumes input and fires typed events before the
   * user sees the raw event for the same bytes. */
  if (c->pfn != NULL) c->pfn(c, ev, ev_data);
  if (c->fn != NULL) c->fn(c, ev, ev_data);
}

void cm_close(struct cm_conn *c) {
  if (c->is_closing) return;
  c->is_closing = 1;
  cm__touch(c);
}

void cm_drain(struct cm_conn *c) {
  c->is_draining = 1;
  cm__touch(c);
}

void cm_resume(struct cm_conn *c) {
  c->want_resume = 1;
  cm__touch(c);
}

void cm_error(struct cm_conn *c, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  CM_ERROR("conn %llu: %s", (unsigned long long) c->id, msg);
  c->mgr->stats.errors++;
  /* Closing before the event, so the handler sees is_closing set. */
  cm_close(c);
  cm_call(c, CM_EV_ERROR, msg);
}

/* The status class of a response written with raw sends, from its first
 * bytes "HTTP/1.x NNN" (for Manager.stats()); 7 when they are something else. */
static unsigned status_class(const char *p, size_t len) {
  if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || p[9] < '1' || p[9] > '5') return 7;
  return (unsigned) (p[9] - '0');
}

bool cm_send(struct cm_conn *c, const void *buf, size_t len) {
  if (c->is_closing) return false;
  if (c->is_udp) return cm__sock_sendto(c, buf, len);
  if (len == 0) return true;
  if (c->is_resp && c->resp_class == 0) c->resp_class = status_class(buf, len) & 7u;
  if (cm_iobuf_add(&c->send, buf, len) != 0) return false;
  cm__touch(c);
  return true;
}
