/* buf.h: the one growable byte buffer (a stream's read buffer, an HTTP request's body and headers). */
#ifndef CSP_BUF_H
#define CSP_BUF_H

#include <stddef.h>

#define CSP_BUF_INIT 4096  /* first capacity: 10,000 idle conns must stay cheap */

/* Bytes live in p[head, tail); appends go at the tail, takes come off the head. Empty and
** unallocated when zeroed. */
typedef struct csp_Buf {
  char *p;
  size_t cap, head, tail;
} csp_Buf;

static inline size_t csp_buf_len(const csp_Buf *b) { return b->tail - b->head; }
static inline char *csp_buf_data(const csp_Buf *b) { return b->p + b->head; }
static inline void csp_buf_clear(csp_Buf *b) { b->head = b->tail = 0; }

/* Appends p[0..n), compacting or growing as needed: 1, or 0 without memory (b unchanged). */
int csp_buf_put(csp_Buf *b, const char *p, size_t n);
/* Free space at the tail for a read of at least want bytes: compacts, then grows to at most
** bound + want while fewer than bound bytes are held. Less than want without memory or at the
** bound. */
size_t csp_buf_grow_room(csp_Buf *b, size_t want, size_t bound);
static inline size_t csp_buf_room(csp_Buf *b, size_t want, size_t bound) {
  return b->cap - b->tail >= want ? b->cap - b->tail : csp_buf_grow_room(b, want, bound);
}
/* Drops n <= csp_buf_len(b) bytes from the head (an emptied buffer starts again at 0). */
void csp_buf_take(csp_Buf *b, size_t n);
/* Frees the memory; b is empty again. */
void csp_buf_free(csp_Buf *b);

#endif
