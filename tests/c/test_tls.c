/* test_tls.c: TLS through the real loop over loopback: handshakes both
 * ways, data queued before the handshake, large transfers (partial writes,
 * bytes OpenSSL holds), verification failures, bad PEM, mutual TLS,
 * plaintext and silent peers, the handshake deadline, re-init.
 * Certificates are made here with OpenSSL's API: a CA and leaves it signs. */
#include <errno.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

/* ---- certificates -------------------------------------------------------- */

struct pem {
  char *cert, *key;
  X509 *x;
  EVP_PKEY *k;
};

static EVP_PKEY *new_key(bool rsa) { return rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"); }

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
  X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  ASSERT(e != NULL);
  X509_add_ext(x, e, -1);
  X509_EXTENSION_free(e);
}

static char *to_pem(int (*w)(BIO *, void *), void *obj) {
  BIO *b = BIO_new(BIO_s_mem());
  ASSERT(w(b, obj) == 1);
  char *data;
  long n = BIO_get_mem_data(b, &data);
  char *out = strndup(data, (size_t) n);
  BIO_free(b);
  return out;
}

static int write_x509(BIO *b, void *x) { return PEM_write_bio_X509(b, x); }
static int write_key(BIO *b, void *k) { return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL); }

/* A certificate for `cn` signed by `ca` (NULL: self-signed CA), valid from
 * `from_days` to `to_days` relative to now. */
static struct pem make(const char *cn, const struct pem *ca, const char *san, int from_days, int to_days) {
  struct pem p = {0};
  p.k = new_key(false);
  p.x = X509_new();
  X509_set_version(p.x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(p.x), (long) (random() & 0xffffff) + 1);
  X509_gmtime_adj(X509_getm_notBefore(p.x), (long) from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(p.x), (long) to_days * 86400);
  X509_set_pubkey(p.x, p.k);
  X509_NAME *name = X509_get_subject_name(p.x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1, 0);
  X509 *issuer = ca != NULL ? ca->x : p.x;
  X509_set_issuer_name(p.x, X509_get_subject_name(issuer));
  add_ext(p.x, issuer, NID_basic_constraints, ca == NULL ? "critical,CA:TRUE" : "CA:FALSE");
  if (san != NULL) add_ext(p.x, issuer, NID_subject_alt_name, san);
  ASSERT(X509_sign(p.x, ca != NULL ? ca->k : p.k, EVP_sha256()) > 0);
  p.cert = to_pem(write_x509, p.x);
  p.key = to_pem(write_key, p.k);
  return p;
}

static void pem_free(struct pem *p) {
  free(p->cert);
  free(p->key);
  X509_free(p->x);
  EVP_PKEY_free(p->k);
}

static struct pem ca, other_ca, leaf, leaf_san, expired, client_cert;

static void make_all(void) {
  ca = make("Test CA", NULL, NULL, -1, 30);
  other_ca = make("Other CA", NULL, NULL, -1, 30);
  leaf = make("localhost", &ca, NULL, -1, 30); /* CN only, no SAN (SPEC 2.8) */
  leaf_san = make("server", &ca, "DNS:example.test,IP:127.0.0.1", -1, 30);
  expired = make("localhost", &ca, NULL, -10, -1);
  client_cert = make("client", &ca, NULL, -1, 30);
}

static void free_all(void) {
  pem_free(&ca);
  pem_free(&other_ca);
  pem_free(&leaf);
  pem_free(&leaf_san);
  pem_free(&expired);
  pem_free(&client_cert);
}

static struct cm_tls_opts server_opts(const struct pem *p) {
  return (struct cm_tls_opts){.cert = cm_str_c(p->cert), .key = cm_str_c(p->key)};
}

static struct cm_tls_opts client_opts(const struct pem *trust, const char *name) {
  return (struct cm_tls_opts){.ca = cm_str_c(trust != NULL ? trust->cert : NULL), .name = cm_str_c(name)};
}

/* ---- the two sides --------------------------------------------------------- */

