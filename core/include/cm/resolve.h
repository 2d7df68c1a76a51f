/* cm/resolve.h: host names to addresses without blocking the loop.
 *
 * cm_connect() with a name (not an IP literal, not "localhost") starts a
 * lookup by itself; these functions are for resolving on demand.  Lookups
 * run getaddrinfo(3) on a few worker threads of the manager, so /etc/hosts,
 * /etc/resolv.conf and nsswitch.conf are honoured as by any program, and the
 * answers come back through an internal connection (created with the first
 * lookup; it takes a connection id, like the wakeup channel).  A lookup
 * lasts at most mgr->dns_timeout_ms (default 5000 ms).
 *
 * Answers: CM_EV_RESOLVE with c->rem set (the port from the URL), after
 * which a client connection without a socket yet connects to it; or
 * CM_EV_ERROR "<host> DNS lookup failed" / "DNS timeout".  The first IPv4
 * address is taken, else the first IPv6 one: servers on 0.0.0.0 are the
 * common case, and a name with both is then reached the same way as its
 * IPv4 literal.  Names under ".invalid" fail at once without a query
 * (RFC 6761 §6.4).  A connection closed while its lookup runs is never
 * touched by the answer: answers find their connection by id. */
#ifndef CM_RESOLVE_H
#define CM_RESOLVE_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_conn;

#define CM_DNS_TIMEOUT_MS 5000 /* default of mgr->dns_timeout_ms */

/* Resolve the host of `url` ("name", "tcp://name:80", an IP literal) for
 * `c`, replacing any lookup of c still running.  A literal (or "localhost")
 * is answered synchronously, a name later from the loop, as above.  Any
 * connection may ask, listeners included (SPEC 1.5).  Only a client that
 * has no socket yet connects to the answer; on any other connection only
 * c->rem changes (UDP: later sends go there) and CM_EV_RESOLVE fires.  Returns false, with no event to
 * follow, if `url` has no host, c is closing, or the lookup cannot start
 * (no memory, no thread, a name over 253 bytes). */
bool cm_resolve(struct cm_conn *c, const char *url);
/* Forget the lookup running for `c`, if any: no CM_EV_RESOLVE or DNS error
 * follows, and a client waiting for it stays unconnected. */
void cm_resolve_cancel(struct cm_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* CM_RESOLVE_H */
