/* ws.c: the WebSocket face of the binding (SPEC 1.5, 1.6, 2.7): the
 * WsMessage view, Connection.ws_upgrade / ws_send and Manager.ws_connect.
 * The protocol is the core's (cm/ws.h); this file converts and checks
 * arguments.  ws_upgrade keeps the GIL: MG_EV_WS_OPEN fires inside it. */
#include "ext.h"

/* Payloads from this size on are copied (and masked) without the GIL. */
#define NOGIL_SEND (64u << 10)

/* ---- WsMessage ------------------------------------------------------------ */

static const struct cm_ws_msg *msg_of(WsMessageObject *self) { return self->wm; }

static PyObject *ws_message_get_data(WsMessageObject *self, void *closure) {
  (void) closure;
  const struct cm_ws_msg *m = msg_of(self);
  if (m == NULL || m->data.len == 0) return PyBytes_FromStringAndSize("", 0);
  return PyBytes_FromStringAndSize(m->data.buf, (Py_ssize_t) m->data.len);
}

/* Text messages are UTF-8 already (the core checked); binary ones decode
 * with surrogateescape, so any byte survives a round trip. */
static PyObject *ws_message_get_text(WsMessageObject *self, void *closure) {
  (void) closure;
  const struct cm_ws_msg *m = msg_of(self);
  if (m == NULL || m->data.len == 0) return PyUnicode_FromStringAndSize("", 0);
  return PyUnicode_DecodeUTF8(m->data.buf, (Py_ssize_t) m->data.len, "surrogateescape");
}

static PyObject *ws_message_get_flags(WsMessageObject *self, void *closure) {
  (void) closure;
  const struct cm_ws_msg *m = msg_of(self);
  return PyLong_FromLong(m != NULL ? m->flags : 0);
}

static int ws_message_bool(WsMessageObject *self) { return self->wm != NULL; }

