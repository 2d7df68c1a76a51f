/* test_log.c: unit tests of levelled logging (log.c). */
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"
#include "test.h"

struct capture {
  int count;
  int level;
  int line;
  char file[256];
  char text[1024];
  size_t text_len;
};

static void capture_sink(int level, const char *file, int line, const char *text, void *arg) {
  struct capture *cap = arg;
  cap->count++;
  cap->level = level;
  cap->line = line;
  snprintf(cap->file, sizeof(cap->file), "%s", file);
  cap->text_len = strlen(text);
  snprintf(cap->text, sizeof(cap->text), "%s", text);
}

static void test_level(void) {
  ASSERT_EQ(cm_log_get(), CM_LL_NONE); /* silent by default */
  cm_log_set(CM_LL_DEBUG);
  ASSERT_EQ(cm_log_get(), CM_LL_DEBUG);
  cm_log_set(-5);
  ASSERT_EQ(cm_log_get(), CM_LL_NONE);
  cm_log_set(99);
  ASSERT_EQ(cm_log_get(), CM_LL_VERBOSE);
  cm_log_set(CM_LL_NONE);
}

static void test_capture(void) {
  struct capture cap = {0};
  cm_log_set_fn(capture_sink, &cap);
  cm_log_set(CM_LL_INFO);
  int line = __LINE__ + 1;
  CM_INFO("conn %d: %s", 7, "open");
  ASSERT_EQ(cap.count, 1);
  ASSERT_EQ(cap.level, CM_LL_INFO);
  ASSERT_EQ(cap.line, line);
  ASSERT(strcmp(cap.file, __FILE__) == 0); /* the sink gets the full path */
  ASSERT(strcmp(cap.text, "conn 7: open") == 0);
  CM_ERROR("%s", "");
  ASSERT(cap.count == 2 && cap.level == CM_LL_ERROR && cap.text_len == 0);
  cm_log_set(CM_LL_NONE);
  cm_log_set_fn(NULL, NULL);
}

static void test_gating(void) {
  struct capture cap = {0};
  cm_log_set_fn(capture_sink, &cap);
  CM_ERROR("x"); /* default NONE: nothing */
  cm__log(CM_LL_ERROR, __FILE__, __LINE__, "direct");
  ASSERT_EQ(cap.count, 0);
  cm_log_set(CM_LL_ERROR);
  CM_INFO("x");
  CM_DEBUG("x");
  CM_VERBOSE("x");
  ASSERT_EQ(cap.count, 0);
  CM_ERROR("e");
  ASSERT_EQ(cap.count, 1);
  cm_log_set(CM_LL_VERBOSE);
  CM_VERBOSE("v");
  ASSERT(cap.count == 2 && cap.level == CM_LL_VERBOSE);
  /* Level NONE is "off", never a message level; out-of-range levels drop. */
  cm__log(CM_LL_NONE, __FILE__, __LINE__, "none");
  cm__log(-1, __FILE__, __LINE__, "neg");
  cm__log(5, __FILE__, __LINE__, "five");
  ASSERT_EQ(cap.count, 2);
  /* cm__log re-checks the level even when called without the macro. */
  cm_log_set(CM_LL_ERROR);
  cm__log(CM_LL_DEBUG, __FILE__, __LINE__, "dbg");
  ASSERT_EQ(cap.count, 2);
  cm_log_set(CM_LL_NONE);
  cm_log_set_fn(NULL, NULL);
}

static void test_truncation(void) {
  struct capture cap = {0};
  static char big[2001];
  memset(big, 'a', 2000);
  big[2000] = '\0';
  cm_log_set_fn(capture_sink, &cap);
  cm_log_set(CM_LL_ERROR);
  CM_ERROR("msg: %s", big);
  ASSERT_EQ(cap.count, 1);
  ASSERT(cap.text_len > 100 && cap.text_len < 1000); /* bounded */
  ASSERT(strncmp(cap.text, "msg: aaaa", 9) == 0);
  ASSERT(strcmp(cap.text + cap.text_len - 3, "...") == 0);
  ASSERT(cap.text[cap.text_len - 4] == 'a');
  /* Just fitting is not marked as truncated. */
  memset(big, 'b', 512);
  big[512] = '\0';
  CM_ERROR("%.*s", 511, big);
  ASSERT(cap.text_len == 511 && cap.text[510] == 'b');
  CM_ERROR("%s", big); /* one byte too many */
  ASSERT(cap.text_len == 511 && strcmp(cap.text + 508, "...") == 0);
  cm_log_set(CM_LL_NONE);
  cm_log_set_fn(NULL, NULL);
}

