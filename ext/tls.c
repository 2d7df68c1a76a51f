/* tls.c: TLS in the binding (SPEC 1.5, 1.7, 2.8): the TlsOpts type and the
 * tls_init / tls_free methods of Connection.  The TLS itself is the core's
 * (cm/tls.h); nothing here raises for a bad certificate or an odd state:
 * those reach the handler as MG_EV_ERROR, or the log for a listener. */
#include "ext.h"

/* ---- TlsOpts --------------------------------------------------------------- */

enum { OPT_CA, OPT_CERT, OPT_KEY, OPT_NAME, OPT_COUNT };
static const char *const opt_names[OPT_COUNT] = {"ca", "cert", "key", "name"};

/* `obj` as the bytes an attribute holds: str -> UTF-8, bytes-like -> bytes,
 * None -> b"" (SPEC 1.7).  New reference, or NULL with TypeError. */
static PyObject *as_pem_bytes(PyObject *obj, const char *what) {
  if (obj == NULL || obj == Py_None) return PyBytes_FromStringAndSize("", 0);
  if (PyBytes_CheckExact(obj)) return Py_NewRef(obj);
  if (PyUnicode_Check(obj)) return PyUnicode_AsUTF8String(obj);
  if (PyObject_CheckBuffer(obj)) return PyBytes_FromObject(obj);
  PyErr_Format(PyExc_TypeError, "%s must be str, bytes or None, not %.100s", what, Py_TYPE(obj)->tp_name);
  return NULL;
}

static PyObject *opts_get(TlsOptsObject *self, void *which) { return Py_NewRef(self->pem[(intptr_t) which]); }

static int opts_set(TlsOptsObject *self, PyObject *value, void *which) {
  intptr_t i = (intptr_t) which;
  if (value == NULL) {
    PyErr_Format(PyExc_AttributeError, "cannot delete %s", opt_names[i]);
    return -1;
  }
  PyObject *b = as_pem_bytes(value, opt_names[i]);
  if (b == NULL) return -1;
  Py_SETREF(self->pem[i], b);
  return 0;
}

static PyObject *opts_get_skip(TlsOptsObject *self, void *unused) {
  (void) unused;
  return PyBool_FromLong(self->skip_verification);
}

static int opts_set_skip(TlsOptsObject *self, PyObject *value, void *unused) {
  (void) unused;
  int on = value != NULL ? PyObject_IsTrue(value) : -1;
  if (value == NULL) PyErr_SetString(PyExc_AttributeError, "cannot delete skip_verification");
  if (on < 0) return -1;
  self->skip_verification = on;
  return 0;
}

static PyObject *opts_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"ca", "cert", "key", "name", "skip_verification", NULL};
  PyObject *in[OPT_COUNT] = {NULL, NULL, NULL, NULL};
  int skip = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOOOp:TlsOpts", kwlist, &in[0], &in[1], &in[2], &in[3],
                                   &skip))
    return NULL;
  TlsOptsObject *self = (TlsOptsObject *) type->tp_alloc(type, 0);
  if (self == NULL) return NULL;
  for (int i = 0; i < OPT_COUNT; i++) {
    self->pem[i] = as_pem_bytes(in[i], opt_names[i]);
    if (self->pem[i] == NULL) {
      Py_DECREF(self);
      return NULL;
    }
  }
  self->skip_verification = skip != 0;
  return (PyObject *) self;
}

