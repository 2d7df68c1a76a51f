/* cm/iobuf.h: a growable byte buffer with O(1) consume and a hard cap.
 *
 * Live bytes are buf[head .. head+len).  Consuming advances `head`; space at
 * the front is reclaimed lazily (when the buffer empties, or when appending
 * would otherwise grow it).  Growth never exceeds `cap`.  Memory that is
 * released is zeroed first, so stale payloads never linger in freed blocks. */
#ifndef CM_IOBUF_H
#define CM_IOBUF_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cm_iobuf {
  char *buf;   /* allocation, or NULL when size == 0 (read-only) */
  size_t size; /* bytes allocated (read-only) */
  size_t head; /* offset of the first live byte (read-only) */
  size_t len;  /* number of live bytes (read-only) */
  size_t cap;  /* growth limit in bytes; 0 means no limit */
};

/* Initialise an empty buffer with growth limit `cap` (0: unlimited). */
void cm_iobuf_init(struct cm_iobuf *io, size_t cap);
/* Zero and release the memory; the buffer stays usable and empty. */
void cm_iobuf_free(struct cm_iobuf *io);
/* First live byte (valid until the next call that changes the buffer). */
static inline char *cm_iobuf_data(const struct cm_iobuf *io) {
  return io->buf != NULL ? io->buf + io->head : io->buf; /* no NULL + 0 (UB) */
}
/* Room after the live bytes without reallocating. */
static inline size_t cm_iobuf_room(const struct cm_iobuf *io) { return io->size - io->head - io->len; }
/* Make room for at least `n` more bytes after the live ones (compacting, or
 * growing to a multiple of 1 KiB, at least doubling, never past the cap).  Returns 0, -CM_EFULL if that would pass the
 * cap, -CM_ENOMEM if allocation failed; the buffer is unchanged on error. */
int cm_iobuf_reserve(struct cm_iobuf *io, size_t n);
/* Append `n` bytes.  Returns 0 or a negative CM_E* code (nothing appended). */
int cm_iobuf_add(struct cm_iobuf *io, const void *data, size_t n);
/* Mark `n` bytes written into the room as live (after a read into
 * cm_iobuf_data(io) + io->len).  `n` must not exceed cm_iobuf_room(). */
void cm_iobuf_commit(struct cm_iobuf *io, size_t n);
/* Drop the first `n` live bytes (all of them if n >= len) in O(1). */
void cm_iobuf_consume(struct cm_iobuf *io, size_t n);
/* Remove `n` bytes at live offset `ofs` (memmove; for de-chunking in place). */
void cm_iobuf_del(struct cm_iobuf *io, size_t ofs, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* CM_IOBUF_H */
