/* manager.c: Manager (SPEC 1.4): the event loop, its one C callback into
 * Python, exception routing, wakeup, run() and shutdown.
 *
 * Every connection we create has c->fn = on_event and c->fn_data = the
 * ManagerObject; accepted connections inherit both.  on_event notes at
 * CM_EV_OPEN which handler the connection gets, skips the events that
 * handler ignores, and for the others makes the connection's one
 * ConnectionObject if it has none yet, turns the event's C data into Python
 * data, calls the handler and invalidates message views; after CM_EV_CLOSE
 * it detaches the object.
 *
 * The core's list of connections (mgr.conns) is the only registry: the
 * object, or until it is needed the handler alone, hangs off c->userdata,
 * which owns the reference ("what c->userdata holds" below).  So an idle
 * connection costs Python nothing but a reference to its handler.
 * Manager.connections, GC traversal and teardown all walk that list.
 *
 * The GIL is held throughout, except around epoll_wait (on_sleep) and the
 * payload copy in wakeup(). */
#include <signal.h>

#include "ext.h"

#define NOT_REENTRANT                                                              \
  "poll() is not reentrant and must not be called concurrently. Use AsyncManager " \
  "for multi-threaded access."
#define CLOSE_WHILE_POLLING \
  "Cannot close Manager while poll() is active. Stop all polling threads before calling close()."

/* ---- exceptions --------------------------------------------------------- */

/* The raised exception as one object, cleared (3.12's
 * PyErr_GetRaisedException).  NULL if none is set. */
static PyObject *take_exception(void) {
#if PY_VERSION_HEX >= 0x030C0000
  return PyErr_GetRaisedException();
#else
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  if (value != NULL && tb != NULL) PyException_SetTraceback(value, tb);
  Py_XDECREF(type);
  Py_XDECREF(tb);
  return value;
#endif
}

