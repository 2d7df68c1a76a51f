/* iobuf.c: growable byte buffer with O(1) consume, lazy compaction and a cap. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Zero memory in a way the compiler may not elide: the point is that freed
 * blocks never carry old payloads (passwords, cookies) back to malloc. */
static void wipe(void *p, size_t n) {
  if (p != NULL && n > 0) explicit_bzero(p, n);
}

void cm_iobuf_init(struct cm_iobuf *io, size_t cap) {
  io->buf = NULL;
  io->size = io->head = io->len = 0;
  io->cap = cap;
}

void cm_iobuf_free(struct cm_iobuf *io) {
  wipe(io->buf, io->size);
  free(io->buf);
  io->buf = NULL;
  io->size = io->head = io->len = 0;
}

/* Slide the live bytes to offset 0 and wipe the bytes they left behind, so
 * the room handed out by cm_iobuf_room() never exposes consumed data. */
static void compact(struct cm_iobuf *io) {
  if (io->head == 0) return;
  memmove(io->buf, io->buf + io->head, io->len);
  wipe(io->buf + io->len, io->head); /* old bytes now in [len, len+head) */
  io->head = 0;
}

/* Allocation size for `need` live bytes: CM_IO_GRANULE multiples, clamped to
 * the cap (the caller has already checked need <= cap).  0 on overflow.  A
 * small granule keeps an idle keep-alive connection's buffers small. */
static size_t grow_size(const struct cm_iobuf *io, size_t need) {
  if (need > SIZE_MAX - (CM_IO_GRANULE - 1)) return 0;
  size_t size = (need + CM_IO_GRANULE - 1) / CM_IO_GRANULE * CM_IO_GRANULE;
  /* At least double: a 3 MiB body arriving in small reads must cost O(n)
   * copying, not O(n^2). */
  if (io->size <= SIZE_MAX / 2 && size < io->size * 2) size = io->size * 2;
  if (io->cap != 0 && size > io->cap) size = io->cap;
  return size;
}

/* Move the live bytes into a fresh zeroed block.  calloc + copy rather than
 * realloc so the old block is wiped before it goes back to the allocator. */
static int regrow(struct cm_iobuf *io, size_t size) {
  char *p = calloc(1, size);
  if (p == NULL) return -CM_ENOMEM;
  if (io->len > 0) memcpy(p, io->buf + io->head, io->len);
  wipe(io->buf, io->size);
  free(io->buf);
  io->buf = p;
  io->size = size;
  io->head = 0;
  return 0;
}

int cm_iobuf_reserve(struct cm_iobuf *io, size_t n) {
  if (cm_iobuf_room(io) >= n) return 0;
  if (n > SIZE_MAX - io->len) return -CM_EFULL;
  size_t need = io->len + n;
  if (io->cap != 0 && need > io->cap) return -CM_EFULL;
  if (need <= io->size) {
    compact(io); /* the front has enough reclaimable space */
    return 0;
  }
  size_t size = grow_size(io, need);
  if (size == 0) return -CM_ENOMEM;
  return regrow(io, size);
}

int cm_iobuf_add(struct cm_iobuf *io, const void *data, size_t n) {
  if (n == 0) return 0; /* data may be NULL for an empty append */
  int rc = cm_iobuf_reserve(io, n);
  if (rc != 0) return rc;
  memcpy(io->buf + io->head + io->len, data, n);
  io->len += n;
  return 0;
}

void cm_iobuf_commit(struct cm_iobuf *io, size_t n) {
  /* Clamp rather than trust: a bad n would make len point past the block. */
  size_t room = cm_iobuf_room(io);
  io->len += n < room ? n : room;
}

void cm_iobuf_consume(struct cm_iobuf *io, size_t n) {
  if (n >= io->len) {
    io->head = io->len = 0; /* empty: the whole block is room again */
    return;
  }
  io->head += n;
  io->len -= n;
}

void cm_iobuf_del(struct cm_iobuf *io, size_t ofs, size_t n) {
  if (ofs >= io->len || n == 0) return;
  if (n > io->len - ofs) n = io->len - ofs;
  char *p = io->buf + io->head;
  memmove(p + ofs, p + ofs + n, io->len - ofs - n);
  wipe(p + io->len - n, n); /* the tail now duplicates moved bytes */
  io->len -= n;
  if (io->len == 0) io->head = 0;
}
