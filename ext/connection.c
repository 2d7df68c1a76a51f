/* connection.c: Connection, the Python face of one core connection
 * (SPEC 1.5).
 *
 * The manager creates the object when it is first needed (an event its
 * handler wants, listen()/connect(), Manager.connections; it may be never),
 * and the core connection holds the only reference the core side needs
 * (c->userdata, dropped after CM_EV_CLOSE, see manager.c).  One object per
 * connection all the same: once made, it is the one every event gets.
 * After CM_EV_CLOSE the object is detached (c == NULL): properties return
 * safe defaults and methods that need the core raise
 * RuntimeError("Connection has been closed"). */
#include <stdio.h>

#include "ext.h"

/* Headers added when the caller names no Content-Type (SPEC 2.5.5). */
#define TEXT_PLAIN "Content-Type: text/plain\r\n"
#define APP_JSON "Content-Type: application/json\r\n"

ConnectionObject *connection_new(cm_state *st, struct cm_conn *c) {
  PyTypeObject *tp = st->ConnectionType;
  ConnectionObject *self = (ConnectionObject *) tp->tp_alloc(tp, 0);
  if (self == NULL) return NULL;
  self->c = c;
  self->state = st;
  return self;
}

void connection_detach(ConnectionObject *conn) { conn->c = NULL; }

/* The core connection, or NULL with RuntimeError set. */
static struct cm_conn *live(ConnectionObject *self) {
  if (self->c == NULL) PyErr_SetString(PyExc_RuntimeError, "Connection has been closed");
  return self->c;
}

static PyObject *connection_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
  (void) tp, (void) args, (void) kwargs;
  PyErr_SetString(PyExc_TypeError, "Cannot create Connection instances");
  return NULL;
}

static int connection_traverse(ConnectionObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap type: instances own a reference */
  Py_VISIT(self->handler);
  Py_VISIT(self->userdata);
  return 0;
}

static int connection_clear(ConnectionObject *self) {
  Py_CLEAR(self->handler);
  Py_CLEAR(self->userdata);
  return 0;
}