/* Raise `exc` again (steals the reference). */
static void restore_exception(PyObject *exc) {
#if PY_VERSION_HEX >= 0x030C0000
  PyErr_SetRaisedException(exc);
#else
  PyErr_Restore(Py_NewRef((PyObject *) Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* Call fn(arg), or fn() when `arg` is NULL, with `exc` as the exception
 * being handled, as inside an `except` block: traceback.print_exc() and
 * sys.exc_info() see it there, and an exception raised by fn gets it as
 * __context__. */
static PyObject *call_handling(PyObject *exc, PyObject *fn, PyObject *arg) {
  PyObject *type, *value, *tb;
  PyErr_GetExcInfo(&type, &value, &tb); /* new references, given back below */
  PyErr_SetExcInfo(Py_NewRef((PyObject *) Py_TYPE(exc)), Py_NewRef(exc), PyException_GetTraceback(exc));
  PyObject *result = arg != NULL ? PyObject_CallOneArg(fn, arg) : PyObject_CallNoArgs(fn);
  PyErr_SetExcInfo(type, value, tb);
  return result;
}

/* traceback.print_exc() of `exc`, onto Python's sys.stderr. */
static void print_exception(ManagerObject *self, PyObject *exc) {
  PyObject *print_exc = ext_lazy_attr(&self->state->print_exc, "traceback", "print_exc");
  PyObject *r = print_exc != NULL ? call_handling(exc, print_exc, NULL) : NULL;
  if (r != NULL) {
    Py_DECREF(r);
    return;
  }
  /* No traceback module or no stderr (interpreter shutdown): last resort. */
  PyErr_Clear();
  restore_exception(Py_NewRef(exc));
  PyErr_WriteUnraisable((PyObject *) self);
}

/* A BaseException that is not an Exception stops Python dispatch until
 * poll() (or the synchronous call that ran the handler) re-raises it. */
static void keep_exception(ManagerObject *self, PyObject *exc) {
  if (self->pending_exc != NULL) { /* dispatch already stopped at the first one */
    Py_DECREF(exc);
    return;
  }
  self->pending_exc = exc; /* steals */
}

static bool is_exception(PyObject *exc) { return PyObject_TypeCheck(exc, (PyTypeObject *) PyExc_Exception); }

void manager_handle_exception(ManagerObject *self, bool use_handler) {
  PyObject *exc = take_exception();
  if (exc == NULL) return;
  if (!is_exception(exc)) {
    keep_exception(self, exc);
    return;
  }
  if (use_handler && self->error_handler != NULL) {
    PyObject *r = call_handling(exc, self->error_handler, exc);
    Py_DECREF(exc);
    if (r != NULL) {
      Py_DECREF(r);
      return;
    }
    exc = take_exception(); /* the error handler's own exception */
    if (exc == NULL) return;
    if (!is_exception(exc)) {
      keep_exception(self, exc);
      return;
    }
  }
  print_exception(self, exc);
  Py_DECREF(exc);
}

/* poll() running, or a handler (or timer) running: the core must not be
 * re-entered or freed. */
static bool busy(ManagerObject *self) { return self->polling || self->depth > 0; }

int manager_raise_pending(ManagerObject *self) {
  if (self->pending_exc == NULL || busy(self)) return 0;
  PyObject *exc = self->pending_exc;
  self->pending_exc = NULL;
  restore_exception(exc); /* steals */
  return -1;
}

static int check_open(ManagerObject *self) {
  if (!self->closed) return 0;
  PyErr_SetString(PyExc_RuntimeError, "Manager has been freed");
  return -1;
}

/* ---- the bridge from the core ------------------------------------------- */

/* mgr.sleep_fn: drop the GIL for the blocking wait alone. */
static void on_sleep(struct cm_mgr *mgr, bool sleeping, void *arg) {
  ManagerObject *self = arg;
  (void) mgr;
  if (sleeping) {
    self->tstate = PyEval_SaveThread();
  } else {
    PyEval_RestoreThread(self->tstate);
    self->tstate = NULL;
  }
}

/* The type of the views of `kind`. */
static PyTypeObject *view_type(cm_state *st, int kind) {
  switch (kind) {
    case VIEW_HTTP: return st->HttpMessageType;
    case VIEW_WS: return st->WsMessageType;
    case VIEW_MQTT: return st->MqttMessageType;
    default: return NULL;
  }
}

/* A view of `msg`: the spare one of its kind if any, else a new one. */
static PyObject *view_get(ManagerObject *self, int kind, const void *msg) {
  ViewObject *v = (ViewObject *) self->spare[kind];
  if (v != NULL) {
    self->spare[kind] = NULL; /* reuse: no allocation per message */
  } else {
    PyTypeObject *tp = view_type(self->state, kind);
    v = (ViewObject *) tp->tp_alloc(tp, 0);
    if (v == NULL) return NULL;
  }
  v->msg = msg;
  return (PyObject *) v;
}

/* The handler returned: `data`, a view of `kind`, becomes invalid before
 * anything else can run, and is kept for reuse if nobody else holds it. */
static PyObject *view_done(ManagerObject *self, int kind, PyObject *data) {
  ((ViewObject *) data)->msg = NULL;
  if (Py_REFCNT(data) == 1 && self->spare[kind] == NULL) {
    self->spare[kind] = data;
    return NULL;
  }
  return data;
}

/* The `data` argument of an event (SPEC 1.3); *kind tells the caller that
 * it is a view to invalidate after the handler returns. */
static PyObject *event_data(ManagerObject *self, int ev, void *ev_data, int *kind) {
  switch (ev) {
    case CM_EV_ERROR: {
      const char *msg = ev_data != NULL ? ev_data : "";
      return PyUnicode_DecodeUTF8(msg, (Py_ssize_t) strlen(msg), "ignore");
    }
    case CM_EV_HTTP_HDRS:
    case CM_EV_HTTP_MSG:
    case CM_EV_WS_OPEN:
      if (ev_data == NULL) break;
      *kind = VIEW_HTTP;
      return view_get(self, VIEW_HTTP, ev_data);
    case CM_EV_WS_MSG:
      if (ev_data == NULL) break;
      *kind = VIEW_WS;
      return view_get(self, VIEW_WS, ev_data);
    case CM_EV_WAKEUP: {
      const struct cm_str *s = ev_data;
      return PyBytes_FromStringAndSize(s != NULL && s->len > 0 ? s->buf : "",
                                       s != NULL ? (Py_ssize_t) s->len : 0);
    }
    case CM_EV_MQTT_CMD:
    case CM_EV_MQTT_MSG:
      if (ev_data == NULL) break;
      *kind = VIEW_MQTT;
      return view_get(self, VIEW_MQTT, ev_data);
    case CM_EV_MQTT_OPEN:
      if (ev_data != NULL) return PyLong_FromLong(*(const int *) ev_data);
      break;
    case CM_EV_SNTP_TIME:
      if (ev_data != NULL) return PyLong_FromLongLong(*(const int64_t *) ev_data);
      break;
    default: break;
  }
  return Py_NewRef(Py_None);
}

/* ---- what c->userdata holds -------------------------------------------- */

/* Most connections never need their Python object, or need it late: an
 * accepted keep-alive connection whose handler answers only MG_EV_HTTP_MSG
 * has no use for it before its first request, an idle one none at all.  So
 * the ConnectionObject (80 bytes with its GC head) is made when an
 * event for its handler, listen()/connect() or Manager.connections first
 * needs it.  Until then a handler to remember costs a tagged pointer.
 * c->userdata of a connection of ours (not c->is_internal) holds one of:
 *
 *   NULL         no object yet; its handler will be None (the default's)
 *   handler | 1  no object yet; a strong reference to the handler it will
 *                get (see adopt())
 *   object       its ConnectionObject: a strong reference
 *   GONE         Python never sees it again: after CM_EV_CLOSE, or when
 *                its object could not be made (the connection is closed)
 *
 * Bit 0 is free in a PyObject pointer (alignment), so it marks a handler;
 * GONE is a tagged NULL, which no handler is. */
#define HANDLER_TAG ((uintptr_t) 1)
#define GONE ((void *) HANDLER_TAG)
_Static_assert(_Alignof(PyObject) > 1, "bit 0 of a PyObject pointer is free for HANDLER_TAG");

static inline bool has_object(const void *u) { return u != NULL && !((uintptr_t) u & HANDLER_TAG); }

/* What c->userdata holds a strong reference to (object or handler), or NULL. */
static inline PyObject *held(const void *u) { return (PyObject *) ((uintptr_t) u & ~HANDLER_TAG); }

/* The handler of `c` (borrowed), NULL for none: the default's. */
static inline PyObject *conn_handler(const struct cm_conn *c) {
  const void *u = c->userdata;
  return has_object(u) ? ((const ConnectionObject *) u)->handler : held(u);
}

/* ---- which events reach Python ------------------------------------------ */

/* Events a handler provably ignores are never delivered: a handler that is
 * one `if ev == ...: elif ...:` chain runs nothing but integer comparisons
 * for any other event (cymongoose/_interest.py reads its source to find
 * out), so the call would be pure cost.  MG_EV_POLL above all: the core
 * walks only connections whose handler wants it, so idle connections cost
 * an iteration nothing.  Anything not provably so gets every event. */
static uint64_t analyse(cm_state *st, PyObject *handler) {
  PyObject *event_mask = ext_lazy_attr(&st->event_mask, "cymongoose._interest", "event_mask");
  PyObject *r = event_mask != NULL ? PyObject_CallOneArg(event_mask, handler) : NULL;
  long long v = r != NULL ? PyLong_AsLongLong(r) : -1;
  Py_XDECREF(r);
  PyErr_Clear(); /* no analysis is no reason to fail: deliver everything */
  return v < 0 ? UINT64_MAX : (uint64_t) v;
}

static uint64_t handler_events(ManagerObject *self, PyObject *handler) {
  if (handler == NULL) return 0;
  if (handler == self->handler) return self->default_events;
  /* A small cache: accepted children share their listener's handler, and
   * only they stay without object (their mask is looked up per event) past
   * the listen()/connect() call that made them.  A few entries keep two or
   * three listeners with handlers of their own from evicting each other. */
  for (unsigned i = 0; i < SEEN_HANDLERS; i++) {
    if (self->seen[i] == handler) return self->seen_events[i];
  }
  unsigned i = self->seen_next;
  self->seen_next = (i + 1) % SEEN_HANDLERS;
  uint64_t events = analyse(self->state, handler);
  self->seen_events[i] = events;
  Py_XSETREF(self->seen[i], Py_NewRef(handler));
  return events;
}

void manager_update_events(ManagerObject *self, ConnectionObject *conn) {
  conn->events = handler_events(self, conn->handler != NULL ? conn->handler : self->handler);
  if (conn->c != NULL) cm_conn_set_poll(conn->c, (conn->events >> CM_EV_POLL) & 1);
}

/* Whether the handler of `c` may react to `ev` (see analyse()). */
static bool wants(ManagerObject *self, const struct cm_conn *c, int ev) {
  const void *u = c->userdata;
  uint64_t events;
  if (u == GONE) return false;
  if (has_object(u)) {
    events = ((const ConnectionObject *) u)->events;
  } else {
    PyObject *handler = held(u) != NULL ? held(u) : self->handler;
    if (handler == NULL) return false; /* nobody listens */
    events = handler_events(self, handler);
  }
  return ev < 0 || ev >= 64 || ((events >> ev) & 1);
}

/* Call the handler of `conn` for one event it wants.  The handler is looked
 * up now (SPEC 2.1.1): the connection's own, else the manager's default. */
static void dispatch(ManagerObject *self, ConnectionObject *conn, int ev, void *ev_data) {
  PyObject *handler = conn->handler != NULL ? conn->handler : self->handler;
  if (handler == NULL) return; /* nobody listens: the event is dropped */
  int kind = VIEW_NONE;
  PyObject *data = event_data(self, ev, ev_data, &kind);
  PyObject *evobj = data != NULL ? PyLong_FromLong(ev) : NULL;
  PyObject *result = NULL;
  self->depth++;
  if (evobj != NULL) {
    /* set_handler() inside the call may drop conn's reference to the
     * handler, so the call holds its own.  Slot 0 is free for the
     * vectorcall protocol to prepend `self` of a bound method. */
    PyObject *argv[4] = {NULL, (PyObject *) conn, evobj, data};
    Py_INCREF(handler);
    result = PyObject_Vectorcall(handler, argv + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(handler);
  }
  if (kind != VIEW_NONE && data != NULL) data = view_done(self, kind, data);
  /* SPEC Decision 14: a request whose handler failed before answering
   * gets a 500 and the connection closes, rather than a client waiting. */
  if (result == NULL && ev == CM_EV_HTTP_MSG && conn->c != NULL) cm_http_internal_error(conn->c);
  if (result == NULL) manager_handle_exception(self, true);
  self->depth--;
  Py_XDECREF(result);
  Py_XDECREF(evobj);
  Py_XDECREF(data);
}

/* CM_EV_OPEN: remember the handler `c` gets (SPEC Decision 6): for an
 * accepted child its listener's (inheritable) handler as it is now, else
 * the handler given to the listen()/connect() call that is running.  The
 * object is made when first needed, by this very event if its handler
 * wants CM_EV_OPEN. */
static void adopt(ManagerObject *self, struct cm_conn *c, const struct cm_conn *listener) {
  PyObject *handler = listener != NULL ? conn_handler(listener) : self->call_handler;
  c->userdata = handler != NULL ? (void *) ((uintptr_t) Py_NewRef(handler) | HANDLER_TAG) : NULL;
  uint64_t events = handler_events(self, handler != NULL ? handler : self->handler);
  cm_conn_set_poll(c, (events >> CM_EV_POLL) & 1);
}

/* The one ConnectionObject of `c` (borrowed), made now if need be.  NULL
 * with MemoryError set; NULL alone if Python must not see `c` (GONE, or
 * the manager or the module is being torn down). */
static ConnectionObject *conn_object(ManagerObject *self, struct cm_conn *c) {
  void *u = c->userdata;
  if (has_object(u)) return u;
  if (u == GONE || self->silent || self->state->ConnectionType == NULL) return NULL;
  ConnectionObject *conn = connection_new(self->state, c);
  if (conn == NULL) return NULL;
  if (c->userdata != u) { /* the allocation ran Python code (a GC pass) that made one */
    Py_DECREF(conn);
    return has_object(c->userdata) ? c->userdata : NULL;
  }
  conn->handler = held(u); /* the reference c->userdata held moves to the object */
  c->userdata = conn;
  manager_update_events(self, conn);
  return conn;
}

/* Drop what c->userdata holds and leave GONE; an object is detached (it
 * stays, closed, for whoever else holds it).  GONE first: the DECREF may
 * run Python code, which must not find what it drops. */
static void release(struct cm_conn *c) {
  void *u = c->userdata;
  c->userdata = GONE;
  if (has_object(u)) connection_detach(u);
  Py_XDECREF(held(u));
}

/* No memory for its object: a connection nobody can see must not live on. */
static void abandon(struct cm_conn *c) {
  release(c);
  cm_close(c);
}

/* Give one wanted event to the handler of `c`, making its object first. */
static void deliver(ManagerObject *self, struct cm_conn *c, int ev, void *ev_data) {
  ConnectionObject *conn = conn_object(self, c);
  if (conn == NULL) {
    if (PyErr_Occurred()) {
      manager_handle_exception(self, true);
      abandon(c);
    }
    return;
  }
  Py_INCREF(conn); /* the call holds its own, whatever the handler does */
  dispatch(self, conn, ev, ev_data);
  Py_DECREF(conn);
}

/* The user handler of every connection of ours. */
static void on_event(struct cm_conn *c, int ev, void *ev_data) {
  ManagerObject *self = c->fn_data;
  if (c->is_internal) return;
  if (ev == CM_EV_OPEN) adopt(self, c, ev_data);
  /* After a BaseException, Python sees nothing more until poll() raises it;
   * the bookkeeping below still runs. */
  bool shown = !self->silent && self->pending_exc == NULL;
  if (shown && wants(self, c, ev)) deliver(self, c, ev, ev_data);
  /* SPEC Decision 4: without a protocol, each READ shows only new bytes. */
  if (ev == CM_EV_READ && c->pfn == NULL && shown) cm_iobuf_consume(&c->recv, c->recv.len);
  /* The core frees `c` next.  It fires CM_EV_CLOSE for every connection it
   * frees, from cm_mgr_free() too (silent or not), so this is where every
   * reference held through c->userdata is dropped. */
  if (ev == CM_EV_CLOSE) release(c);
}

/* ---- poll, close -------------------------------------------------------- */

static int do_poll(ManagerObject *self, int ms) {
  if (busy(self)) {
    PyErr_SetString(PyExc_RuntimeError, NOT_REENTRANT);
    return -1;
  }
  if (check_open(self) < 0) return -1;
  /* Set first: dropping a cancelled Timer may run arbitrary __del__ code,
   * which must not start a nested poll. */
  self->polling = true;
  timers_apply_cancels(self);
  cm_mgr_poll(&self->mgr, ms);
  self->polling = false;
  if (PyErr_CheckSignals() < 0) {
    if (self->pending_exc != NULL) { /* never lost: chained as the context */
      PyObject *exc = take_exception();
      PyException_SetContext(exc, self->pending_exc); /* steals */
      self->pending_exc = NULL;
      restore_exception(exc);
    }
    return -1;
  }
  return manager_raise_pending(self);
}

static PyObject *manager_poll(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"timeout_ms", NULL};
  int ms = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:poll", kwlist, &ms)) return NULL;
  if (do_poll(self, ms) < 0) return NULL;
  Py_RETURN_NONE;
}

/* Free the core: timers first, then every connection (their handlers see
 * MG_EV_POLL and MG_EV_CLOSE unless `silent`).  Each CM_EV_CLOSE detaches
 * the connection's object and drops what c->userdata held (release()), so
 * once the core is freed no object is left pointing into it. */
static void teardown(ManagerObject *self) {
  self->closed = true; /* from here listen/connect/timer_add refuse */
  timers_stop_all(self);
  mqtt_broker_teardown(self); /* saves, and closes its clients without their wills */
  cm_mgr_free(&self->mgr);
}

static int do_close(ManagerObject *self) {
  if (busy(self)) {
    PyErr_SetString(PyExc_RuntimeError, CLOSE_WHILE_POLLING);
    return -1;
  }
  if (self->closed) return 0;
  teardown(self);
  return manager_raise_pending(self);
}

static PyObject *manager_close(ManagerObject *self, PyObject *unused) {
  (void) unused;
  if (do_close(self) < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *manager_enter(ManagerObject *self, PyObject *unused) {
  (void) unused;
  return Py_NewRef(self);
}

static PyObject *manager_exit(ManagerObject *self, PyObject *args) {
  (void) args;
  if (do_close(self) < 0) return NULL;
  Py_RETURN_FALSE; /* exceptions of the with-block propagate */
}

/* ---- listen, connect ---------------------------------------------------- */

/* SPEC 2.5.1: HTTP parsing when url[:8].lower() starts with one of these. */
static bool is_http_url(const char *url, size_t len) {
  static const char *const schemes[] = {"http://", "https://", "ws://", "wss://"};
  for (size_t i = 0; i < CM_ARRAY_SIZE(schemes); i++) {
    size_t n = strlen(schemes[i]);
    if (len >= n && cm_str_casecmp(cm_str_n(url, n), cm_str_n(schemes[i], n))) return true;
  }
  return false;
}

typedef struct cm_conn *(*open_fn)(struct cm_mgr *, const char *, cm_handler_fn, void *);

/* The limits of an HTTP listener (cm_http_limits), as listen() takes them:
 * keyword-only, None for the default, 0 for no limit. */
#define LIMIT_LIST(X)                      \
  X(max_head, size_t, SIZE_MAX)            \
  X(max_headers, size_t, SIZE_MAX)         \
  X(max_uri, size_t, SIZE_MAX)             \
  X(max_body, uint64_t, UINT64_MAX)        \
  X(head_timeout_ms, uint32_t, UINT32_MAX) \
  X(idle_timeout_ms, uint32_t, UINT32_MAX) \
  X(max_header_line, size_t, SIZE_MAX)
#define NLIMITS 7

/* One limit argument into *out; `*given` tells whether it was not None. */
static int limit_arg(PyObject *obj, const char *name, unsigned long long max, unsigned long long *out,
                     bool *given) {
  if (obj == NULL || obj == Py_None) return 0;
  PyObject *index = PyNumber_Index(obj);
  if (index == NULL) return -1;
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
  bool ok = overflow == 0 && v >= 0 && (unsigned long long) v <= max;
  Py_DECREF(index);
  if (v == -1 && PyErr_Occurred()) return -1;
  /* Every limit fits in 63 bits in practice; a larger one is refused too. */
  if (!ok) {
    PyErr_Format(PyExc_ValueError, "%s must be None or an int from 0 to %llu", name,
                 max < (unsigned long long) LLONG_MAX ? max : (unsigned long long) LLONG_MAX);
    return -1;
  }
  *out = (unsigned long long) v;
  *given = true;
  return 0;
}

/* Fill `lim` from the listen() arguments; `*given` if any was not None. */
static int limits_from_args(PyObject *const *objs, struct cm_http_limits *lim, bool *given) {
  unsigned long long v;
  int i = 0;
  cm_http_limits_init(lim);
#define CM_X(name, type, max)                                                            \
  v = lim->name;                                                                         \
  if (limit_arg(objs[i++], #name, (unsigned long long) (max), &v, given) < 0) return -1; \
  lim->name = (type) v;
  LIMIT_LIST(CM_X)
#undef CM_X
  return 0;
}

/* The opener of listen() and connect(). */
struct plain_open {
  open_fn fn;
  const struct cm_http_limits *lim; /* listen() with limits, else NULL */
};

static struct cm_conn *plain_open(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                  void *arg) {
  const struct plain_open *po = arg;
  if (po->lim != NULL) return cm_http_listen_opts(mgr, url, po->lim, fn, fn_data);
  return po->fn(mgr, url, fn, fn_data);
}

/* The text of `url` for a new connection of an open manager, or NULL with an
 * exception set (a closed manager, a NUL in the URL).  The UTF-8 is cached in
 * the str object, so the callers below may each ask for it. */
static const char *url_text(ManagerObject *self, PyObject *url, Py_ssize_t *len) {
  if (check_open(self) < 0) return NULL;
  const char *u = PyUnicode_AsUTF8AndSize(url, len);
  if (u != NULL && strlen(u) != (size_t) *len) {
    PyErr_SetString(PyExc_ValueError, "embedded null character in url");
    return NULL;
  }
  return u;
}

PyObject *manager_open(ManagerObject *self, PyObject *url, PyObject *handler, ext_open_fn open, void *arg,
                       const char *fail_fmt) {
  Py_ssize_t len;
  const char *u = url_text(self, url, &len);
  if (u == NULL) return NULL;
  PyObject *outer = self->call_handler; /* a handler may nest listen/connect */
  self->call_handler = handler != Py_None ? handler : NULL;
  struct cm_conn *c = open(&self->mgr, u, on_event, self, arg);
  self->call_handler = outer;
  if (manager_raise_pending(self) < 0) return NULL; /* a handler's BaseException */
  ConnectionObject *conn = c != NULL ? conn_object(self, c) : NULL;
  if (conn == NULL && c != NULL && PyErr_Occurred()) {
    abandon(c);
    return NULL;
  }
  if (conn == NULL) return PyErr_Format(PyExc_RuntimeError, fail_fmt, url);
  return Py_NewRef(conn);
}

/* listen() and connect(): events fired inside the core call (OPEN, and
 * RESOLVE/CONNECT for literal addresses) reach `handler` through
 * self->call_handler (SPEC Decision 6).  `lim` (listen only) carries the
 * HTTP limits given, or is NULL. */
static PyObject *open_conn(ManagerObject *self, PyObject *url, PyObject *handler, PyObject *http,
                           const struct cm_http_limits *lim, bool listen) {
  Py_ssize_t len;
  const char *u = url_text(self, url, &len);
  if (u == NULL) return NULL;
  int use_http = http == Py_None ? is_http_url(u, (size_t) len) : PyObject_IsTrue(http);
  if (use_http < 0) return NULL;
  if (lim != NULL && !use_http) {
    PyErr_SetString(PyExc_ValueError, "HTTP limits apply only to an HTTP listener");
    return NULL;
  }
  open_fn fn = listen ? (use_http ? cm_http_listen : cm_listen) : (use_http ? cm_http_connect : cm_connect);
  struct plain_open po = {fn, lim};
  return manager_open(self, url, handler, plain_open, &po,
                      listen ? "Failed to listen on '%U'" : "Failed to connect to '%U'");
}

static PyObject *manager_listen(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url",
                           "handler",
                           "http",
                           "max_head",
                           "max_headers",
                           "max_uri",
                           "max_body",
                           "head_timeout_ms",
                           "idle_timeout_ms",
                           "max_header_line",
                           "reuse_port",
                           "ws_max_message",
                           "ws_deflate",
                           NULL};
  PyObject *url, *handler = Py_None, *http = Py_None, *objs[NLIMITS] = {NULL};
  PyObject *ws_max = NULL, *ws_deflate = NULL;
  struct cm_http_limits lim;
  struct cm_ws_opts ws;
  bool given = false, ws_given = false;
  int reuse_port = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O$OOOOOOOOpOO:listen", kwlist, &url, &handler, &http,
                                   &objs[0], &objs[1], &objs[2], &objs[3], &objs[4], &objs[5], &objs[6],
                                   &reuse_port, &ws_max, &ws_deflate))
    return NULL;
  if (limits_from_args(objs, &lim, &given) < 0) return NULL;
  if (ext_ws_opts(ws_max, ws_deflate, &ws, &ws_given) < 0) return NULL;
  if (ws_given && !given) {
    /* Only an HTTP listener upgrades: say so in WebSocket terms. */
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(url, &n);
    int use_http = u == NULL ? -1 : http == Py_None ? is_http_url(u, (size_t) n) : PyObject_IsTrue(http);
    if (use_http < 0) return NULL;
    if (!use_http) {
      PyErr_SetString(PyExc_ValueError, "ws_max_message and ws_deflate apply only to an HTTP listener");
      return NULL;
    }
  }
  self->mgr.listen_flags = reuse_port ? CM_LISTEN_REUSEPORT : 0u;
  PyObject *conn = open_conn(self, url, handler, http, given ? &lim : NULL, true);
  self->mgr.listen_flags = 0; /* the option is this call's only */
  /* The WebSocket settings of the connections this listener will upgrade. */
  struct cm_conn *c = conn != NULL ? ((ConnectionObject *) conn)->c : NULL;
  if (ws_given && c != NULL && !cm_ws_listen_opts(c, &ws)) {
    Py_DECREF(conn);
    return PyErr_NoMemory();
  }
  return conn;
}

static PyObject *manager_connect(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url", "handler", "http", NULL};
  PyObject *url, *handler = Py_None, *http = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O$O:connect", kwlist, &url, &handler, &http)) return NULL;
  return open_conn(self, url, handler, http, NULL, false);
}

/* ---- stats --------------------------------------------------------------- */

/* Manager.stats(): the core's counters (cm_mgr_stats) as a dict. */
static PyObject *manager_stats(ManagerObject *self, PyObject *Py_UNUSED(ignored)) {
  struct cm_mgr_stats st;
  if (check_open(self) < 0) return NULL;
  cm_mgr_stats(&self->mgr, &st);
  const uint64_t *r = st.http_responses;
  PyObject *resp = Py_BuildValue("{sKsKsKsKsKsK}", "1xx", r[1], "2xx", r[2], "3xx", r[3], "4xx", r[4], "5xx",
                                 r[5], "other", r[0]);
  if (resp == NULL) return NULL;
  return Py_BuildValue("{sKsKsKsKsKsNsKsKsKsKsK}", "connections_open", st.conns_open, "connections_accepted",
                       st.conns_accepted, "bytes_in", st.bytes_in, "bytes_out", st.bytes_out, "http_requests",
                       st.http_requests, "http_responses", resp, "errors", st.errors, "wakeups", st.wakeups,
                       "iterations", st.iterations, "loop_lag_ms", st.lag_ms, "loop_lag_max_ms",
                       st.lag_max_ms);
}

/* Manager.fileno() and Manager.timeout(): what another event loop needs to
 * drive this one with poll(0) (the ASGI server runs it inside asyncio). */
static PyObject *manager_fileno(ManagerObject *self, PyObject *Py_UNUSED(ignored)) {
  if (check_open(self) < 0) return NULL;
  return PyLong_FromLong(cm_mgr_fd(&self->mgr));
}

static PyObject *manager_timeout(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"ms", NULL};
  int ms = -1;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:timeout", kwlist, &ms)) return NULL;
  if (check_open(self) < 0) return NULL;
  return PyLong_FromLong(cm_mgr_timeout(&self->mgr, ms));
}

/* ---- wakeup, timers ----------------------------------------------------- */

static PyObject *manager_wakeup(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"connection_id", "data", NULL};
  PyObject *idobj, *data = NULL;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:wakeup", kwlist, &idobj, &data)) return NULL;
  if (data != NULL && !PyBytes_Check(data)) {
    return PyErr_Format(PyExc_TypeError, "wakeup() data must be bytes, not %.100s", Py_TYPE(data)->tp_name);
  }
  PyObject *index = PyNumber_Index(idobj);
  if (index == NULL) return NULL;
  unsigned long long id = PyLong_AsUnsignedLongLong(index); /* negative: OverflowError */
  Py_DECREF(index);
  if (id == (unsigned long long) -1 && PyErr_Occurred()) return NULL;
  if (check_open(self) < 0) return NULL;
  if (self->wakeup == NULL || id == 0) Py_RETURN_FALSE;
  const char *buf = data != NULL ? PyBytes_AS_STRING(data) : "";
  size_t len = data != NULL ? (size_t) PyBytes_GET_SIZE(data) : 0;
  struct cm_wakeup *w = self->wakeup;      /* ours until dealloc; `data` is immutable */
  PyThreadState *ts = PyEval_SaveThread(); /* Py_BEGIN_ALLOW_THREADS */
  bool ok = cm_wakeup_send(w, id, buf, len);
  PyEval_RestoreThread(ts);
  if (!ok && check_open(self) < 0) return NULL; /* closed meanwhile */
  if (!ok) return PyErr_NoMemory();
  Py_RETURN_TRUE;
}

static PyObject *manager_timer_add(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"milliseconds", "callback", "repeat", "run_now", NULL};
  PyObject *msobj, *callback;
  int repeat = 0, run_now = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$pp:timer_add", kwlist, &msobj, &callback, &repeat,
                                   &run_now))
    return NULL;
  if (check_open(self) < 0) return NULL;
  PyObject *index = PyNumber_Index(msobj);
  if (index == NULL) return NULL;
  unsigned long long ms = PyLong_AsUnsignedLongLong(index);
  Py_DECREF(index);
  if (ms == (unsigned long long) -1 && PyErr_Occurred()) return NULL;
  if (!PyCallable_Check(callback)) {
    PyErr_SetString(PyExc_TypeError, "timer callback must be callable");
    return NULL;
  }
  unsigned flags = (repeat ? CM_TIMER_REPEAT : 0u) | (run_now ? CM_TIMER_RUN_NOW : 0u);
  return timer_start(self, ms, callback, flags);
}

