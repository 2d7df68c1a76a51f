/* tls_openssl.c: TLS on OpenSSL 3 (cm/tls.h); all of the OpenSSL glue.
 *
 * Where the bytes go.  OpenSSL reads and writes the socket itself, through
 * a BIO of ours over c->fd (recv / send with MSG_NOSIGNAL), not through a
 * memory BIO pair.  Why:
 *   - no extra copy of every byte through a BIO buffer, in or out;
 *   - OpenSSL's own socket BIO uses write(2), and a peer's reset would
 *     then raise SIGPIPE in a C program; ours passes MSG_NOSIGNAL;
 *   - the edge-triggered reader stays right: the BIO sees each recv() come
 *     back with EAGAIN, so "OpenSSL wants to read" means "the socket is
 *     empty, a new edge will come".  Bytes OpenSSL already decrypted or
 *     buffered make no edge: cm__tls_read() reads records until the socket
 *     says EAGAIN, or sets c->can_read when it stops early (its budget, or
 *     SSL_has_pending), so the loop comes back without waiting for epoll.
 * (kTLS would need OpenSSL's socket BIO; we give it up, and files go
 * through c->send in bounded pieces, as sendfd.c does for TLS.)
 *
 * One SSL_CTX per distinct set of options (role, ca, cert, key,
 * skip_verification), kept in a process-wide cache keyed by a SHA-256 of
 * them and reference-counted: a listener and the connections it accepts
 * share one, and so do connections that call cm_tls_init() with equal
 * options in CM_EV_ACCEPT.  Sharing the SSL_CTX is what makes session
 * resumption work on the server (tickets and the session cache live there).
 * A context nobody holds any more stays cached (the IDLE_CTX_MAX most
 * recently used ones): with tls_init in CM_EV_ACCEPT, each connection
 * holds it only while it lives, and the next one must find the same
 * context, its ticket keys included, without parsing the PEM again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define HS_TIMEOUT_MS 10000u    /* default handshake deadline (mgr->tls_hs_timeout_ms) */
#define READ_BUDGET (64u << 10) /* plaintext bytes per read turn (the scratch size) */
#define SESS_CACHE_SIZE 1024    /* server session cache entries per SSL_CTX (bounded) */
#define IDLE_CTX_MAX 8          /* unreferenced contexts kept for reuse */

/* One cached SSL_CTX. */
struct ctx_entry {
  unsigned char key[32];  /* SHA-256 of the options */
  unsigned refs;          /* holders: listeners, connections; 0 frees it */
  SSL_CTX *ctx;           /* the context */
  struct ctx_entry *next; /* cache list */
};

struct cm__tls {
  struct cm_conn *c;        /* owner */
  struct ctx_entry *ctx;    /* options in force, or NULL (host noted, or failed listener) */
  SSL *ssl;                 /* NULL on a listener, or until a client connects */
  char *host;               /* SNI / expected name (client), NUL-terminated, or NULL */
  char *lsn_err;            /* listener whose options failed: the reason, for its children */
  struct cm_timer deadline; /* handshake deadline */
  bool is_server;           /* accept side */
  bool hs_done;             /* handshake completed */
  bool failed;              /* a fatal error: no close_notify */
  bool got_bytes;           /* the BIO read something: a peer, not a probe */
  bool saw_eof;             /* the BIO read EOF */
  int sys_err;              /* errno of a failed recv/send, or 0 */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ctx_entry *cache;

/* ---- our socket BIO ---------------------------------------------------- */

static int bio_write(BIO *b, const char *buf, int len) {
  struct cm__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = send(t->c->fd, buf, (size_t) len, MSG_NOSIGNAL);
    if (n >= 0) return (int) n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    else
      t->sys_err = errno;
    return -1;
  }
}

