/* xwait.c: waits another thread may complete: a parked goroutine's record (one waiter per
** xchan case), the xchans' waiter queues, claiming, cancelling, parking. */
#include <stdlib.h>
#include <string.h>
#include "xshared.h"

csp_XRec *csp_xrec_new(lua_State *L, csp_Sched *S, int n) {
  csp_Port *P = (csp_Port *)S->port;
  csp_XRec *r;
  if (n == 1 && P != NULL && P->spare != NULL) {  /* most waits: one plain send or receive */
    r = P->spare;
    P->spare = NULL;
    memset(r, 0, sizeof *r + sizeof(csp_XWaiter));
  } else if ((r = (csp_XRec *)calloc(1, sizeof *r + (size_t)n * sizeof(csp_XWaiter))) == NULL) {
    luaL_error(L, "not enough memory");
  }
  r->n = n;
  r->S = S;
  atomic_init(&r->done, 0);
  return r;
}

void csp_xchan_q_push(csp_XQ *q, csp_XWaiter *w) {
  atomic_fetch_add_explicit(&q->n, 1, memory_order_relaxed);
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  w->linked = 1;
}

void csp_xq_unlink(csp_XQ *q, csp_XWaiter *w) {
  if (!w->linked) return;
  atomic_fetch_sub_explicit(&q->n, 1, memory_order_relaxed);
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->next = w->prev = NULL;
  w->linked = 0;
}

/* Under w->ch->mu: takes w out of its queue. */
void csp_xchan_q_unlink(csp_XWaiter *w) {
  csp_xq_unlink(w->send ? &w->ch->sendq : &w->ch->recvq, w);
}

/* Frees a record from any thread: unlinks what is still linked, drops refs. */
void csp_xchan_rec_free(csp_XRec *r) {
  for (int i = 0; i < r->n; i++) {
    csp_XWaiter *w = &r->w[i];
    if (w->ch == NULL) continue;
    pthread_mutex_lock(&w->ch->mu);
    csp_xq_unlink(w->send ? &w->ch->sendq : &w->ch->recvq, w);
    pthread_mutex_unlock(&w->ch->mu);
    csp_msg_free(&w->msg);
    csp_shared_unref(&w->ch->h);
  }
  csp_msg_free(&r->val);
  if (r->port) csp_port_unref(r->port);
  free(r);
}

/* Owner thread: r holds nothing (never armed, or released): kept as the port's spare record
** (so a park costs no calloc and free: callgrind, 630 of ~3,300 instructions per ping-pong hop),
** else freed. */
void csp_xrec_drop(csp_Sched *S, csp_XRec *r) {
  csp_Port *P = (csp_Port *)S->port;
  if (r != NULL && r->n == 1 && P != NULL && P->spare == NULL) P->spare = r;
  else free(r);
}

/* Owner thread, after csp_xchan_rec_done of a plain send or receive: as csp_xchan_rec_free, but
** without the channel's lock when the completer unlinked the waiter (it did so under the lock
** before it posted: the post orders that write before this read), and keeping the memory. */
void csp_xrec_release(csp_Sched *S, csp_XRec *r) {
  csp_XWaiter *w = &r->w[0];
  if (r->n != 1 || w->linked) {
    csp_xchan_rec_free(r);
    return;
  }
  if (w->ch != NULL) {
    csp_msg_free(&w->msg);
    csp_shared_unref(&w->ch->h);
  }
  csp_msg_free(&r->val);
  if (r->port) csp_port_unref(r->port);
  csp_xrec_drop(S, r);
}

/* The first waiter of q whose record this caller wins (losers were completed elsewhere). */
csp_XWaiter *csp_xq_take(csp_XQ *q) {
  csp_XWaiter *w;
  while ((w = q->head) != NULL) {
    int zero = 0;
    csp_xq_unlink(q, w);
    if (atomic_compare_exchange_strong(&w->rec->done, &zero, 1)) return w;
  }
  return NULL;
}

