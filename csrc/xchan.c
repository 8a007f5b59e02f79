/* xchan.c: channels between threads: the operations (a buffered xchan's values go through its
** lock-free ring, xring.c; waits, close and unbuffered hand-offs take its mutex, with FIFO
** queues of waiters from any scheduler, xwait.c) and the Lua API. */
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include "xshared.h"

/* ---------------------------------------------------------------- the channel */

static void xchan_destroy(csp_Shared *s) {
  csp_XChan *x = (csp_XChan *)s;
  if (x->cap) csp_xring_free(x);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

csp_XChan *csp_xchan_create(uint32_t cap) {
  csp_XChan *x = (csp_XChan *)aligned_alloc(_Alignof(csp_XChan), sizeof *x);
  if (x == NULL) return NULL;
  memset(x, 0, sizeof *x);
  x->cap = cap;
  if (cap && !csp_xring_init(x)) {
    free(x);
    return NULL;
  }
  pthread_mutex_init(&x->mu, NULL);
  csp_shared_init(&x->h, CSP_X_XCHAN, xchan_destroy);
  return x;
}

static csp_XRec *fire(csp_XWaiter *w, int closed, int retry) {
  w->rec->fired = w->caseidx;
  w->rec->fsend = w->send;
  w->rec->closed = closed;
  w->rec->retry = retry;
  w->rec->cnext = NULL;
  return w->rec;
}

/* Under x->mu, buffered, after a pop: the first parked sender's value takes the free slot. */
static csp_XRec *serve_send(csp_XChan *x) {
  csp_XWaiter *w = csp_xq_take(&x->sendq);
  if (w == NULL) return NULL;
  return fire(w, 0, csp_xring_push(x, &w->msg) <= 0);
}

/* Under x->mu, buffered, after a push: the first parked receiver gets the oldest value (or,
** if another consumer took it meanwhile, tries again); the slot its pop frees goes to a parked
** sender, as after any pop. Returns the records to wake, listed through cnext, or NULL. */
static csp_XRec *serve_recv(csp_XChan *x) {
  csp_XWaiter *w = csp_xq_take(&x->recvq);
  csp_XRec *r, *s = NULL;
  if (w == NULL) return NULL;
  r = fire(w, 0, !csp_xring_pop(x, &w->rec->val));
  if (!r->retry && atomic_load_explicit(&x->sendq.n, memory_order_relaxed)) s = serve_send(x);
  r->cnext = s;
  return r;
}


int csp_xchan_sendready(csp_XChan *x) {
  return x->closed || (x->cap ? csp_xring_room(x) : csp_xq_live(&x->recvq));
}

int csp_xchan_recvready(csp_XChan *x) {
  return x->closed || (x->cap && csp_xring_ready(x)) || csp_xq_live(&x->sendq);
}

/* Under x->mu: takes the next value into *out; returns 1, or 0 if closed, or -1 if nothing
** after all (another thread's consumer or select got there first: a select's own thread
** claims it without this lock, and the ring is lock-free). *woken gets a record to wake after
** unlocking (or NULL). */
int csp_xchan_recv_locked(csp_XChan *x, csp_Msg *out, csp_XRec **woken) {
  csp_XWaiter *w;
  *woken = NULL;
  for (;;) {
    if (x->cap && csp_xring_pop(x, out)) {
      if (atomic_load_explicit(&x->sendq.n, memory_order_relaxed)) *woken = serve_send(x);
      return 1;
    }
    if (x->cap && csp_xring_len(x) > 0) {  /* a push between its reservation and its store: */
      sched_yield();                       /* its value goes before any parked sender's */
      continue;
    }
    if ((w = csp_xq_take(&x->sendq)) != NULL) {  /* unbuffered, or its slot not free yet: hand over */
      *out = w->msg;
      w->msg.tag = CSP_M_EMPTY;
      *woken = fire(w, 0, 0);
      return 1;
    }
    if (!x->closed) return -1;
    if (!x->cap || csp_xring_drained(x)) return 0;
  }
}

/* Under x->mu, open: takes *m (leaving it empty) and returns 1, or 0 if it cannot go yet. */
int csp_xchan_send_locked(csp_XChan *x, csp_Msg *m, csp_XRec **woken) {
  csp_XWaiter *w;
  *woken = NULL;
  if (x->cap) {
    if (csp_xring_push(x, m) <= 0) return 0;
    if (atomic_load_explicit(&x->recvq.n, memory_order_relaxed)) *woken = serve_recv(x);
    return 1;
  }
  if ((w = csp_xq_take(&x->recvq)) == NULL) return 0;
  w->rec->val = *m;
  m->tag = CSP_M_EMPTY;
  *woken = fire(w, 0, 0);
  return 1;
}

/* Under x->mu, after linking a waiter: the fence of after_op's other half, then whether a
** buffered xchan's ring changed meanwhile (nothing else can: the caller holds the lock). */
int csp_xchan_recheck(csp_XChan *x, int send) {
  atomic_thread_fence(memory_order_seq_cst);
  return x->cap && (send ? csp_xring_room(x) : csp_xring_ready(x));
}

/* Receivers of a buffered xchan try again (values may be left); every other waiter sees the
** close. Returns the woken records as a list through cnext. */
static csp_XRec *x_close_locked(csp_XChan *x) {
  csp_XRec *list = NULL, *r;
  csp_XWaiter *w;
  x->closed = 1;
  if (x->cap) csp_xring_close(x);
  while ((w = csp_xq_take(&x->recvq)) != NULL) {
    r = fire(w, !x->cap, x->cap != 0);
    r->cnext = list;
    list = r;
  }
  while ((w = csp_xq_take(&x->sendq)) != NULL) {
    r = fire(w, 1, 0);
    r->cnext = list;
    list = r;
  }
  return list;
}

/* Wakes the records a channel operation completed (a list through cnext; NULL: none). */
void csp_xchan_wake(csp_Sched *S, csp_XRec *list) {
  while (list) {
    csp_XRec *next = list->cnext;
    csp_port_rec_wake(S, list);
    list = next;
  }
}

/* After a lock-free push or pop: serve the other side if it has parked. The fence pairs with
** the one a waiter passes between linking itself and looking at the ring again, so either it
** sees this value (or slot) or this sees it parked. */
static void after_op(csp_Sched *S, csp_XChan *x, csp_XQ *q, csp_XRec *(*serve)(csp_XChan *)) {
  csp_XRec *woken;
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&q->n, memory_order_relaxed) == 0) return;
  pthread_mutex_lock(&x->mu);
  woken = serve(x);
  pthread_mutex_unlock(&x->mu);
  csp_xchan_wake(S, woken);
}

