/* cm.h: the cymongoose C core.  One event loop (cm/mgr.h), many connections
 * (cm/conn.h), protocols that plug into connections (cm/http.h), timers and
 * a thread-safe wakeup channel.  Independent of CPython: usable from C alone. */
#ifndef CM_H
#define CM_H

#include "cm/base.h"
#include "cm/conn.h"
#include "cm/event.h"
#include "cm/http.h"
#include "cm/http_static.h"
#include "cm/iobuf.h"
#include "cm/json.h"
#include "cm/log.h"
#include "cm/mgr.h"
#include "cm/mqtt.h"
#include "cm/mqtt_broker.h"
#include "cm/resolve.h"
#include "cm/sntp.h"
#include "cm/timer.h"
#include "cm/tls.h"
#include "cm/url.h"
#include "cm/util.h"
#include "cm/wakeup.h"
#include "cm/ws.h"

#endif /* CM_H */
