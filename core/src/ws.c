/* ws.c: the WebSocket protocol (RFC 6455) on a connection: the server's
 * answer to an upgrade request, the client's handshake, and the handler
 * (c->pfn) that turns frames into whole messages.  Frames are cut with the
 * pure codec (ws_frame.c); permessage-deflate is ws_deflate.c's.
 *
 * Receiving.  A frame that is whole in c->recv, unfragmented and not
 * compressed (the common case) is unmasked in place and delivered as a
 * slice of c->recv: no copy.  Otherwise its payload streams into `msg` as
 * it arrives, so neither a large frame nor many fragments ever need to fit
 * in c->recv; the limit is checked against each frame header before any
 * byte is kept.  Control frames (at most 125 bytes) wait whole in c->recv,
 * between fragments too (§5.4).
 *
 * Closing (§7): a valid close frame is answered with one echoing its code,
 * then the connection drains and closes; our own close (cm_ws_send(CLOSE))
 * waits for the peer's answer, at most CM_WS_CLOSE_TIMEOUT_MS.  Failing
 * (§7.1.7) sends a close frame with the code, fires CM_EV_ERROR, and drains:
 * the close frame still leaves, the rest of the input is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* §1.3 */
#define MIN_DEFLATE 16       /* shorter messages are sent uncompressed (RFC 7692 §6) */
#define KEEP_BUF (64u << 10) /* message buffers above this are freed after use */

enum phase { HANDSHAKE, OPEN };

struct ws_state {
  struct cm_conn *c;    /* ours (for the close timer) */
  uint64_t max;         /* message limit, bytes */
  uint8_t phase;        /* HANDSHAKE (client, until the 101) or OPEN */
  bool sent_close;      /* we sent a close frame: send nothing more */
  bool got_close;       /* the peer's close came (or we failed): read nothing more */
  bool offered_deflate; /* client: our handshake offered permessage-deflate */
  /* the frame being received, when its payload streams into `msg` */
  bool in_frame;         /* fr is valid */
  struct cm_ws_frame fr; /* its header */
  uint64_t fr_got;       /* payload bytes of it taken so far */
  /* the message being reassembled */
  bool in_msg;                 /* a fragmented message is under way */
  uint8_t msg_op;              /* its opcode (TEXT or BINARY) */
  bool msg_z;                  /* compressed (RSV1 on its first frame) */
  struct cm_utf8 utf8;         /* text validation so far */
  struct cm_iobuf msg;         /* payload so far (compressed if msg_z) */
  struct cm_iobuf out;         /* inflated payload */
  struct cm_iobuf zout;        /* compressed for sending (an echo sends from `out`) */
  struct cm__ws_z *z;          /* permessage-deflate streams, NULL if not negotiated */
  struct cm__ws_pmd pmd;       /* its parameters */
  struct cm_timer close_timer; /* our close unanswered */
  char accept[32];             /* client: the Sec-WebSocket-Accept we expect */
  uint8_t rnd[64];             /* client: masking keys, refilled from the CSPRNG */
  uint8_t rnd_pos;             /* next unused byte of rnd (64: empty) */
  cm__ws_inner_fn inner;       /* a core protocol carried inside (cm__ws_carry), or NULL */
  void *inner_arg;             /* its argument */
};

static struct ws_state *ours(const struct cm_conn *c) { return c->pfn == cm_ws_handler ? c->pfn_data : NULL; }

/* Our events go to the user handler only (cm_call would give them back to
 * us through c->pfn); messages and control frames to the protocol carried
 * inside, if there is one (cm__ws_carry). */
static void fire(struct cm_conn *c, int ev, void *data) {
  struct ws_state *st = ours(c);
  if (st != NULL && st->inner != NULL && (ev == CM_EV_WS_MSG || ev == CM_EV_WS_CTL)) {
    st->inner(st->inner_arg, ev, data);
    return;
  }
  if (c->fn != NULL) c->fn(c, ev, data);
}