static int bio_read(BIO *b, char *buf, int len) {
  struct cm__tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t n = recv(t->c->fd, buf, (size_t) len, 0);
    if (n > 0) t->got_bytes = true;
    if (n == 0) t->saw_eof = true;
    if (n >= 0) return (int) n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    else
      t->sys_err = errno;
    return -1;
  }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void) b, (void) num, (void) ptr;
  /* The record layer flushes after each flight; nothing is buffered here.
   * Everything else (kTLS queries, ...) is "not supported". */
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void make_bio_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cm socket");
  if (m == NULL) return;
  BIO_meth_set_write(m, bio_write);
  BIO_meth_set_read(m, bio_read);
  BIO_meth_set_ctrl(m, bio_ctrl);
  BIO_meth_set_create(m, bio_create);
  bio_method = m;
}

/* ---- error text -------------------------------------------------------- */

/* OpenSSL's reason for the oldest error queued on this thread ("no start
 * line", "certificate verify failed", ...); clears the queue. */
static const char *ssl_reason(char *buf, size_t size) {
  unsigned long e = ERR_get_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  if (e != 0 && r == NULL) {
    ERR_error_string_n(e, buf, size);
    r = buf;
  }
  ERR_clear_error();
  return r != NULL ? r : "unknown error";
}

/* ---- the SSL_CTX cache -------------------------------------------------- */

static void hash_str(EVP_MD_CTX *md, struct cm_str s) {
  uint64_t n = s.len; /* length first: ("ab","c") and ("a","bc") differ */
  EVP_DigestUpdate(md, &n, sizeof(n));
  if (s.len > 0) EVP_DigestUpdate(md, s.buf, s.len);
}

static bool opts_key(const struct cm_tls_opts *o, bool server, unsigned char out[32]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned char flags[2] = {server, o->skip_verification};
  bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
  if (ok) {
    EVP_DigestUpdate(md, flags, sizeof(flags));
    hash_str(md, o->ca);
    hash_str(md, o->cert);
    hash_str(md, o->key);
    ok = EVP_DigestFinal_ex(md, out, NULL) == 1;
  }
  EVP_MD_CTX_free(md);
  return ok;
}

static BIO *mem_bio(struct cm_str s) { return BIO_new_mem_buf(s.buf, (int) s.len); }

/* No passphrase prompt on a terminal, ever: an encrypted key is refused. */
static int no_password(char *buf, int size, int rwflag, void *u) {
  (void) buf, (void) size, (void) rwflag, (void) u;
  return -1;
}

/* The leaf, then any intermediates, in PEM order. */
static bool load_chain(SSL_CTX *ctx, struct cm_str pem) {
  BIO *b = mem_bio(pem);
  X509 *x = b != NULL ? PEM_read_bio_X509_AUX(b, NULL, no_password, NULL) : NULL;
  bool ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  while (ok && (x = PEM_read_bio_X509(b, NULL, no_password, NULL)) != NULL) {
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
      X509_free(x);
      ok = false;
    }
  }
  if (ok) ERR_clear_error(); /* the end of the PEM reads as "no start line" */
  BIO_free(b);
  return ok;
}

/* NULL, or what went wrong: the PEM, or a key that is not the leaf's
 * (SSL_CTX_use_PrivateKey compares it with the certificate loaded). */
static const char *load_key(SSL_CTX *ctx, struct cm_str pem) {
  BIO *b = mem_bio(pem);
  EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, no_password, NULL) : NULL;
  const char *what = k == NULL ? "bad key" : NULL;
  if (k != NULL && SSL_CTX_use_PrivateKey(ctx, k) != 1) what = "key does not match cert";
  EVP_PKEY_free(k);
  BIO_free(b);
  return what;
}

/* Trust anchors from `pem`; a server also names them to its clients as
 * the CAs it accepts (CertificateRequest, RFC 8446 4.3.2). */
static bool load_ca(SSL_CTX *ctx, struct cm_str pem, bool server) {
  BIO *b = mem_bio(pem);
  STACK_OF(X509_INFO) *infos = b != NULL ? PEM_X509_INFO_read_bio(b, NULL, no_password, NULL) : NULL;
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  for (int i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
    X509_INFO *xi = sk_X509_INFO_value(infos, i);
    if (xi->x509 == NULL) continue;
    if (X509_STORE_add_cert(store, xi->x509) == 1) added++;
    if (server) SSL_CTX_add_client_CA(ctx, xi->x509);
  }
  sk_X509_INFO_pop_free(infos, X509_INFO_free);
  BIO_free(b);
  if (added > 0) ERR_clear_error();
  return added > 0;
}

