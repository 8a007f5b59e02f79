/* chan.c: channels: ring buffer in user values, FIFO wait queues, direct handoff, close, views. */
#include <string.h>
#include "csp.h"

const char csp_chan_tag = 0;
static const char view_tag = 0;
static const char view_mt_key = 0;

#define BIG_CAP 60000  /* user values are limited to USHRT_MAX: beyond, the ring is a table */

typedef struct ChanView {
  const void *tag;
  csp_Chan *c;
  int op;  /* CSP_OP_SEND: send-only view; CSP_OP_RECV: receive-only view */
} ChanView;

/* ---------------------------------------------------------------- checks */

static ChanView *view_test(lua_State *L, int idx) {
  return (ChanView *)csp_testtag(L, idx, &view_tag, sizeof(ChanView));
}

csp_Chan *csp_chan_checkview(lua_State *L, int idx, int op) {
  ChanView *v;
  if (csp_chan_test(L, idx) != NULL) csp_sched_gone(L);  /* csp_chan_check's other case */
  v = (ChanView *)csp_checktag(L, idx, &view_tag, sizeof(ChanView), "channel");
  csp_sched_live(L, v->c->S);
  if (v->op == CSP_OP_SEND && op == CSP_OP_RECV) luaL_error(L, "recv from send-only channel");
  if (v->op == CSP_OP_RECV && op == CSP_OP_SEND) luaL_error(L, "send to receive-only channel");
  if (v->op == CSP_OP_RECV && op == CSP_OP_CLOSE) luaL_error(L, "close of receive-only channel");
  idx = lua_absindex(L, idx);
  lua_getiuservalue(L, idx, 1);
  lua_replace(L, idx);
  return v->c;
}

/* ---------------------------------------------------------------- ring */

/* Pushes slot i; returns its type (the getters give it: no lua_type call on the hot path). */
CSP_HOT int ring_get(lua_State *L, csp_Chan *c, int chidx, uint32_t i) {
  int t;
  if (!c->big) return lua_getiuservalue(L, chidx, (int)i + 1);
  lua_getiuservalue(L, chidx, 1);
  t = lua_rawgeti(L, -1, (lua_Integer)i + 1);
  lua_remove(L, -2);
  return t;
}