static void connection_dealloc(ConnectionObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *) self);
  connection_clear(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* ---- properties -------------------------------------------------------- */

static PyObject *connection_get_handler(ConnectionObject *self, void *closure) {
  (void) closure;
  return Py_NewRef(self->handler != NULL ? self->handler : Py_None);
}

static PyObject *connection_get_userdata(ConnectionObject *self, void *closure) {
  (void) closure;
  return Py_NewRef(self->userdata != NULL ? self->userdata : Py_None);
}

static int connection_set_userdata(ConnectionObject *self, PyObject *value, void *closure) {
  (void) closure;
  Py_XSETREF(self->userdata, value != NULL && value != Py_None ? Py_NewRef(value) : NULL);
  return 0;
}

static PyObject *connection_get_id(ConnectionObject *self, void *closure) {
  (void) closure;
  return PyLong_FromUnsignedLongLong(self->c != NULL ? self->c->id : 0);
}

/* Which flag a shared getter reads. */
enum flag {
  F_LISTENING,
  F_CLOSING,
  F_CLIENT,
  F_TLS,
  F_UDP,
  F_WEBSOCKET,
  F_READABLE,
  F_WRITABLE,
  F_FULL,
  F_DRAINING,
};

static PyObject *connection_get_flag(ConnectionObject *self, void *closure) {
  const struct cm_conn *c = self->c;
  if (c == NULL) return PyBool_FromLong((intptr_t) closure == F_CLOSING); /* closed: closing */
  switch ((intptr_t) closure) {
    case F_LISTENING: return PyBool_FromLong(c->is_listening);
    case F_CLOSING: return PyBool_FromLong(c->is_closing);
    case F_CLIENT: return PyBool_FromLong(c->is_client);
    case F_TLS: return PyBool_FromLong(c->is_tls);
    case F_UDP: return PyBool_FromLong(c->is_udp);
    case F_WEBSOCKET: return PyBool_FromLong(c->is_websocket);
    case F_READABLE: return PyBool_FromLong(c->is_readable);
    case F_WRITABLE: return PyBool_FromLong(c->is_writable);
    case F_FULL: return PyBool_FromLong(c->is_full);
    default: return PyBool_FromLong(c->is_draining);
  }
}

/* Which buffer number a shared getter reads. */
enum size { S_RECV_LEN, S_SEND_LEN, S_RECV_SIZE, S_SEND_SIZE };

static PyObject *connection_get_size(ConnectionObject *self, void *closure) {
  const struct cm_conn *c = self->c;
  size_t n = 0;
  if (c != NULL) {
    switch ((intptr_t) closure) {
      case S_RECV_LEN: n = c->recv.len; break;
      case S_SEND_LEN: n = c->send.len; break;
      case S_RECV_SIZE: n = c->recv.size; break;
      default: n = c->send.size; break;
    }
  }
  return PyLong_FromSize_t(n);
}

/* (ip, port, is_ipv6); IPv6 as 8 groups of 4 lowercase hex digits, no "::"
 * compression (SPEC 1.5). */
static PyObject *addr_tuple(const struct cm_addr *a) {
  char ip[48];
  const uint8_t *b = a->ip;
  if (a->is_ip6) {
    snprintf(ip, sizeof(ip), "%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x:%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  } else {
    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
  }
  return Py_BuildValue("(siO)", ip, (int) a->port, a->is_ip6 ? Py_True : Py_False);
}

static PyObject *connection_get_local_addr(ConnectionObject *self, void *closure) {
  (void) closure;
  if (self->c == NULL) Py_RETURN_NONE;
  return addr_tuple(&self->c->loc);
}

static PyObject *connection_get_remote_addr(ConnectionObject *self, void *closure) {
  (void) closure;
  const struct cm_conn *c = self->c;
  if (c == NULL) Py_RETURN_NONE;
  if (c->is_listening && !c->is_udp) return Py_BuildValue("(siO)", "0.0.0.0", 0, Py_False);
  return addr_tuple(&c->rem); /* a UDP listener: the last sender */
}

/* ---- methods ------------------------------------------------------------ */

static PyObject *connection_set_handler(ConnectionObject *self, PyObject *handler) {
  /* On a listener this is also what future children inherit (they copy it
   * at their CM_EV_OPEN), so None reverts them to the default handler. */
  Py_XSETREF(self->handler, handler != Py_None ? Py_NewRef(handler) : NULL);
  if (self->c != NULL) manager_update_events(self->c->fn_data, self);
  Py_RETURN_NONE;
}

/* Hand the bytes of `data` to `put` (cm_http_send, cm_http_chunk);
 * RuntimeError(`failed`) if it refuses them.  A closing connection drops
 * unsent data anyway (cm_close), so sending to it is not an error (as with
 * Mongoose, where it is a no-op). */
static PyObject *put_data(ConnectionObject *self, PyObject *data,
                          bool (*put)(struct cm_conn *, const void *, size_t), const char *failed) {
  struct cm_conn *c = live(self);
  ext_data d;
  if (c == NULL || ext_data_get(data, &d, "data") < 0) return NULL;
  bool ok = c->is_closing || put(c, d.buf, (size_t) d.len);
  ext_data_release(&d);
  if (!ok) {
    PyErr_SetString(PyExc_RuntimeError, failed);
    return NULL;
  }
  Py_RETURN_NONE;
}

/* cm_http_send is cm_send, except that on an HTTP client it follows the
 * requests written, so the response to a HEAD is framed without a body. */
static PyObject *connection_send(ConnectionObject *self, PyObject *data) {
  return put_data(self, data, cm_http_send, "mg_send failed");
}

/* A growing byte buffer for the header block of a reply; typical headers
 * fit in the inline part, so a reply allocates nothing for them. */
struct hbuf {
  char *p;
  size_t len, cap;
  char inline_buf[512];
};

static void hbuf_init(struct hbuf *b) {
  b->p = b->inline_buf;
  b->len = 0;
  b->cap = sizeof(b->inline_buf);
}

static void hbuf_free(struct hbuf *b) {
  if (b->p != b->inline_buf) PyMem_Free(b->p);
}

/* Make room for `n` more bytes. */
static int hbuf_reserve(struct hbuf *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  if (n > PY_SSIZE_T_MAX / 2 - b->cap) {
    PyErr_NoMemory();
    return -1;
  }
  size_t cap = b->cap * 2 + n;
  char *p = PyMem_Malloc(cap);
  if (p == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  memcpy(p, b->p, b->len);
  hbuf_free(b);
  b->p = p;
  b->cap = cap;
  return 0;
}

static int hbuf_add(struct hbuf *b, const char *s, size_t n) {
  if (hbuf_reserve(b, n) < 0) return -1;
  if (n > 0) memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

/* One pass over a (short) header name or value. */
static bool has_crlf_nul(const char *s, Py_ssize_t n) {
  for (Py_ssize_t i = 0; i < n; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return true;
  }
  return false;
}

static bool is_content_type(const char *s, Py_ssize_t n) {
  static const char name[] = "content-type";
  return n == sizeof(name) - 1 && cm_str_casecmp(cm_str_n(s, (size_t) n), cm_str_n(name, sizeof(name) - 1));
}

/* str(obj) as a new reference; an exact str is its own. */
static PyObject *as_str(PyObject *obj) {
  return PyUnicode_CheckExact(obj) ? Py_NewRef(obj) : PyObject_Str(obj);
}

/* Append "name: value\r\n" for one item, after the checks of SPEC 1.5 (no
 * CR, LF or NUL: header injection).  `*is_ct` tells whether the name is
 * Content-Type; with `skip_ct` such an item is left out (reply_json). */
static int add_header(struct hbuf *b, PyObject *key, PyObject *value, bool skip_ct, bool *is_ct) {
  int rc = -1;
  Py_ssize_t kn, vn;
  PyObject *k = as_str(key), *v = k != NULL ? as_str(value) : NULL;
  const char *ks = v != NULL ? PyUnicode_AsUTF8AndSize(k, &kn) : NULL;
  const char *vs = ks != NULL ? PyUnicode_AsUTF8AndSize(v, &vn) : NULL;
  if (vs == NULL) goto done;
  *is_ct = is_content_type(ks, kn);
  if (has_crlf_nul(ks, kn)) {
    PyErr_Format(PyExc_ValueError, "Header name contains illegal character (CR, LF, or NUL): %R", k);
  } else if (*is_ct && skip_ct) {
    rc = 0; /* replaced by the forced application/json */
  } else if (has_crlf_nul(vs, vn)) {
    PyErr_Format(PyExc_ValueError, "Header value contains illegal character (CR, LF, or NUL): %R", v);
  } else {
    rc = (hbuf_add(b, ks, (size_t) kn) < 0 || hbuf_add(b, ": ", 2) < 0 || hbuf_add(b, vs, (size_t) vn) < 0 ||
          hbuf_add(b, "\r\n", 2) < 0)
             ? -1
             : 0;
  }
done:
  Py_XDECREF(k);
  Py_XDECREF(v);
  return rc;
}

/* The header block of a reply: the caller's headers in order, with
 * Content-Type: text/plain first when none is given; for reply_json, any
 * Content-Type replaced by application/json (SPEC 2.5.5). */
/* True if every key and value is an exact str: then nothing below can run
 * Python code, and the dict can be walked in place, without a snapshot. */
static bool all_exact_str(PyObject *headers) {
  Py_ssize_t pos = 0;
  PyObject *k, *v;
  while (PyDict_Next(headers, &pos, &k, &v)) {
    if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v)) return false;
  }
  return true;
}

static int add_headers(struct hbuf *user, PyObject *headers, bool json, bool *any_ct) {
  bool is_ct = false;
  int rc = 0;
  if (all_exact_str(headers)) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (rc == 0 && PyDict_Next(headers, &pos, &k, &v)) {
      rc = add_header(user, k, v, json, &is_ct);
      *any_ct = *any_ct || is_ct;
    }
    return rc;
  }
  /* A snapshot of (key, value) pairs holding their own references:
   * str(key) may run Python code that mutates the dict. */
  PyObject *items = PyDict_Items(headers);
  if (items == NULL) return -1;
  for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
    PyObject *pair = PyList_GET_ITEM(items, i);
    rc = add_header(user, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), json, &is_ct);
    *any_ct = *any_ct || is_ct;
  }
  Py_DECREF(items);
  return rc;
}