/* Server ALPN: http/1.1 when the client offers it on an HTTP connection,
 * never h2 (we do not speak it); otherwise no ALPN at all rather than a
 * fatal no_application_protocol alert (RFC 7301 3.2 allows either). */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void) arg;
  struct cm__tls *t = SSL_get_app_data(ssl);
  if (t == NULL || t->c->pfn != cm_http_handler) return SSL_TLSEXT_ERR_NOACK;
  for (unsigned i = 0; i < inlen;) {
    unsigned n = in[i];
    if (i + 1 + n > inlen) break;
    if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
      *out = in + i + 1;
      *outlen = 8;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static void set_verify(SSL_CTX *ctx, const struct cm_tls_opts *o, bool server) {
  int mode = SSL_VERIFY_NONE;
  if (!o->skip_verification && (!server || o->ca.len > 0)) mode = SSL_VERIFY_PEER;
  if (server && mode == SSL_VERIFY_PEER) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx, mode, NULL);
}

/* A new SSL_CTX for `o`, or NULL with the reason in `err`. */
static SSL_CTX *make_ctx(const struct cm_tls_opts *o, bool server, char *err, size_t size) {
  char tmp[256];
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  const char *what = NULL;
  if (ctx == NULL) what = "no context";
  if (what == NULL) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer's EOF is the end of the stream (HTTP frames its messages); no
     * renegotiation (TLS 1.2): one handshake per connection. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* Partial writes: c->send is consumed as records leave.  Moving buffer:
     * c->send may be reallocated between a write and its retry.  Release:
     * an idle connection keeps no 34 KiB of record buffers. */
    SSL_CTX_set_mode(
        ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    set_verify(ctx, o, server);
  }
  if (what == NULL && o->cert.len > 0 && !load_chain(ctx, o->cert)) what = "bad cert";
  if (what == NULL && o->key.len > 0) what = load_key(ctx, o->key);
  if (what == NULL && o->cert.len > 0 && o->key.len > 0 && SSL_CTX_check_private_key(ctx) != 1)
    what = "key does not match cert";
  if (what == NULL && (o->cert.len > 0) != (o->key.len > 0)) what = "cert and key go together";
  if (what == NULL && server && o->cert.len == 0) what = "a server needs cert and key";
  if (what == NULL && o->ca.len > 0 && !load_ca(ctx, o->ca, server)) what = "bad ca";
  if (what == NULL && !server && o->ca.len == 0 && !o->skip_verification &&
      SSL_CTX_set_default_verify_paths(ctx) != 1)
    what = "no system trust store";
  if (what == NULL && server) {
    /* Resumption (tickets, and a bounded cache); the id context is what
     * lets a session made with a verified client certificate resume. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *) "cymongoose", 10);
    SSL_CTX_sess_set_cache_size(ctx, SESS_CACHE_SIZE);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
  }
  if (what == NULL) return ctx;
  snprintf(err, size, "TLS: %s: %s", what, ssl_reason(tmp, sizeof(tmp)));
  SSL_CTX_free(ctx);
  return NULL;
}

/* The cached context for `o`, with one more reference, or NULL (reason in
 * `err`).  Made under the lock: two managers in two threads may ask. */
static struct ctx_entry *ctx_get(const struct cm_tls_opts *o, bool server, char *err, size_t size) {
  unsigned char key[32];
  if (!opts_key(o, server, key)) {
    snprintf(err, size, "TLS: no digest");
    return NULL;
  }
  pthread_mutex_lock(&cache_lock);
  struct ctx_entry **p = &cache, *e;
  while ((e = *p) != NULL && memcmp(e->key, key, sizeof(key)) != 0) p = &e->next;
  if (e != NULL) { /* most recently used first */
    *p = e->next;
    e->next = cache;
    cache = e;
  } else {
    SSL_CTX *ctx = make_ctx(o, server, err, size);
    e = ctx != NULL ? calloc(1, sizeof(*e)) : NULL;
    if (e != NULL) {
      memcpy(e->key, key, sizeof(key));
      e->ctx = ctx;
      e->next = cache;
      cache = e;
    } else if (ctx != NULL) {
      SSL_CTX_free(ctx);
      snprintf(err, size, "TLS: OOM");
    }
  }
  if (e != NULL) e->refs++;
  pthread_mutex_unlock(&cache_lock);
  return e;
}

/* Free the unreferenced contexts beyond the IDLE_CTX_MAX most recent. */
static void ctx_trim(void) {
  unsigned idle = 0;
  struct ctx_entry **p = &cache, *e;
  while ((e = *p) != NULL) {
    if (e->refs == 0 && ++idle > IDLE_CTX_MAX) {
      *p = e->next;
      SSL_CTX_free(e->ctx);
      free(e);
    } else {
      p = &e->next;
    }
  }
}

static void ctx_drop(struct ctx_entry *e) {
  if (e == NULL) return;
  pthread_mutex_lock(&cache_lock);
  if (--e->refs == 0) ctx_trim();
  pthread_mutex_unlock(&cache_lock);
}

/* ---- per-connection state ----------------------------------------------- */

static struct cm__tls *tls_of(struct cm_conn *c) {
  if (c->tls == NULL) {
    c->tls = calloc(1, sizeof(*c->tls));
    if (c->tls != NULL) c->tls->c = c;
  }
  return c->tls;
}

/* Drop the SSL (after a close_notify if the session is healthy). */
static void drop_ssl(struct cm_conn *c, struct cm__tls *t) {
  cm_timer_stop(c->mgr, &t->deadline);
  if (t->ssl != NULL) {
    /* Not twice: after cm__tls_shutdown_write a second call would wait
     * for the peer's close_notify (reading the socket). */
    bool sent = (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) != 0;
    if (t->hs_done && !t->failed && !sent && c->fd >= 0) {
      ERR_clear_error();
      SSL_shutdown(t->ssl); /* best effort: one try, never waited for */
    }
    SSL_free(t->ssl);
    ERR_clear_error();
  }
  t->ssl = NULL;
  t->hs_done = t->failed = t->got_bytes = t->saw_eof = false;
  t->sys_err = 0;
  c->tls_io = 0;
  c->tls_want_write = 0;
}

void cm__tls_shutdown_write(struct cm_conn *c) {
  struct cm__tls *t = c->tls;
  if (c->fd < 0) return;
  if (t != NULL && t->ssl != NULL && t->hs_done && !t->failed) {
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* one close_notify record, written at once (the send queue is empty) */
    ERR_clear_error();
  }
  shutdown(c->fd, SHUT_WR);
}

void cm_tls_free(struct cm_conn *c) {
  struct cm__tls *t = c->tls;
  if (t == NULL) return;
  drop_ssl(c, t);
  ctx_drop(t->ctx);
  free(t->host);
  free(t->lsn_err);
  free(t);
  c->tls = NULL;
  if (!c->is_listening) c->is_tls = 0;
}

struct cm_str cm_tls_alpn(const struct cm_conn *c) {
  const unsigned char *p = NULL;
  unsigned n = 0;
  if (c->tls != NULL && c->tls->ssl != NULL) SSL_get0_alpn_selected(c->tls->ssl, &p, &n);
  return cm_str_n((const char *) p, n);
}

static void hs_expired(struct cm_timer *tm, void *arg) {
  (void) tm;
  struct cm_conn *c = arg;
  if (c->tls != NULL) c->tls->failed = true;
  cm_error(c, "TLS handshake timeout");
}

static bool is_ip_literal(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Client: SNI and the name to check (RFC 6066 3: no SNI for an IP; the
 * certificate must then carry the IP in its SAN).  ALPN: http/1.1 for an
 * HTTP client, and for a WebSocket client before its upgrade (a request in
 * HTTP/1.1, RFC 6455 4.1; cm_ws_connect makes c->pfn the WebSocket
 * handler from the start). */
static bool client_setup(struct cm_conn *c, struct cm__tls *t) {
  SSL *ssl = t->ssl;
  SSL_set_connect_state(ssl);
  bool http = c->pfn == cm_http_handler || (c->pfn == cm_ws_handler && !c->is_websocket);
  if (http && SSL_set_alpn_protos(ssl, (const unsigned char *) "\x08http/1.1", 9) != 0) return false;
  const char *name = t->host;
  if (name == NULL || name[0] == '\0') return true;
  bool ip = is_ip_literal(name);
  if (!ip && SSL_set_tlsext_host_name(ssl, name) != 1) return false;
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) return true;
  X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
  /* Default host flags: SAN dNSName, and the CN only when the certificate
   * has no dNSName SAN (the CN=localhost certificates of SPEC 2.8). */
  return ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) == 1 : SSL_set1_host(ssl, name) == 1;
}

/* Make the SSL of a connection whose socket is up, and start the
 * handshake (from the pending phase: a client writes its ClientHello, a
 * server reads one that may be waiting already). */
static bool start_ssl(struct cm_conn *c, struct cm__tls *t) {
  char tmp[256];
  pthread_once(&bio_once, make_bio_method);
  drop_ssl(c, t);
  BIO *bio = bio_method != NULL ? BIO_new(bio_method) : NULL;
  t->ssl = bio != NULL ? SSL_new(t->ctx->ctx) : NULL;
  if (t->ssl == NULL) {
    BIO_free(bio);
    cm_error(c, "TLS: %s", ssl_reason(tmp, sizeof(tmp)));
    return false;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio);
  SSL_set_app_data(t->ssl, t);
  if (t->is_server) SSL_set_accept_state(t->ssl);
  else if (!client_setup(c, t)) {
    t->failed = true;
    cm_error(c, "TLS: %s", ssl_reason(tmp, sizeof(tmp)));
    return false;
  }
  uint32_t ms = c->mgr->tls_hs_timeout_ms != 0 ? c->mgr->tls_hs_timeout_ms : HS_TIMEOUT_MS;
  cm_timer_start(c->mgr, &t->deadline, ms, CM_TIMER_ONCE, hs_expired, c);
  c->tls_io = 1;
  c->is_tls = 1;
  c->can_read = 1; /* the pending phase steps the handshake */
  cm__touch(c);
  return true;
}

/* A socket-level connection exists (not a listener, not connecting). */
static bool has_socket(const struct cm_conn *c) {
  return c->fd >= 0 && !c->is_listening && !c->is_connecting;
}

bool cm_tls_init(struct cm_conn *c, const struct cm_tls_opts *opts) {
  char err[320];
  if (c->is_udp || c->is_closing) {
    CM_ERROR("conn %llu: TLS: not on a %s connection", (unsigned long long) c->id,
             c->is_udp ? "UDP" : "closing");
    return false;
  }
  struct cm__tls *t = tls_of(c);
  if (t == NULL) {
    cm_error(c, "OOM");
    return false;
  }
  bool server = c->is_listening || c->is_accepted;
  struct ctx_entry *e = ctx_get(opts, server, err, sizeof(err));
  ctx_drop(t->ctx);
  t->ctx = e;
  t->is_server = server;
  free(t->lsn_err);
  t->lsn_err = NULL;
  if (!server && opts->name.len > 0) {
    free(t->host);
    t->host = strndup(opts->name.buf, opts->name.len);
  }
  if (e == NULL) {
    drop_ssl(c, t);
    if (c->is_listening) {
      /* The listener stays usable (SPEC 2.8); what it accepts fails. */
      CM_ERROR("conn %llu: %s", (unsigned long long) c->id, err);
      t->lsn_err = strdup(err);
      return false;
    }
    t->failed = true;
    cm_error(c, "%s", err);
    return false;
  }
  if (c->is_listening) return true;
  c->is_tls = 1;
  /* A client still connecting starts in cm__tls_connected(). */
  return has_socket(c) ? start_ssl(c, t) : true;
}

void cm__tls_note_host(struct cm_conn *c, struct cm_str host) {
  struct cm__tls *t = host.len > 0 ? tls_of(c) : NULL;
  if (t == NULL || t->host != NULL) return;
  t->host = strndup(host.buf, host.len);
}

void cm__tls_accepted(struct cm_conn *c, struct cm_conn *lsn) {
  if (c->is_closing) return;
  if (c->tls != NULL && c->tls->ctx != NULL) return; /* its own tls_init (ACCEPT) */
  struct cm__tls *lt = lsn->tls;
  if (lt != NULL && lt->lsn_err != NULL) {
    cm_error(c, "%s", lt->lsn_err);
    return;
  }
  if (lt == NULL || lt->ctx == NULL) {
    c->is_tls = 0; /* no TLS after all (SPEC 2.8) */
    return;
  }
  struct cm__tls *t = tls_of(c);
  if (t == NULL) {
    cm_error(c, "OOM");
    return;
  }
  pthread_mutex_lock(&cache_lock);
  lt->ctx->refs++;
  pthread_mutex_unlock(&cache_lock);
  t->ctx = lt->ctx;
  t->is_server = true;
  start_ssl(c, t);
}

void cm__tls_connected(struct cm_conn *c) {
  struct cm__tls *t = c->tls;
  if (c->is_closing) return;
  if (t == NULL || t->ctx == NULL) {
    cm_tls_free(c); /* a noted host only */
    c->is_tls = 0;
    return;
  }
  if (t->ssl == NULL) start_ssl(c, t);
}

/* ---- the handshake and the data ----------------------------------------- */

/* A fatal SSL error: fail the connection with the best reason we have. */
static void fail(struct cm_conn *c, struct cm__tls *t, const char *what, int err) {
  char tmp[256];
  /* A server's TCP probe (a health check that connects and leaves) is no
   * TLS peer: nothing to report.  A client's server that hangs up on the
   * ClientHello is a failed connection its user must hear about. */
  bool quiet = t->is_server && t->saw_eof && !t->got_bytes;
  t->failed = true;
  c->tls_want_write = 0;
  if (quiet) {
    cm_close(c);
    return;
  }
  long vr = t->ssl != NULL ? SSL_get_verify_result(t->ssl) : X509_V_OK;
  if (vr != X509_V_OK && ERR_peek_error() != 0) {
    cm_error(c, "%s: %s: %s", what, ssl_reason(tmp, sizeof(tmp)), X509_verify_cert_error_string(vr));
  } else if (ERR_peek_error() != 0) {
    cm_error(c, "%s: %s", what, ssl_reason(tmp, sizeof(tmp)));
  } else if (t->saw_eof || t->sys_err == ECONNRESET || t->sys_err == EPIPE) {
    cm_error(c, "%s: connection closed by peer", what);
  } else {
    cm_error(c, "%s: %s", what, err == SSL_ERROR_SYSCALL ? "socket error" : "protocol error");
  }
}

/* One step of the handshake.  Returns 1 when it is complete (now or
 * before), 0 while it waits for the socket, -1 after a failure. */
static int handshake(struct cm_conn *c, struct cm__tls *t) {
  if (t->hs_done) return 1;
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) {
    t->hs_done = true;
    cm_timer_stop(c->mgr, &t->deadline);
    c->tls_want_write = 0;
    /* Writes were held back (can_write cleared below): let them go.  And
     * read on: bytes that came with the last flight made no new edge if
     * this step ran from the writer. */
    c->can_write = 1;
    c->can_read = 1;
    cm__touch(c);
    cm_call(c, CM_EV_TLS_HS, NULL);
    return c->is_closing || c->tls != t ? -1 : 1;
  }
  int err = SSL_get_error(t->ssl, rc);
  if (err == SSL_ERROR_WANT_READ) {
    /* The socket is empty (our BIO saw EAGAIN): wait for its edge.  Until
     * the handshake is done nothing else may be written, so writing must
     * not look possible, or the pending phase would spin on queued data. */
    c->can_read = 0;
    c->can_write = 0;
    c->tls_want_write = 0;
    return 0;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    c->can_write = 0;
    c->tls_want_write = 1; /* OUT interest (has_output), then cm__tls_pump */
    return 0;
  }
  fail(c, t, "TLS handshake failed", err);
  return -1;
}

