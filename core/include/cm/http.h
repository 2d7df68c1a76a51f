/* cm/http.h: HTTP/1.1 (RFC 9112): a pure message parser, and the protocol
 * handler that turns a connection's bytes into CM_EV_HTTP_HDRS/HTTP_MSG.
 *
 * Server side: requests on one connection are answered in order.  After
 * CM_EV_HTTP_MSG the next pipelined request is parsed only once the response
 * is finished (cm_http_reply, or cm_http_end after raw cm_send calls); a
 * response may be finished later, from another event (a wakeup), and the
 * connection then resumes.  "Connection: close" (or HTTP/1.0 without
 * keep-alive) drains the connection after its response.
 *
 * A request with "Expect: 100-continue" whose body has not started to arrive
 * gets "HTTP/1.1 100 Continue" before CM_EV_HTTP_HDRS (RFC 9110 §10.1.1).
 *
 * Requests are held to RFC 9112 as strictly as nginx holds them (SPEC
 * Decision 14): an HTTP major version other than 1 is answered 505, an
 * HTTP/1.1 request without Host 400 (§3.2; HTTP/1.0 may omit it).
 *
 * Limits (struct cm_http_limits, per listener): a request that passes one is
 * answered with its 4xx status and "Connection: close"; other connections
 * are not disturbed.  After such an error answer the connection lingers
 * (nginx's lingering close): once the answer is written the server shuts
 * its side down and reads and drops what the client still sends, until
 * the client closes or CM_HTTP_LINGER_MS pass, so that a client still
 * sending its body reads the answer instead of a reset.  Server connections are also
 * closed when a request head takes too long to arrive (slowloris) or when
 * they sit idle between requests. */
#ifndef CM_HTTP_H
#define CM_HTTP_H

#include "base.h"
#include "event.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm_conn;

#define CM_HTTP_MAX_HEADERS 30 /* headers kept per message; more are ignored */

struct cm_http_header {
  struct cm_str name;  /* as sent */
  struct cm_str value; /* surrounding whitespace removed */
};

/* A parsed message.  Every slice points into the buffer given to the parser
 * (for events: into c->recv), valid only during the event. */
struct cm_http_msg {
  struct cm_str method; /* request method; for a response: "HTTP/1.1" */
  struct cm_str uri;    /* request target without query; response: "200" */
  struct cm_str query;  /* after '?', without it; empty if none */
  struct cm_str proto;  /* "HTTP/1.1"; for a response: the reason phrase */
  struct cm_http_header headers[CM_HTTP_MAX_HEADERS];
  size_t num_headers;     /* headers kept (at most CM_HTTP_MAX_HEADERS); later slots are undefined */
  struct cm_str body;     /* body (de-chunked); empty until complete */
  struct cm_str head;     /* start line and headers, up to the blank line */
  struct cm_str message;  /* head and body as received */
  int64_t content_length; /* Content-Length, or -1 if absent */
  bool is_response;       /* parsed a status line */
  bool is_chunked;        /* Transfer-Encoding: chunked */
  bool keep_alive;        /* connection persists after this message */
  bool has_host;          /* a Host header came (kept or not; RFC 9112 §3.2) */
};

/* Parse the head of a request or response in buf[0..len).  Pure: no
 * allocation, no connection; fills `hm` with slices into `buf`.
 * Returns the head length (through the blank line) when complete, 0 when
 * more bytes are needed, -1 when the bytes can never form a valid head
 * (control characters, bad request line, conflicting framing headers). */
int cm_http_parse(const char *buf, size_t len, struct cm_http_msg *hm);
/* The value of the first header named `name` (ASCII case-insensitive), or
 * NULL.  Points into `hm`. */
const struct cm_str *cm_http_header(const struct cm_http_msg *hm, const char *name);
/* Copy `src` into `dst` with every slice pointing into `buf`, which the
 * caller provides with src->message.len bytes (the head and body as
 * received: every slice of a parsed message lies in it) and owns: `dst`
 * stays valid as long as `buf` does, after the connection consumed or freed
 * the bytes `src` points into.  A slice outside src->message becomes empty.
 * Pure: no allocation.  For answering a request later (cm_ws_upgrade,
 * cm_http_serve_file from a timer). */
void cm_http_msg_copy(struct cm_http_msg *dst, const struct cm_http_msg *src, char *buf);
/* Reason phrase for a status code ("OK", "Not Found"), "" if unknown. */
const char *cm_http_reason(int status);
/* Decode the chunk of a chunked body (RFC 9112 §7.1) that starts buf[0..len).
 * Pure, like cm_http_parse.  Returns the chunk's encoded length (size line,
 * data and its CRLF; for the last chunk, through the end of the trailer
 * section), 0 when more bytes are needed, -1 when malformed.  On success the
 * data is buf[*data_ofs .. *data_ofs + *data_len); *data_len == 0 means this
 * was the last chunk.  When 0 is returned because the chunk's data has not
 * all arrived, the size line was complete and *data_len already holds the
 * chunk size, so a caller can refuse an oversized chunk before buffering it
 * (*data_len is left alone when the size line itself is incomplete). */
