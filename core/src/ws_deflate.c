/* ws_deflate.c: permessage-deflate (RFC 7692) for ws.c: the negotiation of
 * its parameters (§7.1) in both directions, and the compression of whole
 * messages with zlib (§7.2): raw DEFLATE, each message ended by a sync
 * flush whose trailing 00 00 ff ff is removed on send and put back before
 * inflating.  Inflating is bounded: the output may not pass the message
 * limit, so a small frame cannot expand into gigabytes (a decompression
 * bomb fails the connection with 1009 instead). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "internal.h"

/* ---- negotiation ------------------------------------------------------------ */

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

static struct cm_str trim(struct cm_str s) {
  while (s.len > 0 && is_ows(s.buf[0])) s = cm_str_n(s.buf + 1, s.len - 1);
  while (s.len > 0 && is_ows(s.buf[s.len - 1])) s.len--;
  return s;
}

/* Cut `s` at the first `sep`: the part before it (trimmed) into *item, the
 * rest (after the separator) stays in *s.  False when *s is used up. */
static bool next_item(struct cm_str *s, char sep, struct cm_str *item) {
  if (s->buf == NULL) return false;
  const char *end = s->len > 0 ? memchr(s->buf, sep, s->len) : NULL;
  size_t n = end != NULL ? (size_t) (end - s->buf) : s->len;
  *item = trim(cm_str_n(s->buf, n));
  *s = end != NULL ? cm_str_n(end + 1, s->len - n - 1) : cm_str_n(NULL, 0);
  return true;
}

/* A window-bits value (§7.1.2): 8 to 15, digits without leading zeros,
 * maybe quoted (§9.1 of RFC 6455 allows a quoted-string). */
static int window_bits(struct cm_str v) {
  if (v.len >= 2 && v.buf[0] == '"' && v.buf[v.len - 1] == '"') v = cm_str_n(v.buf + 1, v.len - 2);
  if (v.len == 1 && v.buf[0] == '8') return 8;
  if (v.len == 1 && v.buf[0] == '9') return 9;
  if (v.len == 2 && v.buf[0] == '1' && v.buf[1] >= '0' && v.buf[1] <= '5') return 10 + (v.buf[1] - '0');
  return -1;
}

enum { P_SNC = 1, P_CNC = 2, P_SMW = 4, P_CMW = 8 };

/* Parse the parameters of one permessage-deflate element (after its name)
 * into *p.  `offer`: a client's offer (client_max_window_bits may come
 * without a value), else a server's response.  False for anything §7.1
 * says to decline or fail on: an unknown parameter, one given twice, a bad
 * value. */
static bool parse_params(struct cm_str rest, bool offer, struct cm__ws_pmd *p) {
  struct cm_str param;
  unsigned seen = 0;
  memset(p, 0, sizeof(*p));
  while (next_item(&rest, ';', &param)) {
    const char *eq = param.len > 0 ? memchr(param.buf, '=', param.len) : NULL;
    struct cm_str name = trim(cm_str_n(param.buf, eq != NULL ? (size_t) (eq - param.buf) : param.len));
    struct cm_str value =
        eq != NULL ? trim(cm_str_n(eq + 1, param.len - (size_t) (eq + 1 - param.buf))) : cm_str_n(NULL, 0);
    unsigned bit;
    if (cm_str_casecmp(name, cm_str_c("server_no_context_takeover")) && eq == NULL) {
      bit = P_SNC;
      p->server_no_context = true;
    } else if (cm_str_casecmp(name, cm_str_c("client_no_context_takeover")) && eq == NULL) {
      bit = P_CNC;
      p->client_no_context = true;
    } else if (cm_str_casecmp(name, cm_str_c("server_max_window_bits")) && eq != NULL) {
      bit = P_SMW;
      int b = window_bits(value);
      if (b < 0) return false;
      p->server_bits = (uint8_t) b;
    } else if (cm_str_casecmp(name, cm_str_c("client_max_window_bits")) && (eq != NULL || offer)) {
      bit = P_CMW;
      int b = eq != NULL ? window_bits(value) : 15;
      if (b < 0) return false;
      p->client_bits = (uint8_t) b;
      p->client_bits_given = eq != NULL;
    } else {
      return false;
    }
    if (seen & bit) return false;
    seen |= bit;
  }
  return true;
}

