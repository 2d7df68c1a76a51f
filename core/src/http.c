/* http.c: the HTTP/1.1 protocol handler (RFC 9112) for servers and clients.
 *
 * It runs as c->pfn, before the user handler: on every CM_EV_READ it cuts
 * complete messages out of c->recv with the pure parser (http_parse.c) and
 * fires CM_EV_HTTP_HDRS / CM_EV_HTTP_MSG to c->fn.  The parsed bytes are
 * consumed after CM_EV_HTTP_MSG returns, so the user's CM_EV_READ that
 * follows sees only what is left (SPEC 2.5.2).
 *
 * Server side, requests are answered in order: after CM_EV_HTTP_MSG
 * c->is_resp stays set until the response is finished (cm_http_end, which
 * cm_http_reply calls).  While it is set, further pipelined requests wait in
 * c->recv; a response finished later (from a timer, a wakeup) asks the loop
 * for a synthetic CM_EV_READ (cm_resume) to come back to them.  A WebSocket
 * upgrade answers the same way, in the event or later: ws.c asks
 * cm__http_may_upgrade, then cm__http_hand_over lets go of the connection.
 *
 * Server connections share their listener's limits (cm/http.h) and wait in
 * one of its two deadline queues (http_srv.c): the head queue from the
 * first byte of a request head until its end, else the idle queue, moved
 * to its tail by every read, write and finished response. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* How the body of the message being received ends (RFC 9112 §6.3). */
enum body_kind {
  BODY_LENGTH,  /* Content-Length bytes (0 for requests without one) */
  BODY_CHUNKED, /* chunked, de-chunked in place as chunks arrive */
  BODY_CLOSE,   /* response without framing: everything until EOF */
};

/* Per-connection protocol state (c->pfn_data).  Positions are offsets into
 * c->recv, never pointers: the buffer moves when it grows. */
struct http_state {
  size_t head_len;     /* head of the message being received, 0 until parsed */
  size_t scanned;      /* recv bytes already searched for the end of the head */
  size_t line_at;      /* start of the first head line not yet measured (line limit) */
  size_t send_mark;    /* server: c->send.len when CM_EV_HTTP_MSG fired */
  size_t body_len;     /* LENGTH: bytes announced; CHUNKED: de-chunked so far */
  enum body_kind kind; /* framing of the current message, once head_len > 0 */
  bool keep_alive;     /* server: the request being answered keeps the conn */
  bool head_request;   /* server: it was HEAD, so replies carry no body */
  bool dispatching;    /* inside our CM_EV_HTTP_MSG: no resume needed */
  bool begun;          /* server: the handler began an answer it has not finished */
  bool lingering;      /* server: an error answer went out; dropping input */
  bool shut;           /* server: lingering, and our side is shut down */
  /* server only */
  struct cm__http_srv *srv;  /* the listener's limits and deadline queues */
  uint64_t id;               /* ours, looked up on expiry: never a dangling pointer */
  struct cm__http_wait wait; /* place in a deadline queue (head: since its first byte) */
  struct cm_timer *linger;   /* ends the lingering close, NULL before */
  /* client only */
  struct cm__http_out *out; /* requests seen by cm_http_send, NULL before */
};

static void reset(struct http_state *st) {
  st->head_len = st->scanned = st->body_len = st->line_at = 0;
  st->kind = BODY_LENGTH;
}

/* The defaults (cm/http.h); also the limits of a connection whose state
 * has no listener (a client). */
static const struct cm_http_limits default_limits = {
    CM_HTTP_MAX_HEAD,        CM_HTTP_MAX_FIELDS,      CM_HTTP_MAX_URI,         CM_HTTP_MAX_BODY,
    CM_HTTP_HEAD_TIMEOUT_MS, CM_HTTP_IDLE_TIMEOUT_MS, CM_HTTP_MAX_HEADER_LINE,
};

void cm_http_limits_init(struct cm_http_limits *lim) { *lim = default_limits; }

/* Our state on `c`, or NULL if c is not (or no longer) an HTTP connection. */
static struct http_state *ours(const struct cm_conn *c) {
  return c->pfn == cm_http_handler ? c->pfn_data : NULL;
}

static void free_state(struct http_state *st) {
  if (st->linger != NULL) {
    cm_timer_stop(cm__http_srv_mgr(st->srv), st->linger);
    free(st->linger);
  }
  if (st->srv != NULL) {
    cm__http_srv_wait(st->srv, &st->wait, CM__HTTP_Q_NONE);
    cm__http_srv_drop(st->srv);
  }
  cm__http_out_free(st->out);
  free(st);
}

static const struct cm_http_limits *limits(const struct http_state *st) {
  return st->srv != NULL ? cm__http_srv_limits(st->srv) : &default_limits;
}

/* The protocol's events go to the user handler only: c->pfn is us, and
 * cm_call() would hand us our own events back. */
static void fire(struct cm_conn *c, int ev, struct cm_http_msg *hm) {
  if (c->fn != NULL) c->fn(c, ev, hm);
}

/* Stop being the protocol of `c` after the application switched it to
 * another one (WebSocket upgrade).  The new protocol gets the bytes that
 * are already buffered through a resumed read. */
static void detach(struct cm_conn *c, struct http_state *st) {
  if (c->pfn_data == st) c->pfn_data = NULL;
  free_state(st);
  if (c->recv.len > 0) cm_resume(c);
}

