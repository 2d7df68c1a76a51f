/* mqtt_topic.c: topic names and filters, and the topic tree that holds the
 * broker's subscriptions and retained messages (cm/mqtt_broker.h).
 *
 * One node per topic level; a node's children are an open-addressing hash
 * of their level text, so a PUBLISH to a/b/c looks up "a", "b", "c" (and
 * the "+" and "#" children on the way) instead of testing every filter.
 * '+' and '#' are ordinary children here: a topic name never contains them,
 * so retained topics never collide with wildcard nodes.  The walks are
 * iterative (an explicit stack the tree keeps), because a topic may have
 * 32768 levels and the C stack is no place for that. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct node {
  struct node *parent;                /* NULL for the root */
  struct node **kids;                 /* kcap slots (power of two) or NULL */
  uint32_t nkids, kcap;               /* children / slots */
  struct cm_mqtt_subscription **subs; /* subscriptions ending here */
  uint32_t nsubs, scap;               /* used / allocated */
  struct cm_mqtt_stored *retained;    /* retained message of this topic */
  uint32_t hash;                      /* of name */
  uint32_t len;                       /* bytes of name */
  char name[];                        /* the level (no NUL) */
};

/* A pending step of a walk: `node`, the text still to match from `pos`. */
struct frame {
  struct node *node;
  size_t pos;
};

/* In a retained walk: this frame takes the node and its whole subtree. */
#define WHOLE SIZE_MAX

struct cm_mqtt_tree {
  struct node *root;
  uint64_t epoch;            /* match number: marks subscribers seen */
  struct cm_mqtt_match *res; /* last match result */
  size_t rcap;               /* allocated entries of res */
  struct frame *stack;       /* walk stack, reused */
  size_t stack_cap;          /* allocated frames */
  size_t nsubs, nretained;   /* counters */
};

/* ---- names and filters (MQTT 3.1.1 section 4.7) ----------------------------- */

bool cm_mqtt_topic_valid(struct cm_str topic) {
  if (topic.len == 0 || topic.len > 65535) return false;
  for (size_t i = 0; i < topic.len; i++) {
    char ch = topic.buf[i];
    if (ch == '+' || ch == '#' || ch == '\0') return false;
  }
  return true;
}

bool cm_mqtt_filter_valid(struct cm_str f) {
  if (f.len == 0 || f.len > 65535) return false;
  for (size_t i = 0; i < f.len; i++) {
    char ch = f.buf[i];
    bool starts = i == 0 || f.buf[i - 1] == '/';
    bool ends = i + 1 == f.len || f.buf[i + 1] == '/';
    if (ch == '\0') return false;
    if (ch == '+' && !(starts && ends)) return false;           /* 4.7.1.3: a whole level */
    if (ch == '#' && !(starts && i + 1 == f.len)) return false; /* 4.7.1.2: the whole last level */
  }
  return true;
}

/* ---- nodes and their children ----------------------------------------------- */

/* FNV-1a: levels are short, and this is one multiply per byte. */
static uint32_t hash_level(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t) s[i]) * 16777619u;
  return h;
}

/* The end of the level starting at `pos` of `s`: the next '/' or s.len. */
static size_t level_end(struct cm_str s, size_t pos) {
  const char *slash = pos < s.len ? memchr(s.buf + pos, '/', s.len - pos) : NULL;
  return slash != NULL ? (size_t) (slash - s.buf) : s.len;
}

/* The slot of child `name` of `n`: where it is, or the empty slot ending
 * its probe run.  n->kcap must be > 0. */
static struct node **kid_slot(const struct node *n, const char *name, size_t len, uint32_t h) {
  uint32_t mask = n->kcap - 1, i = h & mask;
  for (;;) {
    struct node *k = n->kids[i];
    if (k == NULL || (k->hash == h && k->len == len && memcmp(k->name, name, len) == 0)) return &n->kids[i];
    i = (i + 1) & mask;
  }
}

static struct node *kid_find(const struct node *n, const char *name, size_t len) {
  if (n->nkids == 0) return NULL;
  return *kid_slot(n, name, len, hash_level(name, len));
}

