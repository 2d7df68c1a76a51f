/* cm/log.h: levelled logging.  Silent by default (CM_LL_NONE): the library
 * never writes to stderr unless the application raised the level. */
#ifndef CM_LOG_H
#define CM_LOG_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

enum cm_log_level {
  CM_LL_NONE = 0,    /* nothing (default) */
  CM_LL_ERROR = 1,   /* connection errors */
  CM_LL_INFO = 2,    /* listen/close and similar life events */
  CM_LL_DEBUG = 3,   /* per-event detail */
  CM_LL_VERBOSE = 4, /* per-I/O detail */
};

/* Set the process-wide log level; values outside 0..4 are clamped. */
void cm_log_set(int level);
/* The current log level. */
int cm_log_get(void);

/* Where log lines go.  The default writes "cm <level> <file>:<line> <text>\n"
 * to stderr.  `text` is valid only during the call. */
typedef void (*cm_log_fn)(int level, const char *file, int line, const char *text, void *arg);
/* Replace the log sink; NULL restores the default.  Not thread-safe: call at
 * start-up. */
void cm_log_set_fn(cm_log_fn fn, void *arg);

/* Format and emit one line if `level` is enabled.  `fmt` is always a literal
 * in the library; user text is passed as an argument, never as the format. */
void cm__log(int level, const char *file, int line, const char *fmt, ...) CM_PRINTF(4, 5);

#define CM_LOG(level, ...)                                                                       \
  do {                                                                                           \
    if (CM_UNLIKELY(cm_log_get() >= (level))) cm__log((level), __FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
#define CM_ERROR(...) CM_LOG(CM_LL_ERROR, __VA_ARGS__)
#define CM_INFO(...) CM_LOG(CM_LL_INFO, __VA_ARGS__)
#define CM_DEBUG(...) CM_LOG(CM_LL_DEBUG, __VA_ARGS__)
#define CM_VERBOSE(...) CM_LOG(CM_LL_VERBOSE, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* CM_LOG_H */
