/* ext.h: declarations shared by the files of the CPython binding
 * (cymongoose._mongoose): module state, object structs, and the few
 * functions one file offers another.
 *
 * Threading: everything here runs with the GIL held.  The GIL is dropped
 * only while the core sleeps in epoll_wait (mgr.sleep_fn) and around the
 * payload copy of Manager.wakeup(); so the GIL is also what serialises the
 * two thread-safe entry points, Manager.wakeup() and Timer.cancel(), with
 * the poll thread. */
#ifndef CM_EXT_H
#define CM_EXT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "cm.h"

#if PY_VERSION_HEX < 0x030B0000 /* public from 3.11; 3.10 has the same function */
#define PyType_GetModuleByDef _PyType_GetModuleByDef
#endif
#if PY_VERSION_HEX < 0x030C0000 /* the member flags got Py_ names in 3.12 */
#include <structmember.h>
#define Py_T_PYSSIZET T_PYSSIZET
#define Py_READONLY READONLY
#endif

/* Module state (PEP 573): every global of the module lives here. */
typedef struct {
  PyTypeObject *ManagerType;
  PyTypeObject *ConnectionType;
  PyTypeObject *HttpMessageType;
  PyTypeObject *TimerType;
  PyTypeObject *TlsOptsType;
  PyTypeObject *WsMessageType;
  PyTypeObject *MqttMessageType;
  PyObject *print_exc;  /* traceback.print_exc, imported on first use */
  PyObject *json_dumps; /* json.dumps, imported on first use */
  PyObject *event_mask; /* cymongoose._interest.event_mask, imported on first use */
} cm_state;

extern PyModuleDef cm_module_def;

static inline cm_state *get_state(PyObject *module) { return (cm_state *) PyModule_GetState(module); }

/* State for slots and methods that only have an instance (tp_new, ...). */
static inline cm_state *get_state_by_type(PyTypeObject *tp) {
  PyObject *module = PyType_GetModuleByDef(tp, &cm_module_def);
  return module != NULL ? get_state(module) : NULL;
}

typedef struct TimerObject TimerObject;

/* The message views (HttpMessage; WsMessage and MqttMessage as they come)
 * are made and invalidated by one mechanism in manager.c: a view borrows the
 * core message of its event and is invalid (msg NULL) once the handler
 * returns; a view nobody kept is reused for the next event of its kind, so
 * a message costs no allocation.  Each kind has its type in cm_state (see
 * view_type() in manager.c). */
enum view_kind { VIEW_NONE, VIEW_HTTP, VIEW_WS, VIEW_MQTT, VIEW_KINDS };

/* Handlers other than the default whose event masks a manager remembers:
 * one per listener with a handler of its own is typical. */
#define SEEN_HANDLERS 4

/* Manager: owns a struct cm_mgr and, through it, every connection and what
 * c->userdata holds: its ConnectionObject, or its handler until the object
 * is needed (see manager.c). */
typedef struct {
  PyObject ob_base;                    /* PyObject_HEAD, spelled out for clang-format */
  struct cm_mgr mgr;                   /* the core manager (embedded) */
  cm_state *state;                     /* borrowed: our type holds the module */
  PyObject *handler;                   /* default handler or NULL (strong) */
  PyObject *error_handler;             /* error_handler or NULL (strong) */
  PyObject *call_handler;              /* borrowed: handler of the running listen()/connect() */
  PyObject *pending_exc;               /* BaseException to re-raise, or NULL (strong) */
  PyObject *seen[SEEN_HANDLERS];       /* handlers whose events were computed (strong) */
  uint64_t seen_events[SEEN_HANDLERS]; /* ... and their events (see handler_events) */
  unsigned seen_next;                  /* the slot to replace next */
  uint64_t default_events;             /* events of `handler` */
  PyObject *spare[VIEW_KINDS];         /* an invalid view of each kind, kept for reuse (strong) */
  TimerObject *timers;                 /* running timers; each link holds a reference */
  TimerObject *cancels;                /* Timer.cancel() queue; each link holds a reference */
  struct cm_wakeup *wakeup;            /* our reference to the wakeup channel, or NULL */
  uint64_t wakeup_id;                  /* id of the wakeup connection, 0 if disabled */
  PyThreadState *tstate;               /* saved while sleeping without the GIL */
  int depth;                           /* Python calls in progress (handlers, timers) */
  bool polling;                        /* inside poll() */
  bool closed;                         /* close() ran (or the core never started) */
  bool silent;                         /* tearing down from dealloc/GC: no Python */
  volatile bool stop_run;              /* run(): set by the signal handler */
  PyObject *weakreflist;               /* weak references to us */
  struct ext_broker *broker;           /* its MQTT broker, or NULL (mqtt_broker.c) */
} ManagerObject;