bool cm__ws_pmd_negotiate(struct cm_str offers, struct cm__ws_pmd *p, char *resp, size_t size) {
  struct cm_str ext;
  while (next_item(&offers, ',', &ext)) {
    struct cm_str rest = ext, name;
    next_item(&rest, ';', &name);
    if (!cm_str_casecmp(name, cm_str_c("permessage-deflate"))) continue;
    /* An offer we cannot honour is declined; the next one may do (§5.1).
     * zlib cannot make raw DEFLATE with a 256-byte window, so an offer
     * capping our window at 8 bits is one. */
    if (!parse_params(rest, true, p) || p->server_bits == 8) continue;
    if (p->server_bits == 0) p->server_bits = 15;
    int n = snprintf(resp, size, "Sec-WebSocket-Extensions: permessage-deflate%s%s",
                     p->server_no_context ? "; server_no_context_takeover" : "",
                     p->client_no_context ? "; client_no_context_takeover" : "");
    if (n > 0 && (size_t) n < size && p->server_bits != 15)
      n += snprintf(resp + n, size - (size_t) n, "; server_max_window_bits=%d", p->server_bits);
    if (n > 0 && (size_t) n + 2 < size) {
      memcpy(resp + n, "\r\n", 3);
      return true;
    }
    return false;
  }
  return false;
}

int cm__ws_pmd_accept(struct cm_str response, struct cm__ws_pmd *p) {
  struct cm_str ext, rest, name;
  int found = 0;
  while (next_item(&response, ',', &ext)) {
    rest = ext;
    next_item(&rest, ';', &name);
    /* §9.1 of RFC 6455: only extensions the client offered may come back;
     * we offer one, once. */
    if (!cm_str_casecmp(name, cm_str_c("permessage-deflate")) || found) return -1;
    if (!parse_params(rest, false, p)) return -1;
    /* §7.1.2.2: we offered client_max_window_bits, so a value may come;
     * zlib cannot honour 8 (see above): fail rather than break the rule. */
    if (p->client_bits == 8) return -1;
    if (p->client_bits == 0) p->client_bits = 15;
    found = 1;
  }
  return found;
}

/* ---- compression ---------------------------------------------------------- */

struct cm__ws_z {
  z_stream def, inf;
  bool def_ready, inf_ready;
  bool reset_def; /* our side takes no context over (reset after each message) */
  int bits;       /* our window bits */
};

struct cm__ws_z *cm__ws_z_new(const struct cm__ws_pmd *p, bool server) {
  struct cm__ws_z *z = calloc(1, sizeof(*z));
  if (z == NULL) return NULL;
  z->reset_def = server ? p->server_no_context : p->client_no_context;
  z->bits = server ? p->server_bits : p->client_bits;
  if (z->bits < 9 || z->bits > 15) z->bits = 15;
  return z;
}

void cm__ws_z_free(struct cm__ws_z *z) {
  if (z == NULL) return;
  if (z->def_ready) deflateEnd(&z->def);
  if (z->inf_ready) inflateEnd(&z->inf);
  free(z);
}

/* The streams are made on first use: a connection that never sends a
 * compressed message pays nothing for a deflater (~256 KiB). */
