/* test_url.c: unit tests of URL splitting and address parsing (url.c).
 * Every input is placed by cm_test_guard so its NUL is the last readable
 * byte: any read past the end faults at once. */
#include <arpa/inet.h>
#include <net/if.h>

#include "internal.h"
#include "test.h"

/* The guarded copy of `s`, NUL included. */
static const char *guarded(const char *s) { return cm_test_guard(s, strlen(s) + 1); }

struct split_case {
  const char *url, *scheme, *user, *pass, *host, *port, *uri;
  bool ip6;
};

/* "" in a field means an empty slice. */
static const struct split_case split_cases[] = {
    {"http://user:pass@host:8080/path?q", "http", "user", "pass", "host", "8080", "/path?q", false},
    {"[::1]:80", "", "", "", "::1", "80", "", true},
    {"tcp://:1234", "tcp", "", "", "", "1234", "", false},
    {"udp://0.0.0.0:0", "udp", "", "", "0.0.0.0", "0", "", false},
    {"localhost:80", "", "", "", "localhost", "80", "", false},
    {"host", "", "", "", "host", "", "", false},
    {"http://[fe80::1%25eth0]:80/x", "http", "", "", "fe80::1%25eth0", "80", "/x", true},
    {"", "", "", "", "", "", "", false},
    {"ws://example.com", "ws", "", "", "example.com", "", "", false},
    {"https://example.com/", "https", "", "", "example.com", "", "/", false},
    {"http://user@host", "http", "user", "", "host", "", "", false},
    {"http://user:@host", "http", "user", "", "host", "", "", false},
    {"http://:pw@host", "http", "", "pw", "host", "", "", false},
    {"mqtt://a:b@c@broker:1883", "mqtt", "a", "b@c", "broker", "1883", "", false},
    {"http://host?x=1", "http", "", "", "host", "", "?x=1", false},
    {"http://host:80?x", "http", "", "", "host", "80", "?x", false},
    {"tcp://0.0.0.0:1234#frag", "tcp", "", "", "0.0.0.0", "1234", "#frag", false},
    {"/path/only", "", "", "", "", "", "/path/only", false},
    {"//host:9/p", "", "", "", "host", "9", "/p", false},
    {"::1", "", "", "", "::1", "", "", false},
    {"[::1]", "", "", "", "::1", "", "", true},
    {"[::1", "", "", "", "[::1", "", "", false},
    {"http://[::1]:/", "http", "", "", "::1", "", "/", true},
    {"http://[::1]x/y", "http", "", "", "::1", "", "/y", true},
    {"HTTP://Host:1/", "HTTP", "", "", "Host", "1", "/", false},
    {"x+y.z-w://h", "x+y.z-w", "", "", "h", "", "", false},
    {"http://h:p:q/", "http", "", "", "h:p:q", "", "/", false},
    {"http:/x", "", "", "", "http", "", "/x", false},
    {"http://", "http", "", "", "", "", "", false},
    {"a://b://c", "a", "", "", "b", "", "//c", false},
    {"tcp://host:99999", "tcp", "", "", "host", "99999", "", false},
};

/* A non-empty slice must lie inside the input; an empty one is NULL. */
static void check_slice(struct cm_str s, const char *want, const char *base, size_t n) {
  if (!cm_str_eq(s, want))
    fprintf(stderr, "split '%s': got '%.*s' want '%s'\n", base, (int) s.len, s.buf ? s.buf : "", want);
  ASSERT(cm_str_eq(s, want));
  if (s.len == 0) {
    ASSERT(s.buf == NULL);
  } else {
    ASSERT(s.buf >= base && s.buf + s.len <= base + n);
  }
}

static void test_split_table(void) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(split_cases); i++) {
    const struct split_case *t = &split_cases[i];
    const char *g = guarded(t->url);
    size_t n = strlen(t->url);
    struct cm_url u;
    memset(&u, 0xa5, sizeof(u)); /* every field must be written */
    cm_url_split(g, &u);
    if (u.host_is_ip6 != t->ip6) fprintf(stderr, "split '%s': ip6 flag\n", t->url);
    check_slice(u.scheme, t->scheme, g, n);
    check_slice(u.user, t->user, g, n);
    check_slice(u.pass, t->pass, g, n);
    check_slice(u.host, t->host, g, n);
    check_slice(u.port, t->port, g, n);
    check_slice(u.uri, t->uri, g, n);
    ASSERT(u.host_is_ip6 == t->ip6);
  }
  struct cm_url u;
  memset(&u, 0xa5, sizeof(u));
  cm_url_split(NULL, &u); /* NULL is the empty URL */
  ASSERT(u.scheme.len == 0 && u.host.len == 0 && u.uri.len == 0 && !u.host_is_ip6);
}

