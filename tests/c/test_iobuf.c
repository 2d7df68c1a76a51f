/* test_iobuf.c: unit tests of the byte buffer (cm/iobuf.h). */
#include <stdint.h>

#include "internal.h"
#include "test.h"

/* A block size that is a whole number of allocation granules. */
#define BLOCK (16 * CM_IO_GRANULE)

/* Let the out-of-memory test see calloc return NULL under ASan instead of an
 * abort; harmless in builds without sanitizers.  Default visibility because
 * the build hides symbols and the ASan runtime must find this hook. */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void fill(char *p, size_t n, size_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = (char) ((i + seed) * 131u);
}

static bool is_zero(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != 0) return false;
  return true;
}

static void test_empty(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT(io.buf == NULL && io.size == 0 && io.head == 0 && io.len == 0);
  ASSERT_EQ(cm_iobuf_add(&io, NULL, 0), 0); /* zero-length add: no alloc */
  ASSERT(io.buf == NULL && io.size == 0);
  ASSERT_EQ(cm_iobuf_reserve(&io, 0), 0);
  ASSERT(io.buf == NULL);
  cm_iobuf_consume(&io, 0);
  cm_iobuf_consume(&io, 100);
  cm_iobuf_del(&io, 0, 10);
  cm_iobuf_commit(&io, 0);
  ASSERT(io.len == 0 && io.head == 0);
  cm_iobuf_free(&io);
  cm_iobuf_free(&io); /* idempotent */
  ASSERT(io.buf == NULL && io.size == 0);
}

static void test_add_consume(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_add(&io, "hello", 5), 0);
  ASSERT_EQ(io.size, (size_t) CM_IO_GRANULE); /* sized by the data */
  ASSERT(io.len == 5 && memcmp(cm_iobuf_data(&io), "hello", 5) == 0);
  ASSERT_EQ(cm_iobuf_add(&io, " world", 6), 0);
  char *block = io.buf;
  cm_iobuf_consume(&io, 6); /* O(1): the block and bytes do not move */
  ASSERT(io.buf == block && io.head == 6 && io.len == 5);
  ASSERT(memcmp(cm_iobuf_data(&io), "world", 5) == 0);
  ASSERT_EQ(cm_iobuf_room(&io), (size_t) CM_IO_GRANULE - 11);
  ASSERT_EQ(cm_iobuf_add(&io, NULL, 0), 0); /* zero-length add is a no-op */
  ASSERT(io.len == 5 && io.head == 6);
  cm_iobuf_consume(&io, 0);
  ASSERT(io.len == 5 && io.head == 6);
  cm_iobuf_consume(&io, 5); /* emptied: head resets */
  ASSERT(io.len == 0 && io.head == 0 && io.buf == block);
  ASSERT_EQ(cm_iobuf_add(&io, "ab", 2), 0);
  cm_iobuf_consume(&io, 1000); /* more than len: all */
  ASSERT(io.len == 0 && io.head == 0);
  cm_iobuf_free(&io);
  ASSERT(io.buf == NULL && io.size == 0 && io.len == 0);
  ASSERT_EQ(cm_iobuf_add(&io, "x", 1), 0); /* usable after free */
  ASSERT(io.len == 1 && cm_iobuf_data(&io)[0] == 'x');
  cm_iobuf_free(&io);
}

/* Consuming from the front and appending must reuse the front space rather
 * than grow, and the compaction must not leave old bytes in the room. */
static void test_reuse_front(void) {
  static char src[BLOCK];
  fill(src, sizeof(src), 1);
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_add(&io, src, sizeof(src)), 0);
  ASSERT_EQ(io.size, (size_t) BLOCK);
  ASSERT_EQ(cm_iobuf_room(&io), 0u);
  char *block = io.buf;
  cm_iobuf_consume(&io, 10000);
  ASSERT_EQ(cm_iobuf_add(&io, src, 5000), 0);
  ASSERT(io.buf == block && io.size == (size_t) BLOCK && io.head == 0);
  ASSERT_EQ(io.len, sizeof(src) - 10000 + 5000);
  ASSERT(memcmp(cm_iobuf_data(&io), src + 10000, sizeof(src) - 10000) == 0);
  ASSERT(memcmp(cm_iobuf_data(&io) + sizeof(src) - 10000, src, 5000) == 0);
  /* The slot past the live bytes held consumed data before compaction. */
  ASSERT(is_zero(io.buf + io.len, io.size - io.len));
  cm_iobuf_free(&io);
}

/* When compaction alone is not enough the buffer grows, and the live bytes
 * land at the front of the new block. */
