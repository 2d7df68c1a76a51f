/* fuzz_sntp.c: the SNTP reply parser (cm_sntp_parse) and the timestamp
 * conversions on arbitrary bytes.
 *
 * The first 16 bytes of the input choose the origin and the pivot time;
 * the rest is the packet.  Checked: the documented returns (48, 0 below
 * 48 bytes, -1 with a reason), the refusals that must happen (mode, leap 3,
 * stratum 0 with its code, zero transmit time, a wrong origin), the era
 * rule (the time read is within half an era of the pivot), and that a
 * timestamp written from a time reads back as that time. */
#include <stddef.h>
#include <stdint.h>

#include "cm/sntp.h"
#include "fuzz_util.h"

#define HALF_ERA_MS (((int64_t) 1 << 31) * 1000)

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

static void check_reply(const uint8_t *p, size_t len, uint64_t origin, int64_t pivot) {
  struct cm_sntp_reply r;
  int n = cm_sntp_parse(p, len, origin, pivot, &r);
  if (len < CM_SNTP_LEN) {
    FUZZ_CHECK(n == 0);
    return;
  }
  FUZZ_CHECK(n == CM_SNTP_LEN || n == -1);
  if (n < 0) {
    FUZZ_CHECK(r.why != NULL);
    FUZZ_CHECK(r.kiss[4] == '\0');
    if (r.kiss[0] != '\0') FUZZ_CHECK(p[1] == 0 && strlen(r.kiss) == 4);
    return;
  }
  unsigned mode = p[0] & 7u, leap = p[0] >> 6;
  FUZZ_CHECK(mode == 4 || mode == 5);
  FUZZ_CHECK(leap != 3 && p[1] != 0 && p[1] <= 15);
  FUZZ_CHECK(get64(p + 40) != 0);
  if (origin != 0) FUZZ_CHECK(get64(p + 24) == origin);
  /* The era read is the one within half an era of the (clamped) pivot. */
  int64_t lim = (int64_t) 1 << 60;
  int64_t piv = pivot > lim ? lim : pivot < -lim ? -lim : pivot;
  int64_t d = r.xmit_ms - piv;
  FUZZ_CHECK(d >= -HALF_ERA_MS - 1000 && d <= HALF_ERA_MS + 1000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 16) return 0;
  uint64_t origin = get64(data);
  int64_t pivot = (int64_t) get64(data + 8);
  uint8_t *pkt = malloc(size - 16 + 1); /* exact size: ASan sees any overread */
  memcpy(pkt, data + 16, size - 16);
  check_reply(pkt, size - 16, origin, pivot);
  check_reply(pkt, size - 16, 0, pivot);
  /* Round trip: a time within the NTP range survives the wire. */
  int64_t t = pivot % ((int64_t) 100 * 365 * 86400 * 1000);
  FUZZ_CHECK(cm_sntp_to_ms(cm_sntp_from_ms(t), t) == t);
  /* The request carries exactly what it was given. */
  uint8_t req[CM_SNTP_LEN];
  FUZZ_CHECK(cm_sntp_request_build(req, sizeof(req), origin) == CM_SNTP_LEN);
  FUZZ_CHECK(get64(req + 40) == origin && req[0] == 0x23);
  free(pkt);
  return 0;
}
