/* xchan.c: channels between threads (one mutex each, FIFO queues of waiters from any scheduler):
** wait records, the channel operations and the Lua API. */
#include <stdlib.h>
#include <string.h>
#include "xshared.h"

/* ---------------------------------------------------------------- records */

static csp_XRec *rec_new(lua_State *L, csp_Sched *S, int n) {
  csp_XRec *r = (csp_XRec *)calloc(1, sizeof *r + (size_t)n * sizeof(csp_XWaiter));
  if (r == NULL) luaL_error(L, "not enough memory");
  r->n = n;
  r->S = S;
  atomic_init(&r->done, 0);
  return r;
}

void csp_xchan_q_push(csp_XQ *q, csp_XWaiter *w) {
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  w->linked = 1;
}

static void q_unlink(csp_XQ *q, csp_XWaiter *w) {
  if (!w->linked) return;
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->next = w->prev = NULL;
  w->linked = 0;
}

/* Frees a record from any thread: unlinks what is still linked, drops refs. */
void csp_xchan_rec_free(csp_XRec *r) {
  for (int i = 0; i < r->n; i++) {
    csp_XWaiter *w = &r->w[i];
    if (w->ch == NULL) continue;
    pthread_mutex_lock(&w->ch->mu);
    q_unlink(w->send ? &w->ch->sendq : &w->ch->recvq, w);
    pthread_mutex_unlock(&w->ch->mu);
    csp_blob_free(w->msg);
    csp_shared_unref(&w->ch->h);
  }
  csp_blob_free(r->val);
  if (r->port) csp_port_unref(r->port);
  free(r);
}

/* The first waiter of q whose record this caller wins (losers were completed elsewhere). */
static csp_XWaiter *q_take(csp_XQ *q) {
  csp_XWaiter *w;
  while ((w = q->head) != NULL) {
    int zero = 0;
    q_unlink(q, w);
    if (atomic_compare_exchange_strong(&w->rec->done, &zero, 1)) return w;
  }
  return NULL;
}

/* Drops stale waiters at the head: is there a live one? */
static int q_live(csp_XQ *q) {
  csp_XWaiter *w;
  while ((w = q->head) != NULL && atomic_load(&w->rec->done)) q_unlink(q, w);
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
  atomic_store(&P->dead, 1);
  {
    csp_XRec *x = csp_port_take(P), *next;
    for (; x; x = next) { next = x->inext; csp_xchan_rec_free(x); }
  }
  uv_close((uv_handle_t *)P->poll, csp_close_free);
  S->port = NULL;
  csp_port_unref(P);
}

/* ---------------------------------------------------------------- the channel */

