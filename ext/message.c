/* message.c: HttpMessage, a view of a parsed HTTP message (SPEC 1.6).
 *
 * The view borrows the core's struct cm_http_msg, whose slices point into
 * the connection's receive buffer; manager.c invalidates it (hm = NULL) when
 * the handler returns, so it can never read freed memory.  Python objects
 * are built only when a getter asks, keeping the per-event cost at one
 * small allocation.  Text is UTF-8 with surrogateescape: any byte survives a
 * round trip.
 *
 * copy() detaches one: the message and its bytes (head and body) copied
 * into one block the object owns (cm_http_msg_copy), so it stays valid
 * after the event, for answering the request later (ws_upgrade,
 * serve_file, serve_dir from a timer or a coroutine).  manager.c never
 * sees a copy (it invalidates only the views it made). */
#include "ext.h"

#define QUERY_VAR_MAX 2048 /* decoded query values must be shorter (SPEC 1.6) */

static PyObject *text(struct cm_str s) {
  return PyUnicode_DecodeUTF8(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len, "surrogateescape");
}

/* The UTF-8 bytes of a str argument as a slice (borrowed from `obj`). */
static int str_arg(PyObject *obj, const char *what, struct cm_str *out) {
  Py_ssize_t len;
  if (!PyUnicode_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(obj)->tp_name);
    return -1;
  }
  out->buf = PyUnicode_AsUTF8AndSize(obj, &len);
  out->len = (size_t) len;
  return out->buf != NULL ? 0 : -1;
}

/* First header named `name`, ASCII case-insensitively, or NULL. */
static const struct cm_http_header *find_header(const struct cm_http_msg *hm, struct cm_str name) {
  for (size_t i = 0; i < hm->num_headers; i++) {
    const struct cm_http_header *h = &hm->headers[i];
    if (cm_str_casecmp(h->name, name)) return h;
  }
  return NULL;
}

static void message_dealloc(HttpMessageObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyMem_Free(self->own);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* Getters of the start line; `closure` is the offset of the slice. */
static PyObject *message_get_slice(HttpMessageObject *self, void *closure) {
  if (self->hm == NULL) return PyUnicode_FromStringAndSize("", 0);
  const char *base = (const char *) self->hm;
  return text(*(const struct cm_str *) (base + (size_t) closure));
}

static PyObject *message_get_body_bytes(HttpMessageObject *self, void *closure) {
  (void) closure;
  if (self->hm == NULL) return PyBytes_FromStringAndSize("", 0);
  struct cm_str b = self->hm->body;
  return PyBytes_FromStringAndSize(b.len > 0 ? b.buf : "", (Py_ssize_t) b.len);
}

static PyObject *message_get_body_text(HttpMessageObject *self, void *closure) {
  (void) closure;
  if (self->hm == NULL) return PyUnicode_FromStringAndSize("", 0);
  return text(self->hm->body);
}

static PyObject *message_header(HttpMessageObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"name", "default", NULL};
  PyObject *name, *dflt = Py_None;
  struct cm_str n;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:header", kwlist, &name, &dflt)) return NULL;
  if (str_arg(name, "name", &n) < 0) return NULL;
  const struct cm_http_header *h = self->hm != NULL ? find_header(self->hm, n) : NULL;
  return h != NULL ? text(h->value) : Py_NewRef(dflt);
}

static PyObject *message_headers(HttpMessageObject *self, PyObject *unused) {
  (void) unused;
  size_t n = self->hm != NULL ? self->hm->num_headers : 0;
  PyObject *list = PyList_New((Py_ssize_t) n);
  for (size_t i = 0; list != NULL && i < n; i++) {
    const struct cm_http_header *h = &self->hm->headers[i];
    PyObject *name = text(h->name), *value = name != NULL ? text(h->value) : NULL;
    PyObject *pair = value != NULL ? PyTuple_Pack(2, name, value) : NULL;
    Py_XDECREF(name);
    Py_XDECREF(value);
    if (pair == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t) i, pair); /* steals pair */
  }
  return list;
}

static PyObject *message_query_var(HttpMessageObject *self, PyObject *name) {
  struct cm_str n, raw;
  if (str_arg(name, "name", &n) < 0) return NULL;
  if (self->hm == NULL || !cm_http_var(self->hm->query, n, &raw) || raw.len == 0) Py_RETURN_NONE;
  char buf[QUERY_VAR_MAX];
  long len = cm_http_url_decode(raw.buf, raw.len, buf, sizeof(buf), true);
  if (len < 0) {
    /* Too long or a bad %xx: both fail the decode (SPEC 1.6 wording). */
    return PyErr_Format(PyExc_ValueError, "Query parameter '%U' value exceeds 2048-byte buffer limit", name);
  }
  return PyUnicode_DecodeUTF8(buf, (Py_ssize_t) len, "surrogateescape");
}

