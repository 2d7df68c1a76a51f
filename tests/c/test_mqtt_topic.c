/* test_mqtt_topic.c: topic names, filters and the topic tree (mqtt_topic.c):
 * matching against a brute-force reference, overlapping subscriptions,
 * '$' topics, pruning, retained messages, and deep and wide trees. */
#include "internal.h"
#include "test.h"

static struct cm_str S(const char *s) {
  return cm_str_c(s);
}

static void
test_valid(void) {
  const char *good_topics[] = {"a", "a/b", "/", "a//b", "$SYS/x", " ", "/a/"};
  const char *bad_topics[] = {"", "a/+", "#", "a/#/b", "+"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(good_topics); i++) ASSERT(cm_mqtt_topic_valid(S(good_topics[i])));
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad_topics); i++) ASSERT(!cm_mqtt_topic_valid(S(bad_topics[i])));
  ASSERT(!cm_mqtt_topic_valid(cm_str_n("a\0b", 3)));
  const char *good[] = {"#", "+", "a/#", "+/+", "/+", "a/+/b", "+/#", "$SYS/#", "a//b", "/"};
  const char *bad[] = {"", "a#", "a/#/b", "a+", "+a", "a/b+", "##", "#/", "a/#b"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(good); i++) ASSERT(cm_mqtt_filter_valid(S(good[i])));
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) ASSERT(!cm_mqtt_filter_valid(S(bad[i])));
}

/* The reference: MQTT 3.1.1 section 4.7 matching, level by level, slowly. */
static bool ref_match(const char *f, const char *t) {
  if (t[0] == '$' && (f[0] == '+' || f[0] == '#')) return false;
  for (;;) {
    if (f[0] == '#') return true;
    const char *fe = strchr(f, '/'), *te = strchr(t, '/');
    size_t fl = fe ? (size_t) (fe - f) : strlen(f), tl = te ? (size_t) (te - t) : strlen(t);
    if (!(fl == 1 && f[0] == '+') && !(fl == tl && memcmp(f, t, fl) == 0)) return false;
    if (fe == NULL && te == NULL) return true;
    if (te == NULL) return strcmp(fe + 1, "#") == 0; /* "a/#" matches "a" */
    if (fe == NULL) return false;
    f = fe + 1;
    t = te + 1;
  }
}

struct who {
  struct cm_mqtt_subscriber s;
  int n;
};

static int find_match(const struct cm_mqtt_match *m, long n, const struct who *w) {
  for (long i = 0; i < n; i++) {
    if (m[i].owner == &w->s) return (int) i;
  }
  return -1;
}

static void test_match_basic(void) {
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  struct who a = {.n = 1}, b = {.n = 2};
  struct cm_mqtt_subscription s1 = {.owner = &a.s, .opts = 0}, s2 = {.owner = &a.s, .opts = 2};
  struct cm_mqtt_subscription s3 = {.owner = &b.s, .opts = 1}, s4 = {.owner = &b.s, .opts = 0};
  ASSERT_EQ(cm_mqtt_tree_add(t, S("sport/+"), &s1), 0);
  ASSERT_EQ(cm_mqtt_tree_add(t, S("sport/tennis"), &s2), 0);
  ASSERT_EQ(cm_mqtt_tree_add(t, S("sport/#"), &s3), 0);
  ASSERT_EQ(cm_mqtt_tree_add(t, S("#"), &s4), 0);
  ASSERT_EQ(cm_mqtt_tree_nsubs(t), 4);
  const struct cm_mqtt_match *m;
  long n = cm_mqtt_tree_match(t, S("sport/tennis"), NULL, &m);
  ASSERT_EQ(n, 2); /* each subscriber once */
  int ia = find_match(m, n, &a), ib = find_match(m, n, &b);
  ASSERT(ia >= 0 && ib >= 0);
  ASSERT_EQ(m[ia].qos, 2); /* the highest of its overlapping subscriptions */
  ASSERT_EQ(m[ib].qos, 1);
  n = cm_mqtt_tree_match(t, S("sport"), NULL, &m); /* "sport/#" matches "sport" */
  ASSERT_EQ(n, 1);
  ASSERT(m[0].owner == &b.s && m[0].qos == 1);
  n = cm_mqtt_tree_match(t, S("sport/tennis/x"), NULL, &m);
  ASSERT_EQ(n, 1);
  n = cm_mqtt_tree_match(t, S("$SYS/x"), NULL, &m); /* '#' at the first level: no '$' */
  ASSERT_EQ(n, 0);
  n = cm_mqtt_tree_match(t, S("sport/"), NULL, &m); /* "+" matches the empty level */
  ASSERT_EQ(n, 2);
  cm_mqtt_tree_del(t, &s3);
  cm_mqtt_tree_del(t, &s3); /* unlinked: no-op */
  n = cm_mqtt_tree_match(t, S("sport/tennis"), NULL, &m);
  ASSERT_EQ(n, 2);
  ASSERT_EQ(m[find_match(m, n, &b)].qos, 0);
  cm_mqtt_tree_del(t, &s1);
  cm_mqtt_tree_del(t, &s2);
  cm_mqtt_tree_del(t, &s4);
  ASSERT_EQ(cm_mqtt_tree_nsubs(t), 0);
  n = cm_mqtt_tree_match(t, S("sport/tennis"), NULL, &m);
  ASSERT_EQ(n, 0);
  cm_mqtt_tree_free(t);
}