/* After every callback: may we go on?  The handler may have closed the
 * connection or swapped the protocol; `st` is gone when this says false
 * because of a swap. */
static bool still_ours(struct cm_conn *c, struct http_state *st) {
  if (c->pfn != cm_http_handler) {
    detach(c, st);
    return false;
  }
  return !c->is_closing;
}

/* ---- lingering close (server) ------------------------------------------- */

/* The lingering time is over: close, whatever the client still sends. */
static void linger_over(struct cm_timer *t, void *arg) {
  struct http_state *st = arg;
  struct cm_conn *c = cm_mgr_find(cm__http_srv_mgr(st->srv), st->id);
  (void) t;
  if (c != NULL && ours(c) == st) cm_close(c);
}

/* After an error answer: keep reading (and dropping) until the client
 * closes or CM_HTTP_LINGER_MS pass.  Closing at once would leave the rest
 * of a body unread, and a socket closed with unread input sends a reset
 * that can destroy the answer before the client reads it (RFC 9112 §9.6:
 * close in stages, first our side, then the reading one). */
static void linger(struct cm_conn *c, struct http_state *st) {
  st->lingering = true;
  if (st->srv == NULL || st->linger != NULL) return;
  st->linger = calloc(1, sizeof(*st->linger));
  if (st->linger == NULL) {
    cm_drain(c); /* no memory: the plain close */
    return;
  }
  cm_timer_start(c->mgr, st->linger, CM_HTTP_LINGER_MS, CM_TIMER_ONCE, linger_over, st);
}

/* Lingering and the answer is all written: send our FIN (after TLS's
 * close_notify, so that a TLS peer reads a clean end), read on. */
static void linger_flushed(struct cm_conn *c, struct http_state *st) {
  if (!st->lingering || st->shut || c->send.len > 0 || c->fsrc != NULL || c->fd < 0) return;
  st->shut = true;
  cm__tls_shutdown_write(c);
}

/* Answer a request we refuse with `status` and close after it, dropping
 * whatever else the peer sent: after a framing error or a passed limit the
 * rest of the stream cannot be trusted (RFC 9112 §3, §6.3; RFC 9110 §15.5:
 * "Connection: close" tells the client not to reuse the connection).  The
 * close lingers (above). */
static void refuse(struct cm_conn *c, struct http_state *st, int status, const char *why) {
  char buf[192];
  const char *reason = cm_http_reason(status);
  int n = snprintf(buf, sizeof(buf),
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s\n",
                   status, reason, strlen(reason) + 1, reason);
  CM_DEBUG("conn %llu: refused (%d): %s", (unsigned long long) c->id, status, why);
  cm_iobuf_consume(&c->recv, c->recv.len);
  reset(st);
  c->is_resp = 0;
  c->mgr->stats.http_responses[status / 100 <= 5 ? status / 100 : 0]++;
  cm_send(c, buf, (size_t) n);
  if (st->srv != NULL) linger(c, st);
  else
    cm_drain(c);
}

/* A message that cannot be parsed.  Server: 400 (RFC 9112 §3: a server
 * that receives an invalid request-line SHOULD respond 400).  Client: the
 * error path. */
static void fail(struct cm_conn *c, struct http_state *st, const char *why) {
  if (!c->is_client) {
    refuse(c, st, 400, why);
    return;
  }
  cm_iobuf_consume(&c->recv, c->recv.len);
  reset(st);
  cm_error(c, "%s", why);
}

/* ---- deadlines (server) ------------------------------------------------ */

/* Wait in queue `q` of the listener's (no-op for a client).  A connection
 * already there keeps its place: a head's deadline counts from its first
 * byte. */
static void wait_in(struct http_state *st, int q) {
  if (st->srv != NULL) cm__http_srv_wait(st->srv, &st->wait, q);
}

/* Activity (a read, a write, a finished response): the idle time starts
 * again.  A head being received keeps its own deadline. */
static void active(struct http_state *st) {
  if (st->srv != NULL && st->wait.q == CM__HTTP_Q_IDLE) cm__http_srv_touch(st->srv, &st->wait);
}

/* A deadline passed (http_srv.c's timer).  A head that never ended gets
 * 408 (RFC 9110 §15.5.9), an idle or stalled connection is closed (RFC
 * 9112 §9.8); an answer the application still owes is its business (long
 * polling), so that one is only looked at again a period later. */
static void on_expired(struct cm__http_wait *w, int q) {
  struct http_state *st = (struct http_state *) (void *) ((char *) w - offsetof(struct http_state, wait));
  struct cm_conn *c = cm_mgr_find(cm__http_srv_mgr(st->srv), st->id);
  if (c == NULL || ours(c) != st) {
    /* The connection went away, or changed protocol outside our events,
     * without our CM_EV_CLOSE: the queue is all that still refers to `st`. */
    free_state(st);
    return;
  }
  if (c->is_closing) return;
  if (q == CM__HTTP_Q_HEAD) {
    refuse(c, st, 408, "request head timeout");
    wait_in(st, CM__HTTP_Q_IDLE); /* the 408 itself must make progress */
    return;
  }
  bool writing = c->send.len > 0 || c->fsrc != NULL;
  if (c->is_resp && !writing) {
    wait_in(st, CM__HTTP_Q_IDLE);
    return;
  }
  CM_DEBUG("conn %llu: idle timeout", (unsigned long long) c->id);
  cm_close(c);
}

