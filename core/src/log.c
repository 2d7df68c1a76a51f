/* log.c: the process-wide log level and the line sink. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define LINE_MAX_TEXT 512 /* formatted text, NUL included; longer is cut */

/* Atomic because worker threads may log (via CM_LOG's level check) while
 * the application changes the level; relaxed order is enough for a knob. */
static atomic_int log_level = CM_LL_NONE;

static void default_sink(int level, const char *file, int line, const char *text, void *arg);
static cm_log_fn sink = default_sink;
static void *sink_arg;

void cm_log_set(int level) {
  if (level < CM_LL_NONE) level = CM_LL_NONE;
  if (level > CM_LL_VERBOSE) level = CM_LL_VERBOSE;
  atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int cm_log_get(void) { return atomic_load_explicit(&log_level, memory_order_relaxed); }

void cm_log_set_fn(cm_log_fn fn, void *arg) {
  sink = fn == NULL ? default_sink : fn;
  sink_arg = fn == NULL ? NULL : arg;
}

static const char *level_name(int level) {
  static const char *const names[] = {"NONE", "ERROR", "INFO", "DEBUG", "VERBOSE"};
  return level >= 0 && level < (int) CM_ARRAY_SIZE(names) ? names[level] : "?";
}

static const char *basename_of(const char *file) {
  if (file == NULL) return "?";
  const char *slash = strrchr(file, '/');
  return slash == NULL ? file : slash + 1;
}

/* One write(2) per line so lines from several threads or processes sharing
 * stderr do not interleave mid-line (stdio could split them). */
static void default_sink(int level, const char *file, int line, const char *text, void *arg) {
  (void) arg;
  char out[LINE_MAX_TEXT + 128];
  int n = snprintf(out, sizeof(out), "cm %s %s:%d %s\n", level_name(level), basename_of(file), line, text);
  if (n < 0) return;
  if ((size_t) n >= sizeof(out)) { /* a very long file name: keep the newline */
    n = (int) sizeof(out) - 1;
    out[n - 1] = '\n';
  }
  while (write(STDERR_FILENO, out, (size_t) n) < 0 && errno == EINTR) {
  }
}

void cm__log(int level, const char *file, int line, const char *fmt, ...) {
  /* Level NONE (or below) is "off", never a message level. */
  if (level <= CM_LL_NONE || level > cm_log_get()) return;
  char text[LINE_MAX_TEXT];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  if (n < 0) {
    snprintf(text, sizeof(text), "%s", "(log format error)");
  } else if ((size_t) n >= sizeof(text)) {
    /* Mark the cut so a reader knows the line is incomplete. */
    memcpy(text + sizeof(text) - 4, "...", 4);
  }
  sink(level, file, line, text, sink_arg);
}