/* atoi() of the status text of a response; 0 for a request. */
static PyObject *message_status(HttpMessageObject *self, PyObject *unused) {
  (void) unused;
  if (self->hm == NULL) Py_RETURN_NONE;
  if (!self->hm->is_response) return PyLong_FromLong(0);
  struct cm_str s = self->hm->uri;
  long code = 0;
  for (size_t i = 0; i < s.len && i < 9 && s.buf[i] >= '0' && s.buf[i] <= '9'; i++)
    code = code * 10 + (s.buf[i] - '0');
  return PyLong_FromLong(code);
}

static PyObject *message_header_var(HttpMessageObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"header_name", "var_name", NULL};
  PyObject *hname, *vname;
  struct cm_str hn, vn, value;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:header_var", kwlist, &hname, &vname)) return NULL;
  if (str_arg(hname, "header_name", &hn) < 0 || str_arg(vname, "var_name", &vn) < 0) return NULL;
  const struct cm_http_header *h = self->hm != NULL ? find_header(self->hm, hn) : NULL;
  if (h == NULL || !cm_http_header_var(h->value, vn, &value)) Py_RETURN_NONE;
  return text(value);
}

static int message_bool(HttpMessageObject *self) { return self->hm != NULL; }

/* A detached copy; a copy is immutable, so copying one gives itself. */
static PyObject *message_copy(HttpMessageObject *self, PyObject *unused) {
  (void) unused;
  if (self->own != NULL) return Py_NewRef(self);
  if (self->hm == NULL) {
    PyErr_SetString(PyExc_ValueError, "HttpMessage is not valid for this event");
    return NULL;
  }
  size_t n = self->hm->message.len;
  if (n > PY_SSIZE_T_MAX - sizeof(struct cm_http_msg)) return PyErr_NoMemory();
  struct cm_http_msg *own = PyMem_Malloc(sizeof(*own) + n);
  if (own == NULL) return PyErr_NoMemory();
  PyTypeObject *tp = Py_TYPE(self);
  HttpMessageObject *cp = (HttpMessageObject *) tp->tp_alloc(tp, 0);
  if (cp == NULL) {
    PyMem_Free(own);
    return NULL;
  }
  cm_http_msg_copy(own, self->hm, (char *) (own + 1));
  cp->own = own;
  cp->hm = own;
  return (PyObject *) cp;
}

static PyGetSetDef message_getset[] = {
    {"method", (getter) message_get_slice, NULL, "Request method; 'HTTP/1.1' for a response.",
     (void *) offsetof(struct cm_http_msg, method)},
    {"uri", (getter) message_get_slice, NULL, "Path without the query; status code for a response.",
     (void *) offsetof(struct cm_http_msg, uri)},
    {"query", (getter) message_get_slice, NULL, "Text after '?', '' if none.",
     (void *) offsetof(struct cm_http_msg, query)},
    {"proto", (getter) message_get_slice, NULL, "'HTTP/1.1'; reason phrase for a response.",
     (void *) offsetof(struct cm_http_msg, proto)},
    {"body_bytes", (getter) message_get_body_bytes, NULL, "Body as bytes (de-chunked).", NULL},
    {"body_text", (getter) message_get_body_text, NULL, "Body as str (UTF-8, surrogateescape).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef message_methods[] = {
    {"header", KW_METHOD(message_header),
     "header($self, /, name, default=None)\n--\n\nFirst header called `name` (any case), else default."},
    {"headers", (PyCFunction) message_headers, METH_NOARGS,
     "headers($self, /)\n--\n\nList of (name, value) in wire order."},
    {"query_var", (PyCFunction) message_query_var, METH_O,
     "query_var($self, name, /)\n--\n\nURL-decoded query variable; None if missing or empty."},
    {"status", (PyCFunction) message_status, METH_NOARGS,
     "status($self, /)\n--\n\nStatus code of a response, 0 for a request, None if invalid."},
    {"header_var", KW_METHOD(message_header_var),
     "header_var($self, /, header_name, var_name)\n--\n\nValue of `var_name=` inside a header, or None."},
    {"copy", (PyCFunction) message_copy, METH_NOARGS,
     "copy($self, /)\n--\n\nA detached HttpMessage owning a copy of the request (head and body): it\n"
     "stays valid after the handler returns, so ws_upgrade(), serve_file() and serve_dir() can answer\n"
     "the request later.  ValueError on an invalid view."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot message_slots[] = {
    {Py_tp_doc,
     "A view of an HTTP message, valid only while its event handler runs\n"
     "(copy() gives one that stays valid)."},
    {Py_tp_dealloc, message_dealloc},
    {Py_tp_getset, message_getset},
    {Py_tp_methods, message_methods},
    {Py_nb_bool, message_bool},
    {0, NULL},
};

PyType_Spec HttpMessage_spec = {
    .name = "cymongoose._mongoose.HttpMessage",
    .basicsize = sizeof(HttpMessageObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = message_slots,
};
