/* resolve.c: name lookups on worker threads (cm/resolve.h).
 *
 * The poll thread queues a job per lookup; up to CM_RESOLVE_THREADS workers
 * take jobs, call getaddrinfo(3) (which blocks, and honours the system's
 * resolver configuration) and queue the answer; the first answer queued
 * writes an eventfd that the loop watches through an internal connection,
 * and the poll thread then delivers every queued answer.  Jobs name their
 * connection by id, so an answer for a connection that has closed finds
 * nothing and is dropped.
 *
 * Sharing: `lock` guards the queues, `closed`, the worker table and `refs`.
 * The resolver lives as long as its last reference: the manager's, and one
 * per worker thread.  Shutting down joins the idle workers and detaches the
 * busy ones (getaddrinfo cannot be interrupted); a detached worker finishes
 * its lookup, drops the answer and its reference, and the last one out
 * frees everything.  So cm_mgr_free() never waits on a slow DNS server. */
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define CM_RESOLVE_THREADS 4 /* one slow lookup must not hold up the others */
#define CM_MAX_HOST 253      /* RFC 1035 §2.3.4: a name is at most 255 octets on the wire */

_Atomic unsigned cm__resolve_test_delay_ms;

struct job {
  struct job *next;                      /* todo or done queue (under lock) */
  struct job *next_active, *prev_active; /* poll thread: lookups in flight */
  struct cm_resolver *r;
  struct cm_timer timer; /* poll thread: the timeout */
  uint64_t conn_id;      /* who asked; looked up, never held */
  uint16_t port;         /* for c->rem */
  bool cancelled;        /* poll thread: answered (timeout) or forgotten */
  atomic_bool skip;      /* the worker need not look it up any more */
  bool ok;               /* worker: an address was found */
  struct cm_addr addr;   /* worker: that address */
  char host[];           /* NUL-terminated */
};

struct worker {
  struct cm_resolver *r;
  pthread_t tid;
  bool idle; /* waiting for a job (under lock) */
};

struct cm_resolver {
  pthread_mutex_t lock;
  pthread_cond_t cond; /* a job was queued, or closed was set */
  unsigned refs;       /* the manager's, plus one per worker */
  int efd;             /* written when `done` becomes non-empty */
  bool closed;         /* the manager is gone: answers are dropped */
  struct job *todo, **todo_tail;
  struct job *done, **done_tail;
  size_t ntodo;
  unsigned nworkers, nidle;
  struct worker workers[CM_RESOLVE_THREADS];
  /* poll thread only */
  struct cm_mgr *mgr;
  struct cm_conn *conn; /* internal connection over efd */
  struct job *active;   /* jobs not yet answered or cancelled */
};

static void free_jobs(struct job *j) {
  while (j != NULL) {
    struct job *next = j->next;
    free(j);
    j = next;
  }
}

static void release(struct cm_resolver *r) {
  pthread_mutex_lock(&r->lock);
  bool last = --r->refs == 0;
  pthread_mutex_unlock(&r->lock);
  if (!last) return;
  free_jobs(r->todo);
  free_jobs(r->done);
  close(r->efd);
  pthread_cond_destroy(&r->cond);
  pthread_mutex_destroy(&r->lock);
  free(r);
}

/* ---- worker threads --------------------------------------------------- */

/* RFC 6761 §6.4: name resolution APIs SHOULD answer ".invalid" names with
 * an immediate negative response, never asking a DNS server. */
static bool is_invalid_tld(const char *host) {
  size_t n = strlen(host);
  if (n > 0 && host[n - 1] == '.') n--; /* the root label */
  if (n == 7 && strncasecmp(host, "invalid", 7) == 0) return true;
  return n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0;
}

static void test_delay(void) {
  unsigned ms = atomic_load(&cm__resolve_test_delay_ms);
  struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};
  if (ms > 0) nanosleep(&ts, NULL);
}

static void take_addr(const struct addrinfo *ai, struct cm_addr *a) {
  memset(a, 0, sizeof(*a));
  if (ai->ai_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) ai->ai_addr;
    a->is_ip6 = true;
    a->scope_id = s6->sin6_scope_id;
    memcpy(a->ip, &s6->sin6_addr, 16);
  } else {
    memcpy(a->ip, &((const struct sockaddr_in *) ai->ai_addr)->sin_addr, 4);
  }
}

/* getaddrinfo, then the first IPv4 answer, else the first IPv6 one.  No
 * AI_ADDRCONFIG: on a host with only loopback it hides "localhost". */
static void lookup(struct job *j) {
  struct addrinfo hints, *res = NULL, *pick = NULL;
  test_delay();
  if (is_invalid_tld(j->host)) return;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM; /* one entry per address, not per socket type */
  if (getaddrinfo(j->host, NULL, &hints, &res) != 0) return;
  for (struct addrinfo *p = res; p != NULL && pick == NULL; p = p->ai_next) {
    if (p->ai_family == AF_INET) pick = p;
  }
  for (struct addrinfo *p = res; p != NULL && pick == NULL; p = p->ai_next) {
    if (p->ai_family == AF_INET6) pick = p;
  }
  if (pick != NULL) {
    take_addr(pick, &j->addr);
    j->ok = true;
  }
  freeaddrinfo(res);
}