/* ---- run ---------------------------------------------------------------- */

/* The SIGINT/SIGTERM handler that run() installs: ask the loop to stop. */
static PyObject *manager_on_signal(PyObject *self, PyObject *args) {
  (void) args;
  ((ManagerObject *) self)->stop_run = true;
  Py_RETURN_NONE;
}

static PyMethodDef on_signal_def = {"_cymongoose_stop", manager_on_signal, METH_VARARGS, NULL};

/* signal.signal(signum, handler); a handler that Python did not install
 * (getsignal() gave None) is restored as SIG_DFL. */
static int set_signal(PyObject *signal, int signum, PyObject *handler) {
  PyObject *h = handler != Py_None ? Py_NewRef(handler) : PyObject_GetAttrString(signal, "SIG_DFL");
  PyObject *r = h != NULL ? PyObject_CallMethod(signal, "signal", "iO", signum, h) : NULL;
  Py_XDECREF(h);
  Py_XDECREF(r);
  return r != NULL ? 0 : -1;
}

/* Poll until a signal handler asks to stop; 0, or -1 with an exception. */
static int run_loop(ManagerObject *self, PyObject *signal, int ms) {
  PyObject *stop = PyCFunction_New(&on_signal_def, (PyObject *) self);
  if (stop == NULL) return -1;
  int rc = set_signal(signal, SIGINT, stop);
  if (rc == 0) rc = set_signal(signal, SIGTERM, stop);
  Py_DECREF(stop);
  self->stop_run = false;
  while (rc == 0 && !self->stop_run) rc = do_poll(self, ms);
  return rc;
}

