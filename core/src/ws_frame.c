/* ws_frame.c: the WebSocket frame codec (RFC 6455 §5), UTF-8 validation
 * (RFC 3629, for §8.1) and the close-code rules (§7.4).  Pure: no
 * connection, no allocation, no I/O; the protocol handler is ws.c. */
#include <string.h>

#include "cm/ws.h"

/* ---- frame headers ------------------------------------------------------ */

int cm_ws_parse_header(const char *buf, size_t len, struct cm_ws_frame *f) {
  const uint8_t *p = (const uint8_t *) buf;
  if (len < 2) return 0;
  memset(f, 0, sizeof(*f));
  f->flags = p[0];
  f->op = p[0] & 0x0f;
  f->fin = (p[0] & CM_WS_FIN) != 0;
  f->masked = (p[1] & 0x80) != 0;
  size_t n = 2;
  uint64_t plen = p[1] & 0x7f;
  /* §5.2: 126 means a 16-bit length follows, 127 a 64-bit one whose most
   * significant bit MUST be 0. */
  if (plen == 126) {
    if (len < 4) return 0;
    plen = (uint64_t) p[2] << 8 | p[3];
    n = 4;
  } else if (plen == 127) {
    if (len < 10) return 0;
    if (p[2] & 0x80) return -1;
    plen = 0;
    for (int i = 0; i < 8; i++) plen = plen << 8 | p[2 + i];
    n = 10;
  }
  if (f->masked) {
    if (len < n + 4) return 0;
    memcpy(f->mask, p + n, 4);
    n += 4;
  }
  f->len = plen;
  f->head_len = n;
  return (int) n;
}

long cm_ws_parse(const char *buf, size_t len, struct cm_ws_frame *f) {
  int h = cm_ws_parse_header(buf, len, f);
  if (h <= 0) return h;
  /* Compared without adding, so a huge announced length cannot wrap. */
  if (f->len > len - (size_t) h) return 0;
  f->payload = cm_str_n(buf + h, (size_t) f->len);
  return (long) ((size_t) h + (size_t) f->len);
}

const char *cm_ws_check(const struct cm_ws_frame *f, bool from_client, unsigned rsv_ok) {
  /* §5.2: opcodes 3-7 and 11-15 are reserved: "the receiving endpoint MUST
   * _Fail the WebSocket Connection_". */
  if ((f->op >= 3 && f->op <= 7) || f->op >= 11) return "reserved opcode";
  /* §5.2: RSV1-3 MUST be 0 unless an extension defining them was
   * negotiated; RFC 7692 §6: RSV1 only on the first frame of a message. */
  unsigned rsv = f->flags & (CM_WS_RSV1 | CM_WS_RSV2 | CM_WS_RSV3);
  if (rsv & ~rsv_ok) return "reserved bits set";
  if (rsv != 0 && (f->op == CM_WS_OP_CONTINUE || f->op >= CM_WS_OP_CLOSE)) return "reserved bits set";
  /* §5.1: a server MUST close on an unmasked client frame; a client MUST
   * close on a masked server frame. */
  if (f->masked != from_client) return from_client ? "unmasked client frame" : "masked server frame";
  /* §5.5: control frames carry at most 125 bytes and are never
   * fragmented. */
  if (f->op >= CM_WS_OP_CLOSE && f->len > CM_WS_MAX_CONTROL) return "control frame too long";
  if (f->op >= CM_WS_OP_CLOSE && !f->fin) return "fragmented control frame";
  return NULL;
}

void cm_ws_mask(void *buf, size_t len, const uint8_t key[4], uint64_t ofs) {
  uint8_t *p = buf;
  size_t i = 0;
  /* Byte-wise up to the key's phase 0, then 8 bytes at a time with the key
   * repeated: masking a large message is a memory-speed pass. */
  while (i < len && ((ofs + i) & 3) != 0) {
    p[i] ^= key[(ofs + i) & 3];
    i++;
  }
  uint64_t k8;
  uint8_t kb[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  memcpy(&k8, kb, 8);
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    w ^= k8;
    memcpy(p + i, &w, 8);
  }
  for (; i < len; i++) p[i] ^= key[(ofs + i) & 3];
}

