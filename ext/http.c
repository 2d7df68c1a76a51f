/* http.c: the HTTP methods of Connection (SPEC 1.5, 2.5, 2.6): reply,
 * reply_json, serve_dir, serve_file, http_chunk, http_sse, http_end,
 * http_basic_auth.  The protocol itself is the core's (cm/http.h); this
 * file converts and checks arguments, above all headers, where user text
 * could otherwise inject lines into a response. */
#include "ext.h"

/* Headers added when the caller names no Content-Type (SPEC 2.5.5). */
#define TEXT_PLAIN "Content-Type: text/plain\r\n"
#define APP_JSON "Content-Type: application/json\r\n"

static bool is_content_type(const char *s, Py_ssize_t n) {
  static const char name[] = "content-type";
  return n == sizeof(name) - 1 && cm_str_casecmp(cm_str_n(s, (size_t) n), cm_str_n(name, sizeof(name) - 1));
}

/* str(obj) as a new reference; an exact str is its own. */
static PyObject *as_str(PyObject *obj) {
  return PyUnicode_CheckExact(obj) ? Py_NewRef(obj) : PyObject_Str(obj);
}

/* Append "name: value\r\n" for one item, after the checks of SPEC 1.5 (no
 * CR, LF or NUL: header injection).  `*is_ct` tells whether the name is
 * Content-Type; with `skip_ct` such an item is left out (reply_json). */
static int add_header(struct ext_buf *b, PyObject *key, PyObject *value, bool skip_ct, bool *is_ct) {
  int rc = -1;
  Py_ssize_t kn, vn;
  PyObject *k = as_str(key), *v = k != NULL ? as_str(value) : NULL;
  const char *ks = v != NULL ? PyUnicode_AsUTF8AndSize(k, &kn) : NULL;
  const char *vs = ks != NULL ? PyUnicode_AsUTF8AndSize(v, &vn) : NULL;
  if (vs == NULL) goto done;
  *is_ct = is_content_type(ks, kn);
  if (ext_has_crlf_nul(ks, kn)) {
    PyErr_Format(PyExc_ValueError, "Header name contains illegal character (CR, LF, or NUL): %R", k);
  } else if (*is_ct && skip_ct) {
    rc = 0; /* replaced by the forced application/json */
  } else if (ext_has_crlf_nul(vs, vn)) {
    PyErr_Format(PyExc_ValueError, "Header value contains illegal character (CR, LF, or NUL): %R", v);
  } else {
    rc = (ext_buf_add(b, ks, (size_t) kn) < 0 || ext_buf_add(b, ": ", 2) < 0 ||
          ext_buf_add(b, vs, (size_t) vn) < 0 || ext_buf_add(b, "\r\n", 2) < 0)
             ? -1
             : 0;
  }
done:
  Py_XDECREF(k);
  Py_XDECREF(v);
  return rc;
}

/* True if every key and value is an exact str: then nothing below can run
 * Python code, and the dict can be walked in place, without a snapshot. */
static bool all_exact_str(PyObject *headers) {
  Py_ssize_t pos = 0;
  PyObject *k, *v;
  while (PyDict_Next(headers, &pos, &k, &v)) {
    if (!PyUnicode_CheckExact(k) || !PyUnicode_CheckExact(v)) return false;
  }
  return true;
}

int ext_headers_add(struct ext_buf *user, PyObject *headers, bool skip_ct, bool *any_ct) {
  bool is_ct = false;
  int rc = 0;
  if (!PyDict_Check(headers)) {
    PyErr_Format(PyExc_TypeError, "headers must be a dict, not %.100s", Py_TYPE(headers)->tp_name);
    return -1;
  }
  if (all_exact_str(headers)) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (rc == 0 && PyDict_Next(headers, &pos, &k, &v)) {
      rc = add_header(user, k, v, skip_ct, &is_ct);
      *any_ct = *any_ct || is_ct;
    }
    return rc;
  }
  /* A snapshot of (key, value) pairs holding their own references:
   * str(key) may run Python code that mutates the dict. */
  PyObject *items = PyDict_Items(headers);
  if (items == NULL) return -1;
  for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(items); i++) {
    PyObject *pair = PyList_GET_ITEM(items, i);
    rc = add_header(user, PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1), skip_ct, &is_ct);
    *any_ct = *any_ct || is_ct;
  }
  Py_DECREF(items);
  return rc;
}

