/* cm/ws.h: WebSocket (RFC 6455) with permessage-deflate (RFC 7692): a pure
 * frame codec, and the protocol handler that a server swaps in with an
 * HTTP upgrade or a client gets from cm_ws_connect().
 *
 * Events (to c->fn; ev_data valid only during the call):
 *   CM_EV_WS_OPEN  struct cm_http_msg *: server: the upgrade request, fired
 *                  inside cm_ws_upgrade(); client: the 101 response.
 *   CM_EV_WS_MSG   struct cm_ws_msg *: one whole message (fragments are
 *                  reassembled, compressed ones inflated, text validated).
 *   CM_EV_WS_CTL   struct cm_ws_msg *: a ping, pong or close frame.  Pings
 *                  are answered with a pong carrying the same payload before
 *                  this event, between the fragments of a message too.
 *   CM_EV_ERROR    the connection failed; the message says why.
 *
 * Strictness (RFC 6455 §5.1, §5.2, §5.4, §5.5, §7.4, §8.1): a server
 * requires masked frames and sends unmasked ones, a client the reverse;
 * RSV bits without a negotiated extension, reserved opcodes, control frames
 * over 125 bytes or fragmented, a continuation with nothing to continue or a
 * new data frame inside a fragmented message, a bad close payload: all fail
 * the connection with close code 1002.  Text that is not UTF-8 (checked
 * incrementally, across fragments) fails it with 1007; a message over the
 * size limit (struct cm_ws_opts) with 1009, decided from the frame header
 * before anything is buffered, or while inflating.  Failing means: send a
 * close frame with that code, fire CM_EV_ERROR("<why>"), close the TCP
 * connection.  A valid close frame is answered with a close frame echoing
 * its code, then the connection drains and closes; nothing received after a
 * close frame is delivered.
 *
 * Using it from C (another protocol carried inside WebSocket, e.g. MQTT in
 * binary frames with the "mqtt" subprotocol): listen with cm_http_listen();
 * on CM_EV_HTTP_MSG call cm_ws_upgrade(c, hm, "Sec-WebSocket-Protocol:
 * mqtt\r\n", ...); from then on c->fn receives CM_EV_WS_MSG with whole
 * messages (msg->data) and sends with cm_ws_send(c, data, len,
 * CM_WS_OP_BINARY).  c->fn may be changed in CM_EV_WS_OPEN. */
#ifndef CM_WS_H
#define CM_WS_H

#include "base.h"
#include "event.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm_conn;
struct cm_http_msg;

/* Opcodes (RFC 6455 §5.2). */
enum {
  CM_WS_OP_CONTINUE = 0,
  CM_WS_OP_TEXT = 1,
  CM_WS_OP_BINARY = 2,
  CM_WS_OP_CLOSE = 8,
  CM_WS_OP_PING = 9,
  CM_WS_OP_PONG = 10,
};

/* Bits of the first frame byte. */
#define CM_WS_FIN 0x80u
#define CM_WS_RSV1 0x40u /* permessage-deflate: the message is compressed */
#define CM_WS_RSV2 0x20u
#define CM_WS_RSV3 0x10u

/* Close codes we send (RFC 6455 §7.4.1). */
enum {
  CM_WS_CLOSE_NORMAL = 1000,
  CM_WS_CLOSE_GOING_AWAY = 1001,
  CM_WS_CLOSE_PROTOCOL = 1002,
  CM_WS_CLOSE_INVALID_DATA = 1007, /* text that is not UTF-8 */
  CM_WS_CLOSE_TOO_BIG = 1009,      /* over the message limit */
  CM_WS_CLOSE_INTERNAL = 1011,
};

#define CM_WS_MAX_CONTROL 125           /* control payload limit (§5.5) */
#define CM_WS_MAX_HEADER 14             /* 2 + 8 (length) + 4 (mask) */
#define CM_WS_MAX_MESSAGE (64ull << 20) /* default message limit: 64 MiB */
#define CM_WS_MAX_HANDSHAKE (64u << 10) /* a client refuses a longer 101 head */
#define CM_WS_CLOSE_TIMEOUT_MS 5000     /* our close unanswered: close TCP */

/* ---- ws_frame.c: the pure codec ----------------------------------------- */

/* A parsed frame header.  `payload` is a slice of the input when the whole
 * frame is there (cm_ws_parse), still masked. */
