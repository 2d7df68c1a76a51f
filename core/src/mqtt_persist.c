/* mqtt_persist.c: the broker's persistence file (format in
 * cm/mqtt_broker.h): retained messages and persistent sessions, written
 * to a new file that replaces the old one only when it is whole on disk,
 * and read back with every byte checked before it is trusted. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define MAGIC "CMMQTTDB"
#define HEAD_LEN 16 /* magic, version, reserved */

enum { REC_MSG = 1, REC_RETAIN = 2, REC_SESSION = 3 };

/* ---- writing ----------------------------------------------------------------------- */

struct writer {
  cm_mqtt_sink_fn sink;
  void *arg;
  uint32_t crc;       /* of every byte passed on */
  uint32_t next_id;   /* message numbers given so far */
  bool ok;            /* the sink took everything */
  size_t n;           /* bytes in buf */
  uint8_t buf[16384]; /* small writes gathered */
};

static void w_flush(struct writer *w) {
  if (w->n == 0) return;
  w->crc = cm_crc32(w->crc, w->buf, w->n);
  if (w->ok && !w->sink(w->buf, w->n, w->arg)) w->ok = false;
  w->n = 0;
}

static void w_bytes(struct writer *w, const void *p, size_t len) {
  if (len >= sizeof(w->buf)) { /* a large payload goes straight through */
    w_flush(w);
    w->crc = cm_crc32(w->crc, p, len);
    if (w->ok && !w->sink(p, len, w->arg)) w->ok = false;
    return;
  }
  if (w->n + len > sizeof(w->buf)) w_flush(w);
  if (len > 0) memcpy(w->buf + w->n, p, len);
  w->n += len;
}

static void w_u8(struct writer *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u16(struct writer *w, uint16_t v) {
  uint8_t b[2] = {(uint8_t) (v >> 8), (uint8_t) v};
  w_bytes(w, b, 2);
}
static void w_u32(struct writer *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v};
  w_bytes(w, b, 4);
}

/* The message record of `m`, once per save: its number marks it written. */
static void w_msg(struct writer *w, struct cm_mqtt_stored *m) {
  if (m == NULL || m->persist_id != 0) return;
  m->persist_id = ++w->next_id;
  w_u8(w, REC_MSG);
  w_u32(w, (uint32_t) (4 + 1 + 1 + 2 + m->topic_len + 4 + m->props_len + 4 + m->data_len));
  w_u32(w, m->persist_id);
  w_u8(w, m->qos);
  w_u8(w, m->retain);
  w_u16(w, m->topic_len);
  w_bytes(w, m->topic, m->topic_len);
  w_u32(w, m->props_len);
  w_bytes(w, m->props, m->props_len);
  w_u32(w, (uint32_t) m->data_len);
  w_bytes(w, m->data, m->data_len);
}

static bool w_retained(struct cm_mqtt_stored *m, void *arg) {
  struct writer *w = arg;
  w_msg(w, m);
  w_u8(w, REC_RETAIN);
  w_u32(w, 4);
  w_u32(w, m->persist_id);
  return w->ok;
}

static size_t session_len(const struct cm_mqtt_session *s) {
  size_t len = 2 + s->id_len + 1 + 4 + 2 + 4 + 4 + 4 + (size_t) s->nrx * 2;
  for (const struct cm_mqtt_ssub *sub = s->subs; sub != NULL; sub = sub->next) len += 2 + sub->len + 1;
  return len + ((size_t) s->inflight.len + s->queued.len) * 9;
}

static void w_entries(struct writer *w, const struct cm_mqtt_queue *q) {
  for (const struct cm_mqtt_qentry *e = q->head; e != NULL; e = e->next) {
    w_u32(w, e->msg != NULL ? e->msg->persist_id : 0);
    w_u16(w, e->pid);
    w_u8(w, e->qos);
    w_u8(w, e->state);
    w_u8(w, e->retain);
  }
}

