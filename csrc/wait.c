/* wait.c: wait queues, the one mechanism by which goroutines park on objects and are woken. */
#include "csp.h"

/* A deadline held by a queue (a timer channel's) keeps the program alive only while someone waits. */
static void wq_hold(const csp_WaitHold *h, int delta) {
  if (h->node->pos) *h->ntimed += (uint32_t)delta;
}

void csp_wq_push(csp_WaitQ *q, csp_Waiter *w) {
  w->q = q;
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  if (++q->n == 1 && q->hold) wq_hold(q->hold, 1);
}

void csp_wq_unlink(csp_Waiter *w) {
  csp_WaitQ *q = w->q;
  if (q == NULL) return;
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->next = w->prev = NULL;
  w->q = NULL;
  if (--q->n == 0 && q->hold) wq_hold(q->hold, -1);
}

/* Taking one case of a select completes the select: its other cases are unlinked at once, so
** no later waker can find them (this replaces Go's selectDone flag and the woken side's pass 3).
** A select that also waits on xchans is claimed first: if another thread won it, its waiter is
** dropped and the next one taken. */
csp_Waiter *csp_wq_take(csp_WaitQ *q) {
  csp_Waiter *w;
  while ((w = q->head) != NULL) {
    csp_wq_unlink(w);
    if (w->caseidx > 0) {
      csp_G *g = w->g;
      if (g->xw && !csp_xsel_claim(g)) continue;
      for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
    }
    return w;
  }
  return NULL;
}

void csp_wq_detach(csp_WaitQ *q) {
  while (q->head) {
    q->head->q = q;  /* whatever happened to the waiter, it leaves this queue */
    csp_wq_unlink(q->head);
  }
}
