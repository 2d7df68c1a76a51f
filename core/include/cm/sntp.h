/* cm/sntp.h: SNTP (RFC 4330; NTPv4 packets of RFC 5905 §7.3): a pure
 * codec for the 48-byte packet, and a client protocol handler that asks
 * once and reports the server's time as CM_EV_SNTP_TIME.
 *
 * Timestamps on the wire are NTP's: 32 bits of seconds since 1900-01-01
 * and 32 bits of fraction.  The seconds wrap every 2^32 s (136 years): era
 * 0 ends on 2036-02-07 06:28:16 UTC.  A timestamp alone does not say its
 * era, so it is read as the one closest to a pivot time the caller gives
 * (the system clock), which is right as long as the clock is off by less
 * than 68 years (RFC 5905 §6; RFC 4330 §3 has a cruder rule on the top
 * bit, which also ends in 2104). */
#ifndef CM_SNTP_H
#define CM_SNTP_H

#include "base.h"
#include "event.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm_conn;

#define CM_SNTP_LEN 48           /* an SNTP packet without extensions or MAC */
#define CM_SNTP_PORT 123         /* the NTP port, for "udp://host" without one */
#define CM_SNTP_TIMEOUT_MS 3000u /* no answer this long after CM_EV_OPEN: close */

/* What a valid server reply says.  Times are ms since the Unix epoch. */
struct cm_sntp_reply {
  int64_t recv_ms; /* when the server received the request (T2) */
  int64_t xmit_ms; /* when the server sent the reply (T3) */
  uint8_t leap;    /* leap indicator, 0..2 (3, unsynchronised, is refused) */
  uint8_t version; /* the reply's version number (1..4) */
  uint8_t mode;    /* 4 server, 5 broadcast */
  uint8_t stratum; /* 1..15 (0, kiss-o'-death, is refused) */
  char kiss[5];    /* on a kiss-o'-death: its code ("RATE", "DENY"), else "" */
  const char *why; /* on -1: why the packet was refused (static text) */
};

/* The NTP timestamp (seconds since 1900 in the high 32 bits, fraction in
 * the low ones) of `unix_ms`, ms since the Unix epoch (may be negative).
 * Times from 2036-02-07 on wrap into the next era, as on the wire. */
uint64_t cm_sntp_from_ms(int64_t unix_ms);
/* ms since the Unix epoch of the NTP timestamp `ts`, in the era that puts
 * it closest to `pivot_ms` (ms since the Unix epoch; pass the system's
 * time).  The fraction is truncated to whole ms. */
int64_t cm_sntp_to_ms(uint64_t ts, int64_t pivot_ms);
/* Write a client request into buf[0..CM_SNTP_LEN): leap 0, version 4,
 * mode 3, every field zero but the transmit timestamp, `xmit` (RFC 4330
 * §5; the server copies it into the reply's origin field, which is how a
 * reply is matched to its request).  Returns CM_SNTP_LEN, or 0 if `size`
 * is smaller (nothing written). */
size_t cm_sntp_request_build(void *buf, size_t size, uint64_t xmit);
/* Check and decode a reply in buf[0..len).  Pure: no allocation, no I/O.
 * Returns CM_SNTP_LEN when it is valid, 0 when fewer than CM_SNTP_LEN bytes
 * are given, -1 when it is refused (out->why says why): mode not 4 or 5,
 * version 0 or above 4, leap indicator 3 (the server is unsynchronised),
 * stratum 0 (kiss-o'-death: out->kiss holds its code; RFC 4330 §8) or above
 * 15, a zero transmit timestamp, or, when `origin` is not 0, an origin
 * timestamp other than `origin` (a stale or forged reply).  Bytes past
 * the first CM_SNTP_LEN (extensions, a MAC) are ignored.  Timestamps are
 * read against `pivot_ms` as in cm_sntp_to_ms(). */
int cm_sntp_parse(const void *buf, size_t len, uint64_t origin, int64_t pivot_ms, struct cm_sntp_reply *out);

/* Connect an SNTP client.  With "udp://host[:port]" (port 123 if none) a
 * request goes out on CM_EV_CONNECT; the first valid reply fires
 * CM_EV_SNTP_TIME (ev_data: const int64_t *, ms since the Unix epoch: the
 * server's transmit time plus half the network delay, RFC 4330 §5) and
 * the connection closes.  Replies that fail cm_sntp_parse() are dropped,
 * except a kiss-o'-death, which fails the connection with CM_EV_ERROR
 * naming its code.  No valid reply within CM_SNTP_TIMEOUT_MS of
 * CM_EV_OPEN: closed without an error.  Any other scheme is a TCP
 * connection, as cm_connect() makes it (SPEC 2.13: "sntp://host" connects
 * to port 0 and fails).  Same contract as cm_connect(). */
struct cm_conn *cm_sntp_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* Send one request on `c` now.  On an SNTP client its transmit timestamp
 * becomes the origin the next reply must carry.  Returns false, logging an
 * error, while `c` has no socket yet (its name is being resolved), or if
 * it is closing or the send fails. */
bool cm_sntp_request(struct cm_conn *c);
/* The SNTP protocol handler, for setting c->pfn by hand. */
void cm_sntp_handler(struct cm_conn *c, int ev, void *ev_data);
/* ms since the Unix epoch, from the system's real-time clock. */
int64_t cm_time_ms(void);

#ifdef __cplusplus
}
#endif
#endif /* CM_SNTP_H */
