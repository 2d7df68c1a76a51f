/* str.c: byte slices, error texts and event names. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct cm_str cm_str_c(const char *s) {
  struct cm_str r = {s, s == NULL ? 0 : strlen(s)};
  return r;
}

struct cm_str cm_str_n(const char *buf, size_t len) {
  struct cm_str r = {buf, len};
  return r;
}

bool cm_str_eq(struct cm_str s, const char *c) {
  size_t n = c == NULL ? 0 : strlen(c);
  if (s.len != n) return false;
  return n == 0 || memcmp(s.buf, c, n) == 0; /* memcmp(NULL, .., 0) is UB */
}

/* ASCII only on purpose: protocol tokens (header names, schemes) are ASCII
 * and the C locale's tolower() would make the result locale-dependent. */
static unsigned char lower(unsigned char ch) {
  return ch >= 'A' && ch <= 'Z' ? (unsigned char) (ch + ('a' - 'A')) : ch;
}

bool cm_str_casecmp(struct cm_str a, struct cm_str b) {
  if (a.len != b.len) return false;
  for (size_t i = 0; i < a.len; i++) {
    if (lower((unsigned char) a.buf[i]) != lower((unsigned char) b.buf[i])) return false;
  }
  return true;
}

/* Indexed by code; built from the one list in base.h so names cannot drift. */
static const char *const errtext[] = {
#define CM_X(name, num, text) [num] = text,
    CM_ERRNO_LIST(CM_X)
#undef CM_X
};

const char *cm_strerror(int err) {
  if (err == INT_MIN) return "unknown error"; /* -INT_MIN overflows */
  if (err < 0) err = -err;
  if ((size_t) err >= CM_ARRAY_SIZE(errtext) || errtext[err] == NULL) return "unknown error";
  return errtext[err];
}

static const char *const evname[] = {
#define CM_X(name, num) [num] = "MG_EV_" #name,
    CM_EVENT_LIST(CM_X)
#undef CM_X
};

/* The MDNS numbers are reserved but not exported to Python, and SPEC says
 * event_name(20) and (21) are "MG_EV_UNKNOWN(<n>)" like any other gap. */
static bool exported(int ev) { return ev != CM_EV_MDNS_REQ && ev != CM_EV_MDNS_RESP; }

const char *cm_event_name(int ev, char *buf, size_t size) {
  if (ev >= 0 && ev <= CM_EV_USER && exported(ev)) return evname[ev];
  if (buf == NULL || size == 0) return "MG_EV_UNKNOWN"; /* nowhere to write n */
  if (ev > CM_EV_USER) {
    snprintf(buf, size, "MG_EV_USER+%d", ev - CM_EV_USER);
  } else {
    snprintf(buf, size, "MG_EV_UNKNOWN(%d)", ev);
  }
  return buf;
}
