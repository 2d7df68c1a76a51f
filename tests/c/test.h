/* test.h: the C test harness.  Each test_<module>.c is one executable whose
 * main() calls RUN(fn) for each test function; a failed ASSERT prints the
 * file, line and expression and aborts (so the sanitizers' reports and the
 * exit status both say what broke).  Output ends with a TAP-like summary
 * line "N passed, 0 failed". */
#ifndef CM_TEST_H
#define CM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cm.h"

extern int cm_test_passed;

#define ASSERT(expr)                                                  \
  do {                                                                \
    if (!(expr)) {                                                    \
      fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #expr); \
      abort();                                                        \
    }                                                                 \
  } while (0)

#define ASSERT_EQ(a, b) ASSERT((a) == (b))
/* Compare a slice with a C string. */
#define ASSERT_STR(slice, cstr) ASSERT(cm_str_eq((slice), (cstr)))

#define RUN(fn)                                  \
  do {                                           \
    fn();                                        \
    cm_test_passed++;                            \
    printf("ok %d - %s\n", cm_test_passed, #fn); \
    fflush(stdout);                              \
  } while (0)

/* Print the summary line; use as `return cm_test_done();` in main. */
int cm_test_done(void);

/* Copy `len` bytes so that they end exactly at a page boundary followed by
 * an inaccessible page: any read past the end faults at once.  The copy is
 * valid until the next call.  (picohttpparser's guard-page idea.) */
const char *cm_test_guard(const void *data, size_t len);

/* Poll `mgr` until `*flag` becomes true or `ms` milliseconds pass; returns
 * the final value of *flag.  Bounded, so no test can hang. */
bool cm_test_poll_until(struct cm_mgr *mgr, const volatile bool *flag, int ms);

/* A plain blocking-connected, then non-blocking, TCP socket to
 * 127.0.0.1:port: the peer of loopback tests (a listener's backlog
 * completes the connect before any accept). */
int cm_test_peer_connect(uint16_t port);

#endif /* CM_TEST_H */
