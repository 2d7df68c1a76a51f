/* test_idmap.c: unit tests of the id -> connection hash table (idmap.c). */
#include <stdint.h>

#include "internal.h"
#include "test.h"

/* The table never dereferences the values, so tests use fake pointers. */
static struct cm_conn *fake(uint64_t n) { return (struct cm_conn *) (uintptr_t) (16 * (n + 1)); }

/* Copy of the table's mixer (white-box): lets the collision test pick ids
 * that share a home slot in the initial 16-slot table. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* Deterministic xorshift64 so failures reproduce. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void test_basic(void) {
  struct cm_idmap *m = cm__idmap_new();
  ASSERT(m != NULL);
  ASSERT(cm__idmap_get(m, 1) == NULL);
  cm__idmap_del(m, 1); /* absent: no-op */
  ASSERT(cm__idmap_put(m, 1, fake(1)));
  ASSERT(cm__idmap_put(m, 0, fake(0))); /* 0 is an ordinary key */
  ASSERT(cm__idmap_put(m, UINT64_MAX, fake(7)));
  ASSERT(cm__idmap_get(m, 1) == fake(1));
  ASSERT(cm__idmap_get(m, 0) == fake(0));
  ASSERT(cm__idmap_get(m, UINT64_MAX) == fake(7));
  ASSERT(cm__idmap_get(m, 2) == NULL);
  ASSERT(cm__idmap_put(m, 1, fake(9))); /* replace */
  ASSERT(cm__idmap_get(m, 1) == fake(9));
  ASSERT(!cm__idmap_put(m, 5, NULL)); /* NULL value is refused */
  ASSERT(cm__idmap_get(m, 5) == NULL);
  cm__idmap_del(m, 1);
  ASSERT(cm__idmap_get(m, 1) == NULL);
  cm__idmap_del(m, 1);
  ASSERT(cm__idmap_get(m, 0) == fake(0));
  ASSERT(cm__idmap_get(m, UINT64_MAX) == fake(7));
  cm__idmap_free(m);
  cm__idmap_free(NULL);
  ASSERT(cm__idmap_get(NULL, 1) == NULL);
}

/* Pick `n` ids whose home slot in a 16-slot table is `slot`. */
static void ids_at(unsigned slot, uint64_t *out, int n, uint64_t start) {
  for (uint64_t id = start; n > 0; id++) {
    if ((mix(id) & 15) == slot) {
      *out++ = id;
      n--;
    }
  }
}

/* Clustered ids, a run that wraps from slot 15 to slot 0, and deletions
 * from the middle of runs: backward shift must keep every survivor
 * reachable and must not pull an entry before its home slot. */
static void test_collisions(void) {
  uint64_t a[4], b[3];
  ids_at(15, a, 4, 1);   /* run 15, 0, 1, 2 */
  ids_at(0, b, 3, 1000); /* home 0: displaced behind the wrapped run */
  for (int del = 0; del < 7; del++) {
    struct cm_idmap *m = cm__idmap_new();
    ASSERT(m != NULL);
    for (int i = 0; i < 4; i++) ASSERT(cm__idmap_put(m, a[i], fake(a[i])));
    for (int i = 0; i < 3; i++) ASSERT(cm__idmap_put(m, b[i], fake(b[i])));
    uint64_t victim = del < 4 ? a[del] : b[del - 4];
    cm__idmap_del(m, victim);
    ASSERT(cm__idmap_get(m, victim) == NULL);
    for (int i = 0; i < 4; i++) ASSERT(cm__idmap_get(m, a[i]) == (a[i] == victim ? NULL : fake(a[i])));
    for (int i = 0; i < 3; i++) ASSERT(cm__idmap_get(m, b[i]) == (b[i] == victim ? NULL : fake(b[i])));
    /* Delete the rest in a different order; the table ends empty. */
    for (int i = 2; i >= 0; i--) cm__idmap_del(m, b[i]);
    for (int i = 0; i < 4; i++) cm__idmap_del(m, a[i]);
    for (int i = 0; i < 4; i++) ASSERT(cm__idmap_get(m, a[i]) == NULL);
    ASSERT(cm__idmap_put(m, a[0], fake(1)));
    ASSERT(cm__idmap_get(m, a[0]) == fake(1));
    cm__idmap_free(m);
  }
}