/* Connection: one object per core connection for its whole life, made when
 * first needed (manager.c). */
typedef struct {
  PyObject ob_base;      /* PyObject_HEAD */
  struct cm_conn *c;     /* the core connection; NULL once closed */
  cm_state *state;       /* borrowed: our type holds the module */
  PyObject *handler;     /* handler or NULL (strong); a listener's is inherited */
  uint64_t events;       /* bit e: the effective handler may react to event e */
  PyObject *userdata;    /* user object or NULL (strong) */
  PyObject *weakreflist; /* weak references to us */
  unsigned ws_close;     /* c->ws_close_code, kept when the core connection goes */
} ConnectionObject;

/* What every view starts with. */
typedef struct {
  PyObject ob_base; /* PyObject_HEAD */
  const void *msg;  /* borrowed from the event; NULL when invalid */
} ViewObject;

/* HttpMessage: a view of a struct cm_http_msg (the layout of ViewObject),
 * or a detached copy (HttpMessage.copy()) that owns the message and its
 * bytes and is never invalidated. */
typedef struct {
  PyObject ob_base;             /* PyObject_HEAD */
  const struct cm_http_msg *hm; /* borrowed from the event (NULL when invalid), or `own` */
  struct cm_http_msg *own;      /* a copy's message, its bytes after it (PyMem); NULL for a view */
} HttpMessageObject;
_Static_assert(offsetof(HttpMessageObject, hm) == offsetof(ViewObject, msg), "a view starts like ViewObject");

/* WsMessage: a view of a struct cm_ws_msg (ws.c). */
typedef struct {
  PyObject ob_base;           /* PyObject_HEAD */
  const struct cm_ws_msg *wm; /* borrowed from the event; NULL when invalid */
} WsMessageObject;
_Static_assert(offsetof(WsMessageObject, wm) == offsetof(ViewObject, msg), "a view starts like ViewObject");
/* MqttMessage: a view of a struct cm_mqtt_msg (mqtt.c). */
typedef struct {
  PyObject ob_base;             /* PyObject_HEAD */
  const struct cm_mqtt_msg *mm; /* borrowed from the event; NULL when invalid */
} MqttMessageObject;
_Static_assert(offsetof(MqttMessageObject, mm) == offsetof(ViewObject, msg), "a view starts like ViewObject");

/* Timer: embeds the core timer, so the object must outlive its scheduling:
 * while it runs, the manager's `timers` list holds a reference to it. */
struct TimerObject {
  PyObject ob_base;         /* PyObject_HEAD */
  struct cm_timer t;        /* the core timer (embedded) */
  PyObject *callback;       /* strong */
  ManagerObject *mgr;       /* borrowed; set only while on mgr->timers */
  TimerObject *prev, *next; /* mgr->timers links */
  TimerObject *next_cancel; /* mgr->cancels link */
  atomic_bool cancelled;    /* cancel() was called: never call back again */
  PyObject *weakreflist;    /* weak references to us */
};

/* TlsOpts (tls.c): the options of Connection.tls_init(), as bytes (SPEC 1.7). */
typedef struct {
  PyObject ob_base;       /* PyObject_HEAD */
  PyObject *pem[4];       /* ca, cert, key, name: bytes (strong), b"" when unset */
  bool skip_verification; /* verify nothing */
} TlsOptsObject;

/* A str (as UTF-8) or bytes-like argument, borrowed from the caller's
 * object for the duration of the call. */
typedef struct {
  const char *buf;
  Py_ssize_t len;
  Py_buffer view; /* used when view.obj != NULL */
} ext_data;

/* A growing byte buffer (header blocks and the like); typical contents fit
 * in the inline part, so most uses allocate nothing. */
