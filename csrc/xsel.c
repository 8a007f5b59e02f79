/* xsel.c: select with xchan cases (locks every channel in address order, or parks on all). */
#include <stdlib.h>
#include <string.h>
#include "xshared.h"

/* ---------------------------------------------------------------- select with xchan cases */

typedef struct XCase {
  csp_Chan *c;
  csp_XChan *x;
  csp_Msg msg;        /* a send case's value, until it is linked or sent */
  int send, order;    /* order: the ready cases' indices (xsel_pick) */
} XCase;

typedef struct XSelBox {
  int n;
  csp_XChan **locks;  /* distinct xchans, by address */
  int nlocks;
  XCase cs[];
} XSelBox;

static const char xselbox_mt = 0;

static void free_msgs(XSelBox *bx) {
  for (int i = 0; i < bx->n; i++) csp_msg_free(&bx->cs[i].msg);
}

static int xselbox_gc(lua_State *L) {
  free_msgs((XSelBox *)lua_touserdata(L, 1));
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
  return x < y ? -1 : x > y;
}

static void lock_all(XSelBox *bx) {
  for (int i = 0; i < bx->nlocks; i++) pthread_mutex_lock(&bx->locks[i]->mu);
}

static void unlock_all(XSelBox *bx) {
  for (int i = bx->nlocks - 1; i >= 0; i--) pthread_mutex_unlock(&bx->locks[i]->mu);
}

/* The race detector's edges of a select's xchan cases (csp_race_xbegin): each case begins as the
** select parks; only the case that fired ends. */
static void xsel_race_begin(csp_Sched *S, XSelBox *bx) {
  for (int i = 0; i < bx->n; i++)
    if (bx->cs[i].x) csp_race_xbegin(S, bx->cs[i].x, bx->cs[i].send);
}

static void xsel_race_end(csp_Sched *S, csp_XRec *r) {
  for (int k = 0; k < r->n; k++)
    if (r->w[k].caseidx == r->fired) csp_race_xend(S, r->w[k].ch, r->fsend, !r->closed);
}

/* After the wait: the select's results, or -1 to run it again (an xchan case's value went to
** another receiver, or its slot to another sender). */
static int xsel_done(lua_State *L, csp_G *g) {
  int n = g->nargs, fired, fsend, closed, retry;
  csp_XRec *r;
  csp_Msg m;
  csp_port_unlink_locals(g);
  r = csp_xchan_rec_done(g);
  if (n > 0) {  /* a local case fired: the usual results are on the stack */
    csp_xchan_rec_free(r);
    if (g->wake == CSP_WAKE_CLOSED) return luaL_error(L, "send on closed channel");
    return csp_select_finish(L, (int)lua_tointeger(L, -n), n);
  }
  if (g->S->race && !r->retry) xsel_race_end(g->S, r);
  fired = r->fired;
  fsend = r->fsend;
  closed = r->closed;
  retry = r->retry;
  m = r->val;
  r->val.tag = CSP_M_EMPTY;
  csp_xchan_rec_free(r);
  if (retry) return -1;
  if (fsend) {
    if (closed) return luaL_error(L, "send on closed channel");
    lua_pushinteger(L, fired);
    return csp_select_finish(L, fired, 1);
  }
  lua_pushinteger(L, fired);
  csp_xchan_push_recv(L, &m, !closed);
  return csp_select_finish(L, fired, 3);
}

static int xselect_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_XRec *r;
  int n, ncases, ordered;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  r = (csp_XRec *)g->xw;
  ncases = r->ncases;
  ordered = r->ordered;
  if ((n = xsel_done(L, g)) >= 0) return n;
  lua_settop(L, CSP_SEL_CASE(ncases));
  return csp_xselect(L, g->S, ncases, ordered, 0);  /* it parked: it has no default */
}

/* Under the locks: picks a ready case (uniformly, or the first with ordered); -1 if none. The
** ready cases are listed in cs[].order as select.c lists them. */
static int xsel_pick(csp_Sched *S, XSelBox *bx, int ordered) {
  XCase *cs = bx->cs;
  int nready = 0;
  for (int i = 0; i < bx->n; i++) {
    cs[nready].order = i;
    if (cs[i].x) nready += cs[i].send ? csp_xchan_sendready(cs[i].x) : csp_xchan_recvready(cs[i].x);
    else nready += cs[i].c && csp_xsel_ready(cs[i].c, cs[i].send);
  }
  return nready > 0 ? cs[csp_select_pick(S, nready, ordered)].order : -1;
}