struct side {
  struct cm_tls_opts opts; /* tls_init with these (client: in CONNECT; server: in ACCEPT if set_in_accept) */
  bool set_in_accept;      /* server: call tls_init in ACCEPT */
  bool hs, closed, echo;   /* saw TLS_HS / CLOSE; echo what arrives */
  int hs_count, closes, errors;
  bool is_tls_after_accept; /* is_tls right after ACCEPT */
  char error[256];
  size_t want; /* client: done after this many bytes back */
  struct cm_iobuf got;
  const char *first; /* client: sent in CONNECT, before the handshake */
  bool done;
};

static void note_error(struct side *s, const void *ev_data) {
  s->errors++;
  snprintf(s->error, sizeof(s->error), "%s", (const char *) ev_data);
}

static void server_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct side *s = c->fn_data;
  if (c->is_listening) return;
  if (ev == CM_EV_ACCEPT && s->set_in_accept) cm_tls_init(c, &s->opts);
  if (ev == CM_EV_TLS_HS) s->hs_count++;
  if (ev == CM_EV_ERROR) note_error(s, ev_data);
  if (ev == CM_EV_CLOSE) s->closes++;
  if (ev == CM_EV_READ && s->echo) {
    ASSERT(cm_send(c, cm_iobuf_data(&c->recv), c->recv.len));
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
}

static void client_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct side *s = c->fn_data;
  if (ev == CM_EV_CONNECT) {
    cm_tls_init(c, &s->opts);
    if (s->first != NULL && !c->is_closing) ASSERT(cm_send(c, s->first, strlen(s->first)));
  }
  if (ev == CM_EV_TLS_HS) {
    s->hs = true;
    ASSERT(c->is_tls);
  }
  if (ev == CM_EV_ERROR) note_error(s, ev_data);
  if (ev == CM_EV_READ) {
    cm_iobuf_add(&s->got, cm_iobuf_data(&c->recv), c->recv.len);
    cm_iobuf_consume(&c->recv, c->recv.len);
    if (s->got.len >= s->want) {
      s->done = true;
      cm_close(c);
    }
  }
  if (ev == CM_EV_CLOSE) s->done = s->closed = true;
}

static struct cm_conn *tls_listener(struct cm_mgr *mgr, struct side *srv, const struct pem *p) {
  struct cm_conn *l = cm_listen(mgr, "tls://127.0.0.1:0", server_fn, srv);
  ASSERT(l != NULL && l->is_tls);
  if (p != NULL) {
    struct cm_tls_opts o = server_opts(p);
    ASSERT(cm_tls_init(l, &o));
  }
  return l;
}

static struct cm_conn *dial(struct cm_mgr *mgr, struct cm_conn *l, struct side *cli, const char *host) {
  char url[96];
  snprintf(url, sizeof(url), "tls://%s:%u", host, l->loc.port);
  return cm_connect(mgr, url, client_fn, cli);
}

/* Run until the client is done and the server saw its close. */
static void settle(struct cm_mgr *mgr, struct side *cli) {
  ASSERT(cm_test_poll_until(mgr, &cli->done, 10000));
  for (int i = 0; i < 20; i++) cm_mgr_poll(mgr, 5);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_echo_verified(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.first = "hello", .want = 5};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf);
  cli.opts = client_opts(&ca, "localhost");
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(cli.hs && srv.hs_count == 1);
  ASSERT_EQ(cli.errors + srv.errors, 0);
  ASSERT_EQ(cli.got.len, 5u);
  ASSERT(memcmp(cm_iobuf_data(&cli.got), "hello", 5) == 0);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* 4 MiB each way: partial writes, full sockets, records OpenSSL holds. */
static void big_client(struct cm_conn *c, int ev, void *ev_data) {
  struct side *s = c->fn_data;
  if (ev == CM_EV_TLS_HS) {
    char *buf = malloc(s->want);
    for (size_t i = 0; i < s->want; i++) buf[i] = (char) (i * 7 + i / 251);
    ASSERT(cm_send(c, buf, s->want));
    free(buf);
  }
  client_fn(c, ev == CM_EV_TLS_HS ? CM_EV_POLL : ev, ev_data);
}

