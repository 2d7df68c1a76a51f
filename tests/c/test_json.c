/* test_json.c: unit tests of the JSON scanner (json.c).  Every document is
 * placed by cm_test_guard without a NUL, so its last byte is the last
 * readable one: any read past the end faults at once. */
#include <limits.h>
#include <locale.h>
#include <math.h>

#include "cm/json.h"
#include "test.h"

/* The guarded copy of `doc`, as a slice without its NUL. */
static struct cm_str doc(const char *s) { return cm_str_n(cm_test_guard(s, strlen(s)), strlen(s)); }

struct get_case {
  const char *json, *path;
  const char *tok; /* expected token, or NULL when `rc` is expected */
  int rc;
};

static const struct get_case found_cases[] = {
    {"{\"a\":1}", "$", "{\"a\":1}", 0},
    {"{\"a\":1}", "$.a", "1", 0},
    {" {\"a\" : \"x\" } ", "$.a", "\"x\"", 0},
    {"{\"a\":{\"b\":[1,2,{\"c\":true}]}}", "$.a.b[2].c", "true", 0},
    {"{\"a\":{\"b\":[1,2,{\"c\":true}]}}", "$.a.b", "[1,2,{\"c\":true}]", 0},
    {"{\"a\":{\"b\":[1,2,{\"c\":true}]}}", "$.a.b[0]", "1", 0},
    {"{\"a\":{\"b\":[1,2,{\"c\":true}]}}", "$.a", "{\"b\":[1,2,{\"c\":true}]}", 0},
    {"[10,20,30]", "$[1]", "20", 0},
    {"[10,20,30]", "$[2]", "30", 0},
    {"[[1,2],[3,4]]", "$[1][0]", "3", 0},
    {"[[1,2],[3,4]]", "$[1]", "[3,4]", 0},
    {"{\"n\":-1.5e3}", "$.n", "-1.5e3", 0},
    {"[0,-0,1E+2,1e-2,0.5,123]", "$[2]", "1E+2", 0},
    {"[0,-0,1E+2,1e-2,0.5,123]", "$[5]", "123", 0},
    {"{\"s\":\"a\\\"b\"}", "$.s", "\"a\\\"b\"", 0},
    {"{\"a\\\"b\":1}", "$.a\\\"b", "1", 0}, /* raw key bytes a\"b */
    {"{\"a b]\":7}", "$.a b]", "7", 0},
    {"{\"\":5}", "$.", "5", 0},
    {"{\"x\":{\"\":{\"y\":6}}}", "$.x..y", "6", 0},
    {"{\"a\":1,\"a\":2}", "$.a", "1", 0},
    {"{\"a\":{},\"a\":{\"b\":3}}", "$.a.b", "3", 0},
    {"42", "$", "42", 0},
    {" \"x\" ", "$", "\"x\"", 0},
    {"true", "$", "true", 0},
    {"null", "$", "null", 0},
    {"{}", "$", "{}", 0},
    {"{\"a\":[]}", "$.a", "[]", 0},
    {"[{},{\"x\":[1]}]", "$[1].x[0]", "1", 0},
    {" [ 1 , { \"k\" : [ ] } ] ", "$[1].k", "[ ]", 0},
    {"{\"a\":\"}\",\"b\":\"]\"}", "$.b", "\"]\"", 0},
    {"{\"u\":\"\\u00e9\\uD83D\\uDE00\"}", "$.u", "\"\\u00e9\\uD83D\\uDE00\"", 0},
    {"{\"caf\xc3\xa9\":1}", "$.caf\xc3\xa9", "1", 0},
    {"\t\r\n[\"x\"]\n", "$[0]", "\"x\"", 0},
};