static void test_dollar_and_no_local(void) {
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  struct who a = {0}, b = {0};
  struct cm_mqtt_subscription s1 = {.owner = &a.s, .opts = 1 | CM_MQTT_SUB_NO_LOCAL};
  struct cm_mqtt_subscription s2 = {.owner = &b.s, .opts = CM_MQTT_SUB_RAP};
  struct cm_mqtt_subscription s3 = {.owner = &a.s, .opts = 0};
  ASSERT_EQ(cm_mqtt_tree_add(t, S("$SYS/#"), &s1), 0);
  ASSERT_EQ(cm_mqtt_tree_add(t, S("+/x"), &s2), 0);
  ASSERT_EQ(cm_mqtt_tree_add(t, S("$SYS/+"), &s3), 0);
  const struct cm_mqtt_match *m;
  long n = cm_mqtt_tree_match(t, S("$SYS/x"), NULL, &m);
  ASSERT_EQ(n, 1); /* "+/x" does not match "$SYS/x" */
  ASSERT(m[0].owner == &a.s && m[0].qos == 1 && !m[0].rap);
  n = cm_mqtt_tree_match(t, S("$SYS/x"), &a.s, &m); /* no local: only its plain one */
  ASSERT_EQ(n, 1);
  ASSERT(m[0].owner == &a.s && m[0].qos == 0);
  n = cm_mqtt_tree_match(t, S("q/x"), &a.s, &m);
  ASSERT_EQ(n, 1);
  ASSERT(m[0].owner == &b.s && m[0].rap);
  n = cm_mqtt_tree_match(t, S("a/$x"), NULL, &m); /* '$' deeper is ordinary */
  ASSERT_EQ(n, 0);
  cm_mqtt_tree_del(t, &s1);
  cm_mqtt_tree_del(t, &s2);
  cm_mqtt_tree_del(t, &s3);
  cm_mqtt_tree_free(t);
}

/* Random filters and topics over a few levels, against ref_match. */
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned rnd(unsigned n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (unsigned) (rng % n);
}

static void random_name(char *out, bool filter) {
  static const char *levels[] = {"a", "b", "", "$s", "c"};
  int nl = 1 + (int) rnd(4);
  out[0] = '\0';
  for (int i = 0; i < nl; i++) {
    if (i > 0) strcat(out, "/");
    unsigned r = rnd(filter ? 7 : 5);
    if (r == 6 || (r == 5 && i == nl - 1 && rnd(2))) {
      strcat(out, i == nl - 1 ? "#" : "+");
      if (i == nl - 1) return;
    } else if (r == 5) {
      strcat(out, "+");
    } else {
      strcat(out, levels[r]);
    }
  }
  if (out[0] == '\0') strcpy(out, "b"); /* one empty level is no name at all */
}

#define NSUB 300
static void test_match_random(void) {
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  static struct who owners[20];
  static struct cm_mqtt_subscription subs[NSUB];
  static char filters[NSUB][64];
  for (int i = 0; i < NSUB; i++) {
    random_name(filters[i], true);
    ASSERT(cm_mqtt_filter_valid(S(filters[i])));
    subs[i] = (struct cm_mqtt_subscription){.owner = &owners[rnd(20)].s, .opts = (uint8_t) rnd(3)};
    ASSERT_EQ(cm_mqtt_tree_add(t, S(filters[i]), &subs[i]), 0);
  }
  for (int round = 0; round < 2000; round++) {
    char topic[64];
    random_name(topic, false);
    if (round % 3 == 0) { /* churn: unlink and relink one */
      int k = (int) rnd(NSUB);
      cm_mqtt_tree_del(t, &subs[k]);
      if (rnd(2)) ASSERT_EQ(cm_mqtt_tree_add(t, S(filters[k]), &subs[k]), 0);
    }
    int want[20];
    for (int o = 0; o < 20; o++) want[o] = -1;
    for (int i = 0; i < NSUB; i++) {
      if (subs[i].node == NULL || !ref_match(filters[i], topic)) continue;
      int o = (int) ((struct who *) (void *) subs[i].owner - owners);
      if ((int) subs[i].opts > want[o]) want[o] = subs[i].opts;
    }
    const struct cm_mqtt_match *m;
    long n = cm_mqtt_tree_match(t, S(topic), NULL, &m);
    ASSERT(n >= 0);
    long expect = 0;
    for (int o = 0; o < 20; o++) {
      if (want[o] < 0) continue;
      expect++;
      int i = find_match(m, n, &owners[o]);
      ASSERT(i >= 0);
      ASSERT_EQ(m[i].qos, want[o]);
    }
    ASSERT_EQ(n, expect);
  }
  for (int i = 0; i < NSUB; i++) cm_mqtt_tree_del(t, &subs[i]);
  ASSERT_EQ(cm_mqtt_tree_nsubs(t), 0);
  cm_mqtt_tree_free(t);
}