/* Take the exception now set, if any, as in a `finally` block: it replaces
 * *exc and gets the previous one as its __context__. */
static void absorb(PyObject **exc) {
  PyObject *later = take_exception();
  if (later == NULL) return;
  if (*exc != NULL) PyException_SetContext(later, *exc); /* steals */
  *exc = later;
}

static PyObject *manager_run(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"poll_ms", NULL};
  int ms = 100;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|i:run", kwlist, &ms)) return NULL;
  if (check_open(self) < 0) return NULL;
  PyObject *exc = NULL, *old_int = NULL, *old_term = NULL;
  PyObject *signal = PyImport_ImportModule("signal");
  if (signal != NULL) old_int = PyObject_CallMethod(signal, "getsignal", "i", SIGINT);
  if (old_int != NULL) old_term = PyObject_CallMethod(signal, "getsignal", "i", SIGTERM);
  if (old_term != NULL) run_loop(self, signal, ms);
  absorb(&exc);
  /* Restore the very same handler objects, on error too; then close. */
  if (old_int != NULL) set_signal(signal, SIGINT, old_int);
  absorb(&exc);
  if (old_term != NULL) set_signal(signal, SIGTERM, old_term);
  absorb(&exc);
  do_close(self);
  absorb(&exc);
  Py_XDECREF(signal);
  Py_XDECREF(old_int);
  Py_XDECREF(old_term);
  if (exc != NULL) {
    restore_exception(exc);
    return NULL;
  }
  Py_RETURN_NONE;
}