/* Sequential ids, as the manager hands them out, through several growths. */
static void test_sequential(void) {
  enum { N = 100000 };
  struct cm_idmap *m = cm__idmap_new();
  ASSERT(m != NULL);
  for (uint64_t id = 1; id <= N; id++) ASSERT(cm__idmap_put(m, id, fake(id)));
  for (uint64_t id = 1; id <= N; id++) ASSERT(cm__idmap_get(m, id) == fake(id));
  ASSERT(cm__idmap_get(m, N + 1) == NULL);
  for (uint64_t id = 1; id <= N; id += 2) cm__idmap_del(m, id);
  for (uint64_t id = 1; id <= N; id++) ASSERT(cm__idmap_get(m, id) == (id % 2 ? NULL : fake(id)));
  /* Keys that differ only in high bits (a weak hash would collide). */
  for (uint64_t i = 1; i <= 1000; i++) ASSERT(cm__idmap_put(m, i << 40, fake(i)));
  for (uint64_t i = 1; i <= 1000; i++) ASSERT(cm__idmap_get(m, i << 40) == fake(i));
  cm__idmap_free(m);
}

/* 100k random inserts, replaces and deletes checked against a plain array,
 * including lookups of ids that were deleted. */
static void test_random_model(void) {
  enum { SPACE = 20000, OPS = 100000 };
  static struct cm_conn *model[SPACE];
  memset(model, 0, sizeof(model));
  struct cm_idmap *m = cm__idmap_new();
  ASSERT(m != NULL);
  for (int op = 0; op < OPS; op++) {
    uint64_t r = rnd(), id = (r >> 8) % SPACE;
    uint64_t key = id * 0x10001; /* spread keys over the 64-bit range */
    if (r % 3 != 0) {
      struct cm_conn *v = fake(r & 0xffff);
      ASSERT(cm__idmap_put(m, key, v));
      model[id] = v;
    } else {
      cm__idmap_del(m, key);
      model[id] = NULL;
    }
    uint64_t probe = rnd() % SPACE;
    ASSERT(cm__idmap_get(m, probe * 0x10001) == model[probe]);
    ASSERT(cm__idmap_get(m, key) == model[id]);
  }
  for (uint64_t id = 0; id < SPACE; id++) ASSERT(cm__idmap_get(m, id * 0x10001) == model[id]);
  /* Empty it completely, then reuse. */
  for (uint64_t id = 0; id < SPACE; id++) cm__idmap_del(m, id * 0x10001);
  for (uint64_t id = 0; id < SPACE; id++) ASSERT(cm__idmap_get(m, id * 0x10001) == NULL);
  ASSERT(cm__idmap_put(m, 42, fake(42)));
  ASSERT(cm__idmap_get(m, 42) == fake(42));
  cm__idmap_free(m);
}

/* Insert-then-delete churn over a sliding window, the manager's real pattern
 * (connections come and go, ids grow forever). */
static void test_churn(void) {
  enum { WINDOW = 500, TOTAL = 100000 };
  struct cm_idmap *m = cm__idmap_new();
  ASSERT(m != NULL);
  for (uint64_t id = 1; id <= TOTAL; id++) {
    ASSERT(cm__idmap_put(m, id, fake(id)));
    if (id > WINDOW) {
      cm__idmap_del(m, id - WINDOW);
      ASSERT(cm__idmap_get(m, id - WINDOW) == NULL);
      ASSERT(cm__idmap_get(m, id - WINDOW + 1) == fake(id - WINDOW + 1));
    }
  }
  for (uint64_t id = TOTAL - WINDOW + 1; id <= TOTAL; id++) ASSERT(cm__idmap_get(m, id) == fake(id));
  cm__idmap_free(m);
}

int main(void) {
  RUN(test_basic);
  RUN(test_collisions);
  RUN(test_sequential);
  RUN(test_random_model);
  RUN(test_churn);
  return cm_test_done();
}