static int build_headers(PyObject *headers, bool json, struct hbuf *b) {
  const char *ct = json ? APP_JSON : TEXT_PLAIN;
  if (headers == NULL || headers == Py_None) return hbuf_add(b, ct, strlen(ct));
  if (!PyDict_Check(headers)) {
    PyErr_Format(PyExc_TypeError, "headers must be a dict, not %.100s", Py_TYPE(headers)->tp_name);
    return -1;
  }
  struct hbuf user;
  bool any_ct = false;
  hbuf_init(&user);
  int rc = add_headers(&user, headers, json, &any_ct);
  if (rc == 0 && (json || !any_ct)) rc = hbuf_add(b, ct, strlen(ct));
  if (rc == 0 && user.len > 0) rc = hbuf_add(b, user.p, user.len);
  hbuf_free(&user);
  return rc;
}

static PyObject *do_reply(ConnectionObject *self, int status, PyObject *body, PyObject *headers, bool json) {
  struct hbuf h;
  ext_data d;
  PyObject *result = NULL;
  hbuf_init(&h);
  /* Validation comes first, even on a closed connection (SPEC 1.5). */
  if (build_headers(headers, json, &h) < 0) goto done;
  if (ext_data_get(body, &d, "body") < 0) goto done;
  struct cm_conn *c = live(self);
  bool ok = c != NULL && (c->is_closing || cm_http_reply(c, status, h.p, h.len, d.buf, (size_t) d.len));
  ext_data_release(&d);
  if (c != NULL && !ok) PyErr_SetString(PyExc_RuntimeError, "mg_http_reply failed");
  if (ok) result = Py_NewRef(Py_None);
done:
  hbuf_free(&h);
  return result;
}