/* ---- properties --------------------------------------------------------- */

/* The connections Python sees: ours, not the manager's plumbing. */
static bool listed(const struct cm_conn *c) { return !c->is_internal && c->userdata != GONE; }

/* Creation order: the core list is newest first (cm__conn_new prepends),
 * so the list built here is reversed.  Objects not made yet are made. */
static PyObject *manager_get_connections(ManagerObject *self, void *closure) {
  (void) closure;
  PyObject *list = PyList_New(0);
  /* Making objects may run Python code (analyse(), a finalizer on a GC
   * pass); as busy() it cannot poll() or close(), which would free
   * connections under the walk. */
  self->depth++;
  for (struct cm_conn *c = self->mgr.conns; c != NULL && list != NULL; c = c->next) {
    ConnectionObject *conn = listed(c) ? conn_object(self, c) : NULL;
    bool failed = conn != NULL ? PyList_Append(list, (PyObject *) conn) < 0 : PyErr_Occurred() != NULL;
    if (failed) Py_CLEAR(list); /* MemoryError; a connection left without object keeps working */
  }
  self->depth--;
  PyObject *tuple = list != NULL && PyList_Reverse(list) == 0 ? PyList_AsTuple(list) : NULL;
  Py_XDECREF(list);
  return tuple;
}

