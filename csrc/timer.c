/* timer.c: the deadline heap (4-ary, one uv_timer), sleep, now, after, tick, ticker, timer. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "csp.h"

static const char ticker_mt_key = 0;
static const char timer_mt_key = 0;

/* ---------------------------------------------------------------- heap */

static void heap_put(csp_Sched *S, uint32_t i, csp_HeapSlot e) {
  S->heap[i] = e;
  e.t->pos = i + 1;
}

static void heap_up(csp_Sched *S, uint32_t i) {
  csp_HeapSlot e = S->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 4;
    if (S->heap[p].when <= e.when) break;
    heap_put(S, i, S->heap[p]);
    i = p;
  }
  heap_put(S, i, e);
}

static void heap_down(csp_Sched *S, uint32_t i) {
  csp_HeapSlot e = S->heap[i];
  for (;;) {
    uint32_t c = 4 * i + 1, best = c;
    if (c >= S->nheap) break;
    for (uint32_t j = c + 1; j < c + 4 && j < S->nheap; j++)
      if (S->heap[j].when < S->heap[best].when) best = j;
    if (S->heap[best].when >= e.when) break;
    heap_put(S, i, S->heap[best]);
    i = best;
  }
  heap_put(S, i, e);
}

void csp_timer_add(lua_State *L, csp_Sched *S, csp_TimerNode *t, uint64_t when) {
  if (S->nheap == S->heapcap) {
    uint32_t ncap = S->heapcap ? S->heapcap * 2 : 64;
    csp_HeapSlot *nh = realloc(S->heap, ncap * sizeof *nh);
    if (nh == NULL) {
      if (L != NULL) luaL_error(L, "not enough memory");
      return;  /* from a callback (no Lua state to raise in): the node stays out of the heap */
    }
    S->heap = nh;
    S->heapcap = ncap;
  }
  t->when = when;
  if (t->waiters == NULL || *t->waiters > 0) S->ntimed++;
  S->heap[S->nheap].when = when;
  S->heap[S->nheap].t = t;
  heap_up(S, S->nheap++);
}

void csp_timer_del(csp_Sched *S, csp_TimerNode *t) {
  uint32_t i = t->pos - 1;
  csp_HeapSlot last = S->heap[--S->nheap];
  if (t->waiters == NULL || *t->waiters > 0) S->ntimed--;
  t->pos = 0;
  if (i < S->nheap) {
    S->heap[i] = last;
    if (i > 0 && S->heap[(i - 1) / 4].when > last.when) heap_up(S, i);
    else heap_down(S, i);
  }
}

/* The next node due, and the goroutine record it may sit in (a sleep's), asked for before this
** one fires: with 10^5 sleepers each is a cache miss otherwise. A prefetch never faults, so the
** record's address is only arithmetic when the node is another's (a timer channel's). */
static inline void timer_prefetch(const csp_TimerNode *t) {
  uintptr_t g = (uintptr_t)t - offsetof(csp_G, tn);
  __builtin_prefetch(t);
  __builtin_prefetch((const void *)g);
  __builtin_prefetch((const void *)(g + 64));
}

int csp_timer_run(csp_Sched *S) {
  int n = 0;
  uint64_t now;
  if (S->nheap == 0) return 0;
  now = uv_hrtime();
  if (S->heap[0].when > now) return 0;
  csp_sched_timers_begin(S);
  while (S->nheap > 0 && S->heap[0].when <= now) {
    csp_TimerNode *t = S->heap[0].t;
    csp_timer_del(S, t);
    if (S->nheap > 0) timer_prefetch(S->heap[0].t);
    t->fire(S, t);
    n++;
  }
  csp_sched_timers_end(S);
  return n;
}

static void timer_arm(csp_Sched *S, uint64_t minms);

/* Re-armed for at least 1 ms: a 0 ms timer started in its own callback runs again at once in
** the same libuv timer pass (libuv < 1.45 does not update its clock there), so a deadline that
** is always due (ticker(1e-9)) would never let uv_run return. The scheduler fires what is due
** as soon as uv_run returns. */
static void timer_cb(uv_timer_t *h) {
  csp_Sched *S = (csp_Sched *)h->data;
  csp_timer_run(S);
  timer_arm(S, 1);
}

void csp_timer_arm(csp_Sched *S) {
  timer_arm(S, 0);
}

