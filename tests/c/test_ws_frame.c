/* test_ws_frame.c: the pure WebSocket codec (ws_frame.c): frame headers,
 * masking, the writer, UTF-8 validation and close payloads.  Every parsed
 * input ends right before a guard page (cm_test_guard), so a read past
 * `len` crashes instead of passing by luck. */
#include "test.h"

struct bytes {
  const char *s;
  size_t n;
};
#define B(lit) \
  { (lit), sizeof(lit) - 1 }

static int header(struct bytes in, struct cm_ws_frame *f) {
  return cm_ws_parse_header(cm_test_guard(in.s, in.n), in.n, f);
}

static void test_header_lengths(void) {
  struct cm_ws_frame f;
  /* 7-bit length, unmasked */
  ASSERT_EQ(header((struct bytes) B("\x81\x05hello"), &f), 2);
  ASSERT(f.fin && !f.masked && f.op == CM_WS_OP_TEXT && f.len == 5 && f.flags == 0x81);
  /* 16-bit length (126) and 64-bit (127), masked */
  ASSERT_EQ(header((struct bytes) B("\x82\xfe\x01\x00"
                                    "abcd"),
                   &f),
            8);
  ASSERT(f.masked && f.len == 256 && memcmp(f.mask, "abcd", 4) == 0);
  ASSERT_EQ(header((struct bytes) B("\x02\xff\x00\x00\x00\x01\x00\x00\x00\x00"
                                    "wxyz"),
                   &f),
            14);
  ASSERT(!f.fin && f.op == CM_WS_OP_BINARY && f.len == (1ull << 32));
  /* The largest legal length, and the top bit that makes it illegal. */
  ASSERT_EQ(header((struct bytes) B("\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"), &f), 10);
  ASSERT(f.len == INT64_MAX);
  ASSERT_EQ(header((struct bytes) B("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"), &f), -1);
}

static void test_header_incomplete_at_every_cut(void) {
  static const struct bytes whole[] = {
      B("\x81\x85"
        "abcd"),
      B("\x82\xfe\x01\x00"
        "abcd"),
      B("\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00"
        "abcd"),
      B("\x89\x00"),
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(whole); i++) {
    struct cm_ws_frame f;
    for (size_t cut = 0; cut < whole[i].n; cut++) {
      struct bytes part = {whole[i].s, cut};
      ASSERT_EQ(header(part, &f), 0);
    }
    ASSERT_EQ(header(whole[i], &f), (int) whole[i].n);
  }
}

static void test_parse_whole_frame(void) {
  struct cm_ws_frame f;
  static const char in[] =
      "\x81\x03"
      "abc"
      "\x82\x00";
  const char *g = cm_test_guard(in, sizeof(in) - 1);
  ASSERT_EQ(cm_ws_parse(g, sizeof(in) - 1, &f), 5);
  ASSERT(f.payload.buf == g + 2 && f.payload.len == 3);
  ASSERT_EQ(cm_ws_parse(g, 4, &f), 0); /* payload not all there */
  ASSERT_EQ(cm_ws_parse(g + 5, 2, &f), 2);
  ASSERT(f.len == 0 && f.op == CM_WS_OP_BINARY);
  /* a huge announced length with few bytes: incomplete, never a wrap */
  static const char big[] =
      "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"
      "x";
  ASSERT_EQ(cm_ws_parse(cm_test_guard(big, sizeof(big) - 1), sizeof(big) - 1, &f), 0);
}

static void test_check_rules(void) {
  struct cm_ws_frame f;
  memset(&f, 0, sizeof(f));
  f.fin = true;
  f.masked = true;
  f.op = CM_WS_OP_TEXT;
  f.flags = 0x81;
  ASSERT(cm_ws_check(&f, true, 0) == NULL);
  ASSERT(cm_ws_check(&f, false, 0) != NULL); /* a client receives a masked frame */
  f.masked = false;
  ASSERT(cm_ws_check(&f, true, 0) != NULL); /* a server receives an unmasked one */
  ASSERT(cm_ws_check(&f, false, 0) == NULL);
  f.flags = 0xc1; /* RSV1 */
  ASSERT(cm_ws_check(&f, false, 0) != NULL);
  ASSERT(cm_ws_check(&f, false, CM_WS_RSV1) == NULL);
  f.flags = 0xa1; /* RSV2: never with permessage-deflate */
  ASSERT(cm_ws_check(&f, false, CM_WS_RSV1) != NULL);
  for (uint8_t op = 0; op < 16; op++) {
    f.op = op;
    f.flags = (uint8_t) (0x80 | op);
    bool reserved = (op >= 3 && op <= 7) || op >= 11;
    ASSERT((cm_ws_check(&f, false, 0) != NULL) == reserved);
  }
  f.op = CM_WS_OP_PING;
  f.flags = 0x89;
  f.len = 125;
  ASSERT(cm_ws_check(&f, false, 0) == NULL);
  f.len = 126;
  ASSERT(cm_ws_check(&f, false, 0) != NULL);
  f.len = 1;
  f.fin = false;
  f.flags = 0x09;
  ASSERT(cm_ws_check(&f, false, 0) != NULL);
  f.op = CM_WS_OP_CONTINUE;
  f.flags = 0x40; /* RSV1 on a continuation */
  ASSERT(cm_ws_check(&f, false, CM_WS_RSV1) != NULL);
}