/* After reading: a head being received (not merely waiting behind an
 * answer) waits in the head queue, anything else in the idle queue.  With
 * no head timeout, a head has the idle deadline too. */
static void track_head(struct cm_conn *c, struct http_state *st) {
  bool in_head = st->head_len == 0 && c->recv.len > 0 && !c->is_resp && !c->is_draining && !st->lingering;
  if (in_head && limits(st)->head_timeout_ms != 0) wait_in(st, CM__HTTP_Q_HEAD);
  else if (st->wait.q != CM__HTTP_Q_IDLE)
    wait_in(st, CM__HTTP_Q_IDLE);
}

/* ---- limits (server) --------------------------------------------------- */

/* Is the request-target (after the method and its SP, RFC 9112 §3) longer
 * than `max`?  Looks at no more than max + 1 bytes of it, so a target still
 * arriving is judged as soon as it is too long. */
static bool target_too_long(const char *d, size_t len, size_t max) {
  const char *sp = memchr(d, ' ', len);
  if (sp == NULL) return false;
  size_t avail = len - (size_t) (sp + 1 - d);
  size_t look = avail < max + 1 ? avail : max + 1;
  return avail > max && memchr(sp + 1, ' ', look) == NULL;
}

/* Header lines in a complete head: its line feeds less the request line
 * and the empty line (obs-fold is refused by the parser). */
static size_t count_fields(struct cm_str head) {
  size_t lines = 0;
  const char *p = head.buf, *end = head.buf + head.len;
  while ((p = memchr(p, '\n', (size_t) (end - p))) != NULL) {
    lines++;
    p++;
  }
  return lines >= 2 ? lines - 2 : 0;
}

/* Header lines of a parsed head.  The parser keeps every field until its
 * array is full, so only a head that filled it needs its lines counted. */
static size_t field_count(const struct cm_http_msg *hm) {
  return hm->num_headers < CM_HTTP_MAX_HEADERS ? hm->num_headers : count_fields(hm->head);
}

/* Is a header line longer than `max`?  Lines are measured from
 * st->line_at on, which then moves past the complete ones, so a head that
 * trickles in is measured once, not once per read; the first line (the
 * request line) is max_uri's business.  The line still arriving counts
 * with what it has so far. */
static bool line_too_long(const char *d, size_t len, struct http_state *st, size_t max) {
  while (st->line_at < len) {
    const char *nl = memchr(d + st->line_at, '\n', len - st->line_at);
    size_t end = nl != NULL ? (size_t) (nl - d) : len;
    size_t n = end - st->line_at;
    if (nl != NULL && n > 0 && d[end - 1] == '\r') n--; /* the line ending is not the line */
    if (st->line_at > 0 && n > max) return true;
    if (nl == NULL) return false;
    st->line_at = end + 1;
  }
  return false;
}

/* The status for a head of `len` bytes (`hm` NULL while it is incomplete)
 * that passes a limit, else 0.  414 before 431: RFC 9112 §3 names 414 for
 * a target longer than the server wishes to parse. */
static int head_limit(const struct cm_conn *c, struct http_state *st, size_t len,
                      const struct cm_http_msg *hm) {
  const struct cm_http_limits *lim = limits(st);
  const char *d = cm_iobuf_data(&c->recv);
  if (lim->max_uri != 0 && len > lim->max_uri && target_too_long(d, len, lim->max_uri)) return 414;
  /* RFC 6585 §5: 431 for header fields too large, in all or in number. */
  if (lim->max_head != 0 && len > lim->max_head) return 431;
  /* A head shorter than the line limit cannot hold a line over it: most
   * requests are never scanned. */
  size_t max_line = lim->max_header_line;
  if (max_line != 0 && len > max_line && line_too_long(d, len, st, max_line)) return 431;
  if (hm != NULL && lim->max_headers != 0 && field_count(hm) > lim->max_headers) return 431;
  return 0;
}

/* Would a body of `n` bytes pass the limit, or never fit in c->recv next
 * to its head?  Judged before buffering it (RFC 9110 §15.5.14: 413). */
static bool body_too_large(const struct cm_conn *c, const struct http_state *st, uint64_t n) {
  uint64_t max = limits(st)->max_body;
  if (max != 0 && n > max) return true;
  return c->recv.cap != 0 && n > c->recv.cap - st->head_len;
}

/* ---- receiving ----------------------------------------------------------- */

/* Can the head be complete?  A head ends with an empty line, so after the
 * first look at a message only a new "\n\n" or "\n\r\n" makes a parse
 * worth it.  This keeps a head that trickles in byte by byte linear rather
 * than quadratic; the first look parses at once so garbage is refused on
 * its first bytes. */
static bool head_may_be_complete(const struct cm_iobuf *io, struct http_state *st) {
  const char *d = cm_iobuf_data(io);
  size_t from = st->scanned;
  st->scanned = io->len;
  if (from == 0) return true;
  from = from > 2 ? from - 2 : 0; /* the empty line may straddle the old end */
  for (size_t i = from; i + 1 < io->len; i++) {
    if (d[i] != '\n') continue;
    if (d[i + 1] == '\n') return true;
    if (i + 2 < io->len && d[i + 1] == '\r' && d[i + 2] == '\n') return true;
  }
  return false;
}