static PyObject *connection_reply(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
  static const char *const names[] = {"status_code", "body", "headers"};
  PyObject *a[3];
  int status;
  if (ext_args("reply", args, nargs, kwnames, names, 3, 1, a) < 0 || ext_as_int(a[0], &status) < 0)
    return NULL;
  if (a[1] != NULL) return do_reply(self, status, a[1], a[2], false);
  PyObject *empty = PyBytes_FromStringAndSize("", 0);
  PyObject *result = empty != NULL ? do_reply(self, status, empty, a[2], false) : NULL;
  Py_XDECREF(empty);
  return result;
}

static PyObject *json_dumps(cm_state *st, PyObject *data) {
  PyObject *dumps = ext_lazy_attr(&st->json_dumps, "json", "dumps");
  return dumps != NULL ? PyObject_CallOneArg(dumps, data) : NULL;
}

static PyObject *connection_reply_json(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  static const char *const names[] = {"data", "status_code", "headers"};
  PyObject *a[3];
  int status = 200;
  if (ext_args("reply_json", args, nargs, kwnames, names, 3, 1, a) < 0) return NULL;
  if (a[1] != NULL && ext_as_int(a[1], &status) < 0) return NULL;
  PyObject *body = json_dumps(self->state, a[0]);
  if (body == NULL) return NULL;
  PyObject *result = do_reply(self, status, body, a[2], true);
  Py_DECREF(body);
  return result;
}

static PyObject *connection_close(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  /* Deferred (SPEC Decision 3): CM_EV_CLOSE fires at the end of the
   * iteration, so closing from any handler, any connection, is safe. */
  if (self->c != NULL) cm_close(self->c);
  Py_RETURN_NONE;
}

static PyObject *connection_drain(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  if (self->c != NULL) cm_drain(self->c);
  Py_RETURN_NONE;
}

static PyObject *connection_error(ConnectionObject *self, PyObject *message) {
  struct cm_conn *c = live(self);
  Py_ssize_t n;
  if (c == NULL) return NULL;
  if (!PyUnicode_Check(message)) {
    PyErr_Format(PyExc_TypeError, "message must be str, not %.100s", Py_TYPE(message)->tp_name);
    return NULL;
  }
  const char *msg = PyUnicode_AsUTF8AndSize(message, &n);
  if (msg == NULL) return NULL;
  /* CM_EV_ERROR runs our handlers synchronously; hold the manager so that a
   * handler dropping the last reference cannot free it under the core. */
  ManagerObject *m = (ManagerObject *) Py_NewRef((PyObject *) c->fn_data);
  cm_error(c, "%s", msg); /* user text is an argument, never the format */
  int rc = manager_raise_pending(m);
  Py_DECREF(m);
  if (rc < 0) return NULL;
  Py_RETURN_NONE;
}

/* ---- HTTP beyond reply(): files, streaming, client helpers ------------- */

/* Run a core call that may fire events synchronously (cm_error, a resolved
 * literal): our handlers then run inside it.  Holds the manager across the
 * call, so a handler dropping the last reference cannot free it under the
 * core, and re-raises a handler's BaseException when no poll() will. */
static ManagerObject *hold_manager(struct cm_conn *c) {
  return (ManagerObject *) Py_NewRef((PyObject *) c->fn_data);
}

static int release_manager(ManagerObject *m) {
  int rc = manager_raise_pending(m);
  Py_DECREF(m);
  return rc;
}

/* A str argument as UTF-8 without NULs; NULL (absent or "") leaves *out
 * NULL. */
static int opt_text(PyObject *obj, const char *what, const char **out, Py_ssize_t *len) {
  Py_ssize_t n = 0;
  *out = NULL;
  if (len != NULL) *len = 0;
  if (obj == NULL) return 0;
  if (!PyUnicode_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(obj)->tp_name);
    return -1;
  }
  const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
  if (s == NULL) return -1;
  if (strlen(s) != (size_t) n) {
    PyErr_Format(PyExc_ValueError, "embedded null character in %s", what);
    return -1;
  }
  if (n > 0) *out = s;
  if (len != NULL) *len = n;
  return 0;
}

/* A path argument (str, bytes or os.PathLike, as open() takes): *keep gets
 * the encoded bytes object (the caller releases it), *out its text; NULL
 * for absent or empty. */
static int opt_path(PyObject *obj, PyObject **keep, const char **out) {
  *keep = NULL;
  *out = NULL;
  if (obj == NULL) return 0;
  if (!PyUnicode_FSConverter(obj, keep)) return -1; /* NULs: ValueError */
  if (PyBytes_GET_SIZE(*keep) > 0) *out = PyBytes_AS_STRING(*keep);
  return 0;
}

/* RFC 9110 §5.6.2 tchar: what a field name is made of. */
static bool is_tchar(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) return true;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static PyObject *text_of(const char *p, size_t n) {
  return PyUnicode_DecodeUTF8(p, (Py_ssize_t) n, "surrogateescape");
}

