/* mqtt_broker.c: the built-in MQTT broker in the binding (SPEC Decision
 * 16): Manager.mqtt_broker(), and the broker methods of its connections
 * (mqtt_broker_stats, mqtt_broker_publish).  The broker is the core's
 * (cm/mqtt_broker.h); this file owns the one broker of a Manager, calls
 * the Python auth and acl hooks for it, and converts arguments.
 *
 * One Manager has at most one broker: every mqtt_broker() listener of it
 * serves the same sessions and the same topic tree, so a client on
 * mqtt:// and one on ws:// see each other's messages. */
#include "ext.h"

/* The broker of a Manager (ManagerObject.broker), and what it calls. */
struct ext_broker {
  struct cm_mqtt_broker *b; /* the core broker */
  ManagerObject *m;         /* borrowed: the manager owns us */
  PyObject *auth;           /* auth(client_id, username, password) -> bool, or NULL (strong) */
  PyObject *acl;            /* acl(client_id, username, topic, is_publish) -> bool, or NULL (strong) */
  PyObject *persist;        /* the persistence path as given (bytes), or NULL (strong) */
  uint16_t max_inflight;    /* as given */
  uint32_t max_queued;      /* as given */
};

#define DEFAULT_INFLIGHT 20
#define DEFAULT_QUEUED 1000

/* ---- the hooks ------------------------------------------------------------------ */

static PyObject *opt_text(struct cm_str s, bool present) {
  if (!present) return Py_NewRef(Py_None);
  return PyUnicode_DecodeUTF8(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len, "surrogateescape");
}

/* Call a hook with `args` (stolen) and read its answer as a bool.  An
 * exception is reported like a handler's (SPEC 2.1.4) and refuses: a
 * broken hook must not let a client in. */
static bool ask(struct ext_broker *eb, PyObject *fn, PyObject *args) {
  ManagerObject *m = eb->m;
  if (args == NULL || m->silent || m->pending_exc != NULL) {
    Py_XDECREF(args);
    if (PyErr_Occurred()) manager_handle_exception(m, true);
    return false;
  }
  m->depth++;
  PyObject *r = PyObject_Call(fn, args, NULL);
  Py_DECREF(args);
  int yes = r != NULL ? PyObject_IsTrue(r) : -1;
  Py_XDECREF(r);
  if (yes < 0) manager_handle_exception(m, true);
  m->depth--;
  return yes == 1;
}

static bool auth_hook(void *arg, struct cm_conn *c, struct cm_str id, struct cm_str user, bool has_user,
                      struct cm_str pass, bool has_pass) {
  struct ext_broker *eb = arg;
  (void) c;
  PyObject *args =
      Py_BuildValue("(NNN)", opt_text(id, true), opt_text(user, has_user), opt_text(pass, has_pass));
  return ask(eb, eb->auth, args);
}

static bool acl_hook(void *arg, struct cm_conn *c, struct cm_str id, struct cm_str user, struct cm_str topic,
                     bool is_publish) {
  struct ext_broker *eb = arg;
  (void) c;
  PyObject *args = Py_BuildValue("(NNNO)", opt_text(id, true), opt_text(user, user.len > 0),
                                 opt_text(topic, true), is_publish ? Py_True : Py_False);
  return ask(eb, eb->acl, args);
}

/* ---- the broker of a Manager ---------------------------------------------------- */

void mqtt_broker_teardown(ManagerObject *m) {
  struct ext_broker *eb = m->broker;
  if (eb == NULL) return;
  m->broker = NULL;
  cm_mqtt_broker_free(eb->b); /* saves; the clients close with the manager */
  Py_XDECREF(eb->auth);
  Py_XDECREF(eb->acl);
  Py_XDECREF(eb->persist);
  PyMem_Free(eb);
}

int mqtt_broker_traverse(ManagerObject *m, visitproc visit, void *arg) {
  struct ext_broker *eb = m->broker;
  if (eb == NULL) return 0;
  Py_VISIT(eb->auth);
  Py_VISIT(eb->acl);
  return 0;
}

static int hook_arg(PyObject *obj, const char *name, PyObject **out) {
  *out = obj != NULL && obj != Py_None ? obj : NULL;
  if (*out != NULL && !PyCallable_Check(*out)) {
    PyErr_Format(PyExc_TypeError, "%s must be callable or None", name);
    return -1;
  }
  return 0;
}