/* Status codes whose responses never have a body (RFC 9112 §6.3 (1)). */
static bool bodiless_status(struct cm_str code) {
  return code.buf[0] == '1' || cm_str_eq(code, "204") || cm_str_eq(code, "304");
}

/* Client: does this response answer a HEAD request (RFC 9112 §6.3 (1))?
 * Interim 1xx responses (but 101) do not answer a request. */
static bool answers_head_request(struct http_state *st, const struct cm_http_msg *hm) {
  bool final = hm->uri.buf[0] != '1' || cm_str_eq(hm->uri, "101");
  return final && st->out != NULL && cm__http_out_next_is_head(st->out);
}

/* Decide how the body of a message ends (RFC 9112 §6.3). */
static bool set_framing(struct http_state *st, const struct cm_http_msg *hm, size_t head_len) {
  st->body_len = 0;
  bool to_head = hm->is_response && answers_head_request(st, hm);
  if (hm->is_response && (bodiless_status(hm->uri) || to_head)) {
    st->kind = BODY_LENGTH;
  } else if (hm->is_chunked) {
    st->kind = BODY_CHUNKED;
  } else if (hm->content_length >= 0) {
    /* A length that could not even be addressed is refused up front. */
    if ((uint64_t) hm->content_length > SIZE_MAX - head_len) return false;
    st->kind = BODY_LENGTH;
    st->body_len = (size_t) hm->content_length;
  } else {
    /* §6.3 (7): a request without framing has no body; (8): a response
     * without framing runs until the connection closes. */
    st->kind = hm->is_response ? BODY_CLOSE : BODY_LENGTH;
  }
  return true;
}

static bool is_http11(struct cm_str proto) {
  return proto.len == 8 && (proto.buf[5] > '1' || (proto.buf[5] == '1' && proto.buf[7] >= '1'));
}

/* RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" waits for
 * an interim 100 before the body.  Only HTTP/1.1 clients may expect it, and
 * only while none of the body has arrived. */
static void continue_if_expected(struct cm_conn *c, const struct http_state *st,
                                 const struct cm_http_msg *hm) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  const struct cm_str *expect = cm_http_header(hm, "Expect");
  bool has_body = st->kind == BODY_CHUNKED || st->body_len > 0;
  if (expect == NULL || !has_body || !is_http11(hm->proto) || c->recv.len > st->head_len) return;
  if (cm_str_casecmp(*expect, cm_str_c("100-continue"))) cm_send(c, cont, sizeof(cont) - 1);
}

/* POST and PUT must frame their body (SPEC 2.5.4; RFC 9110 §15.5.12 lets a
 * server require it with 411): without Content-Length or chunking, bytes
 * of a body would be read as the next request. */
static bool needs_length(const struct cm_http_msg *hm) {
  if (hm->is_chunked || hm->content_length >= 0) return false;
  return cm_str_eq(hm->method, "POST") || cm_str_eq(hm->method, "PUT");
}

/* RFC 9112 §2.3, RFC 9110 §15.6.6: this server speaks HTTP/1.x only; the
 * parser let any "HTTP/d.d" through.  §3.2: an HTTP/1.1 request without
 * Host is answered 400 (HTTP/1.0 predates the field). */
static int version_and_host(const struct cm_http_msg *hm) {
  if (hm->proto.buf[5] != '1') return 505;
  if (!hm->has_host && hm->proto.buf[7] != '0') return 400;
  return 0;
}

/* Server checks of a complete head, before anyone sees it.  Returns
 * whether the request may go on. */
static bool admit(struct cm_conn *c, struct http_state *st, const struct cm_http_msg *hm, size_t n) {
  int status = head_limit(c, st, n, hm);
  if (status == 0) status = version_and_host(hm);
  if (status == 0 && st->kind == BODY_LENGTH && body_too_large(c, st, st->body_len)) status = 413;
  if (status == 0 && needs_length(hm)) status = 411;
  if (status != 0) {
    refuse(c, st, status, "limit");
    return false;
  }
  st->keep_alive = hm->keep_alive;
  st->head_request = cm_str_eq(hm->method, "HEAD");
  continue_if_expected(c, st, hm);
  return true;
}

/* Server: a head still incomplete may already pass a limit. */
static bool partial_head_ok(struct cm_conn *c, struct http_state *st) {
  int status = c->is_client ? 0 : head_limit(c, st, c->recv.len, NULL);
  if (status != 0) refuse(c, st, status, "limit");
  return status == 0;
}

/* Parse the head of the next message into `hm` and fire CM_EV_HTTP_HDRS.
 * Returns 1 when the head is done, 0 to wait for more bytes, -1 after a
 * failure. */
static int begin_message(struct cm_conn *c, struct http_state *st, struct cm_http_msg *hm) {
  if (!head_may_be_complete(&c->recv, st)) return partial_head_ok(c, st) ? 0 : -1;
  int n = cm_http_parse(cm_iobuf_data(&c->recv), c->recv.len, hm);
  if (n == 0) return partial_head_ok(c, st) ? 0 : -1;
  /* A request on a client, or a response on a server, is as bad as junk. */
  if (n < 0 || hm->is_response != (bool) c->is_client) {
    fail(c, st, "not http");
    return -1;
  }
  st->head_len = (size_t) n;
  st->scanned = 0;
  if (!set_framing(st, hm, (size_t) n)) {
    fail(c, st, "Invalid Content-Length");
    return -1;
  }
  if (!c->is_client && !admit(c, st, hm, (size_t) n)) return -1;
  fire(c, CM_EV_HTTP_HDRS, hm);
  return 1;
}

