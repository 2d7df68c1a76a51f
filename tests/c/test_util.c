/* test_util.c: unit tests of util.c: base64 against RFC 4648 and OpenSSL,
 * CRC-32 against known values and a bit-by-bit reference, glob matching
 * against a table and a naive backtracking reference, digests against the
 * RFC/NIST vectors, and the random functions.  Inputs sit at a guard page
 * (cm_test_guard) so that any over-read faults. */
#include <time.h>

#include <openssl/evp.h>

#include "cm/util.h"
#include "test.h"

/* A small deterministic generator (xorshift) for reproducible test data. */
static uint32_t rng_state = 2463534242u;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 17;
  rng_state ^= rng_state << 5;
  return rng_state;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void hex(const uint8_t *b, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- base64 --------------------------------------------------------------- */

static void test_base64_rfc4648(void) {
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  char out[16];
  for (size_t i = 0; i < CM_ARRAY_SIZE(plain); i++) {
    size_t n = strlen(plain[i]), e = strlen(enc[i]);
    const char *g = cm_test_guard(plain[i], n);
    ASSERT_EQ(cm_base64_encoded_len(n), e);
    ASSERT_EQ(cm_base64_encode(g, n, out, sizeof(out)), (long) e);
    ASSERT(memcmp(out, enc[i], e) == 0);
    g = cm_test_guard(enc[i], e);
    ASSERT_EQ(cm_base64_decode(g, e, out, sizeof(out)), (long) n);
    ASSERT(memcmp(out, plain[i], n) == 0);
  }
}

/* Every length 0..64 (and the whole byte range) against OpenSSL's encoder,
 * and back. */
static void test_base64_roundtrip(void) {
  uint8_t src[256], back[256];
  char enc[400], ref[400];
  for (size_t i = 0; i < sizeof(src); i++) src[i] = (uint8_t) i;
  for (size_t n = 0; n <= 256; n = n < 64 ? n + 1 : n + 64) {
    if (n > 0 && n < 64) src[rng() % n] = (uint8_t) rng();
    const char *g = cm_test_guard(src, n);
    long e = cm_base64_encode(g, n, enc, cm_base64_encoded_len(n));
    ASSERT(e == (long) cm_base64_encoded_len(n));
    ASSERT(EVP_EncodeBlock((unsigned char *) ref, src, (int) n) == (int) e);
    ASSERT(memcmp(enc, ref, (size_t) e) == 0);
    ASSERT_EQ(cm_base64_encode(g, n, enc, (size_t) e - (n > 0)), n > 0 ? -1 : 0); /* one short */
    g = cm_test_guard(enc, (size_t) e);
    ASSERT(cm_base64_decoded_max((size_t) e) >= n);
    ASSERT_EQ(cm_base64_decode(g, (size_t) e, back, n), (long) n); /* exact room */
    ASSERT(n == 0 || memcmp(back, src, n) == 0);
    if (n > 0) ASSERT_EQ(cm_base64_decode(g, (size_t) e, back, n - 1), -1);
    /* Without padding: the same bytes. */
    size_t unpadded = (size_t) e;
    while (unpadded > 0 && enc[unpadded - 1] == '=') unpadded--;
    g = cm_test_guard(enc, unpadded);
    ASSERT_EQ(cm_base64_decode(g, unpadded, back, sizeof(back)), (long) n);
    ASSERT(n == 0 || memcmp(back, src, n) == 0);
  }
}

static void check_decode(const char *in, const char *want, long n) {
  uint8_t out[32];
  const char *g = cm_test_guard(in, strlen(in));
  long got = cm_base64_decode(g, strlen(in), out, sizeof(out));
  if (got != n) fprintf(stderr, "decode(%s) = %ld, want %ld\n", in, got, n);
  ASSERT_EQ(got, n);
  if (n > 0) ASSERT(memcmp(out, want, (size_t) n) == 0);
}

static void test_base64_decode_edges(void) {
  check_decode("Zm8", "fo", 2); /* missing padding */
  check_decode("Zg", "f", 1);
  check_decode("Zm9vYmFyZ", "foobar", 6); /* a lone last character is ignored */
  check_decode("Z", "", 0);
  check_decode("QUJDRA==", "ABCD", 4);
  check_decode("Zh==", "f", 1); /* non-zero spare bits are ignored */
  check_decode("////", "\xff\xff\xff", 3);
  check_decode("++++", "\xfb\xef\xbe", 3);
  static const char *const bad[] = {
      "Zm9v!", "Zm 9v", "Zm9v\n",   "Zg=",  "Z===",    "Zg==Zg==", "=Zg=",  "Zm9vY=Fy",
      "=",     "==",    "Zm9v====", "Zm-_", "Zm\x80v", "Z=",       "Zm9\0",
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    size_t n = strlen(bad[i]) + (i == CM_ARRAY_SIZE(bad) - 1); /* the last one holds a NUL */
    uint8_t out[32];
    const char *g = cm_test_guard(bad[i], n);
    if (cm_base64_decode(g, n, out, sizeof(out)) != -1) fprintf(stderr, "decode(%s) accepted\n", bad[i]);
    ASSERT_EQ(cm_base64_decode(g, n, out, sizeof(out)), -1);
  }
  ASSERT_EQ(cm_base64_decode(NULL, 0, NULL, 0), 0);
  ASSERT_EQ(cm_base64_encode(NULL, 0, NULL, 0), 0);
  ASSERT_EQ(cm_base64_encoded_len(SIZE_MAX), SIZE_MAX);
  ASSERT_EQ(cm_base64_encoded_len(SIZE_MAX / 4 * 3 - 3), SIZE_MAX / 4 * 4 - 4);
}

/* ---- CRC-32 --------------------------------------------------------------- */

/* The definition, one bit at a time: the reference for the table. */
static uint32_t crc_bitwise(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return ~crc;
}

static void test_crc32(void) {
  const char *g = cm_test_guard("123456789", 9);
  ASSERT_EQ(cm_crc32(0, g, 9), 0xCBF43926u);
  ASSERT_EQ(cm_crc32(0, NULL, 0), 0u);
  ASSERT_EQ(cm_crc32(0x12345678u, NULL, 0), 0x12345678u);
  const char *fox = "The quick brown fox jumps over the lazy dog";
  ASSERT_EQ(cm_crc32(0, fox, strlen(fox)), 0x414FA339u);
  ASSERT_EQ(cm_crc32(123, "hello", 5), 0xB8127758u); /* binascii.crc32(b"hello", 123) */
  /* Every table entry: a one-byte message selects entry 0xFF ^ byte. */
  for (int b = 0; b < 256; b++) {
    uint8_t byte = (uint8_t) b;
    ASSERT_EQ(cm_crc32(0, &byte, 1), crc_bitwise(0, &byte, 1));
  }
  uint8_t data[1000];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (uint8_t) rng();
  g = cm_test_guard(data, sizeof(data));
  uint32_t whole = cm_crc32(0, g, sizeof(data));
  ASSERT_EQ(whole, crc_bitwise(0, data, sizeof(data)));
  for (size_t cut = 0; cut <= sizeof(data); cut += 37) /* incremental == one shot */
    ASSERT_EQ(cm_crc32(cm_crc32(0, g, cut), g + cut, sizeof(data) - cut), whole);
}

/* ---- glob matching -------------------------------------------------------- */

struct match_case {
  const char *s, *p;
  bool ok;
  const char *caps[4]; /* expected captures, NULL-terminated */
};

static const struct match_case match_cases[] = {
    {"/api/v1/foo", "/api/*/foo", true, {"v1"}},
    {"/api/v1/foo", "/api/#", true, {"v1/foo"}},
    {"/api/v1/foo", "/api/*", false, {NULL}},
    {"/api/v1/foo", "#/foo", true, {"/api/v1"}},
    {"abc", "a?c", true, {"b"}},
    {"a/c", "a?c", true, {"/"}},
    {"", "", true, {NULL}},
    {"", "*", true, {""}},
    {"", "#", true, {""}},
    {"", "?", false, {NULL}},
    {"a", "", false, {NULL}},
    {"abc", "abc", true, {NULL}},
    {"abc", "ab", false, {NULL}},
    {"ab", "abc", false, {NULL}},
    {"abc", "ABC", false, {NULL}},
    {"a/b/c", "#/*", true, {"a/b", "c"}}, /* a single resume point would miss this */
    {"ab/x", "*?*x", true, {"ab", "/", ""}},
    {"aaa", "*a", true, {"aa"}},
    {"aaa", "a*", true, {"aa"}},
    {"aaa", "*a*", true, {"", "aa"}},
    {"x/y/z", "*", false, {NULL}},
    {"x/y/z", "#", true, {"x/y/z"}},
    {"foo.bar", "*.*", true, {"foo", "bar"}},
    {"/a/b", "/#/*", true, {"a", "b"}},
    {"abc", "**", true, {"", "abc"}},
    {"abc", "#*", true, {"", "abc"}},
    {"a/b", "*#", true, {"", "a/b"}},
    {"a/b", "??*", true, {"a", "/", "b"}},
    {"a/b", "?*", false, {NULL}},
    {"rpc.sum", "rpc.*", true, {"sum"}},
    {"sum", "rpc.*", false, {NULL}},
    {"/", "/*", true, {""}},
    {"//", "/*/", true, {""}},
    {"a/", "*/", true, {"a"}},
    {"a/b/", "#/", true, {"a/b"}},
    {"ab", "a?b", false, {NULL}},
};

static void check_match(const struct match_case *t) {
  struct cm_str caps[5];
  size_t ns = strlen(t->s), np = strlen(t->p);
  struct cm_str s = cm_str_n(cm_test_guard(t->s, ns), ns);
  char pat[64];
  memcpy(pat, t->p, np); /* the pattern must not share the one guard region */
  bool ok = cm_match(s, cm_str_n(np ? pat : NULL, np), caps, CM_ARRAY_SIZE(caps));
  if (ok != t->ok) fprintf(stderr, "match(%s, %s) = %d\n", t->s, t->p, ok);
  ASSERT_EQ(ok, t->ok);
  size_t k = 0;
  for (; k < 4 && t->caps[k] != NULL; k++) {
    if (!cm_str_eq(caps[k], t->caps[k]))
      fprintf(stderr, "match(%s, %s) cap %zu = '%.*s', want '%s'\n", t->s, t->p, k, (int) caps[k].len,
              caps[k].buf ? caps[k].buf : "", t->caps[k]);
    ASSERT_STR(caps[k], t->caps[k]);
    ASSERT(caps[k].len == 0 ? caps[k].buf == NULL
                            : caps[k].buf >= s.buf && caps[k].buf + caps[k].len <= s.buf + ns);
  }
  if (ok) ASSERT_EQ(k, cm_match_count(cm_str_c(t->p)));
  for (; k < CM_ARRAY_SIZE(caps); k++) ASSERT(caps[k].buf == NULL && caps[k].len == 0);
}

static void test_match_table(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(match_cases); i++) check_match(&match_cases[i]);
}

