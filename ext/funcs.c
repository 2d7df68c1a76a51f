/* funcs.c: the module-level utilities of SPEC 1.10 (JSON, URL, glob match,
 * form variables, multipart, digests, base64, time, randomness, CRC-32),
 * thin wrappers over the pure functions of cm/json.h, cm/url.h, cm/util.h
 * and cm/http.h.
 *
 * Conventions: a str argument is used as UTF-8; where SPEC says str|bytes,
 * any bytes-like object is accepted too (ext_data_get).  Text results are
 * decoded as UTF-8 with surrogateescape, so no input byte is lost.  A wrong
 * type raises TypeError naming the argument; a negative length ValueError.
 * Content never raises: a missing path, a bad document or a bad encoding
 * gives the documented default (None, b"", ...). */
#include <math.h>
#include <string.h>

#include "funcs.h"

/* ---- argument and result helpers ---------------------------------------- */

/* A slice as str: UTF-8, undecodable bytes kept as lone surrogates. */
static PyObject *text(struct cm_str s) {
  return PyUnicode_DecodeUTF8(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len, "surrogateescape");
}

static PyObject *bytes_of(struct cm_str s) {
  return PyBytes_FromStringAndSize(s.len > 0 ? s.buf : "", (Py_ssize_t) s.len);
}

static struct cm_str data_str(const ext_data *d) { return cm_str_n(d->buf, (size_t) d->len); }

/* TypeError naming the argument; returns NULL for the caller to return. */
static PyObject *type_error(PyObject *obj, const char *what, const char *expected) {
  return PyErr_Format(PyExc_TypeError, "%s must be %s, not %.100s", what, expected, Py_TYPE(obj)->tp_name);
}

/* The UTF-8 bytes of a str argument, borrowed from `obj` (CPython caches
 * them in the str, which the caller holds for the whole call). */
static int str_arg(PyObject *obj, const char *what, struct cm_str *out) {
  Py_ssize_t len;
  if (!PyUnicode_Check(obj)) {
    type_error(obj, what, "str");
    return -1;
  }
  out->buf = PyUnicode_AsUTF8AndSize(obj, &len);
  out->len = (size_t) len;
  return out->buf != NULL ? 0 : -1;
}

/* str_arg() for the core functions that take a C string: a NUL inside
 * would silently cut the argument, so it is refused. */
static const char *cstr_arg(PyObject *obj, const char *what) {
  struct cm_str s;
  if (str_arg(obj, what, &s) < 0) return NULL;
  if (memchr(s.buf, '\0', s.len) != NULL) {
    PyErr_Format(PyExc_ValueError, "%s must not contain NUL characters", what);
    return NULL;
  }
  return s.buf;
}

/* A length or offset: an int >= 0 (TypeError, OverflowError, ValueError). */
static int size_arg(PyObject *obj, const char *what, Py_ssize_t *out) {
  if (!PyIndex_Check(obj)) {
    type_error(obj, what, "int");
    return -1;
  }
  *out = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
  if (*out == -1 && PyErr_Occurred()) return -1;
  if (*out < 0) {
    PyErr_Format(PyExc_ValueError, "%s must be >= 0", what);
    return -1;
  }
  return 0;
}

/* ---- JSON (cm/json.h) ---------------------------------------------------- */

/* Find the raw token at `path` in `data`.  Returns 1 with *tok a slice of
 * d->buf, 0 if there is none (missing, bad document, bad path), -1 on a
 * bad argument.  The caller always releases `d`. */
static int json_token(PyObject *data, PyObject *path, ext_data *d, struct cm_str *tok) {
  d->view.obj = NULL; /* so that ext_data_release is a no-op on early errors */
  const char *p = cstr_arg(path, "path");
  if (p == NULL || ext_data_get(data, d, "data") < 0) return -1;
  int len, off = cm_json_get(data_str(d), p, &len);
  if (off < 0) return 0;
  *tok = cm_str_n(d->buf + off, (size_t) len);
  return 1;
}

static bool is_number(struct cm_str tok) {
  return tok.buf[0] == '-' || (tok.buf[0] >= '0' && tok.buf[0] <= '9');
}

