/* sntp.c: the SNTP client protocol handler (cm/sntp.h).
 *
 * It runs as c->pfn: on CM_EV_OPEN it starts the answer deadline, on
 * CM_EV_CONNECT it sends a request, on CM_EV_READ it checks the datagram
 * with the pure codec (sntp_codec.c).  The first valid reply is reported
 * and closes the connection: one question, one answer (SPEC 2.13). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

#define MAX_DELAY_MS 10000 /* a round trip longer than this is a clock jump */

/* Per-connection state (c->pfn_data). */
struct sntp_state {
  struct cm_mgr *mgr;
  uint64_t id;           /* ours, looked up when the deadline passes */
  uint64_t origin;       /* transmit timestamp of the last request, 0 before */
  int64_t sent_ms;       /* wall-clock time of that request (T1) */
  struct cm_timer timer; /* CM_SNTP_TIMEOUT_MS from CM_EV_OPEN */
};

int64_t cm_time_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sntp_state *ours(const struct cm_conn *c) {
  return c->pfn == cm_sntp_handler ? c->pfn_data : NULL;
}

static void free_state(struct sntp_state *st) {
  cm_timer_stop(st->mgr, &st->timer);
  free(st);
}

/* No answer in time: close without an error (SPEC 2.13).  A connection
 * that went away or changed protocol without our CM_EV_CLOSE left the
 * state to us. */
static void on_timeout(struct cm_timer *t, void *arg) {
  struct sntp_state *st = arg;
  struct cm_conn *c = cm_mgr_find(st->mgr, st->id);
  (void) t;
  if (c == NULL || ours(c) != st) {
    free_state(st);
    return;
  }
  CM_DEBUG("conn %llu: no SNTP answer", (unsigned long long) c->id);
  cm_close(c);
}

static struct sntp_state *new_state(struct cm_conn *c) {
  struct sntp_state *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->mgr = c->mgr;
  st->id = c->id;
  c->pfn_data = st;
  cm_timer_start(c->mgr, &st->timer, CM_SNTP_TIMEOUT_MS, CM_TIMER_ONCE, on_timeout, st);
  return st;
}

/* The reply's time, moved on by half the round trip (RFC 4330 §5: the
 * offset is ((T2 - T1) + (T3 - T4)) / 2, so now = T3 + delay / 2). */
static int64_t reply_time(const struct sntp_state *st, const struct cm_sntp_reply *r, int64_t now) {
  int64_t delay = (now - st->sent_ms) - (r->xmit_ms - r->recv_ms);
  if (delay < 0 || delay > MAX_DELAY_MS) delay = 0;
  return r->xmit_ms + delay / 2;
}

/* One packet from the server.  Returns whether it answered us. */
static bool on_packet(struct cm_conn *c, struct sntp_state *st, const char *buf, size_t len) {
  struct cm_sntp_reply r;
  int64_t now = cm_time_ms();
  if (st->origin == 0) return false; /* nothing asked yet */
  int n = cm_sntp_parse(buf, len, st->origin, now, &r);
  if (n < 0 && r.kiss[0] != '\0') {
    cm_error(c, "SNTP kiss-o'-death %s", r.kiss);
    return false;
  }
  if (n <= 0) {
    CM_DEBUG("conn %llu: SNTP reply dropped: %s", (unsigned long long) c->id, n < 0 ? r.why : "short");
    return false;
  }
  int64_t t = reply_time(st, &r, now);
  st->origin = 0; /* answered: a copy of this reply is stale */
  if (c->fn != NULL) c->fn(c, CM_EV_SNTP_TIME, &t);
  cm_close(c);
  return true;
}

/* UDP: the datagram is the `n` bytes just appended to c->recv.  A stream
 * (a TCP connection the application chose) is cut into 48-byte packets. */