static void xchan_destroy(csp_Shared *s) {
  csp_XChan *x = (csp_XChan *)s;
  for (uint32_t i = 0; i < x->count; i++) csp_blob_free(x->ring[(x->head + i) % x->cap]);
  free(x->ring);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

csp_XChan *csp_xchan_create(uint32_t cap) {
  csp_XChan *x = (csp_XChan *)calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  if (cap && (x->ring = (csp_Blob **)calloc(cap, sizeof *x->ring)) == NULL) {
    free(x);
    return NULL;
  }
  x->cap = cap;
  pthread_mutex_init(&x->mu, NULL);
  csp_shared_init(&x->h, CSP_X_XCHAN, xchan_destroy);
  return x;
}

int csp_xchan_sendready(csp_XChan *x) {
  return x->closed || x->count < x->cap || q_live(&x->recvq);
}

int csp_xchan_recvready(csp_XChan *x) {
  return x->count > 0 || x->closed || q_live(&x->sendq);
}

/* Under x->mu: *woken gets a record to wake after unlocking (or NULL). *ok: 1 a value, 0 closed,
** -1 nothing after all (the only sender's select was won meanwhile by its own thread: a claim
** takes no channel lock, so a waiter seen live may be gone when it is taken). */
csp_Blob *csp_xchan_recv_locked(csp_XChan *x, int *ok, csp_XRec **woken) {
  csp_XWaiter *w;
  csp_Blob *b;
  *woken = NULL;
  if (x->count > 0) {
    b = x->ring[x->head];
    x->ring[x->head] = NULL;
    if (++x->head == x->cap) x->head = 0;
    x->count--;
    if ((w = q_take(&x->sendq)) != NULL) {  /* a slot freed: the first sender's value takes it */
      x->ring[(x->head + x->count) % x->cap] = w->msg;
      x->count++;
      w->msg = NULL;
      w->rec->fired = w->caseidx;
      w->rec->fsend = 1;
      *woken = w->rec;
    }
    *ok = 1;
    return b;
  }
  if ((w = q_take(&x->sendq)) != NULL) {
    b = w->msg;
    w->msg = NULL;
    w->rec->fired = w->caseidx;
    w->rec->fsend = 1;
    *woken = w->rec;
    *ok = 1;
    return b;
  }
  *ok = x->closed ? 0 : -1;
  return NULL;
}

/* Under x->mu, open: takes b and returns 1, or 0 if no receiver is left and the buffer is full
** (see csp_xchan_recv_locked). */
int csp_xchan_send_locked(csp_XChan *x, csp_Blob *b, csp_XRec **woken) {
  csp_XWaiter *w = q_take(&x->recvq);
  *woken = NULL;
  if (w) {
    w->rec->val = b;
    w->rec->fired = w->caseidx;
    w->rec->fsend = 0;
    *woken = w->rec;
    return 1;
  }
  if (x->count >= x->cap) return 0;
  x->ring[(x->head + x->count) % x->cap] = b;
  x->count++;
  return 1;
}

/* Returns the woken records as a list through cnext. */
static csp_XRec *x_close_locked(csp_XChan *x) {
  csp_XRec *list = NULL;
  csp_XWaiter *w;
  x->closed = 1;
  while ((w = q_take(&x->recvq)) != NULL) {
    w->rec->fired = w->caseidx;
    w->rec->fsend = 0;
    w->rec->closed = 1;
    w->rec->cnext = list;
    list = w->rec;
  }
  while ((w = q_take(&x->sendq)) != NULL) {
    w->rec->fired = w->caseidx;
    w->rec->fsend = 1;
    w->rec->closed = 1;
    w->rec->cnext = list;
    list = w->rec;
  }
  return list;
}

static void wake_list(csp_Sched *S, csp_XRec *list) {
  while (list) {
    csp_XRec *next = list->cnext;
    csp_port_rec_wake(S, list);
    list = next;
  }
}

void csp_xchan_closeall(csp_XChan *x) {
  csp_XRec *list = NULL;
  pthread_mutex_lock(&x->mu);
  if (!x->closed) list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  wake_list(NULL, list);
}

/* ---------------------------------------------------------------- Lua API */

static csp_XChan *xcheck(lua_State *L, int idx, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, idx, CSP_X_XCHAN, &vop);
  if (x == NULL) luaL_typeerror(L, idx, "xchan");
  if (vop == CSP_OP_SEND && op == CSP_OP_RECV) luaL_error(L, "recv from send-only channel");
  if (vop == CSP_OP_RECV && op == CSP_OP_SEND) luaL_error(L, "send to receive-only channel");
  if (vop == CSP_OP_RECV && op == CSP_OP_CLOSE) luaL_error(L, "close of receive-only channel");
  return x;
}

/* select.c: the xchan at idx for a case, or NULL if it is not one. */
void *csp_xchan_case(lua_State *L, int idx, int send) {
  if (csp_proxy_test(L, idx, CSP_X_XCHAN, NULL) == NULL) return NULL;
  return xcheck(L, idx, send ? CSP_OP_SEND : CSP_OP_RECV);
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

int csp_xchan_push_recv(lua_State *L, csp_Blob *b, int ok) {
  if (!ok) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_pushnil(L);  /* a slot for the value, so the blob is freed before anything can raise */
  {
    int n = csp_blob_decode(L, b);
    csp_blob_free(b);
    if (n != 1) lua_settop(L, lua_gettop(L) - n);
    else lua_replace(L, -2);
  }
  lua_pushboolean(L, 1);
  return 2;
}

static int xsend_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_XRec *r;
  int closed;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  r = csp_xchan_rec_done(g);
  closed = r->closed;
  csp_xchan_rec_free(r);
  if (closed) return luaL_error(L, "send on closed channel");
  return 0;
}