static void test_match_ncaps(void) {
  struct cm_str s = cm_str_c("a/b/c"), p = cm_str_c("*/*/*"), caps[3];
  caps[2] = cm_str_c("untouched");
  ASSERT(cm_match(s, p, caps, 2));
  ASSERT_STR(caps[0], "a");
  ASSERT_STR(caps[1], "b");
  ASSERT_STR(caps[2], "untouched");
  ASSERT(cm_match(s, p, NULL, 0));
  ASSERT(!cm_match(s, cm_str_c("*/*"), NULL, 0));
  ASSERT_EQ(cm_match_count(p), 3u);
  ASSERT_EQ(cm_match_count(cm_str_c("a?b#c*")), 3u);
  ASSERT_EQ(cm_match_count(cm_str_n(NULL, 0)), 0u);
}

/* Lazy backtracking, exactly as the header defines the captures: each
 * wildcard, first to last, takes the shortest length that lets the rest
 * match.  Exponential; only for short inputs. */
static bool ref_match(const char *s, size_t ns, const char *p, size_t np, size_t *cap, size_t *ncap) {
  if (np == 0) return ns == 0;
  size_t w = *ncap;
  if (*p == '*' || *p == '#') {
    for (size_t len = 0; len <= ns; len++) {
      if (len > 0 && *p == '*' && s[len - 1] == '/') break;
      *ncap = w + 1;
      cap[2 * w] = len;
      if (ref_match(s + len, ns - len, p + 1, np - 1, cap, ncap)) return true;
    }
    *ncap = w;
    return false;
  }
  if (ns == 0 || (*p != '?' && *p != *s)) return false;
  if (*p == '?') cap[2 * w] = 1, *ncap = w + 1;
  if (ref_match(s + 1, ns - 1, p + 1, np - 1, cap, ncap)) return true;
  *ncap = w;
  return false;
}

