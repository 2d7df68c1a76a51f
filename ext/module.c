/* module.c: the cymongoose._mongoose module: multi-phase init (PEP 489),
 * heap types from PyType_Spec, module state (PEP 573), constants and
 * __all__.  The MG_EV_* constants come from CM_EVENT_LIST, never retyped. */
#include "ext.h"
#include "funcs.h"

struct int_const {
  const char *name;
  long value;
};

/* Constants that have no core list yet (WebSocket and MQTT arrive later);
 * the numbers are the Python contract (SPEC 1.2). */
#define OTHER_CONSTS(X)             \
  X(WEBSOCKET_OP_TEXT, 1)           \
  X(WEBSOCKET_OP_BINARY, 2)         \
  X(WEBSOCKET_OP_PING, 9)           \
  X(WEBSOCKET_OP_PONG, 10)          \
  X(MQTT_PROP_TYPE_BYTE, 0)         \
  X(MQTT_PROP_TYPE_STRING, 1)       \
  X(MQTT_PROP_TYPE_STRING_PAIR, 2)  \
  X(MQTT_PROP_TYPE_BINARY_DATA, 3)  \
  X(MQTT_PROP_TYPE_VARIABLE_INT, 4) \
  X(MQTT_PROP_TYPE_INT, 5)          \
  X(MQTT_PROP_TYPE_SHORT, 6)        \
  X(MG_LL_NONE, CM_LL_NONE)         \
  X(MG_LL_ERROR, CM_LL_ERROR)       \
  X(MG_LL_INFO, CM_LL_INFO)         \
  X(MG_LL_DEBUG, CM_LL_DEBUG)       \
  X(MG_LL_VERBOSE, CM_LL_VERBOSE)

static const struct int_const other_consts[] = {
#define CM_X(name, num) {#name, num},
    OTHER_CONSTS(CM_X)
#undef CM_X
};

/* Every event but the reserved mDNS pair, which Python never sees. */
static const struct int_const event_consts[] = {
#define CM_X(name, num) {"MG_EV_" #name, num},
    CM_EVENT_LIST(CM_X)
#undef CM_X
};

static bool exported_event(long ev) { return ev != CM_EV_MDNS_REQ && ev != CM_EV_MDNS_RESP; }

/* Add `name` to the module and to __all__ (`value` is stolen). */
static int add_public(PyObject *m, PyObject *all, const char *name, PyObject *value) {
  if (value == NULL) return -1;
  int rc = PyModule_AddObjectRef(m, name, value);
  Py_DECREF(value);
  if (rc < 0) return -1;
  PyObject *s = PyUnicode_FromString(name);
  if (s == NULL) return -1;
  rc = PyList_Append(all, s);
  Py_DECREF(s);
  return rc;
}

static int add_consts(PyObject *m, PyObject *all) {
  for (size_t i = 0; i < CM_ARRAY_SIZE(event_consts); i++) {
    if (!exported_event(event_consts[i].value)) continue;
    if (add_public(m, all, event_consts[i].name, PyLong_FromLong(event_consts[i].value)) < 0) return -1;
  }
  for (size_t i = 0; i < CM_ARRAY_SIZE(other_consts); i++) {
    if (add_public(m, all, other_consts[i].name, PyLong_FromLong(other_consts[i].value)) < 0) return -1;
  }
  return 0;
}

/* Create one heap type bound to the module (so PyType_GetModuleByDef finds
 * the state) and store it in *slot (the state's strong reference). */
static int add_type(PyObject *m, PyObject *all, PyType_Spec *spec, PyTypeObject **slot) {
  PyObject *tp = PyType_FromModuleAndSpec(m, spec, NULL);
  if (tp == NULL) return -1;
  *slot = (PyTypeObject *) Py_NewRef(tp);
  const char *dot = strrchr(spec->name, '.');
  return add_public(m, all, dot != NULL ? dot + 1 : spec->name, tp);
}

/* Each type's methods: its own file's table, then one per protocol file
 * (ext.h).  A protocol adds its table here, and nowhere else. */
static PyMethodDef *const connection_tables[] = {connection_methods, http_connection_methods,
                                                 http_response_connection_methods};
static PyMethodDef *const manager_tables[] = {manager_methods};

/* One NULL-terminated table joining `n` tables, made once per process
 * (`*joined` keeps it: the type keeps pointers into it for its lifetime,
 * and a second instance of the module shares it).  A name defined twice
 * is a bug of ours, reported at import rather than shadowed silently. */
