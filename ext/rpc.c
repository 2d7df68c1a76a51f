/* rpc.c: Rpc and RpcReq (SPEC 1.9), a JSON-RPC 2.0 dispatcher with the
 * semantics of Mongoose's mg_rpc, over the pure scanner of cm/json.h.
 *
 * Rpc keeps (pattern, handler) pairs, newest first.  process() reads the
 * frame's "id" and "method", calls the first handler whose glob pattern
 * (cm_match) matches the method with an RpcReq, and returns the one
 * response that handler produced with ok() or err():
 *
 *   {"id":<id>,"result":<result_json>}
 *   {"id":<id>,"error":{"code":<code>,"message":<JSON string>}}
 *
 * "id" is echoed as its raw token, so numbers stay numbers; without an id
 * ok() emits nothing (a notification) while errors are still reported,
 * without "id", as mg_rpc does.  An RpcReq is valid only while its
 * handler runs: afterwards every use raises RuntimeError. */
#include <string.h>

#include "funcs.h"

/* JSON-RPC 2.0 error codes (section 5.1). */
#define RPC_PARSE_ERROR (-32700)
#define RPC_METHOD_NOT_FOUND (-32601)
#define RPC_INTERNAL_ERROR (-32603)

typedef struct {
  PyObject_HEAD PyObject *entries; /* list of (pattern str, handler) tuples, newest first (strong) */
  PyTypeObject *req_type;          /* RpcReq of our module (strong) */
  PyObject *weakreflist;           /* weak references to us */
} RpcObject;

typedef struct {
  PyObject_HEAD PyObject *frame; /* the request as str (strong) */
  PyObject *id;                  /* raw JSON token of "id" as str, NULL if absent (strong) */
  PyObject *response;            /* the response, NULL until sent or if suppressed (strong) */
  bool sent;                     /* ok() or err() ran */
  bool valid;                    /* its handler is still running */
} RpcReqObject;

/* What process() reads from a frame before any handler runs, so that the
 * caller's buffer is released before Python code can touch it. */
struct frame {
  PyObject *text;   /* the frame as str (strong) */
  PyObject *id;     /* "id" token as str, or NULL (strong) */
  PyObject *method; /* "method" as unescaped UTF-8 bytes, or NULL (strong) */
  bool is_reply;    /* no method but a "result" or "error": a response frame */
};

/* ---- JSON helpers --------------------------------------------------------- */

/* Characters a JSON string may not hold raw (RFC 8259 section 7), plus lone
 * surrogates, which no UTF-8 encoder accepts: all are written \uXXXX. */
static bool needs_u_escape(Py_UCS4 ch) { return ch < 0x20 || (ch >= 0xD800 && ch <= 0xDFFF); }

static Py_ssize_t escaped_len(Py_UCS4 ch) { return ch == '"' || ch == '\\' ? 2 : needs_u_escape(ch) ? 6 : 1; }

/* Write `ch`, escaped as needed, at out[pos]; returns the next position. */
static Py_ssize_t put_char(int kind, void *out, Py_ssize_t pos, Py_UCS4 ch) {
  static const char hex[] = "0123456789abcdef";
  if (!needs_u_escape(ch)) {
    if (ch == '"' || ch == '\\') PyUnicode_WRITE(kind, out, pos++, '\\');
    PyUnicode_WRITE(kind, out, pos++, ch);
    return pos;
  }
  PyUnicode_WRITE(kind, out, pos++, '\\');
  PyUnicode_WRITE(kind, out, pos++, 'u');
  for (int shift = 12; shift >= 0; shift -= 4)
    PyUnicode_WRITE(kind, out, pos++, (Py_UCS4) hex[(ch >> shift) & 15]);
  return pos;
}

/* `s` as a JSON string literal, quotes included (new reference).  Two
 * passes: the first sizes the result and finds its widest character, so
 * the str is created in its canonical (narrowest) kind, as CPython requires. */
static PyObject *json_quote(PyObject *s) {
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(s) < 0) return NULL; /* legacy str objects (3.10, 3.11) */
#endif
  int kind = PyUnicode_KIND(s);
  const void *data = PyUnicode_DATA(s);
  Py_ssize_t n = PyUnicode_GET_LENGTH(s), len = 2, pos = 0;
  Py_UCS4 max = '"';
  if (n > (PY_SSIZE_T_MAX - 2) / 6) return PyErr_NoMemory();
  for (Py_ssize_t i = 0; i < n; i++) {
    Py_UCS4 ch = PyUnicode_READ(kind, data, i);
    len += escaped_len(ch);
    if (!needs_u_escape(ch) && ch > max) max = ch;
  }
  PyObject *res = PyUnicode_New(len, max); /* new, filled below */
  if (res == NULL) return NULL;
  int okind = PyUnicode_KIND(res);
  void *out = PyUnicode_DATA(res);
  PyUnicode_WRITE(okind, out, pos++, '"');
  for (Py_ssize_t i = 0; i < n; i++) pos = put_char(okind, out, pos, PyUnicode_READ(kind, data, i));
  PyUnicode_WRITE(okind, out, pos, '"');
  return res;
}

