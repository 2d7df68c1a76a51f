/* sock.c: BSD sockets: listen, connect, accept, read, write, UDP.  The loop
 * (mgr.c) calls cm__sock_io() for each connection whose fd fired. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static socklen_t to_sockaddr(const struct cm_addr *a, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof(*ss));
  if (a->is_ip6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a->port);
    s6->sin6_scope_id = a->scope_id;
    memcpy(&s6->sin6_addr, a->ip, 16);
    return sizeof(*s6);
  }
  struct sockaddr_in *s4 = (struct sockaddr_in *) ss;
  s4->sin_family = AF_INET;
  s4->sin_port = htons(a->port);
  memcpy(&s4->sin_addr, a->ip, 4);
  return sizeof(*s4);
}

static void from_sockaddr(const struct sockaddr_storage *ss, struct cm_addr *a) {
  memset(a, 0, sizeof(*a));
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) ss;
    a->is_ip6 = true;
    a->port = ntohs(s6->sin6_port);
    a->scope_id = s6->sin6_scope_id;
    memcpy(a->ip, &s6->sin6_addr, 16);
  } else if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *) ss;
    a->port = ntohs(s4->sin_port);
    memcpy(a->ip, &s4->sin_addr, 4);
  }
}

static void read_local(struct cm_conn *c) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(c->fd, (struct sockaddr *) &ss, &len) == 0) from_sockaddr(&ss, &c->loc);
}

/* Requests and replies are small writes: send them without waiting for
 * ACKs of earlier segments (Nagle). */
static void set_nodelay(int fd) {
  int on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

static bool is_udp_url(const char *url) { return strncasecmp(url, "udp:", 4) == 0; }

static int open_socket(const struct cm_addr *a, bool udp) {
  int type = (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
  return socket(a->is_ip6 ? AF_INET6 : AF_INET, type, 0);
}

static int bind_listen(int fd, const struct cm_addr *a, bool udp, unsigned flags) {
  struct sockaddr_storage ss;
  socklen_t len = to_sockaddr(a, &ss);
  int on = 1;
  /* Restarting a server must not wait out TIME_WAIT of the old one. */
  if (!udp) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  /* Worker processes each bind the same port; the kernel spreads new
   * connections over their sockets (socket(7)). */
  if ((flags & CM_LISTEN_REUSEPORT) && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0)
    return -1;
  if (bind(fd, (struct sockaddr *) &ss, len) != 0) return -1;
  return udp ? 0 : listen(fd, SOMAXCONN);
}

struct cm_conn *cm__listen(struct cm_mgr *mgr, const char *url, cm_handler_fn pfn, cm_handler_fn fn,
                           void *fn_data) {
  struct cm_addr a;
  if (mgr->epfd < 0 || url == NULL || !cm_url_addr(url, &a)) {
    CM_ERROR("listen: bad address %s", url != NULL ? url : "(null)");
    return NULL;
  }
  bool udp = is_udp_url(url);
  int fd = open_socket(&a, udp);
  if (fd < 0 || bind_listen(fd, &a, udp, mgr->listen_flags) != 0) {
    CM_ERROR("listen %s: errno %d", url, errno);
    if (fd >= 0) close(fd);
    return NULL;
  }
  struct cm_conn *c = cm__conn_new(mgr, fd);
  if (c == NULL) {
    close(fd);
    return NULL;
  }
  c->is_listening = 1;
  c->is_udp = udp;
  c->is_tls = cm_url_is_ssl(url);
  c->pfn = pfn;
  c->fn = fn;
  c->fn_data = fn_data;
  read_local(c);
  cm__poller_set(mgr, c, CM__IN);
  CM_INFO("conn %llu: listening on %s", (unsigned long long) c->id, url);
  cm_call(c, CM_EV_OPEN, NULL);
  return c;
}

/* Start the socket-level connect of a client whose c->rem is known. */
static void start_connect(struct cm_conn *c) {
  struct sockaddr_storage ss;
  socklen_t len = to_sockaddr(&c->rem, &ss);
  c->fd = open_socket(&c->rem, c->is_udp);
  if (c->fd < 0) {
    cm_error(c, "socket error");
    return;
  }
  if (!c->is_udp) set_nodelay(c->fd);
  int rc = connect(c->fd, (struct sockaddr *) &ss, len);
  if (rc != 0 && errno == EINPROGRESS && !c->is_udp) {
    c->is_connecting = 1;
    cm__poller_set(c->mgr, c, CM__OUT);
    return;
  }
  if (rc != 0) {
    cm_error(c, "socket error");
    return;
  }
  read_local(c);
  c->can_write = 1;
  cm__poller_set(c->mgr, c, CM__IN);
  cm__touch(c);
  cm_call(c, CM_EV_CONNECT, NULL);
}

struct cm_conn *cm__connect(struct cm_mgr *mgr, const char *url, cm_handler_fn pfn, cm_handler_fn fn,
                            void *fn_data) {
  if (mgr->epfd < 0 || url == NULL || url[0] == '\0') return NULL;
  struct cm_conn *c = cm__conn_new(mgr, -1);
  if (c == NULL) return NULL;
  c->is_client = 1;
  c->is_udp = is_udp_url(url);
  c->is_tls = cm_url_is_ssl(url);
  c->pfn = pfn;
  c->fn = fn;
  c->fn_data = fn_data;
  cm_call(c, CM_EV_OPEN, NULL);
  if (c->is_closing) return c;
  if (!cm_url_addr(url, &c->rem)) {
    /* A name: resolve.c looks it up on a worker thread and comes back to
     * cm__connect_resolved() from the loop (SPEC Decision 11). */
    struct cm_url u;
    cm_url_split(url, &u);
    c->rem.port = (uint16_t) cm_url_port(url);
    if (!cm__resolve_start(c, u.host, c->rem.port))
      cm_error(c, "%.*s DNS lookup failed", (int) u.host.len, u.host.buf != NULL ? u.host.buf : "");
    return c;
  }
  cm__connect_resolved(c);
  return c;
}

void cm__connect_resolved(struct cm_conn *c) {
  cm_call(c, CM_EV_RESOLVE, NULL);
  if (!c->is_closing) start_connect(c);
}

static void finish_connect(struct cm_conn *c) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == EINPROGRESS) return; /* spurious wakeup */
  if (err != 0) {
    cm_error(c, "socket error");
    return;
  }
  c->is_connecting = 0;
  read_local(c);
  cm_call(c, CM_EV_CONNECT, NULL);
}