static void test_large_echo(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.want = 4u << 20};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf_san);
  cli.opts = client_opts(&ca, "example.test");
  char url[64];
  snprintf(url, sizeof(url), "tls://127.0.0.1:%u", l->loc.port);
  ASSERT(cm_connect(&mgr, url, big_client, &cli) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &cli.done, 30000));
  ASSERT_EQ(cli.errors + srv.errors, 0);
  ASSERT_EQ(cli.got.len, cli.want);
  const char *g = cm_iobuf_data(&cli.got);
  for (size_t i = 0; i < cli.want; i++) ASSERT(g[i] == (char) (i * 7 + i / 251));
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* The host of the URL is the default name: 127.0.0.1 is in leaf_san's SAN. */
static void test_default_name_is_url_host(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.first = "x", .want = 1};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf_san);
  cli.opts = client_opts(&ca, NULL);
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(cli.hs);
  ASSERT_EQ(cli.errors, 0);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* The client fails with `want` in its message; the listener lives on. */
static void expect_client_failure(const struct pem *server, struct cm_tls_opts copts, const char *want) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.first = "x", .want = 1, .opts = copts};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, server);
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(!cli.hs && cli.closed);
  if (strstr(cli.error, want) == NULL) fprintf(stderr, "error was: %s\n", cli.error);
  ASSERT(strstr(cli.error, want) != NULL);
  ASSERT(!l->is_closing);
  /* Another client, with good options, still gets through. */
  struct side ok = {.first = "y", .want = 1, .opts = client_opts(&ca, "localhost")};
  if (server == &leaf) {
    dial(&mgr, l, &ok, "127.0.0.1");
    settle(&mgr, &ok);
    ASSERT(ok.hs && ok.errors == 0);
  }
  cm_iobuf_free(&cli.got);
  cm_iobuf_free(&ok.got);
  cm_mgr_free(&mgr);
}

static void test_verify_failures(void) {
  expect_client_failure(&leaf, client_opts(&ca, "wrong.name"), "hostname mismatch");
  expect_client_failure(&leaf, client_opts(&other_ca, "localhost"), "certificate verify failed");
  expect_client_failure(&expired, client_opts(&ca, "localhost"), "certificate has expired");
  /* The system store does not know our CA. */
  expect_client_failure(&leaf, client_opts(NULL, "localhost"), "certificate verify failed");
}

static void test_skip_verification(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.first = "abc", .want = 3};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &expired);
  cli.opts = client_opts(&other_ca, "wrong.name");
  cli.opts.skip_verification = true;
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(cli.hs && cli.errors == 0 && cli.got.len == 3);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

static void test_bad_pem(void) {
  struct cm_mgr mgr;
  struct side srv = {0}, cli = {.first = "x", .want = 1, .opts = client_opts(&ca, "localhost")};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, NULL);
  struct cm_tls_opts bad = {.cert = cm_str_c("garbage"), .key = cm_str_c(leaf.key)};
  ASSERT(!cm_tls_init(l, &bad));
  ASSERT(!l->is_closing && l->is_tls);
  /* What it accepts fails with the reason instead of talking plaintext. */
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(strstr(srv.error, "TLS: bad cert") != NULL);
  ASSERT(cli.closed && !cli.hs);
  /* Mismatched key, then a good init: the listener serves again. */
  struct cm_tls_opts mism = {.cert = cm_str_c(leaf.cert), .key = cm_str_c(other_ca.key)};
  ASSERT(!cm_tls_init(l, &mism));
  cm_tls_free(l);
  struct cm_tls_opts good = server_opts(&leaf);
  ASSERT(cm_tls_init(l, &good));
  struct side cli2 = {.first = "x", .want = 1, .opts = client_opts(&ca, "localhost")};
  srv.echo = true;
  dial(&mgr, l, &cli2, "127.0.0.1");
  settle(&mgr, &cli2);
  ASSERT(cli2.hs && cli2.errors == 0 && cli2.got.len == 1);
  /* A client with a bad CA fails at once, inside tls_init. */
  struct side cli3 = {.opts = {.ca = cm_str_c("-----BEGIN CERTIFICATE-----\nnope\n")}};
  dial(&mgr, l, &cli3, "127.0.0.1");
  settle(&mgr, &cli3);
  ASSERT(strstr(cli3.error, "TLS: bad ca") != NULL);
  cm_iobuf_free(&cli.got);
  cm_iobuf_free(&cli2.got);
  cm_mgr_free(&mgr);
}

