/* mqtt.c: MQTT in the binding (SPEC 1.4, 1.5, 1.6, 2.12): MqttMessage,
 * the mqtt_* methods of Connection, Manager.mqtt_connect / mqtt_listen.
 * The protocol is the core's (cm/mqtt.h); this file converts arguments,
 * MQTT 5 properties above all, both ways. */
#include "ext.h"

static PyObject *text(struct cm_str s) {
  return PyUnicode_DecodeUTF8(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len, "surrogateescape");
}

/* MQTT strings may not hold U+0000 (§1.5.4): ValueError naming `what`. */
static int no_nul(struct cm_str s, const char *what) {
  if (s.len == 0 || memchr(s.buf, 0, s.len) == NULL) return 0;
  PyErr_Format(PyExc_ValueError, "embedded null character in %s", what);
  return -1;
}

/* ---- MqttMessage --------------------------------------------------------- */

/* The first entry of a SUBSCRIBE or UNSUBSCRIBE: what `topic` and `qos`
 * show for those, so a raw listener learns what its client wants without
 * walking the list (the original's mqtt_server.py reads them so). */
static bool first_sub(const struct cm_mqtt_msg *m, struct cm_mqtt_sub *s) {
  return cm_mqtt_next_sub(m, 0, s) != 0;
}

