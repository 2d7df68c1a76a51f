/* http_out.c: follows the requests an HTTP client sends, so that the
 * response to each can be framed (RFC 9112 §6.3 (1): a response to HEAD has
 * no body, whatever its Content-Length says).
 *
 * Bytes in, a FIFO of "was it HEAD?" out.  It walks the outgoing stream the
 * way a server would read it: a head (parsed with cm_http_parse), then the
 * body by Content-Length or chunked framing, then the next head.  Nothing
 * but a partial head or chunk line is kept, and that within a small cap;
 * a stream it cannot follow (not HTTP, a head over the cap, too many
 * requests in flight) turns it off, and every response is then framed as
 * if for GET, exactly as without it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define OUT_MAX_HEAD (64u << 10) /* longest partial head kept */
#define OUT_MAX_LINE 1024        /* longest chunk-size or trailer line kept */
#define OUT_MAX_FLIGHT 64        /* requests sent and not yet answered */

enum out_state {
  OUT_HEAD,       /* in a request head */
  OUT_BODY,       /* skipping `left` body bytes */
  OUT_CHUNK_SIZE, /* in a chunk-size line */
  OUT_CHUNK_DATA, /* skipping `left` chunk-data bytes */
  OUT_CHUNK_END,  /* the CRLF after chunk data */
  OUT_TRAILER,    /* trailer lines until an empty one */
  OUT_LOST,       /* gave up: nothing is tracked any more */
};

struct cm__http_out {
  enum out_state state;
  uint64_t left;       /* bytes still to skip in OUT_BODY / OUT_CHUNK_DATA */
  struct cm_iobuf acc; /* partial head or line */
  uint64_t heads;      /* bit i: the i-th request in flight was HEAD */
  unsigned first;      /* bit of the oldest request in flight */
  unsigned count;      /* requests in flight */
};

struct cm__http_out *cm__http_out_new(void) {
  struct cm__http_out *o = calloc(1, sizeof(*o));
  if (o != NULL) cm_iobuf_init(&o->acc, OUT_MAX_HEAD);
  return o;
}

void cm__http_out_free(struct cm__http_out *o) {
  if (o == NULL) return;
  cm_iobuf_free(&o->acc);
  free(o);
}

static void lose(struct cm__http_out *o) {
  o->state = OUT_LOST;
  o->count = 0;
  cm_iobuf_free(&o->acc);
}

static void push(struct cm__http_out *o, bool head) {
  if (o->count == OUT_MAX_FLIGHT) {
    lose(o);
    return;
  }
  unsigned bit = (o->first + o->count) % OUT_MAX_FLIGHT;
  o->heads = (o->heads & ~(1ull << bit)) | ((uint64_t) head << bit);
  o->count++;
}

bool cm__http_out_next_is_head(struct cm__http_out *o) {
  if (o->count == 0) return false;
  bool head = (o->heads >> o->first) & 1u;
  o->first = (o->first + 1) % OUT_MAX_FLIGHT;
  o->count--;
  return head;
}

/* A complete head of `n` bytes: note the method, choose the body state. */
static void head_done(struct cm__http_out *o, const struct cm_http_msg *hm) {
  push(o, cm_str_eq(hm->method, "HEAD"));
  if (o->state == OUT_LOST) return;
  if (hm->is_chunked) {
    o->state = OUT_CHUNK_SIZE;
  } else if (hm->content_length > 0) {
    o->state = OUT_BODY;
    o->left = (uint64_t) hm->content_length;
  } else {
    o->state = OUT_HEAD;
  }
}

/* Head bytes: parse straight from the input when nothing is pending (the
 * usual case: one cm_http_send per request), else from the accumulator.
 * Returns the input bytes used. */