size_t cm_ws_header(uint8_t out[CM_WS_MAX_HEADER], uint8_t flags, uint64_t len, const uint8_t *key) {
  size_t n = 2;
  uint8_t maskbit = key != NULL ? 0x80 : 0;
  out[0] = flags;
  if (len < 126) {
    out[1] = (uint8_t) (maskbit | len);
  } else if (len <= 0xffff) {
    out[1] = maskbit | 126;
    out[2] = (uint8_t) (len >> 8);
    out[3] = (uint8_t) len;
    n = 4;
  } else {
    out[1] = maskbit | 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t) (len >> (56 - 8 * i));
    n = 10;
  }
  if (key != NULL) {
    memcpy(out + n, key, 4);
    n += 4;
  }
  return n;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

/* The lead byte `b` of a multi-byte character: how many continuation bytes
 * follow, and the range of the first one (RFC 3629 §4: that range is what
 * rules out overlong forms, surrogates and code points above U+10FFFF).
 * Returns false for a byte that cannot start a character. */
static bool lead(uint8_t b, struct cm_utf8 *u) {
  u->lo = 0x80;
  u->hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) {
    u->need = 1;
  } else if (b >= 0xe0 && b <= 0xef) {
    u->need = 2;
    if (b == 0xe0) u->lo = 0xa0; /* overlong */
    if (b == 0xed) u->hi = 0x9f; /* U+D800-DFFF */
  } else if (b >= 0xf0 && b <= 0xf4) {
    u->need = 3;
    if (b == 0xf0) u->lo = 0x90; /* overlong */
    if (b == 0xf4) u->hi = 0x8f; /* above U+10FFFF */
  } else {
    return false;
  }
  return true;
}

bool cm_utf8_feed(struct cm_utf8 *u, const void *buf, size_t len) {
  const uint8_t *p = buf;
  size_t i = 0;
  if (u->state != 0) return false;
  while (i < len) {
    if (u->need == 0) {
      /* ASCII runs, 8 bytes at a time: the common case costs little. */
      while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
      }
      if (i == len) break;
      uint8_t b = p[i++];
      if (b < 0x80) continue;
      if (!lead(b, u)) goto bad;
      continue;
    }
    uint8_t b = p[i++];
    if (b < u->lo || b > u->hi) goto bad;
    u->need--;
    u->lo = 0x80;
    u->hi = 0xbf;
  }
  return true;
bad:
  u->state = 1;
  return false;
}

bool cm_utf8_done(const struct cm_utf8 *u) { return u->state == 0 && u->need == 0; }

bool cm_utf8_valid(const void *buf, size_t len) {
  struct cm_utf8 u = {0, 0, 0, 0};
  return cm_utf8_feed(&u, buf, len) && cm_utf8_done(&u);
}

/* ---- close frames ----------------------------------------------------------- */

bool cm_ws_close_code_ok(unsigned code) {
  /* §7.4.1 defines 1000-1011 minus 1004 (reserved), 1005 and 1006 (never on
   * the wire); IANA added 1012-1014; 1015 is never sent either.  §7.4.2:
   * 3000-3999 are registered, 4000-4999 private; the rest is reserved. */
  if (code >= 1000 && code <= 1003) return true;
  if (code >= 1007 && code <= 1014) return true;
  return code >= 3000 && code <= 4999;
}

int cm_ws_close_parse(struct cm_str payload, unsigned *code, struct cm_str *reason) {
  *reason = cm_str_n(NULL, 0);
  if (payload.len == 0) {
    *code = 1005; /* §7.1.5: no status code was present */
    return 0;
  }
  /* §5.5.1: a body starts with a 2-byte code; one byte alone is not one. */
  if (payload.len < 2) return CM_WS_CLOSE_PROTOCOL;
  const uint8_t *p = (const uint8_t *) payload.buf;
  *code = (unsigned) p[0] << 8 | p[1];
  if (!cm_ws_close_code_ok(*code)) return CM_WS_CLOSE_PROTOCOL;
  *reason = cm_str_n(payload.buf + 2, payload.len - 2);
  /* §5.5.1: the reason is UTF-8; §8.1: else fail with 1007. */
  if (!cm_utf8_valid(reason->buf != NULL ? reason->buf : "", reason->len)) return CM_WS_CLOSE_INVALID_DATA;
  return 0;
}