static PyMethodDef *join_methods(PyMethodDef *const *tables, size_t n, PyMethodDef **joined) {
  if (*joined != NULL) return *joined;
  size_t total = 0;
  for (size_t t = 0; t < n; t++) {
    for (const PyMethodDef *d = tables[t]; d->ml_name != NULL; d++) total++;
  }
  PyMethodDef *out = PyMem_RawCalloc(total + 1, sizeof(*out));
  if (out == NULL) {
    PyErr_NoMemory();
    return NULL;
  }
  size_t k = 0;
  for (size_t t = 0; t < n; t++) {
    for (const PyMethodDef *d = tables[t]; d->ml_name != NULL; d++) {
      for (size_t i = 0; i < k; i++) {
        if (strcmp(out[i].ml_name, d->ml_name) == 0) {
          PyMem_RawFree(out);
          PyErr_Format(PyExc_SystemError, "method %s defined twice", d->ml_name);
          return NULL;
        }
      }
      out[k++] = *d;
    }
  }
  return *joined = out;
}

/* Point the Py_tp_methods slot of `spec` at the joined tables. */
static int set_methods(PyType_Spec *spec, PyMethodDef *const *tables, size_t n, PyMethodDef **joined) {
  PyMethodDef *methods = join_methods(tables, n, joined);
  if (methods == NULL) return -1;
  for (PyType_Slot *s = spec->slots; s->slot != 0; s++) {
    if (s->slot == Py_tp_methods) s->pfunc = methods;
  }
  return 0;
}

static int set_all_methods(void) {
  static PyMethodDef *conn_joined, *mgr_joined;
  if (set_methods(&Connection_spec, connection_tables, CM_ARRAY_SIZE(connection_tables), &conn_joined) < 0)
    return -1;
  return set_methods(&Manager_spec, manager_tables, CM_ARRAY_SIZE(manager_tables), &mgr_joined);
}

/* The functions themselves come from m_methods; list them in __all__. */
static int list_functions(PyObject *all) {
  for (PyMethodDef *def = util_methods; def->ml_name != NULL; def++) {
    PyObject *s = PyUnicode_FromString(def->ml_name);
    if (s == NULL || PyList_Append(all, s) < 0) {
      Py_XDECREF(s);
      return -1;
    }
    Py_DECREF(s);
  }
  return 0;
}

static int module_exec(PyObject *m) {
  cm_state *st = get_state(m);
  PyObject *all = PyList_New(0);
  if (all == NULL) return -1;
  int rc = -1;
  if (set_all_methods() < 0) goto done;
  if (add_type(m, all, &Connection_spec, &st->ConnectionType) < 0) goto done;
  if (add_type(m, all, &HttpMessage_spec, &st->HttpMessageType) < 0) goto done;
  if (add_type(m, all, &Manager_spec, &st->ManagerType) < 0) goto done;
  if (add_type(m, all, &Timer_spec, &st->TimerType) < 0) goto done;
  if (add_consts(m, all) < 0 || list_functions(all) < 0) goto done;
  if (funcs_exec(m, all) < 0 || rpc_exec(m, all) < 0) goto done;
  if (PyList_Sort(all) < 0) goto done;
  rc = PyModule_AddObjectRef(m, "__all__", all);
done:
  Py_DECREF(all);
  return rc;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
  cm_state *st = get_state(m);
  Py_VISIT(st->ManagerType);
  Py_VISIT(st->ConnectionType);
  Py_VISIT(st->HttpMessageType);
  Py_VISIT(st->TimerType);
  Py_VISIT(st->print_exc);
  Py_VISIT(st->json_dumps);
  Py_VISIT(st->event_mask);
  return 0;
}

static int module_clear(PyObject *m) {
  cm_state *st = get_state(m);
  Py_CLEAR(st->ManagerType);
  Py_CLEAR(st->ConnectionType);
  Py_CLEAR(st->HttpMessageType);
  Py_CLEAR(st->TimerType);
  Py_CLEAR(st->print_exc);
  Py_CLEAR(st->json_dumps);
  Py_CLEAR(st->event_mask);
  return 0;
}

static void module_free(void *m) { module_clear((PyObject *) m); }

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    /* Nothing of ours is shared between interpreters, but the core keeps a
     * process-wide log level, so we do not claim a per-interpreter GIL.
     * Py_mod_gil is left unset: we rely on the GIL (see ext.h). */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
    {0, NULL},
};

PyModuleDef cm_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cymongoose._mongoose",
    .m_doc = "The C engine of cymongoose: event manager, connections, HTTP, timers.",
    .m_size = sizeof(cm_state),
    .m_methods = util_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__mongoose(void) { return PyModuleDef_Init(&cm_module_def); }