static void test_grow_with_head(void) {
  static char src[BLOCK];
  fill(src, sizeof(src), 2);
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_add(&io, src, sizeof(src)), 0);
  cm_iobuf_consume(&io, 100);
  ASSERT_EQ(cm_iobuf_add(&io, src, 200), 0);
  ASSERT(io.head == 0 && io.size == 2u * BLOCK && io.len == sizeof(src) + 100);
  ASSERT(memcmp(cm_iobuf_data(&io), src + 100, sizeof(src) - 100) == 0);
  ASSERT(memcmp(cm_iobuf_data(&io) + sizeof(src) - 100, src, 200) == 0);
  ASSERT(is_zero(io.buf + io.len, io.size - io.len)); /* calloc'd room */
  cm_iobuf_free(&io);
}

static void test_cap(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 100);
  char src[101];
  fill(src, sizeof(src), 3);
  ASSERT_EQ(cm_iobuf_add(&io, src, 101), -CM_EFULL); /* nothing appended */
  ASSERT(io.buf == NULL && io.len == 0);
  ASSERT_EQ(cm_iobuf_add(&io, src, 60), 0);
  ASSERT_EQ(io.size, 100u); /* step rounding is clamped to the cap */
  ASSERT_EQ(cm_iobuf_add(&io, src + 60, 40), 0);
  ASSERT_EQ(io.len, 100u);
  char *block = io.buf;
  ASSERT_EQ(cm_iobuf_add(&io, "z", 1), -CM_EFULL);
  ASSERT_EQ(cm_iobuf_reserve(&io, 1), -CM_EFULL);
  ASSERT(io.buf == block && io.len == 100 && io.size == 100 && io.head == 0);
  ASSERT(memcmp(cm_iobuf_data(&io), src, 100) == 0);
  /* Consumed front space makes room again under the cap (compaction). */
  cm_iobuf_consume(&io, 30);
  ASSERT_EQ(cm_iobuf_add(&io, src, 31), -CM_EFULL);
  ASSERT(io.head == 30 && io.len == 70);
  ASSERT_EQ(cm_iobuf_add(&io, src, 30), 0);
  ASSERT(io.buf == block && io.head == 0 && io.len == 100);
  ASSERT(memcmp(cm_iobuf_data(&io), src + 30, 70) == 0);
  ASSERT(memcmp(cm_iobuf_data(&io) + 70, src, 30) == 0);
  cm_iobuf_free(&io);
  ASSERT_EQ(io.cap, 100u); /* free keeps the limit */

  /* A cap that is not a multiple of the step. */
  cm_iobuf_init(&io, BLOCK + 1000);
  static char big[BLOCK + 1000];
  fill(big, sizeof(big), 4);
  ASSERT_EQ(cm_iobuf_add(&io, big, BLOCK + 1), 0);
  ASSERT_EQ(io.size, (size_t) BLOCK + 1000);
  ASSERT_EQ(cm_iobuf_add(&io, big, 999), 0);
  ASSERT_EQ(cm_iobuf_add(&io, big, 1), -CM_EFULL);
  ASSERT_EQ(io.len, sizeof(big));
  cm_iobuf_free(&io);
}

static void test_large_growth(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  enum { CHUNK = 1000, TOTAL = 4 << 20 };
  static char chunk[CHUNK];
  size_t added = 0, last_size = 0;
  int regrows = 0;
  while (added < TOTAL) {
    fill(chunk, CHUNK, added);
    ASSERT_EQ(cm_iobuf_add(&io, chunk, CHUNK), 0);
    added += CHUNK;
    ASSERT(io.size % CM_IO_GRANULE == 0 && io.size >= io.len);
    ASSERT(io.size <= 2 * io.len + BLOCK); /* never more than double */
    if (io.size != last_size) regrows++;
    last_size = io.size;
  }
  ASSERT(regrows <= 14); /* geometric: 1 KiB doubling to 4 MiB, not thousands of steps */
  ASSERT_EQ(io.len, added);
  for (size_t ofs = 0; ofs < added; ofs += CHUNK) {
    fill(chunk, CHUNK, ofs);
    ASSERT(memcmp(cm_iobuf_data(&io) + ofs, chunk, CHUNK) == 0);
  }
  /* One big append in a single step rounds up once. */
  struct cm_iobuf io2;
  cm_iobuf_init(&io2, 0);
  ASSERT_EQ(cm_iobuf_add(&io2, cm_iobuf_data(&io), 3 * BLOCK + 1), 0);
  ASSERT_EQ(io2.size, (3u * BLOCK + CM_IO_GRANULE) / CM_IO_GRANULE * CM_IO_GRANULE);
  cm_iobuf_free(&io2);
  cm_iobuf_free(&io);
}