static void mqttmsg_dealloc(MqttMessageObject *self) {
  PyTypeObject *tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

static PyObject *mqttmsg_get_topic(MqttMessageObject *self, void *closure) {
  (void) closure;
  struct cm_mqtt_sub s;
  if (self->mm == NULL) return PyUnicode_FromStringAndSize("", 0);
  if (first_sub(self->mm, &s)) return text(s.topic);
  return text(self->mm->topic);
}

static PyObject *mqttmsg_get_data(MqttMessageObject *self, void *closure) {
  (void) closure;
  if (self->mm == NULL) return PyBytes_FromStringAndSize("", 0);
  struct cm_str d = self->mm->data;
  return PyBytes_FromStringAndSize(d.len > 0 ? d.buf : "", (Py_ssize_t) d.len);
}

static PyObject *mqttmsg_get_text(MqttMessageObject *self, void *closure) {
  (void) closure;
  if (self->mm == NULL) return PyUnicode_FromStringAndSize("", 0);
  return text(self->mm->data);
}

/* Integer fields; `closure` names which. */
enum { F_ID, F_CMD, F_QOS, F_ACK };

static PyObject *mqttmsg_get_int(MqttMessageObject *self, void *closure) {
  const struct cm_mqtt_msg *m = self->mm;
  struct cm_mqtt_sub s;
  long v = 0;
  if (m != NULL) {
    switch ((int) (intptr_t) closure) {
      case F_ID: v = m->id; break;
      case F_CMD: v = m->cmd; break;
      case F_QOS: v = m->cmd == CM_MQTT_SUBSCRIBE && first_sub(m, &s) ? s.qos : m->qos; break;
      default: v = m->ack; break;
    }
  }
  return PyLong_FromLong(v);
}

/* One property as SPEC 1.6 has it: {"id", "iv", "key", "val"}, key and
 * val as text (binary data with surrogateescape: every byte survives). */
static PyObject *prop_dict(const struct cm_mqtt_prop *p) {
  PyObject *id = PyLong_FromLong(p->id), *iv = PyLong_FromUnsignedLong(p->iv);
  PyObject *key = text(p->key), *val = text(p->val), *d = NULL;
  if (id != NULL && iv != NULL && key != NULL && val != NULL)
    d = Py_BuildValue("{sOsOsOsO}", "id", id, "iv", iv, "key", key, "val", val);
  Py_XDECREF(id);
  Py_XDECREF(iv);
  Py_XDECREF(key);
  Py_XDECREF(val);
  return d;
}

static PyObject *mqttmsg_properties(MqttMessageObject *self, PyObject *unused) {
  (void) unused;
  PyObject *list = PyList_New(0);
  if (list == NULL || self->mm == NULL) return list;
  struct cm_mqtt_prop p;
  for (size_t ofs = 0; (ofs = cm_mqtt_next_prop(self->mm->props, ofs, &p)) != 0;) {
    PyObject *d = prop_dict(&p);
    if (d == NULL || PyList_Append(list, d) < 0) {
      Py_XDECREF(d);
      Py_DECREF(list);
      return NULL;
    }
    Py_DECREF(d);
  }
  return list;
}

static int mqttmsg_bool(MqttMessageObject *self) { return self->mm != NULL; }

static PyGetSetDef mqttmsg_getset[] = {
    {"topic", (getter) mqttmsg_get_topic, NULL,
     "Topic of a PUBLISH (str); first topic filter of a SUBSCRIBE or UNSUBSCRIBE.", NULL},
    {"data", (getter) mqttmsg_get_data, NULL,
     "Payload of a PUBLISH (bytes); the encoded filter list of a SUBSCRIBE, codes of a SUBACK.", NULL},
    {"text", (getter) mqttmsg_get_text, NULL, "data as str (UTF-8, surrogateescape).", NULL},
    {"id", (getter) mqttmsg_get_int, NULL, "Packet identifier, 0 if the packet has none.", (void *) F_ID},
    {"cmd", (getter) mqttmsg_get_int, NULL, "MQTT command: 1 CONNECT, 2 CONNACK, 3 PUBLISH, ... 15 AUTH.",
     (void *) F_CMD},
    {"qos", (getter) mqttmsg_get_int, NULL, "QoS of a PUBLISH; requested QoS of a SUBSCRIBE's first filter.",
     (void *) F_QOS},
    {"ack", (getter) mqttmsg_get_int, NULL, "CONNACK return code; MQTT 5 reason code of acks and DISCONNECT.",
     (void *) F_ACK},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef mqttmsg_methods[] = {
    {"properties", (PyCFunction) mqttmsg_properties, METH_NOARGS,
     "properties($self, /)\n--\n\nMQTT 5 properties: a list of dicts with keys id, iv, key, val."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot mqttmsg_slots[] = {
    {Py_tp_doc, "A view of an MQTT packet, valid only while its event handler runs."},
    {Py_tp_dealloc, mqttmsg_dealloc},
    {Py_tp_getset, mqttmsg_getset},
    {Py_tp_methods, mqttmsg_methods},
    {Py_nb_bool, mqttmsg_bool},
    {0, NULL},
};

PyType_Spec MqttMessage_spec = {
    .name = "cymongoose._mongoose.MqttMessage",
    .basicsize = sizeof(MqttMessageObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = mqttmsg_slots,
};

/* ---- properties from Python ----------------------------------------------- */

/* An encoded property block, built from a list of dicts shaped like those
 * of MqttMessage.properties(): "id" (required), "iv" for the numeric
 * types, "val" (str or bytes) for strings and binary data, "key" for a
 * user property's name. */
struct props_block {
  char *buf; /* PyMem, or NULL when empty */
  size_t len;
};

/* d[name] into `out` (str or bytes-like), or leave it empty. */
static int prop_bytes(PyObject *d, const char *name, ext_data *keep, struct cm_str *out) {
  PyObject *v = PyDict_GetItemString(d, name); /* borrowed: the dict holds it */
  keep->view.obj = NULL;
  if (v == NULL || v == Py_None) return 0;
  if (ext_data_get(v, keep, name) < 0) return -1;
  *out = cm_str_n(keep->buf, (size_t) keep->len);
  return 0;
}

static int prop_from_dict(PyObject *d, struct cm_mqtt_prop *p, ext_data *key, ext_data *val) {
  memset(p, 0, sizeof(*p));
  key->view.obj = val->view.obj = NULL;
  if (!PyDict_Check(d)) {
    PyErr_Format(PyExc_TypeError, "an MQTT property must be a dict, not %.100s", Py_TYPE(d)->tp_name);
    return -1;
  }
  PyObject *id = PyDict_GetItemString(d, "id"), *iv = PyDict_GetItemString(d, "iv");
  if (id == NULL) {
    PyErr_SetString(PyExc_ValueError, "an MQTT property needs an 'id'");
    return -1;
  }
  long idv = PyLong_AsLong(id);
  unsigned long ivv = iv != NULL && iv != Py_None ? PyLong_AsUnsignedLong(iv) : 0;
  if (PyErr_Occurred()) return -1;
  if (idv < 1 || idv > 127 || ivv > UINT32_MAX) {
    PyErr_Format(PyExc_ValueError, "MQTT property id %ld or value %lu out of range", idv, ivv);
    return -1;
  }
  p->id = (uint8_t) idv, p->iv = (uint32_t) ivv;
  return prop_bytes(d, "key", key, &p->key) < 0 || prop_bytes(d, "val", val, &p->val) < 0 ? -1 : 0;
}

/* Encode `list` (None: empty) for packet type `cmd` (0: will); -1 with
 * ValueError for a property that is unknown or not allowed there. */
static int props_encode(PyObject *list, int cmd, struct props_block *out) {
  out->buf = NULL, out->len = 0;
  if (list == NULL || list == Py_None) return 0;
  PyObject *seq = PySequence_Fast(list, "MQTT properties must be a list of dicts");
  if (seq == NULL) return -1;
  Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), done = 0;
  struct cm_mqtt_prop *p = PyMem_Calloc((size_t) n + 1, sizeof(*p));
  ext_data *keep = PyMem_Calloc((size_t) n * 2 + 1, sizeof(*keep));
  int rc = -1;
  if (p == NULL || keep == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  for (; done < n; done++) {
    PyObject *d = PySequence_Fast_GET_ITEM(seq, done);
    if (prop_from_dict(d, &p[done], &keep[2 * done], &keep[2 * done + 1]) < 0) goto done;
  }
  long len = cm_mqtt_props_encode(p, (size_t) n, NULL, 0);
  if (len < 0) {
    PyErr_SetString(PyExc_ValueError, "invalid MQTT properties: unknown id, or a value over 65,535 bytes");
    goto done;
  }
  if ((out->buf = PyMem_Malloc((size_t) len + 1)) == NULL) {
    PyErr_NoMemory();
    goto done;
  }
  out->len = (size_t) cm_mqtt_props_encode(p, (size_t) n, out->buf, (size_t) len);
  /* Refused here with a reason, rather than by the peer with a close. */
  int e = cm_mqtt_props_check(cm_str_n(out->buf, out->len), cmd);
  if (e != 0) {
    PyErr_Format(PyExc_ValueError, "invalid MQTT properties: %s", cm_mqtt_strerror(e));
    goto done;
  }
  rc = 0;
done:
  for (Py_ssize_t i = 0; keep != NULL && i < 2 * n; i++) ext_data_release(&keep[i]); /* zeroed: no-op */
  PyMem_Free(keep);
  PyMem_Free(p);
  Py_DECREF(seq);
  if (rc < 0) {
    PyMem_Free(out->buf);
    out->buf = NULL, out->len = 0;
  }
  return rc;
}

/* Properties for `c`: none unless it speaks MQTT 5. */
static int conn_props(struct cm_conn *c, PyObject *list, int cmd, struct props_block *out) {
  if (props_encode(list, cmd, out) < 0) return -1;
  if (out->len > 0 && cm_mqtt_version(c) != CM_MQTT_V5) {
    PyMem_Free(out->buf);
    PyErr_SetString(PyExc_ValueError, "MQTT properties need a connection made with version=5");
    return -1;
  }
  return 0;
}

/* ---- Connection methods ----------------------------------------------------- */

static int qos_arg(int qos) {
  if (qos >= 0 && qos <= 2) return 0;
  PyErr_SetString(PyExc_ValueError, "qos must be 0, 1 or 2");
  return -1;
}

/* A sender's answer: a closing connection drops what it is given (as
 * send() does), anything else that refuses is an error. */
static int sent(struct cm_conn *c, bool ok, const char *what) {
  if (ok || c->is_closing) return 0;
  PyErr_Format(PyExc_RuntimeError, "%s failed", what);
  return -1;
}

/* The hot one: vectorcall arguments (ext_args), no tuple or dict per call. */
static PyObject *mqtt_pub(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames) {
  static const char *const names[] = {"topic", "message", "qos", "retain", "properties"};
  PyObject *a[5];
  const char *topic;
  Py_ssize_t tlen;
  int qos = 0, retain = 0;
  if (ext_args("mqtt_pub", args, nargs, kwnames, names, 5, 2, a) < 0) return NULL;
  if (!PyUnicode_Check(a[0])) {
    PyErr_Format(PyExc_TypeError, "topic must be str, not %.100s", Py_TYPE(a[0])->tp_name);
    return NULL;
  }
  if ((topic = PyUnicode_AsUTF8AndSize(a[0], &tlen)) == NULL) return NULL;
  if (a[2] != NULL && ext_as_int(a[2], &qos) < 0) return NULL;
  if (a[3] != NULL && (retain = PyObject_IsTrue(a[3])) < 0) return NULL;
  PyObject *message = a[1], *props = a[4];
  struct cm_conn *c = connection_live(self);
  if (c == NULL || qos_arg(qos) < 0 || no_nul(cm_str_n(topic, (size_t) tlen), "topic") < 0) return NULL;
  struct props_block pb;
  ext_data d;
  if (ext_data_get(message, &d, "message") < 0) return NULL;
  if (conn_props(c, props, CM_MQTT_PUBLISH, &pb) < 0) {
    ext_data_release(&d);
    return NULL;
  }
  uint16_t id = 0;
  bool ok = cm_mqtt_pub(c, cm_str_n(topic, (size_t) tlen), cm_str_n(d.buf, (size_t) d.len), qos, retain,
                        cm_str_n(pb.buf, pb.len), &id);
  ext_data_release(&d);
  PyMem_Free(pb.buf);
  if (sent(c, ok, "mqtt_pub") < 0) return NULL;
  return PyLong_FromLong(id);
}

/* mqtt_sub and mqtt_unsub. */
static PyObject *sub_unsub(ConnectionObject *self, PyObject *args, PyObject *kwargs, bool sub) {
  static char *sub_kw[] = {"topic", "qos", "properties", NULL}, *unsub_kw[] = {"topic", "properties", NULL};
  const char *topic;
  Py_ssize_t tlen;
  PyObject *props = NULL;
  int qos = 0;
  bool parsed =
      sub ? PyArg_ParseTupleAndKeywords(args, kwargs, "s#|i$O:mqtt_sub", sub_kw, &topic, &tlen, &qos, &props)
          : PyArg_ParseTupleAndKeywords(args, kwargs, "s#|$O:mqtt_unsub", unsub_kw, &topic, &tlen, &props);
  if (!parsed) return NULL;
  struct cm_conn *c = connection_live(self);
  struct props_block pb;
  if (c == NULL || qos_arg(qos) < 0 || no_nul(cm_str_n(topic, (size_t) tlen), "topic") < 0) return NULL;
  if (conn_props(c, props, sub ? CM_MQTT_SUBSCRIBE : CM_MQTT_UNSUBSCRIBE, &pb) < 0) return NULL;
  struct cm_str t = cm_str_n(topic, (size_t) tlen), pr = cm_str_n(pb.buf, pb.len);
  bool ok = sub ? cm_mqtt_sub(c, t, qos, pr, NULL) : cm_mqtt_unsub(c, t, pr, NULL);
  PyMem_Free(pb.buf);
  if (sent(c, ok, sub ? "mqtt_sub" : "mqtt_unsub") < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *mqtt_sub(ConnectionObject *self, PyObject *args, PyObject *kwargs) {
  return sub_unsub(self, args, kwargs, true);
}

static PyObject *mqtt_unsub(ConnectionObject *self, PyObject *args, PyObject *kwargs) {
  return sub_unsub(self, args, kwargs, false);
}

static PyObject *simple(ConnectionObject *self, bool (*fn)(struct cm_conn *), const char *what) {
  struct cm_conn *c = connection_live(self);
  if (c == NULL || sent(c, fn(c), what) < 0) return NULL;
  Py_RETURN_NONE;
}

static PyObject *mqtt_ping(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  return simple(self, cm_mqtt_ping, "mqtt_ping");
}

static PyObject *mqtt_pong(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  return simple(self, cm_mqtt_pong, "mqtt_pong");
}

static PyObject *mqtt_disconnect(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  return simple(self, cm_mqtt_disconnect, "mqtt_disconnect");
}

PyMethodDef mqtt_connection_methods[] = {
    {"mqtt_pub", FAST_METHOD(mqtt_pub),
     "mqtt_pub($self, /, topic, message, qos=0, retain=False, properties=None)\n--\n\n"
     "PUBLISH message to topic; returns the packet id (0 for QoS 0).  QoS 1 and 2 acknowledgements\n"
     "are exchanged for you.  properties: MQTT 5 only."},
    {"mqtt_sub", KW_METHOD(mqtt_sub),
     "mqtt_sub($self, /, topic, qos=0, *, properties=None)\n--\n\n"
     "SUBSCRIBE to one topic filter ('+' one level, '#' the rest) at QoS up to qos; the SUBACK\n"
     "arrives as MG_EV_MQTT_CMD (cmd 9)."},
    {"mqtt_unsub", KW_METHOD(mqtt_unsub),
     "mqtt_unsub($self, /, topic, *, properties=None)\n--\n\nUNSUBSCRIBE from one topic filter."},
    {"mqtt_ping", (PyCFunction) mqtt_ping, METH_NOARGS,
     "mqtt_ping($self, /)\n--\n\n"
     "Send PINGREQ.  No ping is sent for you: call it from a timer within the keepalive; the\n"
     "PINGRESP arrives as MG_EV_MQTT_CMD (cmd 13)."},
    {"mqtt_pong", (PyCFunction) mqtt_pong, METH_NOARGS,
     "mqtt_pong($self, /)\n--\n\nSend PINGRESP (a raw listener answering PINGREQ)."},
    {"mqtt_disconnect", (PyCFunction) mqtt_disconnect, METH_NOARGS,
     "mqtt_disconnect($self, /)\n--\n\nSend DISCONNECT (the connection stays open until the peer closes "
     "it)."},
    {NULL, NULL, 0, NULL},
};

/* ---- Manager methods ----------------------------------------------------- */

struct connect_args {
  struct cm_mqtt_opts opts;
};

static struct cm_conn *open_client(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                   void *arg) {
  return cm_mqtt_connect(mgr, url, &((struct connect_args *) arg)->opts, fn, fn_data);
}

static struct cm_conn *open_listener(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data,
                                     void *arg) {
  (void) arg;
  return cm_mqtt_listen(mgr, url, fn, fn_data);
}

/* The checks CONNECT needs, as ValueError rather than a failed connect. */
static int check_connect(const struct cm_mqtt_opts *o, int version, int keepalive) {
  const char *why = NULL;
  if (version != CM_MQTT_V31 && version != CM_MQTT_V311 && version != CM_MQTT_V5)
    why = "version must be 3, 4 (MQTT 3.1.1) or 5";
  else if (keepalive < 0 || keepalive > 65535)
    why = "keepalive must be 0..65535 seconds";
  else if (o->will_qos > 2)
    why = "will_qos must be 0, 1 or 2";
  else if (o->password.len > 0 && o->username.len == 0 && version != CM_MQTT_V5)
    why = "a password needs a username before MQTT 5";
  else if (version != CM_MQTT_V5 && (o->props.len > 0 || o->will_props.len > 0))
    why = "properties need version=5";
  if (why != NULL) {
    PyErr_SetString(PyExc_ValueError, why);
    return -1;
  }
  return no_nul(o->client_id, "client_id") < 0 || no_nul(o->username, "username") < 0 ||
                 no_nul(o->will_topic, "will_topic") < 0
             ? -1
             : 0;
}

static PyObject *manager_mqtt_connect(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url",           "handler",     "client_id",  "username",        "password",
                           "clean_session", "keepalive",   "version",    "will_topic",      "will_message",
                           "will_qos",      "will_retain", "properties", "will_properties", NULL};
  PyObject *url, *handler = Py_None, *will_msg = Py_None, *props = NULL, *will_props = NULL;
  const char *cid = "", *user = "", *pass = "", *will_topic = NULL;
  Py_ssize_t cid_n = 0, user_n = 0, pass_n = 0, wt_n = 0;
  int clean = 1, keepalive = 60, version = CM_MQTT_V311, will_qos = 0, will_retain = 0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|Os#s#s#pi$iz#OipOO:mqtt_connect", kwlist, &url, &handler,
                                   &cid, &cid_n, &user, &user_n, &pass, &pass_n, &clean, &keepalive, &version,
                                   &will_topic, &wt_n, &will_msg, &will_qos, &will_retain, &props,
                                   &will_props))
    return NULL;
  struct connect_args ca = {.opts = {.version = (uint8_t) version,
                                     .clean = clean,
                                     .keepalive = (uint16_t) keepalive,
                                     .client_id = cm_str_n(cid, (size_t) cid_n),
                                     .username = cm_str_n(user, (size_t) user_n),
                                     .password = cm_str_n(pass, (size_t) pass_n),
                                     .will_topic = cm_str_n(will_topic, (size_t) wt_n),
                                     .will_qos = (uint8_t) (will_qos < 0 || will_qos > 2 ? 3 : will_qos),
                                     .will_retain = will_retain}};
  struct props_block pb = {NULL, 0}, wb = {NULL, 0};
  ext_data wm = {.view.obj = NULL};
  PyObject *conn = NULL;
  if (will_msg != Py_None && ext_data_get(will_msg, &wm, "will_message") < 0) return NULL;
  if (will_msg != Py_None) ca.opts.will_message = cm_str_n(wm.buf, (size_t) wm.len);
  if (props_encode(props, CM_MQTT_CONNECT, &pb) < 0 || props_encode(will_props, 0, &wb) < 0) goto done;
  ca.opts.props = cm_str_n(pb.buf, pb.len), ca.opts.will_props = cm_str_n(wb.buf, wb.len);
  if (check_connect(&ca.opts, version, keepalive) < 0) goto done;
  conn = manager_open(self, url, handler, open_client, &ca, "Failed to connect to MQTT broker '%U'");
done:
  ext_data_release(&wm);
  PyMem_Free(pb.buf);
  PyMem_Free(wb.buf);
  return conn;
}

static PyObject *manager_mqtt_listen(ManagerObject *self, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"url", "handler", NULL};
  PyObject *url, *handler = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "U|O:mqtt_listen", kwlist, &url, &handler)) return NULL;
  return manager_open(self, url, handler, open_listener, NULL, "Failed to listen for MQTT on '%U'");
}

PyMethodDef mqtt_manager_methods[] = {
    {"mqtt_connect", KW_METHOD(manager_mqtt_connect),
     "mqtt_connect($self, /, url, handler=None, client_id='', username='', password='', clean_session=True, "
     "keepalive=60, *, version=4, will_topic=None, will_message=None, will_qos=0, will_retain=False, "
     "properties=None, will_properties=None)\n--\n\n"
     "Connect to an MQTT broker; CONNECT is queued at once.  version=5 speaks MQTT 5 (properties: a list\n"
     "of dicts as MqttMessage.properties() returns).  No PINGREQ is sent for you."},
    {"mqtt_listen", KW_METHOD(manager_mqtt_listen),
     "mqtt_listen($self, /, url, handler=None)\n--\n\n"
     "Listen for MQTT clients: packets arrive as events, the handler answers (not a broker)."},
    {NULL, NULL, 0, NULL},
};