/* ValueError naming one piece of the caller's text. */
static int bad_piece(const char *fmt, const char *p, size_t n) {
  PyObject *t = text_of(p, n);
  if (t != NULL) PyErr_Format(PyExc_ValueError, fmt, t);
  Py_XDECREF(t);
  return -1;
}

/* One line of extra_headers, without its line break: "Name: value" with a
 * token for a name and no CR or NUL in the value. */
static int check_header_line(const char *p, size_t n) {
  const char *colon = memchr(p, ':', n);
  if (colon == NULL || colon == p) return bad_piece("extra_headers line is not 'Name: value': %R", p, n);
  size_t name_len = (size_t) (colon - p);
  if (has_crlf_nul(p, (Py_ssize_t) name_len)) {
    return bad_piece("Header name contains illegal character (CR, LF, or NUL): %R", p, name_len);
  }
  for (size_t i = 0; i < name_len; i++) {
    if (!is_tchar((unsigned char) p[i])) return bad_piece("Header name is not a token: %R", p, name_len);
  }
  const char *value = colon + 1;
  size_t value_len = n - name_len - 1;
  if (has_crlf_nul(value, (Py_ssize_t) value_len)) {
    return bad_piece("Header value contains illegal character (CR, LF, or NUL): %R", value, value_len);
  }
  return 0;
}

/* extra_headers of serve_dir/serve_file: raw "Name: value\r\n" lines (SPEC
 * 2.6), copied into `b` NUL-terminated.  Every line must be a header field,
 * so the text can neither end the head early nor smuggle in a body; a bare
 * LF ends a line like CRLF, empty lines are dropped and a missing final
 * CRLF is added. */
static int extra_headers(PyObject *obj, struct hbuf *b) {
  const char *s;
  Py_ssize_t len;
  if (opt_text(obj, "extra_headers", &s, &len) < 0) return -1;
  for (size_t i = 0, n = (size_t) len; i < n;) {
    const char *lf = memchr(s + i, '\n', n - i);
    size_t eol = lf != NULL ? (size_t) (lf - s) : n, end = eol;
    if (end > i && s[end - 1] == '\r') end--;
    if (end > i && (check_header_line(s + i, end - i) < 0 || hbuf_add(b, s + i, end - i) < 0 ||
                    hbuf_add(b, "\r\n", 2) < 0))
      return -1;
    i = eol + 1;
  }
  return hbuf_add(b, "", 1);
}

/* The parsed message behind an HttpMessage argument, or NULL with
 * TypeError (not a view) or ValueError (a view past its event). */
static const struct cm_http_msg *message_of(ConnectionObject *self, PyObject *obj) {
  if (!PyObject_TypeCheck(obj, self->state->HttpMessageType)) {
    PyErr_Format(PyExc_TypeError, "message must be HttpMessage, not %.100s", Py_TYPE(obj)->tp_name);
    return NULL;
  }
  const struct cm_http_msg *hm = ((HttpMessageObject *) obj)->hm;
  if (hm == NULL) PyErr_SetString(PyExc_ValueError, "HttpMessage is not valid for this event");
  return hm;
}

/* The arguments of serve_dir/serve_file, converted; released by
 * serve_args_free whatever happened. */
struct serve_args {
  const struct cm_http_msg *hm;
  struct cm_http_serve_opts opts;
  const char *path;           /* serve_file */
  PyObject *root, *file, *nf; /* encoded paths, or NULL */
  struct hbuf extra;
};

static void serve_args_free(struct serve_args *a) {
  Py_XDECREF(a->root);
  Py_XDECREF(a->file);
  Py_XDECREF(a->nf);
  hbuf_free(&a->extra);
}

/* a[0..5): message, root_dir or path, extra_headers, mime_types, page404. */
static int serve_args_get(ConnectionObject *self, PyObject *const *a, bool dir, struct serve_args *out) {
  memset(&out->opts, 0, sizeof(out->opts));
  out->path = NULL;
  out->root = out->file = out->nf = NULL;
  hbuf_init(&out->extra);
  out->hm = message_of(self, a[0]);
  if (out->hm == NULL) return -1;
  if (opt_path(a[1], dir ? &out->root : &out->file, dir ? &out->opts.root_dir : &out->path) < 0) return -1;
  if (extra_headers(a[2], &out->extra) < 0) return -1;
  out->opts.extra_headers = out->extra.p;
  if (opt_text(a[3], "mime_types", &out->opts.mime_types, NULL) < 0) return -1;
  const char *m = out->opts.mime_types;
  if (m != NULL && (strchr(m, '\r') != NULL || strchr(m, '\n') != NULL)) {
    return bad_piece("mime_types contains illegal character (CR, LF, or NUL): %R", m, strlen(m));
  }
  return dir ? opt_path(a[4], &out->nf, &out->opts.page404) : 0;
}