static size_t feed_head(struct cm__http_out *o, const char *buf, size_t len) {
  struct cm_http_msg hm;
  if (o->acc.len == 0) {
    int n = cm_http_parse(buf, len, &hm);
    if (n > 0) {
      head_done(o, &hm);
      return (size_t) n;
    }
    if (n < 0 || hm.is_response) lose(o);
  }
  if (o->state == OUT_LOST) return len;
  size_t old = o->acc.len;
  if (cm_iobuf_add(&o->acc, buf, len) != 0) {
    lose(o);
    return len;
  }
  int n = cm_http_parse(cm_iobuf_data(&o->acc), o->acc.len, &hm);
  if (n == 0) return len;
  if (n < 0 || hm.is_response) {
    lose(o);
    return len;
  }
  head_done(o, &hm);
  cm_iobuf_consume(&o->acc, o->acc.len);
  return (size_t) n - old; /* the head may end before the input does */
}

/* Collect one line (through LF) into the accumulator.  Returns the input
 * bytes used; *done tells whether the line is complete. */
static size_t feed_line(struct cm__http_out *o, const char *buf, size_t len, bool *done) {
  const char *lf = memchr(buf, '\n', len);
  size_t n = lf != NULL ? (size_t) (lf - buf) + 1 : len;
  *done = lf != NULL;
  if (o->acc.len + n > OUT_MAX_LINE || cm_iobuf_add(&o->acc, buf, n) != 0) {
    lose(o);
    return len;
  }
  return n;
}

/* chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1): the hex digits only. */
static void chunk_size_line(struct cm__http_out *o) {
  const char *d = cm_iobuf_data(&o->acc);
  uint64_t size = 0;
  size_t i = 0;
  for (; i < o->acc.len; i++) {
    char ch = d[i];
    int v = ch >= '0' && ch <= '9'                     ? ch - '0'
            : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10
                                                       : -1;
    if (v < 0) break;
    if (size >> 60) break; /* absurd: let the check below refuse it */
    size = size * 16 + (uint64_t) v;
  }
  cm_iobuf_consume(&o->acc, o->acc.len);
  if (i == 0 || size >> 60) {
    lose(o);
  } else if (size == 0) {
    o->state = OUT_TRAILER;
  } else {
    o->state = OUT_CHUNK_DATA;
    o->left = size;
  }
}

/* A trailer line: an empty one ends the message (RFC 9112 §7.1.2). */
static void trailer_line(struct cm__http_out *o) {
  const char *d = cm_iobuf_data(&o->acc);
  bool empty = o->acc.len == 1 || (o->acc.len == 2 && d[0] == '\r');
  cm_iobuf_consume(&o->acc, o->acc.len);
  if (empty) o->state = OUT_HEAD;
}

static size_t skip(struct cm__http_out *o, size_t len, enum out_state next) {
  size_t n = o->left < len ? (size_t) o->left : len;
  o->left -= n;
  if (o->left == 0) o->state = next;
  return n;
}

/* One step over buf[0..len): returns the bytes used (> 0). */
static size_t step(struct cm__http_out *o, const char *buf, size_t len) {
  bool done = false;
  size_t n;
  switch (o->state) {
    case OUT_HEAD: return feed_head(o, buf, len);
    case OUT_BODY: return skip(o, len, OUT_HEAD);
    case OUT_CHUNK_DATA: return skip(o, len, OUT_CHUNK_END);
    case OUT_CHUNK_END: {
      const char *lf = memchr(buf, '\n', len);
      if (lf == NULL) return len;
      o->state = OUT_CHUNK_SIZE;
      return (size_t) (lf - buf) + 1;
    }
    case OUT_CHUNK_SIZE:
      n = feed_line(o, buf, len, &done);
      if (done) chunk_size_line(o);
      return n;
    case OUT_TRAILER:
      n = feed_line(o, buf, len, &done);
      if (done) trailer_line(o);
      return n;
    case OUT_LOST: return len;
  }
  return len;
}

void cm__http_out_feed(struct cm__http_out *o, const void *data, size_t len) {
  const char *buf = data;
  while (len > 0 && o->state != OUT_LOST) {
    size_t n = step(o, buf, len);
    buf += n;
    len -= n;
  }
}
