/* cm/tls.h: TLS on a connection (OpenSSL 3).
 *
 * TLS is invisible to the loop and to every protocol: once cm_tls_init()
 * has run, the bytes in c->recv are decrypted and the bytes queued in
 * c->send are encrypted on their way out.  HTTP, WebSocket and MQTT read and
 * write plaintext and never know.
 *
 * Where to call cm_tls_init():
 *   - on a listener: every connection it accepts starts a server handshake
 *     with these options (SPEC Decision 7);
 *   - in CM_EV_ACCEPT (or CM_EV_OPEN) of an accepted connection: these
 *     options replace the listener's;
 *   - on a client, in CM_EV_CONNECT, or any time before it (CM_EV_OPEN,
 *     CM_EV_RESOLVE, right after cm_connect): the handshake starts once the
 *     TCP connection is up.
 * A connection whose scheme is https/wss/mqtts/ssl/tls/tcps starts with
 * c->is_tls set; the flag is cleared after CM_EV_ACCEPT / CM_EV_CONNECT if
 * no TLS was set up, and is set once a handshake runs (SPEC 2.8).
 *
 * Events: CM_EV_TLS_HS when the handshake completes (both sides); bytes
 * sent before it wait and are encrypted after it.  A failure (bad PEM, key
 * not matching the certificate, verification, a peer that speaks plaintext
 * or stalls in the handshake past mgr->tls_hs_timeout_ms) fails only that
 * connection, with CM_EV_ERROR and OpenSSL's reason in the message. */
#ifndef CM_TLS_H
#define CM_TLS_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_conn;

/* The options; every slice is read during cm_tls_init() only (copied or
 * parsed there), so the caller keeps ownership. */
struct cm_tls_opts {
  struct cm_str ca;       /* PEM CA certificate(s): verify the peer against these.  Client:
                           * empty means the system trust store.  Server: non-empty means
                           * client certificates are required and verified (mutual TLS) */
  struct cm_str cert;     /* PEM certificate chain, leaf first (server: required) */
  struct cm_str key;      /* PEM private key of the leaf: RSA, EC, Ed25519; PKCS#8, SEC1 or
                           * PKCS#1; an encrypted key is refused */
  struct cm_str name;     /* client: SNI and the host name (or IP) the certificate must name
                           * (SAN, else CN); empty: the host of the URL given to cm_connect */
  bool skip_verification; /* verify nothing: no chain, no host name, no client certificate */
};

/* Set up TLS on `c` with `opts` (see above for where).  Replaces options or
 * TLS state set earlier.  An SSL_CTX is shared by every connection whose
 * options are equal.  Returns true on success.  On failure returns false
 * and: a listener logs the reason and stays usable (the connections it then
 * accepts fail with that reason, rather than talk plaintext on a port meant
 * for TLS); any other connection fails with CM_EV_ERROR ("TLS: ...") fired
 * synchronously.  A UDP or closing connection is refused (false, logged). */
bool cm_tls_init(struct cm_conn *c, const struct cm_tls_opts *opts);
/* Drop the TLS state of `c` (a close_notify is sent if a handshake
 * completed); later bytes go out unencrypted, so on a live connection this
 * is only useful right before closing it.  A listener forgets its options.
 * Harmless without TLS.  The manager calls it when `c` is freed. */
void cm_tls_free(struct cm_conn *c);
/* The ALPN protocol the handshake chose ("http/1.1"), or the empty slice;
 * the slice lives as long as the TLS state of `c`. */
struct cm_str cm_tls_alpn(const struct cm_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* CM_TLS_H */
