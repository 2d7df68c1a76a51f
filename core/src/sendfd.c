/* sendfd.c: the "send from a file" facility of cm_send_fd() (cm/conn.h).
 *
 * A file source is one more segment of a connection's output: `prefix`
 * bytes of c->send go first, then the file, then whatever c->send holds
 * after them.  The loop calls cm__sendfd_flush() instead of writing c->send
 * whenever a source is attached; it knows nothing about what the file is
 * for (HTTP static files use it).
 *
 * Plain TCP uses sendfile(2): the bytes go from the page cache to the socket
 * and never through our memory.  Elsewhere (TLS, which must encrypt, or a
 * file sendfile refuses) a piece of at most CM_FILE_PIECE bytes is read into
 * c->send whenever the previous one has been written, so a file of any size
 * costs at most one piece of memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "internal.h"

#define CM_FILE_PIECE (64u << 10) /* read size when sendfile cannot be used */
#define CM_FILE_BURST (1u << 20)  /* file bytes per flush: others get a turn */

struct cm__fsrc {
  int fd;           /* the file, owned */
  uint64_t off;     /* next file offset to send */
  uint64_t left;    /* file bytes still to send */
  size_t prefix;    /* bytes at the front of c->send that precede them */
  bool no_sendfile; /* sendfile(2) refused this file: read it instead */
  cm_sent_fn done;  /* completion callback, or NULL */
  void *arg;        /* passed to done */
};

bool cm_send_fd(struct cm_conn *c, int fd, uint64_t offset, uint64_t len, cm_sent_fn done, void *arg) {
  if (fd < 0 || c->fsrc != NULL || c->is_closing || c->is_udp || c->is_listening) return false;
  /* Offsets must stay representable as off_t. */
  if (offset > (uint64_t) INT64_MAX || len > (uint64_t) INT64_MAX - offset) return false;
  struct cm__fsrc *f = calloc(1, sizeof(*f));
  if (f == NULL) return false;
  f->fd = fd;
  f->off = offset;
  f->left = len;
  f->prefix = c->send.len;
  f->done = done;
  f->arg = arg;
  c->fsrc = f;
  cm__touch(c);
  return true;
}

void cm__sendfd_free(struct cm_conn *c) {
  struct cm__fsrc *f = c->fsrc;
  if (f == NULL) return;
  c->fsrc = NULL;
  close(f->fd);
  free(f);
}

/* The whole file is out: detach, then tell the owner (who may queue more
 * output, or finish an HTTP response and so resume the connection). */
static void finish(struct cm_conn *c) {
  cm_sent_fn done = c->fsrc->done;
  void *arg = c->fsrc->arg;
  cm__sendfd_free(c);
  if (done != NULL) done(c, arg);
}

static void written(struct cm_conn *c, struct cm__fsrc *f, size_t n, size_t *budget) {
  long sent = (long) n;
  f->off += n;
  f->left -= n;
  *budget -= n < *budget ? n : *budget;
  cm_call(c, CM_EV_WRITE, &sent);
}

/* One sendfile(2) call.  Returns 1 to go on, 0 when the socket is full,
 * -1 after a failure (the connection is then closing). */
static int send_piece(struct cm_conn *c, struct cm__fsrc *f, size_t *budget) {
  size_t want = f->left < *budget ? (size_t) f->left : *budget;
  off_t off = (off_t) f->off;
  ssize_t n = sendfile(c->fd, f->fd, &off, want);
  if (n > 0) {
    c->mgr->stats.bytes_out += (uint64_t) n;
    written(c, f, (size_t) n, budget);
    return 1;
  }
  if (n == 0) {
    cm_error(c, "file read error"); /* shorter than announced */
    return -1;
  }
  if (errno == EINTR) return 1;
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    c->can_write = 0; /* full: an edge tells when it drains */
    return 0;
  }
  if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
    f->no_sendfile = true; /* e.g. a file system without splice support */
    return 1;
  }
  if (errno == ECONNRESET || errno == EPIPE) cm_close(c);
  else
    cm_error(c, "socket error");
  return -1;
}

/* Read the next piece of the file into the front of c->send, ahead of any
 * bytes queued after the file, and make it the prefix.  Same returns. */
static int read_piece(struct cm_conn *c, struct cm__fsrc *f, size_t *budget) {
  size_t want = f->left < CM_FILE_PIECE ? (size_t) f->left : CM_FILE_PIECE;
  if (cm_iobuf_reserve(&c->send, want) != 0) {
    cm_error(c, "OOM");
    return -1;
  }
  char *base = cm_iobuf_data(&c->send);
  size_t tail = c->send.len; /* queued after the file; usually none */
  if (tail > 0) memmove(base + want, base, tail);
  ssize_t n;
  do n = pread(f->fd, base, want, (off_t) f->off);
  while (n < 0 && errno == EINTR);
  size_t got = n > 0 ? (size_t) n : 0;
  if (tail > 0 && got < want) memmove(base + got, base + want, tail);
  if (got == 0) {
    cm_error(c, "file read error");
    return -1;
  }
  cm_iobuf_commit(&c->send, got);
  f->prefix = got;
  f->off += got;
  f->left -= got;
  *budget -= got < *budget ? got : *budget;
  return 1;
}

/* Write what precedes the file.  Same returns. */
static int send_prefix(struct cm_conn *c, struct cm__fsrc *f) {
  long n = cm__sock_write(c, f->prefix);
  if (n < 0) return -1;
  f->prefix -= (size_t) n;
  return f->prefix == 0 ? 1 : 0;
}

/* One step of the output: the prefix, the end of the file, or a piece of
 * it.  Returns 1 to go on, 0 to wait for the socket or the next turn, -1
 * after a failure. */
static int step(struct cm_conn *c, size_t *budget) {
  struct cm__fsrc *f = c->fsrc;
  if (f->prefix > 0) return send_prefix(c, f);
  if (f->left == 0) {
    finish(c);
    return 1;
  }
  if (*budget == 0) return 0; /* others' turn: OUT interest stays, so we come back */
  if (c->is_tls || f->no_sendfile) return read_piece(c, f, budget);
  return send_piece(c, f, budget);
}

bool cm__sendfd_flush(struct cm_conn *c) {
  size_t budget = CM_FILE_BURST;
  while (c->fsrc != NULL && !c->is_closing) {
    int rc = step(c, &budget);
    if (rc <= 0) return rc == 0;
  }
  /* The file is done: what was queued after it follows. */
  if (c->fsrc == NULL && !c->is_closing && c->send.len > 0) return cm__sock_flush(c);
  return !c->is_closing;
}