static void test_reserve_commit(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_reserve(&io, 10), 0);
  ASSERT(io.len == 0 && cm_iobuf_room(&io) >= 10);
  memcpy(cm_iobuf_data(&io) + io.len, "abc", 3);
  cm_iobuf_commit(&io, 3);
  ASSERT(io.len == 3 && memcmp(cm_iobuf_data(&io), "abc", 3) == 0);
  size_t room = cm_iobuf_room(&io);
  cm_iobuf_commit(&io, room + 50); /* over-commit is clamped to the room */
  ASSERT_EQ(io.len, io.size);
  ASSERT_EQ(cm_iobuf_room(&io), 0u);
  cm_iobuf_free(&io);

  /* Reserve with a head offset compacts without reallocating. */
  cm_iobuf_init(&io, 0);
  static char src[BLOCK];
  fill(src, sizeof(src), 5);
  ASSERT_EQ(cm_iobuf_add(&io, src, sizeof(src)), 0);
  cm_iobuf_consume(&io, 4096);
  char *block = io.buf;
  ASSERT_EQ(cm_iobuf_reserve(&io, 4096), 0);
  ASSERT(io.buf == block && io.head == 0 && cm_iobuf_room(&io) == 4096);
  ASSERT(memcmp(cm_iobuf_data(&io), src + 4096, sizeof(src) - 4096) == 0);
  cm_iobuf_free(&io);
}

static void test_del(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_add(&io, "0123456789", 10), 0);
  cm_iobuf_consume(&io, 1); /* del offsets are relative to live data */
  cm_iobuf_del(&io, 3, 2);  /* "123456789" -> drop "45" */
  ASSERT(io.len == 7 && memcmp(cm_iobuf_data(&io), "1236789", 7) == 0);
  ASSERT(io.buf[io.head + 7] == 0 && io.buf[io.head + 8] == 0); /* tail wiped */
  cm_iobuf_del(&io, 0, 1);
  ASSERT(io.len == 6 && memcmp(cm_iobuf_data(&io), "236789", 6) == 0);
  cm_iobuf_del(&io, 5, 1); /* last byte */
  ASSERT(io.len == 5 && memcmp(cm_iobuf_data(&io), "23678", 5) == 0);
  cm_iobuf_del(&io, 3, 100); /* runs past the end: clamped */
  ASSERT(io.len == 3 && memcmp(cm_iobuf_data(&io), "236", 3) == 0);
  cm_iobuf_del(&io, 3, 1); /* at len: nothing */
  cm_iobuf_del(&io, 99, 1);
  cm_iobuf_del(&io, 1, 0);
  ASSERT(io.len == 3 && memcmp(cm_iobuf_data(&io), "236", 3) == 0);
  ASSERT_EQ(io.head, 1u);
  cm_iobuf_del(&io, 0, 3); /* everything: head resets */
  ASSERT(io.len == 0 && io.head == 0);
  cm_iobuf_del(&io, 0, SIZE_MAX);
  cm_iobuf_del(&io, SIZE_MAX, SIZE_MAX);
  ASSERT(io.len == 0);
  ASSERT_EQ(cm_iobuf_add(&io, "ok", 2), 0);
  ASSERT(memcmp(cm_iobuf_data(&io), "ok", 2) == 0);
  cm_iobuf_free(&io);
}

/* Failed allocation and arithmetic overflow leave the buffer untouched. */
static void test_errors(void) {
  struct cm_iobuf io;
  cm_iobuf_init(&io, 0);
  ASSERT_EQ(cm_iobuf_add(&io, "abc", 3), 0);
  char *block = io.buf;
  ASSERT_EQ(cm_iobuf_reserve(&io, SIZE_MAX / 4), -CM_ENOMEM);
  ASSERT(io.buf == block && io.len == 3 && io.size == (size_t) CM_IO_GRANULE);
  ASSERT_EQ(cm_iobuf_reserve(&io, SIZE_MAX), -CM_EFULL);      /* len + n overflows */
  ASSERT_EQ(cm_iobuf_reserve(&io, SIZE_MAX - 3), -CM_ENOMEM); /* rounding overflows */
  ASSERT(io.buf == block && io.len == 3 && io.head == 0);
  ASSERT(memcmp(cm_iobuf_data(&io), "abc", 3) == 0);
  cm_iobuf_free(&io);
}

int main(void) {
  RUN(test_empty);
  RUN(test_add_consume);
  RUN(test_reuse_front);
  RUN(test_grow_with_head);
  RUN(test_cap);
  RUN(test_large_growth);
  RUN(test_reserve_commit);
  RUN(test_del);
  RUN(test_errors);
  return cm_test_done();
}
