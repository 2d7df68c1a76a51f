/* util.c: module-level functions (event_name, log_set, log_get; more
 * utilities arrive later) and argument helpers shared by the binding. */
#include "ext.h"

int ext_data_get(PyObject *obj, ext_data *d, const char *what) {
  d->view.obj = NULL;
  if (PyUnicode_Check(obj)) {
    /* The UTF-8 form is cached in the str object, which the caller holds. */
    d->buf = PyUnicode_AsUTF8AndSize(obj, &d->len);
    return d->buf != NULL ? 0 : -1;
  }
  if (PyObject_CheckBuffer(obj)) {
    if (PyObject_GetBuffer(obj, &d->view, PyBUF_SIMPLE) < 0) return -1;
    d->buf = d->view.buf;
    d->len = d->view.len;
    return 0;
  }
  PyErr_Format(PyExc_TypeError, "%s must be str or bytes-like, not %.100s", what, Py_TYPE(obj)->tp_name);
  return -1;
}

void ext_data_release(ext_data *d) {
  if (d->view.obj != NULL) PyBuffer_Release(&d->view);
}

int ext_as_int(PyObject *obj, int *out) {
  long v = PyLong_AsLong(obj); /* accepts __index__ */
  if (v == -1 && PyErr_Occurred()) return -1;
  if (v < INT_MIN || v > INT_MAX) {
    PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
    return -1;
  }
  *out = (int) v;
  return 0;
}

PyObject *ext_lazy_attr(PyObject **slot, const char *module, const char *name) {
  if (*slot == NULL) {
    PyObject *mod = PyImport_ImportModule(module);
    *slot = mod != NULL ? PyObject_GetAttrString(mod, name) : NULL;
    Py_XDECREF(mod);
  }
  return *slot;
}

int ext_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
             const char *const names[], int nnames, int required, PyObject **out) {
  if (nargs > nnames) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, nnames, nargs);
    return -1;
  }
  for (int i = 0; i < nnames; i++) out[i] = i < nargs ? args[i] : NULL;
  Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; k++) {
    PyObject *key = PyTuple_GET_ITEM(kwnames, k);
    int i = 0;
    while (i < nnames && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) i++;
    if (i == nnames) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
      return -1;
    }
    if (out[i] != NULL) {
      PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname, names[i]);
      return -1;
    }
    out[i] = args[nargs + k];
  }
  for (int i = 0; i < required; i++) {
    if (out[i] == NULL) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", fname, names[i], i + 1);
      return -1;
    }
  }
  return 0;
}

/* ---- small tools of the binding (declared in ext.h) ---------------- */

void ext_buf_init(struct ext_buf *b) {
  b->p = b->inline_buf;
  b->len = 0;
  b->cap = sizeof(b->inline_buf);
}

void ext_buf_free(struct ext_buf *b) {
  if (b->p != b->inline_buf) PyMem_Free(b->p);
}

int ext_buf_reserve(struct ext_buf *b, size_t n) {
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
  ext_buf_free(b);
  b->p = p;
  b->cap = cap;
  return 0;
}

int ext_buf_add(struct ext_buf *b, const char *s, size_t n) {
  if (ext_buf_reserve(b, n) < 0) return -1;
  if (n > 0) memcpy(b->p + b->len, s, n);
  b->len += n;
  return 0;
}

bool ext_has_crlf_nul(const char *s, Py_ssize_t n) {
  for (Py_ssize_t i = 0; i < n; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return true;
  }
  return false;
}

int ext_opt_text(PyObject *obj, const char *what, const char **out, Py_ssize_t *len) {
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

int ext_opt_path(PyObject *obj, PyObject **keep, const char **out) {
  *keep = NULL;
  *out = NULL;
  if (obj == NULL) return 0;
  if (!PyUnicode_FSConverter(obj, keep)) return -1; /* NULs: ValueError */
  if (PyBytes_GET_SIZE(*keep) > 0) *out = PyBytes_AS_STRING(*keep);
  return 0;
}

static PyObject *util_event_name(PyObject *module, PyObject *arg) {
  (void) module;
  int ev;
  if (ext_as_int(arg, &ev) < 0) return NULL;
  char buf[48];
  return PyUnicode_FromString(cm_event_name(ev, buf, sizeof(buf)));
}

static PyObject *util_log_set(PyObject *module, PyObject *arg) {
  (void) module;
  int level;
  if (ext_as_int(arg, &level) < 0) return NULL;
  cm_log_set(level);
  Py_RETURN_NONE;
}

static PyObject *util_log_get(PyObject *module, PyObject *unused) {
  (void) module, (void) unused;
  return PyLong_FromLong(cm_log_get());
}

PyMethodDef util_methods[] = {
    {"event_name", util_event_name, METH_O,
     "event_name($module, ev, /)\n--\n\nName of an event number: 'MG_EV_HTTP_MSG', 'MG_EV_USER+1', "
     "'MG_EV_UNKNOWN(20)'."},
    {"log_set", util_log_set, METH_O, "log_set($module, level, /)\n--\n\nSet the C log level (MG_LL_*)."},
    {"log_get", util_log_get, METH_NOARGS,
     "log_get($module, /)\n--\n\nThe C log level (default MG_LL_NONE)."},
    {NULL, NULL, 0, NULL},
};