/* Under lock: hand an answer to the poll thread. */
static void post(struct cm_resolver *r, struct job *j) {
  bool was_empty = r->done == NULL;
  j->next = NULL;
  *r->done_tail = j;
  r->done_tail = &j->next;
  if (was_empty) {
    uint64_t one = 1;
    ssize_t rc = write(r->efd, &one, sizeof(one)); /* EAGAIN still leaves it readable */
    (void) rc;
  }
}

/* Under lock: the oldest queued job. */
static struct job *take(struct cm_resolver *r) {
  struct job *j = r->todo;
  r->todo = j->next;
  if (r->todo == NULL) r->todo_tail = &r->todo;
  r->ntodo--;
  return j;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  struct cm_resolver *r = w->r;
  pthread_mutex_lock(&r->lock);
  for (;;) {
    while (!r->closed && r->todo == NULL) {
      w->idle = true;
      r->nidle++;
      pthread_cond_wait(&r->cond, &r->lock);
      r->nidle--;
      w->idle = false;
    }
    if (r->closed) break;
    struct job *j = take(r);
    pthread_mutex_unlock(&r->lock);
    if (!atomic_load(&j->skip)) lookup(j);
    pthread_mutex_lock(&r->lock);
    if (r->closed) {
      free(j); /* nobody is left to answer */
      break;
    }
    post(r, j);
  }
  pthread_mutex_unlock(&r->lock);
  release(r); /* `w` lives in `r`: not touched after this */
  return NULL;
}

/* Under lock: start one more worker.  Signals are blocked in it, so they
 * keep going to the application's threads (the interpreter deals with them there). */
static bool spawn(struct cm_resolver *r) {
  sigset_t all, old;
  struct worker *w = &r->workers[r->nworkers];
  w->r = r;
  w->idle = false;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&w->tid, NULL, worker_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) return false;
  r->nworkers++;
  r->refs++;
  return true;
}

/* ---- the poll thread ---------------------------------------------------- */

static void unlink_active(struct cm_resolver *r, struct job *j) {
  if (j->prev_active != NULL) j->prev_active->next_active = j->next_active;
  else
    r->active = j->next_active;
  if (j->next_active != NULL) j->next_active->prev_active = j->prev_active;
  j->next_active = j->prev_active = NULL;
}

/* Stop waiting for `j`.  Its memory stays with the worker or the queues
 * until the answer comes back (and is dropped). */
static void forget(struct cm_resolver *r, struct job *j) {
  j->cancelled = true;
  atomic_store(&j->skip, true);
  cm_timer_stop(r->mgr, &j->timer);
  unlink_active(r, j);
}

/* The address is known: a client without a socket yet connects to it. */
static void resolved(struct cm_conn *c) {
  if (c->is_client && c->fd < 0 && !c->is_connecting) cm__connect_resolved(c);
  else
    cm_call(c, CM_EV_RESOLVE, NULL);
}

static void answer(struct cm_resolver *r, struct job *j) {
  struct cm_conn *c = cm_mgr_find(r->mgr, j->conn_id);
  if (c == NULL || c->is_closing) return;
  if (!j->ok) {
    cm_error(c, "%s DNS lookup failed", j->host);
    return;
  }
  c->rem = j->addr;
  c->rem.port = j->port;
  resolved(c);
}

static void on_timeout(struct cm_timer *t, void *arg) {
  struct job *j = arg;
  struct cm_resolver *r = j->r;
  (void) t;
  forget(r, j);
  struct cm_conn *c = cm_mgr_find(r->mgr, j->conn_id);
  if (c != NULL && !c->is_closing) cm_error(c, "DNS timeout");
}

/* The eventfd fired: deliver every answer queued so far, in order. */
static void deliver(struct cm_resolver *r) {
  uint64_t count;
  ssize_t rc = read(r->efd, &count, sizeof(count)); /* reset it first: see post() */
  (void) rc;
  pthread_mutex_lock(&r->lock);
  struct job *j = r->done;
  r->done = NULL;
  r->done_tail = &r->done;
  pthread_mutex_unlock(&r->lock);
  while (j != NULL) {
    struct job *next = j->next;
    if (!j->cancelled) {
      forget(r, j);
      answer(r, j);
    }
    free(j);
    j = next;
  }
}