static void test_mismatched_key_on_accept(void) {
  struct cm_mgr mgr;
  struct side srv = {.set_in_accept = true}, cli = {.first = "x", .want = 1};
  srv.opts = (struct cm_tls_opts){.cert = cm_str_c(leaf.cert), .key = cm_str_c(ca.key)};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", server_fn, &srv);
  cli.opts = client_opts(&ca, "localhost");
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  if (strstr(srv.error, "key does not match cert") == NULL)
    fprintf(stderr, "srv: %s cli: %s\n", srv.error, cli.error);
  ASSERT(strstr(srv.error, "key does not match cert") != NULL);
  ASSERT(cli.closed && !cli.hs && !l->is_closing);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* SPEC 2.8: tls_init in ACCEPT on a tcp:// listener; is_tls follows. */
static void test_init_in_accept(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true, .set_in_accept = true, .opts = server_opts(&leaf)};
  struct side cli = {.first = "hi", .want = 2, .opts = client_opts(&ca, "localhost")};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", server_fn, &srv);
  ASSERT(!l->is_tls);
  char url[64];
  snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", l->loc.port);
  struct cm_conn *c = cm_connect(&mgr, url, client_fn, &cli);
  ASSERT(!c->is_tls);
  settle(&mgr, &cli);
  ASSERT(cli.hs && srv.hs_count == 1 && cli.got.len == 2);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

static void flag_fn(struct cm_conn *c, int ev, void *ev_data) {
  struct side *s = c->fn_data;
  (void) ev_data;
  if (ev == CM_EV_ACCEPT) s->is_tls_after_accept = c->is_tls; /* during ACCEPT: inherited */
  if (ev == CM_EV_READ) {
    s->done = true;
    s->hs = c->is_tls; /* after ACCEPT: reset, no TLS was set up */
  }
}

static void test_tls_url_without_init_is_plain(void) {
  struct cm_mgr mgr;
  struct side srv = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tls://127.0.0.1:0", flag_fn, &srv);
  ASSERT(l->is_tls);
  int fd = cm_test_peer_connect(l->loc.port);
  ASSERT(send(fd, "plain", 5, 0) == 5);
  ASSERT(cm_test_poll_until(&mgr, &srv.done, 5000));
  ASSERT(srv.is_tls_after_accept && !srv.hs);
  close(fd);
  cm_mgr_free(&mgr);
}

static void test_mutual_tls(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tls://127.0.0.1:0", server_fn, &srv);
  struct cm_tls_opts so = server_opts(&leaf);
  so.ca = cm_str_c(ca.cert);
  ASSERT(cm_tls_init(l, &so));
  /* Without a certificate: refused by the server. */
  struct side anon = {.first = "x", .want = 1, .opts = client_opts(&ca, "localhost")};
  dial(&mgr, l, &anon, "127.0.0.1");
  settle(&mgr, &anon);
  ASSERT(anon.got.len == 0 && anon.closed);
  ASSERT(strstr(srv.error, "certificate") != NULL);
  /* With one signed by the CA: served. */
  struct side with = {.first = "x", .want = 1, .opts = client_opts(&ca, "localhost")};
  with.opts.cert = cm_str_c(client_cert.cert);
  with.opts.key = cm_str_c(client_cert.key);
  srv.errors = 0;
  dial(&mgr, l, &with, "127.0.0.1");
  settle(&mgr, &with);
  ASSERT(with.hs && with.got.len == 1 && srv.errors == 0);
  cm_iobuf_free(&anon.got);
  cm_iobuf_free(&with.got);
  cm_mgr_free(&mgr);
}

/* Plaintext to a TLS port, a silent peer, one that leaves mid-handshake. */
static void test_bad_peers(void) {
  struct cm_mgr mgr;
  struct side srv = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.tls_hs_timeout_ms = 300;
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf);
  int plain = cm_test_peer_connect(l->loc.port);
  ASSERT(send(plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27, 0) == 27);
  int silent = cm_test_peer_connect(l->loc.port);
  int leaver = cm_test_peer_connect(l->loc.port);
  ASSERT(send(leaver, "\x16\x03\x01\x02\x00\x01\x00", 7, 0) == 7); /* a ClientHello's start */
  for (int i = 0; i < 200 && srv.closes < 3; i++) {
    cm_mgr_poll(&mgr, 10);
    if (i == 5) close(leaver);
  }
  ASSERT_EQ(srv.closes, 3);
  ASSERT_EQ(srv.errors, 3);
  /* Closed by us: EOF, or a reset (its request was never read). */
  char buf[16];
  ssize_t n = recv(plain, buf, sizeof(buf), 0);
  ASSERT(n == 0 || (n < 0 && errno == ECONNRESET));
  ASSERT(!l->is_closing);
  close(plain);
  close(silent);
  cm_mgr_free(&mgr);
}