/* Parking needs g (csp_sched_self raises where one cannot block) and a record: both are got
** with no lock held, then the caller relocks and checks again. */
csp_XRec *csp_xchan_prepare(lua_State *L, csp_Sched *S, csp_G **g, int n) {
  *g = csp_sched_self(L, S);
  csp_port_get(L, S);
  return rec_new(L, S, n);
}

static int x_send(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_SEND);
  csp_Sched *S = csp_sched_get(L);
  csp_Blob *b;
  csp_XRec *woken, *r = NULL;
  csp_G *g = NULL;
  lua_settop(L, 2);
  b = csp_blob_encode(L, 2, 1);
  for (;;) {
    pthread_mutex_lock(&x->mu);
    if (x->closed) {
      pthread_mutex_unlock(&x->mu);
      csp_blob_free(b);
      free(r);
      return luaL_error(L, "send on closed channel");
    }
    if ((x->count < x->cap || q_live(&x->recvq)) && csp_xchan_send_locked(x, b, &woken)) {
      pthread_mutex_unlock(&x->mu);
      free(r);
      if (woken) csp_port_rec_wake(S, woken);
      return 0;
    }
    if (r) break;
    pthread_mutex_unlock(&x->mu);
    {
      /* b would leak if this raised: let a box own it meanwhile */
      csp_Blob **box = (csp_Blob **)lua_newuserdatauv(L, sizeof *box, 0);
      *box = b;
      r = csp_xchan_prepare(L, S, &g, 1);
      lua_pop(L, 1);
    }
  }
  r->w[0].ch = x;
  r->w[0].rec = r;
  r->w[0].send = 1;
  r->w[0].msg = b;
  csp_shared_ref(&x->h);
  csp_xchan_q_push(&x->sendq, &r->w[0]);
  csp_xchan_rec_arm(L, S, g, r);
  pthread_mutex_unlock(&x->mu);
  return csp_sched_park(L, g, "chan send", (lua_KContext)g, xsend_k);
}

static int xrecv_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_XRec *r;
  csp_Blob *b;
  int ok;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  r = csp_xchan_rec_done(g);
  b = r->val;
  r->val = NULL;
  ok = !r->closed;
  csp_xchan_rec_free(r);
  return csp_xchan_push_recv(L, b, ok);
}

/* Receives into the stack: returns 2 (v, ok), or parks with k. */
static int x_recv_do(lua_State *L, csp_XChan *x, lua_KFunction k) {
  csp_Sched *S = csp_sched_get(L);
  csp_XRec *woken, *r = NULL;
  csp_G *g = NULL;
  csp_Blob *b;
  int ok;
  for (;;) {
    pthread_mutex_lock(&x->mu);
    if (csp_xchan_recvready(x) && (b = csp_xchan_recv_locked(x, &ok, &woken), ok >= 0)) {
      pthread_mutex_unlock(&x->mu);
      free(r);
      if (woken) csp_port_rec_wake(S, woken);
      return csp_xchan_push_recv(L, b, ok);
    }
    if (r) break;
    pthread_mutex_unlock(&x->mu);
    r = csp_xchan_prepare(L, S, &g, 1);
  }
  r->w[0].ch = x;
  r->w[0].rec = r;
  csp_shared_ref(&x->h);
  csp_xchan_q_push(&x->recvq, &r->w[0]);
  csp_xchan_rec_arm(L, S, g, r);
  pthread_mutex_unlock(&x->mu);
  return csp_sched_park(L, g, "chan receive", (lua_KContext)g, k);
}

static int x_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  return x_recv_do(L, x, xrecv_k);
}

static int xrange_k(lua_State *L, int status, lua_KContext ctx) {
  xrecv_k(L, status, ctx);
  lua_pop(L, 1);
  return 1;
}

static int x_range_iter(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  if (x_recv_do(L, x, xrange_k) == 2) lua_pop(L, 1);
  return 1;
}

static int x_range(lua_State *L) {
  xcheck(L, 1, CSP_OP_RECV);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, x_range_iter, 1);
  lua_pushvalue(L, 1);
  return 2;
}

