/* test_http_multipart.c: unit tests of the multipart/form-data parser
 * (http_multipart.c).  Bodies sit at a guard page (cm_test_guard), without
 * a NUL, so any read past the end faults at once. */
#include "test.h"

static struct cm_str body(const char *s, size_t n) { return cm_str_n(cm_test_guard(s, n), n); }
static struct cm_str body_c(const char *s) { return body(s, strlen(s)); }

static const char form[] =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"field1\"\r\n"
    "\r\n"
    "value1\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "hello\r\nworld\r\n"
    "--XyZ--\r\n";

/* The slice `s` lies inside `b` (or is the empty {NULL, 0}). */
static void check_inside(struct cm_str s, struct cm_str b) {
  if (s.len == 0) ASSERT(s.buf == NULL);
  else
    ASSERT(s.buf >= b.buf && s.buf + s.len <= b.buf + b.len);
}

static void check_part(const struct cm_http_part *p, struct cm_str b, const char *name, const char *filename,
                       const char *content) {
  ASSERT_STR(p->name, name);
  ASSERT_STR(p->filename, filename);
  ASSERT_STR(p->body, content);
  check_inside(p->name, b);
  check_inside(p->filename, b);
  check_inside(p->body, b);
}

static void test_two_parts(void) {
  struct cm_str b = body_c(form);
  struct cm_http_part p;
  size_t ofs = cm_http_next_multipart(b, 0, &p);
  ASSERT(ofs > 0 && memcmp(b.buf + ofs, "--XyZ\r\n", 7) == 0);
  check_part(&p, b, "field1", "", "value1");
  ofs = cm_http_next_multipart(b, ofs, &p);
  ASSERT(ofs > 0 && memcmp(b.buf + ofs, "--XyZ--", 7) == 0);
  check_part(&p, b, "file", "a.txt", "hello\r\nworld");
  p.name = cm_str_c("stale");
  ASSERT_EQ(cm_http_next_multipart(b, ofs, &p), 0u);
  check_part(&p, b, "", "", "");
  /* An offset inside a part finds the next delimiter after it. */
  ofs = cm_http_next_multipart(b, 1, &p);
  ASSERT(ofs > 0);
  check_part(&p, b, "file", "a.txt", "hello\r\nworld");
  ASSERT_EQ(cm_http_next_multipart(b, b.len, &p), 0u);
  ASSERT_EQ(cm_http_next_multipart(b, b.len + 1, &p), 0u);
}

/* The parts of `text`, joined as "name|filename|body;" into out. */
static void parts_of(const char *text, size_t n, char *out, size_t size) {
  struct cm_str b = body(text, n);
  struct cm_http_part p;
  size_t ofs = 0, used = 0;
  out[0] = '\0';
  while ((ofs = cm_http_next_multipart(b, ofs, &p)) > 0) {
    int k = snprintf(out + used, size - used, "%.*s|%.*s|%.*s;", (int) p.name.len,
                     p.name.buf ? p.name.buf : "", (int) p.filename.len, p.filename.buf ? p.filename.buf : "",
                     (int) p.body.len, p.body.buf ? p.body.buf : "");
    ASSERT(k > 0 && (size_t) k < size - used);
    used += (size_t) k;
  }
}

struct mp_case {
  const char *text, *want;
};