static PyObject *do_serve(ConnectionObject *self, PyObject *const *a, bool dir) {
  struct serve_args sa;
  PyObject *result = NULL;
  /* Arguments first, as reply() validates its headers first (SPEC 1.5). */
  if (serve_args_get(self, a, dir, &sa) < 0) goto done;
  struct cm_conn *c = live(self);
  if (c == NULL) goto done;
  if (!dir && sa.path == NULL) {
    PyErr_SetString(PyExc_ValueError, "path must not be empty");
    goto done;
  }
  ManagerObject *m = hold_manager(c);
  bool ok = c->is_closing ||
            (dir ? cm_http_serve_dir(c, sa.hm, &sa.opts) : cm_http_serve_file(c, sa.hm, sa.path, &sa.opts));
  if (release_manager(m) < 0) goto done;
  if (!ok && !c->is_closing) {
    PyErr_SetString(PyExc_RuntimeError, dir ? "serve_dir failed" : "serve_file failed");
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  serve_args_free(&sa);
  return result;
}

static PyObject *connection_serve_dir(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
  static const char *const names[] = {"message", "root_dir", "extra_headers", "mime_types", "page404"};
  PyObject *a[5];
  if (ext_args("serve_dir", args, nargs, kwnames, names, 5, 2, a) < 0) return NULL;
  return do_serve(self, a, true);
}

static PyObject *connection_serve_file(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  static const char *const names[] = {"message", "path", "extra_headers", "mime_types"};
  PyObject *a[5] = {NULL, NULL, NULL, NULL, NULL};
  if (ext_args("serve_file", args, nargs, kwnames, names, 4, 2, a) < 0) return NULL;
  return do_serve(self, a, false);
}

/* b"" sends the last chunk and finishes the response (Decision 5). */
static PyObject *connection_http_chunk(ConnectionObject *self, PyObject *data) {
  return put_data(self, data, cm_http_chunk, "http_chunk failed");
}

static PyObject *connection_http_sse(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
  static const char *const names[] = {"event_type", "data"};
  PyObject *a[2];
  ext_data ev, d;
  if (ext_args("http_sse", args, nargs, kwnames, names, 2, 2, a) < 0) return NULL;
  if (!PyUnicode_Check(a[0])) {
    return PyErr_Format(PyExc_TypeError, "event_type must be str, not %.100s", Py_TYPE(a[0])->tp_name);
  }
  if (ext_data_get(a[0], &ev, "event_type") < 0) return NULL; /* a str: nothing to release */
  /* A line break would end the event's "event:" field early. */
  if (has_crlf_nul(ev.buf, ev.len)) {
    bad_piece("SSE event type contains illegal character (CR, LF, or NUL): %R", ev.buf, (size_t) ev.len);
    return NULL;
  }
  struct cm_conn *c = live(self);
  if (c == NULL || ext_data_get(a[1], &d, "data") < 0) return NULL;
  bool ok =
      c->is_closing || cm_http_sse(c, cm_str_n(ev.buf, (size_t) ev.len), cm_str_n(d.buf, (size_t) d.len));
  ext_data_release(&d);
  if (!ok) {
    PyErr_SetString(PyExc_RuntimeError, "http_sse failed");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *connection_http_end(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = live(self);
  if (c == NULL) return NULL;
  cm_http_end(c); /* Decision 5: the response made of raw send()s is done */
  Py_RETURN_NONE;
}

static PyObject *connection_resolve(ConnectionObject *self, PyObject *url) {
  const char *u;
  struct cm_conn *c = live(self);
  if (c == NULL || opt_text(url, "url", &u, NULL) < 0) return NULL;
  if (c->is_listening) {
    PyErr_SetString(PyExc_RuntimeError, "resolve() needs a connection, not a listener");
    return NULL;
  }
  if (c->is_closing) Py_RETURN_NONE;
  ManagerObject *m = hold_manager(c);
  /* A literal answers (and a client connects) right here; a name later,
   * from the loop.  A lookup that cannot even start is reported the way a
   * failed one is (SPEC 1.5: MG_EV_RESOLVE or MG_EV_ERROR). */
  if (!cm_resolve(c, u != NULL ? u : "") && !c->is_closing) {
    struct cm_url parts;
    cm_url_split(u != NULL ? u : "", &parts);
    if (parts.host.len == 0) cm_error(c, "DNS lookup failed: no host in '%s'", u != NULL ? u : "");
    else
      cm_error(c, "%.*s DNS lookup failed", (int) parts.host.len, parts.host.buf);
  }
  if (release_manager(m) < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *connection_resolve_cancel(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = live(self);
  if (c == NULL) return NULL;
  cm_resolve_cancel(c);
  Py_RETURN_NONE;
}

/* "Authorization: Basic <base64(user[:pass])>\r\n" into the send buffer
 * (SPEC 1.5: the colon only with a password), through cm_http_send like
 * send(), so a client still sees the whole request it writes. */
static PyObject *connection_http_basic_auth(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                            PyObject *kwnames) {
  static const char *const names[] = {"username", "password"};
  static const char prefix[] = "Authorization: Basic ";
  PyObject *a[2], *result = NULL;
  ext_data user, pass;
  struct hbuf plain, line;
  if (ext_args("http_basic_auth", args, nargs, kwnames, names, 2, 2, a) < 0) return NULL;
  if (ext_data_get(a[0], &user, "username") < 0) return NULL;
  if (ext_data_get(a[1], &pass, "password") < 0) {
    ext_data_release(&user);
    return NULL;
  }
  hbuf_init(&plain);
  hbuf_init(&line);
  struct cm_conn *c = live(self);
  if (c == NULL || hbuf_add(&plain, user.buf, (size_t) user.len) < 0) goto done;
  if (pass.len > 0 && (hbuf_add(&plain, ":", 1) < 0 || hbuf_add(&plain, pass.buf, (size_t) pass.len) < 0))
    goto done;
  size_t enc = cm_base64_encoded_len(plain.len);
  if (enc > PY_SSIZE_T_MAX / 2) {
    PyErr_NoMemory();
    goto done;
  }
  /* The encoding is written in place, between the prefix and the CRLF. */
  if (hbuf_add(&line, prefix, sizeof(prefix) - 1) < 0 || hbuf_reserve(&line, enc + 2) < 0) goto done;
  line.len += (size_t) cm_base64_encode(plain.p, plain.len, line.p + line.len, enc);
  memcpy(line.p + line.len, "\r\n", 2);
  line.len += 2;
  if (!c->is_closing && !cm_http_send(c, line.p, line.len)) {
    PyErr_SetString(PyExc_RuntimeError, "mg_send failed");
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  hbuf_free(&plain);
  hbuf_free(&line);
  ext_data_release(&user);
  ext_data_release(&pass);
  return result;
}

/* Copy of the first `length` bytes of `io` (all of them for -1 or more
 * than there are); b"" once closed. */
static PyObject *copy_buffer(ConnectionObject *self, PyObject *args, PyObject *kwargs, bool recv) {
  static char *kwlist[] = {"length", NULL};
  Py_ssize_t length = -1;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, recv ? "|n:recv_data" : "|n:send_data", kwlist, &length))
    return NULL;
  if (self->c == NULL) return PyBytes_FromStringAndSize("", 0);
  const struct cm_iobuf *io = recv ? &self->c->recv : &self->c->send;
  size_t n = length < 0 || (size_t) length > io->len ? io->len : (size_t) length;
  return PyBytes_FromStringAndSize(n > 0 ? cm_iobuf_data(io) : "", (Py_ssize_t) n);
}

static PyObject *connection_recv_data(ConnectionObject *self, PyObject *args, PyObject *kwargs) {
  return copy_buffer(self, args, kwargs, true);
}

static PyObject *connection_send_data(ConnectionObject *self, PyObject *args, PyObject *kwargs) {
  return copy_buffer(self, args, kwargs, false);
}

static PyObject *connection_repr(ConnectionObject *self) {
  const struct cm_conn *c = self->c;
  if (c == NULL) return PyUnicode_FromString("<Connection closed>");
  return PyUnicode_FromFormat("<Connection id=%llu readable=%s writable=%s>", (unsigned long long) c->id,
                              c->is_readable ? "True" : "False", c->is_writable ? "True" : "False");
}

#define FLAG(name, f, doc) \
  { name, (getter) connection_get_flag, NULL, doc, (void *) (intptr_t) (f) }
#define SIZE(name, s, doc) \
  { name, (getter) connection_get_size, NULL, doc, (void *) (intptr_t) (s) }

static PyGetSetDef connection_getset[] = {
    {"handler", (getter) connection_get_handler, NULL, "Per-connection handler, or None.", NULL},
    {"userdata", (getter) connection_get_userdata, (setter) connection_set_userdata,
     "Any object of the application (default None).", NULL},
    {"id", (getter) connection_get_id, NULL, "Connection id (> 0; 0 once closed).", NULL},
    {"local_addr", (getter) connection_get_local_addr, NULL, "(ip, port, is_ipv6) or None.", NULL},
    {"remote_addr", (getter) connection_get_remote_addr, NULL, "(ip, port, is_ipv6) or None.", NULL},
    FLAG("is_listening", F_LISTENING, "Listening socket."),
    FLAG("is_closing", F_CLOSING, "Marked for close (True once closed)."),
    FLAG("is_client", F_CLIENT, "Outbound connection."),
    FLAG("is_tls", F_TLS, "TLS requested or active."),
    FLAG("is_udp", F_UDP, "Datagram socket."),
    FLAG("is_websocket", F_WEBSOCKET, "Upgraded to WebSocket."),
    FLAG("is_readable", F_READABLE, "Last readiness test said readable."),
    FLAG("is_writable", F_WRITABLE, "Last readiness test said writable."),
    FLAG("is_full", F_FULL, "Reading paused: too much unsent data."),
    FLAG("is_draining", F_DRAINING, "Closing once the send buffer is flushed."),
    SIZE("recv_len", S_RECV_LEN, "Bytes in the receive buffer."),
    SIZE("send_len", S_SEND_LEN, "Bytes in the send buffer."),
    SIZE("recv_size", S_RECV_SIZE, "Receive buffer capacity."),
    SIZE("send_size", S_SEND_SIZE, "Send buffer capacity."),
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef connection_methods[] = {
    {"set_handler", (PyCFunction) connection_set_handler, METH_O,
     "set_handler($self, handler, /)\n--\n\nSet the handler; on a listener also for future children."},
    {"send", (PyCFunction) connection_send, METH_O,
     "send($self, data, /)\n--\n\nQueue raw bytes (str is sent as UTF-8)."},
    {"reply", FAST_METHOD(connection_reply),
     "reply($self, /, status_code, body=b'', headers=None)\n--\n\nSend a complete HTTP response."},
    {"reply_json", FAST_METHOD(connection_reply_json),
     "reply_json($self, /, data, status_code=200, headers=None)\n--\n\nReply with json.dumps(data)."},
    {"close", (PyCFunction) connection_close, METH_NOARGS,
     "close($self, /)\n--\n\nClose at the end of this poll iteration."},
    {"drain", (PyCFunction) connection_drain, METH_NOARGS,
     "drain($self, /)\n--\n\nClose once everything queued has been sent."},
    {"error", (PyCFunction) connection_error, METH_O,
     "error($self, message, /)\n--\n\nMark closing and fire MG_EV_ERROR(message) now."},
    {"serve_dir", FAST_METHOD(connection_serve_dir),
     "serve_dir($self, /, message, root_dir, extra_headers='', mime_types='', page404='')\n--\n\n"
     "Answer `message` with a file or listing from root_dir (SPEC 2.6)."},
    {"serve_file", FAST_METHOD(connection_serve_file),
     "serve_file($self, /, message, path, extra_headers='', mime_types='')\n--\n\n"
     "Answer `message` with the file at path, whatever its URI."},
    {"http_chunk", (PyCFunction) connection_http_chunk, METH_O,
     "http_chunk($self, data, /)\n--\n\nSend one chunk of a chunked body; b'' ends the response."},
    {"http_sse", FAST_METHOD(connection_http_sse),
     "http_sse($self, /, event_type, data)\n--\n\nSend one Server-Sent Event as one chunk."},
    {"http_end", (PyCFunction) connection_http_end, METH_NOARGS,
     "http_end($self, /)\n--\n\n"
     "Finish a response written with raw send() calls: the next pipelined request goes on."},
    {"resolve", (PyCFunction) connection_resolve, METH_O,
     "resolve($self, url, /)\n--\n\nLook up the host of url: MG_EV_RESOLVE or MG_EV_ERROR follows."},
    {"resolve_cancel", (PyCFunction) connection_resolve_cancel, METH_NOARGS,
     "resolve_cancel($self, /)\n--\n\nForget a pending lookup: no MG_EV_RESOLVE follows."},
    {"http_basic_auth", FAST_METHOD(connection_http_basic_auth),
     "http_basic_auth($self, /, username, password)\n--\n\n"
     "Queue an 'Authorization: Basic ...' header line."},
    {"recv_data", KW_METHOD(connection_recv_data),
     "recv_data($self, /, length=-1)\n--\n\nCopy of the receive buffer (first `length` bytes)."},
    {"send_data", KW_METHOD(connection_send_data),
     "send_data($self, /, length=-1)\n--\n\nCopy of the unsent bytes (first `length`)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef connection_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(ConnectionObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot connection_slots[] = {
    {Py_tp_doc, "A network connection of a Manager; created only by the Manager."},
    {Py_tp_new, connection_tp_new},
    {Py_tp_dealloc, connection_dealloc},
    {Py_tp_traverse, connection_traverse},
    {Py_tp_clear, connection_clear},
    {Py_tp_repr, connection_repr},
    {Py_tp_getset, connection_getset},
    {Py_tp_methods, connection_methods},
    {Py_tp_members, connection_members},
    {0, NULL},
};

PyType_Spec Connection_spec = {
    .name = "cymongoose._mongoose.Connection",
    .basicsize = sizeof(ConnectionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = connection_slots,
};