/* The manager is shutting down (its internal connection closes). */
static void shutdown_resolver(struct cm_resolver *r) {
  pthread_t idle[CM_RESOLVE_THREADS];
  unsigned nidle = 0;
  while (r->active != NULL) forget(r, r->active);
  pthread_mutex_lock(&r->lock);
  r->closed = true;
  free_jobs(r->todo);
  free_jobs(r->done);
  r->todo = r->done = NULL;
  r->todo_tail = &r->todo;
  r->done_tail = &r->done;
  for (unsigned i = 0; i < r->nworkers; i++) {
    if (r->workers[i].idle) idle[nidle++] = r->workers[i].tid;
    else
      pthread_detach(r->workers[i].tid); /* in getaddrinfo: let it finish alone */
  }
  pthread_cond_broadcast(&r->cond);
  pthread_mutex_unlock(&r->lock);
  for (unsigned i = 0; i < nidle; i++) pthread_join(idle[i], NULL);
  /* The eventfd belongs to the resolver, which may outlive the connection. */
  cm__poller_del(r->mgr, r->conn);
  r->conn->fd = -1;
  r->conn->pfn_data = NULL;
  r->mgr->resolver = NULL;
  release(r);
}

static void resolver_handler(struct cm_conn *c, int ev, void *ev_data) {
  struct cm_resolver *r = c->pfn_data;
  (void) ev_data;
  if (r == NULL) return;
  if (ev == CM_EV_READ) deliver(r);
  else if (ev == CM_EV_CLOSE)
    shutdown_resolver(r);
}

/* The resolver of `mgr`, created with its internal connection on first use. */
static struct cm_resolver *get_resolver(struct cm_mgr *mgr) {
  if (mgr->resolver != NULL) return mgr->resolver;
  struct cm_resolver *r = calloc(1, sizeof(*r));
  if (r == NULL) return NULL;
  r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct cm_conn *c = r->efd >= 0 ? cm__conn_new(mgr, r->efd) : NULL;
  if (c == NULL) {
    if (r->efd >= 0) close(r->efd);
    free(r);
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  r->refs = 1;
  r->todo_tail = &r->todo;
  r->done_tail = &r->done;
  r->mgr = mgr;
  r->conn = c;
  c->is_internal = 1;
  c->pfn = resolver_handler;
  c->pfn_data = r;
  cm_conn_set_poll(c, false);
  cm__poller_set(mgr, c, CM__IN);
  mgr->resolver = r;
  return r;
}

static struct job *active_job(struct cm_resolver *r, uint64_t id) {
  for (struct job *j = r != NULL ? r->active : NULL; j != NULL; j = j->next_active) {
    if (j->conn_id == id) return j;
  }
  return NULL;
}

/* Queue `j` for a worker, starting one if every worker is busy. */
static bool enqueue(struct cm_resolver *r, struct job *j) {
  pthread_mutex_lock(&r->lock);
  /* A worker that fails to start is fine as long as another one exists. */
  if (r->ntodo + 1 > r->nidle && r->nworkers < CM_RESOLVE_THREADS) spawn(r);
  bool ok = r->nworkers > 0;
  if (ok) {
    *r->todo_tail = j;
    r->todo_tail = &j->next;
    r->ntodo++;
    pthread_cond_signal(&r->cond);
  }
  pthread_mutex_unlock(&r->lock);
  return ok;
}

bool cm__resolve_start(struct cm_conn *c, struct cm_str host, uint16_t port) {
  if (host.len == 0 || host.len > CM_MAX_HOST || memchr(host.buf, '\0', host.len) != NULL) return false;
  struct cm_resolver *r = get_resolver(c->mgr);
  if (r == NULL) return false;
  struct job *old = active_job(r, c->id);
  if (old != NULL) forget(r, old); /* one lookup per connection */
  struct job *j = calloc(1, sizeof(*j) + host.len + 1);
  if (j == NULL) return false;
  memcpy(j->host, host.buf, host.len);
  j->r = r;
  j->conn_id = c->id;
  j->port = port;
  atomic_init(&j->skip, false);
  if (!enqueue(r, j)) {
    free(j);
    return false;
  }
  j->next_active = r->active;
  if (r->active != NULL) r->active->prev_active = j;
  r->active = j;
  uint32_t ms = c->mgr->dns_timeout_ms != 0 ? c->mgr->dns_timeout_ms : CM_DNS_TIMEOUT_MS;
  cm_timer_start(c->mgr, &j->timer, ms, CM_TIMER_ONCE, on_timeout, j);
  return true;
}

bool cm_resolve(struct cm_conn *c, const char *url) {
  struct cm_url u;
  struct cm_addr a;
  if (c->is_closing || url == NULL) return false;
  cm_resolve_cancel(c);
  cm_url_split(url, &u);
  if (u.host.len == 0) return false;
  if (!cm_url_addr(url, &a)) return cm__resolve_start(c, u.host, (uint16_t) cm_url_port(url));
  c->rem = a; /* a literal: nothing to wait for */
  resolved(c);
  return true;
}

void cm_resolve_cancel(struct cm_conn *c) {
  struct job *j = active_job(c->mgr->resolver, c->id);
  if (j != NULL) forget(c->mgr->resolver, j);
}