static PyObject *manager_get_wakeup_id(ManagerObject *self, void *closure) {
  (void) closure;
  return PyLong_FromUnsignedLongLong(self->wakeup_id);
}

/* ---- life --------------------------------------------------------------- */

static int enable_wakeup(ManagerObject *self) {
  self->wakeup_id = cm_wakeup_init(&self->mgr);
  /* Our own reference: wakeup() from other threads stays safe until
   * dealloc, even after close() (the channel then reports "closed"). */
  self->wakeup = self->wakeup_id != 0 ? cm_wakeup_hold(&self->mgr) : NULL;
  if (self->wakeup != NULL) return 0;
  self->wakeup_id = 0;
  PyErr_SetString(PyExc_RuntimeError, "Failed to initialize wakeup support");
  return -1;
}

static PyObject *manager_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"handler", "enable_wakeup", "error_handler", NULL};
  PyObject *handler = Py_None, *error_handler = Py_None;
  int wakeup = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OpO:Manager", kwlist, &handler, &wakeup, &error_handler))
    return NULL;
  ManagerObject *self = (ManagerObject *) tp->tp_alloc(tp, 0);
  if (self == NULL) return NULL;
  self->closed = true; /* until the core is up, so dealloc frees nothing */
  self->state = get_state_by_type(tp);
  if (self->state == NULL) goto fail;
  int rc = cm_mgr_init(&self->mgr);
  if (rc < 0) {
    PyErr_Format(PyExc_RuntimeError, "Failed to initialize manager: %s", cm_strerror(rc));
    goto fail;
  }
  self->closed = false;
  self->mgr.userdata = self;
  self->mgr.sleep_fn = on_sleep;
  self->mgr.sleep_arg = self;
  self->handler = handler != Py_None ? Py_NewRef(handler) : NULL;
  self->default_events = self->handler != NULL ? analyse(self->state, self->handler) : 0;
  self->error_handler = error_handler != Py_None ? Py_NewRef(error_handler) : NULL;
  if (wakeup && enable_wakeup(self) < 0) goto fail;
  return (PyObject *) self;
