/* cm/json.h: a pure JSON scanner (RFC 8259).  It finds the token at a path
 * without building a tree and without allocating: results are offsets into
 * the caller's document, or values decoded into the caller's buffers.
 *
 * Every call scans the whole document once (O(len)) and checks its grammar:
 * a document that is not exactly one JSON value (plus whitespace) is
 * CM_JSON_INVALID even when the path would be found before the damage.
 * Nesting is capped at CM_JSON_MAX_DEPTH; the scanner is iterative, so no
 * input can exhaust the stack.
 *
 * Paths: "$" is the whole document; ".key" selects a member of an object,
 * "[i]" an element of an array (decimal, from 0), e.g. "$.a.b[2].c", "$[0]".
 * A key runs up to the next '.', '[' or the end of the path, so it may hold
 * any other byte (also spaces and ']'), and it may be empty ("$." selects the
 * key "").  Keys are compared byte for byte with the key as written in the
 * document, between its quotes: escapes in document keys are not decoded.
 * When a key occurs twice in one object, the first occurrence wins. */
#ifndef CM_JSON_H
#define CM_JSON_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CM_JSON_MAX_DEPTH 64 /* containers open at once; deeper is CM_JSON_TOO_DEEP */

/* Negative results of cm_json_get. */
enum {
  CM_JSON_NOT_FOUND = -1, /* valid document, nothing at the path */
  CM_JSON_INVALID = -2,   /* not JSON, or longer than INT_MAX bytes */
  CM_JSON_TOO_DEEP = -3,  /* nesting deeper than CM_JSON_MAX_DEPTH */
  CM_JSON_BAD_PATH = -4,  /* the path does not follow the syntax above */
};

/* Find the value at `path` in `json`.  Returns its offset in json.buf and,
 * if `toklen` is not NULL, stores its length in *toklen: the raw token, so a
 * string keeps its quotes and an object runs from '{' to '}'.  Returns one of
 * the negative CM_JSON_* codes otherwise (*toklen is then untouched).
 * `path` is a NUL-terminated string; neither argument is kept. */
int cm_json_get(struct cm_str json, const char *path, int *toklen);

/* The number at `path` as a double (always read with '.' as the decimal
 * point, whatever the C locale).  False if the path is missing, the document
 * is invalid, or the value is not a number.  A top-level number that ends
 * the document exactly and is longer than 255 bytes is also refused.
 * Magnitudes beyond the double range give +-HUGE_VAL, like strtod. */
bool cm_json_get_num(struct cm_str json, const char *path, double *out);
/* The number at `path` truncated toward zero (3.9 -> 3, -2.9 -> -2, 1e3 ->
 * 1000).  Integers without fraction or exponent are read exactly.  False as
 * for cm_json_get_num, and also if the value does not fit in a long. */
bool cm_json_get_long(struct cm_str json, const char *path, long *out);
/* The JSON literal true or false at `path`.  False (and *out untouched) for
 * anything else, including strings such as "true" and numbers. */
bool cm_json_get_bool(struct cm_str json, const char *path, bool *out);
/* Decode the string at `path` into buf[0..len) with cm_json_unescape.
 * Returns the decoded length (excluding the NUL it appends), or -1 if the
 * value is missing or not a string, an escape is bad, or it does not fit.
 * A buffer of the token's length (*toklen from cm_json_get) always fits. */
long cm_json_get_str(struct cm_str json, const char *path, char *buf, size_t len);

/* Decode the body of a JSON string (the bytes between its quotes) into
 * buf[0..len), followed by a NUL.  Escapes \" \\ \/ \b \f \n \r \t and \uXXXX
 * are decoded, a surrogate pair \uD83D\uDE00 into one 4-byte UTF-8 sequence;
 * other bytes are copied as they are.  \u0000 yields a NUL byte inside the
 * result, so use the returned length.  Returns that length, or -1 for an
 * unknown escape, a truncated \u, a lone surrogate, or too small a buffer
 * (the result never grows: len = s.len + 1 is always enough). */
long cm_json_unescape(struct cm_str s, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CM_JSON_H */