/* Random strings over {a, b, /} and patterns over {a, b, /, ?, *, #}, each
 * compared with the reference: the verdict and every capture. */
static void test_match_vs_reference(void) {
  static const char salpha[] = "ab/", palpha[] = "ab/?*#";
  char s[12], p[9];
  struct cm_str caps[8];
  size_t ref[16], nref;
  for (int iter = 0; iter < 200000; iter++) {
    size_t ns = rng() % sizeof(s), np = rng() % sizeof(p);
    for (size_t i = 0; i < ns; i++) s[i] = salpha[rng() % 3];
    for (size_t i = 0; i < np; i++) p[i] = palpha[rng() % 6];
    nref = 0;
    bool want = ref_match(s, ns, p, np, ref, &nref);
    bool got = cm_match(cm_str_n(s, ns), cm_str_n(p, np), caps, CM_ARRAY_SIZE(caps));
    if (got != want) fprintf(stderr, "match('%.*s', '%.*s') = %d\n", (int) ns, s, (int) np, p, got);
    ASSERT_EQ(got, want);
    if (!want) continue;
    /* Offsets of the reference captures follow from the lengths. */
    ASSERT_EQ(nref, cm_match_count(cm_str_n(p, np)));
    size_t si = 0, w = 0;
    for (size_t j = 0; j < np; j++) {
      bool wild = p[j] == '?' || p[j] == '*' || p[j] == '#';
      size_t len = wild ? ref[2 * w] : 1;
      if (wild) {
        ASSERT_EQ(caps[w].len, len);
        if (len > 0) ASSERT(caps[w].buf == s + si);
        w++;
      }
      si += len;
    }
    ASSERT_EQ(si, ns);
  }
}