/* De-chunk every complete chunk that has arrived (RFC 9112 §7.1), moving
 * the data down over the size lines so that the body becomes contiguous
 * right after the head.  One pass and one final delete: linear in the
 * bytes, however small the chunks.  A server refuses a body that grows
 * past its limit as soon as a chunk size announces it, before buffering
 * the chunk.  Returns 1 when the last chunk is in, 0 to wait, -1 after a
 * failure. */
static int dechunk(struct cm_conn *c, struct http_state *st) {
  char *d = cm_iobuf_data(&c->recv);
  size_t w = st->head_len + st->body_len; /* where decoded data goes */
  size_t r = w;                           /* next encoded byte */
  int done = 0;
  while (done == 0) {
    size_t ofs = 0, n = 0;
    int len = cm_http_dechunk(d + r, c->recv.len - r, &ofs, &n);
    if (len < 0) {
      fail(c, st, "Invalid chunk");
      return -1;
    }
    if (!c->is_client && n > 0 && body_too_large(c, st, (uint64_t) st->body_len + n)) {
      refuse(c, st, 413, "chunked body limit");
      return -1;
    }
    if (len == 0) break;
    memmove(d + w, d + r + ofs, n);
    w += n;
    r += (size_t) len;
    st->body_len += n;
    done = n == 0;
  }
  cm_iobuf_del(&c->recv, w, r - w);
  return done;
}

/* Is the body of the current message complete?  Same returns as above. */
static int body_ready(struct cm_conn *c, struct http_state *st) {
  switch (st->kind) {
    case BODY_LENGTH: return c->recv.len - st->head_len >= st->body_len;
    case BODY_CHUNKED: return dechunk(c, st);
    case BODY_CLOSE: return 0; /* delivered on CM_EV_CLOSE */
  }
  return 0;
}

/* Fire CM_EV_HTTP_MSG for the complete message at the front of c->recv
 * and consume it.  `hm` holds its parsed head if that is still where it
 * was parsed, else NULL.  Returns whether to go on with the next one. */
static bool deliver(struct cm_conn *c, struct http_state *st, struct cm_http_msg *hm) {
  struct cm_http_msg again;
  const char *d = cm_iobuf_data(&c->recv);
  size_t total = st->head_len + st->body_len;
  /* The head was validated already; parsing it again is cheaper than
   * keeping slices that would dangle when the buffer moves. */
  if (hm == NULL) {
    hm = &again;
    if (cm_http_parse(d, st->head_len, hm) != (int) st->head_len) {
      fail(c, st, "not http"); /* someone rewrote c->recv under us */
      return false;
    }
  }
  hm->body = cm_str_n(d + st->head_len, st->body_len);
  hm->message = cm_str_n(hm->head.buf, (size_t) (d + total - hm->head.buf));
  if (!c->is_client) {
    c->is_resp = 1;
    c->resp_class = 0;
    c->mgr->stats.http_requests++;
  }
  st->send_mark = c->send.len;
  st->dispatching = true;
  fire(c, CM_EV_HTTP_MSG, hm);
  st->dispatching = false;
  /* Later the send buffer drains: what the handler began must be known
   * now, so that a late upgrade cannot be sent after half an answer. */
  if (ours(c) == st) st->begun = c->is_resp && cm_http_response_started(c);
  cm_iobuf_consume(&c->recv, total);
  reset(st);
  return still_ours(c, st);
}

/* One step of the read loop: returns whether another message may follow. */
static bool next_message(struct cm_conn *c, struct http_state *st) {
  struct cm_http_msg hm;
  const char *parsed_at = NULL;
  if (st->head_len == 0) {
    if (begin_message(c, st, &hm) <= 0) return false;
    if (!still_ours(c, st)) return false;
    parsed_at = cm_iobuf_data(&c->recv);
  }
  if (body_ready(c, st) <= 0) return false;
  /* A message that arrived whole is parsed once: its slices are good if
   * nobody consumed or moved c->recv since (de-chunking only rewrites the
   * bytes after the head). */
  bool same = parsed_at != NULL && parsed_at == cm_iobuf_data(&c->recv);
  return deliver(c, st, same ? &hm : NULL);
}

/* May the read loop take the next message?  A server stops while a
 * response is pending (is_resp) and once it decided to close. */
static bool may_parse(struct cm_conn *c, const struct http_state *st) {
  if (c->is_closing || c->recv.len == 0 || st->lingering) return false;
  /* Back-pressure: a peer that pipelines requests but does not read the
   * answers would have every buffered request answered in one go (1,400
   * answers from one 64 KiB read).  Stop at the send high-water mark; the
   * loop resumes us when sending drains below it (mgr.c wanted_mask). */
  if (c->mgr->send_hiwat > 0 && c->send.len >= c->mgr->send_hiwat) {
    c->is_throttled = 1;
    return false;
  }
  return c->is_client || (!c->is_resp && !c->is_draining);
}