static const struct get_case missing_cases[] = {
    {"{\"a\":{\"b\":[1,2]}}", "$.a.b[3]", NULL, CM_JSON_NOT_FOUND},
    {"{\"a\":{\"b\":[1,2]}}", "$.a.c", NULL, CM_JSON_NOT_FOUND},
    {"{\"a\":{\"b\":[1,2]}}", "$.a.b.c", NULL, CM_JSON_NOT_FOUND}, /* key into an array */
    {"{\"a\":{\"b\":[1,2]}}", "$.a[0]", NULL, CM_JSON_NOT_FOUND},  /* index into an object */
    {"{\"a\":{\"b\":[1,2]}}", "$.b", NULL, CM_JSON_NOT_FOUND},
    {"{\"a\":1}", "$.A", NULL, CM_JSON_NOT_FOUND},
    {"{\"ab\":1}", "$.a", NULL, CM_JSON_NOT_FOUND},
    {"{\"a\":1}", "$.ab", NULL, CM_JSON_NOT_FOUND},
    {"42", "$.a", NULL, CM_JSON_NOT_FOUND},
    {"42", "$[0]", NULL, CM_JSON_NOT_FOUND},
    {"[]", "$[0]", NULL, CM_JSON_NOT_FOUND},
    {"{\"a\":1}", "$.a.b", NULL, CM_JSON_NOT_FOUND},
    {"{\"x\":{\"a\":1}}", "$.a", NULL, CM_JSON_NOT_FOUND}, /* not searched in depth */
    {"{\"a\\u0062\":1}", "$.ab", NULL, CM_JSON_NOT_FOUND}, /* keys are not unescaped */
};

/* Each is CM_JSON_INVALID for the path "$" (and any other). */
static const char *const invalid_docs[] = {
    "",
    " ",
    "{",
    "}",
    "[",
    "]",
    "[1,]",
    "[,1]",
    "{\"a\"}",
    "{\"a\":}",
    "{\"a\":1,}",
    "{a:1}",
    "[1 2]",
    "01",
    "-01",
    "1.",
    ".5",
    "-",
    "1e",
    "1e+",
    "+1",
    "tru",
    "nul",
    "falsey",
    "\"abc",
    "\"a\\x\"",
    "\"\\u12\"",
    "\"\\u12g4\"",
    "\"tab\there\"",
    "\"nl\nhere\"",
    "[1]]",
    "[1] x",
    "{\"a\":1}}",
    "[\"a\":1]",
    "{\"a\",1}",
    "{1:2}",
    "NaN",
    "Infinity",
    "[1,2",
    "{\"a\":1 \"b\":2}",
    "\"\\",
    "[\"a\\\"]",
    "1 2",
    "{\"a\":1]",
    "[1}",
    "'a'",
    "\xef\xbb\xbf{}",
    "[01]",
    "[1.e5]",
    "{,}",
    "[-]",
    "[\"\\u\"]",
    "0x10",
    "{\"a\" 1}",
    "[true false]",
    "\x01",
};

static const char *const bad_paths[] = {
    "",     "a",     "$a",    "$[",    "$[]",   "$[a]",
    "$[1",  "$[-1]", "$[1]x", "$[+1]", "$[ 1]", "$[1234567890123456789]",
    "$.a[", "$.a[0", "$]",
};

static void check_get(const struct get_case *t) {
  struct cm_str d = doc(t->json);
  int len = -7, ofs = cm_json_get(d, t->path, &len);
  if (t->tok == NULL) {
    if (ofs != t->rc) fprintf(stderr, "get(%s, %s) = %d, want %d\n", t->json, t->path, ofs, t->rc);
    ASSERT_EQ(ofs, t->rc);
    ASSERT_EQ(len, -7); /* untouched */
    return;
  }
  if (ofs < 0) fprintf(stderr, "get(%s, %s) = %d\n", t->json, t->path, ofs);
  ASSERT(ofs >= 0 && len > 0 && (size_t) ofs + (size_t) len <= d.len);
  ASSERT_STR(cm_str_n(d.buf + ofs, (size_t) len), t->tok);
  ASSERT_EQ(cm_json_get(d, t->path, NULL), ofs); /* toklen may be NULL */
}

static void test_found(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(found_cases); i++) check_get(&found_cases[i]);
}

static void test_missing(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(missing_cases); i++) check_get(&missing_cases[i]);
}

static void test_invalid(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(invalid_docs); i++) {
    struct get_case t = {invalid_docs[i], "$", NULL, CM_JSON_INVALID};
    check_get(&t);
    t.path = "$.a";
    check_get(&t);
  }
  /* Damage after the value at the path still makes the document invalid. */
  struct get_case late = {"{\"a\":1,\"b\":}", "$.a", NULL, CM_JSON_INVALID};
  check_get(&late);
  /* A NUL byte is neither whitespace nor allowed raw in a string. */
  ASSERT_EQ(cm_json_get(cm_str_n(cm_test_guard("[1]\0", 4), 4), "$", NULL), CM_JSON_INVALID);
  ASSERT_EQ(cm_json_get(cm_str_n(cm_test_guard("\"a\0\"", 4), 4), "$", NULL), CM_JSON_INVALID);
  ASSERT_EQ(cm_json_get(cm_str_n(NULL, 0), "$", NULL), CM_JSON_INVALID);
}

