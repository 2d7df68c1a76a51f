/* fuzz_mqtt_persist.c: the MQTT broker's persistence loader
 * (cm_mqtt_persist_decode, cm/mqtt_broker.h): a file on disk is input the
 * broker did not write this run, so any bytes must be reported, never
 * crashed on.
 *
 * Input layout: byte 0 is a flag, the rest is the file.  With bit 0 of the
 * flag set the target rewrites the trailing CRC-32 before decoding, so
 * mutations reach the record parser instead of all failing the checksum.
 * Checked:
 *  - decode returns 0 or a negative code with a message, and the store can
 *    be freed either way (ASan: no leak, no stale reference);
 *  - what decodes re-encodes, and the re-encoded file decodes to a store
 *    that encodes to the same length (nothing lost, nothing invented). */
#include <stddef.h>
#include <stdint.h>

#include "cm.h"
#include "fuzz_util.h"

struct membuf {
  char *buf;
  size_t len, cap;
};

static bool to_mem(const void *p, size_t len, void *arg) {
  struct membuf *m = arg;
  if (m->len + len > m->cap) {
    m->cap = (m->len + len) * 2;
    m->buf = realloc(m->buf, m->cap);
    FUZZ_CHECK(m->buf != NULL);
  }
  memcpy(m->buf + m->len, p, len);
  m->len += len;
  return true;
}

static int load(const char *buf, size_t len, struct cm_mqtt_store *st) {
  char err[256] = "";
  FUZZ_CHECK(cm_mqtt_store_init(st, 0, 0) == 0);
  int rc = cm_mqtt_persist_decode(st, buf, len, err, sizeof(err));
  FUZZ_CHECK(rc == 0 || (rc < 0 && err[0] != '\0'));
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t len = size - 1;
  char *buf = fuzz_dup((const char *) data + 1, len, 0);
  if ((data[0] & 1) && len >= 4) {
    uint32_t crc = cm_crc32(0, buf, len - 4);
    for (int i = 0; i < 4; i++) buf[len - 4 + i] = (char) (crc >> (24 - 8 * i));
  }
  struct cm_mqtt_store st;
  if (load(buf, len, &st) == 0) {
    struct membuf a = {0}, b = {0};
    FUZZ_CHECK(cm_mqtt_persist_encode(&st, to_mem, &a) == 0);
    struct cm_mqtt_store again;
    FUZZ_CHECK(load(a.buf, a.len, &again) == 0);
    FUZZ_CHECK(cm_mqtt_persist_encode(&again, to_mem, &b) == 0);
    FUZZ_CHECK(a.len == b.len);
    FUZZ_CHECK(again.nsessions == st.nsessions);
    cm_mqtt_store_free(&again);
    free(a.buf);
    free(b.buf);
  }
  cm_mqtt_store_free(&st);
  free(buf);
  return 0;
}