struct cm_ws_frame {
  uint8_t flags;         /* the first byte: FIN, RSV1-3, opcode */
  uint8_t op;            /* opcode: flags & 0x0f */
  bool fin;              /* last frame of its message */
  bool masked;           /* MASK bit */
  uint8_t mask[4];       /* masking key, if masked */
  uint64_t len;          /* payload length */
  size_t head_len;       /* header bytes, 2 to 14 */
  struct cm_str payload; /* cm_ws_parse: the payload (masked as sent) */
};

/* Parse the frame header at buf[0..len).  Returns the header length when it
 * is complete (the payload may still be arriving), 0 when more bytes are
 * needed, -1 when a 64-bit length has its top bit set (§5.2).  Pure: no
 * allocation, `f->payload` left empty. */
int cm_ws_parse_header(const char *buf, size_t len, struct cm_ws_frame *f);
/* Parse a whole frame: returns its total length (header and payload) with
 * f->payload the payload slice, 0 when incomplete, -1 as above. */
long cm_ws_parse(const char *buf, size_t len, struct cm_ws_frame *f);
/* The rules of a frame header that depend on who receives it: `from_client`
 * (a server receiving: frames must be masked; else they must not be),
 * `rsv_ok` (the RSV bits a negotiated extension allows, e.g. CM_WS_RSV1).
 * Returns NULL if the frame may be processed, else why it is a protocol
 * error (close code 1002): reserved opcode, RSV bits, masking, a control
 * frame over 125 bytes or without FIN.  Fragment sequencing is the
 * handler's. */
const char *cm_ws_check(const struct cm_ws_frame *f, bool from_client, unsigned rsv_ok);
/* XOR buf[0..len) in place with the masking key, starting at payload
 * offset `ofs` (so a payload may be unmasked in pieces). */
void cm_ws_mask(void *buf, size_t len, const uint8_t key[4], uint64_t ofs);
/* Write a frame header for a payload of `len` bytes into out[0..14):
 * `flags` is the first byte (FIN | RSV | opcode); `key` the masking key, or
 * NULL for an unmasked frame.  Uses the shortest length encoding (§5.2).
 * Returns the header length. */
size_t cm_ws_header(uint8_t out[CM_WS_MAX_HEADER], uint8_t flags, uint64_t len, const uint8_t *key);

/* Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF).  Zero-initialise; feed the bytes of a message in
 * any pieces. */
struct cm_utf8 {
  uint8_t need; /* continuation bytes still expected */
  uint8_t lo;   /* allowed range of the next one */
  uint8_t hi;
  uint8_t state; /* 0 good, 1 failed */
};
/* Feed buf[0..len).  Returns false as soon as the bytes so far can never be
 * UTF-8 (so a text message fails fast, §8.1), true otherwise. */
bool cm_utf8_feed(struct cm_utf8 *u, const void *buf, size_t len);
/* True when everything fed is UTF-8 and no character is left unfinished. */
bool cm_utf8_done(const struct cm_utf8 *u);
/* cm_utf8_feed + cm_utf8_done over one whole buffer. */
bool cm_utf8_valid(const void *buf, size_t len);

/* May `code` appear in a close frame on the wire (§7.4)?  1000-1003,
 * 1007-1014, 3000-4999; not below 1000, 1004-1006, 1015, 1016-2999, 5000+. */
bool cm_ws_close_code_ok(unsigned code);
/* Check a received close payload: empty, or a 2-byte code that may appear
 * on the wire followed by a UTF-8 reason.  Returns 0 if valid (*code: the
 * code, 1005 when empty; *reason: a slice of the payload), else the close
 * code to fail with (1002, or 1007 for a reason that is not UTF-8). */
int cm_ws_close_parse(struct cm_str payload, unsigned *code, struct cm_str *reason);

/* ---- ws.c: the protocol ------------------------------------------------- */

/* A message or control frame, as CM_EV_WS_MSG / CM_EV_WS_CTL carry it. */
struct cm_ws_msg {
  struct cm_str data; /* payload (unmasked, inflated); valid during the event */
  uint8_t flags;      /* FIN | opcode: 0x81 text, 0x82 binary (the first
                         frame's opcode for a fragmented message), 0x88 close,
                         0x89 ping, 0x8a pong; RSV bits are not reported */
};

/* Per-connection settings, copied when a connection becomes a WebSocket. */
struct cm_ws_opts {
  uint64_t max_message; /* message limit in bytes, after inflating (0: the default, CM_WS_MAX_MESSAGE) */
  bool no_deflate;      /* never negotiate permessage-deflate */
};