static PyObject *text(struct cm_str s) {
  return PyUnicode_DecodeUTF8(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len, "surrogateescape");
}

/* The raw token at `path`, or {NULL, 0} if there is none. */
static struct cm_str token_at(struct cm_str json, const char *path) {
  int len, off = cm_json_get(json, path, &len);
  return off >= 0 ? cm_str_n(json.buf + off, (size_t) len) : cm_str_n(NULL, 0);
}

/* The body of the string token `tok` unescaped, as bytes (new).  A body
 * whose escapes do not decode (a lone surrogate) is taken as written. */
static PyObject *unescaped(struct cm_str tok) {
  struct cm_str body = cm_str_n(tok.buf + 1, tok.len - 2);
  /* bytes objects keep a NUL after their size, so body.len + 1 bytes are
   * writable, as cm_json_unescape needs; decoding never grows the text. */
  PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) body.len); /* new */
  if (res == NULL) return NULL;
  long n = cm_json_unescape(body, PyBytes_AS_STRING(res), body.len + 1);
  if (n < 0) {
    Py_DECREF(res);
    return PyBytes_FromStringAndSize(body.len > 0 ? body.buf : "", (Py_ssize_t) body.len);
  }
  if (_PyBytes_Resize(&res, (Py_ssize_t) n) < 0) return NULL; /* frees res on error */
  return res;
}

/* ---- reading a frame ------------------------------------------------------ */

static void frame_clear(struct frame *fr) {
  Py_CLEAR(fr->text);
  Py_CLEAR(fr->id);
  Py_CLEAR(fr->method);
}

/* Fill `fr` from the JSON in json[]; fr->text is already set. */
static int frame_scan(struct frame *fr, struct cm_str json) {
  struct cm_str id = token_at(json, "$.id"), method = token_at(json, "$.method");
  if (id.len > 0 && (fr->id = text(id)) == NULL) return -1;
  if (method.len > 0 && method.buf[0] == '"') {
    fr->method = unescaped(method);
    return fr->method != NULL ? 0 : -1;
  }
  /* Not a call: mg_rpc ignores responses and calls anything else a parse
   * error (also a "method" that is not a string). */
  fr->is_reply = token_at(json, "$.result").len > 0 || token_at(json, "$.error").len > 0;
  return 0;
}

static int frame_read(PyObject *obj, struct frame *fr) {
  ext_data d;
  memset(fr, 0, sizeof(*fr));
  if (ext_data_get(obj, &d, "frame") < 0) return -1;
  struct cm_str json = cm_str_n(d.buf, (size_t) d.len);
  fr->text = PyUnicode_Check(obj) ? Py_NewRef(obj) : text(json);
  int rc = fr->text != NULL ? frame_scan(fr, json) : -1;
  ext_data_release(&d);
  if (rc < 0) frame_clear(fr);
  return rc;
}

/* ---- RpcReq --------------------------------------------------------------- */

static void rpcreq_dealloc(RpcReqObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  Py_CLEAR(self->frame);
  Py_CLEAR(self->id);
  Py_CLEAR(self->response);
  tp->tp_free(self);
  Py_DECREF(tp); /* heap type: instances own a reference */
}

static RpcReqObject *rpcreq_new(PyTypeObject *tp, const struct frame *fr) {
  RpcReqObject *self = (RpcReqObject *) tp->tp_alloc(tp, 0);
  if (self == NULL) return NULL;
  self->frame = Py_NewRef(fr->text);
  self->id = Py_XNewRef(fr->id);
  self->valid = true;
  return self;
}

/* Record the response `r` (stolen; NULL: an error is set). */
static int set_response(RpcReqObject *self, PyObject *r) {
  if (r == NULL) return -1;
  Py_XSETREF(self->response, r);
  self->sent = true;
  return 0;
}