/* The uv_timer is ref'd only while a goroutine waits for a deadline: a timer that nothing waits
** on never keeps the program alive, nor hides a deadlock. */
static void timer_arm(csp_Sched *S, uint64_t minms) {
  uint64_t now, when, ms;
  if (S->nheap == 0) {
    uv_timer_stop(S->tmr);
    return;
  }
  now = uv_hrtime();
  when = S->heap[0].when;
  ms = when > now ? (when - now + 999999) / 1000000 : 0;
  if (ms < minms) ms = minms;
  uv_update_time(S->loop);
  uv_timer_start(S->tmr, timer_cb, ms, 0);
  if (S->ntimed > 0) uv_ref((uv_handle_t *)S->tmr);
  else uv_unref((uv_handle_t *)S->tmr);
}

void csp_timer_init(csp_Sched *S) {
  S->tmr = malloc(sizeof *S->tmr);
  if (S->tmr == NULL) return;
  uv_timer_init(S->loop, S->tmr);
  S->tmr->data = S;
  uv_unref((uv_handle_t *)S->tmr);
}

void csp_timer_free(csp_Sched *S) {
  free(S->heap);
  S->heap = NULL;
  S->nheap = S->heapcap = 0;
}

uint64_t csp_timer_secs(double d) {
  if (!(d > 0)) return 0;
  if (d * CSP_NS >= (double)CSP_MAX_NS) return CSP_MAX_NS;
  return d * CSP_NS >= 1 ? (uint64_t)(d * CSP_NS) : 1;  /* any d > 0 is a duration, if tiny */
}

/* NaN raises (csp_checknumber). */
uint64_t csp_timer_ns(lua_State *L, int arg) {
  return csp_timer_secs(csp_checknumber(L, arg));
}

/* ---------------------------------------------------------------- sleep, now */

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  return 0;
}

static int timer_sleep(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  uint64_t ns = csp_timer_ns(L, 1);
  csp_G *g;
  if (ns == 0) return csp_sched_yield(L, S);
  g = csp_sched_self(L, S);
  csp_wait_deadline(L, g, uv_hrtime() + ns);  /* a sleep is a wait with only a deadline */
  return csp_sched_park(L, g, "sleep", (lua_KContext)g, sleep_k);
}

static int timer_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / CSP_NS);
  return 1;
}

/* ---------------------------------------------------------------- timer channels */

/* The tick is the time the timer was due, as Go's sendTime (now minus how late it runs): a
** firing the loop or a receive (csp_timer_chan_due) runs late says when it was due. */
static void chan_fire(csp_Sched *S, csp_TimerNode *t) {
  csp_Timer *tm = (csp_Timer *)t;
  uint64_t now = uv_hrtime();
  csp_chan_deliver(tm->chan, (double)t->when / CSP_NS);
  if (tm->period) {  /* Go's drift rule: skip the ticks a slow receiver missed */
    uint64_t next = t->when + tm->period * (1 + (now - t->when) / tm->period);
    csp_timer_add(NULL, S, t, next);  /* the heap has room: this node just left it */
  }
}

/* Go 1.23's maybeRunChan: a receive (or a select's look) finds the tick of a timer channel
** whose deadline has passed, though the loop has not fired it yet. Only with nobody else
** waiting on it: the tick then lands in the channel, as if the loop had fired it. */
int csp_timer_chan_due(csp_Chan *c) {
  csp_Timer *tm = c->timer;
  if (tm->tn.pos == 0 || c->count > 0 || c->recvq.head != NULL || tm->tn.when > uv_hrtime())
    return 0;
  csp_timer_del(c->S, &tm->tn);
  tm->tn.fire(c->S, &tm->tn);
  return c->count > 0;
}

/* Pushes a receive-only view of a new timer channel; returns its timer. */
static csp_Timer *timer_chan(lua_State *L, csp_Sched *S, uint64_t ns, uint64_t period) {
  csp_Chan *c = csp_chan_new(L, S, 1, 1);
  csp_Timer *tm = c->timer;
  tm->period = period;
  tm->tn.fire = chan_fire;
  tm->tn.waiters = &c->recvq.n;
  csp_timer_add(L, S, &tm->tn, uv_hrtime() + ns);
  if (S->race) csp_race_rel(S, c, CSP_RACE_TIMER);
  csp_chan_view(L, -1, CSP_OP_RECV);
  lua_remove(L, -2);
  return tm;
}

static int timer_after(lua_State *L) {
  timer_chan(L, csp_sched_get(L), csp_timer_ns(L, 1), 0);
  return 1;
}