/* Every prefix of a long URL, each ending at the guard page: truncation at
 * any byte must neither over-read nor produce slices outside the input. */
static void test_split_prefixes(void) {
  const char *full = "https://us:pw@[fe80::1%25eth0]:8443/a/b?c=d#e";
  char tmp[128];
  for (size_t n = 0; n <= strlen(full); n++) {
    memcpy(tmp, full, n);
    tmp[n] = '\0';
    const char *g = cm_test_guard(tmp, n + 1);
    struct cm_url u;
    cm_url_split(g, &u);
    struct cm_str all[] = {u.scheme, u.user, u.pass, u.host, u.port, u.uri};
    for (size_t i = 0; i < CM_ARRAY_SIZE(all); i++) {
      if (all[i].len > 0) ASSERT(all[i].buf >= g && all[i].buf + all[i].len <= g + n);
    }
    (void) cm_url_port(g);
    (void) cm_url_is_ssl(g);
    struct cm_addr a;
    (void) cm_url_addr(g, &a);
  }
}

static void test_port(void) {
  static const struct {
    const char *url;
    unsigned port;
  } cases[] = {
      {"http://h", 80},
      {"ws://h", 80},
      {"https://h", 443},
      {"WSS://h", 443},
      {"mqtt://h", 1883},
      {"mqtts://h", 8883},
      {"MQTTS://h/x", 8883},
      {"tcp://h", 0},
      {"udp://h", 0},
      {"h", 0},
      {"", 0},
      {"h:65535", 65535},
      {"h:65536", 0},
      {"http://h:99999", 0},
      {"http://h:abc", 0},
      {"http://h:8a", 0},
      {"http://h:", 80},
      {"http://h:0", 0},
      {"HtTpS://h:8443", 8443},
      {"h:123456", 0},
      {"h:00080", 80},
      {"[::1]:443", 443},
      {"https://[::1]", 443},
      {"http://u:9@h/x", 80},
      {"http://h:-1", 0},
      {"http://h: 80", 0},
      {"localhost:80", 80},
      {"tcp://:1234", 1234},
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(cases); i++) {
    unsigned got = cm_url_port(guarded(cases[i].url));
    if (got != cases[i].port) fprintf(stderr, "port '%s': %u\n", cases[i].url, got);
    ASSERT_EQ(got, cases[i].port);
  }
}

static void test_is_ssl(void) {
  static const char *const yes[] = {"https://h", "wss://h",    "mqtts://h:1", "ssl://h",
                                    "tls://h",   "tcps://h:1", "HTTPS://h",   "Wss://h"};
  static const char *const no[] = {"http://h", "ws://h",     "mqtt://h", "tcp://h",  "udp://h", "",
                                   "h:443",    "httpsx://h", "https:/h", "sslx://h", "//h"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(yes); i++) ASSERT(cm_url_is_ssl(guarded(yes[i])));
  for (size_t i = 0; i < CM_ARRAY_SIZE(no); i++) ASSERT(!cm_url_is_ssl(guarded(no[i])));
}

/* Parse `url` into an address, expecting success. */
static struct cm_addr addr_ok(const char *url) {
  struct cm_addr a;
  memset(&a, 0xa5, sizeof(a));
  bool ok = cm_url_addr(guarded(url), &a);
  if (!ok) fprintf(stderr, "cm_url_addr('%s') failed\n", url);
  ASSERT(ok);
  return a;
}

