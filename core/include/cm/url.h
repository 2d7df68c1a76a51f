/* cm/url.h: URL splitting for "scheme://user:pass@host:port/path?query".
 * Pure functions over the caller's string; results are slices into it. */
#ifndef CM_URL_H
#define CM_URL_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_url {
  struct cm_str scheme; /* "http" (without "://"); empty if none */
  struct cm_str user;   /* userinfo before ':' */
  struct cm_str pass;   /* userinfo after ':' */
  struct cm_str host;   /* host without brackets: "::1" for "[::1]" */
  struct cm_str port;   /* port digits as written; empty if none */
  struct cm_str uri;    /* path and query from the first '/'; empty if none */
  bool host_is_ip6;     /* host was written in brackets */
};

/* Split `url`.  Always succeeds (a bare "host:port" has no scheme). */
void cm_url_split(const char *url, struct cm_url *out);
/* The explicit port, else the scheme's default: http/ws 80, https/wss 443,
 * mqtt 1883, mqtts 8883; else 0. */
unsigned cm_url_port(const char *url);
/* True if the scheme is https, wss, mqtts, ssl, tls or tcps. */
bool cm_url_is_ssl(const char *url);
/* Parse the host of a URL into `addr` if it is an IPv4 literal, an IPv6
 * literal, "localhost" (127.0.0.1) or empty (0.0.0.0).  `addr->port` is set
 * from cm_url_port().  Returns false for any other host (a name to resolve). */
bool cm_url_addr(const char *url, struct cm_addr *addr);

#ifdef __cplusplus
}
#endif
#endif /* CM_URL_H */