static void on_read(struct cm_conn *c, struct http_state *st) {
  /* Our offsets are only valid if nobody else consumed c->recv meanwhile. */
  if (st->head_len + (st->kind == BODY_CHUNKED ? st->body_len : 0) > c->recv.len) reset(st);
  if (st->scanned > c->recv.len) st->scanned = 0;
  if (st->line_at > c->recv.len) st->line_at = 0;
  if (st->lingering) {
    cm_iobuf_consume(&c->recv, c->recv.len); /* after an error answer: dropped */
    return;
  }
  /* A server closing after its response reads nothing more: drop what the
   * peer keeps sending rather than let it fill the buffer to the cap. */
  if (!c->is_client && c->is_draining) cm_iobuf_consume(&c->recv, c->recv.len);
  while (may_parse(c, st) && next_message(c, st)) {
  }
  /* `st` is gone if a handler switched protocols (detach). */
  if (!c->is_client && c->pfn == cm_http_handler) track_head(c, st);
}

/* Client: a response delimited by close (RFC 9112 §6.3 (8)) is complete
 * now, with whatever arrived as its body. */
static void on_close(struct cm_conn *c, struct http_state *st) {
  if (c->is_client && st->head_len > 0 && st->kind == BODY_CLOSE) {
    st->body_len = c->recv.len - st->head_len;
    deliver(c, st, NULL);
    if (c->pfn != cm_http_handler) return; /* deliver() freed st */
  }
  if (c->pfn_data == st) c->pfn_data = NULL;
  free_state(st);
}

/* The listener's shared part for a connection it accepted: made on first
 * use for a listener that has none; a private one (with the default limits)
 * when the listener is unknown.  Returns it with a reference for the
 * caller, or NULL (no memory). */
static struct cm__http_srv *srv_for(struct cm_conn *c, struct cm_conn *lsn) {
  bool ours_lsn = lsn != NULL && lsn->pfn == cm_http_handler;
  struct cm__http_srv *srv = ours_lsn ? lsn->pfn_data : NULL;
  if (srv != NULL) {
    cm__http_srv_hold(srv);
    return srv;
  }
  srv = cm__http_srv_new(c->mgr, NULL, on_expired);
  if (srv != NULL && ours_lsn) {
    lsn->pfn_data = srv; /* the listener's reference */
    cm__http_srv_hold(srv);
  }
  return srv;
}

/* New state for `c`; `lsn` is the listener of an accepted connection when
 * known (CM_EV_OPEN), whose limits and deadline queues it joins. */
static struct http_state *new_state(struct cm_conn *c, struct cm_conn *lsn) {
  struct http_state *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->keep_alive = true;
  st->id = c->id;
  if (c->is_accepted) {
    st->srv = srv_for(c, lsn);
    if (st->srv == NULL) {
      free(st);
      return NULL;
    }
    wait_in(st, CM__HTTP_Q_IDLE);
  }
  c->pfn_data = st;
  return st;
}

/* A listener only hands the protocol, its limits and queues down. */
static void listener_event(struct cm_conn *c, int ev) {
  if (ev == CM_EV_CLOSE) {
    cm__http_srv_drop(c->pfn_data);
    c->pfn_data = NULL;
  }
}

void cm_http_handler(struct cm_conn *c, int ev, void *ev_data) {
  /* Errors need nothing from us (and allocating on CM_EV_ERROR could
   * recurse through cm_error). */
  if (c->is_listening) {
    listener_event(c, ev);
    return;
  }
  if (ev == CM_EV_ERROR) return;
  struct http_state *st = c->pfn_data;
  if (st == NULL) {
    if (ev == CM_EV_CLOSE) return;
    st = new_state(c, ev == CM_EV_OPEN ? ev_data : NULL);
    if (st == NULL) {
      cm_error(c, "OOM");
      return;
    }
  }
  switch (ev) {
    case CM_EV_READ:
      if (ev_data != NULL && *(const long *) ev_data > 0) active(st);
      on_read(c, st);
      break;
    case CM_EV_WRITE:
      active(st);
      linger_flushed(c, st);
      break;
    case CM_EV_CLOSE: on_close(c, st); break;
    default: break;
  }
}

struct cm_conn *cm_http_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm_http_listen_opts(mgr, url, NULL, fn, fn_data);
}

struct cm_conn *cm_http_listen_opts(struct cm_mgr *mgr, const char *url, const struct cm_http_limits *lim,
                                    cm_handler_fn fn, void *fn_data) {
  struct cm__http_srv *srv = cm__http_srv_new(mgr, lim, on_expired);
  if (srv == NULL) return NULL;
  struct cm_conn *c = cm__listen(mgr, url, cm_http_handler, fn, fn_data);
  if (c == NULL || c->is_closing || c->pfn != cm_http_handler || c->pfn_data != NULL) {
    cm__http_srv_drop(srv); /* failed, or the OPEN handler made it something else */
    return c;
  }
  c->pfn_data = srv;
  return c;
}

struct cm_conn *cm_http_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__connect(mgr, url, cm_http_handler, fn, fn_data);
}

/* The upgrade hook (ws.c): the listener block of an HTTP server
 * connection, or of an HTTP listener, made now for a listener that has
 * none yet. */
struct cm__http_srv *cm__http_srv_of(struct cm_conn *c) {
  if (c->pfn != cm_http_handler) return NULL;
  if (!c->is_listening) return c->pfn_data != NULL ? ((struct http_state *) c->pfn_data)->srv : NULL;
  if (c->pfn_data == NULL) c->pfn_data = cm__http_srv_new(c->mgr, NULL, on_expired);
  return c->pfn_data;
}

