/* test_mqtt_persist.c: the broker's persistence file (mqtt_persist.c):
 * a store survives a save and a read, a message is written once, every
 * damaged file is reported (never crashed on), and the file is replaced
 * only when the new one is whole. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

static struct cm_str S(const char *s) {
  return cm_str_c(s);
}

struct membuf {
  char *buf;
  size_t len, cap;
};

static bool to_mem(const void *p, size_t len, void *arg) {
  struct membuf *m = arg;
  if (m->len + len > m->cap) {
    m->cap = (m->len + len) * 2;
    m->buf = realloc(m->buf, m->cap);
    ASSERT(m->buf != NULL);
  }
  memcpy(m->buf + m->len, p, len);
  m->len += len;
  return true;
}

/* A store with a bit of everything; `big` is shared by the retained store
 * and two sessions' queues. */
static void fill(struct cm_mqtt_store *st) {
  ASSERT_EQ(cm_mqtt_store_init(st, 2, 100), 0);
  char payload[10000];
  memset(payload, 'p', sizeof(payload));
  struct cm_mqtt_stored *big = cm_mqtt_stored_new(S("data/big"), cm_str_n(payload, sizeof(payload)),
                                                  cm_str_n("\x03\x00\x01x", 4), 2, true);
  struct cm_mqtt_stored *small = cm_mqtt_stored_new(S("$SYS/x"), cm_str_n("\0\1", 2), S(""), 1, true);
  ASSERT_EQ(cm_mqtt_tree_retain(st->tree, S("data/big"), big), 0);
  ASSERT_EQ(cm_mqtt_tree_retain(st->tree, S("$SYS/x"), small), 0);
  struct cm_mqtt_session *a = cm_mqtt_session_new(st, S("alpha"));
  a->persistent = true;
  a->version = 5;
  a->expiry = 3600;
  ASSERT_EQ(cm_mqtt_session_sub(st, a, S("data/#"), 2 | CM_MQTT_SUB_NO_LOCAL), 1);
  ASSERT_EQ(cm_mqtt_session_sub(st, a, S("+/x"), 1), 1);
  for (int i = 0; i < 3; i++) ASSERT_EQ(cm_mqtt_session_enqueue(st, a, big, 2, false), 0);
  ASSERT_EQ(cm_mqtt_session_enqueue(st, a, small, 1, true), 0);
  struct cm_mqtt_qentry *e = cm_mqtt_session_next(a); /* in flight, PUBLISHED */
  ASSERT(e != NULL);
  e = cm_mqtt_session_next(a);
  ASSERT(cm_mqtt_session_ack(a, e->pid, 5)); /* RELEASED: no message any more */
  ASSERT_EQ(cm_mqtt_session_rx_add(a, 77), 1);
  ASSERT_EQ(cm_mqtt_session_rx_add(a, 65535), 1);
  struct cm_mqtt_session *b = cm_mqtt_session_new(st, S("beta"));
  b->persistent = true;
  ASSERT_EQ(cm_mqtt_session_enqueue(st, b, big, 1, false), 0);
  struct cm_mqtt_session *c = cm_mqtt_session_new(st, S("clean")); /* not persistent: not saved */
  ASSERT_EQ(cm_mqtt_session_sub(st, c, S("#"), 0), 1);
  cm_mqtt_stored_release(big);
  cm_mqtt_stored_release(small);
}