static void test_addr_ipv4(void) {
  struct cm_addr a = addr_ok("tcp://1.2.3.4:80");
  ASSERT(!a.is_ip6 && memcmp(a.ip, "\x01\x02\x03\x04", 4) == 0 && a.port == 80 && a.scope_id == 0);
  a = addr_ok("https://10.0.0.255");
  ASSERT(!a.is_ip6 && memcmp(a.ip, "\x0a\x00\x00\xff", 4) == 0 && a.port == 443);
  a = addr_ok("localhost:8000");
  ASSERT(!a.is_ip6 && memcmp(a.ip, "\x7f\x00\x00\x01", 4) == 0 && a.port == 8000);
  a = addr_ok("http://LocalHost/x");
  ASSERT(!a.is_ip6 && memcmp(a.ip, "\x7f\x00\x00\x01", 4) == 0 && a.port == 80);
  static const uint8_t zero[16];
  a = addr_ok("tcp://:1234"); /* empty host: IPv4 any */
  ASSERT(!a.is_ip6 && memcmp(a.ip, zero, 16) == 0 && a.port == 1234);
  a = addr_ok("udp://0.0.0.0:0");
  ASSERT(!a.is_ip6 && memcmp(a.ip, zero, 16) == 0 && a.port == 0);
  a = addr_ok("");
  ASSERT(!a.is_ip6 && memcmp(a.ip, zero, 16) == 0 && a.port == 0);
  a = addr_ok("255.255.255.255:1");
  ASSERT(memcmp(a.ip, "\xff\xff\xff\xff", 4) == 0 && a.port == 1);
}

static void test_addr_ipv6(void) {
  struct cm_addr a = addr_ok("http://[::1]:8000");
  ASSERT(a.is_ip6 && a.port == 8000 && a.scope_id == 0);
  ASSERT(memcmp(a.ip, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16) == 0);
  a = addr_ok("[::ffff:1.2.3.4]:5");
  ASSERT(a.is_ip6 && a.port == 5 && memcmp(a.ip + 10, "\xff\xff\x01\x02\x03\x04", 6) == 0);
  a = addr_ok("::1"); /* bare literal, no port */
  ASSERT(a.is_ip6 && a.ip[15] == 1 && a.port == 0);
  a = addr_ok("[fe80::1%251]:80"); /* RFC 6874: "%25" then zone "1" */
  ASSERT(a.is_ip6 && a.scope_id == 1 && a.port == 80 && a.ip[0] == 0xfe && a.ip[1] == 0x80);
  a = addr_ok("[fe80::1%7]");
  ASSERT(a.is_ip6 && a.scope_id == 7);
  a = addr_ok("[fe80::1%25]"); /* just "25": numeric zone 25 */
  ASSERT(a.scope_id == 25);
  unsigned lo = if_nametoindex("lo");
  if (lo != 0) {
    a = addr_ok("http://[fe80::1%25lo]:80/x");
    ASSERT(a.is_ip6 && a.scope_id == lo && a.port == 80);
    a = addr_ok("[fe80::1%lo]");
    ASSERT(a.scope_id == lo);
  }
  a = addr_ok("[]:80"); /* empty brackets: IPv6 any */
  ASSERT(a.is_ip6 && a.port == 80);
}

static void test_addr_fail(void) {
  static const char *const bad[] = {
      "http://example.com",
      "example.com:80",
      "host",
      "1.2.3",
      "256.1.1.1",
      "1.2.3.4.5",
      "[1.2.3.4]:80",
      "[::1",
      "[fe80::1%]",
      "[fe80::1%25nosuchif0]",
      "[::g]",
      "[fe80::1%99999999999]",
      "http://localhost.example/",
      "1.2.3.4x",
  };
  for (size_t i = 0; i < CM_ARRAY_SIZE(bad); i++) {
    struct cm_addr a;
    bool ok = cm_url_addr(guarded(bad[i]), &a);
    if (ok) fprintf(stderr, "cm_url_addr('%s') succeeded\n", bad[i]);
    ASSERT(!ok);
  }
  /* A host longer than any literal is refused without overflowing. */
  char url[400] = "http://[";
  memset(url + 8, '1', 300);
  strcpy(url + 308, "]:80");
  struct cm_addr a;
  ASSERT(!cm_url_addr(guarded(url), &a));
  memset(url, 'a', 399);
  url[399] = '\0';
  ASSERT(!cm_url_addr(guarded(url), &a));
}

int main(void) {
  RUN(test_split_table);
  RUN(test_split_prefixes);
  RUN(test_port);
  RUN(test_is_ssl);
  RUN(test_addr_ipv4);
  RUN(test_addr_ipv6);
  RUN(test_addr_fail);
  return cm_test_done();
}