fail:
  Py_DECREF(self);
  return NULL;
}

/* Everything happens in tp_new; __init__ accepts the same arguments so a
 * subclass may call super().__init__(handler, ...) (object.__init__ would
 * reject them). */
static int manager_tp_init(PyObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"handler", "enable_wakeup", "error_handler", NULL};
  PyObject *handler = NULL, *error_handler = NULL;
  int wakeup = 0;
  (void) self;
  return PyArg_ParseTupleAndKeywords(args, kwargs, "|OpO:Manager", kwlist, &handler, &wakeup, &error_handler)
             ? 0
             : -1;
}

static int manager_traverse(ManagerObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap type: instances own a reference */
  Py_VISIT(self->handler);
  Py_VISIT(self->error_handler);
  Py_VISIT(self->pending_exc);
  for (unsigned i = 0; i < SEEN_HANDLERS; i++) Py_VISIT(self->seen[i]);
  for (int k = 0; k < VIEW_KINDS; k++) Py_VISIT(self->spare[k]);
  for (TimerObject *t = self->timers; t != NULL; t = t->next) Py_VISIT((PyObject *) t);
  for (TimerObject *t = self->cancels; t != NULL; t = t->next_cancel) Py_VISIT((PyObject *) t);
  if (mqtt_broker_traverse(self, visit, arg) != 0) return 1;
  /* What c->userdata owns (objects, handlers): a handler closure that refers
   * to the manager makes a cycle through them.  Empty after teardown. */
  for (struct cm_conn *c = self->mgr.conns; c != NULL; c = c->next) {
    if (!c->is_internal) Py_VISIT(held(c->userdata));
  }
  return 0;
}

