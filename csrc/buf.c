/* buf.c: the one growable byte buffer (csp_Buf): appends at the tail, takes from the head. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"

/* Moves the held bytes to the start of the memory. */
static void buf_compact(csp_Buf *b) {
  size_t used = b->tail - b->head;
  if (b->head == 0) return;
  memmove(b->p, b->p + b->head, used);
  b->head = 0;
  b->tail = used;
}

/* Grows the memory (doubling from CSP_BUF_INIT) until need bytes fit at the tail, to at most
** max bytes: 1, or 0 without memory or when it cannot grow. */
static int buf_grow(csp_Buf *b, size_t need, size_t max) {
  size_t ncap = b->cap ? b->cap * 2 : CSP_BUF_INIT;
  char *np;
  if (need > SIZE_MAX / 4 - b->tail) return 0;
  while (ncap < b->tail + need) ncap *= 2;
  if (ncap > max) ncap = max;
  if (ncap <= b->cap || (np = realloc(b->p, ncap)) == NULL) return 0;
  b->p = np;
  b->cap = ncap;
  return 1;
}

int csp_buf_put(csp_Buf *b, const char *p, size_t n) {
  if (b->cap - b->tail < n) {
    buf_compact(b);
    if (b->cap - b->tail < n && !buf_grow(b, n, SIZE_MAX)) return 0;
  }
  if (n > 0) memcpy(b->p + b->tail, p, n);
  b->tail += n;
  return 1;
}

/* csp_buf_room's slow path: too little free space at the tail. */
size_t csp_buf_grow_room(csp_Buf *b, size_t want, size_t bound) {
  buf_compact(b);
  if (b->cap - b->tail >= want || b->tail >= bound) return b->cap - b->tail;
  buf_grow(b, want, bound + want);
  return b->cap - b->tail;
}

void csp_buf_take(csp_Buf *b, size_t n) {
  b->head += n;
  if (b->head == b->tail) b->head = b->tail = 0;
}

void csp_buf_free(csp_Buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