static bool is_integer(struct cm_str tok) {
  return memchr(tok.buf, '.', tok.len) == NULL && memchr(tok.buf, 'e', tok.len) == NULL &&
         memchr(tok.buf, 'E', tok.len) == NULL;
}

/* A JSON number token as a double (CPython's locale-independent parser;
 * JSON numbers are a subset of its syntax).  Out of range gives +-inf,
 * as json.loads does.  Returns 0, or -1 with an exception. */
static int number_value(struct cm_str tok, double *out) {
  char *s = PyMem_Malloc(tok.len + 1); /* owned here: the parser wants a NUL */
  if (s == NULL) {
    PyErr_NoMemory();
    return -1;
  }
  memcpy(s, tok.buf, tok.len);
  s[tok.len] = '\0';
  *out = PyOS_string_to_double(s, NULL, NULL);
  PyMem_Free(s);
  return *out == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* A JSON number token as a Python int: integers exactly (any size),
 * others truncated toward zero.  NULL without an exception if the value
 * is infinite (no int has it); NULL with one on error. */
static PyObject *number_to_int(struct cm_str tok) {
  double v;
  if (!is_integer(tok)) {
    if (number_value(tok, &v) < 0 || !isfinite(v)) return NULL;
    return PyLong_FromDouble(v); /* truncates toward zero */
  }
  char *s = PyMem_Malloc(tok.len + 1); /* owned here, as in number_value */
  if (s == NULL) return PyErr_NoMemory();
  memcpy(s, tok.buf, tok.len);
  s[tok.len] = '\0';
  /* Beyond sys.get_int_max_str_digits() this raises ValueError, as
   * json.loads does. */
  PyObject *res = PyLong_FromString(s, NULL, 10);
  PyMem_Free(s);
  return res;
}

static PyObject *funcs_json_get(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "path", NULL};
  PyObject *data, *path, *res;
  ext_data d;
  struct cm_str tok;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:json_get", kwlist, &data, &path)) return NULL;
  int found = json_token(data, path, &d, &tok);
  res = found < 0 ? NULL : found == 0 ? Py_NewRef(Py_None) : text(tok);
  ext_data_release(&d);
  return res;
}

static PyObject *funcs_json_get_num(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "path", "default", NULL};
  PyObject *data, *path, *dflt = Py_None, *res;
  ext_data d;
  struct cm_str tok;
  double v;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:json_get_num", kwlist, &data, &path, &dflt))
    return NULL;
  int found = json_token(data, path, &d, &tok);
  if (found > 0 && is_number(tok)) {
    res = number_value(tok, &v) < 0 ? NULL : PyFloat_FromDouble(v);
  } else {
    res = found < 0 ? NULL : Py_NewRef(dflt);
  }
  ext_data_release(&d);
  return res;
}

static PyObject *funcs_json_get_bool(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "path", "default", NULL};
  PyObject *data, *path, *dflt = Py_None, *res;
  ext_data d;
  struct cm_str tok;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:json_get_bool", kwlist, &data, &path, &dflt))
    return NULL;
  int found = json_token(data, path, &d, &tok);
  if (found > 0 && (cm_str_eq(tok, "true") || cm_str_eq(tok, "false"))) {
    res = PyBool_FromLong(cm_str_eq(tok, "true"));
  } else {
    res = found < 0 ? NULL : Py_NewRef(dflt);
  }
  ext_data_release(&d);
  return res;
}

static PyObject *funcs_json_get_long(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "path", "default", NULL};
  PyObject *data, *path, *dflt = NULL, *res = NULL;
  ext_data d;
  struct cm_str tok;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:json_get_long", kwlist, &data, &path, &dflt))
    return NULL;
  if (dflt != NULL && !PyIndex_Check(dflt)) return type_error(dflt, "default", "int");
  int found = json_token(data, path, &d, &tok);
  if (found > 0 && is_number(tok)) res = number_to_int(tok);
  if (found >= 0 && res == NULL && !PyErr_Occurred()) {
    /* Missing, not a number, or infinite: the default, as an exact int. */
    res = dflt != NULL ? PyNumber_Index(dflt) : PyLong_FromLong(0);
  }
  ext_data_release(&d);
  return res;
}