void csp_xchan_closeall(csp_XChan *x) {
  csp_XRec *list = NULL;
  pthread_mutex_lock(&x->mu);
  if (!x->closed) list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  csp_xchan_wake(NULL, list);
}

/* ---------------------------------------------------------------- Lua API */

static csp_XChan *xcheck(lua_State *L, int idx, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, idx, CSP_X_XCHAN, &vop);
  if (x == NULL) csp_tagerror(L, idx, "xchan");
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

int csp_xchan_push_recv(lua_State *L, csp_Msg *m, int ok) {
  if (ok) csp_msg_push(L, m);
  else lua_pushnil(L);
  lua_pushboolean(L, ok);
  return 2;
}

static int msgbox_gc(lua_State *L) {
  csp_msg_free((csp_Msg *)lua_touserdata(L, 1));
  return 0;
}

static const char msgbox_mt = 0;  /* registry: the boxes' metatable */
static const luaL_Reg msgbox_meta[] = {{"__gc", msgbox_gc}, {NULL, NULL}};

/* A record for a send of *m: while getting it may raise, a box owns a blob value. */
static csp_XRec *prepare_send(lua_State *L, csp_Sched *S, csp_G **g, csp_Msg *m) {
  csp_XRec *r;
  csp_Msg *box;
  if (m->tag != CSP_M_BLOB) return csp_xchan_prepare(L, S, g, 1);
  box = (csp_Msg *)lua_newuserdatauv(L, sizeof *box, 0);
  *box = *m;
  csp_keptmeta(L, &msgbox_mt, msgbox_meta);
  lua_setmetatable(L, -2);
  r = csp_xchan_prepare(L, S, g, 1);
  box->tag = CSP_M_EMPTY;
  lua_pop(L, 1);
  return r;
}