/* The options of a later call must be the first call's (the CLI repeats
 * them for every --listen): the broker is already made with those. */
static bool same_options(const struct ext_broker *eb, PyObject *persist, PyObject *auth, PyObject *acl,
                         long inflight, long queued) {
  bool same_path = persist == NULL
                       ? eb->persist == NULL
                       : eb->persist != NULL && PyObject_RichCompareBool(persist, eb->persist, Py_EQ) == 1;
  return same_path && auth == eb->auth && acl == eb->acl && inflight == eb->max_inflight &&
         queued == (long) eb->max_queued;
}

/* The manager's broker, made now with these options if it has none. */
static struct ext_broker *get_broker(ManagerObject *m, PyObject *persist, PyObject *auth, PyObject *acl,
                                     long inflight, long queued) {
  struct ext_broker *eb = m->broker;
  if (eb != NULL) {
    if (same_options(eb, persist, auth, acl, inflight, queued)) return eb;
    PyErr_SetString(PyExc_ValueError,
                    "this Manager's MQTT broker is running already: later mqtt_broker() calls add listeners "
                    "and must repeat the first call's options (or leave them out)");
    return NULL;
  }
  eb = PyMem_Calloc(1, sizeof(*eb));
  if (eb == NULL) return (struct ext_broker *) PyErr_NoMemory();
  eb->m = m;
  eb->auth = Py_XNewRef(auth);
  eb->acl = Py_XNewRef(acl);
  eb->persist = Py_XNewRef(persist);
  eb->max_inflight = (uint16_t) inflight;
  eb->max_queued = (uint32_t) queued;
  struct cm_mqtt_broker_opts o = {
      .max_inflight = (uint16_t) inflight,
      .max_queued = (uint32_t) queued,
      .persist = persist != NULL ? PyBytes_AS_STRING(persist) : NULL,
      .auth = auth != NULL ? auth_hook : NULL,
      .acl = acl != NULL ? acl_hook : NULL,
      .hook_arg = eb,
  };
  char err[300] = "";
  eb->b = cm_mqtt_broker_new(&m->mgr, &o, err, sizeof(err));
  if (eb->b == NULL) {
    PyErr_Format(PyExc_RuntimeError, "Failed to start the MQTT broker: %s", err);
    m->broker = eb;
    mqtt_broker_teardown(m);
    return NULL;
  }
  m->broker = eb;
  return eb;
}

static bool is_scheme(const char *url, const char *scheme) {
  size_t n = strlen(scheme);
  return strlen(url) >= n && cm_str_casecmp(cm_str_n(url, n), cm_str_n(scheme, n));
}

static struct cm_conn *open_listener(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                     void *arg) {
  (void) mgr;
  struct ext_broker *eb = arg;
  return cm_mqtt_broker_listen(eb->b, url, fn, fn_data);
}