static void test_bad_path(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad_paths); i++) {
    struct get_case t = {"{\"a\":[1]}", bad_paths[i], NULL, CM_JSON_BAD_PATH};
    check_get(&t);
  }
  ASSERT_EQ(cm_json_get(doc("{}"), NULL, NULL), CM_JSON_BAD_PATH);
  /* 18 digits is the longest index accepted. */
  ASSERT_EQ(cm_json_get(doc("[1]"), "$[000000000000000000]", NULL), 1);
}

/* `n` nested arrays around a 1, e.g. n = 2: "[[1]]". */
static char *nested(size_t n) {
  char *s = malloc(2 * n + 2);
  ASSERT(s != NULL);
  memset(s, '[', n);
  s[n] = '1';
  memset(s + n + 1, ']', n);
  s[2 * n + 1] = '\0';
  return s;
}

static void test_depth(void) {
  char path[4 * CM_JSON_MAX_DEPTH + 2] = "$";
  char *s = nested(CM_JSON_MAX_DEPTH);
  for (int i = 0; i < CM_JSON_MAX_DEPTH; i++) strcat(path, "[0]");
  ASSERT_EQ(cm_json_get(doc(s), path, NULL), CM_JSON_MAX_DEPTH);
  free(s);
  s = nested(CM_JSON_MAX_DEPTH + 1);
  ASSERT_EQ(cm_json_get(doc(s), "$", NULL), CM_JSON_TOO_DEEP);
  free(s);
  s = nested(100);
  ASSERT_EQ(cm_json_get(doc(s), "$[0]", NULL), CM_JSON_TOO_DEEP);
  free(s);
  /* A million opening brackets: rejected at depth 65, no stack growth. */
  size_t big = 1000000;
  s = malloc(big);
  ASSERT(s != NULL);
  memset(s, '[', big);
  ASSERT_EQ(cm_json_get(cm_str_n(cm_test_guard(s, big), big), "$", NULL), CM_JSON_TOO_DEEP);
  memset(s, '{', big);
  ASSERT_EQ(cm_json_get(cm_str_n(cm_test_guard(s, big), big), "$", NULL), CM_JSON_INVALID);
  free(s);
  /* Objects count too: {"a":{"a":...}} */
  char obj[6 * 70 + 80] = "";
  for (int i = 0; i < 65; i++) strcat(obj, "{\"a\":");
  strcat(obj, "1");
  for (int i = 0; i < 65; i++) strcat(obj, "}");
  ASSERT_EQ(cm_json_get(doc(obj), "$.a", NULL), CM_JSON_TOO_DEEP);
}

static void test_num(void) {
  double d = 0;
  ASSERT(cm_json_get_num(doc("{\"n\":-1.5e3}"), "$.n", &d) && d == -1500.0);
  ASSERT(cm_json_get_num(doc("[0.1]"), "$[0]", &d) && d == 0.1);
  ASSERT(cm_json_get_num(doc("3.25"), "$", &d) && d == 3.25); /* ends the document */
  ASSERT(cm_json_get_num(doc("-0"), "$", &d) && d == 0.0 && signbit(d));
  ASSERT(cm_json_get_num(doc("[1e999]"), "$[0]", &d) && isinf(d) && d > 0);
  ASSERT(cm_json_get_num(doc("[-1e999]"), "$[0]", &d) && isinf(d) && d < 0);
  ASSERT(cm_json_get_num(doc("[1e-999]"), "$[0]", &d) && d == 0.0);
  d = 7;
  ASSERT(!cm_json_get_num(doc("[\"1\"]"), "$[0]", &d) && d == 7);
  ASSERT(!cm_json_get_num(doc("[true]"), "$[0]", &d));
  ASSERT(!cm_json_get_num(doc("[null]"), "$[0]", &d));
  ASSERT(!cm_json_get_num(doc("[1]"), "$[1]", &d));
  ASSERT(!cm_json_get_num(doc("[1,]"), "$[0]", &d));
  ASSERT(!cm_json_get_num(doc("{}"), "$", &d));
  /* 300 digits: fine inside an array, refused when it ends the document. */
  char big[310] = "[";
  memset(big + 1, '9', 300);
  big[301] = ']';
  big[302] = '\0';
  ASSERT(cm_json_get_num(doc(big), "$[0]", &d) && d > 9.99e299 && d < 1.0001e300);
  big[301] = '\0';
  ASSERT(!cm_json_get_num(doc(big + 1), "$", &d));
}