CSP_HOT void ring_set(lua_State *L, csp_Chan *c, int chidx, uint32_t i) {  /* pops the value */
  if (!c->big) {
    lua_setiuservalue(L, chidx, (int)i + 1);
    return;
  }
  lua_getiuservalue(L, chidx, 1);
  lua_insert(L, -2);
  lua_rawseti(L, -2, (lua_Integer)i + 1);
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- operations */

/* Wakes a parked sender whose value was taken; a select learns which case fired. */
CSP_HOT void wake_sender(csp_Sched *S, csp_Waiter *w) {
  int n = 0;
  if (w->caseidx) { lua_pushinteger(csp_sched_results(w->g), w->caseidx); n = 1; }
  csp_sched_ready(S, w->g, n);
}

/* Pushes onto L the value of w, a parked sender. A plain send parked with its value on its stack
** top (chan_send trims its stack to [ch, v] before it parks, and nothing pushes onto a parked
** thread but its one waker, this) gives it up by a move: its call returns nothing. A select's
** values stay where they are. */
CSP_HOT void sender_value(lua_State *L, csp_Waiter *w) {
  lua_State *SL = w->g->L;
  if (w->caseidx != 0) lua_pushvalue(SL, w->validx);
  lua_xmove(SL, L, 1);
}

/* Into the buffer, which has room: the value on top of L, which it pops. */
CSP_HOT void buf_send(lua_State *L, csp_Chan *c, int chidx) {
  uint32_t tail = c->head + c->count;
  if (tail >= c->cap) tail -= c->cap;
  if (c->S->race) csp_race_slot(c->S, c, tail, NULL);
  csp_metrics_buf(c->S, L, -1, lua_type(L, -1), 1);
  ring_set(L, c, chidx, tail);
  c->count++;
}

/* Out of the buffer, which holds a value (or a timer's tick): pushes it. */
CSP_HOT void buf_recv(lua_State *L, csp_Chan *c, int chidx) {
  csp_Waiter *w;
  int t;
  if (c->timer && c->timer->pending) {
    if (c->S->race) csp_race_acq(c->S, NULL, c, CSP_RACE_TIMER);
    lua_pushnumber(L, c->timer->tick);
    csp_chan_drain_tick(c);
    return;
  }
  t = ring_get(L, c, chidx, c->head);
  csp_metrics_buf(c->S, L, -1, t, -1);
  if (c->S->race) csp_race_slot(c->S, c, c->head, NULL);
  if ((w = csp_wq_take(&c->sendq)) != NULL) {  /* full: the sender's value takes the slot */
    if (c->S->race) csp_race_slot(c->S, c, c->head, w->g);
    sender_value(L, w);
    csp_metrics_buf(c->S, L, -1, lua_type(L, -1), 1);
    ring_set(L, c, chidx, c->head);
    wake_sender(c->S, w);
  } else {
    if (t >= LUA_TSTRING) {  /* let the collector have it */
      lua_pushnil(L);
      ring_set(L, c, chidx, c->head);
    }
    c->count--;
  }
  if (++c->head == c->cap) c->head = 0;
}

/* Inline in the channel's own methods: the hot path of every program. */
CSP_HOT int chan_trysend(lua_State *L, csp_Chan *c, int chidx, int validx) {
  csp_Waiter *w = csp_wq_take(&c->recvq);
  if (w) {  /* direct handoff: the value goes straight onto the receiver's stack */
    lua_State *R = csp_sched_results(w->g);
    int n = 2;
    if (c->S->race) csp_race_handoff(c->S, c, w->g);
    if (w->caseidx) { lua_pushinteger(R, w->caseidx); n = 3; }
    if (validx > 0) lua_pushvalue(L, validx);
    lua_xmove(L, R, 1);
    lua_pushboolean(R, 1);
    csp_sched_ready(c->S, w->g, n);
    return 1;
  }
  if (c->count < c->cap) {
    if (validx > 0) lua_pushvalue(L, validx);
    buf_send(L, c, chidx);
    return 1;
  }
  return 0;
}

CSP_HOT int chan_tryrecv(lua_State *L, csp_Chan *c, int chidx) {
  csp_Waiter *w;
  if (c->count > 0) {
    buf_recv(L, c, chidx);
    lua_pushboolean(L, 1);
    return 1;
  }
  if ((w = csp_wq_take(&c->sendq)) != NULL) {
    if (c->S->race) csp_race_handoff(c->S, c, w->g);
    sender_value(L, w);
    lua_pushboolean(L, 1);
    wake_sender(c->S, w);
    return 1;
  }
  if (c->closed) {
    if (c->S->race) csp_race_acq(c->S, NULL, c, CSP_RACE_CLOSE);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (c->timer != NULL && csp_timer_chan_due(c)) {  /* its tick is in the channel now */
    buf_recv(L, c, chidx);
    lua_pushboolean(L, 1);
    return 1;
  }
  return 0;
}

int csp_chan_trysend(lua_State *L, csp_Chan *c, int chidx, int validx) {
  return chan_trysend(L, c, chidx, validx);
}

int csp_chan_tryrecv(lua_State *L, csp_Chan *c, int chidx) {
  return chan_tryrecv(L, c, chidx);
}

void csp_chan_drain_tick(csp_Chan *c) {
  if (c->timer && c->timer->pending) {
    c->timer->pending = 0;
    c->count = 0;
  }
}

void csp_chan_deliver(csp_Chan *c, double v) {
  csp_Waiter *w = csp_wq_take(&c->recvq);
  if (w) {
    lua_State *R = csp_sched_results(w->g);
    int n = 2;
    if (c->S->race) csp_race_acq(c->S, w->g, c, CSP_RACE_TIMER);
    if (w->caseidx) { lua_pushinteger(R, w->caseidx); n = 3; }
    lua_pushnumber(R, v);
    lua_pushboolean(R, 1);
    csp_sched_ready_timer(c->S, w->g, n);
  } else if (c->count == 0) {  /* a slow receiver misses ticks, as in Go */
    c->timer->pending = 1;
    c->timer->tick = v;
    c->count = 1;
  }
}

/* ---------------------------------------------------------------- Lua API */

static int send_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (g->wake == CSP_WAKE_CLOSED) return luaL_error(L, "send on closed channel");
  return 0;
}

static int chan_send(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_SEND);
  csp_G *g;
  CSP_PREEMPT(L, c->S, chan_send);
  if (lua_gettop(L) != 2) lua_settop(L, 2);
  if (c->closed) return luaL_error(L, "send on closed channel");
  /* 0: the value on top may be moved away. The test spares a parking send the call. */
  if ((c->recvq.head != NULL || c->count < c->cap) && chan_trysend(L, c, 1, 0)) return 0;
  g = csp_sched_self(L, c->S);
  g->w.caseidx = 0;
  g->w.validx = 2;
  csp_wq_push(&c->sendq, &g->w);
  return csp_sched_park(L, g, "chan send", (lua_KContext)g, send_k);
}

