/* cm/wakeup.h: the one thread-safe way into a manager.
 *
 * Other threads queue (connection id, payload) messages; the poll thread is
 * woken through an eventfd and, in the next iteration, delivers every queued
 * message as CM_EV_WAKEUP to its connection, in the order they were queued.
 * Payloads of any size are copied whole; nothing is dropped or cut.  A
 * message for an id that no longer exists is discarded by the poll thread.
 *
 * The channel is reference counted so that a thread holding it can never
 * touch freed memory, even while the manager shuts down. */
#ifndef CM_WAKEUP_H
#define CM_WAKEUP_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_mgr;
struct cm_wakeup;

/* Create the channel of `mgr` (poll thread) and its internal connection,
 * which takes the next connection id.  Returns that id (> 0), or 0 on error.
 * Calling it again returns the existing id. */
uint64_t cm_wakeup_init(struct cm_mgr *mgr);
/* A new reference to the channel of `mgr` for use from any thread, or NULL
 * if wakeup is not enabled.  Release it with cm_wakeup_release(). */
struct cm_wakeup *cm_wakeup_hold(struct cm_mgr *mgr);
/* Drop a reference; the last one frees the channel.  Any thread. */
void cm_wakeup_release(struct cm_wakeup *w);
/* Queue `len` bytes for connection `id` and wake the poll thread.  Any
 * thread.  Returns false if the channel is closed (the manager was freed) or
 * memory ran out; true means the message will be delivered if `id` is a live
 * connection when the poll thread gets to it. */
bool cm_wakeup_send(struct cm_wakeup *w, uint64_t id, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CM_WAKEUP_H */
