/* url.c: splitting "scheme://user:pass@host:port/path?query" into slices. */
#include <arpa/inet.h>
#include <net/if.h>
#include <string.h>

#include "internal.h"

static bool is_alpha(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Length of the scheme if `s` starts with "<scheme>://", else 0.  The
 * character set is RFC 3986 section 3.1's, so "host:80" or "[::1]:80" is
 * never mistaken for a scheme. */
static size_t scheme_len(const char *s, size_t n) {
  if (n == 0 || !is_alpha(s[0])) return 0;
  size_t i = 1;
  while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.')) i++;
  if (n - i >= 3 && memcmp(s + i, "://", 3) == 0) return i;
  return 0;
}

/* Offset of the first `ch` in s[0..n), or n. */
static size_t find(const char *s, size_t n, char ch) {
  size_t i = 0;
  while (i < n && s[i] != ch) i++;
  return i;
}

/* Offset of the last `ch` in s[0..n), or n. */
static size_t rfind(const char *s, size_t n, char ch) {
  for (size_t i = n; i > 0; i--)
    if (s[i - 1] == ch) return i - 1;
  return n;
}

/* "[v6]:port", "host:port" or "host".  An unbracketed host with more than
 * one ':' is a bare IPv6 literal ("::1"), so no port is split off it. */
static void split_hostport(const char *s, size_t n, struct cm_url *out) {
  if (n > 0 && s[0] == '[') {
    size_t close = find(s, n, ']');
    if (close < n) {
      out->host = cm_str_n(s + 1, close - 1);
      out->host_is_ip6 = true;
      if (close + 1 < n && s[close + 1] == ':') out->port = cm_str_n(s + close + 2, n - close - 2);
      return;
    }
  }
  size_t colon = find(s, n, ':');
  if (colon < n && rfind(s, n, ':') == colon) {
    out->host = cm_str_n(s, colon);
    out->port = cm_str_n(s + colon + 1, n - colon - 1);
  } else {
    out->host = cm_str_n(s, n);
  }
}

/* "user:pass@hostport": the last '@' ends the userinfo, since a raw '@' may
 * appear in a password but never in a host. */
static void split_authority(const char *s, size_t n, struct cm_url *out) {
  size_t at = rfind(s, n, '@');
  if (at < n) {
    size_t colon = find(s, at, ':');
    out->user = cm_str_n(s, colon);
    if (colon < at) out->pass = cm_str_n(s + colon + 1, at - colon - 1);
    s += at + 1;
    n -= at + 1;
  }
  split_hostport(s, n, out);
}

/* Slices with no bytes get buf == NULL, as base.h describes the empty slice,
 * so callers never hold a pointer one past the input. */
static void normalise(struct cm_str *s) {
  if (s->len == 0) s->buf = NULL;
}

void cm_url_split(const char *url, struct cm_url *out) {
  memset(out, 0, sizeof(*out));
  if (url == NULL) return;
  size_t n = strlen(url), sl = scheme_len(url, n);
  const char *p = url;
  if (sl > 0) {
    out->scheme = cm_str_n(url, sl);
    p += sl + 3;
    n -= sl + 3;
  } else if (n >= 2 && p[0] == '/' && p[1] == '/') {
    p += 2; /* scheme-relative "//host/path" */
    n -= 2;
  }
  /* The authority ends at the path; '?' and '#' also end it so a query on
   * a path-less URL ("host?x") is not taken as part of the port. */
  size_t end = 0;
  while (end < n && p[end] != '/' && p[end] != '?' && p[end] != '#') end++;
  split_authority(p, end, out);
  out->uri = cm_str_n(p + end, n - end);
  struct cm_str *all[] = {&out->scheme, &out->user, &out->pass, &out->host, &out->port, &out->uri};
  for (size_t i = 0; i < CM_ARRAY_SIZE(all); i++) normalise(all[i]);
}

/* Port digits as a number; -1 if not 1..5 digits within 0..65535. */
static long parse_port(struct cm_str s) {
  if (s.len == 0 || s.len > 5) return -1;
  long v = 0;
  for (size_t i = 0; i < s.len; i++) {
    if (!is_digit(s.buf[i])) return -1;
    v = v * 10 + (s.buf[i] - '0');
  }
  return v <= 65535 ? v : -1;
}

static unsigned default_port(struct cm_str scheme) {
  static const struct {
    const char *name;
    unsigned port;
  } known[] = {{"http", 80}, {"ws", 80}, {"https", 443}, {"wss", 443}, {"mqtt", 1883}, {"mqtts", 8883}};
  for (size_t i = 0; i < CM_ARRAY_SIZE(known); i++) {
    if (cm_str_casecmp(scheme, cm_str_c(known[i].name))) return known[i].port;
  }
  return 0;
}

unsigned cm_url_port(const char *url) {
  struct cm_url u;
  cm_url_split(url, &u);
  if (u.port.len == 0) return default_port(u.scheme);
  long v = parse_port(u.port);
  return v < 0 ? 0 : (unsigned) v; /* written but invalid: no default */
}

bool cm_url_is_ssl(const char *url) {
  static const char *const tls[] = {"https", "wss", "mqtts", "ssl", "tls", "tcps"};
  struct cm_url u;
  cm_url_split(url, &u);
  for (size_t i = 0; i < CM_ARRAY_SIZE(tls); i++) {
    if (cm_str_casecmp(u.scheme, cm_str_c(tls[i]))) return true;
  }
  return false;
}

/* Scope after '%': an interface name or a number.  In a URL the '%' is
 * itself written "%25" (RFC 6874 section 2), so a leading "25" followed by
 * more text is that escape, not part of the zone. */
static bool parse_scope(const char *zone, uint32_t *scope_id) {
  if (strncmp(zone, "25", 2) == 0 && zone[2] != '\0') zone += 2;
  if (*zone == '\0') return false;
  bool numeric = true;
  unsigned long v = 0;
  for (const char *q = zone; *q != '\0' && numeric; q++) {
    numeric = is_digit(*q) && v <= UINT32_MAX / 10;
    v = v * 10 + (unsigned long) (*q - '0');
  }
  if (numeric && v <= UINT32_MAX) {
    *scope_id = (uint32_t) v;
    return true;
  }
  *scope_id = if_nametoindex(zone);
  return *scope_id != 0;
}

/* `host` is NUL-terminated and contains ':'. */
static bool parse_ip6(char *host, struct cm_addr *addr) {
  char *pct = strchr(host, '%');
  if (pct != NULL) {
    *pct = '\0';
    if (!parse_scope(pct + 1, &addr->scope_id)) return false;
  }
  if (inet_pton(AF_INET6, host, addr->ip) != 1) return false;
  addr->is_ip6 = true;
  return true;
}

bool cm_url_addr(const char *url, struct cm_addr *addr) {
  struct cm_url u;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 8]; /* literal, "%25", zone */
  memset(addr, 0, sizeof(*addr));
  cm_url_split(url, &u);
  addr->port = (uint16_t) cm_url_port(url);
  if (u.host.len == 0) {
    addr->is_ip6 = u.host_is_ip6; /* "[]" is the IPv6 any address */
    return true;                  /* 0.0.0.0: listen on every IPv4 address */
  }
  if (cm_str_casecmp(u.host, cm_str_c("localhost"))) {
    memcpy(addr->ip, "\x7f\x00\x00\x01", 4);
    return true;
  }
  if (u.host.len >= sizeof(host)) return false; /* too long for any literal */
  memcpy(host, u.host.buf, u.host.len);
  host[u.host.len] = '\0';
  if (strchr(host, ':') != NULL) return parse_ip6(host, addr);
  if (u.host_is_ip6) return false; /* brackets around a non-IPv6 host */
  return inet_pton(AF_INET, host, addr->ip) == 1;
}