static int reply_error(RpcReqObject *self, long long code, PyObject *message) {
  PyObject *quoted = json_quote(message), *r; /* both new */
  if (quoted == NULL) return -1;
  if (self->id != NULL) {
    r = PyUnicode_FromFormat("{\"id\":%U,\"error\":{\"code\":%lld,\"message\":%U}}", self->id, code, quoted);
  } else {
    r = PyUnicode_FromFormat("{\"error\":{\"code\":%lld,\"message\":%U}}", code, quoted);
  }
  Py_DECREF(quoted);
  return set_response(self, r);
}

/* reply_error() with a message of our own (ASCII text). */
static int reply_error_text(RpcReqObject *self, long long code, const char *message) {
  PyObject *msg = PyUnicode_FromString(message); /* new */
  if (msg == NULL) return -1;
  int rc = reply_error(self, code, msg);
  Py_DECREF(msg);
  return rc;
}

/* 0 if ok()/err() may run now, else -1 with RuntimeError. */
static int can_reply(RpcReqObject *self) {
  if (!self->valid) {
    PyErr_SetString(PyExc_RuntimeError, "RpcReq is no longer valid");
    return -1;
  }
  if (self->sent) {
    PyErr_SetString(PyExc_RuntimeError, "Response already sent");
    return -1;
  }
  return 0;
}

static PyObject *rpcreq_ok(RpcReqObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"result_json", NULL};
  PyObject *result;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:ok", kwlist, &result)) return NULL;
  if (can_reply(self) < 0) return NULL;
  if (!PyUnicode_Check(result)) {
    return PyErr_Format(PyExc_TypeError, "result_json must be str, not %.100s", Py_TYPE(result)->tp_name);
  }
  if (self->id == NULL) { /* a notification: answered, with nothing */
    self->sent = true;
    Py_RETURN_NONE;
  }
  PyObject *r = PyUnicode_FromFormat("{\"id\":%U,\"result\":%U}", self->id, result);
  return set_response(self, r) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *rpcreq_err(RpcReqObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"code", "message", NULL};
  PyObject *codeobj, *message;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:err", kwlist, &codeobj, &message)) return NULL;
  if (can_reply(self) < 0) return NULL;
  if (!PyIndex_Check(codeobj)) {
    return PyErr_Format(PyExc_TypeError, "code must be int, not %.100s", Py_TYPE(codeobj)->tp_name);
  }
  if (!PyUnicode_Check(message)) {
    return PyErr_Format(PyExc_TypeError, "message must be str, not %.100s", Py_TYPE(message)->tp_name);
  }
  long long code = PyLong_AsLongLong(codeobj); /* via __index__; OverflowError if too big */
  if (code == -1 && PyErr_Occurred()) return NULL;
  return reply_error(self, code, message) < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *rpcreq_get_frame(RpcReqObject *self, void *closure) {
  (void) closure;
  if (!self->valid) {
    PyErr_SetString(PyExc_RuntimeError, "RpcReq is no longer valid");
    return NULL;
  }
  return Py_NewRef(self->frame);
}