/* Rehash into twice the slots (4 at first); load stays at most one half. */
static bool kids_grow(struct node *n) {
  uint32_t cap = n->kcap == 0 ? 4 : n->kcap * 2;
  struct node **old = n->kids, **kids = calloc(cap, sizeof(*kids));
  if (kids == NULL) return false;
  uint32_t ocap = n->kcap;
  n->kids = kids;
  n->kcap = cap;
  for (uint32_t i = 0; i < ocap; i++) {
    if (old[i] != NULL) *kid_slot(n, old[i]->name, old[i]->len, old[i]->hash) = old[i];
  }
  free(old);
  return true;
}

/* Child `name` of `n`, made if missing.  NULL: no memory. */
static struct node *kid_get(struct node *n, const char *name, size_t len) {
  uint32_t h = hash_level(name, len);
  if (n->nkids > 0) {
    struct node *k = *kid_slot(n, name, len, h);
    if (k != NULL) return k;
  }
  if ((n->nkids + 1) * 2 > n->kcap && !kids_grow(n)) return NULL;
  struct node *k = calloc(1, sizeof(*k) + len);
  if (k == NULL) return NULL;
  memcpy(k->name, name, len);
  k->len = (uint32_t) len;
  k->hash = h;
  k->parent = n;
  *kid_slot(n, name, len, h) = k;
  n->nkids++;
  return k;
}

/* Take `k` out of its parent's table: linear probing's backward-shift
 * delete, so no tombstones slow later lookups. */
static void kid_remove(struct node *n, struct node *k) {
  uint32_t mask = n->kcap - 1;
  uint32_t i = (uint32_t) (kid_slot(n, k->name, k->len, k->hash) - n->kids);
  n->kids[i] = NULL;
  for (uint32_t j = (i + 1) & mask; n->kids[j] != NULL; j = (j + 1) & mask) {
    uint32_t home = n->kids[j]->hash & mask;
    /* Stay if home lies cyclically in (i, j]; else the hole breaks its run. */
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    n->kids[i] = n->kids[j];
    n->kids[j] = NULL;
    i = j;
  }
  if (--n->nkids == 0) {
    free(n->kids);
    n->kids = NULL;
    n->kcap = 0;
  }
}

static bool node_empty(const struct node *n) { return n->nkids == 0 && n->nsubs == 0 && n->retained == NULL; }

/* Free `n` and its empty ancestors, up to (not including) the root. */
static void prune(struct node *n) {
  while (n->parent != NULL && node_empty(n)) {
    struct node *p = n->parent;
    kid_remove(p, n);
    free(n->subs);
    free(n);
    n = p;
  }
}

/* The node of `s` (a filter or topic), made with its path if `make`.  NULL:
 * absent, or no memory (the partial path is pruned). */
static struct node *path(struct cm_mqtt_tree *t, struct cm_str s, bool make) {
  struct node *n = t->root;
  for (size_t pos = 0; pos <= s.len;) {
    size_t end = level_end(s, pos);
    struct node *k = make ? kid_get(n, s.buf + pos, end - pos) : kid_find(n, s.buf + pos, end - pos);
    if (k == NULL) {
      if (make) prune(n);
      return NULL;
    }
    n = k;
    pos = end + 1;
  }
  return n;
}

/* ---- the tree ------------------------------------------------------------------ */

