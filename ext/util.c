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
