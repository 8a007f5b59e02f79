/* wait.c: wait queues, the one mechanism by which goroutines park on objects and are woken. */
#include "csp.h"

/* A deadline held by a queue (a timer channel's) keeps the program alive only while someone waits. */
void csp_wq_hold(csp_WaitQ *q, int delta) {
  q->n += (uint32_t)delta;
  if (q->n == (delta > 0 ? 1u : 0u) && q->hold->node->pos) *q->hold->ntimed += (uint32_t)delta;
}

/* Taking one case of a select completes the select: its other cases are unlinked at once, so
** no later waker can find them (this replaces Go's selectDone flag and the woken side's pass 3).
** A select that also waits on xchans is claimed first: if another thread won it, its waiter is
** dropped and the caller takes the next one. */
int csp_wq_selected(csp_Waiter *w) {
  csp_G *g = w->g;
  if (g->xw && !csp_xsel_claim(g)) return 0;
  for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
  return 1;
}

void csp_wq_detach(csp_WaitQ *q) {
  while (q->head) {
    q->head->q = q;  /* whatever happened to the waiter, it leaves this queue */
    csp_wq_unlink(q->head);
  }
}