/* Under x->mu: sends *m if it can go now; raises if closed. Returns 1 (unlocked) or 0. */
static int send_now(lua_State *L, csp_Sched *S, csp_XChan *x, csp_Msg *m) {
  csp_XRec *woken;
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    csp_msg_free(m);
    luaL_error(L, "send on closed channel");
  }
  if (!csp_xchan_send_locked(x, m, &woken)) return 0;
  pthread_mutex_unlock(&x->mu);
  csp_xchan_wake(S, woken);
  return 1;
}

/* Sends *m: 1 done, or 0 with *pg parked (armed, unlocked) on a new record. */
static int send_try(lua_State *L, csp_Sched *S, csp_XChan *x, csp_Msg *m, csp_G **pg) {
  csp_XRec *r = NULL;
  csp_XWaiter *w;
again:
  for (;;) {
    if (x->cap) {
      int st = csp_xring_push(x, m);
      if (st > 0) {
        csp_xrec_drop(S, r);
        after_op(S, x, &x->recvq, serve_recv);
        return 1;
      }
      if (st < 0) {
        csp_xrec_drop(S, r);
        csp_msg_free(m);
        luaL_error(L, "send on closed channel");
      }
    }
    pthread_mutex_lock(&x->mu);
    if (send_now(L, S, x, m)) {
      csp_xrec_drop(S, r);
      return 1;
    }
    if (r) break;
    pthread_mutex_unlock(&x->mu);
    r = prepare_send(L, S, pg, m);
  }
  w = &r->w[0];
  w->ch = x;
  w->rec = r;
  w->send = 1;
  w->msg = *m;
  csp_shared_ref(&x->h);
  csp_xchan_q_push(&x->sendq, w);
  if (csp_xchan_recheck(x, 1)) {  /* a slot freed meanwhile: r never waits */
    *m = w->msg;
    w->msg.tag = CSP_M_EMPTY;
    csp_xq_unlink(&x->sendq, w);
    pthread_mutex_unlock(&x->mu);
    csp_xrec_release(S, r);
    r = NULL;
    goto again;
  }
  csp_xchan_rec_arm(L, S, *pg, r);
  pthread_mutex_unlock(&x->mu);
  return 0;
}

/* After the wait: 0 sent, -1 to try again; raises if the channel was closed. */
static int send_done(lua_State *L, csp_G *g) {
  csp_XRec *r = csp_xchan_rec_done(g);
  int closed = r->closed, retry = r->retry;
  csp_xrec_release(g->S, r);
  if (closed) return luaL_error(L, "send on closed channel");
  return retry ? -1 : 0;
}

static int xsend_k(lua_State *L, int status, lua_KContext ctx);

static int sent(csp_Sched *S, csp_XChan *x) {
  if (S->race) csp_race_xend(S, x, 1, 1);
  return 0;
}

/* Stack: [xchan, value]. */
static int send_run(lua_State *L, csp_XChan *x) {
  csp_Sched *S = csp_sched_get(L);
  csp_port_due(S);
  if (S->race) csp_race_xbegin(S, x, 1);
  for (;;) {
    csp_G *g = NULL;
    csp_Msg m;
    csp_msg_encode(L, 2, &m);
    if (send_try(L, S, x, &m, &g)) return sent(S, x);
    csp_xchan_park(L, g, "xchan send", xsend_k);
    if (send_done(L, g) == 0) return sent(S, x);  /* main: the goroutine's continuation is xsend_k */
  }
}