static void ws_message_dealloc(WsMessageObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyGetSetDef ws_message_getset[] = {
    {"data", (getter) ws_message_get_data, NULL, "Payload as bytes.", NULL},
    {"text", (getter) ws_message_get_text, NULL, "Payload as str (UTF-8, surrogateescape).", NULL},
    {"flags", (getter) ws_message_get_flags, NULL,
     "First frame byte: FIN | opcode (0x81 text, 0x82 binary; a fragmented message: its first opcode).",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot ws_message_slots[] = {
    {Py_tp_doc, "A WebSocket message, valid only while its event handler runs."},
    {Py_tp_dealloc, ws_message_dealloc},
    {Py_tp_getset, ws_message_getset},
    {Py_nb_bool, ws_message_bool},
    {0, NULL},
};

PyType_Spec WsMessage_spec = {
    .name = "cymongoose._mongoose.WsMessage",
    .basicsize = sizeof(WsMessageObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = ws_message_slots,
};

/* ---- settings ------------------------------------------------------------- */

int ext_ws_opts(PyObject *max_message, PyObject *deflate, struct cm_ws_opts *o, bool *given) {
  o->max_message = 0;
  o->no_deflate = false;
  if (max_message != NULL && max_message != Py_None) {
    PyObject *index = PyNumber_Index(max_message);
    if (index == NULL) return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (overflow != 0 || v <= 0) {
      PyErr_SetString(PyExc_ValueError, "ws_max_message must be None or a positive int");
      return -1;
    }
    o->max_message = (uint64_t) v;
    *given = true;
  }
  if (deflate != NULL) {
    int on = PyObject_IsTrue(deflate);
    if (on < 0) return -1;
    o->no_deflate = !on;
    *given = *given || !on;
  }
  return 0;
}

/* ---- Connection methods ------------------------------------------------------ */

static PyObject *connection_ws_upgrade(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  static const char *const names[] = {"message", "extra_headers"};
  PyObject *a[2];
  struct ext_buf h;
  bool any_ct = false;
  if (ext_args("ws_upgrade", args, nargs, kwnames, names, 2, 1, a) < 0) return NULL;
  if (!PyObject_TypeCheck(a[0], self->state->HttpMessageType)) {
    return PyErr_Format(PyExc_TypeError, "message must be HttpMessage, not %.100s", Py_TYPE(a[0])->tp_name);
  }
  ext_buf_init(&h);
  /* Headers are checked first, as reply() does (SPEC 1.5). */
  if (a[1] != NULL && a[1] != Py_None && ext_headers_add(&h, a[1], false, &any_ct) < 0) {
    ext_buf_free(&h);
    return NULL;
  }
  const struct cm_http_msg *hm = ((HttpMessageObject *) a[0])->hm;
  struct cm_conn *c = connection_live(self);
  if (c != NULL && hm == NULL) PyErr_SetString(PyExc_ValueError, "HttpMessage is not valid for this event");
  if (c == NULL || hm == NULL) {
    ext_buf_free(&h);
    return NULL;
  }
  ManagerObject *m = ext_hold_manager(c);
  bool was_draining = c->is_draining;
  bool ok = cm_ws_upgrade(c, hm, h.p, h.len, NULL);
  /* Refused as a handshake: the client got its 4xx and the connection
   * drains.  Refused as a connection: nothing was sent (closing: dropped,
   * as ws_send does; answered already: the application's mistake). */
  bool answered_now = !ok && !was_draining && c->is_draining;
  ext_buf_free(&h);
  if (ext_release_manager(m) < 0) return NULL;
  if (!ok && !answered_now && !c->is_closing) {
    PyErr_SetString(PyExc_RuntimeError, "ws_upgrade: the request was answered already");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *connection_ws_send(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames) {
  static const char *const names[] = {"data", "op"};
  PyObject *a[2];
  int op = CM_WS_OP_TEXT;
  ext_data d;
  if (ext_args("ws_send", args, nargs, kwnames, names, 2, 1, a) < 0) return NULL;
  if (a[1] != NULL && ext_as_int(a[1], &op) < 0) return NULL;
  bool control = op == CM_WS_OP_CLOSE || op == CM_WS_OP_PING || op == CM_WS_OP_PONG;
  if (!control && op != CM_WS_OP_TEXT && op != CM_WS_OP_BINARY) {
    return PyErr_Format(PyExc_ValueError, "ws_send: invalid opcode %d", op);
  }
  struct cm_conn *c = connection_live(self);
  if (c == NULL || ext_data_get(a[0], &d, "data") < 0) return NULL;
  PyObject *result = NULL;
  if (control && d.len > CM_WS_MAX_CONTROL) {
    PyErr_Format(PyExc_ValueError, "ws_send: a control frame carries at most %d bytes", CM_WS_MAX_CONTROL);
  } else if (!c->is_websocket && !c->is_closing) {
    PyErr_SetString(PyExc_RuntimeError, "ws_send: not a WebSocket connection");
  } else {
    /* A closing connection, or one that sent its close frame, drops what
     * comes after (ASGI may send once the peer is gone). */
    PyThreadState *ts = (size_t) d.len >= NOGIL_SEND ? PyEval_SaveThread() : NULL;
    cm_ws_send(c, d.buf, (size_t) d.len, op); /* fires no event: safe without the GIL */
    if (ts != NULL) PyEval_RestoreThread(ts);
    result = Py_NewRef(Py_None);
  }
  ext_data_release(&d);
  return result;
}

PyMethodDef ws_connection_methods[] = {
    {"ws_upgrade", FAST_METHOD(connection_ws_upgrade),
     "ws_upgrade($self, /, message, extra_headers=None)\n--\n\n"
     "Answer a WebSocket upgrade request with 101; MG_EV_WS_OPEN fires inside the call.\n"
     "A request that is no valid handshake gets 426 (or 400) and the connection closes.\n"
     "From MG_EV_HTTP_MSG with its view, or later with message.copy() while the request is\n"
     "unanswered; RuntimeError if it was answered already, nothing on a closing connection."},
    {"ws_send", FAST_METHOD(connection_ws_send),
     "ws_send($self, /, data, op=WEBSOCKET_OP_TEXT)\n--\n\n"
     "Send one WebSocket frame with FIN set; op 8 (close) starts the closing handshake."},
    {NULL, NULL, 0, NULL},
};

/* ---- Manager methods ------------------------------------------------------- */

struct connect_args {
  const char *headers;
  struct cm_ws_opts opts;
};

static struct cm_conn *open_ws(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                               void *arg) {
  struct connect_args *ca = arg;
  return cm_ws_connect(mgr, url, ca->headers, &ca->opts, fn, fn_data);
}

static PyObject *manager_ws_connect(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url", "handler", "extra_headers", "ws_max_message", "ws_deflate", NULL};
  PyObject *url, *handler = Py_None, *headers = Py_None, *max = Py_None, *deflate = Py_True;
  struct connect_args ca;
  struct ext_buf h;
  bool given = false, any_ct = false;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O$OOO:ws_connect", kwlist, &url, &handler, &headers, &max,
                                   &deflate))
    return NULL;
  if (ext_ws_opts(max, deflate, &ca.opts, &given) < 0) return NULL;
  ext_buf_init(&h);
  if (headers != Py_None && ext_headers_add(&h, headers, false, &any_ct) < 0) {
    ext_buf_free(&h);
    return NULL;
  }
  ca.headers = NULL;
  if (h.len > 0 && ext_buf_add(&h, "", 1) == 0) ca.headers = h.p; /* NUL-terminated */
  PyObject *r =
      manager_open(self, url, handler, open_ws, &ca, "Failed to create WebSocket connection to '%U'");
  ext_buf_free(&h);
  return r;
}

PyMethodDef ws_manager_methods[] = {
    {"ws_connect", KW_METHOD(manager_ws_connect),
     "ws_connect($self, /, url, handler=None, *, extra_headers=None, ws_max_message=None, ws_deflate=True)\n"
     "--\n\n"
     "Open a WebSocket client connection; the handshake is queued at once.  MG_EV_WS_OPEN\n"
     "fires on the 101, MG_EV_ERROR('ws handshake error') on anything else."},
    {NULL, NULL, 0, NULL},
};