static void test_mask_in_pieces(void) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  /* RFC 6455 5.7: a masked "Hello" */
  uint8_t hello[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  cm_ws_mask(hello, 5, key, 0);
  ASSERT(memcmp(hello, "Hello", 5) == 0);
  uint8_t a[100], b[100];
  for (int i = 0; i < 100; i++) a[i] = b[i] = (uint8_t) (i * 7);
  cm_ws_mask(a, 100, key, 0);
  cm_ws_mask(b, 3, key, 0);
  cm_ws_mask(b + 3, 50, key, 3);
  cm_ws_mask(b + 53, 47, key, 53);
  ASSERT(memcmp(a, b, 100) == 0);
}

static void test_writer_round_trip(void) {
  static const uint64_t lens[] = {0, 1, 125, 126, 65535, 65536, 1ull << 40};
  static const uint8_t key[4] = {1, 2, 3, 4};
  for (size_t i = 0; i < CM_ARRAY_SIZE(lens); i++) {
    for (int masked = 0; masked < 2; masked++) {
      uint8_t out[CM_WS_MAX_HEADER];
      size_t n = cm_ws_header(out, 0x82, lens[i], masked ? key : NULL);
      size_t want = (lens[i] < 126 ? 2 : lens[i] <= 0xffff ? 4 : 10) + (masked ? 4 : 0);
      ASSERT_EQ(n, want);
      struct cm_ws_frame f;
      ASSERT_EQ(cm_ws_parse_header(cm_test_guard(out, n), n, &f), (int) n);
      ASSERT(f.len == lens[i] && f.masked == (masked != 0) && f.flags == 0x82);
      if (masked) ASSERT(memcmp(f.mask, key, 4) == 0);
    }
  }
}

static bool utf8(struct bytes in) { return cm_utf8_valid(cm_test_guard(in.s, in.n), in.n); }

static void test_utf8(void) {
  static const struct bytes good[] = {
      B(""),
      B("plain ascii long enough for the fast path"),
      B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
      B("\xc2\x80"),
      B("\xdf\xbf"),
      B("\xe0\xa0\x80"),
      B("\xef\xbf\xbf"),
      B("\xf0\x90\x80\x80"),
      B("\xf4\x8f\xbf\xbf"),
      B("\xed\x9f\xbf"),
      B("\xee\x80\x80"),
  };
  static const struct bytes bad[] = {
      B("\x80"),
      B("\xbf"),
      B("\xc0\x80"),
      B("\xc1\xbf"),
      B("\xe0\x80\x80"),
      B("\xe0\x9f\xbf"),
      B("\xed\xa0\x80"),
      B("\xed\xbf\xbf"),
      B("\xf0\x80\x80\x80"),
      B("\xf0\x8f\xbf\xbf"),
      B("\xf4\x90\x80\x80"),
      B("\xf5\x80\x80\x80"),
      B("\xfe"),
      B("\xff"),
      B("\xc2"),
      B("\xe0\xa0"),
      B("abcdefgh\xc2"),
      B("abcdefghijklmnop\x80zz"),
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(good); i++) ASSERT(utf8(good[i]));
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) ASSERT(!utf8(bad[i]));
  /* Split anywhere, fed in pieces: the same answers. */
  static const char s[] =
      "a\xf0\x90\x80\x80"
      "b\xe2\x82\xac";
  for (size_t cut = 0; cut <= sizeof(s) - 1; cut++) {
    struct cm_utf8 u = {0, 0, 0, 0};
    ASSERT(cm_utf8_feed(&u, cm_test_guard(s, cut), cut));
    if (cut == 2 || cut == 3 || cut == 4 || cut == 7 || cut == 8) ASSERT(!cm_utf8_done(&u));
    ASSERT(cm_utf8_feed(&u, cm_test_guard(s + cut, sizeof(s) - 1 - cut), sizeof(s) - 1 - cut));
    ASSERT(cm_utf8_done(&u));
  }
  /* Fail fast: the bad byte fails the feed, whatever follows. */
  struct cm_utf8 u = {0, 0, 0, 0};
  ASSERT(!cm_utf8_feed(&u, "ok\xed\xa0", 4));
  ASSERT(!cm_utf8_feed(&u, "fine", 4));
}

static void test_close_codes(void) {
  static const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const unsigned no[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
  for (size_t i = 0; i < CM_ARRAY_SIZE(ok); i++) ASSERT(cm_ws_close_code_ok(ok[i]));
  for (size_t i = 0; i < CM_ARRAY_SIZE(no); i++) ASSERT(!cm_ws_close_code_ok(no[i]));
  unsigned code;
  struct cm_str reason;
  ASSERT_EQ(cm_ws_close_parse(cm_str_n(NULL, 0), &code, &reason), 0);
  ASSERT_EQ(code, 1005u);
  ASSERT_EQ(cm_ws_close_parse(cm_str_n(cm_test_guard("\x03", 1), 1), &code, &reason), 1002);
  ASSERT_EQ(cm_ws_close_parse(cm_str_n(cm_test_guard("\x03\xe8"
                                                     "bye",
                                                     5),
                                       5),
                              &code, &reason),
            0);
  ASSERT(code == 1000 && cm_str_eq(reason, "bye"));
  ASSERT_EQ(cm_ws_close_parse(cm_str_n(cm_test_guard("\x03\xed", 2), 2), &code, &reason), 1002);
  ASSERT_EQ(cm_ws_close_parse(cm_str_n(cm_test_guard("\x03\xe8\xff", 3), 3), &code, &reason), 1007);
}

int main(void) {
  RUN(test_header_lengths);
  RUN(test_header_incomplete_at_every_cut);
  RUN(test_parse_whole_frame);
  RUN(test_check_rules);
  RUN(test_mask_in_pieces);
  RUN(test_writer_round_trip);
  RUN(test_utf8);
  RUN(test_close_codes);
  return cm_test_done();
}
