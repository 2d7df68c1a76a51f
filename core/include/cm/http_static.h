/* cm/http_static.h: serving files and directories over HTTP (SPEC 2.6).
 *
 * Both functions answer the request `hm` of the CM_EV_HTTP_MSG being handled
 * (they read it at once; it need not outlive the call) and finish the
 * response like cm_http_reply(): pipelined requests wait until the last byte
 * is queued.  Small files are read into c->send at once; larger ones stream
 * from disk with cm_send_fd(), so a file of any size costs no more memory
 * than a read piece (none at all with sendfile).
 *
 * What a file response carries: "Content-Type" from the extension (table in
 * http_static.c, overridable), "Etag: "<mtime>.<size>"", "Content-Length",
 * then "Content-Range" / "Content-Encoding" / "Vary" where they apply,
 * "Accept-Ranges: bytes", then `extra_headers` as given.  Handled requests:
 * If-None-Match -> 304 (RFC 9110 §13.1.2), one "Range: bytes=a-b|a-|-n" ->
 * 206, or 416 with "Content-Range: bytes *" "/size" when unsatisfiable (RFC
 * 9110 §14), If-Range, "Accept-Encoding" naming gzip -> "<file>.gz" with
 * "Content-Encoding: gzip" when that file exists, HEAD -> headers only.
 *
 * Containment (cm_http_serve_dir): the URI is percent-decoded and split in
 * segments; "..", a leading "~", a backslash, NUL or a bad escape -> 400
 * "Invalid path", so no URI can climb out of the root.  Symbolic links are
 * followed only while their target stays inside the root (checked on the
 * canonical path and again on the opened file), else 403: a link inside the
 * root to elsewhere in it works, one to /etc does not. */
#ifndef CM_HTTP_STATIC_H
#define CM_HTTP_STATIC_H

#include "base.h"
#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_conn;

struct cm_http_serve_opts {
  const char *root_dir;      /* cm_http_serve_dir: the directory served ("." if NULL) */
  const char *extra_headers; /* raw "Name: value\r\n" lines for every response, or NULL */
  const char *mime_types;    /* "ext=type,ext2=type2" tried before the table; "*=type"
                                matches every file; or NULL */
  const char *page404;       /* file sent with status 200 when nothing matches, or NULL */
};

/* Serve opts->root_dir + the URL-decoded path of hm->uri: a file; for a
 * directory without a trailing '/' a 301 to "<uri>/"; for a directory its
 * index.html (or index.shtml, index.html.gz) or else an HTML listing (names
 * HTML-escaped, links percent-encoded); 404 "Not found\n" for anything
 * missing, or opts->page404 with status 200.  `opts` may be NULL.  Returns
 * false if nothing could be queued (closing, out of memory). */
bool cm_http_serve_dir(struct cm_conn *c, const struct cm_http_msg *hm,
                       const struct cm_http_serve_opts *opts);
/* Serve the file at `path` (any path: no containment, the URI is ignored)
 * as above; 404 if it is missing or not a regular file.  opts->root_dir is
 * not used. */
bool cm_http_serve_file(struct cm_conn *c, const struct cm_http_msg *hm, const char *path,
                        const struct cm_http_serve_opts *opts);
/* The Content-Type for `path`: first the `mime_types` overrides (may be
 * NULL), then the built-in table, then "text/plain; charset=utf-8".  The
 * slice points into `mime_types` or static storage. */
struct cm_str cm_http_mime_type(const char *path, const char *mime_types);

#ifdef __cplusplus
}
#endif
#endif /* CM_HTTP_STATIC_H */