static PyObject *funcs_json_get_str(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "path", NULL};
  PyObject *data, *path, *res = NULL;
  ext_data d;
  struct cm_str tok;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:json_get_str", kwlist, &data, &path)) return NULL;
  int found = json_token(data, path, &d, &tok);
  if (found > 0 && tok.buf[0] == '"') {
    /* The body between the quotes; decoding never makes it longer, and
     * cm_json_unescape adds a NUL: tok.len - 1 bytes always fit. */
    struct cm_str body = cm_str_n(tok.buf + 1, tok.len - 2);
    char *buf = PyMem_Malloc(tok.len - 1); /* owned here */
    long n = buf != NULL ? cm_json_unescape(body, buf, tok.len - 1) : -1;
    res = buf == NULL ? PyErr_NoMemory() : n < 0 ? Py_NewRef(Py_None) : text(cm_str_n(buf, (size_t) n));
    PyMem_Free(buf);
  } else if (found >= 0) {
    res = Py_NewRef(Py_None);
  }
  ext_data_release(&d);
  return res;
}

/* ---- URLs (cm/url.h) ------------------------------------------------------ */

/* RFC 3986 section 2.3: the unreserved characters, never encoded. */
static bool unreserved(unsigned char ch) {
  return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
         ch == '.' || ch == '_' || ch == '~';
}

/* Every other byte of the UTF-8 becomes %XX (upper case, as RFC 3986
 * section 2.1 recommends and urllib.parse.quote writes). */
static PyObject *funcs_url_encode(PyObject *module, PyObject *arg) {
  static const char hex[] = "0123456789ABCDEF";
  struct cm_str s;
  (void) module;
  if (str_arg(arg, "data", &s) < 0) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < s.len; i++) n += unreserved((unsigned char) s.buf[i]) ? 1 : 3;
  if (n > PY_SSIZE_T_MAX) return PyErr_NoMemory();
  PyObject *res = PyUnicode_New((Py_ssize_t) n, 127); /* new: ASCII, filled below */
  if (res == NULL) return NULL;
  Py_UCS1 *out = PyUnicode_1BYTE_DATA(res);
  for (size_t i = 0; i < s.len; i++) {
    unsigned char ch = (unsigned char) s.buf[i];
    if (unreserved(ch)) {
      *out++ = ch;
    } else {
      *out++ = '%';
      *out++ = (Py_UCS1) hex[ch >> 4];
      *out++ = (Py_UCS1) hex[ch & 15];
    }
  }
  return res;
}

/* Which part of a split URL a url_* function returns. */
enum url_part { URL_HOST, URL_USER, URL_PASS, URL_URI };

static PyObject *url_part(PyObject *arg, enum url_part which) {
  const char *url = cstr_arg(arg, "url");
  struct cm_url u;
  if (url == NULL) return NULL;
  cm_url_split(url, &u);
  switch (which) {
    case URL_HOST: return text(u.host);
    case URL_USER: return text(u.user);
    case URL_PASS: return text(u.pass);
    case URL_URI: return u.uri.len > 0 ? text(u.uri) : PyUnicode_FromString("/");
  }
  Py_UNREACHABLE();
}

static PyObject *funcs_url_host(PyObject *module, PyObject *arg) {
  (void) module;
  return url_part(arg, URL_HOST);
}
static PyObject *funcs_url_user(PyObject *module, PyObject *arg) {
  (void) module;
  return url_part(arg, URL_USER);
}
static PyObject *funcs_url_pass(PyObject *module, PyObject *arg) {
  (void) module;
  return url_part(arg, URL_PASS);
}
static PyObject *funcs_url_uri(PyObject *module, PyObject *arg) {
  (void) module;
  return url_part(arg, URL_URI);
}

static PyObject *funcs_url_port(PyObject *module, PyObject *arg) {
  const char *url = cstr_arg(arg, "url");
  (void) module;
  return url != NULL ? PyLong_FromUnsignedLong(cm_url_port(url)) : NULL;
}

