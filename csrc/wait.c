/* wait.c: how goroutines park and are woken: wait queues, requests, deadlines. */
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

/* ---------------------------------------------------------------- requests */

int csp_req_park(lua_State *L, csp_Req *r, csp_G *g, const char *reason, lua_KContext ctx,
                 lua_KFunction k) {
  r->g = g;
  r->done = 0;
  g->req = r;
  return csp_sched_park(L, g, reason, ctx, k);
}

int csp_req_done(csp_Req *r, int nargs) {
  csp_G *g = r->g;
  r->done = 1;
  if (g == NULL) {  /* at lua_close too: the scheduler's __gc let go of every request */
    r->free_fn(r);
    return 0;
  }
  if (g->state != CSP_G_WAITING) return 0;  /* woken otherwise (a deadline): it comes for r */
  csp_sched_ready(g->S, g, nargs);
  return 1;
}

int csp_req_end(csp_Req *r) {
  r->g->req = NULL;
  r->g = NULL;
  return r->done;
}

int csp_req_drop(csp_Req *r, int how) {
  csp_G *g = r->g;
  int done = r->done;
  if (g == NULL) return 0;
  g->req = NULL;
  r->g = NULL;
  if (how >= 0 && g->state == CSP_G_WAITING) {
    g->wake = (uint8_t)how;
    csp_sched_ready(g->S, g, 0);
  }
  return done;
}

void csp_req_cancel(csp_G *g) {
  csp_Req *r = g->req;
  g->req = NULL;
  r->g = NULL;
  if (r->done) r->free_fn(r);
}

/* ---------------------------------------------------------------- deadlines */

static void wait_timeout_fire(csp_Sched *S, csp_TimerNode *t) {
  csp_G *g = (csp_G *)((char *)t - offsetof(csp_G, tn));
  if (g->state != CSP_G_WAITING) return;  /* already woken by its operation */
  csp_wq_unlink(&g->w);
  g->wake = CSP_WAKE_TIMEOUT;
  csp_sched_ready_timer(S, g, 0);
}

/* The heap counts the node in ntimed (a goroutine waits on it) while it is armed. */
void csp_wait_deadline(lua_State *L, csp_G *g, uint64_t when) {
  g->tn.fire = wait_timeout_fire;
  g->tn.waiters = NULL;
  csp_timer_add(L, g->S, &g->tn, when);
}

void csp_wait_undeadline(csp_G *g) {
  if (g->tn.pos) csp_timer_del(g->S, &g->tn);
}