bool cm__http_may_upgrade(const struct cm_conn *c) {
  if (c->pfn != cm_http_handler) return true; /* another protocol answers for itself */
  const struct http_state *st = c->pfn_data;
  if (st == NULL || c->is_client || c->is_listening || !c->is_resp || st->lingering) return false;
  return st->dispatching ? !cm_http_response_started(c) : !st->begun && !c->is_draining;
}

void cm__http_hand_over(struct cm_conn *c) {
  struct http_state *st = ours(c);
  if (st == NULL || st->dispatching) return; /* deliver() detaches after the event */
  c->pfn_data = NULL;
  free_state(st);
  if (c->recv.len > 0) cm_resume(c);
}

/* ---- sending --------------------------------------------------------------- */

/* Append to c->send after a successful reserve: cannot fail then. */
static void put(struct cm_conn *c, const void *buf, size_t len) {
  if (len > 0) cm_iobuf_add(&c->send, buf, len);
}

/* The request being answered was HEAD (RFC 9110 §9.3.2: same header
 * fields as for GET, never content). */
static bool answers_head(const struct cm_conn *c) {
  const struct http_state *st = ours(c);
  return st != NULL && !c->is_client && st->head_request;
}

/* Decimal digits of `v` into `buf` (room for 20); returns their count.
 * Replies are formatted once per request: no printf machinery here. */
static size_t fmt_u64(char *buf, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char) ('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  return n;
}

/* "HTTP/1.1 <status> <reason>\r\n" into `buf` (96 bytes). */
static size_t status_line(char *buf, int status) {
  const char *reason = cm_http_reason(status);
  size_t rn = strlen(reason), n = 9;
  if (rn > 64) rn = 64; /* the table's longest is 31 */
  memcpy(buf, "HTTP/1.1 ", 9);
  n += fmt_u64(buf + n, (uint64_t) status);
  buf[n++] = ' ';
  memcpy(buf + n, reason, rn);
  n += rn;
  memcpy(buf + n, "\r\n", 2);
  return n + 2;
}

/* "Content-Length: n" and the blank line into `buf` (48 bytes).  1xx and
 * 204 responses must not carry the field (RFC 9110 §8.6), nor a body; nor
 * an empty 304, whose length would have to be that of the 200 it stands
 * for (same section), which only the application knows. */
static size_t reply_tail(char *buf, int status, size_t len) {
  if (status < 200 || status == 204 || (status == 304 && len == 0)) {
    memcpy(buf, "\r\n", 2);
    return 2;
  }
  size_t n = 16;
  memcpy(buf, "Content-Length: ", 16);
  n += fmt_u64(buf + n, len);
  memcpy(buf + n, "\r\n\r\n", 4);
  return n + 4;
}

bool cm_http_closes_after(const struct cm_conn *c) {
  const struct http_state *st = ours(c);
  return st != NULL && !c->is_client && !c->is_listening && !st->keep_alive;
}

bool cm_http_has_field(const char *h, size_t len, const char *name) {
  size_t n = strlen(name);
  for (size_t at = 0; h != NULL && at < len;) {
    if (len - at > n && h[at + n] == ':' && cm_str_casecmp(cm_str_n(h + at, n), cm_str_n(name, n)))
      return true;
    const char *nl = memchr(h + at, '\n', len - at);
    if (nl == NULL) break;
    at = (size_t) (nl - h) + 1;
  }
  return false;
}

/* The field a final response carries when the connection closes after it
 * (RFC 9112 §9.6: the server that closes says so; clients such as wrk
 * otherwise count the close as a read error).  Looked for in the caller's
 * headers only on such a connection: keep-alive replies pay nothing. */
static const char close_field[] = "Connection: close\r\n";

static bool needs_close_field(const struct cm_conn *c, int status, const char *headers, size_t len) {
  return status >= 200 && cm_http_closes_after(c) && !cm_http_has_field(headers, len, "Connection");
}

bool cm_http_reply(struct cm_conn *c, int status, const char *headers, size_t headers_len, const void *body,
                   size_t len) {
  char start[96], tail[48];
  if (c->is_closing || status < 100 || status > 999) return false;
  if (headers == NULL) headers_len = 0;
  if (body == NULL) len = 0;
  if ((status < 200 || status == 204) && len > 0) return false;
  size_t sn = status_line(start, status);
  size_t tn = reply_tail(tail, status, len);
  size_t sent = answers_head(c) ? 0 : len;
  bool add_close = needs_close_field(c, status, headers, headers_len);
  size_t fixed = sn + tn + (add_close ? sizeof(close_field) - 1 : 0);
  if (headers_len > SIZE_MAX - fixed || sent > SIZE_MAX - fixed - headers_len) return false;
  /* Reserve once: the response goes out whole or not at all. */
  if (cm_iobuf_reserve(&c->send, fixed + headers_len + sent) != 0) return false;
  put(c, start, sn);
  put(c, headers, headers_len);
  if (add_close) put(c, close_field, sizeof(close_field) - 1);
  put(c, tail, tn);
  put(c, body, sent);
  if (c->is_resp) c->resp_class = (unsigned) (status / 100 <= 5 ? status / 100 : 7) & 7u;
  cm__touch(c);
  /* An interim response (100 Continue, 103 Early Hints) does not answer
   * the request (RFC 9110 §15.2); 101 ends HTTP on this connection. */
  if (status >= 200 || status == 101) cm_http_end(c);
  return true;
}

