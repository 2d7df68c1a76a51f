/* test_str.c: unit tests of slices, error texts and event names (str.c). */
#include <limits.h>

#include "internal.h"
#include "test.h"

static void test_slices(void) {
  struct cm_str s = cm_str_c("abc");
  ASSERT(s.len == 3 && memcmp(s.buf, "abc", 3) == 0);
  s = cm_str_c(NULL);
  ASSERT(s.buf == NULL && s.len == 0);
  s = cm_str_c("");
  ASSERT(s.len == 0);
  s = cm_str_n("hello", 2);
  ASSERT(s.len == 2 && cm_str_eq(s, "he"));
  s = cm_str_n("a\0b", 3); /* slices may hold NUL bytes */
  ASSERT(s.len == 3 && !cm_str_eq(s, "a"));
}

static void test_eq(void) {
  ASSERT(cm_str_eq(cm_str_c("GET"), "GET"));
  ASSERT(!cm_str_eq(cm_str_c("GET"), "GETX"));
  ASSERT(!cm_str_eq(cm_str_c("GETX"), "GET"));
  ASSERT(!cm_str_eq(cm_str_c("GET"), "get")); /* byte for byte */
  ASSERT(cm_str_eq(cm_str_n(NULL, 0), ""));
  ASSERT(cm_str_eq(cm_str_n(NULL, 0), NULL));
  ASSERT(cm_str_eq(cm_str_c(""), ""));
  ASSERT(!cm_str_eq(cm_str_n(NULL, 0), "x"));
  /* A slice ending at a guard page: no read past its length. */
  const char *g = cm_test_guard("host", 4);
  ASSERT(cm_str_eq(cm_str_n(g, 4), "host"));
  ASSERT(!cm_str_eq(cm_str_n(g, 4), "hostname"));
}

static void test_casecmp(void) {
  ASSERT(cm_str_casecmp(cm_str_c("Content-Length"), cm_str_c("content-length")));
  ASSERT(cm_str_casecmp(cm_str_c("HTTPS"), cm_str_c("https")));
  ASSERT(cm_str_casecmp(cm_str_c(""), cm_str_n(NULL, 0)));
  ASSERT(!cm_str_casecmp(cm_str_c("abc"), cm_str_c("abd")));
  ASSERT(!cm_str_casecmp(cm_str_c("abc"), cm_str_c("ab")));
  /* Only letters fold: '@' (0x40) and '`' (0x60) differ by the case bit. */
  ASSERT(!cm_str_casecmp(cm_str_c("@"), cm_str_c("`")));
  ASSERT(!cm_str_casecmp(cm_str_c("["), cm_str_c("{")));
  /* Bytes above 0x7f are compared as they are. */
  ASSERT(cm_str_casecmp(cm_str_c("\xc3\xa9"), cm_str_c("\xc3\xa9")));
  ASSERT(!cm_str_casecmp(cm_str_c("\xc3\xa9"), cm_str_c("\xc3\x89")));
  const char *g = cm_test_guard("KeEp-AlIvE", 10);
  ASSERT(cm_str_casecmp(cm_str_n(g, 10), cm_str_c("keep-alive")));
}

static void test_strerror(void) {
  ASSERT(strcmp(cm_strerror(CM_EINVAL), "invalid argument") == 0);
  ASSERT(strcmp(cm_strerror(-CM_EINVAL), "invalid argument") == 0);
  ASSERT(strcmp(cm_strerror(-CM_ENOMEM), "out of memory") == 0);
  ASSERT(strcmp(cm_strerror(-CM_EFULL), "buffer limit reached") == 0);
  ASSERT(strcmp(cm_strerror(CM_EAGAIN), "try again") == 0);
  ASSERT(strcmp(cm_strerror(0), "unknown error") == 0);
  ASSERT(strcmp(cm_strerror(9), "unknown error") == 0);
  ASSERT(strcmp(cm_strerror(-9), "unknown error") == 0);
  ASSERT(strcmp(cm_strerror(INT_MAX), "unknown error") == 0);
  ASSERT(strcmp(cm_strerror(INT_MIN), "unknown error") == 0);
  /* Every listed code has its own text. */
#define CM_X(name, num, text) ASSERT(strcmp(cm_strerror(-(num)), text) == 0);
  CM_ERRNO_LIST(CM_X)
#undef CM_X
}

static void check_name(int ev, const char *want) {
  char buf[32];
  memset(buf, 'x', sizeof(buf));
  const char *got = cm_event_name(ev, buf, sizeof(buf));
  ASSERT(got != NULL);
  if (strcmp(got, want) != 0) fprintf(stderr, "ev %d: got '%s' want '%s'\n", ev, got, want);
  ASSERT(strcmp(got, want) == 0);
}

static void test_event_names(void) {
  check_name(0, "MG_EV_ERROR");
  check_name(1, "MG_EV_OPEN");
  check_name(9, "MG_EV_CLOSE");
  check_name(11, "MG_EV_HTTP_MSG");
  check_name(18, "MG_EV_SNTP_TIME");
  check_name(19, "MG_EV_WAKEUP");
  check_name(20, "MG_EV_UNKNOWN(20)"); /* MDNS: reserved, not exported */
  check_name(21, "MG_EV_UNKNOWN(21)");
  check_name(22, "MG_EV_USER");
  check_name(23, "MG_EV_USER+1");
  check_name(27, "MG_EV_USER+5");
  check_name(INT_MAX, "MG_EV_USER+2147483625");
  check_name(-1, "MG_EV_UNKNOWN(-1)");
  check_name(INT_MIN, "MG_EV_UNKNOWN(-2147483648)");
  /* Known names come from static storage, not from the caller's buffer. */
  char buf[32];
  ASSERT(cm_event_name(CM_EV_HTTP_MSG, NULL, 0) != NULL);
  ASSERT(cm_event_name(CM_EV_WS_MSG, buf, sizeof(buf)) != buf);
  /* A short buffer truncates rather than overflows. */
  char tiny[8];
  const char *t = cm_event_name(-1, tiny, sizeof(tiny));
  ASSERT(t == tiny && strcmp(t, "MG_EV_U") == 0);
  /* No buffer for a number: still a valid string. */
  ASSERT(cm_event_name(-1, NULL, 0) != NULL);
  ASSERT(cm_event_name(30, NULL, 0) != NULL);
}

/* Every enum entry's name is the enum name itself with the MG_ prefix. */
static void test_event_list_roundtrip(void) {
  char buf[32];
#define CM_X(name, num)                                    \
  if ((num) != CM_EV_MDNS_REQ && (num) != CM_EV_MDNS_RESP) \
    ASSERT(strcmp(cm_event_name(CM_EV_##name, buf, sizeof(buf)), "MG_EV_" #name) == 0);
  CM_EVENT_LIST(CM_X)
#undef CM_X
}

int main(void) {
  RUN(test_slices);
  RUN(test_eq);
  RUN(test_casecmp);
  RUN(test_strerror);
  RUN(test_event_names);
  RUN(test_event_list_roundtrip);
  return cm_test_done();
}