static PyGetSetDef rpcreq_getset[] = {
    {"frame", (getter) rpcreq_get_frame, NULL, "The request frame (raw JSON text).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef rpcreq_methods[] = {
    {"ok", KW_METHOD(rpcreq_ok),
     "ok($self, /, result_json)\n--\n\n"
     "Respond {\"id\":<id>,\"result\":<result_json>}; nothing without an id."},
    {"err", KW_METHOD(rpcreq_err),
     "err($self, /, code, message)\n--\n\n"
     "Respond {\"id\":<id>,\"error\":{\"code\":code,\"message\":message}}."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot rpcreq_slots[] = {
    {Py_tp_doc, "One JSON-RPC request, handed to an Rpc handler; valid only while that handler runs."},
    {Py_tp_dealloc, rpcreq_dealloc},
    {Py_tp_getset, rpcreq_getset},
    {Py_tp_methods, rpcreq_methods},
    {0, NULL},
};

/* Not GC-tracked: it holds only str objects, which cannot form cycles. */
static PyType_Spec RpcReq_spec = {
    .name = "cymongoose._mongoose.RpcReq",
    .basicsize = sizeof(RpcReqObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = rpcreq_slots,
};

/* ---- Rpc ------------------------------------------------------------------ */

/* The RpcReq type of the module that made `tp` (new reference).
 * cm_state has no slot for it yet, so it is the module's "RpcReq"
 * attribute, checked to be really ours; each Rpc looks it up once. */
static PyTypeObject *find_req_type(PyTypeObject *tp) {
  PyObject *module = PyType_GetModuleByDef(tp, &cm_module_def); /* borrowed */
  if (module == NULL) return NULL;
  PyObject *req = PyObject_GetAttrString(module, "RpcReq"); /* new */
  if (req != NULL && PyType_Check(req) &&
      PyType_GetSlot((PyTypeObject *) req, Py_tp_dealloc) == (void *) rpcreq_dealloc)
    return (PyTypeObject *) req;
  Py_XDECREF(req);
  PyErr_SetString(PyExc_RuntimeError, "cymongoose._mongoose.RpcReq has been replaced or deleted");
  return NULL;
}

static PyObject *rpc_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {NULL};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Rpc", kwlist)) return NULL;
  RpcObject *self = (RpcObject *) tp->tp_alloc(tp, 0);
  if (self == NULL) return NULL;
  self->entries = PyList_New(0);
  self->req_type = self->entries != NULL ? find_req_type(tp) : NULL;
  if (self->req_type == NULL) Py_CLEAR(self);
  return (PyObject *) self;
}

static int rpc_traverse(RpcObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap type: instances own a reference */
  Py_VISIT(self->entries);
  Py_VISIT(self->req_type);
  return 0;
}

static int rpc_clear(RpcObject *self) {
  Py_CLEAR(self->entries);
  Py_CLEAR(self->req_type);
  return 0;
}

static void rpc_dealloc(RpcObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *) self);
  rpc_clear(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyObject *rpc_add(RpcObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"method", "handler", NULL};
  PyObject *method, *handler;
  Py_ssize_t len;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:add", kwlist, &method, &handler)) return NULL;
  if (!PyUnicode_Check(method)) {
    return PyErr_Format(PyExc_TypeError, "method must be str, not %.100s", Py_TYPE(method)->tp_name);
  }
  if (!PyCallable_Check(handler)) {
    return PyErr_Format(PyExc_TypeError, "handler must be callable, not %.100s", Py_TYPE(handler)->tp_name);
  }
  /* Caches the pattern's UTF-8 in the str now, so matching cannot fail. */
  if (PyUnicode_AsUTF8AndSize(method, &len) == NULL) return NULL;
  PyObject *entry = PyTuple_Pack(2, method, handler); /* new; the list takes its own reference */
  if (entry == NULL) return NULL;
  int rc = PyList_Insert(self->entries, 0, entry); /* newest first */
  Py_DECREF(entry);
  return rc < 0 ? NULL : Py_NewRef(Py_None);
}

/* The handler of the newest pattern that matches `method` (bytes), as a
 * new reference, or NULL (no exception) if none does. */
static PyObject *find_handler(RpcObject *self, PyObject *method) {
  struct cm_str m = cm_str_n(PyBytes_AS_STRING(method), (size_t) PyBytes_GET_SIZE(method));
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(self->entries); i++) {
    PyObject *entry = PyList_GET_ITEM(self->entries, i); /* borrowed */
    Py_ssize_t plen;
    const char *p = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(entry, 0), &plen); /* cached by add() */
    if (cm_match(m, cm_str_n(p, (size_t) plen), NULL, 0)) return Py_NewRef(PyTuple_GET_ITEM(entry, 1));
  }
  return NULL;
}

/* -32601 "<method> not found"; `method` is UTF-8 bytes (maybe with NULs). */
static int not_found(RpcReqObject *req, PyObject *method) {
  PyObject *name =
      PyUnicode_DecodeUTF8(PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method), "surrogateescape");
  PyObject *msg = name != NULL ? PyUnicode_FromFormat("%U not found", name) : NULL; /* both new */
  int rc = msg != NULL ? reply_error(req, RPC_METHOD_NOT_FOUND, msg) : -1;
  Py_XDECREF(name);
  Py_XDECREF(msg);
  return rc;
}

/* The handler raised.  An Exception becomes a -32603 response carrying
 * str(exc); if the handler had already responded, that response stands and
 * the exception is reported as unraisable rather than lost.  Anything else
 * (KeyboardInterrupt, SystemExit) propagates: returns -1. */