/* The decimal point of the C locale must not matter: JSON always uses '.'. */
static void test_num_locale(void) {
  static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "C.UTF-8"};
  double d = 0;
  for (size_t i = 0; i < CM_ARRAY_SIZE(names); i++) {
    if (setlocale(LC_NUMERIC, names[i]) == NULL) continue;
    ASSERT(cm_json_get_num(doc("[2.5]"), "$[0]", &d) && d == 2.5);
    ASSERT(cm_json_get_num(doc("2.5"), "$", &d) && d == 2.5);
  }
  setlocale(LC_NUMERIC, "C");
}

static void test_long(void) {
  long v = 0;
  ASSERT(cm_json_get_long(doc("[3.14]"), "$[0]", &v) && v == 3);
  ASSERT(cm_json_get_long(doc("[-2.9]"), "$[0]", &v) && v == -2);
  ASSERT(cm_json_get_long(doc("[1e3]"), "$[0]", &v) && v == 1000);
  ASSERT(cm_json_get_long(doc("[1.5E3]"), "$[0]", &v) && v == 1500);
  ASSERT(cm_json_get_long(doc("[-0.5]"), "$[0]", &v) && v == 0);
  ASSERT(cm_json_get_long(doc("42"), "$", &v) && v == 42);
  ASSERT(cm_json_get_long(doc("[-17]"), "$[0]", &v) && v == -17);
  /* Exact beyond double precision (2^53). */
  ASSERT(cm_json_get_long(doc("[12345678901234567]"), "$[0]", &v) && v == 12345678901234567L);
  ASSERT(cm_json_get_long(doc("[9223372036854775807]"), "$[0]", &v) && v == LONG_MAX);
  ASSERT(cm_json_get_long(doc("[-9223372036854775808]"), "$[0]", &v) && v == LONG_MIN);
  ASSERT(cm_json_get_long(doc("[-9.223372036854775808e18]"), "$[0]", &v) && v == LONG_MIN);
  v = 5;
  ASSERT(!cm_json_get_long(doc("[9223372036854775808]"), "$[0]", &v) && v == 5);
  ASSERT(!cm_json_get_long(doc("[-9223372036854775809]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[99999999999999999999999]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[9.3e18]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[1e999]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[\"3\"]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[true]"), "$[0]", &v));
  ASSERT(!cm_json_get_long(doc("[]"), "$[0]", &v) && v == 5);
}

static void test_bool(void) {
  bool b = false;
  ASSERT(cm_json_get_bool(doc("{\"t\":true}"), "$.t", &b) && b);
  ASSERT(cm_json_get_bool(doc("[false]"), "$[0]", &b) && !b);
  ASSERT(cm_json_get_bool(doc("true"), "$", &b) && b);
  b = true;
  ASSERT(!cm_json_get_bool(doc("[\"false\"]"), "$[0]", &b) && b);
  ASSERT(!cm_json_get_bool(doc("[1]"), "$[0]", &b));
  ASSERT(!cm_json_get_bool(doc("[0]"), "$[0]", &b));
  ASSERT(!cm_json_get_bool(doc("[null]"), "$[0]", &b));
  ASSERT(!cm_json_get_bool(doc("[]"), "$[0]", &b));
  ASSERT(!cm_json_get_bool(doc("[true,]"), "$[0]", &b) && b);
}

/* cm_json_get_str of the document `json` at "$[0]" must give want[0..n). */
static void check_str(const char *json, const char *want, long n) {
  char buf[64];
  long got = cm_json_get_str(doc(json), "$[0]", buf, sizeof(buf));
  if (got != n) fprintf(stderr, "get_str(%s) = %ld, want %ld\n", json, got, n);
  ASSERT_EQ(got, n);
  if (n >= 0) ASSERT(memcmp(buf, want, (size_t) n) == 0 && buf[n] == '\0');
}