static int xsend_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_XChan *x;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  x = ((csp_XRec *)g->xw)->w[0].ch;  /* alive: the proxy at 1 holds it */
  if (send_done(L, g) == 0) return sent(g->S, x);
  return send_run(L, x);
}

static int x_send(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_SEND);
  lua_settop(L, 2);
  return send_run(L, x);
}

/* Receives: 2 with (v, ok) pushed, or -1 with *pg parked (armed, unlocked) on a new record. */
static int recv_try(lua_State *L, csp_Sched *S, csp_XChan *x, csp_G **pg) {
  csp_XRec *woken, *r = NULL;
  csp_Msg m;
  int ok;
  for (;;) {
    if (x->cap && csp_xring_pop(x, &m)) {
      csp_xrec_drop(S, r);
      after_op(S, x, &x->sendq, serve_send);
      return csp_xchan_push_recv(L, &m, 1);
    }
    pthread_mutex_lock(&x->mu);
    if ((ok = csp_xchan_recv_locked(x, &m, &woken)) >= 0) break;
    if (r) {
      r->w[0].ch = x;
      r->w[0].rec = r;
      csp_shared_ref(&x->h);
      csp_xchan_q_push(&x->recvq, &r->w[0]);
      if (!csp_xchan_recheck(x, 0)) {
        csp_xchan_rec_arm(L, S, *pg, r);
        pthread_mutex_unlock(&x->mu);
        return -1;
      }
      csp_xq_unlink(&x->recvq, &r->w[0]);
      pthread_mutex_unlock(&x->mu);
      csp_xrec_release(S, r);  /* a value came meanwhile: r never waits */
      r = NULL;
      continue;
    }
    pthread_mutex_unlock(&x->mu);
    r = csp_xchan_prepare(L, S, pg, 1);
  }
  pthread_mutex_unlock(&x->mu);
  csp_xrec_drop(S, r);
  csp_xchan_wake(S, woken);
  return csp_xchan_push_recv(L, &m, ok);
}

/* After the wait: 2 with (v, ok) pushed, or -1 to try again. */
static int recv_done(lua_State *L, csp_G *g) {
  csp_XRec *r = csp_xchan_rec_done(g);
  csp_Msg m = r->val;
  int ok = !r->closed, retry = r->retry;
  r->val.tag = CSP_M_EMPTY;
  csp_xrec_release(g->S, r);
  if (retry) return -1;
  return csp_xchan_push_recv(L, &m, ok);
}

/* n results pushed, (v, ok) on top. */
static int received(lua_State *L, csp_Sched *S, csp_XChan *x, int n) {
  if (S->race) csp_race_xend(S, x, 0, lua_toboolean(L, -1));
  return n;
}

int csp_xchan_recv(lua_State *L, csp_XChan *x, const char *reason, lua_KFunction k) {
  csp_Sched *S = csp_sched_get(L);
  csp_port_due(S);
  if (S->race) csp_race_xbegin(S, x, 0);
  for (;;) {
    csp_G *g = NULL;
    int n = recv_try(L, S, x, &g);
    if (n >= 0) return received(L, S, x, n);
    csp_xchan_park(L, g, reason, k);
    if ((n = recv_done(L, g)) >= 0) return received(L, S, x, n);  /* main: a goroutine's continuation is k */
  }
}