int cm_http_dechunk(const char *buf, size_t len, size_t *data_ofs, size_t *data_len);

/* Server limits.  A field of 0 disables that limit.  Defaults, set by
 * cm_http_limits_init() and used by cm_http_listen(), are in brackets. */
struct cm_http_limits {
  size_t max_head;          /* request line + headers, bytes -> 431 [64 KiB] */
  size_t max_headers;       /* header lines, kept or not -> 431 [1000] */
  size_t max_uri;           /* request-target, bytes -> 414 [64 KiB] */
  uint64_t max_body;        /* body, from Content-Length or de-chunked -> 413 [3 MiB] */
  uint32_t head_timeout_ms; /* first byte of a head to its end, else 408 + close [30000] */
  uint32_t idle_timeout_ms; /* no request, or no progress writing, for this long -> close [60000] */
  size_t max_header_line;   /* one header line, bytes -> 431 [16 KiB] */
};

/* SPEC Decision 14: the limits of the servers users trust (nginx, Node). */
#define CM_HTTP_MAX_HEAD (64u << 10)
#define CM_HTTP_MAX_HEADER_LINE (16u << 10)
#define CM_HTTP_MAX_FIELDS 1000 /* SPEC 2.5.4: a 500-header request is answered */
#define CM_HTTP_MAX_URI (64u << 10)
#define CM_HTTP_MAX_BODY (3u << 20)
#define CM_HTTP_HEAD_TIMEOUT_MS 30000
#define CM_HTTP_IDLE_TIMEOUT_MS 60000
#define CM_HTTP_LINGER_MS 2000 /* lingering close after an error answer */

/* Fill `lim` with the defaults above. */
void cm_http_limits_init(struct cm_http_limits *lim);

/* Listen with the HTTP server protocol on every accepted connection, with
 * the default limits.  Same contract as cm_listen(). */