static struct ws_state *new_state(struct cm_conn *c, const struct cm_ws_opts *opts) {
  struct ws_state *st = calloc(1, sizeof(*st));
  if (st == NULL) return NULL;
  st->c = c;
  st->max = opts != NULL && opts->max_message != 0 ? opts->max_message : CM_WS_MAX_MESSAGE;
  st->rnd_pos = sizeof(st->rnd);
  cm_iobuf_init(&st->msg, 0);
  cm_iobuf_init(&st->out, 0);
  cm_iobuf_init(&st->zout, 0);
  return st;
}

static void free_state(struct ws_state *st) {
  cm_timer_stop(st->c->mgr, &st->close_timer);
  cm_iobuf_free(&st->msg);
  cm_iobuf_free(&st->out);
  cm_iobuf_free(&st->zout);
  cm__ws_z_free(st->z);
  free(st);
}

/* ---- sending ----------------------------------------------------------------- */

/* A fresh masking key (§5.3: unpredictable, from a strong source). */
static bool next_key(struct ws_state *st, uint8_t key[4]) {
  if ((size_t) st->rnd_pos + 4 > sizeof(st->rnd)) {
    if (!cm_random(st->rnd, sizeof(st->rnd))) return false;
    st->rnd_pos = 0;
  }
  memcpy(key, st->rnd + st->rnd_pos, 4);
  st->rnd_pos += 4;
  return true;
}

/* Queue one frame: header and payload go out whole or not at all. */
static bool send_frame(struct cm_conn *c, struct ws_state *st, uint8_t flags, const void *data, size_t len) {
  uint8_t hdr[CM_WS_MAX_HEADER], key[4];
  if (c->is_closing || c->is_draining) return false;
  bool masked = c->is_client; /* §5.1: clients mask, servers never do */
  if (masked && !next_key(st, key)) return false;
  size_t h = cm_ws_header(hdr, flags, len, masked ? key : NULL);
  if (len > SIZE_MAX - h || cm_iobuf_reserve(&c->send, h + len) != 0) return false;
  cm_iobuf_add(&c->send, hdr, h);
  if (len > 0) {
    char *p = cm_iobuf_data(&c->send) + c->send.len;
    cm_iobuf_add(&c->send, data, len);
    if (masked) cm_ws_mask(p, len, key, 0);
  }
  cm__touch(c);
  return true;
}

/* Close the TCP connection if the peer does not answer our close. */
static void close_expired(struct cm_timer *t, void *arg) {
  struct ws_state *st = arg;
  (void) t;
  CM_DEBUG("conn %llu: close handshake timed out", (unsigned long long) st->c->id);
  cm_close(st->c);
}

static bool send_close(struct cm_conn *c, struct ws_state *st, const void *payload, size_t len) {
  if (!send_frame(c, st, CM_WS_FIN | CM_WS_OP_CLOSE, payload, len)) return false;
  st->sent_close = true;
  cm_timer_start(c->mgr, &st->close_timer, CM_WS_CLOSE_TIMEOUT_MS, CM_TIMER_ONCE, close_expired, st);
  return true;
}

/* A close payload: the code in network order, then the reason. */
static size_t close_payload(uint8_t *buf, unsigned code, struct cm_str reason) {
  if (reason.len > CM_WS_MAX_CONTROL - 2) reason.len = CM_WS_MAX_CONTROL - 2;
  buf[0] = (uint8_t) (code >> 8);
  buf[1] = (uint8_t) code;
  if (reason.len > 0) memcpy(buf + 2, reason.buf, reason.len);
  return 2 + reason.len;
}

/* _Fail the WebSocket Connection_ (§7.1.7): a close frame with `code` (its
 * reason says why), CM_EV_ERROR, then close once the frame is written.
 * What the peer sent meanwhile is dropped. */
static void fail(struct cm_conn *c, struct ws_state *st, unsigned code, const char *why) {
  uint8_t buf[CM_WS_MAX_CONTROL];
  st->got_close = true;
  cm_iobuf_consume(&c->recv, c->recv.len);
  if (!st->sent_close && st->phase == OPEN) send_close(c, st, buf, close_payload(buf, code, cm_str_c(why)));
  /* A peer that does not read cannot keep us draining forever. */
  if (!cm_timer_running(&st->close_timer))
    cm_timer_start(c->mgr, &st->close_timer, CM_WS_CLOSE_TIMEOUT_MS, CM_TIMER_ONCE, close_expired, st);
  CM_ERROR("conn %llu: %s", (unsigned long long) c->id, why);
  cm_drain(c);
  fire(c, CM_EV_ERROR, (void *) why);
}

