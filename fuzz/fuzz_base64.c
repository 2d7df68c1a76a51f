/* fuzz_base64.c: base64 (cm/util.h) and, since it is as cheap to check,
 * cm_crc32.
 *
 * The input is used twice: as base64 text to decode, and as bytes to encode.
 * Destinations are exact-size heap buffers, so one byte written too many is
 * an ASan report.  Checked:
 *  - decoding fits in cm_base64_decoded_max, fits again in exactly its own
 *    length, fails (never truncates) one byte short, and re-encoding then
 *    decoding gives the same bytes;
 *  - encoding writes exactly cm_base64_encoded_len bytes, refuses one byte
 *    less, and decodes back to the input;
 *  - CRC-32 over the input equals CRC-32 continued across any split. */
#include <stddef.h>
#include <stdint.h>

#include "cm/util.h"
#include "fuzz_util.h"

static char *encode(const void *src, size_t n, size_t *len) {
  *len = cm_base64_encoded_len(n);
  FUZZ_CHECK(*len != SIZE_MAX && *len % 4 == 0);
  char *dst = malloc(*len > 0 ? *len : 1);
  FUZZ_CHECK(dst != NULL);
  FUZZ_CHECK(cm_base64_encode(src, n, dst, *len) == (long) *len);
  if (*len > 0) FUZZ_CHECK(cm_base64_encode(src, n, dst, *len - 1) == -1);
  return dst;
}

/* Decode into exactly `cap` bytes. */
static long decode(const char *src, size_t n, size_t cap, char **out) {
  char *dst = malloc(cap > 0 ? cap : 1);
  FUZZ_CHECK(dst != NULL);
  long r = cm_base64_decode(src, n, dst, cap);
  FUZZ_CHECK(r >= -1 && (r < 0 || (size_t) r <= cap));
  *out = dst;
  return r;
}

static void check_decode(const char *text, size_t n) {
  char *a, *b, *c;
  size_t max = cm_base64_decoded_max(n);
  long r = decode(text, n, max, &a);
  if (r >= 0) {
    FUZZ_CHECK(decode(text, n, (size_t) r, &b) == r && memcmp(a, b, (size_t) r) == 0);
    free(b);
    if (r > 0) {
      FUZZ_CHECK(decode(text, n, (size_t) r - 1, &b) == -1);
      free(b);
    }
    size_t elen;
    char *enc = encode(a, (size_t) r, &elen);
    FUZZ_CHECK(decode(enc, elen, (size_t) r, &c) == r && memcmp(a, c, (size_t) r) == 0);
    free(c);
    free(enc);
  }
  free(a);
}

static void check_encode(const uint8_t *data, size_t n) {
  size_t elen;
  char *enc = encode(data, n, &elen), *back;
  FUZZ_CHECK(decode(enc, elen, n, &back) == (long) n && memcmp(back, data, n) == 0);
  free(back);
  free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_dup(data, size, 0);
  check_decode(text, size);
  check_encode(data, size);
  size_t cut = size > 0 ? data[0] % (size + 1) : 0;
  FUZZ_CHECK(cm_crc32(cm_crc32(0, data, cut), data + cut, size - cut) == cm_crc32(0, data, size));
  free(text);
  return 0;
}
