/* sntp_codec.c: the pure SNTP packet codec (cm/sntp.h).
 *
 * The packet (RFC 5905 §7.3, RFC 4330 §4), big-endian:
 *   0  LI(2) VN(3) Mode(3)   1 Stratum   2 Poll   3 Precision
 *   4  Root Delay            8 Root Dispersion   12 Reference ID
 *  16  Reference Timestamp  24 Origin Timestamp
 *  32  Receive Timestamp    40 Transmit Timestamp
 * No allocation, no I/O: bytes in, numbers out. */
#include <string.h>

#include "internal.h"

#define NTP_UNIX_OFFSET 2208988800LL /* seconds from 1900-01-01 to 1970-01-01 */
#define ERA_SECONDS (1LL << 32)      /* an NTP era: the 32-bit seconds wrap */

enum { MODE_CLIENT = 3, MODE_SERVER = 4, MODE_BROADCAST = 5 };

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t) v;
    v >>= 8;
  }
}

/* Floor division for a positive divisor (C's '/' truncates toward 0). */
static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

uint64_t cm_sntp_from_ms(int64_t unix_ms) {
  int64_t ms = unix_ms % 1000;
  int64_t s = floor_div(unix_ms, 1000);
  if (ms < 0) ms += 1000;
  /* Only the low 32 bits of the seconds go on the wire: the era is lost
   * there, as RFC 5905 §6 says it is. */
  uint64_t secs = (uint64_t) (s + NTP_UNIX_OFFSET) & 0xffffffffu;
  uint64_t frac = ((uint64_t) ms << 32) / 1000u;
  /* Rounding down may land a hair below the ms; one more unit keeps the
   * round trip through cm_sntp_to_ms() exact. */
  if (((frac * 1000u) >> 32) < (uint64_t) ms) frac++;
  return secs << 32 | frac;
}

int64_t cm_sntp_to_ms(uint64_t ts, int64_t pivot_ms) {
  /* Far beyond any clock, and keeps the arithmetic below from overflowing. */
  const int64_t lim = (int64_t) 1 << 60;
  if (pivot_ms > lim) pivot_ms = lim;
  if (pivot_ms < -lim) pivot_ms = -lim;
  int64_t era0 = (int64_t) (ts >> 32) - NTP_UNIX_OFFSET; /* Unix seconds if in era 0 */
  int64_t pivot = floor_div(pivot_ms, 1000);
  /* The era whose reading lies within half an era of the pivot. */
  int64_t era = floor_div(pivot - era0 + ERA_SECONDS / 2, ERA_SECONDS);
  int64_t secs = era0 + era * ERA_SECONDS;
  int64_t ms = (int64_t) (((ts & 0xffffffffu) * 1000u) >> 32);
  return secs * 1000 + ms;
}

size_t cm_sntp_request_build(void *buf, size_t size, uint64_t xmit) {
  uint8_t *p = buf;
  if (size < CM_SNTP_LEN) return 0;
  memset(p, 0, CM_SNTP_LEN);
  p[0] = (0u << 6) | (4u << 3) | MODE_CLIENT; /* LI 0, VN 4, mode 3 */
  put64(p + 40, xmit);
  return CM_SNTP_LEN;
}

static int refuse(struct cm_sntp_reply *out, const char *why) {
  out->why = why;
  return -1;
}

/* The header fields and the origin, checked (RFC 4330 §5: what a client
 * must verify). */
static int check_header(const uint8_t *p, uint64_t origin, struct cm_sntp_reply *out) {
  out->leap = p[0] >> 6;
  out->version = (p[0] >> 3) & 7u;
  out->mode = p[0] & 7u;
  out->stratum = p[1];
  if (out->mode != MODE_SERVER && out->mode != MODE_BROADCAST) return refuse(out, "not a server reply");
  if (out->version == 0 || out->version > 4) return refuse(out, "unknown NTP version");
  /* RFC 4330 §8: a kiss-o'-death counts only if its origin matches too,
   * or anyone could silence the client with one forged packet. */
  if (origin != 0 && get64(p + 24) != origin) return refuse(out, "origin does not match the request");
  if (out->stratum == 0) {
    /* RFC 4330 §8: the reference id carries four ASCII characters. */
    for (int i = 0; i < 4; i++) {
      uint8_t ch = p[12 + i];
      out->kiss[i] = ch >= 0x20 && ch < 0x7f ? (char) ch : '?';
    }
    out->kiss[4] = '\0';
    return refuse(out, "kiss-o'-death");
  }
  if (out->stratum > 15) return refuse(out, "stratum above 15");
  if (out->leap == 3) return refuse(out, "server clock not synchronised");
  return 0;
}

int cm_sntp_parse(const void *buf, size_t len, uint64_t origin, int64_t pivot_ms, struct cm_sntp_reply *out) {
  const uint8_t *p = buf;
  memset(out, 0, sizeof(*out));
  if (len < CM_SNTP_LEN) return 0;
  if (check_header(p, origin, out) < 0) return -1;
  uint64_t xmit = get64(p + 40);
  if (xmit == 0) return refuse(out, "zero transmit time");
  uint64_t recv = get64(p + 32);
  out->xmit_ms = cm_sntp_to_ms(xmit, pivot_ms);
  out->recv_ms = recv != 0 ? cm_sntp_to_ms(recv, pivot_ms) : out->xmit_ms;
  return CM_SNTP_LEN;
}