static void test_str(void) {
  check_str("[\"plain\"]", "plain", 5);
  check_str("[\"\"]", "", 0);
  check_str("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]", "a\"b\\c/d\b\f\n\r\t", 12);
  check_str("[\"\\u0041\\u00e9\"]", "A\xc3\xa9", 3);
  check_str("[\"\\u20AC\"]", "\xe2\x82\xac", 3);
  check_str("[\"\\uD83D\\uDE00\"]", "\xf0\x9f\x98\x80", 4);
  check_str("[\"\\udbff\\udfff\"]", "\xf4\x8f\xbf\xbf", 4); /* U+10FFFF */
  check_str("[\"\\u07FF\\u0800\\uFFFF\"]", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 8);
  check_str("[\"a\\u0000b\"]", "a\0b", 3);
  check_str("[\"caf\xc3\xa9\"]", "caf\xc3\xa9", 5); /* raw UTF-8 copied as is */
  check_str("[\"\\uD83D\"]", NULL, -1);             /* lone high surrogate */
  check_str("[\"\\uDE00\"]", NULL, -1);             /* lone low surrogate */
  check_str("[\"\\uD83D\\u0041\"]", NULL, -1);      /* high then not low */
  check_str("[\"\\uD83Dx\"]", NULL, -1);
  check_str("[\"\\uD83D\\n\"]", NULL, -1);
  check_str("[1]", NULL, -1);
  check_str("[null]", NULL, -1);
  check_str("[[\"a\"]]", NULL, -1);
  check_str("[]", NULL, -1);
  check_str("[\"a\"", NULL, -1); /* invalid document */
  /* The size rule: the result and its NUL; the token length always fits. */
  char buf[8];
  int toklen = 0;
  struct cm_str d = doc("{\"k\":\"abc\\n\"}");
  ASSERT(cm_json_get(d, "$.k", &toklen) == 5 && toklen == 7);
  ASSERT_EQ(cm_json_get_str(d, "$.k", buf, (size_t) toklen), 4);
  ASSERT_EQ(cm_json_get_str(d, "$.k", buf, 5), 4);
  ASSERT_EQ(cm_json_get_str(d, "$.k", buf, 4), -1);
  ASSERT_EQ(cm_json_get_str(d, "$.k", buf, 0), -1);
}

static void test_unescape(void) {
  char buf[16];
  static const char *const bad[] = {"\\",     "a\\",     "\\x",     "\\u", "\\u12",
                                    "\\u123", "\\u12G4", "\\U0041", "\\'"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    const char *g = cm_test_guard(bad[i], strlen(bad[i]));
    ASSERT_EQ(cm_json_unescape(cm_str_n(g, strlen(bad[i])), buf, sizeof(buf)), -1);
  }
  const char *g = cm_test_guard("x\\uD83D\\uDE0", 13);
  ASSERT_EQ(cm_json_unescape(cm_str_n(g, 13), buf, sizeof(buf)), -1);
  g = cm_test_guard("\\uD83D\\", 7);
  ASSERT_EQ(cm_json_unescape(cm_str_n(g, 7), buf, sizeof(buf)), -1);
  ASSERT_EQ(cm_json_unescape(cm_str_n(NULL, 0), buf, 1), 0);
  ASSERT_EQ(buf[0], '\0');
  /* A 4-byte result needs 5 bytes of room. */
  g = cm_test_guard("\\uD83D\\uDE00", 12);
  ASSERT_EQ(cm_json_unescape(cm_str_n(g, 12), buf, 4), -1);
  ASSERT_EQ(cm_json_unescape(cm_str_n(g, 12), buf, 5), 4);
}

/* Every prefix of a valid document is invalid (or, for "1" in "12", a
 * different valid one), and scanning it never reads past its end. */
static void test_prefixes(void) {
  static const char full[] = "{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\n\"],\"b\":{\"c\":{}}}";
  size_t n = strlen(full);
  for (size_t len = 0; len < n; len++) {
    int rc = cm_json_get(cm_str_n(cm_test_guard(full, len), len), "$.b.c", NULL);
    ASSERT_EQ(rc, CM_JSON_INVALID);
  }
  ASSERT_EQ(cm_json_get(doc(full), "$.b.c", NULL), (int) n - 4);
}

int main(void) {
  RUN(test_found);
  RUN(test_missing);
  RUN(test_invalid);
  RUN(test_bad_path);
  RUN(test_depth);
  RUN(test_num);
  RUN(test_num_locale);
  RUN(test_long);
  RUN(test_bool);
  RUN(test_str);
  RUN(test_unescape);
  RUN(test_prefixes);
  return cm_test_done();
}
