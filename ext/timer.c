/* timer.c: Timer (SPEC 1.8, 2.9), a Python callback on the core's timer
 * heap.
 *
 * The TimerObject embeds its struct cm_timer, so it must live as long as
 * the core may touch it: while a timer runs, the manager's `timers` list
 * holds a reference (a Timer the user drops still fires).  The reference
 * goes when a one-shot timer has fired, when a cancel is applied, and when
 * the manager closes.
 *
 * cancel() may come from any thread while the poll thread sits in the
 * core's timer phase, so it never touches the heap: it sets an atomic flag
 * (the callback is skipped from that moment) and queues the timer on
 * mgr->cancels; poll() applies the queue before its next iteration. */
#include "ext.h"

/* Put `t` on m->timers; the list takes a reference. */
static void link_timer(ManagerObject *m, TimerObject *t) {
  t->mgr = m;
  t->prev = NULL;
  t->next = m->timers;
  if (m->timers != NULL) m->timers->prev = t;
  m->timers = (TimerObject *) Py_NewRef(t);
}

/* Take `t` off its manager's list and drop that reference (which may free
 * `t`).  Harmless if it is not on the list. */
static void unlink_timer(TimerObject *t) {
  ManagerObject *m = t->mgr;
  if (m == NULL) return;
  TimerObject **link = t->prev != NULL ? &t->prev->next : &m->timers;
  *link = t->next;
  if (t->next != NULL) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  t->mgr = NULL;
  Py_DECREF(t);
}

/* The core's callback, in the timer phase of cm_mgr_poll (GIL held). */
static void timer_fire(struct cm_timer *ct, void *arg) {
  TimerObject *t = arg;
  ManagerObject *m = t->mgr;
  if (m == NULL) return;
  Py_INCREF(t); /* unlink_timer below may drop the list's reference */
  if (!atomic_load(&t->cancelled) && t->callback != NULL && !m->silent && m->pending_exc == NULL) {
    m->depth++;
    PyObject *r = PyObject_CallNoArgs(t->callback);
    if (r == NULL) manager_handle_exception(m, false); /* SPEC 2.1.4: printed, not error_handler */
    Py_XDECREF(r);
    m->depth--;
  }
  /* A one-shot timer has left the heap already: the manager forgets it. */
  if (!(ct->flags & CM_TIMER_REPEAT)) unlink_timer(t);
  Py_DECREF(t);
}

PyObject *timer_start(ManagerObject *m, uint64_t ms, PyObject *callback, unsigned flags) {
  PyTypeObject *tp = m->state->TimerType;
  TimerObject *t = (TimerObject *) tp->tp_alloc(tp, 0); /* zeroed: not running */
  if (t == NULL) return NULL;
  t->callback = Py_NewRef(callback);
  atomic_init(&t->cancelled, false);
  if (!cm_timer_start(&m->mgr, &t->t, ms, flags, timer_fire, t)) {
    Py_DECREF(t);
    PyErr_SetString(PyExc_RuntimeError, "Failed to add timer");
    return NULL;
  }
  link_timer(m, t);
  return (PyObject *) t;
}

void timers_apply_cancels(ManagerObject *m) {
  TimerObject *t;
  /* Re-read the head each time: a __del__ run by a DECREF may queue more. */
  while ((t = m->cancels) != NULL) {
    m->cancels = t->next_cancel;
    t->next_cancel = NULL;
    if (t->mgr == m) { /* still scheduled (a one-shot may have fired since) */
      cm_timer_stop(&m->mgr, &t->t);
      unlink_timer(t);
    }
    Py_DECREF(t); /* the queue's reference */
  }
}

void timers_stop_all(ManagerObject *m) {
  while (m->timers != NULL) {
    TimerObject *t = m->timers;
    cm_timer_stop(&m->mgr, &t->t);
    unlink_timer(t);
  }
  timers_apply_cancels(m); /* only drops the queue's references now */
}

static PyObject *timer_cancel(TimerObject *self, PyObject *unused) {
  (void) unused;
  if (atomic_exchange(&self->cancelled, true)) Py_RETURN_NONE; /* idempotent */
  ManagerObject *m = self->mgr;
  if (m == NULL) Py_RETURN_NONE; /* fired (one-shot) or manager closed */
  /* The GIL orders this push with the poll thread, which reads the queue
   * only while holding it. */
  self->next_cancel = m->cancels;
  m->cancels = (TimerObject *) Py_NewRef(self);
  Py_RETURN_NONE;
}

static PyObject *timer_get_active(TimerObject *self, void *closure) {
  (void) closure;
  return PyBool_FromLong(self->mgr != NULL && !atomic_load(&self->cancelled));
}

static PyObject *timer_repr(TimerObject *self) {
  bool active = self->mgr != NULL && !atomic_load(&self->cancelled);
  return PyUnicode_FromFormat(
      "<Timer period=%llums repeat=%s active=%s>", (unsigned long long) self->t.period_ms,
      (self->t.flags & CM_TIMER_REPEAT) ? "True" : "False", active ? "True" : "False");
}

static int timer_traverse(TimerObject *self, visitproc visit, void *arg) {
  Py_VISIT(Py_TYPE(self)); /* heap type: instances own a reference */
  Py_VISIT(self->callback);
  return 0;
}

static int timer_clear(TimerObject *self) {
  Py_CLEAR(self->callback);
  return 0;
}

static void timer_dealloc(TimerObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  /* Not on the core heap: while it is, mgr->timers keeps us alive. */
  PyObject_GC_UnTrack(self);
  if (self->weakreflist != NULL) PyObject_ClearWeakRefs((PyObject *) self);
  timer_clear(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyMethodDef timer_methods[] = {
    {"cancel", (PyCFunction) timer_cancel, METH_NOARGS,
     "cancel($self, /)\n--\n\nStop the timer; safe from any thread, idempotent."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef timer_getset[] = {
    {"active", (getter) timer_get_active, NULL,
     "False after cancel(), after a one-shot fired, or after Manager.close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef timer_members[] = {
    {"__weaklistoffset__", Py_T_PYSSIZET, offsetof(TimerObject, weakreflist), Py_READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot timer_slots[] = {
    {Py_tp_doc, "A timer of a Manager, returned by Manager.timer_add()."},
    {Py_tp_dealloc, timer_dealloc},
    {Py_tp_traverse, timer_traverse},
    {Py_tp_clear, timer_clear},
    {Py_tp_repr, timer_repr},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_members, timer_members},
    {0, NULL},
};

PyType_Spec Timer_spec = {
    .name = "cymongoose._mongoose.Timer",
    .basicsize = sizeof(TimerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timer_slots,
};