/* User text passed as an argument is never interpreted as a format. */
static void test_percent(void) {
  struct capture cap = {0};
  cm_log_set_fn(capture_sink, &cap);
  cm_log_set(CM_LL_INFO);
  const char *evil = "100% %s %n %d %%";
  CM_INFO("%s", evil);
  ASSERT(strcmp(cap.text, evil) == 0);
  CM_INFO("got '%s' (%d%%)", evil, 5);
  ASSERT(strcmp(cap.text, "got '100% %s %n %d %%' (5%)") == 0);
  cm_log_set(CM_LL_NONE);
  cm_log_set_fn(NULL, NULL);
}

/* Run `fn` with stderr redirected into a pipe; return what it wrote. */
static size_t grab_stderr(void (*fn)(void), char *out, size_t size) {
  int p[2];
  ASSERT(pipe(p) == 0);
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  ASSERT(saved >= 0 && dup2(p[1], STDERR_FILENO) >= 0);
  fn();
  ASSERT(dup2(saved, STDERR_FILENO) >= 0);
  close(saved);
  close(p[1]);
  ASSERT(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
  ssize_t n = read(p[0], out, size - 1);
  close(p[0]);
  n = n < 0 ? 0 : n;
  out[n] = '\0';
  return (size_t) n;
}

static int default_line;
static void log_default(void) {
  cm_log_set(CM_LL_DEBUG);
  default_line = __LINE__ + 1;
  CM_DEBUG("hello %s", "world");
  CM_VERBOSE("hidden");
  cm_log_set(CM_LL_NONE);
  CM_ERROR("also hidden");
}

static void log_none(void) {
  for (int lv = CM_LL_ERROR; lv <= CM_LL_VERBOSE; lv++) cm__log(lv, __FILE__, __LINE__, "x");
}

static void log_long(void) {
  static char big[2001];
  memset(big, 'z', 2000);
  cm_log_set(CM_LL_ERROR);
  CM_ERROR("%s", big);
  cm_log_set(CM_LL_NONE);
}

static void test_default_sink(void) {
  char out[4096], want[128];
  cm_log_set_fn(NULL, NULL);
  size_t n = grab_stderr(log_default, out, sizeof(out));
  snprintf(want, sizeof(want), "cm DEBUG test_log.c:%d hello world\n", default_line);
  ASSERT(n == strlen(want) && strcmp(out, want) == 0);
  ASSERT_EQ(grab_stderr(log_none, out, sizeof(out)), 0u); /* NONE: silent */
  n = grab_stderr(log_long, out, sizeof(out));
  ASSERT(n > 500 && n < 700 && out[n - 1] == '\n' && strstr(out, "zzz...\n") != NULL);
  ASSERT(strchr(out, '\n') == out + n - 1); /* exactly one line */
  ASSERT(strncmp(out, "cm ERROR test_log.c:", 20) == 0);
}

/* A sink set and then reset to NULL is no longer called. */
static void test_reset_sink(void) {
  struct capture cap = {0};
  cm_log_set_fn(capture_sink, &cap);
  cm_log_set_fn(NULL, &cap);
  char out[256];
  ASSERT_EQ(grab_stderr(log_none, out, sizeof(out)), 0u);
  cm_log_set(CM_LL_ERROR);
  cm_log_set_fn(capture_sink, &cap);
  CM_ERROR("one");
  cm_log_set_fn(NULL, NULL);
  cm_log_set(CM_LL_NONE);
  CM_ERROR("two");
  ASSERT(cap.count == 1 && strcmp(cap.text, "one") == 0);
}

int main(void) {
  RUN(test_level);
  RUN(test_capture);
  RUN(test_gating);
  RUN(test_truncation);
  RUN(test_percent);
  RUN(test_default_sink);
  RUN(test_reset_sink);
  return cm_test_done();
}