static struct cm_mqtt_stored *msg(const char *topic, const char *data) {
  return cm_mqtt_stored_new(S(topic), S(data), S(""), 1, true);
}

struct seen {
  char topics[16][32];
  int n;
};

static bool on_retained(struct cm_mqtt_stored *m, void *arg) {
  struct seen *s = arg;
  ASSERT(s->n < 16);
  memcpy(s->topics[s->n], m->topic, m->topic_len);
  s->topics[s->n][m->topic_len] = '\0';
  s->n++;
  return true;
}

static bool seen_has(const struct seen *s, const char *topic) {
  for (int i = 0; i < s->n; i++) {
    if (strcmp(s->topics[i], topic) == 0) return true;
  }
  return false;
}

static int walk(struct cm_mqtt_tree *t, const char *filter, bool all, struct seen *s) {
  memset(s, 0, sizeof(*s));
  ASSERT(cm_mqtt_tree_retained(t, S(filter), all, on_retained, s));
  return s->n;
}

static void test_retained(void) {
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  const char *topics[] = {"a", "a/b", "a/b/c", "a/x", "$SYS/up", "b/", "/"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(topics); i++) {
    struct cm_mqtt_stored *m = msg(topics[i], "v");
    ASSERT_EQ(cm_mqtt_tree_retain(t, S(topics[i]), m), 0);
    cm_mqtt_stored_release(m); /* the tree holds its own reference */
  }
  ASSERT_EQ(cm_mqtt_tree_nretained(t), CM_ARRAY_SIZE(topics));
  struct seen s;
  ASSERT_EQ(walk(t, "#", false, &s), 6); /* not $SYS/up */
  ASSERT(!seen_has(&s, "$SYS/up"));
  ASSERT_EQ(walk(t, "#", true, &s), 7);
  ASSERT_EQ(walk(t, "a/#", false, &s), 4); /* a, a/b, a/b/c, a/x */
  ASSERT(seen_has(&s, "a"));
  ASSERT_EQ(walk(t, "a/+", false, &s), 2);
  ASSERT(seen_has(&s, "a/b") && seen_has(&s, "a/x"));
  ASSERT_EQ(walk(t, "+", false, &s), 1);   /* "a" */
  ASSERT_EQ(walk(t, "+/+", false, &s), 4); /* a/b, a/x, b/, / */
  ASSERT_EQ(walk(t, "$SYS/#", false, &s), 1);
  ASSERT_EQ(walk(t, "+/up", false, &s), 0);
  ASSERT_EQ(walk(t, "a/b/c", false, &s), 1);
  ASSERT_EQ(walk(t, "a/b/c/d", false, &s), 0);

  /* Replace, then delete with an empty payload. */
  struct cm_mqtt_stored *m2 = msg("a/b", "new");
  ASSERT_EQ(cm_mqtt_tree_retain(t, S("a/b"), m2), 0);
  ASSERT(cm_mqtt_tree_retained_at(t, S("a/b")) == m2);
  ASSERT_EQ(m2->refs, 2);
  ASSERT_EQ(cm_mqtt_tree_nretained(t), CM_ARRAY_SIZE(topics));
  struct cm_mqtt_stored *empty = msg("a/b", "");
  ASSERT_EQ(cm_mqtt_tree_retain(t, S("a/b"), empty), 0);
  cm_mqtt_stored_release(empty);
  ASSERT_EQ(m2->refs, 1);
  cm_mqtt_stored_release(m2);
  ASSERT(cm_mqtt_tree_retained_at(t, S("a/b")) == NULL);
  ASSERT(cm_mqtt_tree_retained_at(t, S("a/b/c")) != NULL);  /* the path below stays */
  ASSERT_EQ(cm_mqtt_tree_retain(t, S("no/such"), NULL), 0); /* deleting nothing */
  ASSERT_EQ(walk(t, "a/#", false, &s), 3);

  /* Subscriptions and retained messages share nodes; pruning keeps both. */
  struct who w = {0};
  struct cm_mqtt_subscription sub = {.owner = &w.s};
  ASSERT_EQ(cm_mqtt_tree_add(t, S("a/b/c"), &sub), 0);
  ASSERT_EQ(cm_mqtt_tree_retain(t, S("a/b/c"), NULL), 0);
  const struct cm_mqtt_match *mm;
  ASSERT_EQ(cm_mqtt_tree_match(t, S("a/b/c"), NULL, &mm), 1);
  cm_mqtt_tree_del(t, &sub);
  ASSERT_EQ(cm_mqtt_tree_match(t, S("a/b/c"), NULL, &mm), 0);
  cm_mqtt_tree_free(t); /* releases the rest (ASan: no leak) */
}

