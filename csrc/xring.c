/* xring.c: a buffered xchan's values: a bounded lock-free queue (Vyukov's MPMC ring) that
** producers and consumers on any thread use without the channel's mutex, closed by a bit of
** its tail so no push lands after the close. */
#include <stdlib.h>
#include <sched.h>
#include "xshared.h"

/* Slot i serves positions i, i + cap, i + 2 cap, ...: its stamp says whose turn it is:
** position pos may push into it when the stamp is 2 pos, pop when it is 2 pos + 1 (doubled, so
** that a ring of one slot is not ambiguous). Stamps are stored minus 2 i, so a zeroed ring
** (calloc: pages untouched until used) is a valid empty one. */
static csp_XSlot *slot(csp_XChan *x, uint64_t pos, uint64_t *base) {
  uint64_t i = pos % x->cap;
  *base = 2 * i;
  return &x->ring[i];
}

static uint64_t stamp(csp_XSlot *s, uint64_t base) {
  return atomic_load_explicit(&s->seq, memory_order_acquire) + base;
}

/* Slots are 32 bytes: the ring starts on a cache line, so no slot straddles two. */
int csp_xring_init(csp_XChan *x) {
  x->ringmem = calloc(1, (size_t)x->cap * sizeof *x->ring + 64);
  x->ring = (csp_XSlot *)(((uintptr_t)x->ringmem + 63) & ~(uintptr_t)63);
  return x->ringmem != NULL;
}

/* Asks for the line two slots on for writing, while this thread works on the current one: the
** fence after a push or pop (xchan.c's after_op) then seldom waits for a line the other side
** holds (xbuffered: 8.4M -> 13.2M items/s; 8 slots on steals lines still being filled: 4.9M). */
static void prefetch_next(csp_XChan *x, uint64_t base) {
  uint64_t j = base / 2 + 2;
  if (j >= x->cap) j -= x->cap;
#if defined(__x86_64__) || defined(__i386__)
  /* prefetchw (PRFCHW; older CPUs decode 0F 0D as a NOP): gcc emits nothing for a write
  ** __builtin_prefetch without -mprfchw */
  if (j < x->cap) __asm__ volatile("prefetchw %0" : : "m"(*(const char *)&x->ring[j]));
#else
  if (j < x->cap) __builtin_prefetch(&x->ring[j], 1);
#endif
}

/* Frees the ring and the values left in it (the last reference is gone: no other thread). */
void csp_xring_free(csp_XChan *x) {
  csp_Msg m;
  while (csp_xring_pop(x, &m)) csp_msg_free(&m);
  free(x->ringmem);
}

int csp_xring_push(csp_XChan *x, csp_Msg *m) {
  uint64_t pos = atomic_load_explicit(&x->tail, memory_order_relaxed);
  for (;;) {
    uint64_t base;
    csp_XSlot *s;
    int64_t d;
    if (pos & CSP_XR_CLOSED) return -1;
    s = slot(x, pos, &base);
    d = (int64_t)(stamp(s, base) - 2 * pos);
    if (d == 0) {
      if (atomic_compare_exchange_weak_explicit(&x->tail, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        s->m = *m;
        m->tag = CSP_M_EMPTY;
        atomic_store_explicit(&s->seq, 2 * pos + 1 - base, memory_order_release);
        prefetch_next(x, base);
        return 1;
      }
    } else if (d < 0) {  /* the slot still holds the value of pos - cap: full, unless tail moved */
      uint64_t t = atomic_load_explicit(&x->tail, memory_order_relaxed);
      if (t == pos) return 0;
      pos = t;
    } else {
      pos = atomic_load_explicit(&x->tail, memory_order_relaxed);
    }
  }
}

int csp_xring_pop(csp_XChan *x, csp_Msg *out) {
  uint64_t pos = atomic_load_explicit(&x->head, memory_order_relaxed);
  for (;;) {
    uint64_t base;
    csp_XSlot *s = slot(x, pos, &base);
    int64_t d = (int64_t)(stamp(s, base) - (2 * pos + 1));
    if (d == 0) {
      if (atomic_compare_exchange_weak_explicit(&x->head, &pos, pos + 1, memory_order_relaxed,
                                                memory_order_relaxed)) {
        *out = s->m;
        atomic_store_explicit(&s->seq, 2 * (pos + x->cap) - base, memory_order_release);
        prefetch_next(x, base);
        return 1;
      }
    } else if (d < 0) {  /* not published: empty, or a push between its reservation and its store */
      return 0;
    } else {
      pos = atomic_load_explicit(&x->head, memory_order_relaxed);
    }
  }
}

/* Is a value published at the head (a pop would find one)? */
int csp_xring_ready(csp_XChan *x) {
  uint64_t base, pos = atomic_load_explicit(&x->head, memory_order_relaxed);
  csp_XSlot *s = slot(x, pos, &base);
  return stamp(s, base) == 2 * pos + 1;
}

/* Is the slot at the tail free (a push would succeed)? */
int csp_xring_room(csp_XChan *x) {
  uint64_t base, pos = atomic_load_explicit(&x->tail, memory_order_relaxed) & ~CSP_XR_CLOSED;
  csp_XSlot *s = slot(x, pos, &base);
  return stamp(s, base) == 2 * pos;
}

/* Values reserved and not yet popped (published or about to be). */
uint32_t csp_xring_len(csp_XChan *x) {
  uint64_t t = atomic_load_explicit(&x->tail, memory_order_acquire) & ~CSP_XR_CLOSED;
  uint64_t h = atomic_load_explicit(&x->head, memory_order_acquire);
  return t > h ? (uint32_t)(t - h > x->cap ? x->cap : t - h) : 0;
}

/* Under the channel's mutex: no push can start after this. */
void csp_xring_close(csp_XChan *x) {
  atomic_fetch_or_explicit(&x->tail, CSP_XR_CLOSED, memory_order_seq_cst);
}

/* Closed, after every value pushed before the close was popped? A push that reserved its slot
** before the close is waited for: it is between two instructions of csp_xring_push. */
int csp_xring_drained(csp_XChan *x) {
  for (;;) {
    uint64_t t = atomic_load_explicit(&x->tail, memory_order_acquire);
    if (!(t & CSP_XR_CLOSED)) return 0;
    if ((t & ~CSP_XR_CLOSED) == atomic_load_explicit(&x->head, memory_order_acquire)) return 1;
    if (csp_xring_ready(x)) return 0;
    sched_yield();
  }
}