/* A TCP probe that connects and leaves says nothing: no error. */
static void test_probe_is_quiet(void) {
  struct cm_mgr mgr;
  struct side srv = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf);
  int fd = cm_test_peer_connect(l->loc.port);
  for (int i = 0; i < 5; i++) cm_mgr_poll(&mgr, 5);
  close(fd);
  for (int i = 0; i < 200 && srv.closes < 1; i++) cm_mgr_poll(&mgr, 10);
  ASSERT_EQ(srv.closes, 1);
  ASSERT_EQ(srv.errors, 0);
  cm_mgr_free(&mgr);
}

/* A server that reads the ClientHello and hangs up (EOF, no byte back):
 * the client fails with an error, it is not a quiet probe. */
static void hang_up_fn(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_READ && !c->is_listening) cm_close(c);
}

static void test_client_hung_up_on(void) {
  struct cm_mgr mgr;
  struct side cli = {.first = "x", .want = 1, .opts = client_opts(&ca, "localhost")};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_listen(&mgr, "tcp://127.0.0.1:0", hang_up_fn, NULL);
  ASSERT(l != NULL);
  dial(&mgr, l, &cli, "127.0.0.1");
  settle(&mgr, &cli);
  ASSERT(!cli.hs && cli.closed);
  ASSERT_EQ(cli.errors, 1);
  if (strstr(cli.error, "closed by peer") == NULL) fprintf(stderr, "error was: %s\n", cli.error);
  ASSERT(strstr(cli.error, "TLS handshake failed: connection closed by peer") != NULL);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* tls_free then tls_init again, on a listener; twice in a row on a client. */
static void test_reinit(void) {
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli = {.first = "z", .want = 1, .opts = client_opts(&ca, "localhost")};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf);
  struct cm_tls_opts o = server_opts(&leaf);
  cm_tls_free(l);
  cm_tls_free(l);
  ASSERT(l->is_tls);
  ASSERT(cm_tls_init(l, &o));
  ASSERT(cm_tls_init(l, &o));
  struct cm_conn *c = dial(&mgr, l, &cli, "127.0.0.1");
  struct cm_tls_opts first = client_opts(&other_ca, "nope");
  ASSERT(cm_tls_init(c, &first)); /* before CONNECT; CONNECT's init replaces it */
  settle(&mgr, &cli);
  ASSERT(cli.hs && cli.got.len == 1 && cli.errors == 0);
  cm_iobuf_free(&cli.got);
  cm_mgr_free(&mgr);
}

/* Many clients at once share one context and all finish. */
static void test_many(void) {
  enum { N = 50 };
  struct cm_mgr mgr;
  struct side srv = {.echo = true}, cli[N];
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = tls_listener(&mgr, &srv, &leaf);
  for (int i = 0; i < N; i++) {
    cli[i] = (struct side){.first = "ping", .want = 4, .opts = client_opts(&ca, "localhost")};
    dial(&mgr, l, &cli[i], "127.0.0.1");
  }
  int done = 0;
  for (int round = 0; round < 2000 && done < N; round++) {
    cm_mgr_poll(&mgr, 10);
    done = 0;
    for (int i = 0; i < N; i++) done += cli[i].done;
  }
  ASSERT_EQ(done, N);
  for (int i = 0; i < N; i++) {
    ASSERT(cli[i].hs && cli[i].got.len == 4);
    cm_iobuf_free(&cli[i].got);
  }
  ASSERT_EQ(srv.hs_count, N);
  cm_mgr_free(&mgr);
}

