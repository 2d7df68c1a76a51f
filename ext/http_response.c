/* http_response.c: Connection.http_response(), the response writer of the
 * ASGI server (cymongoose.asgi): a status, the application's list of header
 * pairs (duplicates kept, bytes or str) and either the whole body or the
 * head of a streamed one, checked and written in one call.  Doing this in
 * Python cost the ASGI server about a fifth of its time per request. */
#include "ext.h"

/* Bits of the result. */
#define RESP_CHUNKED 1 /* the head announced Transfer-Encoding: chunked */
#define RESP_CLOSE 2   /* the connection ends after this response */

static bool name_is(const char *s, Py_ssize_t n, const char *lower) {
  size_t m = strlen(lower);
  return (size_t) n == m && cm_str_casecmp(cm_str_n(s, (size_t) n), cm_str_n(lower, m));
}

/* Header text: bytes-like as is, str as Latin-1 (PEP 3333 and ASGI header
 * bytes are Latin-1); *tmp keeps an encoded copy alive. */
static int header_text(PyObject *obj, ext_data *d, PyObject **tmp) {
  *tmp = NULL;
  if (PyUnicode_Check(obj) && !PyUnicode_IS_ASCII(obj)) {
    *tmp = PyUnicode_AsLatin1String(obj);
    if (*tmp == NULL) return -1;
    obj = *tmp;
  }
  return ext_data_get(obj, d, "header");
}

/* What the head says about framing, gathered while it is written. */
struct head_info {
  bool has_length; /* Content-Length given */
  bool has_te;     /* Transfer-Encoding given */
  bool close;      /* Connection: close given */
  bool has_conn;   /* any Connection field given */
};

/* Append one "name: value\r\n" after the checks of SPEC 1.5 (no CR, LF or
 * NUL: response splitting). */
static int add_pair(struct ext_buf *b, PyObject *pair, struct head_info *hi) {
  PyObject *seq = PySequence_Fast(pair, "a header must be a (name, value) pair");
  if (seq == NULL) return -1;
  int rc = -1;
  PyObject *tk = NULL, *tv = NULL;
  ext_data k = {0}, v = {0};
  bool got_k = false, got_v = false;
  if (PySequence_Fast_GET_SIZE(seq) != 2) {
    PyErr_SetString(PyExc_ValueError, "a header must be a (name, value) pair");
    goto done;
  }
  got_k = header_text(PySequence_Fast_GET_ITEM(seq, 0), &k, &tk) == 0;
  got_v = got_k && header_text(PySequence_Fast_GET_ITEM(seq, 1), &v, &tv) == 0;
  if (!got_v) goto done;
  if (ext_has_crlf_nul(k.buf, k.len) || ext_has_crlf_nul(v.buf, v.len)) {
    PyErr_SetString(PyExc_ValueError, "Header name or value contains illegal character (CR, LF, or NUL)");
    goto done;
  }
  if (name_is(k.buf, k.len, "content-length")) hi->has_length = true;
  else if (name_is(k.buf, k.len, "transfer-encoding"))
    hi->has_te = true;
  else if (name_is(k.buf, k.len, "connection")) {
    hi->has_conn = true;
    hi->close = hi->close || name_is(v.buf, v.len, "close");
  }
  rc = (ext_buf_add(b, k.buf, (size_t) k.len) < 0 || ext_buf_add(b, ": ", 2) < 0 ||
        ext_buf_add(b, v.buf, (size_t) v.len) < 0 || ext_buf_add(b, "\r\n", 2) < 0)
           ? -1
           : 0;
done:
  if (got_k) ext_data_release(&k);
  if (got_v) ext_data_release(&v);
  Py_XDECREF(tk);
  Py_XDECREF(tv);
  Py_DECREF(seq);
  return rc;
}

/* "HTTP/1.1 <status> <reason>\r\n", then every pair. */
static int build_head(struct ext_buf *b, int status, PyObject *headers, struct head_info *hi) {
  char line[96];
  int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %.64s\r\n", status, cm_http_reason(status));
  if (ext_buf_add(b, line, (size_t) n) < 0) return -1;
  PyObject *seq = PySequence_Fast(headers, "headers must be a list of (name, value) pairs");
  if (seq == NULL) return -1;
  int rc = 0;
  for (Py_ssize_t i = 0; rc == 0 && i < PySequence_Fast_GET_SIZE(seq); i++)
    rc = add_pair(b, PySequence_Fast_GET_ITEM(seq, i), hi);
  Py_DECREF(seq);
  return rc;
}

/* The framing fields we add: Content-Length for a whole body, chunked for
 * a streamed one (HTTP/1.1), none for 1xx/204/304 (RFC 9110 §8.6, RFC 9112
 * §6.1); "Connection: close" when the connection ends after this response
 * (`closes`: the request asked for it; or an unframed body) and the app gave
 * no Connection field (RFC 9112 §9.6); then the blank line.  Returns the
 * RESP_* bits, -1 on error. */