/* Patterns that make a naive backtracker exponential finish at once. */
static void test_match_pathological(void) {
  static char s[100001];
  static const char *const pats[] = {"*a*a*a*a*a*a*a*a*a*ab", "#a#a#a#a#a#a#a#a#a#ab", "*?*?*?*?*?*?*?*?b",
                                     "#/*#/*#/*#/*#/*x"};
  struct cm_str caps[20];
  memset(s, 'a', sizeof(s) - 1);
  for (size_t i = 0; i < CM_ARRAY_SIZE(pats); i++) {
    size_t n = i == 3 ? 20000 : sizeof(s) - 1;
    if (i == 3)
      for (size_t k = 0; k < n; k += 3) s[k] = '/'; /* "/aa/aa/aa..." */
    double t0 = now_s();
    ASSERT(!cm_match(cm_str_n(cm_test_guard(s, n), n), cm_str_c(pats[i]), caps, CM_ARRAY_SIZE(caps)));
    double dt = now_s() - t0;
    printf("# %s against %zu bytes: %.3f s\n", pats[i], n, dt);
    ASSERT(dt < 5.0);
  }
  /* A long pattern takes the malloc path. */
  char longp[2001];
  memset(longp, '?', 2000);
  longp[2000] = '\0';
  memset(s, 'x', 2000);
  ASSERT(cm_match(cm_str_n(s, 2000), cm_str_c(longp), caps, CM_ARRAY_SIZE(caps)));
  ASSERT(caps[19].len == 1 && caps[19].buf == s + 19);
  ASSERT(!cm_match(cm_str_n(s, 1999), cm_str_c(longp), caps, CM_ARRAY_SIZE(caps)));
}