static void w_session(struct cm_mqtt_session *s, void *arg) {
  struct writer *w = arg;
  if (!s->persistent || !w->ok) return;
  for (struct cm_mqtt_qentry *e = s->inflight.head; e != NULL; e = e->next) w_msg(w, e->msg);
  for (struct cm_mqtt_qentry *e = s->queued.head; e != NULL; e = e->next) w_msg(w, e->msg);
  w_u8(w, REC_SESSION);
  w_u32(w, (uint32_t) session_len(s));
  w_u16(w, s->id_len);
  w_bytes(w, s->client_id, s->id_len);
  w_u8(w, s->version);
  w_u32(w, s->expiry);
  w_u16(w, s->next_pid);
  w_u32(w, s->nsubs);
  for (const struct cm_mqtt_ssub *sub = s->subs; sub != NULL; sub = sub->next) {
    w_u16(w, sub->len);
    w_bytes(w, sub->filter, sub->len);
    w_u8(w, sub->link.opts);
  }
  w_u32(w, s->inflight.len + s->queued.len);
  w_entries(w, &s->inflight); /* in flight first: they were sent first */
  w_entries(w, &s->queued);
  w_u32(w, s->nrx);
  for (uint32_t i = 0; i < s->nrx; i++) w_u16(w, s->rx[i]);
}

/* Numbers are given for one save only: clear them all afterwards. */
static bool unmark_retained(struct cm_mqtt_stored *m, void *arg) {
  (void) arg;
  m->persist_id = 0;
  return true;
}

static void unmark_session(struct cm_mqtt_session *s, void *arg) {
  (void) arg;
  for (struct cm_mqtt_qentry *e = s->inflight.head; e != NULL; e = e->next) {
    if (e->msg != NULL) e->msg->persist_id = 0;
  }
  for (struct cm_mqtt_qentry *e = s->queued.head; e != NULL; e = e->next) e->msg->persist_id = 0;
}

int cm_mqtt_persist_encode(struct cm_mqtt_store *st, cm_mqtt_sink_fn sink, void *arg) {
  struct writer *w = calloc(1, sizeof(*w));
  if (w == NULL) return -CM_ENOMEM;
  w->sink = sink;
  w->arg = arg;
  w->ok = true;
  w_bytes(w, MAGIC, 8);
  w_u32(w, CM_MQTT_PERSIST_VERSION);
  w_u32(w, 0);
  bool walked = cm_mqtt_tree_retained(st->tree, cm_str_c("#"), true, w_retained, w);
  if (walked) cm_mqtt_store_each(st, w_session, w);
  w_flush(w);
  uint32_t crc = w->crc;
  w_u32(w, crc);
  w_flush(w);
  int rc = !w->ok ? -CM_EIO : !walked ? -CM_ENOMEM : 0;
  cm_mqtt_tree_retained(st->tree, cm_str_c("#"), true, unmark_retained, NULL);
  cm_mqtt_store_each(st, unmark_session, NULL);
  free(w);
  return rc;
}

/* ---- the file ------------------------------------------------------------------------ */

struct fd_sink {
  int fd;
  int err; /* errno of the first failure */
};

static bool to_fd(const void *buf, size_t len, void *arg) {
  struct fd_sink *s = arg;
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(s->fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      s->err = n < 0 ? errno : EIO;
      return false;
    }
    p += n;
    len -= (size_t) n;
  }
  return true;
}

