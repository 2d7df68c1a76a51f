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
 * RuntimeError("Connection has been closed").
 *
 * Only what every connection has is here: properties, send, close, error,
 * the buffers, name lookups.  Each protocol's methods live in that
 * protocol's file (http.c, ...); module.c joins the tables into the type. */
#include <stdio.h>

#include "ext.h"

ConnectionObject *connection_new(cm_state *st, struct cm_conn *c) {
  PyTypeObject *tp = st->ConnectionType;
  ConnectionObject *self = (ConnectionObject *) tp->tp_alloc(tp, 0);
  if (self == NULL) return NULL;
  self->c = c;
  self->state = st;
  return self;
}

void connection_detach(ConnectionObject *conn) {
  if (conn->c != NULL) conn->ws_close = conn->c->ws_close_code; /* asked for after MG_EV_CLOSE too */
  conn->c = NULL;
}

/* The core connection, or NULL with RuntimeError set. */
struct cm_conn *connection_live(ConnectionObject *self) {
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

/* The peer's WebSocket close code (cm/conn.h), None before one is known. */
static PyObject *connection_get_ws_close_code(ConnectionObject *self, void *closure) {
  (void) closure;
  unsigned code = self->c != NULL ? self->c->ws_close_code : self->ws_close;
  if (code == 0) Py_RETURN_NONE;
  return PyLong_FromUnsignedLong(code);
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
  /* A TCP listener has no peer: all zero, ("0.0.0.0", 0, False), until a
   * resolve() on it sets one.  A UDP listener: the last sender. */
  return addr_tuple(&c->rem);
}

/* ---- methods ------------------------------------------------------------ */

static PyObject *connection_set_handler(ConnectionObject *self, PyObject *handler) {
  /* On a listener this is also what future children inherit (they copy it
   * at their CM_EV_OPEN), so None reverts them to the default handler. */
  Py_XSETREF(self->handler, handler != Py_None ? Py_NewRef(handler) : NULL);
  if (self->c != NULL) manager_update_events(self->c->fn_data, self);
  Py_RETURN_NONE;
}

/* A closing connection drops unsent data anyway (cm_close), so sending to
 * it is not an error (as with Mongoose, where it is a no-op). */
PyObject *connection_put(ConnectionObject *self, PyObject *data,
                         bool (*put)(struct cm_conn *, const void *, size_t), const char *failed) {
  struct cm_conn *c = connection_live(self);
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
  return connection_put(self, data, cm_http_send, "mg_send failed");
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
  struct cm_conn *c = connection_live(self);
  Py_ssize_t n;
  if (c == NULL) return NULL;
  if (!PyUnicode_Check(message)) {
    PyErr_Format(PyExc_TypeError, "message must be str, not %.100s", Py_TYPE(message)->tp_name);
    return NULL;
  }
  const char *msg = PyUnicode_AsUTF8AndSize(message, &n);
  if (msg == NULL) return NULL;
  /* CM_EV_ERROR runs our handlers synchronously. */
  ManagerObject *m = ext_hold_manager(c);
  cm_error(c, "%s", msg); /* user text is an argument, never the format */
  if (ext_release_manager(m) < 0) return NULL;
  Py_RETURN_NONE;
}

ManagerObject *ext_hold_manager(struct cm_conn *c) {
  return (ManagerObject *) Py_NewRef((PyObject *) c->fn_data);
}

int ext_release_manager(ManagerObject *m) {
  int rc = manager_raise_pending(m);
  Py_DECREF(m);
  return rc;
}

static PyObject *connection_resolve(ConnectionObject *self, PyObject *url) {
  const char *u;
  struct cm_conn *c = connection_live(self);
  if (c == NULL || ext_opt_text(url, "url", &u, NULL) < 0) return NULL;
  if (c->is_closing) Py_RETURN_NONE;
  ManagerObject *m = ext_hold_manager(c);
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
  if (ext_release_manager(m) < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *connection_resolve_cancel(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  cm_resolve_cancel(c);
  Py_RETURN_NONE;
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
    {"ws_close_code", (getter) connection_get_ws_close_code, NULL,
     "WebSocket: the code of the peer's close frame (1005 if it had none, 1006 if the connection\n"
     "ended without one); None before.",
     NULL},
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

/* The methods of every connection; each protocol adds its own table (see
 * connection_tables in module.c). */
PyMethodDef connection_methods[] = {
    {"set_handler", (PyCFunction) connection_set_handler, METH_O,
     "set_handler($self, handler, /)\n--\n\nSet the handler; on a listener also for future children."},
    {"send", (PyCFunction) connection_send, METH_O,
     "send($self, data, /)\n--\n\nQueue raw bytes (str is sent as UTF-8)."},
    {"close", (PyCFunction) connection_close, METH_NOARGS,
     "close($self, /)\n--\n\nClose at the end of this poll iteration."},
    {"drain", (PyCFunction) connection_drain, METH_NOARGS,
     "drain($self, /)\n--\n\nClose once everything queued has been sent."},
    {"error", (PyCFunction) connection_error, METH_O,
     "error($self, message, /)\n--\n\nMark closing and fire MG_EV_ERROR(message) now."},
    {"resolve", (PyCFunction) connection_resolve, METH_O,
     "resolve($self, url, /)\n--\n\nLook up the host of url: MG_EV_RESOLVE or MG_EV_ERROR follows."},
    {"resolve_cancel", (PyCFunction) connection_resolve_cancel, METH_NOARGS,
     "resolve_cancel($self, /)\n--\n\nForget a pending lookup: no MG_EV_RESOLVE follows."},
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
    {Py_tp_methods, NULL}, /* module.c: connection_methods joined with the protocols' */
    {Py_tp_members, connection_members},
    {0, NULL},
};

PyType_Spec Connection_spec = {
    .name = "cymongoose._mongoose.Connection",
    .basicsize = sizeof(ConnectionObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = connection_slots,
};