static void check(struct cm_mqtt_store *st) {
  ASSERT_EQ(st->nsessions, 2);
  ASSERT(cm_mqtt_session_find(st, S("clean")) == NULL);
  struct cm_mqtt_stored *big = cm_mqtt_tree_retained_at(st->tree, S("data/big"));
  ASSERT(big != NULL && big->data_len == 10000 && big->qos == 2 && big->retain);
  ASSERT(big->props_len == 4 && memcmp(big->props, "\x03\x00\x01x", 4) == 0);
  struct cm_mqtt_stored *small = cm_mqtt_tree_retained_at(st->tree, S("$SYS/x"));
  ASSERT(small != NULL && small->data_len == 2 && memcmp(small->data, "\0\1", 2) == 0);
  ASSERT_EQ(cm_mqtt_tree_nretained(st->tree), 2);
  struct cm_mqtt_session *a = cm_mqtt_session_find(st, S("alpha"));
  ASSERT(a != NULL && a->persistent && a->version == 5 && a->expiry == 3600 && a->next_pid == 2);
  ASSERT_EQ(a->nsubs, 2);
  struct cm_mqtt_ssub *sub = cm_mqtt_session_sub_find(a, S("data/#"));
  ASSERT(sub != NULL && sub->link.opts == (2 | CM_MQTT_SUB_NO_LOCAL));
  const struct cm_mqtt_match *m;
  ASSERT_EQ(cm_mqtt_tree_match(st->tree, S("data/q"), NULL, &m), 1); /* back in the tree */
  ASSERT(m[0].owner == &a->subscriber && m[0].qos == 2);
  ASSERT_EQ(a->inflight.len, 2);
  struct cm_mqtt_qentry *e = a->inflight.head;
  ASSERT(e->pid == 1 && e->state == CM_MQTT_Q_PUBLISHED && e->msg == big && e->qos == 2);
  e = e->next;
  ASSERT(e->pid == 2 && e->state == CM_MQTT_Q_RELEASED && e->msg == NULL);
  ASSERT_EQ(a->queued.len, 2);
  ASSERT(a->queued.head->msg == big && a->queued.tail->msg == small && a->queued.tail->retain);
  ASSERT(a->nrx == 2 && cm_mqtt_session_rx_add(a, 77) == 0 && cm_mqtt_session_rx_add(a, 65535) == 0);
  struct cm_mqtt_session *b = cm_mqtt_session_find(st, S("beta"));
  ASSERT(b != NULL && b->queued.len == 1 && b->queued.head->msg == big);
  ASSERT_EQ(big->refs, 4); /* one copy in memory, shared again */
}

static void test_roundtrip(void) {
  struct cm_mqtt_store st, back;
  fill(&st);
  struct membuf mb = {0};
  ASSERT_EQ(cm_mqtt_persist_encode(&st, to_mem, &mb), 0);
  /* The 10 kB payload shared by three holders is in the file once. */
  ASSERT(mb.len > 10000 && mb.len < 11000);
  ASSERT(memcmp(mb.buf, "CMMQTTDB", 8) == 0);
  ASSERT_EQ(cm_crc32(0, mb.buf, mb.len - 4), ((uint32_t) (uint8_t) mb.buf[mb.len - 4] << 24) |
                                                 ((uint32_t) (uint8_t) mb.buf[mb.len - 3] << 16) |
                                                 ((uint32_t) (uint8_t) mb.buf[mb.len - 2] << 8) |
                                                 (uint8_t) mb.buf[mb.len - 1]);
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  char err[256] = "";
  ASSERT_EQ(cm_mqtt_persist_decode(&back, mb.buf, mb.len, err, sizeof(err)), 0);
  check(&back);
  /* Saving what was read gives a file of the same size (order may differ). */
  struct membuf mb2 = {0};
  ASSERT_EQ(cm_mqtt_persist_encode(&back, to_mem, &mb2), 0);
  ASSERT_EQ(mb2.len, mb.len);
  cm_mqtt_store_free(&back);
  cm_mqtt_store_free(&st);
  free(mb.buf);
  free(mb2.buf);
}

static int decode(const void *buf, size_t len, char *err, size_t errlen) {
  struct cm_mqtt_store st;
  ASSERT_EQ(cm_mqtt_store_init(&st, 0, 0), 0);
  int rc = cm_mqtt_persist_decode(&st, buf, len, err, errlen);
  cm_mqtt_store_free(&st);
  return rc;
}

/* Rewrite the trailing checksum after editing, to reach the record checks. */
static void recrc(char *buf, size_t len) {
  uint32_t crc = cm_crc32(0, buf, len - 4);
  for (int i = 0; i < 4; i++) buf[len - 4 + i] = (char) (crc >> (24 - 8 * i));
}