bool cm_ws_send(struct cm_conn *c, const void *data, size_t len, int op) {
  struct ws_state *st = ours(c);
  if (st == NULL || st->phase != OPEN || st->sent_close) return false;
  if (data == NULL) len = 0;
  switch (op) {
    case CM_WS_OP_TEXT:
    case CM_WS_OP_BINARY: break;
    case CM_WS_OP_CLOSE: return len <= CM_WS_MAX_CONTROL && send_close(c, st, data, len);
    case CM_WS_OP_PING:
    case CM_WS_OP_PONG:
      if (len > CM_WS_MAX_CONTROL) return false;
      break;
    default: return false;
  }
  uint8_t flags = (uint8_t) (CM_WS_FIN | (unsigned) op);
  if (st->z == NULL || op >= CM_WS_OP_CLOSE || len < MIN_DEFLATE) return send_frame(c, st, flags, data, len);
  /* RFC 7692 §6: the whole message compressed, RSV1 on its (only) frame. */
  struct cm_iobuf *z = &st->zout;
  cm_iobuf_consume(z, z->len);
  long n = cm__ws_z_deflate(st->z, data, len, z);
  bool ok = n >= 0 && send_frame(c, st, flags | CM_WS_RSV1, cm_iobuf_data(z), (size_t) n);
  cm_iobuf_consume(z, z->len);
  if (z->size > KEEP_BUF) cm_iobuf_free(z);
  return ok;
}

bool cm_ws_close(struct cm_conn *c, unsigned code, struct cm_str reason) {
  uint8_t buf[CM_WS_MAX_CONTROL];
  return cm_ws_send(c, buf, close_payload(buf, code, reason), CM_WS_OP_CLOSE);
}

/* ---- receiving ------------------------------------------------------------------ */

static void deliver(struct cm_conn *c, uint8_t op, struct cm_str data) {
  struct cm_ws_msg m = {data, (uint8_t) (CM_WS_FIN | op)};
  fire(c, CM_EV_WS_MSG, &m);
}

/* A whole message: inflate it if it came compressed, check text, deliver.
 * Returns false if the connection failed. */
