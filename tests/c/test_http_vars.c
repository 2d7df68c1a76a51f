/* test_http_vars.c: unit tests of the pure HTTP text helpers (http_vars.c).
 * Inputs are placed against a guard page, so a read past the end faults. */
#include "internal.h"
#include "test.h"

/* A slice over a C string, copied to end at a guard page. */
static struct cm_str guarded(const char *s) {
  size_t n = strlen(s);
  return (struct cm_str){cm_test_guard(s, n), n};
}

static struct cm_str cstr(const char *s) { return (struct cm_str){s, strlen(s)}; }

static bool slice_is(struct cm_str s, const char *want) {
  return s.len == strlen(want) && memcmp(s.buf, want, s.len) == 0;
}

/* Decode `src` (guarded) into a buffer of `size` bytes. */
static long decode(const char *src, char *dst, size_t size, bool form) {
  struct cm_str s = guarded(src);
  return cm_http_url_decode(s.buf, s.len, dst, size, form);
}

static void test_url_decode(void) {
  char out[64];
  ASSERT_EQ(decode("", out, sizeof(out), true), 0);
  ASSERT(out[0] == '\0');
  ASSERT_EQ(decode("a%20b+c", out, sizeof(out), true), 5);
  ASSERT(strcmp(out, "a b c") == 0);
  ASSERT_EQ(decode("a+b", out, sizeof(out), false), 3); /* '+' kept outside forms */
  ASSERT(strcmp(out, "a+b") == 0);
  ASSERT_EQ(decode("%41%6a%6A", out, sizeof(out), true), 3); /* both hex cases */
  ASSERT(strcmp(out, "Ajj") == 0);
  ASSERT_EQ(decode("x%41", out, sizeof(out), true), 2); /* escape at the very end */
  ASSERT(strcmp(out, "xA") == 0);
}

static void test_url_decode_nul_and_binary(void) {
  char out[8];
  ASSERT_EQ(decode("a%00b%ff", out, sizeof(out), true), 4);
  ASSERT(out[0] == 'a' && out[1] == '\0' && out[2] == 'b' && (unsigned char) out[3] == 0xff);
}

static void test_url_decode_bad_escape(void) {
  char out[16];
  ASSERT_EQ(decode("%", out, sizeof(out), true), -1);
  ASSERT_EQ(decode("ab%4", out, sizeof(out), true), -1); /* cut at the end */
  ASSERT_EQ(decode("%zz", out, sizeof(out), true), -1);
  ASSERT_EQ(decode("%4g", out, sizeof(out), true), -1);
}

static void test_url_decode_room(void) {
  char out[4];
  ASSERT_EQ(decode("abc", out, sizeof(out), true), 3); /* 3 bytes + NUL fit */
  ASSERT_EQ(decode("abcd", out, sizeof(out), true), -1);
  ASSERT_EQ(decode("%41%41%41", out, sizeof(out), true), 3); /* decoded size counts */
  ASSERT_EQ(cm_http_url_decode("a", 1, out, 0, true), -1);
  ASSERT_EQ(cm_http_url_decode("", 0, out, 1, true), 0);
}

/* The 2048-byte rule of HttpMessage.query_var: 2047 decoded bytes fit a
 * 2048-byte buffer, 2048 do not. */
static void test_url_decode_limit(void) {
  static char src[4096], out[2048];
  memset(src, 'x', 2048);
  src[2048] = '\0';
  ASSERT_EQ(decode(src, out, sizeof(out), true), -1);
  src[2047] = '\0';
  ASSERT_EQ(decode(src, out, sizeof(out), true), 2047);
}

static void test_var(void) {
  struct cm_str v;
  struct cm_str q = guarded("a=1&bb=two%20x&c=&d&A=upper");
  ASSERT(cm_http_var(q, cstr("a"), &v) && slice_is(v, "1"));        /* first match wins */
  ASSERT(cm_http_var(q, cstr("BB"), &v) && slice_is(v, "two%20x")); /* raw, any case */
  ASSERT(cm_http_var(q, cstr("c"), &v) && slice_is(v, ""));
  ASSERT(!cm_http_var(q, cstr("d"), &v)); /* no '=' */
  ASSERT(!cm_http_var(q, cstr("b"), &v)); /* prefix of a name is not the name */
  ASSERT(!cm_http_var(q, cstr("zz"), &v));
  ASSERT(!cm_http_var(q, cstr(""), &v));
  ASSERT(!cm_http_var(cstr(""), cstr("a"), &v));
  q = guarded("x=1&y=last");
  ASSERT(cm_http_var(q, cstr("y"), &v) && slice_is(v, "last")); /* ends at the guard */
  q = guarded("&&k=v&");
  ASSERT(cm_http_var(q, cstr("k"), &v) && slice_is(v, "v"));
  q = guarded("k=");
  ASSERT(cm_http_var(q, cstr("k"), &v) && v.len == 0);
  q = guarded("k");
  ASSERT(!cm_http_var(q, cstr("k"), &v));
}

static void test_header_var(void) {
  struct cm_str v;
  struct cm_str h = guarded("text/html; charset=utf-8");
  ASSERT(cm_http_header_var(h, cstr("charset"), &v) && slice_is(v, "utf-8"));
  ASSERT(cm_http_header_var(h, cstr("CHARSET"), &v) && slice_is(v, "utf-8"));
  ASSERT(!cm_http_header_var(h, cstr("html"), &v));
  h = guarded("Digest username=\"Mufasa\", realm=\"a, b; c\",nonce=xyz qop=auth");
  ASSERT(cm_http_header_var(h, cstr("username"), &v) && slice_is(v, "Mufasa"));
  ASSERT(cm_http_header_var(h, cstr("realm"), &v) && slice_is(v, "a, b; c"));
  ASSERT(cm_http_header_var(h, cstr("nonce"), &v) && slice_is(v, "xyz"));
  ASSERT(cm_http_header_var(h, cstr("qop"), &v) && slice_is(v, "auth"));
  ASSERT(!cm_http_header_var(h, cstr("name"), &v)); /* inside "username" */
  ASSERT(!cm_http_header_var(h, cstr(""), &v));
}

static void test_header_var_quotes(void) {
  struct cm_str v;
  /* A name inside a quoted value is not a parameter. */
  struct cm_str h = guarded("a=\"b=1\"; b=2");
  ASSERT(cm_http_header_var(h, cstr("b"), &v) && slice_is(v, "2"));
  h = guarded("a=\"x\\\"y\"");
  ASSERT(cm_http_header_var(h, cstr("a"), &v) && slice_is(v, "x\\\"y")); /* raw quoted-pair */
  h = guarded("a=\"unterminated");
  ASSERT(cm_http_header_var(h, cstr("a"), &v) && slice_is(v, "unterminated"));
  h = guarded("a=\"");
  ASSERT(cm_http_header_var(h, cstr("a"), &v) && v.len == 0);
  h = guarded("a=");
  ASSERT(cm_http_header_var(h, cstr("a"), &v) && v.len == 0);
  h = guarded("a");
  ASSERT(!cm_http_header_var(h, cstr("a"), &v));
  h = guarded("\"a=1\"");
  ASSERT(!cm_http_header_var(h, cstr("a"), &v));
}

int main(void) {
  RUN(test_url_decode);
  RUN(test_url_decode_nul_and_binary);
  RUN(test_url_decode_bad_escape);
  RUN(test_url_decode_room);
  RUN(test_url_decode_limit);
  RUN(test_var);
  RUN(test_header_var);
  RUN(test_header_var_quotes);
  return cm_test_done();
}