bool cm__tls_pump(struct cm_conn *c) {
  struct cm__tls *t = c->tls;
  if (t == NULL || t->ssl == NULL) return true;
  if (!t->hs_done) return handshake(c, t) == 1 && !c->is_closing;
  if (c->tls_want_write) {
    /* A read needed to write (a post-handshake message): read again. */
    c->tls_want_write = 0;
    c->can_read = 1;
    cm__touch(c);
  }
  return true;
}

/* SSL_read records into `buf` until the socket is empty or `size` is
 * reached.  Returns the bytes read; *err is the SSL_ERROR_* that stopped
 * it (SSL_ERROR_NONE: the budget). */
static size_t read_records(struct cm__tls *t, char *buf, size_t size, int *err) {
  size_t got = 0;
  *err = SSL_ERROR_NONE;
  ERR_clear_error();
  while (got < size) {
    size_t n = 0;
    if (SSL_read_ex(t->ssl, buf + got, size - got, &n) != 1) {
      *err = SSL_get_error(t->ssl, 0);
      break;
    }
    got += n;
  }
  return got;
}

static size_t read_want(const struct cm_iobuf *io) {
  size_t want = READ_BUDGET;
  if (io->cap != 0) want = io->cap > io->len ? io->cap - io->len : 1; /* 1: detect overflow */
  return want > READ_BUDGET ? READ_BUDGET : want;
}