static const struct mp_case cases[] = {
    /* unquoted values, any header case, padding after the boundary */
    {"--b  \r\ncontent-disposition: form-data; name=foo\r\n\r\nx\r\n--b--\r\n", "foo||x;"},
    {"--b\r\nCONTENT-DISPOSITION:form-data;name=\"n\";filename=f.bin\r\n\r\ny\r\n--b\t\r\n\r\nz\r\n--b--",
     "n|f.bin|y;||z;"},
    /* "--b" that does not start a delimiter line is content */
    {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1--b\r\n--bc\r\n\r\n--b--\r\n",
     "a||1--b\r\n--bc\r\n;"},
    /* empty content, and a part without headers */
    {"--b\r\nContent-Disposition: form-data; name=\"e\"\r\n\r\n\r\n--b\r\n\r\ndata\r\n--b--\r\n",
     "e||;||data;"},
    /* a quoted filename holding "name=" does not hide the real name */
    {"--b\r\nContent-Disposition: form-data; filename=\"name=evil\"; name=\"real\"\r\n\r\nv\r\n--b--\r\n",
     "real|name=evil|v;"},
    {"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--b--\r\n", "f||;"},
    /* other headers with name= are not Content-Disposition */
    {"--b\r\nContent-Type: text/plain; name=x\r\n\r\nv\r\n--b--\r\n", "||v;"},
    /* a part counts only once its closing delimiter is there */
    {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b\r\n\r\ncut", "a||1;"},
    {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b", ""}, /* "--bx" may follow */
    {"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--", ""},
    /* malformed */
    {"", ""},
    {"--", ""},
    {"--\r\n\r\nx\r\n--\r\n", ""},
    {"-b\r\n\r\nx\r\n-b--", ""},
    {"--b", ""},
    {"--b\r\nNo-Blank-Line: x\r\n--b--\r\n", ""},
    {"--b\r\n\r\n--b\r\n", ""},
    {"--b--\r\n", ""},
    {"preamble\r\n--b\r\n\r\nx\r\n--b--\r\n", ""},
};

static void test_cases(void) {
  char out[256];
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    parts_of(cases[i].text, strlen(cases[i].text), out, sizeof(out));
    if (strcmp(out, cases[i].want) != 0) fprintf(stderr, "case %zu: got '%s'\n", i, out);
    ASSERT(strcmp(out, cases[i].want) == 0);
  }
}

static void test_boundary_length(void) {
  char text[256], want[8], out[64];
  for (size_t n = 69; n <= 71; n++) {
    size_t len = 0;
    memcpy(text, "--", 2);
    memset(text + 2, 'q', n);
    len = 2 + n;
    len += (size_t) snprintf(text + len, sizeof(text) - len, "\r\n\r\nv\r\n--");
    memset(text + len, 'q', n);
    len += n;
    memcpy(text + len, "--", 2);
    len += 2;
    snprintf(want, sizeof(want), "%s", n <= 70 ? "||v;" : "");
    parts_of(text, len, out, sizeof(out));
    ASSERT(strcmp(out, want) == 0);
  }
}

/* Binary content, NULs and CRs included, comes back byte for byte. */
static void test_binary(void) {
  static const char text[] =
      "--b\r\nContent-Disposition: form-data; name=\"bin\"\r\n\r\n\0\r\x01\xff\n\r\n--b--";
  struct cm_str b = body(text, sizeof(text) - 1);
  struct cm_http_part p;
  ASSERT(cm_http_next_multipart(b, 0, &p) > 0);
  ASSERT(p.body.len == 5 && memcmp(p.body.buf, "\0\r\x01\xff\n", 5) == 0);
}

/* Every prefix of a valid body: no fault, slices inside, and parts only
 * once complete. */
static void test_prefixes(void) {
  size_t n = strlen(form), count;
  for (size_t len = 0; len <= n; len++) {
    struct cm_str b = body(form, len);
    struct cm_http_part p;
    size_t ofs = 0;
    for (count = 0; (ofs = cm_http_next_multipart(b, ofs, &p)) > 0; count++) {
      ASSERT(ofs <= len);
      check_inside(p.name, b);
      check_inside(p.filename, b);
      check_inside(p.body, b);
    }
    ASSERT(count <= 2);
    if (len < strlen(form) - strlen("hello\r\nworld\r\n--XyZ--\r\n")) ASSERT(count <= 1);
    if (len >= n - strlen("\r\n")) ASSERT_EQ(count, 2u); /* "--XyZ--" is there */
  }
}

int main(void) {
  RUN(test_two_parts);
  RUN(test_cases);
  RUN(test_boundary_length);
  RUN(test_binary);
  RUN(test_prefixes);
  return cm_test_done();
}