static void accept_one(struct cm_conn *lsn, int fd, const struct sockaddr_storage *ss) {
  struct cm_conn *c = cm__conn_new(lsn->mgr, fd);
  if (c == NULL) {
    close(fd);
    return;
  }
  set_nodelay(fd);
  c->is_accepted = 1;
  lsn->mgr->stats.conns_accepted++;
  c->can_write = 1; /* a fresh socket has room */
  c->is_tls = lsn->is_tls;
  c->fn = lsn->fn;
  c->fn_data = lsn->fn_data;
  c->pfn = lsn->pfn;
  from_sockaddr(ss, &c->rem);
  read_local(c);
  cm__poller_set(c->mgr, c, CM__IN);
  cm__touch(c);
  cm_call(c, CM_EV_OPEN, lsn);
  cm_call(c, CM_EV_ACCEPT, NULL);
}

static void accept_conns(struct cm_conn *lsn) {
  /* A cap per readiness event keeps one busy listener from starving the
   * connections it already has. */
  for (int i = 0; i < CM_MAX_ACCEPTS && !lsn->is_closing; i++) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd = accept4(lsn->fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
        CM_ERROR("conn %llu: accept: errno %d", (unsigned long long) lsn->id, errno);
      return;
    }
    accept_one(lsn, fd, &ss);
  }
}

/* Peer went away (EOF, reset): a normal close, not an error (SPEC 2.4). */
static bool peer_gone(int err) { return err == ECONNRESET || err == EPIPE || err == ESHUTDOWN; }

/* One recv().  With room for a large read in c->recv (a body streaming in)
 * read straight into it; otherwise read into the manager's scratch buffer
 * and append only what arrived, so a connection's buffer is sized by its
 * data, not by the read size: an idle keep-alive connection keeps ~1 KiB,
 * not 16. */
static ssize_t recv_some(struct cm_conn *c, int *rc, size_t *asked) {
  struct cm_iobuf *io = &c->recv;
  *rc = 0;
  if (cm_iobuf_room(io) >= CM_IO_STEP) {
    *asked = cm_iobuf_room(io);
    ssize_t n = recv(c->fd, cm_iobuf_data(io) + io->len, *asked, 0);
    if (n > 0) cm_iobuf_commit(io, (size_t) n);
    return n;
  }
  if (c->mgr->scratch == NULL && (c->mgr->scratch = malloc(CM_SCRATCH_SIZE)) == NULL) {
    *rc = -CM_ENOMEM;
    return -1;
  }
  size_t want = CM_SCRATCH_SIZE;
  if (io->cap != 0) want = io->cap > io->len ? io->cap - io->len : 1; /* 1: detect overflow */
  if (want > CM_SCRATCH_SIZE) want = CM_SCRATCH_SIZE;
  *asked = want;
  ssize_t n = recv(c->fd, c->mgr->scratch, want, 0);
  if (n > 0) *rc = cm_iobuf_add(io, c->mgr->scratch, (size_t) n);
  return n;
}