#define XSEL_RETRY (-2)

/* Under the locks: runs the ready case pick, unlocks, returns the select's results, or
** XSEL_RETRY when an xchan case seen ready was not (see csp_xchan_recv_locked): the caller starts over. */
static int xsel_fire(lua_State *L, csp_Sched *S, XSelBox *bx, int pick) {
  XCase *c = &bx->cs[pick];
  csp_XRec *woken = NULL;
  if (c->x == NULL) {
    int nres;
    unlock_all(bx);
    if ((nres = csp_select_do(L, pick + 1, c->c, c->send)) < 0) return XSEL_RETRY;
    free_msgs(bx);
    return csp_select_finish(L, pick + 1, nres);
  }
  if (c->send) {
    if (c->x->closed) {
      unlock_all(bx);
      free_msgs(bx);
      return luaL_error(L, "send on closed channel");
    }
    if (!csp_xchan_send_locked(c->x, &c->msg, &woken)) {
      unlock_all(bx);
      return XSEL_RETRY;
    }
    unlock_all(bx);
    free_msgs(bx);
    csp_xchan_wake(S, woken);
    if (S->race) {
      csp_race_xbegin(S, c->x, 1);
      csp_race_xend(S, c->x, 1, 1);
    }
    lua_pushinteger(L, pick + 1);
    return csp_select_finish(L, pick + 1, 1);
  } else {
    csp_Msg m;
    int ok = csp_xchan_recv_locked(c->x, &m, &woken);
    unlock_all(bx);
    if (ok < 0) return XSEL_RETRY;
    free_msgs(bx);
    csp_xchan_wake(S, woken);
    if (S->race) {
      csp_race_xbegin(S, c->x, 0);
      csp_race_xend(S, c->x, 0, ok);
    }
    lua_pushinteger(L, pick + 1);
    csp_xchan_push_recv(L, &m, ok);
    return csp_select_finish(L, pick + 1, 3);
  }
}

/* Under the locks, nothing ready: links a waiter per case (local ones as select.c does, xchan
** ones on record r, in one random order, as Go does) and arms g, then unlocks. Returns
** XSEL_RETRY (nothing linked, r freed) when a buffered xchan's ring changed meanwhile. */
static int xsel_park(lua_State *L, csp_Sched *S, XSelBox *bx, csp_G *g, csp_XRec *r, int *order) {
  XCase *cs = bx->cs;
  int m = 0, nx = 0, nl = 0, changed = 0;
  csp_Waiter *ws = g->sel;
  for (int i = 0; i < bx->n; i++)
    if (cs[i].x || cs[i].c) order[m++] = i;
  for (int i = m - 1; i > 0; i--) {
    int j = (int)csp_sched_randn(S, (uint32_t)i + 1);
    int t = order[i]; order[i] = order[j]; order[j] = t;
  }
  for (int k = 0; k < m; k++) {
    int i = order[k];
    if (cs[i].x) {
      csp_XWaiter *w = &r->w[nx++];
      w->ch = cs[i].x;
      w->rec = r;
      w->caseidx = i + 1;
      w->send = cs[i].send;
      w->msg = cs[i].msg;
      cs[i].msg.tag = CSP_M_EMPTY;
      csp_shared_ref(&cs[i].x->h);
      csp_xchan_q_push(cs[i].send ? &cs[i].x->sendq : &cs[i].x->recvq, w);
    }
  }
  for (int i = 0; i < bx->n; i++)
    if (cs[i].x && csp_xchan_recheck(cs[i].x, cs[i].send)) changed = 1;
  if (changed) {  /* nobody can have claimed r: its channels are locked, its thread is here */
    for (int k = 0; k < nx; k++) {
      cs[r->w[k].caseidx - 1].msg = r->w[k].msg;
      r->w[k].msg.tag = CSP_M_EMPTY;
      csp_xchan_q_unlink(&r->w[k]);
    }
    unlock_all(bx);
    csp_xchan_rec_free(r);
    return XSEL_RETRY;
  }
  for (int k = 0; k < m; k++) {
    int i = order[k];
    if (cs[i].c) {
      csp_Waiter *w = &ws[nl++];
      memset(w, 0, sizeof *w);
      w->g = g;
      w->caseidx = i + 1;
      if (cs[i].send) {
        lua_getiuservalue(L, CSP_SEL_CASE(i + 1), 2);  /* room: checked by csp_xselect */
        w->validx = lua_gettop(L);
      }
      csp_wq_push(cs[i].send ? &cs[i].c->sendq : &cs[i].c->recvq, w);
    }
  }
  g->nsel = nl;
  r->ncases = bx->n;
  csp_xchan_rec_arm(L, S, g, r);
  unlock_all(bx);
  return -1;
}

