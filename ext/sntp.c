/* sntp.c: the SNTP methods (SPEC 1.4, 1.5, 2.13): Manager.sntp_connect
 * and Connection.sntp_request.  The protocol is the core's (cm/sntp.h);
 * MG_EV_SNTP_TIME's int is made in manager.c's event_data(). */
#include "ext.h"

/* cm_sntp_connect in the shape manager_open() calls. */
static struct cm_conn *open_sntp(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                 void *arg) {
  (void) arg;
  return cm_sntp_connect(mgr, url, fn, fn_data);
}

static PyObject *manager_sntp_connect(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url", "handler", NULL};
  PyObject *url, *handler = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O:sntp_connect", kwlist, &url, &handler)) return NULL;
  return manager_open(self, url, handler, open_sntp, NULL, "Failed to connect to SNTP server '%U'");
}

/* Ignored, with an error log, while the name is still resolving (SPEC 1.5):
 * the request goes out on MG_EV_CONNECT anyway. */
static PyObject *connection_sntp_request(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  cm_sntp_request(c);
  Py_RETURN_NONE;
}

PyMethodDef sntp_manager_methods[] = {
    {"sntp_connect", KW_METHOD(manager_sntp_connect),
     "sntp_connect($self, /, url, handler=None)\n--\n\n"
     "Ask the SNTP server at url (\"udp://host:123\"; \"sntp://host\" is UDP port 123) for the time:\n"
     "MG_EV_SNTP_TIME with ms since the epoch, then the connection closes."},
    {NULL, NULL, 0, NULL},
};

PyMethodDef sntp_connection_methods[] = {
    {"sntp_request", (PyCFunction) connection_sntp_request, METH_NOARGS,
     "sntp_request($self, /)\n--\n\nSend one SNTP request now (ignored while the name resolves)."},
    {NULL, NULL, 0, NULL},
};