/* Drops stale waiters at the head: is there a live one? */
int csp_xq_live(csp_XQ *q) {
  csp_XWaiter *w;
  while ((w = q->head) != NULL && atomic_load(&w->rec->done)) csp_xq_unlink(q, w);
  return w != NULL;
}

/* wait.c: a local waker taking a select's case claims the select (its xchan cases may race). */
int csp_xsel_claim(csp_G *g) {
  csp_XRec *r = (csp_XRec *)g->xw;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&r->done, &zero, 1)) return 0;
  r->delivered = 1;
  return 1;
}

static int xsel_stale(csp_G *g) {
  return g->xw != NULL && atomic_load(&((csp_XRec *)g->xw)->done);
}

/* select.c: a local case whose only waiters are selects another thread won is not ready. */
int csp_xsel_ready(csp_Chan *c, int send) {
  csp_WaitQ *q = send ? &c->recvq : &c->sendq;
  while (q->head && q->head->caseidx > 0 && xsel_stale(q->head->g)) csp_wq_unlink(q->head);
  return csp_chan_ready(c, send);
}

/* sched.c: g's wait is cancelled (panic, deadlock, thread end). */
void csp_xchan_cancel(csp_G *g) {
  csp_XRec *r = (csp_XRec *)g->xw;
  int zero = 0;
  g->xw = NULL;
  r->port->nwait--;
  if (atomic_compare_exchange_strong(&r->done, &zero, 1) || r->delivered) csp_xchan_rec_free(r);
  else r->orphan = 1;  /* a post is in flight: the drain frees it */
}

/* sched.c, the scheduler's end: cancel every wait, then retire the port. */
void csp_port_teardown(csp_Sched *S) {
  csp_Port *P = (csp_Port *)S->port;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (g->xw) csp_xchan_cancel(g);
  if (S->maing.xw) csp_xchan_cancel(&S->maing);
  if (P == NULL) return;
  csp_port_register(P, 0);
  csp_port_retire(P);
  atomic_store(&P->dead, 1);
  {
    csp_XRec *x = csp_port_take(P), *next;
    for (; x; x = next) { next = x->inext; csp_xchan_rec_free(x); }
  }
  uv_close((uv_handle_t *)P->poll, csp_close_free);
  uv_close((uv_handle_t *)P->backstop, csp_close_free);
  free(P->spare);
  S->port = NULL;
  csp_port_unref(P);
}

/* Parking needs g (csp_sched_self raises where one cannot block) and a record: both are got
** with no lock held, then the caller relocks and checks again. */
csp_XRec *csp_xchan_prepare(lua_State *L, csp_Sched *S, csp_G **g, int n) {
  *g = csp_sched_self(L, S);
  csp_port_get(L, S);
  return csp_xrec_new(L, S, n);
}

static int nop_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

/* Parks g (armed, lock released): a goroutine yields to k; main runs the scheduler until it is
** readied and returns. */
int csp_xchan_park(lua_State *L, csp_G *g, const char *reason, lua_KFunction k) {
  if (g != &g->S->maing) return csp_sched_park(L, g, reason, (lua_KContext)g, k);
  return csp_sched_park(L, g, reason, 0, nop_k);
}

/* Parks g on r (its waiters linked, their channels locked by the caller, who unlocks next). */
void csp_xchan_rec_arm(lua_State *L, csp_Sched *S, csp_G *g, csp_XRec *r) {
  csp_Port *P = csp_port_get(L, S);
  atomic_fetch_add_explicit(&P->refs, 1, memory_order_relaxed);
  r->port = P;
  r->g = g;
  g->xw = r;
  P->nwait++;
}

csp_XRec *csp_xchan_rec_done(csp_G *g) {  /* the continuation takes its record */
  csp_XRec *r = (csp_XRec *)g->xw;
  g->xw = NULL;
  r->port->nwait--;
  return r;
}