static int x_try_send(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_SEND);
  csp_Sched *S = csp_sched_get(L);
  csp_Blob *b;
  csp_XRec *woken;
  lua_settop(L, 2);
  b = csp_blob_encode(L, 2, 1);
  pthread_mutex_lock(&x->mu);
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    csp_blob_free(b);
    return luaL_error(L, "send on closed channel");
  }
  if ((x->count < x->cap || q_live(&x->recvq)) && csp_xchan_send_locked(x, b, &woken)) {
    pthread_mutex_unlock(&x->mu);
    if (woken) csp_port_rec_wake(S, woken);
    lua_pushboolean(L, 1);
    return 1;
  }
  pthread_mutex_unlock(&x->mu);
  csp_blob_free(b);
  lua_pushboolean(L, 0);
  return 1;
}

static int x_try_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  csp_Sched *S = csp_sched_get(L);
  csp_XRec *woken;
  csp_Blob *b;
  int ok;
  lua_settop(L, 1);
  pthread_mutex_lock(&x->mu);
  if (!csp_xchan_recvready(x) || (b = csp_xchan_recv_locked(x, &ok, &woken), ok < 0)) {
    pthread_mutex_unlock(&x->mu);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushboolean(L, 0);
    return 3;
  }
  pthread_mutex_unlock(&x->mu);
  if (woken) csp_port_rec_wake(S, woken);
  csp_xchan_push_recv(L, b, ok);
  lua_pushboolean(L, 1);
  return 3;
}

static int x_close(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_CLOSE);
  csp_XRec *list;
  pthread_mutex_lock(&x->mu);
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    return luaL_error(L, "close of closed channel");
  }
  list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  wake_list(csp_sched_get(L), list);
  return 0;
}

static int x_len(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_ANY);
  uint32_t n;
  pthread_mutex_lock(&x->mu);
  n = x->count;
  pthread_mutex_unlock(&x->mu);
  lua_pushinteger(L, n);
  return 1;
}

static int x_cap(lua_State *L) {
  lua_pushinteger(L, xcheck(L, 1, CSP_OP_ANY)->cap);
  return 1;
}

static int x_view(lua_State *L, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, 1, CSP_X_XCHAN, &vop);
  if (x == NULL) return luaL_typeerror(L, 1, "xchan");
  if (vop != CSP_OP_ANY && vop != op)
    return luaL_error(L, "cannot convert %s channel to %s", vop == CSP_OP_SEND ? "send-only" : "receive-only",
                      op == CSP_OP_SEND ? "send-only" : "receive-only");
  csp_proxy_push(L, &x->h, op);
  return 1;
}

static int x_sender(lua_State *L) { return x_view(L, CSP_OP_SEND); }
static int x_receiver(lua_State *L) { return x_view(L, CSP_OP_RECV); }

static int x_base(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_ANY);
  csp_proxy_push(L, &x->h, CSP_OP_ANY);
  return 1;
}

static int x_tostring(lua_State *L) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, 1, CSP_X_XCHAN, &vop);
  if (x == NULL) return luaL_typeerror(L, 1, "xchan");
  lua_pushfstring(L, "%s: %p (%d/%d)", vop == CSP_OP_SEND ? "xchan<-" : vop == CSP_OP_RECV ? "<-xchan" : "xchan",
                  (void *)x, (int)x->count, (int)x->cap);
  return 1;
}

static int x_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  csp_XChan *x;
  luaL_argcheck(L, cap >= 0 && cap <= (1 << 26), 1, "makechan: size out of range");
  if ((x = csp_xchan_create((uint32_t)cap)) == NULL) return luaL_error(L, "not enough memory");
  csp_proxy_push(L, &x->h, CSP_OP_ANY);
  csp_shared_unref(&x->h);  /* the proxy's ref is the only one */
  return 1;
}

static const luaL_Reg xchan_methods[] = {
  {"send", x_send},
  {"recv", x_recv},
  {"close", x_close},
  {"range", x_range},
  {"try_send", x_try_send},
  {"try_recv", x_try_recv},
  {"len", x_len},
  {"cap", x_cap},
  {"base", x_base},
  {"sender", x_sender},
  {"receiver", x_receiver},
  {NULL, NULL}
};

void csp_xchan_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"xchan", x_new}, {NULL, NULL}};
  static const luaL_Reg metas[] = {{"__len", x_len}, {"__tostring", x_tostring}, {NULL, NULL}};
  csp_proxy_meta(L, CSP_X_XCHAN, "csp.xchan", xchan_methods, metas);
  csp_setfuncs(L, funcs);
}
