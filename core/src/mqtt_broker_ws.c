/* mqtt_broker_ws.c: MQTT inside WebSocket for the broker (cm/mqtt_broker.h),
 * the transport browsers need: a ws:// listener upgrades with the "mqtt"
 * subprotocol, and every MQTT packet travels in binary messages. */
#include "internal.h"

bool cm__mqtt_ws_out(struct cm_mqtt_bconn *bc, const struct cm_mqtt_msg *m, int version) {
  (void) bc;
  (void) m;
  (void) version;
  return false; /* WebSocket has not landed in the core yet */
}