bool cm_http_response_started(const struct cm_conn *c) {
  const struct http_state *st = ours(c);
  if (st == NULL || c->is_client || c->is_listening) return false;
  if (c->is_closing || c->is_draining || !c->is_resp) return true;
  return c->send.len != st->send_mark || c->fsrc != NULL;
}

/* The 500 closes the way a refusal does, lingering: the rest of the
 * request's body or pipelined requests may still be unread, and closing
 * over them would send a reset that can destroy the 500 (RFC 9112 §9.6). */
bool cm_http_internal_error(struct cm_conn *c) {
  static const char hdrs[] = "Content-Type: text/plain\r\nConnection: close\r\n";
  static const char body[] = "Internal Server Error\n";
  struct http_state *st = ours(c);
  if (st == NULL || c->is_client || c->is_listening || cm_http_response_started(c)) return false;
  st->keep_alive = false;
  if (st->srv != NULL) linger(c, st); /* first: then cm_http_end does not drain */
  bool ok = cm_http_reply(c, 500, hdrs, sizeof(hdrs) - 1, body, sizeof(body) - 1);
  if (!ok) cm_drain(c);
  return ok;
}

void cm_http_end(struct cm_conn *c) {
  struct http_state *st = ours(c);
  bool was_pending = c->is_resp;
  c->is_resp = 0;
  if (st == NULL || c->is_client) return;
  if (was_pending) c->mgr->stats.http_responses[c->resp_class <= 5 ? c->resp_class : 0]++;
  active(st); /* the idle time starts now */
  /* RFC 9112 §9.6: after the response to a "close" request, close (a
   * 500 lingers instead: cm_http_internal_error). */
  if (!st->keep_alive) {
    if (!st->lingering) cm_drain(c);
    return;
  }
  /* Finished from outside our dispatch (a timer, a wakeup): come back to
   * the requests that waited in c->recv. */
  if (was_pending && !st->dispatching) cm_resume(c);
}

bool cm_http_chunk(struct cm_conn *c, const void *data, size_t len) {
  char size[32];
  if (c->is_closing) return false;
  if (data == NULL) len = 0;
  if (!answers_head(c)) {
    /* chunk = chunk-size CRLF chunk-data CRLF; last-chunk = "0" CRLF,
     * then the (empty) trailer section and CRLF (RFC 9112 §7.1). */
    int n =
        len > 0 ? snprintf(size, sizeof(size), "%zx\r\n", len) : snprintf(size, sizeof(size), "0\r\n\r\n");
    size_t total = (size_t) n + (len > 0 ? len + 2 : 0);
    if (len > SIZE_MAX - 64 || cm_iobuf_reserve(&c->send, total) != 0) return false;
    put(c, size, (size_t) n);
    put(c, data, len);
    if (len > 0) put(c, "\r\n", 2);
    cm__touch(c);
  }
  if (len == 0) cm_http_end(c);
  return true;
}

/* Length of a line break at data[i] (CRLF, LF or CR), 0 if none. */
static size_t line_break(struct cm_str s, size_t i) {
  if (s.buf[i] == '\n') return 1;
  if (s.buf[i] != '\r') return 0;
  return i + 1 < s.len && s.buf[i + 1] == '\n' ? 2 : 1;
}

/* Copy p[0..len) to out + at (unless out is NULL: measuring); the new end. */
static size_t emit(char *out, size_t at, const char *p, size_t len) {
  if (out != NULL && len > 0) memcpy(out + at, p, len);
  return at + len;
}

/* Write (or, with out NULL, measure) the SSE payload of one event. */
static size_t sse_payload(char *out, struct cm_str event, struct cm_str data) {
  size_t n = emit(out, 0, "event: ", 7), from = 0;
  n = emit(out, n, event.buf, event.len);
  n = emit(out, n, "\ndata: ", 7);
  for (size_t i = 0; i < data.len; i++) {
    size_t br = line_break(data, i);
    if (br == 0) continue;
    n = emit(out, n, data.buf + from, i - from);
    n = emit(out, n, "\ndata: ", 7);
    i += br - 1;
    from = i + 1;
  }
  n = emit(out, n, data.buf + from, data.len - from);
  return emit(out, n, "\n\n", 2);
}

bool cm_http_sse(struct cm_conn *c, struct cm_str event, struct cm_str data) {
  for (size_t i = 0; i < event.len; i++) {
    if (event.buf[i] == '\r' || event.buf[i] == '\n' || event.buf[i] == '\0') return false;
  }
  if (data.len > SIZE_MAX / 8 - 64) return false; /* worst case: every byte a break */
  size_t len = sse_payload(NULL, event, data);
  char *buf = malloc(len);
  if (buf == NULL) return false;
  sse_payload(buf, event, data);
  bool ok = cm_http_chunk(c, buf, len);
  free(buf);
  return ok;
}

bool cm_http_send(struct cm_conn *c, const void *buf, size_t len) {
  if (!cm_send(c, buf, len)) return false;
  struct http_state *st = ours(c);
  if (st == NULL || !c->is_client || len == 0) return true;
  if (st->out == NULL) st->out = cm__http_out_new();
  /* Out of memory: responses are framed as if for GET, as with cm_send. */
  if (st->out != NULL) cm__http_out_feed(st->out, buf, len);
  return true;
}