static int timer_tick(lua_State *L) {
  uint64_t ns = csp_timer_ns(L, 1);
  if (ns == 0) {
    lua_pushnil(L);
    return 1;
  }
  timer_chan(L, csp_sched_get(L), ns, ns);
  return 1;
}

/* Ticker and timer objects: a table {c = <-chan} with methods. */
static void timer_object(lua_State *L, const void *mtkey) {
  lua_createtable(L, 0, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "c");
  lua_rawgetp(L, LUA_REGISTRYINDEX, mtkey);
  lua_setmetatable(L, -2);
}

static csp_Timer *timer_check(lua_State *L, const void *mtkey, const char *what) {
  csp_Chan *c;
  int ok = lua_getmetatable(L, 1);
  if (ok) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, mtkey);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok) luaL_typeerror(L, 1, what);
  lua_getfield(L, 1, "c");
  c = csp_chan_check(L, -1, CSP_OP_ANY);
  if (c->timer == NULL) luaL_argerror(L, 1, "its field c is not its timer channel");
  /* Resurrected by a finalizer: the channel's __gc ran and will not run again, so a timer put
  ** back on the heap would stay there after the memory goes. */
  if (c->finalized) luaL_error(L, "%s used after the collector finalized it", what);
  lua_pop(L, 1);
  return c->timer;
}

/* Stops tm; returns whether it was pending. No stale tick survives, and one that fired but was
** not received still counts as pending (Go 1.23: the drained value means the timer was stopped). */
static int timer_halt(csp_Sched *S, csp_Timer *tm) {
  int was = tm->tn.pos != 0 || tm->pending;
  if (tm->tn.pos) csp_timer_del(S, &tm->tn);
  csp_chan_drain_tick(tm->chan);
  return was;
}

static int ticker_new(lua_State *L) {
  uint64_t ns = csp_timer_ns(L, 1);
  if (ns == 0) return luaL_error(L, "non-positive interval for csp.ticker");
  timer_chan(L, csp_sched_get(L), ns, ns);
  timer_object(L, &ticker_mt_key);
  return 1;
}

static int ticker_stop(lua_State *L) {
  timer_halt(csp_sched_get(L), timer_check(L, &ticker_mt_key, "ticker"));
  return 0;
}

static int ticker_reset(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_Timer *tm = timer_check(L, &ticker_mt_key, "ticker");
  uint64_t ns = csp_timer_ns(L, 2);
  if (ns == 0) return luaL_error(L, "non-positive interval for ticker:reset");
  timer_halt(S, tm);
  tm->period = ns;
  if (S->race) csp_race_rel(S, tm->chan, CSP_RACE_TIMER);
  csp_timer_add(L, S, &tm->tn, uv_hrtime() + ns);
  return 0;
}

static int timer_new(lua_State *L) {
  timer_chan(L, csp_sched_get(L), csp_timer_ns(L, 1), 0);
  timer_object(L, &timer_mt_key);
  return 1;
}

static int timer_stop(lua_State *L) {
  lua_pushboolean(L, timer_halt(csp_sched_get(L), timer_check(L, &timer_mt_key, "timer")));
  return 1;
}

static int timer_reset(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_Timer *tm = timer_check(L, &timer_mt_key, "timer");
  uint64_t ns = csp_timer_ns(L, 2);
  lua_pushboolean(L, timer_halt(S, tm));
  if (S->race) csp_race_rel(S, tm->chan, CSP_RACE_TIMER);
  csp_timer_add(L, S, &tm->tn, uv_hrtime() + ns);
  return 1;
}

static void timer_meta(lua_State *L, const void *key, const char *name, const luaL_Reg *methods) {
  csp_newmeta(L, name, methods, NULL);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Stack: [module, sched]. */
void csp_timer_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"sleep", timer_sleep}, {"now", timer_now}, {"after", timer_after}, {"tick", timer_tick},
    {"ticker", ticker_new}, {"timer", timer_new}, {NULL, NULL}
  };
  static const luaL_Reg ticker_methods[] = {{"stop", ticker_stop}, {"reset", ticker_reset}, {NULL, NULL}};
  static const luaL_Reg timer_methods[] = {{"stop", timer_stop}, {"reset", timer_reset}, {NULL, NULL}};
  timer_meta(L, &ticker_mt_key, "csp.ticker", ticker_methods);
  timer_meta(L, &timer_mt_key, "csp.timer", timer_methods);
  csp_setfuncs(L, funcs);
  csp_after_open(L);
}