struct cm_conn *cm_http_listen(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* cm_http_listen() with explicit limits (NULL: the defaults).  `lim` is
 * copied once, into a block the listener shares with every connection it
 * accepts (with their deadlines); the last of them to close frees it. */
struct cm_conn *cm_http_listen_opts(struct cm_mgr *mgr, const char *url, const struct cm_http_limits *lim,
                                    cm_handler_fn fn, void *fn_data);
/* Connect with the HTTP client protocol.  Nothing is sent: the application
 * writes its request (usually on CM_EV_CONNECT); responses arrive as
 * CM_EV_HTTP_MSG.  Same contract as cm_connect(). */
struct cm_conn *cm_http_connect(struct cm_mgr *mgr, const char *url, cm_handler_fn fn, void *fn_data);
/* The HTTP protocol handler, for setting c->pfn by hand.  Replacing it on
 * a connection is best done from one of its HTTP events (it then lets go of
 * the connection at once); replaced elsewhere, its state on an accepted
 * connection is reclaimed at the next deadline, or lost if the manager is
 * freed first. */
void cm_http_handler(struct cm_conn *c, int ev, void *ev_data);

/* Send a complete response: "HTTP/1.1 <status> <reason>\r\n", then
 * `headers` (zero or more complete "Name: value\r\n" lines, copied as they
 * are; the caller has validated them), "Connection: close\r\n" for a final
 * response when the connection closes after it (cm_http_closes_after) and
 * `headers` name no Connection field, "Content-Length: <len>\r\n\r\n" and
 * `len` body bytes, then finish the response (cm_http_end).  Returns false if
 * nothing could be queued. */
bool cm_http_reply(struct cm_conn *c, int status, const char *headers, size_t headers_len, const void *body,
                   size_t len);
/* Server: has the response to the request being answered started?  True
 * once anything was queued on `c` since its CM_EV_HTTP_MSG, or the
 * response was finished, or `c` is closing; false when nothing has been
 * answered yet, and on a connection that is not an HTTP server one. */
bool cm_http_response_started(const struct cm_conn *c);
/* Server: answer the request being handled "500 Internal Server Error"
 * with "Connection: close" and close after it, if its response has not
 * started (cm_http_response_started); for a handler that failed.
 * Returns whether the 500 was sent. */
bool cm_http_internal_error(struct cm_conn *c);
/* Server: will `c` close after the response to the request being answered
 * (it said "Connection: close", or was HTTP/1.0 without keep-alive)?  Then
 * that response must say "Connection: close" (RFC 9112 §9.6), which
 * cm_http_reply and the file server add unless the caller's headers hold a
 * Connection field already.  False on anything but an HTTP server
 * connection. */
bool cm_http_closes_after(const struct cm_conn *c);
/* Does the header block `h` (complete "Name: value\r\n" lines) hold a
 * field named `name` (case-insensitive)?  NULL or empty `h`: false. */
bool cm_http_has_field(const char *h, size_t len, const char *name);
/* Finish the current response after raw cm_send() calls: apply
 * "Connection: close", and let the next pipelined request through. */
void cm_http_end(struct cm_conn *c);
/* Send one chunk of a chunked response body (RFC 9112 §7.1):
 * "<lowercase hex len>\r\n<data>\r\n".  `len` 0 sends the last chunk
 * "0\r\n\r\n" and finishes the response (cm_http_end).  The application
 * has sent the head with "Transfer-Encoding: chunked" itself.  In answer to
 * HEAD nothing is sent (RFC 9110 §9.3.2), but len 0 still finishes.  Returns
 * false if nothing could be queued. */
bool cm_http_chunk(struct cm_conn *c, const void *data, size_t len);
/* Send one Server-Sent Event as one chunk (cm_http_chunk) whose payload is
 * "event: <event>\ndata: <data>\n\n" (WHATWG HTML §9.2).  A line break in
 * `data` (CRLF, LF or CR) starts a new "data: " line, so the event cannot end
 * early and the client rebuilds `data` with LF line breaks.  Returns false if
 * `event` contains CR, LF or NUL, or nothing could be queued. */
bool cm_http_sse(struct cm_conn *c, struct cm_str event, struct cm_str data);
/* cm_send() for HTTP connections.  On a client connection it also follows
 * the requests in the bytes (their heads and framing, RFC 9112 §6), so that
 * the response to a HEAD request is known to have no body (RFC 9112 §6.3
 * (1)) however it was split across calls.  Requests sent with plain
 * cm_send() are not seen: their responses are framed as if for GET.  On any
 * other connection it is cm_send(). */
bool cm_http_send(struct cm_conn *c, const void *buf, size_t len);

/* ---- http_vars.c: pure helpers over HTTP text ------------------------- */

/* Percent-decode src[0..len) into `dst` (`size` bytes), NUL-terminated; with
 * `form` true '+' becomes a space (application/x-www-form-urlencoded).
 * Returns the decoded length, or -1 if an escape is not '%' followed by two
 * hex digits or the result plus its NUL does not fit in `size`. */
long cm_http_url_decode(const char *src, size_t len, char *dst, size_t size, bool form);
/* Find `name` (ASCII case-insensitive) in "a=1&b=2" text.  On success
 * `*value` is the raw, still encoded value ("" for "a=") as a slice into
 * `buf`, and the result is true; false if there is no "name=" pair. */
bool cm_http_var(struct cm_str buf, struct cm_str name, struct cm_str *value);
/* Find the parameter `name=` (ASCII case-insensitive) inside a header value
 * such as `text/html; charset=utf-8` or `Digest realm="a b", nonce=x`.
 * `*value` becomes the quoted string without its quotes, or the token up to
 * ';', ',' or whitespace: a slice into `header`.  False if absent. */
bool cm_http_header_var(struct cm_str header, struct cm_str name, struct cm_str *value);
/* ---- end of http_vars.c ------------------------------------------------- */

/* ---- http_multipart.c: multipart/form-data bodies (RFC 7578) ------------ */

/* One part of a multipart body.  Slices into the body given to the parser;
 * an absent or empty value is {NULL, 0}. */
struct cm_http_part {
  struct cm_str name;     /* Content-Disposition name= (quotes removed) */
  struct cm_str filename; /* Content-Disposition filename=, empty if none */
  struct cm_str body;     /* the part's content, without the CRLF before the next boundary */
};

/* Parse the part of the multipart/form-data `body` that starts at the first
 * delimiter line at or after `offset` (0 for the first part, then the value
 * returned by the previous call).  The boundary is read from the body's
 * first line, "--<boundary>", so the body must start with it (no preamble).
 * Fills `*part` (never NULL) and returns the offset of the next delimiter,
 * always > 0.  Returns 0, with *part all empty, when there is no further
 * part (the close delimiter "--<boundary>--" was reached) or the body is
 * malformed or cut short: a part counts only once its ending delimiter is
 * present.  Pure: no allocation; `body` is not kept. */
size_t cm_http_next_multipart(struct cm_str body, size_t offset, struct cm_http_part *part);
/* ---- end of http_multipart.c -------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif /* CM_HTTP_H */