/* Also the GC's way to break cycles: the core goes first (silently, SPEC
 * Decision 10); its teardown detaches the objects and drops them. */
static int manager_clear(ManagerObject *self) {
  if (!self->closed) {
    self->silent = true;
    teardown(self);
  }
  Py_CLEAR(self->handler);
  Py_CLEAR(self->error_handler);
  Py_CLEAR(self->pending_exc);
  for (unsigned i = 0; i < SEEN_HANDLERS; i++) Py_CLEAR(self->seen[i]);
  for (int k = 0; k < VIEW_KINDS; k++) Py_CLEAR(self->spare[k]);
  return 0;
}

static void manager_dealloc(ManagerObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  PyObject_GC_UnTrack(self);
  if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *) self);
  PyObject *exc = take_exception(); /* dealloc must not clobber it */
  manager_clear(self);
  cm_wakeup_release(self->wakeup);
  if (exc != NULL) restore_exception(exc);
  tp->tp_free(self);
  Py_DECREF(tp);
}

/* The methods of the loop itself; each protocol adds its own table (see
 * manager_tables in module.c). */
PyMethodDef manager_methods[] = {
    {"poll", KW_METHOD(manager_poll),
     "poll($self, /, timeout_ms=0)\n--\n\nRun one event-loop iteration (negative timeout: block)."},
    {"listen", KW_METHOD(manager_listen),
     "listen($self, /, url, handler=None, *, http=None, max_head=None, max_headers=None, max_uri=None, "
     "max_body=None, head_timeout_ms=None, idle_timeout_ms=None, max_header_line=None, reuse_port=False, "
     "ws_max_message=None, ws_deflate=True)\n--\n\n"
     "Listen on url; returns the listener.  HTTP listeners take limits (None: the default, 0: none):\n"
     "max_head, max_headers and max_header_line (431), max_uri (414), max_body (413),\n"
     "head_timeout_ms (408, close), idle_timeout_ms (close).  reuse_port=True sets SO_REUSEPORT:\n"
     "processes share the port.  ws_max_message (1009) and ws_deflate apply to WebSocket upgrades."},
    {"fileno", (PyCFunction) manager_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\nThe loop's epoll descriptor: readable when poll(0) has I/O to do."},
    {"timeout", KW_METHOD(manager_timeout),
     "timeout($self, /, ms=-1)\n--\n\nHow long the loop may sleep now, at most ms: 0 when work is\n"
     "pending, else until the next timer; -1 for no limit."},
    {"stats", (PyCFunction) manager_stats, METH_NOARGS,
     "stats($self, /)\n--\n\nCounters of the loop: connections, bytes, HTTP requests and responses\n"
     "by status class, errors, wakeups, iterations, and the loop lag in ms (last, max of recent)."},
    {"connect", KW_METHOD(manager_connect),
     "connect($self, /, url, handler=None, *, http=None)\n--\n\n"
     "Start an outbound connection; returns it at once.  Host names resolve off the loop;\n"
     "MG_EV_CONNECT follows, or MG_EV_ERROR (refused, unknown name).  The http:// scheme\n"
     "(or http=True) parses responses into MG_EV_HTTP_MSG; nothing is sent for you."},
    {"wakeup", KW_METHOD(manager_wakeup),
     "wakeup($self, /, connection_id, data=b'')\n--\n\n"
     "Deliver MG_EV_WAKEUP(data) to a connection; safe from any thread."},
    {"timer_add", KW_METHOD(manager_timer_add),
     "timer_add($self, /, milliseconds, callback, *, repeat=False, run_now=False)\n--\n\n"
     "Call callback() on the poll thread after `milliseconds` (every `milliseconds`\n"
     "with repeat=True; the first call in the next iteration with run_now=True).  The\n"
     "manager keeps the timer alive until it is cancelled, done, or the manager closes."},
    {"run", KW_METHOD(manager_run),
     "run($self, /, poll_ms=100)\n--\n\nPoll until SIGINT or SIGTERM, then close()."},
    {"close", (PyCFunction) manager_close, METH_NOARGS,
     "close($self, /)\n--\n\nClose every connection and free the manager; idempotent."},
    {"__enter__", (PyCFunction) manager_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction) manager_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef manager_getset[] = {
    {"connections", (getter) manager_get_connections, NULL,
     "Tuple of the live connections, in creation order.", NULL},
    {"wakeup_id", (getter) manager_get_wakeup_id, NULL, "Id of the wakeup connection (0 if disabled).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef manager_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(ManagerObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot manager_slots[] = {
    {Py_tp_doc,
     "Manager(handler=None, enable_wakeup=False, error_handler=None)\n--\n\n"
     "An event loop and its connections; handler(conn, ev, data) sees every event."},
    {Py_tp_new, manager_tp_new},
    {Py_tp_init, manager_tp_init},
    {Py_tp_dealloc, manager_dealloc},
    {Py_tp_traverse, manager_traverse},
    {Py_tp_clear, manager_clear},
    {Py_tp_methods, NULL}, /* module.c: manager_methods joined with the protocols' */
    {Py_tp_getset, manager_getset},
    {Py_tp_members, manager_members},
    {0, NULL},
};

PyType_Spec Manager_spec = {
    .name = "cymongoose._mongoose.Manager",
    .basicsize = sizeof(ManagerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = manager_slots,
};