/* A count argument in [lo, hi]. */
static int range_arg(PyObject *obj, const char *name, long lo, long hi, long dflt, long *out) {
  *out = dflt;
  if (obj == NULL || obj == Py_None) return 0;
  long v = PyLong_AsLong(obj);
  if (v == -1 && PyErr_Occurred()) return -1;
  if (v < lo || v > hi) {
    PyErr_Format(PyExc_ValueError, "%s must be from %ld to %ld", name, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

/* The schemes served (cm_url_is_ssl tells the TLS ones). */
static const char *const schemes[] = {"mqtt://", "tcp://", "ws://", "mqtts://", "wss://"};

/* 0 if the broker serves url's scheme, else -1 (ValueError set). */
static int check_scheme(PyObject *u, const char *us) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(schemes); i++) {
    if (is_scheme(us, schemes[i])) return 0;
  }
  PyErr_Format(PyExc_ValueError,
               "mqtt_broker() serves mqtt://, mqtts://, ws://, wss:// and tcp:// URLs, not '%U'", u);
  return -1;
}

static PyObject *manager_mqtt_broker(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url",          "handler",    "persist", "auth", "acl",
                           "max_inflight", "max_queued", "tls",     NULL};
  PyObject *url = NULL, *handler = Py_None, *persist_obj = NULL, *auth_obj = NULL, *acl_obj = NULL;
  PyObject *inflight_obj = NULL, *queued_obj = NULL, *persist = NULL, *auth, *acl, *result = NULL;
  PyObject *tls = Py_None;
  const char *path = NULL;
  long inflight, queued;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|U$OOOOOOO:mqtt_broker", kwlist, &url, &handler,
                                   &persist_obj, &auth_obj, &acl_obj, &inflight_obj, &queued_obj, &tls))
    return NULL;
  if (tls != Py_None && !PyObject_TypeCheck(tls, self->state->TlsOptsType)) {
    PyErr_Format(PyExc_TypeError, "tls must be TlsOpts or None, not %.100s", Py_TYPE(tls)->tp_name);
    return NULL;
  }
  if (hook_arg(auth_obj, "auth", &auth) < 0 || hook_arg(acl_obj, "acl", &acl) < 0) return NULL;
  if (range_arg(inflight_obj, "max_inflight", 1, 65535, DEFAULT_INFLIGHT, &inflight) < 0 ||
      range_arg(queued_obj, "max_queued", 1, 100000000, DEFAULT_QUEUED, &queued) < 0)
    return NULL;
  if (persist_obj != NULL && persist_obj != Py_None && ext_opt_path(persist_obj, &persist, &path) < 0)
    return NULL;
  if (persist != NULL && path == NULL) Py_CLEAR(persist); /* "" means none */
  struct ext_broker *running = self->broker;
  if (running != NULL) { /* a later call: what it leaves out is the running broker's */
    if (persist_obj == NULL) persist = Py_XNewRef(running->persist);
    if (auth_obj == NULL) auth = running->auth;
    if (acl_obj == NULL) acl = running->acl;
    if (inflight_obj == NULL) inflight = running->max_inflight;
    if (queued_obj == NULL) queued = (long) running->max_queued;
  }
  PyObject *u = url != NULL ? Py_NewRef(url) : PyUnicode_FromString("mqtt://0.0.0.0:1883");
  const char *us = u != NULL ? PyUnicode_AsUTF8(u) : NULL;
  if (us == NULL) goto done;
  if (check_scheme(u, us) < 0) goto done;
  if (tls != Py_None && !cm_url_is_ssl(us)) {
    /* The scheme says whether the port speaks TLS.  (An mqtts:// listener
     * without tls= may get listener.tls_init() next, or tls_init() in
     * MG_EV_ACCEPT; a client that finds no TLS there is refused.) */
    PyErr_Format(PyExc_ValueError, "tls= needs an mqtts:// or wss:// URL, not '%U'", u);
    goto done;
  }
  if (self->closed) { /* before making a broker the closed manager would never free */
    PyErr_SetString(PyExc_RuntimeError, "Manager has been closed");
    goto done;
  }
  struct ext_broker *eb = get_broker(self, persist, auth, acl, inflight, queued);
  if (eb != NULL)
    result = manager_open(self, u, handler, open_listener, eb, "Failed to listen for MQTT on '%U'");
  if (result != NULL && tls != Py_None) { /* before any client: nothing is accepted until the next poll */
    PyObject *r = PyObject_CallMethod(result, "tls_init", "O", tls);
    if (r == NULL) Py_CLEAR(result);
    Py_XDECREF(r);
  }
done:
  Py_XDECREF(u);
  Py_XDECREF(persist);
  return result;
}

PyMethodDef mqtt_broker_manager_methods[] = {
    {"mqtt_broker", KW_METHOD(manager_mqtt_broker),
     "mqtt_broker($self, /, url='mqtt://0.0.0.0:1883', *, handler=None, persist=None, auth=None, acl=None, "
     "max_inflight=20, max_queued=1000, tls=None)\n--\n\n"
     "Serve MQTT 3.1.1 and 5 clients on url with this Manager's built-in broker; returns the listener.\n"
     "url: mqtt:// (TCP), mqtts:// (TLS), ws://host:port[/path] (MQTT over WebSocket, subprotocol mqtt,\n"
     "as browsers and MQTT.js speak it) or wss://.  tls=TlsOpts(cert=..., key=...) sets up TLS on an\n"
     "mqtts:// or wss:// listener (as listener.tls_init() would); a client that finds none is refused.\n"
     "The first call makes the broker (one per Manager) with its options; later calls add listeners,\n"
     "which share its sessions and topics.\n"
     "handler sees MG_EV_OPEN / MG_EV_CLOSE of each client, MG_EV_WS_OPEN (the upgrade request) of a\n"
     "WebSocket client, and MG_EV_MQTT_MSG for each PUBLISH.\n"
     "persist: a file where retained messages and persistent sessions survive a restart.\n"
     "auth(client_id, username, password) -> bool and acl(client_id, username, topic, is_publish) -> bool\n"
     "(username / password None when not sent) may refuse a client or a topic."},
    {NULL, NULL, 0, NULL},
};