static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  return 2;
}

static int chan_recv(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_RECV);
  csp_G *g;
  CSP_PREEMPT(L, c->S, chan_recv);
  if (chan_tryrecv(L, c, 1)) return 2;  /* it tests readiness itself: no second test */
  g = csp_sched_self(L, c->S);
  g->w.caseidx = 0;
  csp_wq_push(&c->recvq, &g->w);
  return csp_sched_park(L, g, "chan receive", (lua_KContext)g, recv_k);
}

static int range_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  lua_pop(L, 1);  /* ok: a closed channel yields nil, which ends the for loop */
  return 1;
}

static int range_iter(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_RECV);
  csp_G *g;
  CSP_PREEMPT(L, c->S, range_iter);
  if (chan_tryrecv(L, c, 1)) {
    lua_pop(L, 1);
    return 1;
  }
  g = csp_sched_self(L, c->S);
  g->w.caseidx = 0;
  csp_wq_push(&c->recvq, &g->w);
  return csp_sched_park(L, g, "chan receive", (lua_KContext)g, range_k);
}

static int chan_range(lua_State *L) {
  csp_chan_check(L, 1, CSP_OP_RECV);
  lua_pushcfunction(L, range_iter);
  lua_pushvalue(L, 1);
  return 2;
}

static int chan_close(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_CLOSE);
  csp_Waiter *w;
  if (c->closed) return luaL_error(L, "close of closed channel");
  c->closed = 1;
  if (c->S->race) csp_race_close(c->S, c);
  while ((w = csp_wq_take(&c->recvq)) != NULL) {
    lua_State *R = csp_sched_results(w->g);
    int n = 2;
    if (w->caseidx) { lua_pushinteger(R, w->caseidx); n = 3; }
    lua_pushnil(R);
    lua_pushboolean(R, 0);
    csp_sched_ready(c->S, w->g, n);
  }
  while ((w = csp_wq_take(&c->sendq)) != NULL) {
    w->g->wake = CSP_WAKE_CLOSED;
    wake_sender(c->S, w);
  }
  return 0;
}

static int chan_try_send(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_SEND);
  lua_settop(L, 2);
  if (c->closed) return luaL_error(L, "send on closed channel");
  lua_pushboolean(L, csp_chan_trysend(L, c, 1, 2));
  return 1;
}

static int chan_try_recv(lua_State *L) {
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  if (csp_chan_tryrecv(L, c, 1)) {
    lua_pushboolean(L, 1);
    return 3;
  }
  lua_pushnil(L);
  lua_pushboolean(L, 0);
  lua_pushboolean(L, 0);
  return 3;
}

static int chan_len(lua_State *L) {
  lua_pushinteger(L, csp_chan_check(L, 1, CSP_OP_ANY)->count);
  return 1;
}

static int chan_cap(lua_State *L) {
  lua_pushinteger(L, csp_chan_check(L, 1, CSP_OP_ANY)->cap);
  return 1;
}

static int chan_base(lua_State *L) {
  csp_chan_check(L, 1, CSP_OP_ANY);
  lua_settop(L, 1);
  return 1;
}

void csp_chan_view(lua_State *L, int idx, int op) {
  csp_Chan *c;
  ChanView *v = view_test(L, idx);
  if (v && v->op != op)
    luaL_error(L, "cannot convert %s channel to %s", v->op == CSP_OP_SEND ? "send-only" : "receive-only",
               op == CSP_OP_SEND ? "send-only" : "receive-only");
  idx = lua_absindex(L, idx);
  c = csp_chan_check(L, idx, CSP_OP_ANY);  /* idx now holds the channel */
  v = (ChanView *)lua_newuserdatauv(L, sizeof *v, 1);
  v->tag = &view_tag;
  v->c = c;
  v->op = op;
  lua_pushvalue(L, idx);
  lua_setiuservalue(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &view_mt_key);
  lua_setmetatable(L, -2);
}

static int chan_sender(lua_State *L) {
  csp_chan_view(L, 1, CSP_OP_SEND);
  return 1;
}