static int add_framing(struct ext_buf *b, int status, const struct head_info *hi, const ext_data *body,
                       bool chunked_ok, bool closes) {
  char line[48];
  int flags = hi->close || closes ? RESP_CLOSE : 0;
  bool bodiless = status < 200 || status == 204 || status == 304;
  if (!bodiless && !hi->has_length && !hi->has_te) {
    if (body != NULL) {
      int n = snprintf(line, sizeof(line), "Content-Length: %zd\r\n", body->len);
      if (ext_buf_add(b, line, (size_t) n) < 0) return -1;
    } else if (chunked_ok) {
      if (ext_buf_add(b, "Transfer-Encoding: chunked\r\n", 28) < 0) return -1;
      flags |= RESP_CHUNKED;
    } else {
      flags |= RESP_CLOSE; /* HTTP/1.0: the body ends with the connection */
    }
  }
  if ((flags & RESP_CLOSE) && !hi->has_conn && status >= 200 &&
      ext_buf_add(b, "Connection: close\r\n", 19) < 0)
    return -1;
  return ext_buf_add(b, "\r\n", 2) < 0 ? -1 : flags;
}

/* Write head (+ body) and, for a whole response, finish it. */
static int emit(ConnectionObject *self, struct ext_buf *b, const ext_data *body, bool head_only, int flags) {
  struct cm_conn *c = connection_live(self);
  if (c == NULL) return -1;
  if (c->is_closing) return 0; /* the peer is gone: nothing to write */
  if (body != NULL && !head_only && body->len > 0 && ext_buf_add(b, body->buf, (size_t) body->len) < 0)
    return -1;
  if (!cm_send(c, b->p, b->len)) {
    PyErr_SetString(PyExc_RuntimeError, "mg_send failed");
    return -1;
  }
  if (body == NULL) return 0;
  cm_http_end(c); /* Decision 5: the next pipelined request may come */
  if (flags & RESP_CLOSE) cm_drain(c);
  return 0;
}

static PyObject *connection_http_response(ConnectionObject *self, PyObject *const *args, Py_ssize_t nargs,
                                          PyObject *kwnames) {
  static const char *const names[] = {"status", "headers", "body", "head", "chunked"};
  PyObject *a[5];
  int status, head_only = 0, chunked_ok = 1;
  if (ext_args("http_response", args, nargs, kwnames, names, 5, 2, a) < 0 || ext_as_int(a[0], &status) < 0)
    return NULL;
  if (status < 100 || status > 999) return PyErr_Format(PyExc_ValueError, "bad HTTP status %d", status);
  if ((a[3] != NULL && (head_only = PyObject_IsTrue(a[3])) < 0) ||
      (a[4] != NULL && (chunked_ok = PyObject_IsTrue(a[4])) < 0))
    return NULL;
  struct ext_buf b;
  struct head_info hi = {false, false, false, false};
  ext_data body;
  bool whole = a[2] != NULL && a[2] != Py_None, got_body = false;
  PyObject *result = NULL;
  ext_buf_init(&b);
  if (build_head(&b, status, a[1], &hi) < 0) goto done;
  if (whole && ext_data_get(a[2], &body, "body") < 0) goto done;
  got_body = whole;
  struct cm_conn *c = connection_live(self);
  bool closes = c != NULL && cm_http_closes_after(c);
  int flags = c == NULL ? -1 : add_framing(&b, status, &hi, whole ? &body : NULL, chunked_ok, closes);
  if (flags >= 0 && emit(self, &b, whole ? &body : NULL, head_only, flags) == 0)
    result = PyLong_FromLong(flags);
done:
  if (got_body) ext_data_release(&body);
  ext_buf_free(&b);
  return result;
}

PyMethodDef http_response_connection_methods[] = {
    {"http_response", FAST_METHOD(connection_http_response),
     "http_response($self, /, status, headers, body=None, head=False, chunked=True)\n--\n\n"
     "Write a response for a WSGI/ASGI server: the status line, the (name, value) pairs of\n"
     "headers (bytes or str; duplicates kept; CR, LF or NUL -> ValueError), then\n"
     "- body given: Content-Length (unless a header gives it), the body (left out when head\n"
     "  is true: a HEAD request), and the response is finished (as http_end());\n"
     "- body None: only the head of a streamed response, announcing chunked framing when\n"
     "  no length is given and chunked is true (HTTP/1.1); the caller sends the body.\n"
     "Returns bit 1 if the head announced chunked framing, bit 2 if the connection closes\n"
     "after the response (the request or the app said Connection: close, or unframed\n"
     "HTTP/1.0); the head then says Connection: close unless the app gave a Connection field."},
    {NULL, NULL, 0, NULL},
};
