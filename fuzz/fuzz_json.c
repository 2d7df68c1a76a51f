/* fuzz_json.c: the JSON scanner (cm/json.h): cm_json_get and its typed
 * getters, and cm_json_unescape.
 *
 * Input layout: byte 0 is the length of the path (mod 64), the path follows,
 * the rest is the document.  The path is a NUL-terminated copy (an embedded
 * NUL ends it early); the document an exact-size copy, so a read past its end
 * is an ASan report.  Checked:
 *  - a found token lies inside the document, and is itself one whole JSON
 *    value: scanned alone, "$" gives all of it back;
 *  - found anywhere means the document is valid ("$" is found);
 *  - the typed getters agree with the token's first byte (a string decodes
 *    into a buffer of the token's length, exactly; true/false are booleans;
 *    numbers read as numbers), and cm_json_get_str equals cm_json_unescape
 *    of the token's inside. */
#include <stddef.h>
#include <stdint.h>

#include "cm/json.h"
#include "fuzz_util.h"

static bool is_num_start(char ch) { return ch == '-' || (ch >= '0' && ch <= '9'); }

/* The token, scanned as a document of its own, is one whole value. */
static void check_alone(const char *tok, int len) {
  char *copy = fuzz_dup(tok, (size_t) len, 0);
  int sub = -9, r = cm_json_get(cm_str_n(copy, (size_t) len), "$", &sub);
  FUZZ_CHECK(r == 0 && sub == len);
  free(copy);
}

/* A string token decodes into exactly its own length, the same way through
 * both functions. */
static void check_string(struct cm_str doc, const char *path, const char *tok, int len) {
  char *a = malloc((size_t) len), *b = malloc((size_t) len);
  FUZZ_CHECK(a != NULL && b != NULL && len >= 2);
  long ra = cm_json_get_str(doc, path, a, (size_t) len);
  long rb = cm_json_unescape(cm_str_n(tok + 1, (size_t) len - 2), b, (size_t) len);
  FUZZ_CHECK(ra == rb && ra >= -1 && ra < len);
  if (ra >= 0) FUZZ_CHECK(memcmp(a, b, (size_t) ra + 1) == 0 && a[ra] == '\0');
  free(a);
  free(b);
}

static void check_getters(struct cm_str doc, const char *path, const char *tok, int len) {
  double d;
  long l;
  bool bv;
  bool is_bool = (len == 4 && memcmp(tok, "true", 4) == 0) || (len == 5 && memcmp(tok, "false", 5) == 0);
  FUZZ_CHECK(cm_json_get_bool(doc, path, &bv) == is_bool);
  if (is_bool) FUZZ_CHECK(bv == (tok[0] == 't'));
  bool num = cm_json_get_num(doc, path, &d);
  if (num) FUZZ_CHECK(is_num_start(tok[0]));
  if (is_num_start(tok[0]) && len <= 255) FUZZ_CHECK(num);
  if (cm_json_get_long(doc, path, &l)) FUZZ_CHECK(num);
  char small[1];
  if (tok[0] == '"') check_string(doc, path, tok, len);
  else
    FUZZ_CHECK(cm_json_get_str(doc, path, small, sizeof(small)) == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t plen = data[0] % 64;
  if (size - 1 < plen) return 0;
  char *path = fuzz_dup(data + 1, plen, 1);
  char *buf = fuzz_dup(data + 1 + plen, size - 1 - plen, 0);
  struct cm_str doc = cm_str_n(buf, size - 1 - plen);

  int len = -9, r = cm_json_get(doc, path, &len);
  FUZZ_CHECK(r >= CM_JSON_BAD_PATH);
  if (r >= 0) {
    FUZZ_CHECK(len > 0 && (size_t) r + (size_t) len <= doc.len);
    int rlen, root = cm_json_get(doc, "$", &rlen);
    FUZZ_CHECK(root >= 0 && (size_t) root + (size_t) rlen <= doc.len);
    FUZZ_CHECK(r >= root && r + len <= root + rlen); /* inside the root value */
    check_alone(buf + r, len);
    check_getters(doc, path, buf + r, len);
  } else {
    FUZZ_CHECK(len == -9); /* untouched on failure, as documented */
  }
  /* Unescape the raw bytes too: any input, exact-size destination. */
  char *out = malloc(doc.len + 1);
  FUZZ_CHECK(out != NULL);
  long u = cm_json_unescape(doc, out, doc.len + 1);
  FUZZ_CHECK(u >= -1 && u <= (long) doc.len);
  if (u >= 0) FUZZ_CHECK(out[u] == '\0');
  free(out);
  free(path);
  free(buf);
  return 0;
}