static void on_read(struct cm_conn *c, struct sntp_state *st, long n) {
  const char *d = cm_iobuf_data(&c->recv);
  if (c->is_udp) {
    if (n > 0 && (size_t) n <= c->recv.len) on_packet(c, st, d + c->recv.len - (size_t) n, (size_t) n);
    cm_iobuf_consume(&c->recv, c->recv.len);
    return;
  }
  size_t used = 0;
  while (c->recv.len - used >= CM_SNTP_LEN && !c->is_closing) {
    on_packet(c, st, d + used, CM_SNTP_LEN);
    used += CM_SNTP_LEN;
  }
  cm_iobuf_consume(&c->recv, used);
}

void cm_sntp_handler(struct cm_conn *c, int ev, void *ev_data) {
  if (ev == CM_EV_ERROR) return; /* nothing to do, and no allocation inside cm_error */
  struct sntp_state *st = c->pfn_data;
  if (st == NULL && ev == CM_EV_CLOSE) return;
  if (st == NULL && (st = new_state(c)) == NULL) {
    cm_error(c, "OOM");
    return;
  }
  switch (ev) {
    case CM_EV_CONNECT: cm_sntp_request(c); break;
    case CM_EV_READ: on_read(c, st, ev_data != NULL ? *(const long *) ev_data : 0); break;
    case CM_EV_CLOSE:
      c->pfn_data = NULL;
      free_state(st);
      break;
    default: break;
  }
}

bool cm_sntp_request(struct cm_conn *c) {
  uint8_t pkt[CM_SNTP_LEN];
  uint32_t noise = 0;
  if (c->is_closing) return false;
  if (c->fd < 0 || c->is_connecting) {
    CM_ERROR("conn %llu: SNTP request while resolving: ignored", (unsigned long long) c->id);
    return false;
  }
  int64_t now = cm_time_ms();
  /* Random bits below the millisecond (2^22 units of 2^-32 s are under
   * 1 ms): the origin a reply must echo is then not guessable from the
   * clock alone (RFC 5905 §9.1), and the time it encodes stays exact. */
  cm_random(&noise, sizeof(noise));
  uint64_t xmit = cm_sntp_from_ms(now) + (noise & 0x3fffffu);
  cm_sntp_request_build(pkt, sizeof(pkt), xmit);
  if (!cm_send(c, pkt, sizeof(pkt))) {
    CM_ERROR("conn %llu: SNTP request not sent", (unsigned long long) c->id);
    return false;
  }
  struct sntp_state *st = ours(c);
  if (st != NULL) {
    st->origin = xmit;
    st->sent_ms = now;
  }
  return true;
}

/* "sntp://host[:port]" and "udp://host[:port]" as "udp://host:port", the
 * port 123 when none is given.  NULL for any other scheme (used as is) or
 * when out of memory (*oom set). */
static char *udp_url(const char *url, bool *oom) {
  struct cm_url u;
  cm_url_split(url, &u);
  *oom = false;
  bool sntp = u.scheme.len == 4 && strncasecmp(u.scheme.buf, "sntp", 4) == 0;
  bool udp = u.scheme.len == 3 && strncasecmp(u.scheme.buf, "udp", 3) == 0;
  if (!sntp && !udp) return NULL;
  unsigned port = cm_url_port(url);
  if (port == 0 && u.port.len == 0) port = CM_SNTP_PORT;
  size_t size = u.host.len + 32;
  char *out = malloc(size);
  if (out == NULL) {
    *oom = true;
    return NULL;
  }
  const char *open = u.host_is_ip6 ? "[" : "", *close = u.host_is_ip6 ? "]" : "";
  snprintf(out, size, "udp://%s%.*s%s:%u", open, (int) u.host.len, u.host.buf != NULL ? u.host.buf : "",
           close, port);
  return out;
}

struct cm_conn *cm_sntp_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  bool oom;
  if (url == NULL || url[0] == '\0') return NULL;
  char *udp = udp_url(url, &oom);
  if (oom) return NULL;
  struct cm_conn *c = cm__connect(mgr, udp != NULL ? udp : url, cm_sntp_handler, fn, fn_data);
  free(udp);
  return c;
}