static PyObject *funcs_url_is_ssl(PyObject *module, PyObject *arg) {
  const char *url = cstr_arg(arg, "url");
  (void) module;
  return url != NULL ? PyBool_FromLong(cm_url_is_ssl(url)) : NULL;
}

/* ---- glob match, form variables, multipart -------------------------------- */

/* A list of the captures as str (an empty capture is ""). */
static PyObject *capture_list(const struct cm_str *caps, size_t n) {
  PyObject *list = PyList_New((Py_ssize_t) n); /* new; items stolen into it */
  for (size_t i = 0; list != NULL && i < n; i++) {
    PyObject *s = text(caps[i]);
    if (s == NULL) {
      Py_CLEAR(list);
      break;
    }
    PyList_SET_ITEM(list, (Py_ssize_t) i, s);
  }
  return list;
}

static PyObject *funcs_match(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"s", "pattern", NULL};
  PyObject *sobj, *pobj, *caps_list, *res;
  struct cm_str s, pattern;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:match", kwlist, &sobj, &pobj)) return NULL;
  if (str_arg(sobj, "s", &s) < 0 || str_arg(pobj, "pattern", &pattern) < 0) return NULL;
  size_t ncaps = cm_match_count(pattern);
  struct cm_str *caps = ncaps > 0 ? PyMem_New(struct cm_str, ncaps) : NULL; /* owned here */
  if (ncaps > 0 && caps == NULL) return PyErr_NoMemory();
  bool ok = cm_match(s, pattern, caps, ncaps);
  caps_list = capture_list(caps, ok ? ncaps : 0); /* SPEC: [] on no match */
  PyMem_Free(caps);
  if (caps_list == NULL) return NULL;
  res = PyTuple_Pack(2, ok ? Py_True : Py_False, caps_list);
  Py_DECREF(caps_list);
  return res;
}

static PyObject *funcs_http_var(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"buf", "name", NULL};
  PyObject *bufobj, *nameobj, *res = NULL;
  struct cm_str name, value;
  ext_data d;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:http_var", kwlist, &bufobj, &nameobj)) return NULL;
  if (str_arg(nameobj, "name", &name) < 0 || ext_data_get(bufobj, &d, "buf") < 0) return NULL;
  res = cm_http_var(data_str(&d), name, &value) ? text(value) : Py_NewRef(Py_None);
  ext_data_release(&d);
  return res;
}

/* Set d[key] = value, stealing `value` (which may be NULL: an error). */
static int dict_steal(PyObject *dict, const char *key, PyObject *value) {
  if (value == NULL) return -1;
  int rc = PyDict_SetItemString(dict, key, value);
  Py_DECREF(value);
  return rc;
}

/* {"name": str, "filename": str, "body": bytes} of one part (new). */
static PyObject *part_dict(const struct cm_http_part *part) {
  PyObject *dict = PyDict_New();
  if (dict == NULL) return NULL;
  if (dict_steal(dict, "name", text(part->name)) < 0 ||
      dict_steal(dict, "filename", text(part->filename)) < 0 ||
      dict_steal(dict, "body", bytes_of(part->body)) < 0)
    Py_CLEAR(dict);
  return dict;
}

/* (next_offset, part dict) of the part after `offset`, or (0, None). */
static PyObject *multipart_result(struct cm_str body, size_t offset) {
  struct cm_http_part part;
  size_t next = cm_http_next_multipart(body, offset, &part);
  if (next == 0) return Py_BuildValue("(iO)", 0, Py_None);
  PyObject *dict = part_dict(&part), *res = NULL; /* both new */
  PyObject *off = dict != NULL ? PyLong_FromSize_t(next) : NULL;
  if (off != NULL) res = PyTuple_Pack(2, off, dict);
  Py_XDECREF(off);
  Py_XDECREF(dict);
  return res;
}