/* Server: answer the upgrade request `hm` of connection `c`, an HTTP server
 * connection whose request was delivered (CM_EV_HTTP_MSG) and not answered
 * yet: from CM_EV_HTTP_MSG itself, or later (a timer, a wakeup, once an
 * application decided).  Meanwhile HTTP keeps c->is_resp set and parses
 * nothing more.  Later, the request's bytes are gone from c->recv, so `hm`
 * must then be a copy that owns them (cm_http_msg_copy, taken during the
 * event).  On a connection that was answered already (or began an answer,
 * is closing, draining, or no HTTP server connection) it returns false
 * without sending or changing anything.  On success it
 * queues "101 Switching Protocols" with Upgrade, Connection,
 * Sec-WebSocket-Accept, the negotiated Sec-WebSocket-Extensions, the first
 * Sec-WebSocket-Protocol the client offered (unless `headers` holds one),
 * then `headers` (complete "Name: value\r\n" lines, validated by the
 * caller, copied as they are), makes `c` a WebSocket (c->is_websocket,
 * c->pfn), fires CM_EV_WS_OPEN(hm) synchronously and returns true.  Bytes
 * the client sent after the request belong to the WebSocket (a read is
 * resumed for those already buffered).  HTTP's state goes with the
 * upgrade: when CM_EV_HTTP_MSG returns, or at once when called later (no
 * head or idle timeout of HTTP's applies to the WebSocket).  The peer's
 * close code is c->ws_close_code (cm/conn.h).
 * A request that is no WebSocket handshake gets an answer instead and the
 * connection drains (false is returned): no Sec-WebSocket-Key, or no
 * "Upgrade: websocket" -> 426 "WS upgrade expected"; Sec-WebSocket-Version
 * other than 13 -> 426 with "Sec-WebSocket-Version: 13" (§4.4); not GET, or
 * a key that is not 16 bytes in base64 -> 400.  `opts` NULL: the settings
 * of the listener (cm_ws_listen_opts), else the defaults. */
bool cm_ws_upgrade(struct cm_conn *c, const struct cm_http_msg *hm, const char *headers, size_t headers_len,
                   const struct cm_ws_opts *opts);
/* Client: connect to `url` ("ws://host[:port]/path", "wss://" once TLS is
 * there) and queue the handshake at once (random Sec-WebSocket-Key,
 * Sec-WebSocket-Version: 13, a permessage-deflate offer unless
 * opts->no_deflate, then `headers`: complete lines such as
 * "Sec-WebSocket-Protocol: mqtt\r\n", may be NULL).  A 101 whose
 * Sec-WebSocket-Accept matches fires CM_EV_WS_OPEN(response); anything else
 * fires CM_EV_ERROR("ws handshake error").  Same contract as cm_connect(). */
struct cm_conn *cm_ws_connect(struct cm_mgr *mgr, const char *url, const char *headers,
                              const struct cm_ws_opts *opts, cm_handler_fn fn, void *fn_data);
/* Send one frame with FIN set: `op` CM_WS_OP_TEXT or BINARY (compressed when
 * permessage-deflate was negotiated and it pays), or a control frame (at
 * most 125 bytes).  CM_WS_OP_CLOSE starts the closing handshake: nothing
 * more may be sent, the peer's close frame closes the connection (or a
 * timeout, CM_WS_CLOSE_TIMEOUT_MS); its payload should be a 2-byte code and
 * a reason.  Masked on a client (§5.3).  Returns false (nothing queued) if
 * `c` is not an open WebSocket, a close was sent already, `op` is not one of
 * those six, a control payload is too long, or memory ran out. */
bool cm_ws_send(struct cm_conn *c, const void *data, size_t len, int op);
/* Send a close frame with `code` and `reason` (cm_ws_send(CLOSE)). */
bool cm_ws_close(struct cm_conn *c, unsigned code, struct cm_str reason);
/* Settings for the WebSocket connections that `listener` (an HTTP
 * listener) will upgrade: copied into a block the listener's connections
 * share.  Returns false if `listener` is not an HTTP listener or memory ran
 * out. */
bool cm_ws_listen_opts(struct cm_conn *listener, const struct cm_ws_opts *opts);
/* The WebSocket protocol handler (c->pfn of a WebSocket connection). */
void cm_ws_handler(struct cm_conn *c, int ev, void *ev_data);

#ifdef __cplusplus
}
#endif
#endif /* CM_WS_H */
