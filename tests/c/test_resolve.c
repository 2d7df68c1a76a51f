/* test_resolve.c: name lookups on the resolver's worker threads
 * (resolve.c): a name through getaddrinfo and /etc/hosts, a name that
 * cannot resolve, timeouts, cancelling, a connection closed while its
 * lookup runs, shutdown while a worker is busy.  Nothing leaves the
 * machine: "localhost" is in /etc/hosts and ".invalid" names fail without
 * a query (RFC 6761 §6.4). */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "internal.h" /* cm__resolve_start, cm__resolve_test_delay_ms */
#include "test.h"

#define WAIT_MS 3000

struct log {
  int events[32];
  int n;
  char error[256];
  bool done; /* CLOSE, or the echo came back */
  bool echo; /* send "ping" on CONNECT */
};

static void note(struct log *lg, int ev) {
  if (ev != CM_EV_POLL && lg->n < (int) CM_ARRAY_SIZE(lg->events)) lg->events[lg->n++] = ev;
}

static bool saw(const struct log *lg, int ev) {
  for (int i = 0; i < lg->n; i++) {
    if (lg->events[i] == ev) return true;
  }
  return false;
}

static void client(struct cm_conn *c, int ev, void *ev_data) {
  struct log *lg = c->fn_data;
  note(lg, ev);
  if (ev == CM_EV_ERROR) snprintf(lg->error, sizeof(lg->error), "%s", (const char *) ev_data);
  if (ev == CM_EV_CONNECT && lg->echo) ASSERT(cm_send(c, "ping", 4));
  if (ev == CM_EV_READ && c->recv.len >= 4) lg->done = true;
  if (ev == CM_EV_CLOSE) lg->done = true;
}

