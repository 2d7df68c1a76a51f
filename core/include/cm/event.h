/* cm/event.h: the event numbers and what each event carries.
 *
 * The numbers are part of the Python contract (exported as MG_EV_*), so they
 * are fixed here once; one X-macro list makes the enum and the name table. */
#ifndef CM_EVENT_H
#define CM_EVENT_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_conn;

/* X(NAME, number, ev_data in C) */
#define CM_EVENT_LIST(X)                                                        \
  X(ERROR, 0)      /* const char *: message; the connection is closing      */  \
  X(OPEN, 1)       /* struct cm_conn *: the listener for accepted, else NULL */ \
  X(POLL, 2)       /* const uint64_t *: cm_millis() of this iteration        */ \
  X(RESOLVE, 3)    /* NULL: remote address known                             */ \
  X(CONNECT, 4)    /* NULL: outbound connection established                  */ \
  X(ACCEPT, 5)     /* NULL: inbound connection accepted                      */ \
  X(TLS_HS, 6)     /* NULL: TLS handshake done                               */ \
  X(READ, 7)       /* const long *: bytes just added to c->recv (0: resumed) */ \
  X(WRITE, 8)      /* const long *: bytes just written from c->send          */ \
  X(CLOSE, 9)      /* NULL: last event; buffers still readable              */  \
  X(HTTP_HDRS, 10) /* struct cm_http_msg *: headers parsed, body pending     */ \
  X(HTTP_MSG, 11)  /* struct cm_http_msg *: full request or response         */ \
  X(WS_OPEN, 12)   /* struct cm_http_msg *: upgrade request / 101 response   */ \
  X(WS_MSG, 13)    /* struct cm_ws_msg *                                     */ \
  X(WS_CTL, 14)    /* struct cm_ws_msg *                                     */ \
  X(MQTT_CMD, 15)  /* struct cm_mqtt_msg *                                   */ \
  X(MQTT_MSG, 16)  /* struct cm_mqtt_msg *                                   */ \
  X(MQTT_OPEN, 17) /* const int *: CONNACK return code                       */ \
  X(SNTP_TIME, 18) /* const int64_t *: ms since the Unix epoch               */ \
  X(WAKEUP, 19)    /* const struct cm_str *: payload from cm_wakeup_send()   */ \
  X(MDNS_REQ, 20)  /* reserved                                               */ \
  X(MDNS_RESP, 21) /* reserved                                               */ \
  X(USER, 22)      /* first number free for application events               */

enum cm_event {
#define CM_X(name, num) CM_EV_##name = num,
  CM_EVENT_LIST(CM_X)
#undef CM_X
};

/* "MG_EV_<NAME>" for a known event, "MG_EV_USER" / "MG_EV_USER+<n>" at or
 * above CM_EV_USER, else "MG_EV_UNKNOWN(<n>)", reserved 20 and 21 included
 * (the Python contract does not export them).  The returned text lives in
 * `buf` (at least 32 bytes) or in static storage. */
const char *cm_event_name(int ev, char *buf, size_t size);

/* A connection handler: the protocol handler and the user handler of every
 * connection have this shape.  `ev_data` is described in the list above and
 * is borrowed: valid only during the call. */
typedef void (*cm_handler_fn)(struct cm_conn *c, int ev, void *ev_data);

#ifdef __cplusplus
}
#endif
#endif /* CM_EVENT_H */