static void test_damage(void) {
  struct cm_mqtt_store st;
  fill(&st);
  struct membuf mb = {0};
  ASSERT_EQ(cm_mqtt_persist_encode(&st, to_mem, &mb), 0);
  cm_mqtt_store_free(&st);
  char err[256];
  /* Every truncation, at a guard page: reported. */
  for (size_t n = 0; n < mb.len; n += (n < 200 || n > mb.len - 200) ? 1 : 97) {
    err[0] = '\0';
    ASSERT_EQ(decode(cm_test_guard(mb.buf, n), n, err, sizeof(err)), -CM_EPROTO);
    ASSERT(err[0] != '\0');
  }
  /* Any flipped bit: the checksum says so. */
  for (size_t i = 0; i < mb.len; i += (i < 400 ? 1 : 89)) {
    mb.buf[i] ^= 0x10;
    ASSERT_EQ(decode(mb.buf, mb.len, err, sizeof(err)), -CM_EPROTO);
    mb.buf[i] ^= 0x10;
  }
  ASSERT_EQ(decode(mb.buf, mb.len, err, sizeof(err)), 0);
  ASSERT_EQ(decode("hello", 5, err, sizeof(err)), -CM_EPROTO);
  ASSERT(strstr(err, "not a cymongoose") != NULL);
  char *copy = malloc(mb.len);
  memcpy(copy, mb.buf, mb.len);
  copy[11] = 2; /* version 2 */
  recrc(copy, mb.len);
  ASSERT_EQ(decode(copy, mb.len, err, sizeof(err)), -CM_EPROTO);
  ASSERT(strstr(err, "version") != NULL);
  /* A valid checksum over inconsistent records is still refused: each
   * byte of the first records changed in turn, the checksum redone. */
  for (size_t i = 16; i < 120; i++) {
    for (int v = 0; v < 256; v += 51) {
      memcpy(copy, mb.buf, mb.len);
      copy[i] = (char) v;
      recrc(copy, mb.len);
      decode(copy, mb.len, err, sizeof(err)); /* success or an error; ASan watches */
    }
  }
  /* Message numbers must come in order. */
  memcpy(copy, mb.buf, mb.len);
  ASSERT_EQ(copy[16], 1); /* the first record is a message ... */
  copy[21 + 3] = 7;       /* ... numbered 7 */
  recrc(copy, mb.len);
  ASSERT_EQ(decode(copy, mb.len, err, sizeof(err)), -CM_EPROTO);
  ASSERT(strstr(err, "inconsistent") != NULL);
  free(copy);
  free(mb.buf);
}

static char *tmp_path(char *dir, size_t n, const char *name, char *out, size_t outn) {
  snprintf(dir, n, "/tmp/cm_persist_XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(out, outn, "%s/%s", dir, name);
  return out;
}

static void test_file(void) {
  char dir[64], path[128], tmp[160], err[256] = "";
  tmp_path(dir, sizeof(dir), "broker.db", path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.new", path);
  struct cm_mqtt_store st, back;
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  ASSERT_EQ(cm_mqtt_persist_read(&back, path, err, sizeof(err)), 0); /* no file yet: empty */
  ASSERT_EQ(back.nsessions, 0);
  cm_mqtt_store_free(&back);
  fill(&st);
  ASSERT_EQ(cm_mqtt_persist_save(&st, path, err, sizeof(err)), 0);
  ASSERT(access(tmp, F_OK) != 0); /* renamed, nothing left behind */
  struct stat sb;
  ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 077) == 0);
  /* A crash while writing leaves a partial "<path>.new": the saved file is
   * what is read. */
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT(fd >= 0 && write(fd, "CMMQTTDB\0\0", 10) == 10);
  close(fd);
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  ASSERT_EQ(cm_mqtt_persist_read(&back, path, err, sizeof(err)), 0);
  check(&back);
  cm_mqtt_store_free(&back);
  /* Saving again replaces the file (and the stale .new). */
  struct cm_mqtt_session *a = cm_mqtt_session_find(&st, S("alpha"));
  cm_mqtt_session_free(&st, a);
  ASSERT_EQ(cm_mqtt_persist_save(&st, path, err, sizeof(err)), 0);
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  ASSERT_EQ(cm_mqtt_persist_read(&back, path, err, sizeof(err)), 0);
  ASSERT_EQ(back.nsessions, 1);
  cm_mqtt_store_free(&back);
  /* A save that cannot write reports why and leaves the file alone. */
  char bad[200];
  snprintf(bad, sizeof(bad), "%s/no/such/dir/db", dir);
  ASSERT_EQ(cm_mqtt_persist_save(&st, bad, err, sizeof(err)), -CM_EIO);
  ASSERT(strstr(err, "No such file") != NULL);
  /* A damaged file is reported with its name. */
  fd = open(path, O_WRONLY);
  ASSERT(fd >= 0 && pwrite(fd, "X", 1, 20) == 1);
  close(fd);
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  ASSERT_EQ(cm_mqtt_persist_read(&back, path, err, sizeof(err)), -CM_EPROTO);
  ASSERT(strstr(err, path) != NULL && strstr(err, "checksum") != NULL);
  cm_mqtt_store_free(&back);
  /* A directory is not a file. */
  ASSERT_EQ(cm_mqtt_store_init(&back, 2, 100), 0);
  ASSERT(cm_mqtt_persist_read(&back, dir, err, sizeof(err)) < 0);
  cm_mqtt_store_free(&back);
  cm_mqtt_store_free(&st);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  RUN(test_roundtrip);
  RUN(test_damage);
  RUN(test_file);
  return cm_test_done();
}