static bool complete(struct cm_conn *c, struct ws_state *st, uint8_t op, bool z, struct cm_str data) {
  if (z) {
    cm_iobuf_consume(&st->out, st->out.len);
    int rc = cm__ws_z_inflate(st->z, data, &st->out, st->max);
    if (rc == CM__WS_Z_TOO_BIG) fail(c, st, CM_WS_CLOSE_TOO_BIG, "message too big");
    else if (rc == CM__WS_Z_CORRUPT)
      fail(c, st, CM_WS_CLOSE_INVALID_DATA, "invalid compressed data");
    else if (rc != 0)
      fail(c, st, CM_WS_CLOSE_INTERNAL, "OOM");
    if (rc != 0) return false;
    data = cm_str_n(cm_iobuf_data(&st->out), st->out.len);
    if (op == CM_WS_OP_TEXT && !cm_utf8_valid(data.len > 0 ? data.buf : "", data.len)) {
      fail(c, st, CM_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
      return false;
    }
  }
  deliver(c, op, data);
  if (st->out.size > KEEP_BUF) cm_iobuf_free(&st->out);
  return true;
}

/* The fragmented (or streamed) message in `msg` is complete. */
static bool finish_message(struct cm_conn *c, struct ws_state *st) {
  st->in_msg = false;
  if (st->msg_op == CM_WS_OP_TEXT && !st->msg_z && !cm_utf8_done(&st->utf8)) {
    fail(c, st, CM_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
    return false;
  }
  bool ok = complete(c, st, st->msg_op, st->msg_z, cm_str_n(cm_iobuf_data(&st->msg), st->msg.len));
  cm_iobuf_consume(&st->msg, st->msg.len);
  if (st->msg.size > KEEP_BUF) cm_iobuf_free(&st->msg);
  return ok;
}

/* A control frame, whole and unmasked (§5.5). */
static void on_control(struct cm_conn *c, struct ws_state *st, uint8_t op, struct cm_str payload) {
  struct cm_ws_msg m = {payload, (uint8_t) (CM_WS_FIN | op)};
  if (op == CM_WS_OP_PING) {
    /* §5.5.2: answer with a pong carrying the same payload, unless we are
     * closing (§5.5.1: nothing is sent after a close frame). */
    if (!st->sent_close) send_frame(c, st, CM_WS_FIN | CM_WS_OP_PONG, payload.buf, payload.len);
    fire(c, CM_EV_WS_CTL, &m);
    return;
  }
  if (op == CM_WS_OP_PONG) { /* §5.5.3: unsolicited pongs need no answer */
    fire(c, CM_EV_WS_CTL, &m);
    return;
  }
  unsigned code;
  struct cm_str reason;
  int bad = cm_ws_close_parse(payload, &code, &reason);
  if (bad != 0) {
    fail(c, st, (unsigned) bad,
         bad == CM_WS_CLOSE_INVALID_DATA ? "invalid UTF-8 in close reason" : "invalid close frame");
    return;
  }
  st->got_close = true;
  c->ws_close_code = (uint16_t) code;
  fire(c, CM_EV_WS_CTL, &m);
  /* §5.5.1: answer with a close frame, echoing the code (none if none came),
   * then close the TCP connection (§7.1.1) once it is written. */
  if (!st->sent_close && !c->is_closing) {
    uint8_t buf[2] = {(uint8_t) (code >> 8), (uint8_t) code};
    send_close(c, st, buf, code == 1005 ? 0 : 2);
  }
  cm_drain(c);
}

/* Sequencing rules of a data frame header (§5.4), then the limit.
 * Returns false if the connection failed. */
static bool admit(struct cm_conn *c, struct ws_state *st, const struct cm_ws_frame *f) {
  const char *why = cm_ws_check(f, !c->is_client, st->z != NULL ? CM_WS_RSV1 : 0);
  if (why == NULL && f->op == CM_WS_OP_CONTINUE && !st->in_msg) why = "continuation with nothing to continue";
  if (why == NULL && f->op != CM_WS_OP_CONTINUE && f->op < CM_WS_OP_CLOSE && st->in_msg)
    why = "new message inside a fragmented one";
  if (why != NULL) {
    fail(c, st, CM_WS_CLOSE_PROTOCOL, why);
    return false;
  }
  uint64_t so_far = f->op == CM_WS_OP_CONTINUE ? st->msg.len : 0;
  if (f->op < CM_WS_OP_CLOSE && f->len > st->max - so_far) {
    fail(c, st, CM_WS_CLOSE_TOO_BIG, "message too big");
    return false;
  }
  return true;
}

/* Move n > 0 payload bytes of the streaming frame from c->recv to `msg`,
 * unmasked.  Returns false if the connection failed. */
static bool append_payload(struct cm_conn *c, struct ws_state *st, size_t n) {
  if (cm_iobuf_add(&st->msg, cm_iobuf_data(&c->recv), n) != 0) {
    fail(c, st, CM_WS_CLOSE_INTERNAL, "OOM");
    return false;
  }
  char *p = cm_iobuf_data(&st->msg) + st->msg.len - n;
  if (st->fr.masked) cm_ws_mask(p, n, st->fr.mask, st->fr_got);
  cm_iobuf_consume(&c->recv, n);
  st->fr_got += n;
  /* §8.1: fail as soon as the text can no longer be UTF-8. */
  if (st->msg_op == CM_WS_OP_TEXT && !st->msg_z && !cm_utf8_feed(&st->utf8, p, n)) {
    fail(c, st, CM_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
    return false;
  }
  return true;
}

/* Take what has arrived of the payload of the streaming frame `fr`.
 * Returns true when the frame is complete (and its message, if it was the
 * last, delivered): the next frame may follow. */
static bool take_payload(struct cm_conn *c, struct ws_state *st) {
  uint64_t left = st->fr.len - st->fr_got;
  size_t n = c->recv.len < left ? c->recv.len : (size_t) left;
  if (n == 0 && left > 0) return false;
  if (n > 0 && !append_payload(c, st, n)) return false;
  if (st->fr_got < st->fr.len) return false;
  st->in_frame = false;
  return !st->fr.fin || finish_message(c, st);
}

/* Start on the frame whose header is at the front of c->recv.  Returns
 * whether the next one may follow at once. */
static bool next_frame(struct cm_conn *c, struct ws_state *st) {
  struct cm_ws_frame f;
  char *d = cm_iobuf_data(&c->recv);
  int h = cm_ws_parse_header(d, c->recv.len, &f);
  if (h == 0) return false;
  if (h < 0) {
    fail(c, st, CM_WS_CLOSE_PROTOCOL, "frame length with its top bit set");
    return false;
  }
  if (!admit(c, st, &f)) return false;
  size_t avail = c->recv.len - (size_t) h;
  bool whole = f.len <= avail;
  struct cm_str payload = cm_str_n(d + h, whole ? (size_t) f.len : 0);
  if (f.op >= CM_WS_OP_CLOSE) { /* control: wait for all of it (≤ 125 bytes) */
    if (!whole) return false;
    if (f.masked) cm_ws_mask(d + h, payload.len, f.mask, 0);
    on_control(c, st, f.op, payload);
    cm_iobuf_consume(&c->recv, (size_t) h + payload.len);
    return true;
  }
  bool z = (f.flags & CM_WS_RSV1) != 0;
  if (f.fin && f.op != CM_WS_OP_CONTINUE && whole) { /* one frame, all here: no copy */
    if (f.masked) cm_ws_mask(d + h, payload.len, f.mask, 0);
    if (f.op == CM_WS_OP_TEXT && !z && !cm_utf8_valid(payload.len > 0 ? payload.buf : "", payload.len)) {
      fail(c, st, CM_WS_CLOSE_INVALID_DATA, "invalid UTF-8 in text message");
      return false;
    }
    if (!complete(c, st, f.op, z, payload)) return false;
    cm_iobuf_consume(&c->recv, (size_t) h + payload.len);
    return true;
  }
  cm_iobuf_consume(&c->recv, (size_t) h);
  if (f.op != CM_WS_OP_CONTINUE) {
    st->in_msg = true;
    st->msg_op = f.op;
    st->msg_z = z;
    memset(&st->utf8, 0, sizeof(st->utf8));
  }
  st->fr = f;
  st->fr_got = 0;
  st->in_frame = true;
  return take_payload(c, st);
}

/* Process the frames in c->recv, as many as are complete. */
static void on_frames(struct cm_conn *c, struct ws_state *st) {
  while (c->recv.len > 0 && !c->is_closing && !st->got_close && ours(c) == st) {
    /* Back-pressure, as HTTP does: a peer that sends but does not read
     * stops being served at the send high-water mark (mgr.c resumes). */
    if (c->mgr->send_hiwat > 0 && c->send.len >= c->mgr->send_hiwat) {
      c->is_throttled = 1;
      return;
    }
    /* false: waiting for bytes, or failed */
    if (!(st->in_frame ? take_payload(c, st) : next_frame(c, st))) break;
  }
  /* §1.4, §7: nothing after a close frame (or a failure) is processed. */
  if (st->got_close && ours(c) == st) cm_iobuf_consume(&c->recv, c->recv.len);
}

/* ---- the handshake ---------------------------------------------------------- */

/* Is `tok` one of the comma-separated tokens of `value` (any case)? */
static bool has_token(const struct cm_str *value, const char *tok) {
  if (value == NULL) return false;
  size_t tl = strlen(tok), i = 0;
  while (i < value->len) {
    while (i < value->len && (value->buf[i] == ' ' || value->buf[i] == '\t' || value->buf[i] == ',')) i++;
    size_t s = i;
    while (i < value->len && value->buf[i] != ',') i++;
    size_t e = i;
    while (e > s && (value->buf[e - 1] == ' ' || value->buf[e - 1] == '\t')) e--;
    if (e - s == tl && cm_str_casecmp(cm_str_n(value->buf + s, tl), cm_str_n(tok, tl))) return true;
  }
  return false;
}

/* base64(SHA-1(key + GUID)) into out[29] (§4.2.2 item 5.4). */
static bool accept_key(struct cm_str key, char out[29]) {
  char buf[128];
  uint8_t sha[CM_SHA1_LEN];
  if (key.len > sizeof(buf) - sizeof(WS_GUID)) return false;
  memcpy(buf, key.buf, key.len);
  memcpy(buf + key.len, WS_GUID, sizeof(WS_GUID) - 1);
  if (!cm_sha1(buf, key.len + sizeof(WS_GUID) - 1, sha)) return false;
  long n = cm_base64_encode(sha, sizeof(sha), out, 28);
  out[n > 0 ? n : 0] = '\0';
  return n == 28;
}

static const struct cm_str *trimmed(const struct cm_str *s, struct cm_str *out) {
  if (s == NULL) return NULL;
  *out = *s;
  while (out->len > 0 && (out->buf[out->len - 1] == ' ' || out->buf[out->len - 1] == '\t')) out->len--;
  return out;
}

/* Refuse an upgrade request; the connection closes after the answer. */
static bool refuse(struct cm_conn *c, int status, const char *headers, const char *body) {
  CM_DEBUG("conn %llu: upgrade refused (%d)", (unsigned long long) c->id, status);
  cm_http_reply(c, status, headers, strlen(headers), body, strlen(body));
  cm_drain(c);
  return false;
}

/* §4.2.1: is this a WebSocket opening handshake we can answer?  If not,
 * answers it (and returns false). */
static bool check_request(struct cm_conn *c, const struct cm_http_msg *hm, struct cm_str *key) {
  static const char upgrade[] = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: close\r\n";
  struct cm_str ver;
  const struct cm_str *k = trimmed(cm_http_header(hm, "Sec-WebSocket-Key"), key);
  if (k == NULL || !has_token(cm_http_header(hm, "Upgrade"), "websocket"))
    return refuse(c, 426, upgrade, "WS upgrade expected\n");
  /* §4.4: a version we do not speak: 426 naming the one we do. */
  if (trimmed(cm_http_header(hm, "Sec-WebSocket-Version"), &ver) == NULL || !cm_str_eq(ver, "13"))
    return refuse(c, 426, upgrade, "Unsupported WebSocket version\n");
  uint8_t raw[32];
  long n = cm_base64_decode(key->buf, key->len, raw, sizeof(raw));
  bool ok = cm_str_eq(hm->method, "GET") && has_token(cm_http_header(hm, "Connection"), "upgrade") &&
            n == 16 && key->len == 24;
  if (!ok) return refuse(c, 400, "Connection: close\r\n", "Bad WebSocket handshake\n");
  return true;
}

/* The response's Sec-WebSocket-Protocol: the client's first offer (unless
 * the application's headers name one), into out (a header line or ""). */
static void pick_protocol(const struct cm_http_msg *hm, const char *headers, size_t hlen, char *out,
                          size_t size) {
  out[0] = '\0';
  const struct cm_str *offer = cm_http_header(hm, "Sec-WebSocket-Protocol");
  if (offer == NULL || cm_http_has_field(headers, hlen, "Sec-WebSocket-Protocol")) return;
  size_t i = 0, e;
  while (i < offer->len && (offer->buf[i] == ' ' || offer->buf[i] == '\t')) i++;
  for (e = i; e < offer->len && offer->buf[e] != ',' && offer->buf[e] != ' ' && offer->buf[e] != '\t';) e++;
  if (e > i && e - i < size - 32)
    snprintf(out, size, "Sec-WebSocket-Protocol: %.*s\r\n", (int) (e - i), offer->buf + i);
}

/* Negotiate permessage-deflate over every Sec-WebSocket-Extensions field. */
static void pick_deflate(const struct cm_http_msg *hm, struct cm__ws_pmd *pmd, char *out, size_t size) {
  out[0] = '\0';
  for (size_t i = 0; i < hm->num_headers && i < CM_HTTP_MAX_HEADERS; i++) {
    if (!cm_str_casecmp(hm->headers[i].name, cm_str_c("Sec-WebSocket-Extensions"))) continue;
    if (cm__ws_pmd_negotiate(hm->headers[i].value, pmd, out, size)) return;
    out[0] = '\0';
  }
}

/* The settings for an upgrade: given, else the listener's, else defaults. */
static struct cm_ws_opts upgrade_opts(struct cm_conn *c, const struct cm_ws_opts *opts) {
  struct cm_ws_opts o = {0, false};
  struct cm__http_srv *srv = opts == NULL ? cm__http_srv_of(c) : NULL;
  if (opts != NULL) o = *opts;
  else if (srv != NULL)
    o = *cm__http_srv_ws(srv);
  return o;
}

bool cm_ws_upgrade(struct cm_conn *c, const struct cm_http_msg *hm, const char *headers, size_t headers_len,
                   const struct cm_ws_opts *opts) {
  char accept[32], proto[192], ext[160];
  struct cm_str key;
  if (c->is_closing || c->is_client || c->is_listening || c->is_websocket) return false;
  /* Answered already (or answering): nothing is sent, nothing changes. */
  if (!cm__http_may_upgrade(c)) return false;
  if (headers == NULL) headers_len = 0;
  if (!check_request(c, hm, &key)) return false;
  if (!accept_key(key, accept)) return refuse(c, 500, "Connection: close\r\n", "Internal error\n");
  struct cm_ws_opts o = upgrade_opts(c, opts);
  struct cm__ws_pmd pmd;
  pick_protocol(hm, headers, headers_len, proto, sizeof(proto));
  ext[0] = '\0';
  if (!o.no_deflate && !cm_http_has_field(headers, headers_len, "Sec-WebSocket-Extensions"))
    pick_deflate(hm, &pmd, ext, sizeof(ext));
  struct ws_state *st = new_state(c, &o);
  if (st != NULL && ext[0] != '\0' && (st->z = cm__ws_z_new(&pmd, true)) == NULL) ext[0] = '\0';
  char head[512];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n%s%s",
                   accept, proto, ext);
  bool ok = st != NULL && n > 0 && (size_t) n < sizeof(head) &&
            cm_iobuf_reserve(&c->send, (size_t) n + headers_len + 2) == 0;
  if (!ok) {
    if (st != NULL) free_state(st);
    return refuse(c, 500, "Connection: close\r\n", "Internal error\n");
  }
  cm_send(c, head, (size_t) n);
  cm_send(c, headers, headers_len);
  cm_send(c, "\r\n", 2);
  /* HTTP lets go of the connection: when its event returns if this is its
   * CM_EV_HTTP_MSG, else now; what follows the request in c->recv then
   * reaches us through a resumed read. */
  cm__http_hand_over(c);
  c->is_resp = 0;
  c->pfn = cm_ws_handler;
  c->pfn_data = st;
  c->is_websocket = 1;
  st->phase = OPEN;
  fire(c, CM_EV_WS_OPEN, (void *) hm);
  return true;
}

/* Client: the server's answer to our handshake (§4.1, the client's checks
 * of the response).  Returns false while it is incomplete or failed. */
static bool on_handshake(struct cm_conn *c, struct ws_state *st) {
  struct cm_http_msg hm;
  int n = cm_http_parse(cm_iobuf_data(&c->recv), c->recv.len, &hm);
  if (n == 0 && c->recv.len <= CM_WS_MAX_HANDSHAKE) return false;
  struct cm_str acc;
  bool ok = n > 0 && hm.is_response && cm_str_eq(hm.uri, "101") &&
            has_token(cm_http_header(&hm, "Upgrade"), "websocket") &&
            has_token(cm_http_header(&hm, "Connection"), "upgrade") &&
            trimmed(cm_http_header(&hm, "Sec-WebSocket-Accept"), &acc) != NULL && cm_str_eq(acc, st->accept);
  const struct cm_str *ext = ok ? cm_http_header(&hm, "Sec-WebSocket-Extensions") : NULL;
  if (ext != NULL) {
    int rc = st->offered_deflate ? cm__ws_pmd_accept(*ext, &st->pmd) : -1;
    ok = rc >= 0 && (rc == 0 || (st->z = cm__ws_z_new(&st->pmd, false)) != NULL);
  }
  if (!ok) {
    cm_iobuf_consume(&c->recv, c->recv.len);
    cm_error(c, "ws handshake error");
    return false;
  }
  st->phase = OPEN;
  c->is_websocket = 1;
  fire(c, CM_EV_WS_OPEN, &hm);
  cm_iobuf_consume(&c->recv, (size_t) n);
  return !c->is_closing;
}

/* The opening handshake of a client (§4.1), queued at once. */
static bool queue_request(struct cm_conn *c, struct ws_state *st, const char *url, const char *headers) {
  uint8_t nonce[16];
  char key[32], req[1024];
  struct cm_url u;
  cm_url_split(url, &u);
  if (!cm_random(nonce, sizeof(nonce)) || cm_base64_encode(nonce, sizeof(nonce), key, sizeof(key)) != 24)
    return false;
  key[24] = '\0';
  if (!accept_key(cm_str_n(key, 24), st->accept)) return false;
  struct cm_str uri = u.uri.len > 0 ? u.uri : cm_str_c("/");
  const char *lb = u.host_is_ip6 ? "[" : "", *rb = u.host_is_ip6 ? "]" : "";
  int n = snprintf(
      req, sizeof(req),
      "GET %.*s HTTP/1.1\r\nHost: %s%.*s%s%s%.*s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s",
      (int) uri.len, uri.buf, lb, (int) u.host.len, u.host.buf != NULL ? u.host.buf : "", rb,
      u.port.len > 0 ? ":" : "", (int) u.port.len, u.port.buf != NULL ? u.port.buf : "", key,
      st->offered_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
  if (n <= 0 || (size_t) n >= sizeof(req)) return false;
  size_t hl = headers != NULL ? strlen(headers) : 0;
  if (cm_iobuf_reserve(&c->send, (size_t) n + hl + 2) != 0) return false;
  cm_iobuf_add(&c->send, req, (size_t) n);
  if (hl > 0) cm_iobuf_add(&c->send, headers, hl);
  cm_iobuf_add(&c->send, "\r\n", 2);
  cm__touch(c);
  return true;
}

struct cm_conn *cm_ws_connect(struct cm_mgr *mgr, const char *url, const char *headers,
                              const struct cm_ws_opts *opts, cm_handler_fn fn, void *fn_data) {
  /* Without a protocol through the events of the connect call itself; the
   * handshake is queued as soon as the connection exists, and leaves once
   * it is established. */
  struct cm_conn *c = cm__connect(mgr, url, NULL, fn, fn_data);
  if (c == NULL) return NULL;
  struct ws_state *st = new_state(c, opts);
  if (st == NULL) {
    cm_error(c, "OOM");
    return c;
  }
  st->phase = HANDSHAKE;
  st->offered_deflate = opts == NULL || !opts->no_deflate;
  c->pfn = cm_ws_handler;
  c->pfn_data = st;
  if (!c->is_closing && !queue_request(c, st, url, headers)) cm_error(c, "ws handshake error");
  return c;
}

bool cm_ws_listen_opts(struct cm_conn *listener, const struct cm_ws_opts *opts) {
  struct cm__http_srv *srv = listener->is_listening ? cm__http_srv_of(listener) : NULL;
  if (srv == NULL || opts == NULL) return false;
  *cm__http_srv_ws(srv) = *opts;
  return true;
}

bool cm__ws_carry(struct cm_conn *c, cm__ws_inner_fn inner, void *arg) {
  struct ws_state *st = ours(c);
  if (st == NULL || st->phase != OPEN) return false;
  st->inner = inner;
  st->inner_arg = inner != NULL ? arg : NULL;
  return true;
}

void *cm__ws_carried(const struct cm_conn *c, cm__ws_inner_fn inner) {
  const struct ws_state *st = ours(c);
  return st != NULL && st->inner == inner ? st->inner_arg : NULL;
}

void cm_ws_handler(struct cm_conn *c, int ev, void *ev_data) {
  struct ws_state *st = c->pfn_data;
  (void) ev_data;
  if (st == NULL) return;
  if (ev == CM_EV_CLOSE) {
    /* RFC 6455 §7.1.5: closed without a close frame from the peer. */
    if (st->phase == OPEN && c->ws_close_code == 0) c->ws_close_code = 1006;
    if (st->inner != NULL) st->inner(st->inner_arg, CM_EV_CLOSE, NULL);
    c->pfn_data = NULL;
    free_state(st);
    return;
  }
  if (ev != CM_EV_READ || c->is_closing) return;
  if (st->phase == HANDSHAKE && !on_handshake(c, st)) return;
  on_frames(c, st);
}
