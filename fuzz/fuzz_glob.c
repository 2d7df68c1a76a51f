/* fuzz_glob.c: cm_match and cm_match_count (cm/util.h).
 *
 * Input layout: byte 0 is the pattern length (mod 64), byte 1 the number of
 * capture slots to pass (mod 9), then the pattern, then the subject (both
 * exact-size copies).  Checked:
 *  - matching agrees with a plain dynamic-programming matcher written here;
 *  - the captures rebuild the subject: walking the pattern, each literal
 *    byte is the next subject byte and each wildcard's capture is the next
 *    run of the subject ('?' one byte, '*' without '/');
 *  - fewer slots give the same answer and the same first captures; unused
 *    slots, and all slots without a match, are {NULL, 0};
 *  - it stays fast: the cost is O(len(s) * len(pattern)), and libFuzzer's
 *    -timeout would report a blow-up such as "*a*a*a*b" on "aaaa...". */
#include <stddef.h>
#include <stdint.h>

#include "cm/util.h"
#include "fuzz_util.h"

static bool is_wild(char ch) { return ch == '?' || ch == '*' || ch == '#'; }

/* Reference: can pattern p[i..] match s[j..]?  One row per pattern position,
 * from the end: O(np * ns) time, O(ns) memory. */
static bool ref_match(const char *p, size_t np, const char *s, size_t ns) {
  bool *next = calloc(ns + 1, 1), *cur = calloc(ns + 1, 1);
  FUZZ_CHECK(next != NULL && cur != NULL);
  next[ns] = true; /* empty pattern matches only the empty rest */
  for (size_t i = np; i-- > 0;) {
    char pc = p[i];
    cur[ns] = (pc == '*' || pc == '#') && next[ns];
    for (size_t j = ns; j-- > 0;) {
      if (pc == '*') cur[j] = next[j] || (s[j] != '/' && cur[j + 1]);
      else if (pc == '#')
        cur[j] = next[j] || cur[j + 1];
      else if (pc == '?')
        cur[j] = next[j + 1];
      else
        cur[j] = pc == s[j] && next[j + 1];
    }
    bool *t = next;
    next = cur;
    cur = t;
  }
  bool r = next[0];
  free(next);
  free(cur);
  return r;
}

/* The captures of a match rebuild the subject, wildcard by wildcard. */
static void check_rebuild(struct cm_str s, struct cm_str p, const struct cm_str *caps) {
  size_t pos = 0, k = 0;
  for (size_t i = 0; i < p.len; i++) {
    if (!is_wild(p.buf[i])) {
      FUZZ_CHECK(pos < s.len && s.buf[pos] == p.buf[i]);
      pos++;
      continue;
    }
    struct cm_str c = caps[k++];
    if (c.len == 0) {
      FUZZ_CHECK(c.buf == NULL && p.buf[i] != '?');
      continue;
    }
    FUZZ_CHECK(c.buf == s.buf + pos && c.len <= s.len - pos);
    if (p.buf[i] == '?') FUZZ_CHECK(c.len == 1);
    if (p.buf[i] == '*') FUZZ_CHECK(memchr(c.buf, '/', c.len) == NULL);
    pos += c.len;
  }
  FUZZ_CHECK(pos == s.len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t np = data[0] % 64, nslots = data[1] % 9;
  if (size - 2 < np) return 0;
  char *pbuf = fuzz_dup(data + 2, np, 0), *sbuf = fuzz_dup(data + 2 + np, size - 2 - np, 0);
  struct cm_str p = cm_str_n(pbuf, np), s = cm_str_n(sbuf, size - 2 - np);

  size_t count = 0;
  for (size_t i = 0; i < np; i++) count += is_wild(pbuf[i]);
  FUZZ_CHECK(cm_match_count(p) == count);

  /* All captures, plus one spare slot that must stay empty. */
  struct cm_str *caps = malloc((count + 1) * sizeof(*caps));
  FUZZ_CHECK(caps != NULL);
  bool m = cm_match(s, p, caps, count + 1);
  FUZZ_CHECK(m == ref_match(pbuf, np, sbuf, s.len));
  FUZZ_CHECK(caps[count].buf == NULL && caps[count].len == 0);
  if (m) check_rebuild(s, p, caps);
  for (size_t k = 0; !m && k <= count; k++) FUZZ_CHECK(caps[k].buf == NULL && caps[k].len == 0);

  struct cm_str few[8];
  FUZZ_CHECK(cm_match(s, p, nslots > 0 ? few : NULL, nslots) == m);
  for (size_t k = 0; k < nslots; k++) {
    struct cm_str want = k < count ? caps[k] : (struct cm_str){NULL, 0};
    FUZZ_CHECK(few[k].buf == want.buf && few[k].len == want.len);
  }
  free(caps);
  free(pbuf);
  free(sbuf);
  return 0;
}