static XSelBox *xsel_box(lua_State *L, int n) {
  static const luaL_Reg xselbox_meta[] = {{"__gc", xselbox_gc}, {NULL, NULL}};
  size_t sz = sizeof(XSelBox) + (size_t)n * (sizeof(XCase) + sizeof(void *) + sizeof(int));
  XSelBox *bx = (XSelBox *)lua_newuserdatauv(L, sz, 0);
  memset(bx, 0, sz);
  bx->n = n;
  bx->locks = (csp_XChan **)(bx->cs + n);
  csp_keptmeta(L, &xselbox_mt, xselbox_meta);
  lua_setmetatable(L, -2);
  return bx;
}

#define XSEL_PARKED (-3)

/* One run: the select's results, -1 for select.c's default, or XSEL_PARKED with *pg armed. */
static int xsel_run(lua_State *L, csp_Sched *S, int n, int ordered, int nonblock, csp_G **pg) {
  XSelBox *bx;
  XCase *cs;
  csp_XRec *r = NULL;
  int pick, nl = 0, nx = 0;
  if (!lua_checkstack(L, n + 16)) return luaL_error(L, "select: too many cases");
  bx = xsel_box(L, n);  /* owns the encoded send values until they are linked or sent */
  cs = bx->cs;
  for (int i = 0; i < n; i++) {
    void *x;
    csp_select_case(L, i + 1, &cs[i].c, &x, &cs[i].send);
    cs[i].x = (csp_XChan *)x;
    if (cs[i].x) {
      int k;
      nx++;
      for (k = 0; k < bx->nlocks && bx->locks[k] != cs[i].x; k++) {}
      if (k == bx->nlocks) bx->locks[bx->nlocks++] = cs[i].x;
      if (cs[i].send) {  /* encoded before any lock: it may raise */
        lua_getiuservalue(L, CSP_SEL_CASE(i + 1), 2);
        csp_msg_encode(L, -1, &cs[i].msg);
        lua_pop(L, 1);
      }
    } else if (cs[i].c) {
      nl++;
    }
  }
  qsort(bx->locks, (size_t)bx->nlocks, sizeof *bx->locks, cmp_ptr);
  for (;;) {
    lock_all(bx);
    if ((pick = xsel_pick(S, bx, ordered)) >= 0) {
      int nres = xsel_fire(L, S, bx, pick);
      if (nres == XSEL_RETRY) continue;
      free(r);
      return nres;
    }
    if (nonblock) {
      unlock_all(bx);
      free_msgs(bx);
      free(r);
      return -1;
    }
    if (r) {
      r->ordered = ordered;
      if (S->race) xsel_race_begin(S, bx);
      if (xsel_park(L, S, bx, *pg, r, (int *)(bx->locks + n)) != XSEL_RETRY) return XSEL_PARKED;
      r = NULL;
      continue;
    }
    unlock_all(bx);
    *pg = csp_sched_self(L, S);
    if (nl > 0) csp_sched_selwaiters(L, *pg, nl);
    r = csp_xchan_prepare(L, S, pg, nx);
  }
}

/* select.c hands over a select with at least one xchan case (stack: see select.c). Returns -1
** when nothing is ready and there is a default, which select.c runs. */
int csp_xselect(lua_State *L, csp_Sched *S, int n, int ordered, int nonblock) {
  csp_port_due(S);
  for (;;) {
    csp_G *g = NULL;
    int nres = xsel_run(L, S, n, ordered, nonblock, &g);
    if (nres != XSEL_PARKED) return nres;
    csp_xchan_park(L, g, "xchan select", xselect_k);
    if ((nres = xsel_done(L, g)) >= 0) return nres;  /* main: a goroutine's continuation is xselect_k */
    lua_settop(L, CSP_SEL_CASE(n));
  }
}