/* ---- random --------------------------------------------------------------- */

static void test_random(void) {
  uint8_t a[64], b[64];
  ASSERT(cm_random(a, sizeof(a)) && cm_random(b, sizeof(b)));
  ASSERT(memcmp(a, b, sizeof(a)) != 0);
  ASSERT(cm_random(NULL, 0));
  static uint8_t big[1 << 20];
  ASSERT(cm_random(big, sizeof(big)));
}

static void test_random_str(void) {
  static char buf[62 * 2000];
  size_t count[256] = {0};
  ASSERT(cm_random_str(buf, sizeof(buf)));
  ASSERT(cm_random_str(NULL, 0));
  for (size_t i = 0; i < sizeof(buf); i++) count[(unsigned char) buf[i]]++;
  for (int c = 0; c < 256; c++) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum) {
      ASSERT_EQ(count[c], 0u);
      continue;
    }
    /* Expected 2000 each, sd ~ 44: a bias of 256 % 62 would show as ~ +25%. */
    if (count[c] < 1700 || count[c] > 2300) fprintf(stderr, "'%c': %zu\n", c, count[c]);
    ASSERT(count[c] >= 1700 && count[c] <= 2300);
  }
}

/* ---- digests -------------------------------------------------------------- */

typedef bool (*digest_fn)(const void *, size_t, uint8_t *);

static void check_digest(digest_fn fn, size_t outlen, const void *data, size_t n, const char *want) {
  uint8_t out[32];
  char h[65];
  ASSERT(fn(n ? cm_test_guard(data, n) : NULL, n, out));
  hex(out, outlen, h);
  if (strcmp(h, want) != 0) fprintf(stderr, "digest: %s, want %s\n", h, want);
  ASSERT(strcmp(h, want) == 0);
}

static void test_digests(void) {
  static const char *const abc56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  check_digest(cm_md5, 16, "", 0, "d41d8cd98f00b204e9800998ecf8427e");
  check_digest(cm_md5, 16, "abc", 3, "900150983cd24fb0d6963f7d28e17f72");
  check_digest(cm_md5, 16, "message digest", 14, "f96b697d7cb7938d525a2f31aaf161d0");
  check_digest(cm_sha1, 20, "", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  check_digest(cm_sha1, 20, "abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
  check_digest(cm_sha1, 20, abc56, 56, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  check_digest(cm_sha256, 32, "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check_digest(cm_sha256, 32, "abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  check_digest(cm_sha256, 32, abc56, 56, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  static char million[1000000];
  memset(million, 'a', sizeof(million));
  check_digest(cm_sha256, 32, million, sizeof(million),
               "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void check_hmac(const void *key, size_t kn, const void *data, size_t n, const char *want) {
  uint8_t out[32], k[256];
  char h[65];
  memcpy(k, key, kn); /* key and data must not share the one guard region */
  ASSERT(cm_hmac_sha256(kn ? k : NULL, kn, n ? cm_test_guard(data, n) : NULL, n, out));
  hex(out, 32, h);
  ASSERT(strcmp(h, want) == 0);
}

/* RFC 4231 test cases 1, 2 and 6, and the empty key and message. */
static void test_hmac(void) {
  uint8_t key[131];
  memset(key, 0x0b, 20);
  check_hmac(key, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  check_hmac("Jefe", 4, "what do ya want for nothing?", 28,
             "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  memset(key, 0xaa, sizeof(key));
  const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  check_hmac(key, sizeof(key), m6, strlen(m6),
             "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  check_hmac("", 0, "", 0, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

int main(void) {
  RUN(test_base64_rfc4648);
  RUN(test_base64_roundtrip);
  RUN(test_base64_decode_edges);
  RUN(test_crc32);
  RUN(test_match_table);
  RUN(test_match_ncaps);
  RUN(test_match_vs_reference);
  RUN(test_match_pathological);
  RUN(test_random);
  RUN(test_random_str);
  RUN(test_digests);
  RUN(test_hmac);
  return cm_test_done();
}