/* The header block of a reply: the caller's headers in order, with
 * Content-Type: text/plain first when none is given; for reply_json, any
 * Content-Type replaced by application/json (SPEC 2.5.5). */
static int build_headers(PyObject *headers, bool json, struct ext_buf *b) {
  const char *ct = json ? APP_JSON : TEXT_PLAIN;
  if (headers == NULL || headers == Py_None) return ext_buf_add(b, ct, strlen(ct));
  struct ext_buf user;
  bool any_ct = false;
  ext_buf_init(&user);
  int rc = ext_headers_add(&user, headers, json, &any_ct);
  if (rc == 0 && (json || !any_ct)) rc = ext_buf_add(b, ct, strlen(ct));
  if (rc == 0 && user.len > 0) rc = ext_buf_add(b, user.p, user.len);
  ext_buf_free(&user);
  return rc;
}

static PyObject *do_reply(ConnectionObject *self, int status, PyObject *body, PyObject *headers, bool json) {
  struct ext_buf h;
  ext_data d;
  PyObject *result = NULL;
  ext_buf_init(&h);
  /* Validation comes first, even on a closed connection (SPEC 1.5). */
  if (build_headers(headers, json, &h) < 0) goto done;
  if (ext_data_get(body, &d, "body") < 0) goto done;
  struct cm_conn *c = connection_live(self);
  bool ok = c != NULL && (c->is_closing || cm_http_reply(c, status, h.p, h.len, d.buf, (size_t) d.len));
  ext_data_release(&d);
  if (c != NULL && !ok) PyErr_SetString(PyExc_RuntimeError, "mg_http_reply failed");
  if (ok) result = Py_NewRef(Py_None);
done:
  ext_buf_free(&h);
  return result;
}

static PyObject *connection_reply(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames) {
  static const char *const names[] = {"status_code", "body", "headers"};
  PyObject *a[3];
  int status;
  if (ext_args("reply", args, nargs, kwnames, names, 3, 1, a) < 0 || ext_as_int(a[0], &status) < 0)
    return NULL;
  if (a[1] != NULL) return do_reply(self, status, a[1], a[2], false);
  PyObject *empty = PyBytes_FromStringAndSize("", 0);
  PyObject *result = empty != NULL ? do_reply(self, status, empty, a[2], false) : NULL;
  Py_XDECREF(empty);
  return result;
}

static PyObject *json_dumps(cm_state *st, PyObject *data) {
  PyObject *dumps = ext_lazy_attr(&st->json_dumps, "json", "dumps");
  return dumps != NULL ? PyObject_CallOneArg(dumps, data) : NULL;
}

static PyObject *connection_reply_json(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  static const char *const names[] = {"data", "status_code", "headers"};
  PyObject *a[3];
  int status = 200;
  if (ext_args("reply_json", args, nargs, kwnames, names, 3, 1, a) < 0) return NULL;
  if (a[1] != NULL && ext_as_int(a[1], &status) < 0) return NULL;
  PyObject *body = json_dumps(self->state, a[0]);
  if (body == NULL) return NULL;
  PyObject *result = do_reply(self, status, body, a[2], true);
  Py_DECREF(body);
  return result;
}

/* RFC 9110 §5.6.2 tchar: what a field name is made of. */
static bool is_tchar(unsigned char ch) {
  if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) return true;
  return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static PyObject *text_of(const char *p, size_t n) {
  return PyUnicode_DecodeUTF8(p, (Py_ssize_t) n, "surrogateescape");
}

/* ValueError naming one piece of the caller's text. */
static int bad_piece(const char *fmt, const char *p, size_t n) {
  PyObject *t = text_of(p, n);
  if (t != NULL) PyErr_Format(PyExc_ValueError, fmt, t);
  Py_XDECREF(t);
  return -1;
}

/* One line of extra_headers, without its line break: "Name: value" with a
 * token for a name and no CR or NUL in the value. */