void cm__sock_read(struct cm_conn *c) {
  int rc;
  size_t asked = 0;
  ssize_t n = recv_some(c, &rc, &asked);
  /* Only a read that filled its buffer may have left bytes behind, or the
   * EOF of a peer that shut down, or an interrupted one everything (no edge
   * announces them again). */
  c->can_read = n > 0 ? (size_t) n == asked || c->peer_shut : n < 0 && errno == EINTR;
  if (n > 0) c->mgr->stats.bytes_in += (uint64_t) n;
  if (rc != 0) {
    cm_error(c, rc == -CM_EFULL ? "MG_MAX_RECV_SIZE" : "OOM");
  } else if (n > 0) {
    long got = (long) n;
    cm_call(c, CM_EV_READ, &got);
  } else if (n == 0 || peer_gone(errno)) {
    cm_close(c);
  } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    cm_error(c, "socket error");
  }
}

static void read_datagram(struct cm_conn *c) {
  int rc = cm_iobuf_reserve(&c->recv, 65536); /* the largest datagram */
  if (rc != 0) {
    cm_error(c, rc == -CM_EFULL ? "MG_MAX_RECV_SIZE" : "OOM");
    return;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  ssize_t n = recvfrom(c->fd, cm_iobuf_data(&c->recv) + c->recv.len, cm_iobuf_room(&c->recv), 0,
                       (struct sockaddr *) &ss, &len);
  if (n < 0) {
    /* ECONNREFUSED: an ICMP error from an earlier datagram; not fatal. */
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNREFUSED)
      cm_error(c, "socket error");
    return;
  }
  long got = (long) n;
  c->mgr->stats.bytes_in += (uint64_t) n;
  from_sockaddr(&ss, &c->rem); /* replies go to the last sender */
  cm_iobuf_commit(&c->recv, (size_t) n);
  cm_call(c, CM_EV_READ, &got);
}

long cm__sock_write(struct cm_conn *c, size_t want) {
  size_t done = 0;
  while (done < want && !c->is_closing) {
    ssize_t n = send(c->fd, cm_iobuf_data(&c->send), want - done, MSG_NOSIGNAL);
    if (n > 0) {
      long sent = (long) n;
      c->mgr->stats.bytes_out += (uint64_t) n;
      cm_iobuf_consume(&c->send, (size_t) n);
      done += (size_t) n;
      cm_call(c, CM_EV_WRITE, &sent);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->can_write = 0; /* full: an edge tells when it drains */
      break;
    } else {
      if (n < 0 && peer_gone(errno)) cm_close(c);
      else
        cm_error(c, "socket error");
      return -1;
    }
  }
  return (long) done;
}

bool cm__sock_flush(struct cm_conn *c) {
  /* A file being sent (cm_send_fd) orders the output itself. */
  if (c->fsrc != NULL) return cm__sendfd_flush(c);
  /* Bytes a CM_EV_WRITE handler queues go out in the same flush. */
  while (c->send.len > 0 && !c->is_closing) {
    size_t want = c->send.len;
    long n = cm__sock_write(c, want);
    if (n < 0) return false;
    if ((size_t) n < want) return true; /* the socket is full */
  }
  return true;
}

bool cm__sock_sendto(struct cm_conn *c, const void *buf, size_t len) {
  if (c->fd < 0) return false;
  struct sockaddr_storage ss;
  socklen_t sl = to_sockaddr(&c->rem, &ss);
  ssize_t n = sendto(c->fd, buf, len, MSG_NOSIGNAL, (struct sockaddr *) &ss, sl);
  if (n > 0) c->mgr->stats.bytes_out += (uint64_t) n;
  return n == (ssize_t) len;
}

void cm__sock_io(struct cm_conn *c) {
  if (c->is_listening && !c->is_udp) {
    accept_conns(c);
  } else if (c->is_connecting) {
    if (c->is_writable || c->is_readable) finish_connect(c);
  } else if (c->is_udp) {
    if (c->is_readable) read_datagram(c);
  } else {
    if (c->is_readable) cm__sock_read(c);
    if (c->is_writable && !c->is_closing) cm__sock_flush(c);
  }
}

struct cm_conn *cm_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__listen(mgr, url, NULL, fn, fn_data);
}

struct cm_conn *cm_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data) {
  return cm__connect(mgr, url, NULL, fn, fn_data);
}