struct ext_buf {
  char *p;              /* inline_buf or PyMem memory */
  size_t len, cap;      /* bytes used / available at p */
  char inline_buf[512]; /* the first 512 bytes */
};

/* A PyMethodDef's function and flags for f(self, args, kwargs). */
#define KW_METHOD(f) (PyCFunction)(void (*)(void))(f), METH_VARARGS | METH_KEYWORDS
/* A hot method taking vectorcall arguments (see ext_args). */
#define FAST_METHOD(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

/* module.c */
extern PyType_Spec Manager_spec, Connection_spec, HttpMessage_spec, Timer_spec;
extern PyType_Spec TlsOpts_spec; /* tls.c */

/* Method tables (NULL-terminated).  Each protocol file adds its methods to
 * Connection and Manager in a table of its own, and module.c joins the
 * tables (connection_tables, manager_tables) into the types, so no file
 * has to know every protocol. */
extern PyMethodDef connection_methods[];      /* connection.c: every connection */
extern PyMethodDef http_connection_methods[]; /* http.c */
extern PyMethodDef tls_connection_methods[];  /* tls.c */
extern PyMethodDef ws_connection_methods[];   /* ws.c */
extern PyMethodDef ws_manager_methods[];      /* ws.c */
extern PyMethodDef mqtt_connection_methods[]; /* mqtt.c */
extern PyMethodDef mqtt_manager_methods[];    /* mqtt.c */
extern PyMethodDef manager_methods[];         /* manager.c */
extern PyMethodDef sntp_connection_methods[]; /* sntp.c */
extern PyMethodDef sntp_manager_methods[];    /* sntp.c */

/* http_response.c: Connection.http_response(), the WSGI/ASGI writer */
extern PyMethodDef http_response_connection_methods[];

/* mqtt_broker.c: the built-in broker's methods. */
extern PyMethodDef mqtt_broker_connection_methods[];
extern PyMethodDef mqtt_broker_manager_methods[];

/* util.c */
extern PyMethodDef util_methods[];
/* Fill `d` from a str or bytes-like object; TypeError naming `what` else. */
int ext_data_get(PyObject *obj, ext_data *d, const char *what);
void ext_data_release(ext_data *d);
void ext_buf_init(struct ext_buf *b);
void ext_buf_free(struct ext_buf *b);
/* Make room for `n` more bytes; -1 with MemoryError. */
int ext_buf_reserve(struct ext_buf *b, size_t n);
/* Append `n` bytes; -1 with MemoryError. */
int ext_buf_add(struct ext_buf *b, const char *s, size_t n);
/* True if the `n` bytes hold a CR, LF or NUL (header injection). */
bool ext_has_crlf_nul(const char *s, Py_ssize_t n);
/* An optional str argument as UTF-8 without NULs: *out is NULL (and *len
 * 0) when `obj` is NULL or "".  TypeError naming `what` if not a str,
 * ValueError for an embedded NUL.  `len` may be NULL. */
int ext_opt_text(PyObject *obj, const char *what, const char **out, Py_ssize_t *len);
/* An optional path argument (str, bytes or os.PathLike, as open() takes):
 * *keep gets the encoded bytes object (the caller releases it), *out its
 * text; both NULL when absent or empty. */
int ext_opt_path(PyObject *obj, PyObject **keep, const char **out);
/* A Python int as a C int (OverflowError outside its range). */
int ext_as_int(PyObject *obj, int *out);
/* `module.name`, imported on first use and kept in `*slot` (a module-state
 * field: it owns the reference).  Borrowed result; NULL with an exception
 * set if the import fails (retried next time). */
PyObject *ext_lazy_attr(PyObject **slot, const char *module, const char *name);
/* Parse vectorcall (METH_FASTCALL | METH_KEYWORDS) arguments against
 * `names`, all positional-or-keyword, the first `required` of them
 * mandatory: out[i] becomes a borrowed reference, or NULL when absent.
 * TypeError (worded like CPython's) on too many, unknown, repeated or
 * missing arguments.  Cheaper than PyArg_ParseTupleAndKeywords, which
 * builds a tuple and a dict on every call of a hot method (reply). */
int ext_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
             const char *const names[], int nnames, int required, PyObject **out);