static int chan_receiver(lua_State *L) {
  csp_chan_view(L, 1, CSP_OP_RECV);
  return 1;
}

static int chan_tostring(lua_State *L) {
  ChanView *v = view_test(L, 1);
  csp_Chan *c = csp_chan_check(L, 1, CSP_OP_ANY);
  const char *kind = v ? (v->op == CSP_OP_SEND ? "chan<-" : "<-chan") : "chan";
  lua_pushfstring(L, "%s: %p (%d/%d)", kind, (void *)c, (int)c->count, (int)c->cap);
  return 1;
}

static int chan_gc(lua_State *L) {
  csp_Chan *c = csp_chan_test(L, 1);
  if (c == NULL || c->finalized || c->S->closing) return 0;
  c->finalized = 1;
  c->S->nchans--;
  for (uint32_t i = 0; i < c->count && !(c->timer && c->timer->pending); i++) {
    int t = ring_get(L, c, 1, (c->head + i) % c->cap);  /* metrics: its values leave the buffers */
    csp_metrics_buf(c->S, L, -1, t, -1);
    lua_pop(L, 1);
  }
  if (c->S->race) csp_race_forget(c->S, c);
  /* Parked goroutines keep their channel alive, so only a goroutine whose thread was closed
  ** behind the scheduler's back can still be linked here: unlink it rather than dangle. */
  csp_wq_detach(&c->recvq);
  csp_wq_detach(&c->sendq);
  if (c->timer && c->timer->tn.pos) csp_timer_del(c->S, &c->timer->tn);
  return 0;
}

csp_Chan *csp_chan_new(lua_State *L, csp_Sched *S, uint32_t cap, int timer) {
  size_t sz = sizeof(csp_Chan) + (timer ? sizeof(csp_Timer) : 0);
  int big = cap >= BIG_CAP;
  csp_Chan *c = (csp_Chan *)lua_newuserdatauv(L, sz, big ? 1 : (int)cap);
  memset(c, 0, sz);
  c->tag = &csp_chan_tag;
  c->S = S;
  c->cap = cap;
  c->big = (uint8_t)big;
  if (big) {
    lua_createtable(L, 0, 0);
    lua_setiuservalue(L, -2, 1);
  }
  if (timer) {
    c->timer = (csp_Timer *)(c + 1);
    c->timer->chan = c;
    c->timer->hold.node = &c->timer->tn;
    c->timer->hold.ntimed = &S->ntimed;
    c->recvq.hold = &c->timer->hold;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &csp_chan_tag);
  lua_setmetatable(L, -2);
  S->nchans++;
  return c;
}

static int chan_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, cap >= 0 && cap <= INT32_MAX, 1, "makechan: size out of range");
  csp_chan_new(L, csp_sched_get(L), (uint32_t)cap, 0);
  return 1;
}

static const luaL_Reg chan_methods[] = {
  {"send", chan_send},
  {"recv", chan_recv},
  {"close", chan_close},
  {"range", chan_range},
  {"try_send", chan_try_send},
  {"try_recv", chan_try_recv},
  {"len", chan_len},
  {"cap", chan_cap},
  {"base", chan_base},
  {"sender", chan_sender},
  {"receiver", chan_receiver},
  {NULL, NULL}
};

/* Stack: [module, sched, methods]: the methods table is shared by channels and their views. */
static void chan_meta(lua_State *L, const char *name, int withgc) {
  static const luaL_Reg chan_mm[] = {
    {"__len", chan_len}, {"__tostring", chan_tostring}, {"__gc", chan_gc}, {NULL, NULL}};
  static const luaL_Reg view_mm[] = {{"__len", chan_len}, {"__tostring", chan_tostring}, {NULL, NULL}};
  csp_newmeta_index(L, name, lua_gettop(L), lua_gettop(L) - 1, withgc ? chan_mm : view_mm);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
}

/* Stack: [module, sched]. */
void csp_chan_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"chan", chan_new}, {NULL, NULL}};
  csp_newmethods(L, (int)(sizeof chan_methods / sizeof chan_methods[0]) - 1);
  luaL_setfuncs(L, chan_methods, 0);
  chan_meta(L, "csp.chan", 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &csp_chan_tag);
  chan_meta(L, "csp.chanview", 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &view_mt_key);
  lua_setfield(L, -3, "chan_methods");  /* module.chan_methods: send/recv as plain functions */
  csp_setfuncs(L, funcs);
}
