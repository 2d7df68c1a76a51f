/* idmap.c: open-addressing hash table from connection id to connection. */
#include <stdlib.h>

#include "internal.h"

/* A slot is empty when `c` is NULL, so every id value (0 included) is a
 * valid key and no separate occupancy bitmap is needed. */
struct slot {
  uint64_t id;
  struct cm_conn *c;
};

struct cm_idmap {
  struct slot *slots; /* `cap` slots */
  size_t cap;         /* power of two, so `& (cap - 1)` replaces modulo */
  size_t count;       /* occupied slots; kept <= cap * 3 / 4 */
};

#define MIN_CAP 16

/* Ids are sequential, so a plain mask would put neighbours in neighbouring
 * slots and build long runs; a full-avalanche 64-bit finaliser (the
 * xorshift-multiply construction of splitmix64) spreads them. */
static uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static size_t home(const struct cm_idmap *m, uint64_t id) { return (size_t) mix(id) & (m->cap - 1); }

struct cm_idmap *cm__idmap_new(void) {
  struct cm_idmap *m = calloc(1, sizeof(*m));
  if (m == NULL) return NULL;
  m->slots = calloc(MIN_CAP, sizeof(*m->slots));
  if (m->slots == NULL) {
    free(m);
    return NULL;
  }
  m->cap = MIN_CAP;
  return m;
}

void cm__idmap_free(struct cm_idmap *m) {
  if (m == NULL) return;
  free(m->slots);
  free(m);
}

/* Index of `id`'s slot, or of the empty slot that ends its probe run. */
static size_t find(const struct cm_idmap *m, uint64_t id) {
  size_t mask = m->cap - 1, i = home(m, id);
  while (m->slots[i].c != NULL && m->slots[i].id != id) i = (i + 1) & mask;
  return i;
}

/* Double the table and re-insert every entry.  On allocation failure the
 * table is left as it was. */
static bool grow(struct cm_idmap *m) {
  size_t old_cap = m->cap;
  if (old_cap > SIZE_MAX / 2 / sizeof(struct slot)) return false;
  struct slot *old = m->slots, *fresh = calloc(old_cap * 2, sizeof(*fresh));
  if (fresh == NULL) return false;
  m->slots = fresh;
  m->cap = old_cap * 2;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].c != NULL) m->slots[find(m, old[i].id)] = old[i];
  }
  free(old);
  return true;
}

bool cm__idmap_put(struct cm_idmap *m, uint64_t id, struct cm_conn *c) {
  if (c == NULL) return false; /* NULL marks empty slots */
  size_t i = find(m, id);
  if (m->slots[i].c != NULL) { /* existing id: replace */
    m->slots[i].c = c;
    return true;
  }
  /* Keep the load at or under 75%: with the mixer above, a miss probes
   * about 8 slots, 4 to a cache line, and the table costs 21-43 bytes per
   * connection instead of 32-64 at 50%. */
  if ((m->count + 1) * 4 > m->cap * 3) {
    if (!grow(m)) return false;
    i = find(m, id);
  }
  m->slots[i].id = id;
  m->slots[i].c = c;
  m->count++;
  return true;
}

struct cm_conn *cm__idmap_get(const struct cm_idmap *m, uint64_t id) {
  if (m == NULL) return NULL;
  return m->slots[find(m, id)].c;
}

/* Backward-shift deletion: after emptying slot `hole`, walk the run that
 * follows and pull back every entry whose home is not inside (hole, j], so
 * lookups never stop early at the hole and no tombstones accumulate. */
void cm__idmap_del(struct cm_idmap *m, uint64_t id) {
  if (m == NULL) return;
  size_t mask = m->cap - 1, hole = find(m, id);
  if (m->slots[hole].c == NULL) return;
  for (size_t j = (hole + 1) & mask; m->slots[j].c != NULL; j = (j + 1) & mask) {
    size_t k = home(m, m->slots[j].id);
    /* Movable if its home is at or before the hole along the probe path. */
    if (((j - k) & mask) >= ((j - hole) & mask)) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole].id = 0;
  m->slots[hole].c = NULL;
  m->count--;
}