static void opts_dealloc(TlsOptsObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  for (int i = 0; i < OPT_COUNT; i++) Py_XDECREF(self->pem[i]);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* Sizes, never contents: a repr must not print a private key into a log. */
static PyObject *opts_repr(TlsOptsObject *self) {
  return PyUnicode_FromFormat(
      "TlsOpts(ca=<%zd bytes>, cert=<%zd bytes>, key=<%zd bytes>, name=%R, "
      "skip_verification=%s)",
      PyBytes_GET_SIZE(self->pem[OPT_CA]), PyBytes_GET_SIZE(self->pem[OPT_CERT]),
      PyBytes_GET_SIZE(self->pem[OPT_KEY]), self->pem[OPT_NAME], self->skip_verification ? "True" : "False");
}

#define PEM_ATTR(name, i, doc) \
  { name, (getter) opts_get, (setter) opts_set, doc, (void *) (intptr_t) (i) }

static PyGetSetDef opts_getset[] = {
    PEM_ATTR("ca", OPT_CA,
             "PEM CA certificate(s) to verify the peer with (bytes).  Client: empty means the system "
             "trust store.  Server: set means client certificates are required."),
    PEM_ATTR("cert", OPT_CERT, "PEM certificate chain, leaf first (bytes)."),
    PEM_ATTR("key", OPT_KEY, "PEM private key of the certificate (bytes): RSA or EC."),
    PEM_ATTR("name", OPT_NAME,
             "Client: SNI and the host name the certificate must name (bytes); empty: the URL's host."),
    {"skip_verification", (getter) opts_get_skip, (setter) opts_set_skip,
     "Verify nothing (no chain, no host name, no client certificate).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot opts_slots[] = {
    {Py_tp_doc,
     "TlsOpts(ca=None, cert=None, key=None, name=None, skip_verification=False)\n--\n\n"
     "Options of Connection.tls_init(): PEM data as bytes (str is UTF-8 encoded, None is "
     "b'')."},
    {Py_tp_new, opts_new},
    {Py_tp_dealloc, opts_dealloc},
    {Py_tp_repr, opts_repr},
    {Py_tp_getset, opts_getset},
    {0, NULL},
};

PyType_Spec TlsOpts_spec = {
    .name = "cymongoose._mongoose.TlsOpts",
    .basicsize = sizeof(TlsOptsObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = opts_slots,
};

/* ---- Connection.tls_init / tls_free ------------------------------------------ */

static struct cm_str pem_slice(PyObject *b) {
  return cm_str_n(PyBytes_AS_STRING(b), (size_t) PyBytes_GET_SIZE(b));
}

static PyObject *connection_tls_init(ConnectionObject *self, PyObject *opts) {
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  if (!PyObject_TypeCheck(opts, self->state->TlsOptsType)) {
    PyErr_Format(PyExc_TypeError, "opts must be TlsOpts, not %.100s", Py_TYPE(opts)->tp_name);
    return NULL;
  }
  TlsOptsObject *o = (TlsOptsObject *) opts;
  /* The slices borrow o's bytes: hold o, since a handler that cm_tls_init
   * runs (CM_EV_ERROR) could drop the last reference to it. */
  Py_INCREF(o);
  struct cm_tls_opts co = {
      .ca = pem_slice(o->pem[OPT_CA]),
      .cert = pem_slice(o->pem[OPT_CERT]),
      .key = pem_slice(o->pem[OPT_KEY]),
      .name = pem_slice(o->pem[OPT_NAME]),
      .skip_verification = o->skip_verification,
  };
  ManagerObject *m = ext_hold_manager(c);
  cm_tls_init(c, &co); /* failures are events or log lines, never exceptions (SPEC 2.8) */
  Py_DECREF(o);
  if (ext_release_manager(m) < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *connection_tls_free(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  cm_tls_free(c);
  Py_RETURN_NONE;
}

PyMethodDef tls_connection_methods[] = {
    {"tls_init", (PyCFunction) connection_tls_init, METH_O,
     "tls_init($self, opts, /)\n--\n\nStart TLS on this connection with `opts` (a TlsOpts).  On a "
     "listener, every accepted connection inherits it.  Never raises for bad PEM: errors arrive as "
     "MG_EV_ERROR."},
    {"tls_free", (PyCFunction) connection_tls_free, METH_NOARGS,
     "tls_free($self, /)\n--\n\nDrop the TLS state of this connection."},
    {NULL, NULL, 0, NULL},
};