/* The continuation of a goroutine's csp_xchan_recv with k: pushes (v, ok), or parks again. */
int csp_xchan_recv_k(lua_State *L, int status, lua_KContext ctx, lua_KFunction k) {
  csp_G *g = (csp_G *)ctx;
  csp_XChan *x;
  int n;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  x = ((csp_XRec *)g->xw)->w[0].ch;  /* alive: the caller's stack holds it */
  if ((n = recv_done(L, g)) >= 0) return received(L, g->S, x, n);
  return csp_xchan_recv(L, x, g->reason, k);
}

static int xrecv_k(lua_State *L, int status, lua_KContext ctx) {
  return csp_xchan_recv_k(L, status, ctx, xrecv_k);
}

static int x_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  return csp_xchan_recv(L, x, "xchan receive", xrecv_k);
}

static int xrange_k(lua_State *L, int status, lua_KContext ctx) {
  csp_xchan_recv_k(L, status, ctx, xrange_k);
  lua_pop(L, 1);
  return 1;
}

static int x_range_iter(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  csp_xchan_recv(L, x, "xchan receive", xrange_k);
  lua_pop(L, 1);
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
  csp_Msg m;
  int st = 0;
  lua_settop(L, 2);
  csp_msg_encode(L, 2, &m);
  if (x->cap && (st = csp_xring_push(x, &m)) > 0) {
    after_op(S, x, &x->recvq, serve_recv);
  } else if (st < 0) {
    csp_msg_free(&m);
    return luaL_error(L, "send on closed channel");
  } else {
    pthread_mutex_lock(&x->mu);
    if ((st = send_now(L, S, x, &m)) == 0) {
      pthread_mutex_unlock(&x->mu);
      csp_msg_free(&m);
    }
  }
  if (st > 0 && S->race) {
    csp_race_xbegin(S, x, 1);
    csp_race_xend(S, x, 1, 1);
  }
  lua_pushboolean(L, st > 0);
  return 1;
}

static int x_try_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  csp_Sched *S = csp_sched_get(L);
  csp_XRec *woken = NULL;
  csp_Msg m;
  int ok = 1;
  lua_settop(L, 1);
  if (x->cap && csp_xring_pop(x, &m)) {
    after_op(S, x, &x->sendq, serve_send);
  } else {
    pthread_mutex_lock(&x->mu);
    ok = csp_xchan_recv_locked(x, &m, &woken);
    pthread_mutex_unlock(&x->mu);
    if (ok < 0) {
      lua_pushnil(L);
      lua_pushboolean(L, 0);
      lua_pushboolean(L, 0);
      return 3;
    }
    csp_xchan_wake(S, woken);
  }
  if (S->race) {
    csp_race_xbegin(S, x, 0);
    csp_race_xend(S, x, 0, ok);
  }
  csp_xchan_push_recv(L, &m, ok);
  lua_pushboolean(L, 1);
  return 3;
}

static int x_close(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_CLOSE);
  csp_Sched *S = csp_sched_get(L);
  csp_XRec *list;
  pthread_mutex_lock(&x->mu);
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    return luaL_error(L, "close of closed channel");
  }
  if (S->race) csp_race_merge(S, x, CSP_RACE_CLOSE);  /* a receive that sees it acquires it */
  list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  csp_xchan_wake(S, list);
  return 0;
}

static int x_len(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_ANY);
  lua_pushinteger(L, x->cap ? csp_xring_len(x) : 0);
  return 1;
}

static int x_cap(lua_State *L) {
  lua_pushinteger(L, xcheck(L, 1, CSP_OP_ANY)->cap);
  return 1;
}

static int x_view(lua_State *L, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, 1, CSP_X_XCHAN, &vop);
  if (x == NULL) csp_tagerror(L, 1, "xchan");
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
  if (x == NULL) csp_tagerror(L, 1, "xchan");
  lua_pushfstring(L, "%s: %p (%d/%d)", vop == CSP_OP_SEND ? "xchan<-" : vop == CSP_OP_RECV ? "<-xchan" : "xchan",
                  (void *)x, (int)(x->cap ? csp_xring_len(x) : 0), (int)x->cap);
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