/* manager.c */
/* Deal with the exception of a failed handler or timer call made for `m`
 * (see SPEC 2.1.4): an Exception goes to error_handler (if `use_handler`)
 * or is printed; a BaseException is kept for poll() to re-raise. */
void manager_handle_exception(ManagerObject *m, bool use_handler);
/* Raise m->pending_exc if no poll() or handler call will do it later.
 * Returns -1 with the exception set, else 0. */
int manager_raise_pending(ManagerObject *m);
/* Recompute which events reach `conn`'s effective handler (after it
 * changed), and whether the core should deliver MG_EV_POLL to it. */
void manager_update_events(ManagerObject *m, ConnectionObject *conn);
/* Open a connection for a protocol file's Manager method (ws_connect, ...):
 * `open(mgr, url, fn, fn_data, arg)` runs with the events fired inside it
 * reaching `handler` (SPEC Decision 6).  Returns the new Connection, or
 * NULL with RuntimeError(fail_fmt % url) when `open` returns NULL (the
 * format takes the url as %U), or with the exception that a handler's
 * BaseException or a failed allocation left. */
typedef struct cm_conn *(*ext_open_fn)(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                       void *arg);
PyObject *manager_open(ManagerObject *m, PyObject *url, PyObject *handler, ext_open_fn open, void *arg,
                       const char *fail_fmt);

/* connection.c */
/* A new object for `c`, without handler yet (manager.c moves in the one
 * c->userdata held). */
ConnectionObject *connection_new(cm_state *st, struct cm_conn *c);
/* The core connection is gone: the object keeps only safe defaults. */
void connection_detach(ConnectionObject *conn);
/* The core connection of `self`, or NULL with
 * RuntimeError("Connection has been closed"). */
struct cm_conn *connection_live(ConnectionObject *self);
/* Hand the bytes of `data` (str as UTF-8, or bytes-like) to `put`
 * (cm_send, cm_http_chunk, ...): None, or NULL with RuntimeError(`failed`)
 * if it refuses them; a closing connection takes and drops them. */
PyObject *connection_put(ConnectionObject *self, PyObject *data,
                         bool (*put)(struct cm_conn *, const void *, size_t), const char *failed);
/* Around a core call that may fire events synchronously (cm_error, a
 * resolved literal, an upgrade): our handlers then run inside it.  Hold
 * the manager so a handler dropping the last reference cannot free it
 * under the core; release re-raises a handler's BaseException when no
 * poll() will (-1 with it set, else 0). */
ManagerObject *ext_hold_manager(struct cm_conn *c);
int ext_release_manager(ManagerObject *m);

/* http.c */
/* Append "name: value\r\n" for each item of the dict `headers`, checked as
 * SPEC 1.5 says (CR, LF or NUL -> ValueError with its texts; TypeError if
 * not a dict).  With `skip_ct`, a Content-Type item is left out; *any_ct
 * tells whether one was given.  -1 with an exception set. */
int ext_headers_add(struct ext_buf *b, PyObject *headers, bool skip_ct, bool *any_ct);

/* message.c: HttpMessage_spec (views are made by manager.c). */

/* ws.c: WsMessage_spec, and the WebSocket settings of listen() and
 * ws_connect() (ws_max_message: None or a positive int; ws_deflate: truth
 * value, NULL for absent) into *o; *given if either differs from the
 * default.  -1 with an exception set. */
extern PyType_Spec WsMessage_spec;
int ext_ws_opts(PyObject *max_message, PyObject *deflate, struct cm_ws_opts *o, bool *given);
/* mqtt.c: MqttMessage_spec (views are made by manager.c). */
extern PyType_Spec MqttMessage_spec;

/* mqtt_broker.c */
/* Free the manager's broker (saving it), before the core goes. */
void mqtt_broker_teardown(ManagerObject *m);
/* Visit what the broker holds (its hooks), for the manager's tp_traverse. */
int mqtt_broker_traverse(ManagerObject *m, visitproc visit, void *arg);

/* timer.c */
PyObject *timer_start(ManagerObject *m, uint64_t ms, PyObject *callback, unsigned flags);
/* Apply queued Timer.cancel() calls (start of poll()). */
void timers_apply_cancels(ManagerObject *m);
/* Stop every timer of `m` and drop the manager's references to them. */
void timers_stop_all(ManagerObject *m);

#endif /* CM_EXT_H */