static PyObject *funcs_http_parse_multipart(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"body", "offset", NULL};
  PyObject *bodyobj, *offobj = NULL, *res;
  Py_ssize_t offset = 0;
  ext_data d;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:http_parse_multipart", kwlist, &bodyobj, &offobj))
    return NULL;
  if (offobj != NULL && size_arg(offobj, "offset", &offset) < 0) return NULL;
  if (ext_data_get(bodyobj, &d, "body") < 0) return NULL;
  res = multipart_result(data_str(&d), (size_t) offset);
  ext_data_release(&d);
  return res;
}

/* ---- digests (cm/util.h, OpenSSL) ----------------------------------------- */

typedef bool (*digest_fn)(const void *data, size_t len, uint8_t *out);

static PyObject *digest(PyObject *arg, digest_fn fn, Py_ssize_t outlen, const char *name) {
  ext_data d;
  if (ext_data_get(arg, &d, "data") < 0) return NULL;
  PyObject *res = PyBytes_FromStringAndSize(NULL, outlen); /* new, filled by fn */
  if (res != NULL && !fn(d.buf, (size_t) d.len, (uint8_t *) PyBytes_AS_STRING(res))) {
    /* e.g. MD5 under a FIPS-only OpenSSL configuration; hashlib says the same. */
    Py_CLEAR(res);
    PyErr_Format(PyExc_ValueError, "%s is not available from OpenSSL", name);
  }
  ext_data_release(&d);
  return res;
}

static PyObject *funcs_md5(PyObject *module, PyObject *arg) {
  (void) module;
  return digest(arg, cm_md5, CM_MD5_LEN, "md5");
}
static PyObject *funcs_sha1(PyObject *module, PyObject *arg) {
  (void) module;
  return digest(arg, cm_sha1, CM_SHA1_LEN, "sha1");
}
static PyObject *funcs_sha256(PyObject *module, PyObject *arg) {
  (void) module;
  return digest(arg, cm_sha256, CM_SHA256_LEN, "sha256");
}

static PyObject *funcs_hmac_sha256(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"key", "data", NULL};
  PyObject *keyobj, *dataobj, *res = NULL;
  ext_data key, data;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:hmac_sha256", kwlist, &keyobj, &dataobj)) return NULL;
  if (ext_data_get(keyobj, &key, "key") < 0) return NULL;
  if (ext_data_get(dataobj, &data, "data") < 0) goto done;
  res = PyBytes_FromStringAndSize(NULL, CM_SHA256_LEN); /* new, filled below */
  if (res != NULL && !cm_hmac_sha256(key.buf, (size_t) key.len, data.buf, (size_t) data.len,
                                     (uint8_t *) PyBytes_AS_STRING(res))) {
    Py_CLEAR(res);
    PyErr_SetString(PyExc_ValueError, "hmac_sha256 is not available from OpenSSL");
  }
  ext_data_release(&data);
done:
  ext_data_release(&key);
  return res;
}

/* ---- base64 (cm/util.h) ------------------------------------------------- */

static PyObject *funcs_base64_encode(PyObject *module, PyObject *arg) {
  ext_data d;
  (void) module;
  if (ext_data_get(arg, &d, "data") < 0) return NULL;
  size_t n = cm_base64_encoded_len((size_t) d.len);
  PyObject *res = n <= PY_SSIZE_T_MAX ? PyUnicode_New((Py_ssize_t) n, 127) : PyErr_NoMemory(); /* new */
  if (res != NULL) cm_base64_encode(d.buf, (size_t) d.len, (char *) PyUnicode_1BYTE_DATA(res), n);
  ext_data_release(&d);
  return res;
}

/* SPEC 1.10: only whole groups of four count; a trailing partial group is
 * ignored ("QUJDR" and "QQ" alike), and any invalid byte gives b"".  The
 * core also decodes unpadded tails ("QQ" -> "A"), so it is given the whole
 * groups only. */