void cm__tls_read(struct cm_conn *c) {
  struct cm__tls *t = c->tls;
  int hs = handshake(c, t);
  if (hs <= 0) return;
  if (c->mgr->scratch == NULL && (c->mgr->scratch = malloc(CM_SCRATCH_SIZE)) == NULL) {
    cm_error(c, "OOM");
    return;
  }
  int err;
  size_t want = read_want(&c->recv);
  size_t got = read_records(t, c->mgr->scratch, want, &err);
  /* Stopped by the budget, or OpenSSL holds decrypted bytes: no edge will
   * tell.  (Not SSL_has_pending: a partial record waits for the socket,
   * whose next bytes do make an edge; reading on would spin.) */
  c->can_read = err == SSL_ERROR_NONE || SSL_pending(t->ssl) > 0;
  if (got > 0) {
    int rc = cm_iobuf_add(&c->recv, c->mgr->scratch, got);
    if (rc != 0) {
      cm_error(c, rc == -CM_EFULL ? "MG_MAX_RECV_SIZE" : "OOM");
      return;
    }
    long n = (long) got;
    cm_call(c, CM_EV_READ, &n);
    if (c->is_closing || c->tls != t) return;
  }
  if (err == SSL_ERROR_NONE || err == SSL_ERROR_WANT_READ) return;
  if (err == SSL_ERROR_WANT_WRITE) {
    c->tls_want_write = 1; /* OUT interest; the writable edge reads again (cm__tls_pump) */
    c->can_write = 0;
    return;
  }
  if (err == SSL_ERROR_ZERO_RETURN || (t->saw_eof && ERR_peek_error() == 0) || t->sys_err == ECONNRESET) {
    t->failed = t->sys_err != 0;
    cm_close(c); /* the peer closed: a normal end (SPEC 2.4) */
    return;
  }
  fail(c, t, "TLS", err);
}

long cm__tls_write(struct cm_conn *c, size_t want) {
  struct cm__tls *t = c->tls;
  if (!cm__tls_pump(c)) return c->is_closing ? -1 : 0;
  size_t done = 0;
  while (done < want && !c->is_closing && c->tls == t) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, cm_iobuf_data(&c->send), want - done, &n) == 1) {
      long sent = (long) n;
      cm_iobuf_consume(&c->send, n);
      done += n;
      cm_call(c, CM_EV_WRITE, &sent);
      continue;
    }
    int err = SSL_get_error(t->ssl, 0);
    if (err == SSL_ERROR_WANT_WRITE) {
      c->can_write = 0; /* full: an edge tells when it drains */
      break;
    }
    if (err == SSL_ERROR_WANT_READ) { /* cannot happen without renegotiation */
      c->can_read = 1;
      cm__touch(c);
      break;
    }
    if (t->sys_err == EPIPE || t->sys_err == ECONNRESET) {
      t->failed = true;
      cm_close(c);
    } else {
      fail(c, t, "TLS", err);
    }
    return -1;
  }
  return (long) done;
}