static int check_header_line(const char *p, size_t n) {
  const char *colon = memchr(p, ':', n);
  if (colon == NULL || colon == p) return bad_piece("extra_headers line is not 'Name: value': %R", p, n);
  size_t name_len = (size_t) (colon - p);
  if (ext_has_crlf_nul(p, (Py_ssize_t) name_len)) {
    return bad_piece("Header name contains illegal character (CR, LF, or NUL): %R", p, name_len);
  }
  for (size_t i = 0; i < name_len; i++) {
    if (!is_tchar((unsigned char) p[i])) return bad_piece("Header name is not a token: %R", p, name_len);
  }
  const char *value = colon + 1;
  size_t value_len = n - name_len - 1;
  if (ext_has_crlf_nul(value, (Py_ssize_t) value_len)) {
    return bad_piece("Header value contains illegal character (CR, LF, or NUL): %R", value, value_len);
  }
  return 0;
}

/* extra_headers of serve_dir/serve_file: raw "Name: value\r\n" lines (SPEC
 * 2.6), copied into `b` NUL-terminated.  Every line must be a header field,
 * so the text can neither end the head early nor smuggle in a body; a bare
 * LF ends a line like CRLF, empty lines are dropped and a missing final
 * CRLF is added. */
static int extra_headers(PyObject *obj, struct ext_buf *b) {
  const char *s;
  Py_ssize_t len;
  if (ext_opt_text(obj, "extra_headers", &s, &len) < 0) return -1;
  for (size_t i = 0, n = (size_t) len; i < n;) {
    const char *lf = memchr(s + i, '\n', n - i);
    size_t eol = lf != NULL ? (size_t) (lf - s) : n, end = eol;
    if (end > i && s[end - 1] == '\r') end--;
    if (end > i && (check_header_line(s + i, end - i) < 0 || ext_buf_add(b, s + i, end - i) < 0 ||
                    ext_buf_add(b, "\r\n", 2) < 0))
      return -1;
    i = eol + 1;
  }
  return ext_buf_add(b, "", 1);
}

/* The parsed message behind an HttpMessage argument, or NULL with
 * TypeError (not a view) or ValueError (a view past its event). */
static const struct cm_http_msg *message_of(ConnectionObject *self, PyObject *obj) {
  if (!PyObject_TypeCheck(obj, self->state->HttpMessageType)) {
    PyErr_Format(PyExc_TypeError, "message must be HttpMessage, not %.100s", Py_TYPE(obj)->tp_name);
    return NULL;
  }
  const struct cm_http_msg *hm = ((HttpMessageObject *) obj)->hm;
  if (hm == NULL) PyErr_SetString(PyExc_ValueError, "HttpMessage is not valid for this event");
  return hm;
}

/* The arguments of serve_dir/serve_file, converted; released by
 * serve_args_free whatever happened. */
struct serve_args {
  const struct cm_http_msg *hm;
  struct cm_http_serve_opts opts;
  const char *path;           /* serve_file */
  PyObject *root, *file, *nf; /* encoded paths, or NULL */
  struct ext_buf extra;
};

static void serve_args_free(struct serve_args *a) {
  Py_XDECREF(a->root);
  Py_XDECREF(a->file);
  Py_XDECREF(a->nf);
  ext_buf_free(&a->extra);
}

/* a[0..5): message, root_dir or path, extra_headers, mime_types, page404. */
static int serve_args_get(ConnectionObject *self, PyObject *const *a, bool dir, struct serve_args *out) {
  memset(&out->opts, 0, sizeof(out->opts));
  out->path = NULL;
  out->root = out->file = out->nf = NULL;
  ext_buf_init(&out->extra);
  out->hm = message_of(self, a[0]);
  if (out->hm == NULL) return -1;
  if (ext_opt_path(a[1], dir ? &out->root : &out->file, dir ? &out->opts.root_dir : &out->path) < 0)
    return -1;
  if (extra_headers(a[2], &out->extra) < 0) return -1;
  out->opts.extra_headers = out->extra.p;
  if (ext_opt_text(a[3], "mime_types", &out->opts.mime_types, NULL) < 0) return -1;
  const char *m = out->opts.mime_types;
  if (m != NULL && (strchr(m, '\r') != NULL || strchr(m, '\n') != NULL)) {
    return bad_piece("mime_types contains illegal character (CR, LF, or NUL): %R", m, strlen(m));
  }
  return dir ? ext_opt_path(a[4], &out->nf, &out->opts.page404) : 0;
}