/* fsync the directory holding `path`, so the rename itself is durable. */
static int sync_dir(const char *path) {
  char dir[4096];
  const char *slash = strrchr(path, '/');
  size_t n = slash == NULL ? 1 : slash == path ? 1 : (size_t) (slash - path);
  if (n >= sizeof(dir)) return ENAMETOOLONG;
  memcpy(dir, slash == NULL ? "." : path, n);
  dir[n] = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

int cm_mqtt_persist_save(struct cm_mqtt_store *st, const char *path, char *err, size_t errlen) {
  char tmp[4096];
  if ((size_t) snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp)) {
    snprintf(err, errlen, "%s", "persistence path too long");
    return -CM_EINVAL;
  }
  struct fd_sink s = {open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), 0};
  if (s.fd < 0) {
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    return -CM_EIO;
  }
  int rc = cm_mqtt_persist_encode(st, to_fd, &s);
  if (rc == 0 && fsync(s.fd) != 0) s.err = errno, rc = -CM_EIO;
  if (close(s.fd) != 0 && rc == 0) s.err = errno, rc = -CM_EIO;
  if (rc == 0 && rename(tmp, path) != 0) s.err = errno, rc = -CM_EIO;
  if (rc == 0 && (s.err = sync_dir(path)) != 0) rc = -CM_EIO;
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s", path, rc == -CM_ENOMEM ? "out of memory" : strerror(s.err));
    unlink(tmp); /* the old file, if any, is untouched */
  }
  return rc;
}

int cm_mqtt_persist_read(struct cm_mqtt_store *st, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return 0; /* first start */
  struct stat sb;
  if (fd < 0 || fstat(fd, &sb) != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -CM_EIO;
  }
  size_t len = (size_t) sb.st_size, got = 0;
  char *buf = malloc(len > 0 ? len : 1);
  while (buf != NULL && got < len) {
    ssize_t n = read(fd, buf + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t) n;
  }
  close(fd);
  int rc;
  if (buf == NULL) {
    snprintf(err, errlen, "%s: %s", path, "out of memory");
    rc = -CM_ENOMEM;
  } else if (got < len) {
    snprintf(err, errlen, "%s: %s", path, "short read");
    rc = -CM_EIO;
  } else {
    char why[200] = "";
    rc = cm_mqtt_persist_decode(st, buf, len, why, sizeof(why));
    if (rc != 0) snprintf(err, errlen, "%s: %s", path, why);
  }
  free(buf);
  return rc;
}

/* ---- reading ------------------------------------------------------------------------- */

struct reader {
  const uint8_t *p, *end;
};

static bool r_u8(struct reader *r, uint8_t *v) {
  if (r->end - r->p < 1) return false;
  *v = *r->p++;
  return true;
}
static bool r_u16(struct reader *r, uint16_t *v) {
  if (r->end - r->p < 2) return false;
  *v = (uint16_t) ((r->p[0] << 8) | r->p[1]);
  r->p += 2;
  return true;
}
static bool r_u32(struct reader *r, uint32_t *v) {
  if (r->end - r->p < 4) return false;
  *v = ((uint32_t) r->p[0] << 24) | ((uint32_t) r->p[1] << 16) | ((uint32_t) r->p[2] << 8) | r->p[3];
  r->p += 4;
  return true;
}
/* A slice of `len` bytes. */
static bool r_bytes(struct reader *r, size_t len, struct cm_str *out) {
  if ((size_t) (r->end - r->p) < len) return false;
  *out = cm_str_n((const char *) r->p, len);
  r->p += len;
  return true;
}
static bool r_str16(struct reader *r, struct cm_str *out) {
  uint16_t len;
  return r_u16(r, &len) && r_bytes(r, len, out);
}
static bool r_str32(struct reader *r, struct cm_str *out) {
  uint32_t len;
  return r_u32(r, &len) && r_bytes(r, len, out);
}

/* What the records read so far made: messages by number. */
struct loaded {
  struct cm_mqtt_stored **msgs; /* msgs[k - 1] is message k */
  uint32_t n, cap;
};

