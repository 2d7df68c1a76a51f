/* fuzz_url.c: the URL functions of cm/url.h on arbitrary strings.
 *
 * They take NUL-terminated strings, so the input is copied with a NUL after
 * it (an embedded NUL simply ends the string early).  Checked: every slice
 * lies inside the string, empty slices are NULL (url.c's promise, so no
 * caller holds a pointer past the input), the parts come in URL order
 * without overlapping, and the port/address helpers agree with the split. */
#include <stddef.h>
#include <stdint.h>

#include "cm/url.h"
#include "fuzz_util.h"

static void check_split(const char *url, const struct cm_url *u) {
  const char *end = url + strlen(url);
  /* In URL order; each non-empty part starts after the previous one ends. */
  const struct cm_str parts[] = {u->scheme, u->user, u->pass, u->host, u->port, u->uri};
  const char *after = url;
  for (size_t i = 0; i < CM_ARRAY_SIZE(parts); i++) {
    FUZZ_CHECK(fuzz_slice_in(parts[i], url, end));
    if (parts[i].len == 0) {
      FUZZ_CHECK(parts[i].buf == NULL);
      continue;
    }
    FUZZ_CHECK((uintptr_t) parts[i].buf >= (uintptr_t) after);
    after = parts[i].buf + parts[i].len;
  }
  if (u->scheme.len > 0) {
    FUZZ_CHECK(u->scheme.buf == url && memcmp(url + u->scheme.len, "://", 3) == 0);
  }
  /* The path runs to the end of the string and starts with what ends the
   * authority. */
  if (u->uri.len > 0) {
    FUZZ_CHECK(u->uri.buf + u->uri.len == end);
    FUZZ_CHECK(u->uri.buf[0] == '/' || u->uri.buf[0] == '?' || u->uri.buf[0] == '#');
  }
  if (u->pass.len > 0) FUZZ_CHECK(u->host.len == 0 || u->pass.buf < u->host.buf);
}

/* The port the split shows, as cm_url_port must report it: explicit digits
 * (1-5 of them, at most 65535), 0 if written but invalid, or -1 when it falls
 * back to the scheme default. */
static long expected_port(const struct cm_url *u) {
  if (u->port.len == 0) return -1;
  if (u->port.len > 5) return 0;
  long v = 0;
  for (size_t i = 0; i < u->port.len; i++) {
    if (u->port.buf[i] < '0' || u->port.buf[i] > '9') return 0;
    v = v * 10 + (u->port.buf[i] - '0');
  }
  return v <= 65535 ? v : 0;
}

static bool same_str(struct cm_str a, struct cm_str b) { return a.buf == b.buf && a.len == b.len; }

static bool same_split(const struct cm_url *a, const struct cm_url *b) {
  return same_str(a->scheme, b->scheme) && same_str(a->user, b->user) && same_str(a->pass, b->pass) &&
         same_str(a->host, b->host) && same_str(a->port, b->port) && same_str(a->uri, b->uri) &&
         a->host_is_ip6 == b->host_is_ip6;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *url = fuzz_dup(data, size, 1);
  struct cm_url u;
  cm_url_split(url, &u);
  check_split(url, &u);

  unsigned port = cm_url_port(url);
  long want = expected_port(&u);
  FUZZ_CHECK(port <= 65535);
  if (want >= 0) FUZZ_CHECK(port == (unsigned) want);
  if (want < 0 && u.scheme.len == 0) FUZZ_CHECK(port == 0); /* no scheme, no default */

  bool ssl = cm_url_is_ssl(url);
  if (ssl) FUZZ_CHECK(u.scheme.len > 0);

  struct cm_addr a;
  memset(&a, 0xa5, sizeof(a)); /* cm_url_addr must fill all of it */
  bool ok = cm_url_addr(url, &a);
  FUZZ_CHECK(a.port == port);
  if (ok && !a.is_ip6) FUZZ_CHECK(a.scope_id == 0);
  /* "[1.2.3.4]" is not an address ("[localhost]" is let through as the
   * name it is, so it is left out here). */
  if (ok && u.host.len > 0 && !a.is_ip6 && !cm_str_casecmp(u.host, cm_str_c("localhost"))) {
    FUZZ_CHECK(!u.host_is_ip6);
  }

  /* Pure: the same string gives the same split again. */
  struct cm_url again;
  cm_url_split(url, &again);
  FUZZ_CHECK(same_split(&u, &again));

  cm_url_split(NULL, &again); /* documented: no crash, all empty */
  FUZZ_CHECK(again.host.len == 0 && again.scheme.len == 0);
  free(url);
  return 0;
}