static int handler_failed(RpcReqObject *req, PyObject *handler) {
  if (!PyErr_ExceptionMatches(PyExc_Exception)) return -1;
  if (req->sent) {
    PyErr_WriteUnraisable(handler);
    return 0;
  }
#if PY_VERSION_HEX >= 0x030C0000
  PyObject *exc = PyErr_GetRaisedException(); /* new */
#else
  PyObject *type, *exc, *tb;
  PyErr_Fetch(&type, &exc, &tb);
  PyErr_NormalizeException(&type, &exc, &tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
#endif
  PyObject *msg = exc != NULL ? PyObject_Str(exc) : NULL; /* new; if str() raises, that propagates */
  Py_XDECREF(exc);
  int rc = msg != NULL ? reply_error(req, RPC_INTERNAL_ERROR, msg) : -1;
  Py_XDECREF(msg);
  return rc;
}

/* Run the handler for `method` with `req`; `req` is invalid afterwards. */
static int dispatch(RpcObject *self, RpcReqObject *req, PyObject *method) {
  /* Our own reference: the handler may re-register or drop itself. */
  PyObject *handler = find_handler(self, method);
  if (handler == NULL) return not_found(req, method);
  PyObject *r = PyObject_CallOneArg(handler, (PyObject *) req);
  req->valid = false;
  int rc = 0;
  if (r == NULL) {
    rc = handler_failed(req, handler);
  } else if (!req->sent) {
    rc = reply_error_text(req, RPC_INTERNAL_ERROR, "handler produced no response");
  }
  Py_XDECREF(r);
  Py_DECREF(handler);
  return rc;
}

/* Answer the frame in `fr` through `req`. */
static int answer(RpcObject *self, RpcReqObject *req, const struct frame *fr) {
  if (fr->method != NULL) return dispatch(self, req, fr->method);
  if (fr->is_reply) return 0; /* a response to us: nothing to answer */
  return reply_error(req, RPC_PARSE_ERROR, fr->text);
}

static PyObject *rpc_process(RpcObject *self, PyObject *frame) {
  struct frame fr;
  PyObject *res = NULL;
  if (frame_read(frame, &fr) < 0) return NULL;
  RpcReqObject *req = rpcreq_new(self->req_type, &fr); /* new */
  if (req != NULL && answer(self, req, &fr) == 0) {
    res = req->response != NULL ? Py_NewRef(req->response) : PyUnicode_FromString("");
  }
  if (req != NULL) req->valid = false; /* also when no handler ran */
  Py_XDECREF(req);
  frame_clear(&fr);
  return res;
}

static PyObject *rpc_get_methods(RpcObject *self, void *closure) {
  (void) closure;
  PyObject *list = PyList_New(0); /* new */
  for (Py_ssize_t i = 0; list != NULL && i < PyList_GET_SIZE(self->entries); i++) {
    PyObject *pattern = PyTuple_GET_ITEM(PyList_GET_ITEM(self->entries, i), 0); /* borrowed */
    if (PyUnicode_GET_LENGTH(pattern) > 0 && PyList_Append(list, pattern) < 0) Py_CLEAR(list);
  }
  return list;
}

static PyGetSetDef rpc_getset[] = {
    {"methods", (getter) rpc_get_methods, NULL, "Registered patterns, newest first (without '').", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef rpc_methods[] = {
    {"add", KW_METHOD(rpc_add),
     "add($self, /, method, handler)\n--\n\n"
     "Register handler(req) for a method glob pattern (match() syntax); newest is tried first."},
    {"process", (PyCFunction) rpc_process, METH_O,
     "process($self, frame, /)\n--\n\nDispatch one request frame; return the response JSON ('' if none)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef rpc_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(RpcObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot rpc_slots[] = {
    {Py_tp_doc, "Rpc()\n--\n\nA JSON-RPC 2.0 dispatcher (Mongoose mg_rpc semantics)."},
    {Py_tp_new, rpc_tp_new},
    {Py_tp_dealloc, rpc_dealloc},
    {Py_tp_traverse, rpc_traverse},
    {Py_tp_clear, rpc_clear},
    {Py_tp_getset, rpc_getset},
    {Py_tp_methods, rpc_methods},
    {Py_tp_members, rpc_members},
    {0, NULL},
};

static PyType_Spec Rpc_spec = {
    .name = "cymongoose._mongoose.Rpc",
    .basicsize = sizeof(RpcObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = rpc_slots,
};

/* ---- registration --------------------------------------------------------- */

static int add_type(PyObject *module, PyObject *all, PyType_Spec *spec, const char *name) {
  PyObject *tp = PyType_FromModuleAndSpec(module, spec, NULL); /* new */
  if (tp == NULL) return -1;
  int rc = PyModule_AddObjectRef(module, name, tp);
  Py_DECREF(tp);
  if (rc == 0 && all != NULL) rc = funcs_list_name(all, name);
  return rc;
}

int rpc_exec(PyObject *module, PyObject *all) {
  if (add_type(module, all, &RpcReq_spec, "RpcReq") < 0) return -1;
  return add_type(module, all, &Rpc_spec, "Rpc");
}