static int d_msg(struct loaded *ld, struct reader *r, const char **why) {
  uint32_t id;
  uint8_t qos, retain;
  struct cm_str topic, props, data;
  if (!r_u32(r, &id) || !r_u8(r, &qos) || !r_u8(r, &retain) || !r_str16(r, &topic) || !r_str32(r, &props) ||
      !r_str32(r, &data) || r->p != r->end) {
    *why = "truncated message record";
    return -CM_EPROTO;
  }
  /* Numbers come in order, so a corrupt one cannot ask for a huge table. */
  if (id != ld->n + 1 || qos > 2 || retain > 1 || !cm_mqtt_topic_valid(topic)) {
    *why = "inconsistent message record";
    return -CM_EPROTO;
  }
  if (ld->n == ld->cap) {
    uint32_t cap = ld->cap == 0 ? 64 : ld->cap * 2;
    struct cm_mqtt_stored **msgs = realloc(ld->msgs, cap * sizeof(*msgs));
    if (msgs == NULL) return -CM_ENOMEM;
    ld->msgs = msgs;
    ld->cap = cap;
  }
  struct cm_mqtt_stored *m = cm_mqtt_stored_new(topic, data, props, qos, retain != 0);
  if (m == NULL) return -CM_ENOMEM;
  ld->msgs[ld->n++] = m;
  return 0;
}

static struct cm_mqtt_stored *msg_ref(const struct loaded *ld, uint32_t id) {
  return id >= 1 && id <= ld->n ? ld->msgs[id - 1] : NULL;
}

static int d_retain(struct cm_mqtt_store *st, struct loaded *ld, struct reader *r, const char **why) {
  uint32_t id;
  struct cm_mqtt_stored *m = NULL;
  if (!r_u32(r, &id) || r->p != r->end || (m = msg_ref(ld, id)) == NULL || m->data_len == 0) {
    *why = "bad retained record";
    return -CM_EPROTO;
  }
  return cm_mqtt_tree_retain(st->tree, cm_str_n(m->topic, m->topic_len), m);
}

static int d_subs(struct cm_mqtt_store *st, struct cm_mqtt_session *s, struct reader *r, const char **why) {
  uint32_t n;
  if (!r_u32(r, &n)) return -CM_EPROTO;
  for (uint32_t i = 0; i < n; i++) {
    struct cm_str f;
    uint8_t opts;
    if (!r_str16(r, &f) || !r_u8(r, &opts)) return -CM_EPROTO;
    if (!cm_mqtt_filter_valid(f) || (opts & 3) == 3 || (opts & 0xC0) != 0 || (opts & 0x30) == 0x30) {
      *why = "bad subscription in session record";
      return -CM_EPROTO;
    }
    int rc = cm_mqtt_session_sub(st, s, f, opts);
    if (rc < 0) return rc;
  }
  return 0;
}

static int d_entries(const struct loaded *ld, struct cm_mqtt_session *s, struct reader *r, const char **why) {
  uint32_t n;
  if (!r_u32(r, &n)) return -CM_EPROTO;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t id;
    uint16_t pid;
    uint8_t qos, state, retain;
    if (!r_u32(r, &id) || !r_u16(r, &pid) || !r_u8(r, &qos) || !r_u8(r, &state) || !r_u8(r, &retain)) {
      return -CM_EPROTO;
    }
    struct cm_mqtt_stored *m = msg_ref(ld, id);
    bool queued = state == CM_MQTT_Q_QUEUED, sent = state == CM_MQTT_Q_PUBLISHED;
    bool ok = qos >= 1 && qos <= 2 && retain <= 1 && state <= CM_MQTT_Q_RELEASED &&
              (queued ? pid == 0 : pid != 0 && cm_mqtt_session_inflight(s, pid) == NULL) &&
              ((queued || sent) ? m != NULL && qos <= m->qos : id == 0 && qos == 2);
    if (!ok) {
      *why = "bad delivery in session record";
      return -CM_EPROTO;
    }
    struct cm_mqtt_qentry *e = calloc(1, sizeof(*e));
    if (e == NULL) return -CM_ENOMEM;
    *e = (struct cm_mqtt_qentry){.msg = m != NULL ? cm_mqtt_stored_hold(m) : NULL,
                                 .pid = pid,
                                 .qos = qos,
                                 .state = state,
                                 .retain = retain != 0};
    cm_mqtt_queue_push(queued ? &s->queued : &s->inflight, e);
  }
  return 0;
}