static void echo(struct cm_conn *c, int ev, void *ev_data) {
  (void) ev_data;
  if (ev == CM_EV_READ && !c->is_listening) {
    ASSERT(cm_send(c, cm_iobuf_data(&c->recv), c->recv.len));
    cm_iobuf_consume(&c->recv, c->recv.len);
  }
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void poll_for(struct cm_mgr *mgr, unsigned ms) {
  uint64_t end = cm_millis() + ms;
  while (cm_millis() < end) cm_mgr_poll(mgr, 5);
}

/* A client whose own lookup never completes in the test: a ".invalid"
 * name with the worker delayed; the test then resolves it by hand. */
static struct cm_conn *pending_client(struct cm_mgr *mgr, struct log *lg, const char *url) {
  struct cm_conn *c = cm_connect(mgr, url, client, lg);
  ASSERT(c != NULL && !c->is_closing);
  ASSERT(lg->n == 1 && lg->events[0] == CM_EV_OPEN); /* nothing else yet */
  return c;
}

/* "localhost" through getaddrinfo on a worker (cm_connect takes the
 * literal shortcut for it, so the lookup is started by hand, replacing the
 * connection's own): CM_EV_RESOLVE, then the connect, from the loop. */
static void test_localhost_worker(void) {
  struct cm_mgr mgr;
  struct log lg = {.echo = true};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", echo, NULL);
  ASSERT(lsn != NULL);
  struct cm_conn *c = pending_client(&mgr, &lg, "tcp://placeholder.invalid:1");
  ASSERT(mgr.resolver != NULL);
  ASSERT(cm__resolve_start(c, cm_str_c("localhost"), lsn->loc.port));
  ASSERT_EQ(lg.n, 1); /* asynchronous: nothing happened inside the call */
  ASSERT(cm_test_poll_until(&mgr, &lg.done, WAIT_MS));
  ASSERT(lg.error[0] == '\0');
  ASSERT(lg.events[1] == CM_EV_RESOLVE && lg.events[2] == CM_EV_CONNECT);
  ASSERT(!c->rem.is_ip6 && memcmp(c->rem.ip, "\x7f\0\0\x01", 4) == 0);
  ASSERT_EQ(c->rem.port, lsn->loc.port);
  /* the resolver's connection is internal (hidden from cm_mgr_find) and
   * took the id after c's (SPEC 2.2) */
  ASSERT(cm_mgr_find(&mgr, c->id + 1) == NULL);
  bool found = false;
  for (struct cm_conn *x = mgr.conns; x != NULL; x = x->next) found |= x->is_internal && x->id == c->id + 1;
  ASSERT(found);
  cm_mgr_free(&mgr);
}

/* Many lookups at once: more than one worker, every answer delivered. */
static void test_many(void) {
  struct cm_mgr mgr;
  struct log lg[12];
  memset(lg, 0, sizeof(lg));
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", echo, NULL);
  atomic_store(&cm__resolve_test_delay_ms, 30); /* keep workers busy: the pool grows */
  for (size_t i = 0; i < CM_ARRAY_SIZE(lg); i++) {
    lg[i].echo = true;
    struct cm_conn *c = pending_client(&mgr, &lg[i], "tcp://placeholder.invalid:1");
    ASSERT(cm__resolve_start(c, cm_str_c("localhost"), lsn->loc.port));
  }
  uint64_t end = cm_millis() + WAIT_MS;
  size_t done = 0;
  while (done < CM_ARRAY_SIZE(lg) && cm_millis() < end) {
    cm_mgr_poll(&mgr, 5);
    done = 0;
    for (size_t i = 0; i < CM_ARRAY_SIZE(lg); i++) done += lg[i].done;
  }
  atomic_store(&cm__resolve_test_delay_ms, 0);
  ASSERT_EQ(done, CM_ARRAY_SIZE(lg));
  for (size_t i = 0; i < CM_ARRAY_SIZE(lg); i++) ASSERT(saw(&lg[i], CM_EV_CONNECT) && lg[i].error[0] == '\0');
  cm_mgr_free(&mgr);
}

static void test_unknown_name(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  pending_client(&mgr, &lg, "http://no-such-host.invalid:8080/x");
  ASSERT(cm_test_poll_until(&mgr, &lg.done, WAIT_MS));
  ASSERT(strcmp(lg.error, "no-such-host.invalid DNS lookup failed") == 0);
  ASSERT(!saw(&lg, CM_EV_RESOLVE) && !saw(&lg, CM_EV_CONNECT));
  ASSERT(lg.events[lg.n - 2] == CM_EV_ERROR && lg.events[lg.n - 1] == CM_EV_CLOSE);
  /* the resolver stays for the next lookup */
  struct log lg2 = {0};
  pending_client(&mgr, &lg2, "tcp://INVALID.:1");
  ASSERT(cm_test_poll_until(&mgr, &lg2.done, WAIT_MS));
  ASSERT(strcmp(lg2.error, "INVALID. DNS lookup failed") == 0);
  cm_mgr_free(&mgr);
}

/* Closed while its lookup runs: the late answer touches nothing. */
static void test_close_while_resolving(void) {
  struct cm_mgr mgr;
  struct log lg = {0}, lg2 = {.echo = true};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", echo, NULL);
  atomic_store(&cm__resolve_test_delay_ms, 100);
  struct cm_conn *c = pending_client(&mgr, &lg, "tcp://placeholder.invalid:1");
  ASSERT(cm__resolve_start(c, cm_str_c("localhost"), lsn->loc.port));
  cm_close(c);
  poll_for(&mgr, 300); /* the answer arrives after the close */
  atomic_store(&cm__resolve_test_delay_ms, 0);
  ASSERT(lg.n == 2 && lg.events[1] == CM_EV_CLOSE);
  /* and the resolver still serves others */
  c = pending_client(&mgr, &lg2, "tcp://placeholder.invalid:1");
  ASSERT(cm__resolve_start(c, cm_str_c("localhost"), lsn->loc.port));
  ASSERT(cm_test_poll_until(&mgr, &lg2.done, WAIT_MS));
  ASSERT(saw(&lg2, CM_EV_CONNECT));
  cm_mgr_free(&mgr);
}

static void test_timeout(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  mgr.dns_timeout_ms = 50;
  atomic_store(&cm__resolve_test_delay_ms, 300);
  uint64_t start = cm_millis();
  pending_client(&mgr, &lg, "tcp://slow.invalid:1");
  ASSERT(cm_test_poll_until(&mgr, &lg.done, WAIT_MS));
  uint64_t took = cm_millis() - start;
  ASSERT(strcmp(lg.error, "DNS timeout") == 0);
  ASSERT(took >= 50 && took < 300);
  int n = lg.n;
  poll_for(&mgr, 400); /* the late answer is dropped */
  atomic_store(&cm__resolve_test_delay_ms, 0);
  ASSERT_EQ(lg.n, n);
  cm_mgr_free(&mgr);
}

/* cm_resolve / cm_resolve_cancel, the public pair. */
static void test_resolve_api(void) {
  struct cm_mgr mgr;
  struct log lg = {0}, lg2 = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  /* a literal on a UDP client answers at once: only c->rem changes */
  struct cm_conn *u = cm_connect(&mgr, "udp://127.0.0.1:9", client, &lg);
  ASSERT(u != NULL && saw(&lg, CM_EV_CONNECT));
  lg.n = 0;
  ASSERT(cm_resolve(u, "udp://127.0.0.2:10"));
  ASSERT(lg.n == 1 && lg.events[0] == CM_EV_RESOLVE);
  ASSERT(memcmp(u->rem.ip, "\x7f\0\0\x02", 4) == 0 && u->rem.port == 10);
  ASSERT(!cm_resolve(u, "udp://:10")); /* no host */
  /* a name: cancelled before the answer, nothing follows */
  atomic_store(&cm__resolve_test_delay_ms, 50);
  lg.n = 0;
  ASSERT(cm_resolve(u, "nothing.invalid"));
  cm_resolve_cancel(u);
  poll_for(&mgr, 200);
  ASSERT_EQ(lg.n, 0);
  /* a name: failure */
  ASSERT(cm_resolve(u, "tcp://nothing.invalid:5"));
  ASSERT(cm_test_poll_until(&mgr, &lg.done, WAIT_MS));
  ASSERT(strcmp(lg.error, "nothing.invalid DNS lookup failed") == 0);
  /* a replaced lookup answers once, for the last name */
  struct cm_conn *c = pending_client(&mgr, &lg2, "tcp://first.invalid:1");
  ASSERT(cm__resolve_start(c, cm_str_c("second.invalid"), 1));
  ASSERT(cm_test_poll_until(&mgr, &lg2.done, WAIT_MS));
  atomic_store(&cm__resolve_test_delay_ms, 0);
  ASSERT(strcmp(lg2.error, "second.invalid DNS lookup failed") == 0);
  int errors = 0;
  for (int i = 0; i < lg2.n; i++) errors += lg2.events[i] == CM_EV_ERROR;
  ASSERT_EQ(errors, 1);
  /* names no lookup can take */
  char longname[300];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  ASSERT(!cm__resolve_start(c, cm_str_c(longname), 1));
  ASSERT(!cm__resolve_start(c, cm_str_c(""), 1));
  cm_mgr_free(&mgr);
}

/* A listener may resolve too (SPEC 1.5): c->rem is set, nothing connects,
 * and it keeps accepting. */
static void test_resolve_on_listener(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  struct cm_conn *lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", client, &lg);
  ASSERT(lsn != NULL);
  int fd0 = lsn->fd;
  lg.n = 0;
  ASSERT(cm_resolve(lsn, "tcp://127.0.0.3:81"));
  ASSERT(lg.n == 1 && lg.events[0] == CM_EV_RESOLVE);
  ASSERT(memcmp(lsn->rem.ip, "\x7f\0\0\x03", 4) == 0 && lsn->rem.port == 81);
  ASSERT(lsn->is_listening && lsn->fd == fd0 && !lsn->is_connecting);
  /* a name, through a worker: the error names it */
  ASSERT(cm_resolve(lsn, "nowhere.invalid"));
  ASSERT(cm_test_poll_until(&mgr, &lg.done, WAIT_MS));
  ASSERT(strcmp(lg.error, "nowhere.invalid DNS lookup failed") == 0);
  cm_mgr_free(&mgr);
  /* localhost through getaddrinfo on a listener of a fresh manager */
  struct log lg2 = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  lsn = cm_listen(&mgr, "tcp://127.0.0.1:0", client, &lg2);
  ASSERT(cm__resolve_start(lsn, cm_str_c("localhost"), 7));
  uint64_t end = cm_millis() + WAIT_MS;
  while (!saw(&lg2, CM_EV_RESOLVE) && cm_millis() < end) cm_mgr_poll(&mgr, 5);
  ASSERT(saw(&lg2, CM_EV_RESOLVE) && !saw(&lg2, CM_EV_CONNECT));
  ASSERT(lsn->rem.port == 7 && lsn->is_listening);
  int peer = cm_test_peer_connect(lsn->loc.port); /* still accepting */
  end = cm_millis() + WAIT_MS;
  while (!saw(&lg2, CM_EV_ACCEPT) && cm_millis() < end) cm_mgr_poll(&mgr, 5);
  ASSERT(saw(&lg2, CM_EV_ACCEPT));
  close(peer);
  cm_mgr_free(&mgr);
}

/* cm_mgr_free while a worker is inside a slow lookup: it returns at once
 * (the worker is left to finish alone), and nothing leaks once it has. */
static void test_free_while_busy(void) {
  struct cm_mgr mgr;
  struct log lg = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  atomic_store(&cm__resolve_test_delay_ms, 400);
  pending_client(&mgr, &lg, "tcp://busy.invalid:1");
  sleep_ms(20); /* let the worker take the job */
  uint64_t start = cm_millis();
  cm_mgr_free(&mgr);
  ASSERT(cm_millis() - start < 200);
  ASSERT(lg.events[lg.n - 1] == CM_EV_CLOSE && lg.error[0] == '\0');
  sleep_ms(600); /* the detached worker ends and frees the resolver */
  atomic_store(&cm__resolve_test_delay_ms, 0);
  /* an idle pool is joined: free right after a completed lookup */
  struct log lg2 = {0};
  ASSERT(cm_mgr_init(&mgr) == 0);
  pending_client(&mgr, &lg2, "tcp://x.invalid:1");
  ASSERT(cm_test_poll_until(&mgr, &lg2.done, WAIT_MS));
  cm_mgr_free(&mgr);
  ASSERT(mgr.resolver == NULL);
}

int main(void) {
  RUN(test_localhost_worker);
  RUN(test_many);
  RUN(test_unknown_name);
  RUN(test_close_while_resolving);
  RUN(test_timeout);
  RUN(test_resolve_api);
  RUN(test_resolve_on_listener);
  RUN(test_free_while_busy);
  return cm_test_done();
}