/* ---- methods of the broker's connections ----------------------------------------- */

static struct cm_mqtt_broker *broker_of(ConnectionObject *self) {
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  struct cm_mqtt_broker *b = cm_mqtt_broker_of(c);
  if (b == NULL) PyErr_SetString(PyExc_ValueError, "not a connection of an MQTT broker");
  return b;
}

static int set_u64(PyObject *d, const char *key, uint64_t v) {
  PyObject *o = PyLong_FromUnsignedLongLong(v);
  int rc = o != NULL ? PyDict_SetItemString(d, key, o) : -1;
  Py_XDECREF(o);
  return rc;
}

static PyObject *conn_mqtt_broker_stats(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_mqtt_broker *b = broker_of(self);
  if (b == NULL) return NULL;
  struct cm_mqtt_broker_stats s = cm_mqtt_broker_stats(b);
  PyObject *d = PyDict_New();
  if (d == NULL) return NULL;
  if (set_u64(d, "clients", s.clients) < 0 || set_u64(d, "sessions", s.sessions) < 0 ||
      set_u64(d, "subscriptions", s.subscriptions) < 0 || set_u64(d, "retained", s.retained) < 0 ||
      set_u64(d, "messages_in", s.msgs_in) < 0 || set_u64(d, "messages_out", s.msgs_out) < 0 ||
      set_u64(d, "dropped", s.dropped) < 0 || set_u64(d, "connects", s.connects) < 0) {
    Py_DECREF(d);
    return NULL;
  }
  return d;
}

static PyObject *conn_mqtt_broker_publish(ConnectionObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"topic", "message", "qos", "retain", NULL};
  PyObject *topic, *message;
  int qos = 0, retain = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UO|ip:mqtt_broker_publish", kwlist, &topic, &message, &qos,
                                   &retain))
    return NULL;
  struct cm_mqtt_broker *b = broker_of(self);
  if (b == NULL) return NULL;
  Py_ssize_t tlen;
  const char *t = PyUnicode_AsUTF8AndSize(topic, &tlen);
  if (t == NULL) return NULL;
  if (qos < 0 || qos > 2 || !cm_mqtt_topic_valid(cm_str_n(t, (size_t) tlen))) {
    PyErr_SetString(PyExc_ValueError, "qos must be 0, 1 or 2 and topic a topic name (no '+' or '#')");
    return NULL;
  }
  ext_data d;
  if (ext_data_get(message, &d, "message") < 0) return NULL;
  ManagerObject *m = ext_hold_manager(self->c); /* acl hooks are not asked, handlers may run: hold */
  int rc =
      cm_mqtt_broker_publish(b, cm_str_n(t, (size_t) tlen), cm_str_n(d.buf, (size_t) d.len), qos, retain);
  ext_data_release(&d);
  if (ext_release_manager(m) < 0) return NULL;
  if (rc != 0) return PyErr_NoMemory();
  Py_RETURN_NONE;
}

PyMethodDef mqtt_broker_connection_methods[] = {
    {"mqtt_broker_stats", (PyCFunction) conn_mqtt_broker_stats, METH_NOARGS,
     "mqtt_broker_stats($self, /)\n--\n\n"
     "Counters of the broker this listener (or client connection) belongs to: a dict with clients,\n"
     "sessions, subscriptions, retained, messages_in, messages_out, dropped and connects."},
    {"mqtt_broker_publish", KW_METHOD(conn_mqtt_broker_publish),
     "mqtt_broker_publish($self, /, topic, message, qos=0, retain=False)\n--\n\n"
     "Publish from the broker itself to its subscribers (as a client would; no acl)."},
    {NULL, NULL, 0, NULL},
};
