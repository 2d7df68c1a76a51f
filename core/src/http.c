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
 * for a synthetic CM_EV_READ (cm_resume) to come back to them. */
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
  size_t body_len;     /* LENGTH: bytes announced; CHUNKED: de-chunked so far */
  enum body_kind kind; /* framing of the current message, once head_len > 0 */
  bool keep_alive;     /* server: the request being answered keeps the conn */
  bool head_request;   /* server: it was HEAD, so replies carry no body */
  bool dispatching;    /* inside our CM_EV_HTTP_MSG: no resume needed */
};

static const char bad_request_text[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nBad Request\n";

static void reset(struct http_state *st) {
  st->head_len = st->scanned = st->body_len = 0;
  st->kind = BODY_LENGTH;
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
  free(st);
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

/* A message that cannot be parsed.  Server: answer 400 and close after it
 * (RFC 9112 §3: a server that receives an invalid request-line SHOULD
 * respond 400), dropping the rest, since framing is lost.  Client: error. */
static void fail(struct cm_conn *c, struct http_state *st, const char *why) {
  cm_iobuf_consume(&c->recv, c->recv.len);
  reset(st);
  if (c->is_client) {
    cm_error(c, "%s", why);
    return;
  }
  CM_DEBUG("conn %llu: bad request: %s", (unsigned long long) c->id, why);
  c->is_resp = 0;
  cm_send(c, bad_request_text, sizeof(bad_request_text) - 1);
  cm_drain(c);
}

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

/* Decide how the body of a message ends (RFC 9112 §6.3).  A response to
 * HEAD also has no body; the client does not track its requests yet. */
static bool set_framing(struct http_state *st, const struct cm_http_msg *hm, size_t head_len) {
  st->body_len = 0;
  if (hm->is_response && bodiless_status(hm->uri)) {
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

/* Parse the head of the next message and fire CM_EV_HTTP_HDRS.  Returns 1
 * when the head is done, 0 to wait for more bytes, -1 after a failure. */
static int begin_message(struct cm_conn *c, struct http_state *st) {
  struct cm_http_msg hm;
  if (!head_may_be_complete(&c->recv, st)) return 0;
  int n = cm_http_parse(cm_iobuf_data(&c->recv), c->recv.len, &hm);
  if (n == 0) return 0;
  /* A request on a client, or a response on a server, is as bad as junk. */
  if (n < 0 || hm.is_response != (bool) c->is_client) {
    fail(c, st, "not http");
    return -1;
  }
  if (!set_framing(st, &hm, (size_t) n)) {
    fail(c, st, "Invalid Content-Length");
    return -1;
  }
  st->head_len = (size_t) n;
  st->scanned = 0;
  if (!c->is_client) {
    st->keep_alive = hm.keep_alive;
    st->head_request = cm_str_eq(hm.method, "HEAD");
  }
  fire(c, CM_EV_HTTP_HDRS, &hm);
  return 1;
}

/* De-chunk every complete chunk that has arrived (RFC 9112 §7.1), moving
 * the data down over the size lines so that the body becomes contiguous
 * right after the head.  One pass and one final delete: linear in the
 * bytes, however small the chunks.  Returns 1 when the last chunk is in,
 * 0 to wait, -1 after a failure. */
static int dechunk(struct cm_conn *c, struct http_state *st) {
  char *d = cm_iobuf_data(&c->recv);
  size_t w = st->head_len + st->body_len; /* where decoded data goes */
  size_t r = w;                           /* next encoded byte */
  int done = 0;
  while (done == 0) {
    size_t ofs = 0, n = 0;
    int len = cm_http_dechunk(d + r, c->recv.len - r, &ofs, &n);
    if (len == 0) break;
    if (len < 0) {
      fail(c, st, "Invalid chunk");
      return -1;
    }
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
 * and consume it.  Returns whether to go on with the next one. */
static bool deliver(struct cm_conn *c, struct http_state *st) {
  struct cm_http_msg hm;
  const char *d = cm_iobuf_data(&c->recv);
  size_t total = st->head_len + st->body_len;
  /* The head was validated already; parsing it again is cheaper than
   * keeping slices that would dangle when the buffer moves. */
  if (cm_http_parse(d, st->head_len, &hm) != (int) st->head_len) {
    fail(c, st, "not http"); /* someone rewrote c->recv under us */
    return false;
  }
  hm.body = cm_str_n(d + st->head_len, st->body_len);
  hm.message = cm_str_n(hm.head.buf, (size_t) (d + total - hm.head.buf));
  if (!c->is_client) c->is_resp = 1;
  st->dispatching = true;
  fire(c, CM_EV_HTTP_MSG, &hm);
  st->dispatching = false;
  cm_iobuf_consume(&c->recv, total);
  reset(st);
  return still_ours(c, st);
}

/* One step of the read loop: returns whether another message may follow. */
static bool next_message(struct cm_conn *c, struct http_state *st) {
  if (st->head_len == 0) {
    if (begin_message(c, st) <= 0) return false;
    if (!still_ours(c, st)) return false;
  }
  if (body_ready(c, st) <= 0) return false;
  return deliver(c, st);
}

/* May the read loop take the next message?  A server stops while a
 * response is pending (is_resp) and once it decided to close. */
static bool may_parse(const struct cm_conn *c) {
  if (c->is_closing || c->recv.len == 0) return false;
  return c->is_client || (!c->is_resp && !c->is_draining);
}

static void on_read(struct cm_conn *c, struct http_state *st) {
  /* Our offsets are only valid if nobody else consumed c->recv meanwhile. */
  if (st->head_len + (st->kind == BODY_CHUNKED ? st->body_len : 0) > c->recv.len) reset(st);
  if (st->scanned > c->recv.len) st->scanned = 0;
  /* A server closing after its response reads nothing more: drop what the
   * peer keeps sending rather than let it fill the buffer to the cap. */
  if (!c->is_client && c->is_draining) cm_iobuf_consume(&c->recv, c->recv.len);
  while (may_parse(c) && next_message(c, st)) {
  }
}

/* Client: a response delimited by close (RFC 9112 §6.3 (8)) is complete
 * now, with whatever arrived as its body. */
static void on_close(struct cm_conn *c, struct http_state *st) {
  if (c->is_client && st->head_len > 0 && st->kind == BODY_CLOSE) {
    st->body_len = c->recv.len - st->head_len;
    deliver(c, st);
    if (c->pfn != cm_http_handler) return; /* deliver() freed st */
  }
  if (c->pfn_data == st) c->pfn_data = NULL;
  free(st);
}

void cm_http_handler(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  /* A listener only hands the handler down; errors need nothing from us
   * (and allocating on CM_EV_ERROR could recurse through cm_error). */
  if (c->is_listening || ev == CM_EV_ERROR) return;
  struct http_state *st = c->pfn_data;
  if (st == NULL) {
    if (ev == CM_EV_CLOSE) return;
    st = calloc(1, sizeof(*st));
    if (st == NULL) {
      cm_error(c, "OOM");
      return;
    }
    st->keep_alive = true;
    c->pfn_data = st;
  }
  switch (ev) {
    case CM_EV_READ: on_read(c, st); break;
    case CM_EV_CLOSE: on_close(c, st); break;
    default: break;
  }
}

struct cm_conn *cm_http_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__listen(mgr, url, cm_http_handler, fn, fn_data);
}

struct cm_conn *cm_http_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__connect(mgr, url, cm_http_handler, fn, fn_data);
}

/* Append to c->send after a successful reserve: cannot fail then. */
static void put(struct cm_conn *c, const void *buf, size_t len) {
  if (len > 0) cm_iobuf_add(&c->send, buf, len);
}

/* The request being answered was HEAD (RFC 9110 §9.3.2: same header
 * fields as for GET, never content). */
static bool answers_head(const struct cm_conn *c) {
  const struct http_state *st = c->pfn == cm_http_handler ? c->pfn_data : NULL;
  return st != NULL && !c->is_client && st->head_request;
}

/* "Content-Length: n" and the blank line.  1xx and 204 responses must not
 * carry the field (RFC 9110 §8.6), nor a body. */
static int reply_tail(char *buf, size_t size, int status, size_t len) {
  if (status < 200 || status == 204) return snprintf(buf, size, "\r\n");
  return snprintf(buf, size, "Content-Length: %zu\r\n\r\n", len);
}

bool cm_http_reply(struct cm_conn *c, int status, const char *headers, size_t headers_len, const void *body,
                   size_t len) {
  char start[96], tail[48];
  if (c->is_closing || status < 100 || status > 999) return false;
  if (headers == NULL) headers_len = 0;
  if (body == NULL) len = 0;
  if ((status < 200 || status == 204) && len > 0) return false;
  int sn = snprintf(start, sizeof(start), "HTTP/1.1 %d %s\r\n", status, cm_http_reason(status));
  int tn = reply_tail(tail, sizeof(tail), status, len);
  size_t sent = answers_head(c) ? 0 : len;
  size_t fixed = (size_t) sn + (size_t) tn;
  if (headers_len > SIZE_MAX - fixed || sent > SIZE_MAX - fixed - headers_len) return false;
  /* Reserve once: the response goes out whole or not at all. */
  if (cm_iobuf_reserve(&c->send, fixed + headers_len + sent) != 0) return false;
  put(c, start, (size_t) sn);
  put(c, headers, headers_len);
  put(c, tail, (size_t) tn);
  put(c, body, sent);
  cm__touch(c);
  /* An interim response (100 Continue, 103 Early Hints) does not answer
   * the request (RFC 9110 §15.2); 101 ends HTTP on this connection. */
  if (status >= 200 || status == 101) cm_http_end(c);
  return true;
}

void cm_http_end(struct cm_conn *c) {
  struct http_state *st = c->pfn == cm_http_handler ? c->pfn_data : NULL;
  bool was_pending = c->is_resp;
  c->is_resp = 0;
  if (st == NULL || c->is_client) return;
  /* RFC 9112 §9.6: after the response to a "close" request, close. */
  if (!st->keep_alive) {
    cm_drain(c);
    return;
  }
  /* Finished from outside our dispatch (a timer, a wakeup): come back to
   * the requests that waited in c->recv. */
  if (was_pending && !st->dispatching) cm_resume(c);
}