static int d_session(struct cm_mqtt_store *st, struct loaded *ld, struct reader *r, const char **why) {
  struct cm_str id;
  uint8_t version;
  uint32_t expiry;
  uint16_t next_pid;
  if (!r_str16(r, &id) || !r_u8(r, &version) || !r_u32(r, &expiry) || !r_u16(r, &next_pid)) {
    *why = "truncated session record";
    return -CM_EPROTO;
  }
  if (id.len == 0 || memchr(id.buf, '\0', id.len) != NULL || cm_mqtt_session_find(st, id) != NULL ||
      version < 3 || version > 5) {
    *why = "bad client id in session record";
    return -CM_EPROTO;
  }
  struct cm_mqtt_session *s = cm_mqtt_session_new(st, id);
  if (s == NULL) return -CM_ENOMEM;
  s->persistent = true;
  s->version = version;
  s->expiry = expiry;
  s->next_pid = next_pid;
  int rc = d_subs(st, s, r, why);
  if (rc == 0) rc = d_entries(ld, s, r, why);
  uint32_t nrx = 0;
  if (rc == 0 && (!r_u32(r, &nrx) || (size_t) (r->end - r->p) != (size_t) nrx * 2)) rc = -CM_EPROTO;
  for (uint32_t i = 0; rc == 0 && i < nrx; i++) {
    uint16_t pid = 0;
    r_u16(r, &pid);
    if (pid == 0 || cm_mqtt_session_rx_add(s, pid) != 1) {
      *why = "bad QoS 2 id in session record";
      rc = -CM_EPROTO;
    }
  }
  if (rc == -CM_EPROTO && *why == NULL) *why = "truncated session record";
  return rc;
}

static int d_record(struct cm_mqtt_store *st, struct loaded *ld, struct reader *r, const char **why) {
  uint8_t type;
  struct cm_str body;
  if (!r_u8(r, &type) || !r_str32(r, &body)) {
    *why = "truncated record";
    return -CM_EPROTO;
  }
  struct reader br = {(const uint8_t *) body.buf, (const uint8_t *) body.buf + body.len};
  switch (type) {
    case REC_MSG: return d_msg(ld, &br, why);
    case REC_RETAIN: return d_retain(st, ld, &br, why);
    case REC_SESSION: return d_session(st, ld, &br, why);
    default: *why = "unknown record type"; return -CM_EPROTO;
  }
}

int cm_mqtt_persist_decode(struct cm_mqtt_store *st, const void *buf, size_t len, char *err, size_t errlen) {
  const uint8_t *b = buf;
  const char *why = NULL;
  uint32_t version = 0, reserved = 0, crc = 0;
  struct reader r = {b, b + len};
  if (len < HEAD_LEN + 4 || memcmp(b, MAGIC, 8) != 0) {
    why = "not a cymongoose MQTT persistence file";
  } else {
    r.p += 8;
    r_u32(&r, &version);
    r_u32(&r, &reserved);
    struct reader tail = {b + len - 4, b + len};
    r_u32(&tail, &crc);
    if (version != CM_MQTT_PERSIST_VERSION || reserved != 0) why = "unsupported format version";
    else if (cm_crc32(0, b, len - 4) != crc)
      why = "checksum mismatch (file damaged)";
  }
  if (why != NULL) {
    snprintf(err, errlen, "%s", why);
    return -CM_EPROTO;
  }
  r.end = b + len - 4;
  struct loaded ld = {0};
  int rc = 0;
  while (rc == 0 && r.p < r.end) rc = d_record(st, &ld, &r, &why);
  for (uint32_t i = 0; i < ld.n; i++) cm_mqtt_stored_release(ld.msgs[i]); /* the store holds its own */
  free(ld.msgs);
  if (rc != 0)
    snprintf(err, errlen, "%s", rc == -CM_ENOMEM ? "out of memory" : why != NULL ? why : "corrupt");
  return rc;
}