static PyObject *funcs_base64_decode(PyObject *module, PyObject *arg) {
  Py_ssize_t len;
  (void) module;
  if (!PyUnicode_Check(arg)) return type_error(arg, "data", "str");
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(arg) < 0) return NULL; /* legacy str objects (3.10, 3.11) */
#endif
  /* Outside ASCII nothing is base64; this also keeps len in characters. */
  if (!PyUnicode_IS_ASCII(arg)) return PyBytes_FromStringAndSize("", 0);
  const char *src = PyUnicode_AsUTF8AndSize(arg, &len);
  if (src == NULL) return NULL;
  size_t n = (size_t) len - (size_t) len % 4, cap = cm_base64_decoded_max(n);
  PyObject *res = PyBytes_FromStringAndSize(NULL, (Py_ssize_t) cap); /* new, filled then shrunk */
  if (res == NULL) return NULL;
  long got = cm_base64_decode(src, n, PyBytes_AS_STRING(res), cap);
  if (_PyBytes_Resize(&res, got > 0 ? (Py_ssize_t) got : 0) < 0) return NULL; /* frees res on error */
  return res;
}

/* ---- time, randomness, CRC-32 --------------------------------------------- */

static PyObject *funcs_millis(PyObject *module, PyObject *unused) {
  (void) module, (void) unused;
  return PyLong_FromUnsignedLongLong(cm_millis());
}

static PyObject *funcs_random_bytes(PyObject *module, PyObject *arg) {
  Py_ssize_t n;
  (void) module;
  if (size_arg(arg, "length", &n) < 0) return NULL;
  PyObject *res = PyBytes_FromStringAndSize(NULL, n); /* new, filled below */
  if (res != NULL && !cm_random(PyBytes_AS_STRING(res), (size_t) n)) {
    Py_CLEAR(res);
    PyErr_SetString(PyExc_OSError, "the kernel's random source failed");
  }
  return res;
}

static PyObject *funcs_random_str(PyObject *module, PyObject *arg) {
  Py_ssize_t n;
  (void) module;
  if (size_arg(arg, "length", &n) < 0) return NULL;
  PyObject *res = PyUnicode_New(n, 127); /* new: ASCII, filled below */
  if (res != NULL && !cm_random_str((char *) PyUnicode_1BYTE_DATA(res), (size_t) n)) {
    Py_CLEAR(res);
    PyErr_SetString(PyExc_OSError, "the kernel's random source failed");
  }
  return res;
}

static PyObject *funcs_crc32(PyObject *module, PyObject *args, PyObject *kwargs) {
  static char *kwlist[] = {"data", "initial", NULL};
  PyObject *dataobj, *initobj = NULL;
  unsigned long crc = 0;
  ext_data d;
  (void) module;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:crc32", kwlist, &dataobj, &initobj)) return NULL;
  if (initobj != NULL) {
    if (!PyIndex_Check(initobj)) return type_error(initobj, "initial", "int");
    /* Taken modulo 2**32, negative values included, as binascii.crc32. */
    crc = PyLong_AsUnsignedLongMask(initobj);
    if (crc == (unsigned long) -1 && PyErr_Occurred()) return NULL;
  }
  if (ext_data_get(dataobj, &d, "data") < 0) return NULL;
  uint32_t res = cm_crc32((uint32_t) (crc & 0xFFFFFFFFu), d.buf, (size_t) d.len);
  ext_data_release(&d);
  return PyLong_FromUnsignedLong(res);
}

/* ---- registration --------------------------------------------------------- */