static bool count_one(struct cm_mqtt_stored *m, void *arg) {
  (void) m;
  (*(int *) arg)++;
  return true;
}

/* 30000 levels: every walk is iterative, so no stack overflow. */
static void test_deep(void) {
  size_t levels = 30000, len = levels * 2 - 1;
  char *topic = malloc(len + 1);
  for (size_t i = 0; i < levels; i++) {
    topic[2 * i] = 'x';
    if (i + 1 < levels) topic[2 * i + 1] = '/';
  }
  topic[len] = '\0';
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  struct who w = {0};
  struct cm_mqtt_subscription s = {.owner = &w.s, .opts = 1};
  ASSERT_EQ(cm_mqtt_tree_add(t, cm_str_n(topic, len), &s), 0);
  char *filter = strdup(topic);
  for (size_t i = 0; i < len; i += 4) filter[i] = '+'; /* every other level a '+' */
  struct cm_mqtt_subscription s2 = {.owner = &w.s, .opts = 2};
  ASSERT_EQ(cm_mqtt_tree_add(t, cm_str_n(filter, len), &s2), 0);
  const struct cm_mqtt_match *m;
  ASSERT_EQ(cm_mqtt_tree_match(t, cm_str_n(topic, len), NULL, &m), 1);
  ASSERT_EQ(m[0].qos, 2);
  struct cm_mqtt_stored *r = cm_mqtt_stored_new(cm_str_n(topic, len), S("d"), S(""), 0, true);
  ASSERT_EQ(cm_mqtt_tree_retain(t, cm_str_n(topic, len), r), 0);
  cm_mqtt_stored_release(r);
  int count = 0;
  ASSERT(cm_mqtt_tree_retained(t, S("#"), false, count_one, &count));
  ASSERT_EQ(count, 1);
  cm_mqtt_tree_del(t, &s2);
  cm_mqtt_tree_free(t); /* with a subscription still linked: the tree goes anyway */
  free(filter);
  free(topic);
}

/* One node with many children: growth, and deletes that shift probe runs. */
static void test_wide(void) {
  struct cm_mqtt_tree *t = cm_mqtt_tree_new();
  enum { N = 5000 };
  static struct cm_mqtt_subscription subs[N];
  static struct who owners[N];
  char name[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "w/%d", i);
    subs[i].owner = &owners[i].s;
    ASSERT_EQ(cm_mqtt_tree_add(t, S(name), &subs[i]), 0);
  }
  for (int i = 0; i < N; i += 2) cm_mqtt_tree_del(t, &subs[i]);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "w/%d", i);
    const struct cm_mqtt_match *m;
    long n = cm_mqtt_tree_match(t, S(name), NULL, &m);
    ASSERT_EQ(n, i % 2);
    if (n == 1) ASSERT(m[0].owner == &owners[i].s);
  }
  for (int i = 1; i < N; i += 2) cm_mqtt_tree_del(t, &subs[i]);
  ASSERT_EQ(cm_mqtt_tree_nsubs(t), 0);
  /* 5000 subscribers of one filter: one match, 5000 results, each once. */
  for (int i = 0; i < N; i++) ASSERT_EQ(cm_mqtt_tree_add(t, S("all/+"), &subs[i]), 0);
  const struct cm_mqtt_match *m;
  ASSERT_EQ(cm_mqtt_tree_match(t, S("all/x"), NULL, &m), N);
  for (int i = 0; i < N; i += 3) cm_mqtt_tree_del(t, &subs[i]); /* swap-remove keeps indices right */
  long n = cm_mqtt_tree_match(t, S("all/x"), NULL, &m);
  ASSERT_EQ(n, N - (N + 2) / 3);
  for (int i = 0; i < N; i++) cm_mqtt_tree_del(t, &subs[i]);
  ASSERT_EQ(cm_mqtt_tree_nsubs(t), 0);
  cm_mqtt_tree_free(t);
}

int main(void) {
  RUN(test_valid);
  RUN(test_match_basic);
  RUN(test_dollar_and_no_local);
  RUN(test_match_random);
  RUN(test_retained);
  RUN(test_deep);
  RUN(test_wide);
  return cm_test_done();
}