struct cm_mqtt_tree *cm_mqtt_tree_new(void) {
  struct cm_mqtt_tree *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->root = calloc(1, sizeof(*t->root));
  if (t->root == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

/* Any child of `n` (which has some): emptied slots are skipped from the
 * front, so freeing a wide node costs its slots once, not per child. */
static struct node *take_kid(struct node *n, uint32_t *from) {
  while (n->kids[*from] == NULL) (*from)++;
  struct node *k = n->kids[*from];
  n->kids[*from] = NULL;
  n->nkids--;
  return k;
}

void cm_mqtt_tree_free(struct cm_mqtt_tree *t) {
  if (t == NULL) return;
  /* Depth first without recursion: descend while a node has children,
   * free it on the way back up.  A node's scan position is kept in its
   * `scap` (its subs are no longer needed), so each slot is read once. */
  struct node *n = t->root;
  free(n->subs);
  n->scap = 0;
  while (n != NULL) {
    if (n->nkids > 0) {
      struct node *k = take_kid(n, &n->scap);
      free(k->subs);
      k->scap = 0;
      n = k;
      continue;
    }
    struct node *p = n->parent;
    cm_mqtt_stored_release(n->retained);
    free(n->kids);
    free(n);
    n = p;
  }
  free(t->res);
  free(t->stack);
  free(t);
}

int cm_mqtt_tree_add(struct cm_mqtt_tree *t, struct cm_str filter, struct cm_mqtt_subscription *s) {
  struct node *n = path(t, filter, true);
  if (n == NULL) return -CM_ENOMEM;
  if (n->nsubs == n->scap) {
    uint32_t cap = n->scap == 0 ? 2 : n->scap * 2;
    struct cm_mqtt_subscription **subs = realloc(n->subs, cap * sizeof(*subs));
    if (subs == NULL) {
      prune(n);
      return -CM_ENOMEM;
    }
    n->subs = subs;
    n->scap = cap;
  }
  s->node = n;
  s->idx = n->nsubs;
  n->subs[n->nsubs++] = s;
  t->nsubs++;
  return 0;
}

void cm_mqtt_tree_del(struct cm_mqtt_tree *t, struct cm_mqtt_subscription *s) {
  struct node *n = s->node;
  if (n == NULL) return;
  struct cm_mqtt_subscription *last = n->subs[--n->nsubs];
  n->subs[s->idx] = last; /* swap-remove; `last` learns its new index */
  last->idx = s->idx;
  s->node = NULL;
  s->idx = 0;
  t->nsubs--;
  if (n->nsubs == 0) {
    free(n->subs);
    n->subs = NULL;
    n->scap = 0;
  }
  prune(n);
}

size_t cm_mqtt_tree_nsubs(const struct cm_mqtt_tree *t) { return t->nsubs; }

/* ---- walks ---------------------------------------------------------------------- */

static bool push(struct cm_mqtt_tree *t, size_t *top, struct node *n, size_t pos) {
  if (*top == t->stack_cap) {
    size_t cap = t->stack_cap == 0 ? 32 : t->stack_cap * 2;
    struct frame *st = realloc(t->stack, cap * sizeof(*st));
    if (st == NULL) return false;
    t->stack = st;
    t->stack_cap = cap;
  }
  t->stack[(*top)++] = (struct frame){n, pos};
  return true;
}

/* Merge the subscriptions of `n` into the result (each owner once). */
static bool collect(struct cm_mqtt_tree *t, size_t *count, const struct node *n,
                    const struct cm_mqtt_subscriber *publisher) {
  for (uint32_t i = 0; i < n->nsubs; i++) {
    const struct cm_mqtt_subscription *s = n->subs[i];
    if ((s->opts & CM_MQTT_SUB_NO_LOCAL) && s->owner == publisher) continue;
    uint8_t qos = s->opts & CM_MQTT_SUB_QOS;
    bool rap = (s->opts & CM_MQTT_SUB_RAP) != 0;
    struct cm_mqtt_subscriber *o = s->owner;
    if (o->mark == t->epoch) { /* overlapping: one delivery, the highest QoS */
      struct cm_mqtt_match *m = &t->res[o->slot];
      if (qos > m->qos) m->qos = qos;
      m->rap = m->rap || rap;
      continue;
    }
    if (*count == t->rcap) {
      size_t cap = t->rcap == 0 ? 16 : t->rcap * 2;
      struct cm_mqtt_match *res = realloc(t->res, cap * sizeof(*res));
      if (res == NULL) return false;
      t->res = res;
      t->rcap = cap;
    }
    o->mark = t->epoch;
    o->slot = (uint32_t) *count;
    t->res[(*count)++] = (struct cm_mqtt_match){o, qos, rap};
  }
  return true;
}

static bool collect_hash(struct cm_mqtt_tree *t, size_t *count, const struct node *n,
                         const struct cm_mqtt_subscriber *publisher) {
  const struct node *h = kid_find(n, "#", 1);
  return h == NULL || collect(t, count, h, publisher);
}

long cm_mqtt_tree_match(struct cm_mqtt_tree *t, struct cm_str topic,
                        const struct cm_mqtt_subscriber *publisher, const struct cm_mqtt_match **out) {
  size_t count = 0, top = 0;
  bool dollar = topic.len > 0 && topic.buf[0] == '$';
  t->epoch++;
  *out = t->res;
  if (!push(t, &top, t->root, 0)) return -CM_ENOMEM;
  while (top > 0) {
    struct frame f = t->stack[--top];
    bool ok = true;
    if (f.pos > topic.len) { /* every level matched: this node's filters, and "x/#" for "x" (4.7.1.2) */
      ok = collect(t, &count, f.node, publisher) && collect_hash(t, &count, f.node, publisher);
    } else {
      bool wild = !(dollar && f.pos == 0); /* 4.7.2: no wildcard first level for $ topics */
      size_t end = level_end(topic, f.pos);
      struct node *k = kid_find(f.node, topic.buf + f.pos, end - f.pos);
      struct node *plus = wild ? kid_find(f.node, "+", 1) : NULL;
      if (wild) ok = collect_hash(t, &count, f.node, publisher);
      if (ok && k != NULL) ok = push(t, &top, k, end + 1);
      if (ok && plus != NULL) ok = push(t, &top, plus, end + 1);
    }
    if (!ok) return -CM_ENOMEM;
  }
  *out = t->res;
  return (long) count;
}

/* ---- retained messages ---------------------------------------------------------- */

int cm_mqtt_tree_retain(struct cm_mqtt_tree *t, struct cm_str topic, struct cm_mqtt_stored *m) {
  bool del = m == NULL || m->data_len == 0;
  struct node *n = path(t, topic, !del);
  if (n == NULL) return del ? 0 : -CM_ENOMEM;
  if (n->retained != NULL) t->nretained--;
  cm_mqtt_stored_release(n->retained);
  n->retained = del ? NULL : cm_mqtt_stored_hold(m);
  if (del) prune(n);
  else
    t->nretained++;
  return 0;
}

struct cm_mqtt_stored *cm_mqtt_tree_retained_at(struct cm_mqtt_tree *t, struct cm_str topic) {
  struct node *n = path(t, topic, false);
  return n != NULL ? n->retained : NULL;
}

/* Wildcard nodes hold subscriptions only: no topic name passes through. */
static bool is_wild(const struct node *k) { return k->len == 1 && (k->name[0] == '+' || k->name[0] == '#'); }

/* Push the children of `n` that a wildcard may enter, with `pos`. */
static bool push_kids(struct cm_mqtt_tree *t, size_t *top, struct node *n, size_t pos, bool all) {
  bool root = n->parent == NULL;
  for (uint32_t i = 0; i < n->kcap; i++) {
    struct node *k = n->kids[i];
    if (k == NULL || is_wild(k)) continue;
    if (root && !all && k->len > 0 && k->name[0] == '$') continue; /* 4.7.2 */
    if (!push(t, top, k, pos)) return false;
  }
  return true;
}

bool cm_mqtt_tree_retained(struct cm_mqtt_tree *t, struct cm_str filter, bool all, cm_mqtt_retained_fn fn,
                           void *arg) {
  size_t top = 0;
  if (!push(t, &top, t->root, 0)) return false;
  while (top > 0) {
    struct frame f = t->stack[--top];
    struct node *n = f.node;
    if (f.pos == WHOLE || f.pos > filter.len) {
      if (n->retained != NULL && !fn(n->retained, arg)) return false;
      if (f.pos == WHOLE && !push_kids(t, &top, n, WHOLE, all)) return false;
      continue;
    }
    size_t end = level_end(filter, f.pos);
    struct cm_str level = cm_str_n(filter.buf + f.pos, end - f.pos);
    bool ok = true;
    if (cm_str_eq(level, "#")) { /* this level (the parent's topic too) and below */
      if (n->retained != NULL && n->parent != NULL && !fn(n->retained, arg)) return false;
      ok = push_kids(t, &top, n, WHOLE, all);
    } else if (cm_str_eq(level, "+")) {
      ok = push_kids(t, &top, n, end + 1, all);
    } else {
      struct node *k = kid_find(n, level.buf, level.len);
      if (k != NULL) ok = push(t, &top, k, end + 1);
    }
    if (!ok) return false;
  }
  return true;
}

size_t cm_mqtt_tree_nretained(const struct cm_mqtt_tree *t) { return t->nretained; }