static PyMethodDef funcs_methods[] = {
    {"json_get", KW_METHOD(funcs_json_get),
     "json_get($module, /, data, path)\n--\n\nRaw JSON token at `path` ($, .key, [i]) as str, or None."},
    {"json_get_num", KW_METHOD(funcs_json_get_num),
     "json_get_num($module, /, data, path, default=None)\n--\n\nNumber at `path` as float, else default."},
    {"json_get_bool", KW_METHOD(funcs_json_get_bool),
     "json_get_bool($module, /, data, path, default=None)\n--\n\nJSON true/false at `path`, else default."},
    {"json_get_long", KW_METHOD(funcs_json_get_long),
     "json_get_long($module, /, data, path, default=0)\n--\n\n"
     "Number at `path` truncated toward zero to an int, else default."},
    {"json_get_str", KW_METHOD(funcs_json_get_str),
     "json_get_str($module, /, data, path)\n--\n\nUnescaped string at `path`, or None."},
    {"url_encode", funcs_url_encode, METH_O,
     "url_encode($module, data, /)\n--\n\nPercent-encode all but A-Za-z0-9 and -._~ (UTF-8)."},
    {"url_port", funcs_url_port, METH_O,
     "url_port($module, url, /)\n--\n\nExplicit port, else the scheme's default, else 0."},
    {"url_host", funcs_url_host, METH_O, "url_host($module, url, /)\n--\n\nHost, without userinfo and port."},
    {"url_user", funcs_url_user, METH_O, "url_user($module, url, /)\n--\n\nUser of the userinfo, or ''."},
    {"url_pass", funcs_url_pass, METH_O, "url_pass($module, url, /)\n--\n\nPassword of the userinfo, or ''."},
    {"url_uri", funcs_url_uri, METH_O, "url_uri($module, url, /)\n--\n\nPath and query, '/' if none."},
    {"url_is_ssl", funcs_url_is_ssl, METH_O,
     "url_is_ssl($module, url, /)\n--\n\nTrue for https, wss, mqtts, ssl, tls and tcps URLs."},
    {"match", KW_METHOD(funcs_match),
     "match($module, /, s, pattern)\n--\n\n"
     "Glob match (? one char, * anything but '/', # anything): (matched, captures)."},
    {"http_var", KW_METHOD(funcs_http_var),
     "http_var($module, /, buf, name)\n--\n\nRaw (still encoded) value of name= in 'a=1&b=2', or None."},
    {"http_parse_multipart", KW_METHOD(funcs_http_parse_multipart),
     "http_parse_multipart($module, /, body, offset=0)\n--\n\n"
     "(next_offset, {'name', 'filename', 'body'}) of the next part, or (0, None)."},
    {"md5", funcs_md5, METH_O, "md5($module, data, /)\n--\n\nMD5 digest (16 bytes)."},
    {"sha1", funcs_sha1, METH_O, "sha1($module, data, /)\n--\n\nSHA-1 digest (20 bytes)."},
    {"sha256", funcs_sha256, METH_O, "sha256($module, data, /)\n--\n\nSHA-256 digest (32 bytes)."},
    {"hmac_sha256", KW_METHOD(funcs_hmac_sha256),
     "hmac_sha256($module, /, key, data)\n--\n\nHMAC-SHA256 of data with key (32 bytes)."},
    {"base64_encode", funcs_base64_encode, METH_O,
     "base64_encode($module, data, /)\n--\n\nStandard padded base64, as str."},
    {"base64_decode", funcs_base64_decode, METH_O,
     "base64_decode($module, data, /)\n--\n\n"
     "Decode base64 text; b'' if invalid; a trailing partial group of four is ignored."},
    {"millis", funcs_millis, METH_NOARGS, "millis($module, /)\n--\n\nMonotonic milliseconds (> 0)."},
    {"random_bytes", funcs_random_bytes, METH_O,
     "random_bytes($module, length, /)\n--\n\n`length` bytes from the kernel's CSPRNG."},
    {"random_str", funcs_random_str, METH_O,
     "random_str($module, length, /)\n--\n\n`length` random characters from [0-9A-Za-z]."},
    {"crc32", KW_METHOD(funcs_crc32),
     "crc32($module, /, data, initial=0)\n--\n\nCRC-32 as binascii.crc32, continuing from `initial`."},
    {NULL, NULL, 0, NULL},
};

int funcs_list_name(PyObject *all, const char *name) {
  PyObject *s = PyUnicode_FromString(name); /* new; the list takes its own reference */
  if (s == NULL) return -1;
  int rc = PyList_Append(all, s);
  Py_DECREF(s);
  return rc;
}

int funcs_exec(PyObject *module, PyObject *all) {
  if (PyModule_AddFunctions(module, funcs_methods) < 0) return -1;
  for (PyMethodDef *def = funcs_methods; all != NULL && def->ml_name != NULL; def++) {
    if (funcs_list_name(all, def->ml_name) < 0) return -1;
  }
  return 0;
}