static PyObject *do_serve(ConnectionObject *self, PyObject *const *a, bool dir) {
  struct serve_args sa;
  PyObject *result = NULL;
  /* Arguments first, as reply() validates its headers first (SPEC 1.5). */
  if (serve_args_get(self, a, dir, &sa) < 0) goto done;
  struct cm_conn *c = connection_live(self);
  if (c == NULL) goto done;
  if (!dir && sa.path == NULL) {
    PyErr_SetString(PyExc_ValueError, "path must not be empty");
    goto done;
  }
  ManagerObject *m = ext_hold_manager(c);
  bool ok = c->is_closing ||
            (dir ? cm_http_serve_dir(c, sa.hm, &sa.opts) : cm_http_serve_file(c, sa.hm, sa.path, &sa.opts));
  if (ext_release_manager(m) < 0) goto done;
  if (!ok && !c->is_closing) {
    PyErr_SetString(PyExc_RuntimeError, dir ? "serve_dir failed" : "serve_file failed");
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  serve_args_free(&sa);
  return result;
}

static PyObject *connection_serve_dir(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
  static const char *const names[] = {"message", "root_dir", "extra_headers", "mime_types", "page404"};
  PyObject *a[5];
  if (ext_args("serve_dir", args, nargs, kwnames, names, 5, 2, a) < 0) return NULL;
  return do_serve(self, a, true);
}

static PyObject *connection_serve_file(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                       PyObject *kwnames) {
  static const char *const names[] = {"message", "path", "extra_headers", "mime_types"};
  PyObject *a[5] = {NULL, NULL, NULL, NULL, NULL};
  if (ext_args("serve_file", args, nargs, kwnames, names, 4, 2, a) < 0) return NULL;
  return do_serve(self, a, false);
}

/* b"" sends the last chunk and finishes the response (Decision 5). */
static PyObject *connection_http_chunk(ConnectionObject *self, PyObject *data) {
  return connection_put(self, data, cm_http_chunk, "http_chunk failed");
}

static PyObject *connection_http_sse(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames) {
  static const char *const names[] = {"event_type", "data"};
  PyObject *a[2];
  ext_data ev, d;
  if (ext_args("http_sse", args, nargs, kwnames, names, 2, 2, a) < 0) return NULL;
  if (!PyUnicode_Check(a[0])) {
    return PyErr_Format(PyExc_TypeError, "event_type must be str, not %.100s", Py_TYPE(a[0])->tp_name);
  }
  if (ext_data_get(a[0], &ev, "event_type") < 0) return NULL; /* a str: nothing to release */
  /* A line break would end the event's "event:" field early. */
  if (ext_has_crlf_nul(ev.buf, ev.len)) {
    bad_piece("SSE event type contains illegal character (CR, LF, or NUL): %R", ev.buf, (size_t) ev.len);
    return NULL;
  }
  struct cm_conn *c = connection_live(self);
  if (c == NULL || ext_data_get(a[1], &d, "data") < 0) return NULL;
  bool ok =
      c->is_closing || cm_http_sse(c, cm_str_n(ev.buf, (size_t) ev.len), cm_str_n(d.buf, (size_t) d.len));
  ext_data_release(&d);
  if (!ok) {
    PyErr_SetString(PyExc_RuntimeError, "http_sse failed");
    return NULL;
  }
  Py_RETURN_NONE;
}

static PyObject *connection_http_end(ConnectionObject *self, PyObject *unused) {
  (void) unused;
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return NULL;
  cm_http_end(c); /* Decision 5: the response made of raw send()s is done */
  Py_RETURN_NONE;
}
/* "Authorization: Basic <base64(user[:pass])>\r\n" into the send buffer
 * (SPEC 1.5: the colon only with a password), through cm_http_send like
 * send(), so a client still sees the whole request it writes. */
static PyObject *connection_http_basic_auth(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                            PyObject *kwnames) {
  static const char *const names[] = {"username", "password"};
  static const char prefix[] = "Authorization: Basic ";
  PyObject *a[2], *result = NULL;
  ext_data user, pass;
  struct ext_buf plain, line;
  if (ext_args("http_basic_auth", args, nargs, kwnames, names, 2, 2, a) < 0) return NULL;
  if (ext_data_get(a[0], &user, "username") < 0) return NULL;
  if (ext_data_get(a[1], &pass, "password") < 0) {
    ext_data_release(&user);
    return NULL;
  }
  ext_buf_init(&plain);
  ext_buf_init(&line);
  struct cm_conn *c = connection_live(self);
  if (c == NULL || ext_buf_add(&plain, user.buf, (size_t) user.len) < 0) goto done;
  if (pass.len > 0 &&
      (ext_buf_add(&plain, ":", 1) < 0 || ext_buf_add(&plain, pass.buf, (size_t) pass.len) < 0))
    goto done;
  size_t enc = cm_base64_encoded_len(plain.len);
  if (enc > PY_SSIZE_T_MAX / 2) {
    PyErr_NoMemory();
    goto done;
  }
  /* The encoding is written in place, between the prefix and the CRLF. */
  if (ext_buf_add(&line, prefix, sizeof(prefix) - 1) < 0 || ext_buf_reserve(&line, enc + 2) < 0) goto done;
  line.len += (size_t) cm_base64_encode(plain.p, plain.len, line.p + line.len, enc);
  memcpy(line.p + line.len, "\r\n", 2);
  line.len += 2;
  if (!c->is_closing && !cm_http_send(c, line.p, line.len)) {
    PyErr_SetString(PyExc_RuntimeError, "mg_send failed");
    goto done;
  }
  result = Py_NewRef(Py_None);
done:
  ext_buf_free(&plain);
  ext_buf_free(&line);
  ext_data_release(&user);
  ext_data_release(&pass);
  return result;
}

PyMethodDef http_connection_methods[] = {
    {"reply", FAST_METHOD(connection_reply),
     "reply($self, /, status_code, body=b'', headers=None)\n--\n\n"
     "Send a complete HTTP response: status line, Content-Type: text/plain unless\n"
     "`headers` (a dict) name one, the headers, Content-Length and the body, byte for byte.\n"
     "CR, LF or NUL in a header is a ValueError.  Finishes the response (keep-alive goes on)."},
    {"reply_json", FAST_METHOD(connection_reply_json),
     "reply_json($self, /, data, status_code=200, headers=None)\n--\n\n"
     "Reply with json.dumps(data) as Content-Type: application/json (see reply())."},
    {"serve_dir", FAST_METHOD(connection_serve_dir),
     "serve_dir($self, /, message, root_dir, extra_headers='', mime_types='', page404='')\n--\n\n"
     "Answer `message` with a file or listing from root_dir (SPEC 2.6)."},
    {"serve_file", FAST_METHOD(connection_serve_file),
     "serve_file($self, /, message, path, extra_headers='', mime_types='')\n--\n\n"
     "Answer `message` with the file at path, whatever its URI."},
    {"http_chunk", (PyCFunction) connection_http_chunk, METH_O,
     "http_chunk($self, data, /)\n--\n\nSend one chunk of a chunked body; b'' ends the response."},
    {"http_sse", FAST_METHOD(connection_http_sse),
     "http_sse($self, /, event_type, data)\n--\n\nSend one Server-Sent Event as one chunk."},
    {"http_end", (PyCFunction) connection_http_end, METH_NOARGS,
     "http_end($self, /)\n--\n\n"
     "Finish a response written with raw send() calls: the next pipelined request goes on."},
    {"http_basic_auth", FAST_METHOD(connection_http_basic_auth),
     "http_basic_auth($self, /, username, password)\n--\n\n"
     "Queue an 'Authorization: Basic ...' header line."},
    {NULL, NULL, 0, NULL},
};