static bool def_ready(struct cm__ws_z *z) {
  if (!z->def_ready)
    z->def_ready =
        deflateInit2(&z->def, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -z->bits, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  return z->def_ready;
}

static bool inf_ready(struct cm__ws_z *z) {
  /* A 32 KiB window reads whatever window the peer used. */
  if (!z->inf_ready) z->inf_ready = inflateInit2(&z->inf, -15) == Z_OK;
  return z->inf_ready;
}

long cm__ws_z_deflate(struct cm__ws_z *z, const void *data, size_t len, struct cm_iobuf *out) {
  if (!def_ready(z) || len > UINT_MAX) return -1;
  size_t start = out->len;
  z_stream *s = &z->def;
  s->next_in = (Bytef *) (uintptr_t) data;
  s->avail_in = (uInt) len;
  for (;;) {
    size_t want = len / 8 + 64;
    if (cm_iobuf_reserve(out, want) != 0) return -1;
    size_t room = cm_iobuf_room(out);
    if (room > UINT_MAX) room = UINT_MAX;
    s->next_out = (Bytef *) cm_iobuf_data(out) + out->len;
    s->avail_out = (uInt) room;
    int rc = deflate(s, Z_SYNC_FLUSH);
    cm_iobuf_commit(out, room - s->avail_out);
    if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
    if (s->avail_out != 0 && s->avail_in == 0) break; /* flushed whole */
  }
  /* §7.2.1: remove the 4 octets 00 00 ff ff that end a sync flush. */
  size_t n = out->len - start;
  if (n < 4) return -1;
  out->len -= 4;
  if (z->reset_def) deflateReset(s);
  return (long) (n - 4);
}

/* Inflate in[0..len) appending to `out`, never past max + 1 bytes in it;
 * `*full` tells whether the call filled all the room it had. */
static int inflate_some(z_stream *s, struct cm_iobuf *out, uint64_t max, bool *full) {
  size_t want = s->avail_in * 4u + 4096u;
  if (want > (1u << 20)) want = 1u << 20;
  if (cm_iobuf_reserve(out, want) != 0) return CM__WS_Z_NOMEM;
  size_t room = cm_iobuf_room(out);
  uint64_t left = max + 1 - out->len; /* out->len <= max here */
  if (room > left) room = (size_t) left;
  if (room > UINT_MAX) room = UINT_MAX;
  s->next_out = (Bytef *) cm_iobuf_data(out) + out->len;
  s->avail_out = (uInt) room;
  int rc = inflate(s, Z_SYNC_FLUSH);
  cm_iobuf_commit(out, room - s->avail_out);
  *full = s->avail_out == 0;
  if (out->len > max) return CM__WS_Z_TOO_BIG;
  if (rc == Z_STREAM_END) return 1;
  if (rc == Z_BUF_ERROR && !*full) return 0; /* needs more input */
  return rc == Z_OK || rc == Z_BUF_ERROR ? 0 : CM__WS_Z_CORRUPT;
}

int cm__ws_z_inflate(struct cm__ws_z *z, struct cm_str in, struct cm_iobuf *out, uint64_t max) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  if (!inf_ready(z)) return CM__WS_Z_NOMEM;
  if (in.len > UINT_MAX) return CM__WS_Z_TOO_BIG;
  z_stream *s = &z->inf;
  for (int pass = 0; pass < 2; pass++) {
    /* §7.2.2: append 00 00 ff ff to the payload, then inflate. */
    s->next_in = pass == 0 ? (Bytef *) (uintptr_t) in.buf : (Bytef *) (uintptr_t) tail;
    s->avail_in = pass == 0 ? (uInt) in.len : 4u;
    bool full = true;
    while (s->avail_in > 0 || full) {
      int rc = inflate_some(s, out, max, &full);
      if (rc == 1) { /* a final block (BFINAL): the next message starts anew */
        inflateReset(s);
        return 0;
      }
      if (rc < 0) {
        inflateReset(s);
        return rc;
      }
      if (!full && s->avail_in > 0 && rc == 0 && s->avail_out != 0) break; /* no progress possible */
    }
  }
  return 0;
}