/* ALPN: an HTTP client offers http/1.1 and an HTTP server picks it; a
 * plain TCP client offers nothing and gets nothing; a WebSocket client
 * offers http/1.1. */
struct alpn_log {
  char server[16], client[16];
  bool done;
};

static void copy_alpn(char *dst, const struct cm_conn *c) {
  struct cm_str a = cm_tls_alpn(c);
  snprintf(dst, 16, "%.*s", (int) a.len, a.buf != NULL ? a.buf : "");
}

static void alpn_server(struct cm_conn *c, int ev, void *ev_data) {
  struct alpn_log *lg = c->fn_data;
  if (ev == CM_EV_TLS_HS) copy_alpn(lg->server, c);
  if (ev == CM_EV_HTTP_MSG) ASSERT(cm_http_reply(c, 200, "", 0, "ok", 2));
  (void) ev_data;
}

static void alpn_client(struct cm_conn *c, int ev, void *ev_data) {
  struct alpn_log *lg = c->fn_data;
  struct cm_tls_opts o = client_opts(&ca, "localhost");
  if (ev == CM_EV_CONNECT) {
    cm_tls_init(c, &o);
    ASSERT(cm_send(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27));
  }
  if (ev == CM_EV_TLS_HS) copy_alpn(lg->client, c);
  if (ev == CM_EV_HTTP_MSG || ev == CM_EV_CLOSE || ev == CM_EV_READ) lg->done = true;
  (void) ev_data;
}

/* A WebSocket client: its upgrade request is HTTP/1.1, so it offers it. */
static void alpn_ws_client(struct cm_conn *c, int ev, void *ev_data) {
  struct alpn_log *lg = c->fn_data;
  struct cm_tls_opts o = client_opts(&ca, "localhost");
  if (ev == CM_EV_CONNECT) cm_tls_init(c, &o);
  if (ev == CM_EV_TLS_HS) copy_alpn(lg->client, c);
  if (ev == CM_EV_CLOSE) lg->done = true; /* the 200 is no 101: handshake error */
  (void) ev_data;
}

static void test_alpn(void) {
  struct cm_mgr mgr;
  struct alpn_log http = {0}, raw = {0}, ws = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *l = cm_http_listen(&mgr, "https://127.0.0.1:0", alpn_server, &http);
  struct cm_tls_opts so = server_opts(&leaf);
  ASSERT(cm_tls_init(l, &so));
  char url[64];
  snprintf(url, sizeof(url), "https://127.0.0.1:%u", l->loc.port);
  ASSERT(cm_http_connect(&mgr, url, alpn_client, &http) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &http.done, 10000));
  ASSERT(strcmp(http.server, "http/1.1") == 0 && strcmp(http.client, "http/1.1") == 0);
  l->fn_data = &raw; /* what the listener accepts next logs here */
  snprintf(url, sizeof(url), "tls://127.0.0.1:%u", l->loc.port);
  ASSERT(cm_connect(&mgr, url, alpn_client, &raw) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &raw.done, 10000));
  ASSERT(raw.client[0] == '\0' && raw.server[0] == '\0');
  l->fn_data = &ws;
  snprintf(url, sizeof(url), "wss://127.0.0.1:%u/", l->loc.port);
  ASSERT(cm_ws_connect(&mgr, url, NULL, NULL, alpn_ws_client, &ws) != NULL);
  ASSERT(cm_test_poll_until(&mgr, &ws.done, 10000));
  ASSERT(strcmp(ws.server, "http/1.1") == 0 && strcmp(ws.client, "http/1.1") == 0);
  cm_mgr_free(&mgr);
}

int main(void) {
  make_all();
  RUN(test_echo_verified);
  RUN(test_large_echo);
  RUN(test_default_name_is_url_host);
  RUN(test_verify_failures);
  RUN(test_skip_verification);
  RUN(test_bad_pem);
  RUN(test_mismatched_key_on_accept);
  RUN(test_init_in_accept);
  RUN(test_tls_url_without_init_is_plain);
  RUN(test_mutual_tls);
  RUN(test_bad_peers);
  RUN(test_probe_is_quiet);
  RUN(test_client_hung_up_on);
  RUN(test_reinit);
  RUN(test_many);
  RUN(test_alpn);
  free_all();
  return cm_test_done();
}
