/* sched.c: goroutines, the run queue, the scheduler loop, panics, deadlock detection and dumps. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "csp.h"

#define POOL_MAX 1024   /* idle threads cost GC time: keep at most this many */
#define GFREE_MAX 4096  /* idle goroutine records kept */
#define POLL_MASK 63    /* poll libuv every 64 resumes while goroutines stay runnable */

static const char anchors_key = 0;  /* registry: table of goroutine threads, by slot */
static const char pending_key = 0;  /* registry: ring of functions and arguments not started yet */

/* ---------------------------------------------------------------- run queue */

/* The ring always has room for every goroutine record plus main (grown when records are made),
** so readying never allocates and never fails. */
static void rq_grow(lua_State *L, csp_Sched *S, uint32_t need) {
  uint32_t cap = S->rqmask + 1, ncap = cap;
  if (need <= cap) return;
  while (ncap < need) ncap *= 2;
  csp_G **nrq = malloc(ncap * sizeof *nrq);
  if (nrq == NULL) luaL_error(L, "not enough memory");
  for (uint32_t i = 0; i < S->rqcount; i++) nrq[i] = S->rq[(S->rqhead + i) & S->rqmask];
  free(S->rq);
  S->rq = nrq;
  S->rqhead = 0;
  S->rqmask = ncap - 1;
}

static csp_G *rq_pop(csp_Sched *S) {
  if (S->rqcount == 0) return NULL;
  csp_G *g = S->rq[S->rqhead];
  S->rqhead = (S->rqhead + 1) & S->rqmask;
  S->rqcount--;
  return g;
}

void csp_sched_ready(csp_Sched *S, csp_G *g, int nargs) {
  if (S->trace) csp_trace_ready(S, g);
  if ((++S->m.lagclock & 15) == 0) g->readyat = uv_hrtime();  /* metrics.c: loop lag, sampled */
  g->nargs = nargs;
  g->state = CSP_G_RUNNABLE;
  S->rq[(S->rqhead + S->rqcount) & S->rqmask] = g;
  if (++S->rqcount > S->m.rqmax) S->m.rqmax = S->rqcount;
}

/* ---------------------------------------------------------------- goroutine records */

csp_Sched *csp_sched_get(lua_State *L) {
  return (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
}

uint64_t csp_sched_rand(csp_Sched *S) {  /* splitmix64: tiny, fast, seedable */
  uint64_t z = (S->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void all_link(csp_Sched *S, csp_G *g) {
  g->aprev = S->all.aprev;
  g->anext = &S->all;
  S->all.aprev->anext = g;
  S->all.aprev = g;
}

static void all_unlink(csp_G *g) {
  g->aprev->anext = g->anext;
  g->anext->aprev = g->aprev;
  g->anext = g->aprev = g;
}

static void anchors_set(lua_State *L, int slot, int validx) {
  validx = lua_absindex(L, validx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key);
  lua_pushvalue(L, validx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

void csp_sched_anchor(lua_State *L, csp_G *g, int validx) {
  anchors_set(L, g->slot, validx);
}

/* A goroutine's record is made at spawn, its thread only when it first runs: goroutines that
** wait in the run queue cost a record and their arguments, not a Lua thread. Threads and records
** are pooled separately. */
static csp_G *g_get(lua_State *L, csp_Sched *S) {
  csp_G *g = S->gfree;
  if (g != NULL) {
    S->gfree = g->anext;
    S->ngfree--;
  } else {
    rq_grow(L, S, (uint32_t)S->ngrec + 2);
    if ((g = calloc(1, sizeof *g)) == NULL) luaL_error(L, "not enough memory");
    g->S = S;
    g->w.g = g;
    S->ngrec++;
  }
  g->anext = g->aprev = g;
  return g;
}

static void g_put(csp_Sched *S, csp_G *g) {
  if (S->ngfree >= GFREE_MAX) {
    free(g->sel);
    free(g);
    S->ngrec--;
    return;
  }
  g->L = NULL;
  g->anext = S->gfree;
  S->gfree = g;
  S->ngfree++;
}

/* Gives g a thread: a pooled one, or a new one anchored in a free slot. */
static int thread_attach(lua_State *L, csp_Sched *S, csp_G *g) {
  if (S->ntpool > 0) {
    S->ntpool--;
    g->L = S->tpool[S->ntpool].L;
    g->slot = S->tpool[S->ntpool].slot;
  } else {
    int slot;
    if (S->nfree == 0 && S->nslots >= INT32_MAX - 1) return 0;
    if (S->nfree == 0 && S->nslots >= S->freecap) {  /* room to give every slot back later */
      int ncap = S->freecap ? S->freecap * 2 : 64;
      int *nf = realloc(S->freeslots, (size_t)ncap * sizeof *nf);
      if (nf == NULL) return 0;
      S->freeslots = nf;
      S->freecap = ncap;
    }
    slot = S->nfree > 0 ? S->freeslots[--S->nfree] : ++S->nslots;
    g->L = lua_newthread(L);
    anchors_set(L, slot, -1);
    lua_pop(L, 1);
    g->slot = slot;
  }
  return 1;
}

static void thread_detach(lua_State *L, csp_Sched *S, csp_G *g, int reusable) {
  if (reusable && S->ntpool < POOL_MAX && lua_status(g->L) == LUA_OK) {
    lua_settop(g->L, 0);
    S->tpool[S->ntpool].L = g->L;
    S->tpool[S->ntpool].slot = g->slot;
    S->ntpool++;
  } else {
    lua_pushnil(L);
    anchors_set(L, g->slot, -1);
    lua_pop(L, 1);
    S->freeslots[S->nfree++] = g->slot;  /* room: freecap >= nslots (thread_attach) */
  }
  g->L = NULL;
}

/* A goroutine that ended. */
static void g_release(lua_State *L, csp_Sched *S, csp_G *g, int reusable) {
  if (S->race) csp_race_gend(S, g);
  all_unlink(g);
  free(g->xdepth);
  g->xdepth = NULL;
  g->nxdepth = 0;
  g->state = CSP_G_FREE;
  if (!g->internal && --S->ngor == 0) {
    csp_Waiter *w = csp_wq_take(&S->runwait);
    if (w) csp_sched_ready(S, w->g, 0);
  }
  if (g->L) thread_detach(L, S, g, reusable);
  g_put(S, g);
}

/* ---------------------------------------------------------------- pending starts */

/* The function and arguments of goroutines not started yet wait in a ring (a Lua table, so the
** collector sees them). Goroutines start in spawn order (the run queue is FIFO), so the ring is
** consumed from its head. */
static void pend_push(lua_State *L, csp_Sched *S, int first, int n) {
  int t;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pending_key);
  t = lua_gettop(L);
  if (S->pcount + (uint32_t)n > S->pmask + 1) {
    uint32_t ncap = (S->pmask + 1) * 2;
    while (ncap < S->pcount + (uint32_t)n) ncap *= 2;
    lua_createtable(L, (int)ncap, 0);
    for (uint32_t i = 0; i < S->pcount; i++) {
      lua_rawgeti(L, t, ((S->phead + i) & S->pmask) + 1);
      lua_rawseti(L, -2, i + 1);
    }
    lua_replace(L, t);
    lua_pushvalue(L, t);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pending_key);
    S->phead = 0;
    S->pmask = ncap - 1;
  }
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, t, ((S->phead + S->pcount + (uint32_t)i) & S->pmask) + 1);
  }
  S->pcount += (uint32_t)n;
  lua_settop(L, first - 1);
}

static void pend_drop(lua_State *L, csp_Sched *S, int n) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pending_key);
  for (int i = 0; i < n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, ((S->phead + (uint32_t)i) & S->pmask) + 1);
  }
  S->phead = (S->phead + (uint32_t)n) & S->pmask;
  S->pcount -= (uint32_t)n;
  lua_pop(L, 1);
}

/* A goroutine's thread starts with (csp_exit_base, g) below f and its arguments: f runs under
** the base frame (goexit.c). Pushed before them, so nothing is rotated. Room: the thread is
** empty, with LUA_MINSTACK slots, or was checked for the arguments plus these. */
static void base_push(csp_G *g) {
  lua_pushcfunction(g->L, csp_exit_base);
  lua_pushlightuserdata(g->L, g);
}

/* Moves the n values at the ring's head onto co, one at a time: L (the loop's thread) was not
** sized for n values, co was (the caller checked its stack). */
static void pend_pop(lua_State *L, csp_Sched *S, lua_State *co, int n) {
  int t;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pending_key);
  t = lua_gettop(L);
  for (int i = 0; i < n; i++) {
    lua_Integer k = ((S->phead + (uint32_t)i) & S->pmask) + 1;
    lua_rawgeti(L, t, k);
    lua_xmove(L, co, 1);
    lua_pushnil(L);
    lua_rawseti(L, t, k);
  }
  S->phead = (S->phead + (uint32_t)n) & S->pmask;
  S->pcount -= (uint32_t)n;
  lua_pop(L, 1);
}

int csp_sched_wake(csp_Sched *S, csp_G *g, uint32_t t, int nargs) {
  if (S->closing || g->state != CSP_G_WAITING || g->ticket != t) return 0;
  csp_sched_ready(S, g, nargs);
  return 1;
}

void csp_sched_cancel(csp_G *g) {
  g->heldby = NULL;
  g->ticket++;
  csp_wq_unlink(&g->w);
  for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
  g->nsel = 0;
  if (g->xw) csp_xchan_cancel(g);
  if (g->tn.pos) csp_timer_del(g->S, &g->tn);
}

csp_Waiter *csp_sched_selwaiters(lua_State *L, csp_G *g, int n) {
  if (n > g->selcap) {  /* only while none is linked: growing moves them */
    int ncap = g->selcap ? g->selcap : 4;
    while (ncap < n) ncap *= 2;
    csp_Waiter *ns = realloc(g->sel, (size_t)ncap * sizeof *ns);
    if (ns == NULL) luaL_error(L, "not enough memory");
    g->sel = ns;
    g->selcap = ncap;
  }
  if (n > 0) memset(g->sel, 0, (size_t)n * sizeof *g->sel);  /* sel is NULL until first grown */
  return g->sel;
}

/* ---------------------------------------------------------------- spawning */

static void check_callable(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, arg, "__call") != LUA_TNIL) { lua_pop(L, 1); return; }
  luaL_typeerror(L, arg, "function");
}

/* Starts f(...) from the values at [first, top], which it pops. */
static csp_G *sched_spawn(lua_State *L, csp_Sched *S, int first, int internal) {
  int n = lua_gettop(L) - first + 1;
  csp_G *g;
  check_callable(L, first);
  g = g_get(L, S);
  if (S->ntpool > 0 && n <= LUA_MINSTACK - 2) {  /* a thread is at hand: no need to wait in the ring */
    thread_attach(L, S, g);
    base_push(g);
    lua_xmove(L, g->L, n);
  } else {
    pend_push(L, S, first, n);  /* may raise (memory): g is simply not linked anywhere yet */
  }
  g->id = ++S->nextid;
  g->parent = S->cur ? S->cur->id : 1;
  g->exiting = CSP_EXIT_NO;
  g->panicking = 0;
  g->started = 0;
  g->reason = NULL;
  g->internal = (uint8_t)internal;
  if (!internal) S->ngor++;
  if (S->race) csp_race_spawn(L, S, g);
  all_link(S, g);
  csp_sched_ready(S, g, n - 1);
  return g;
}

static int sched_go(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checkany(L, 1);
  csp_G *g = sched_spawn(L, S, 1, 0);
  lua_pushinteger(L, g->id);
  return 1;
}

/* For csp's own Lua parts (context deadlines...): a goroutine that is not the user's. */
static int sched_go_internal(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checkany(L, 1);
  sched_spawn(L, S, 1, 1);
  return 0;
}

/* ---------------------------------------------------------------- parking */

static int in_finalizer(lua_State *L) {
  lua_Debug ar;
  int r = lua_gc(L, LUA_GCISRUNNING);  /* 5.4.4+: -1 while the collector runs finalizers */
  if (r == 1) return 0;
  if (r == -1) return 1;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "n", &ar);
    if (ar.namewhat && strcmp(ar.namewhat, "metamethod") == 0 && ar.name &&
        strcmp(ar.name, "__gc") == 0)
      return 1;
  }
  return 0;
}

csp_G *csp_sched_self(lua_State *L, csp_Sched *S) {
  csp_G *g = S->cur;
  if (g != NULL) {
    if (g->L != L)
      luaL_error(L, "attempt to block inside a plain coroutine running in a goroutine "
                    "(start a goroutine with csp.go instead)");
    if (!lua_isyieldable(L)) luaL_error(L, "attempt to block in a non-yieldable context");
    return g;
  }
  if (S->depth > 0) luaL_error(L, "attempt to block while the scheduler is running (in a finalizer?)");
  if (in_finalizer(L)) luaL_error(L, "attempt to block in a non-yieldable context (__gc)");
  g = &S->maing;
  g->L = L;  /* the thread that blocks: the main chunk, or a plain coroutine it resumed */
  return g;
}

static void sched_loop(lua_State *L, csp_Sched *S);

int csp_sched_park(lua_State *L, csp_G *g, const char *reason, lua_KContext ctx,
                   lua_KFunction k) {
  csp_Sched *S = g->S;
  g->reason = reason;
  g->state = CSP_G_WAITING;
  g->wake = CSP_WAKE_OK;
  if (g == &S->maing) S->undo = NULL;
  g->nargs = 0;
  if (g != &S->maing) return lua_yieldk(L, 0, ctx, k);
  sched_loop(L, S);  /* returns once main is readied; raises on panic or deadlock */
  lua_xmove(S->mailbox, L, g->nargs);
  return k(L, LUA_OK, ctx);
}

void csp_sched_checkresume(lua_State *L, csp_G *g) {
  csp_Sched *S = g->S;
  if (S->cur != g) {  /* resumed by coroutine.resume through coroutine.running() */
    /* Its record stays (a libuv request may still hold it, its ticket now stale) until the
    ** thread is dead and nothing can be in flight: sched_reap lets it go then. */
    csp_sched_cancel(g);
    luaL_error(L, "goroutine resumed outside the scheduler");
  }
}

/* ---------------------------------------------------------------- reports */

static void add_traceback(luaL_Buffer *b, lua_State *L, lua_State *co, int level) {
  const char *tb;
  luaL_traceback(L, co, NULL, level);
  if (co != L) csp_exit_striptb(L);  /* a goroutine's base frame */
  tb = lua_tostring(L, -1);
  if (strncmp(tb, "stack traceback:", 16) == 0) tb += tb[16] == '\n' ? 17 : 16;
  lua_pushstring(L, tb);
  lua_remove(L, -2);
  luaL_addvalue(b);
}

static const char *g_statename(csp_Sched *S, csp_G *g) {
  switch (g->state) {
    case CSP_G_RUNNABLE: return "runnable";
    case CSP_G_RUNNING: return "running";
    case CSP_G_WAITING: return g->reason ? g->reason : "waiting";
    default: return (g == &S->maing && S->cur) ? "runnable" : "running";
  }
}

/* One goroutine's entry of the dump (not main's). */
void csp_sched_dumpg(lua_State *L, luaL_Buffer *b, csp_G *g) {
  lua_pushfstring(L, "goroutine %I [%s]:\n", (LUAI_UACINT)g->id, g_statename(g->S, g));
  luaL_addvalue(b);
  if (g->started && g->L != L) add_traceback(b, L, g->L, 0);
  else if (g->L == L) add_traceback(b, L, L, 1);
  else luaL_addstring(b, "\t(not started yet)");
  if (g->state == CSP_G_WAITING && g->heldby) {
    lua_pushfstring(L, "\n\t(held by goroutine %I)", (LUAI_UACINT)*g->heldby);
    luaL_addvalue(b);
  }
  lua_pushfstring(L, "\ncreated by goroutine %I", (LUAI_UACINT)g->parent);
  luaL_addvalue(b);
}

/* Pushes the dump: main first, then every goroutine in id order (Go's traceback format). */
static void sched_dump(lua_State *L, csp_Sched *S, const char *header) {
  luaL_Buffer b;
  lua_State *mainL = S->maing.L ? S->maing.L : L;
  luaL_buffinit(L, &b);
  if (header) luaL_addstring(&b, header);
  lua_pushfstring(L, "goroutine 1 [%s]:\n", g_statename(S, &S->maing));
  luaL_addvalue(&b);
  add_traceback(&b, L, mainL, 0);
  if (S->maing.state == CSP_G_WAITING && S->maing.heldby) {
    lua_pushfstring(L, "\n\t(held by goroutine %I)", (LUAI_UACINT)*S->maing.heldby);
    luaL_addvalue(&b);
  }
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {
    if (g->internal) continue;
    luaL_addstring(&b, "\n\n");
    csp_sched_dumpg(L, &b, g);
  }
  luaL_pushresult(&b);
}

void csp_sched_dump(lua_State *L, csp_Sched *S, const char *header) {
  sched_dump(L, S, header);
}

void csp_sched_dumpto(lua_State *L, csp_Sched *S) {
  sched_dump(L, S, NULL);
}

static int sched_dump_l(lua_State *L) {
  sched_dump(L, csp_sched_get(L), NULL);
  return 1;
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Runs g's pending <close> variables (with the error, if it died of one) and resets its thread;
** returns the thread's status afterwards, with a new error object on L if a __close raised. */
static int g_close(lua_State *L, csp_Sched *S, csp_G *g) {
  int st;
  S->cur = g;  /* blocking inside these __close handlers reports a non-yieldable context */
  st = lua_resetthread(g->L);
  S->cur = NULL;
  if (st != LUA_OK) lua_xmove(g->L, L, 1);
  lua_settop(g->L, 0);
  return st;
}

/* Turns a goroutine's error into the panic message on L's stack and retires the goroutine. */
static void g_panic(lua_State *L, csp_Sched *S, csp_G *g) {
  int st, reusable = 1;
  lua_checkstack(g->L, 2);
  lua_pushvalue(g->L, -1);  /* the error stays on the thread: __close handlers receive it */
  lua_pushcfunction(L, tostring_protected);
  lua_xmove(g->L, L, 1);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object cannot be converted to a string)");
  }
  luaL_traceback(L, g->L, lua_tostring(L, -1), 0);  /* before the reset unwinds the stack */
  lua_pushfstring(L, "goroutine %I: %s", (LUAI_UACINT)g->id, lua_tostring(L, -1));
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_pushvalue(g->L, -1);
  lua_xmove(g->L, L, 1);    /* [msg, err] */
  st = g_close(L, S, g);
  if (st != LUA_OK) {       /* [msg, err, err2] */
    if (!lua_rawequal(L, -1, -2)) {  /* a __close raised: its error replaces the first, as in Lua */
      lua_pushfstring(L, "\n(then, while closing: %s)", lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_rotate(L, -4, 1);  /* [note, msg, err, err2] */
      lua_pop(L, 2);
      lua_rotate(L, -2, 1);
      lua_concat(L, 2);
      reusable = 0;
      g_release(L, S, g, reusable);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  g_release(L, S, g, reusable);
}

/* Ends goroutine g by csp.goexit: its pending <close> variables run, bypassing any pcall. */
static int g_goexit(lua_State *L, csp_Sched *S, csp_G *g) {
  if (g_close(L, S, g) != LUA_OK) {
    lua_pushfstring(L, "goroutine %I: %s", (LUAI_UACINT)g->id,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "error in __close during goexit");
    lua_remove(L, -2);
    g_release(L, S, g, 0);
    return 1;
  }
  g_release(L, S, g, 1);
  return 0;
}

/* Resumes g; returns 1 with a panic message on L's stack if it raised. */
static int sched_resume(lua_State *L, csp_Sched *S, csp_G *g) {
  int nres, st, nargs = g->nargs;
  if (g->started && lua_status(g->L) != LUA_YIELD) {  /* closed behind our back */
    lua_pushfstring(L, "goroutine %I: its coroutine was closed or resumed outside the scheduler",
                    (LUAI_UACINT)g->id);
    csp_sched_cancel(g);
    lua_settop(g->L, 0);
    g_release(L, S, g, 0);
    return 1;
  }
  if (!g->started && g->L == NULL) {
    if (!thread_attach(L, S, g)) {
      lua_pushfstring(L, "goroutine %I: cannot create its thread", (LUAI_UACINT)g->id);
      pend_drop(L, S, g->nargs + 1);
      g_release(L, S, g, 0);
      return 1;
    }
    if (!lua_checkstack(g->L, g->nargs + 3)) {  /* the collector may have shrunk a pooled one */
      lua_pushfstring(L, "goroutine %I: cannot start: stack overflow (%d arguments)",
                      (LUAI_UACINT)g->id, g->nargs);
      pend_drop(L, S, g->nargs + 1);
      g_release(L, S, g, 0);
      return 1;
    }
    base_push(g);
    pend_pop(L, S, g->L, g->nargs + 1);
  }
  if (!g->started) nargs += 2;  /* (g, f, args...) for csp_exit_base */
  if (g->readyat) csp_metrics_lag(S, g);
  if (S->trace) csp_trace_run(S, g);
  g->started = 1;
  g->state = CSP_G_RUNNING;
  S->cur = g;
  S->switches++;
  S->ncalls = 0;
  S->slice0 = 0;
  st = lua_resume(g->L, L, nargs, &nres);
  S->cur = NULL;
  if (S->trace) csp_trace_ran(S, g, st);
  if (st == LUA_YIELD) {
    if (g->exiting == CSP_EXIT_RESET) return g_goexit(L, S, g);
    if (nres) lua_pop(g->L, nres);
    if (g->state == CSP_G_RUNNING) csp_sched_ready(S, g, 0);  /* bare coroutine.yield: a gosched */
    return 0;
  }
  if (st == LUA_OK) {
    if (g->panicking) {  /* unwound under its base: every <close> has run */
      csp_exit_panicmsg(L, g);
      lua_settop(g->L, 0);
      g_release(L, S, g, 1);
      return 1;
    }
    g_release(L, S, g, 1);
    return 0;
  }
  g_panic(L, S, g);
  return 1;
}

/* ---------------------------------------------------------------- the loop */

/* Polls libuv once; wait says whether it may block. Returns whether the loop was alive. */
static int sched_poll(csp_Sched *S, int wait) {
  csp_timer_run(S);
  if (wait && S->rqcount > 0) wait = 0;
  csp_timer_arm(S);
  if (S->port) wait = csp_port_poll(S, wait);
  if (!uv_loop_alive(S->loop)) return 0;
  uv_run(S->loop, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT);
  if (S->port) csp_port_after(S);
  csp_timer_run(S);
  return 1;
}

/* Main's waiters go, and main leaves the run queue if something readied it meanwhile, so a
** caught panic or deadlock leaves nothing dangling. */
static int sched_abort(lua_State *L, csp_Sched *S) {
  uint32_t n = 0;
  int readied = 0;
  for (uint32_t i = 0; i < S->rqcount; i++) {
    csp_G *g = S->rq[(S->rqhead + i) & S->rqmask];
    if (g != &S->maing) S->rq[(S->rqhead + n++) & S->rqmask] = g;
    else readied = 1;
  }
  S->rqcount = n;
  if (readied && S->undo)  /* main's call completed but will raise: give back what it got */
    S->undo(S, S->undoobj, S->maing.w.weight);
  S->undo = NULL;
  csp_sched_cancel(&S->maing);
  S->maing.state = CSP_G_RUNNING;
  lua_settop(S->mailbox, 0);
  S->depth--;
  if (S->trace) csp_trace_loop(S, 0);
  return lua_error(L);
}

/* Goroutines whose parked thread was closed with coroutine.close (or resumed by a plain
** coroutine.resume, which raises in it) can never run again: before calling a deadlock, when no
** libuv request can still hold their records, let them go (that may end a csp.run). */
static int sched_reap(lua_State *L, csp_Sched *S) {
  int n = 0;
  csp_G *g, *next;
  for (g = S->all.anext; g != &S->all; g = next) {
    next = g->anext;
    if (g->state == CSP_G_WAITING && g->started && lua_status(g->L) != LUA_YIELD) {
      csp_sched_cancel(g);
      g_release(L, S, g, 0);
      n++;
    }
  }
  return n;
}

/* Room the loop needs on L, the blocking caller's thread (panic messages, dumps, anchors):
** the caller's C function was only promised LUA_MINSTACK slots, part of them its own. */
#define LOOP_STACK 40

/* CSP_GCSTRESS (a testing mode): a collector step before every resume and a full collection
** every 1024 (every time with "full"). Both shrink the stacks of threads they traverse, so a
** push onto a stack the core did not size shows up under ASan. */
static void sched_gcstress(lua_State *L, csp_Sched *S) {
  if (S->gcstress > 1 || (S->ticks & 1023) == 0) lua_gc(L, LUA_GCCOLLECT);
  else lua_gc(L, LUA_GCSTEP, 0);
}

static void sched_loop(lua_State *L, csp_Sched *S) {
  S->depth++;
  if (!lua_checkstack(L, LOOP_STACK)) {  /* main's wait is undone: a plain error */
    lua_pushliteral(L, "stack overflow (csp scheduler)");
    sched_abort(L, S);
  }
  S->loopL = L;
  if (S->trace) csp_trace_loop(S, 1);
  for (;;) {
    csp_G *g;
    if (csp_sigpending && csp_signal_take(L, S)) sched_abort(L, S);  /* Ctrl-C: interrupted! */
    g = rq_pop(S);
    if (g == &S->maing) break;
    if (g == NULL) {
      if (sched_poll(S, 1) || S->rqcount > 0) continue;
      if (sched_reap(L, S) && S->rqcount > 0) continue;
      sched_dump(L, S, "fatal error: all goroutines are asleep - deadlock!\n\n");
      if (S->port) csp_port_dumps(L, S);  /* other threads' goroutines, when they are all idle */
      sched_abort(L, S);
    }
    if ((++S->ticks & POLL_MASK) == 0) sched_poll(S, 0);
    if (S->gcstress) sched_gcstress(L, S);
    if (sched_resume(L, S, g)) sched_abort(L, S);
  }
  if (S->maing.readyat) csp_metrics_lag(S, &S->maing);
  S->maing.state = CSP_G_RUNNING;
  S->depth--;
  S->ncalls = 0;  /* main's slice starts again */
  S->slice0 = 0;
  if (S->trace) csp_trace_loop(S, 0);
}

/* ---------------------------------------------------------------- API */

static int gosched_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return 0;
}

int csp_sched_yield(lua_State *L, csp_Sched *S) {
  csp_G *g = csp_sched_self(L, S);
  if (g != &S->maing) {
    csp_sched_ready(S, g, 0);
    return lua_yieldk(L, 0, 0, gosched_k);
  }
  sched_poll(S, 0);
  csp_sched_ready(S, g, 0);  /* main goes to the tail: everything ready runs first */
  g->reason = "runnable";
  sched_loop(L, S);
  lua_settop(S->mailbox, 0);
  return 0;
}

/* Whether the running goroutine (or main) used up its slice and may be switched out here. */
int csp_sched_slice_over(lua_State *L, csp_Sched *S) {
  uint64_t now;
  if (S->slice == 0) return 0;
  now = uv_hrtime();
  if (S->slice0 == 0) {  /* the first check of this run: the slice starts now */
    S->slice0 = now;
    return 0;
  }
  if (now - S->slice0 < S->slice) return 0;
  if (S->cur) return S->cur->L == L && lua_isyieldable(L);  /* never where blocking would raise */
  return S->depth == 0 && lua_gc(L, LUA_GCISRUNNING) == 1;   /* main, outside the loop and __gc */
}

static int again_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  return g->again(L);
}

int csp_sched_preempt(lua_State *L, csp_Sched *S, lua_CFunction fn) {
  csp_G *g = S->cur;
  if (g != NULL) {
    g->again = fn;
    S->ticks |= POLL_MASK;  /* the loop polls before the next resume: timers and I/O get in */
    csp_sched_ready(S, g, 0);
    return lua_yieldk(L, 0, (lua_KContext)g, again_k);
  }
  csp_sched_yield(L, S);  /* main: the others run, then the call goes on */
  return fn(L);
}

static int sched_gosched(lua_State *L) {
  return csp_sched_yield(L, csp_sched_get(L));
}

static int sched_goexit(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_G *g = csp_sched_self(L, S);
  if (g != &S->maing) return csp_exit_goexit(L, g);
  /* Go: main's Goexit lets the others run to the end, then reports a deadlock. */
  if (S->ngor > 0) {
    csp_wq_push(&S->runwait, &g->w);
    g->reason = "goexit";
    g->state = CSP_G_WAITING;
    sched_loop(L, S);
    lua_settop(S->mailbox, 0);
  }
  return luaL_error(L, "fatal error: no goroutines (main called csp.goexit) - deadlock!");
}

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

static int sched_run(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_G *g;
  if (S->cur) return luaL_error(L, "csp.run: cannot be called from a goroutine");
  if (!lua_isnoneornil(L, 1)) sched_spawn(L, S, 1, 0);
  g = csp_sched_self(L, S);
  if (S->ngor == 0) return 0;
  csp_wq_push(&S->runwait, &g->w);
  return csp_sched_park(L, g, "csp.run", 0, run_k);
}

static void step_cb(uv_timer_t *h) {
  (void)h;  /* its only job is to end uv_run */
}

static int sched_step(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  double timeout = lua_isnoneornil(L, 1) ? 0 : csp_checknumber(L, 1);
  csp_G *g;
  if (S->cur) return luaL_error(L, "csp.step: cannot be called from a goroutine");
  g = csp_sched_self(L, S);
  csp_sched_ready(S, g, 0);
  g->reason = "runnable";
  sched_loop(L, S);  /* runs what was ready before this call */
  lua_settop(S->mailbox, 0);
  if (S->rqcount == 0 && timeout > 0 && S->ngor > 0) {  /* with no work left, nothing to wait for */
    csp_timer_run(S);
    csp_timer_arm(S);
    uv_ref((uv_handle_t *)S->steptmr);
    uv_timer_start(S->steptmr, step_cb, (csp_timer_secs(timeout) + 999999) / 1000000, 0);
    uv_run(S->loop, UV_RUN_ONCE);
    uv_timer_stop(S->steptmr);
    uv_unref((uv_handle_t *)S->steptmr);
    csp_timer_run(S);
  } else {
    sched_poll(S, 0);
  }
  lua_pushboolean(L, S->ngor > 0 || S->rqcount > 0);
  return 1;
}

static int sched_numgoroutine(lua_State *L) {
  lua_pushinteger(L, csp_sched_get(L)->ngor + 1);
  return 1;
}

static int sched_goid(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  lua_pushinteger(L, (S->cur && S->cur->L == L) ? S->cur->id : 1);
  return 1;
}

static int sched_stats(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  long blocked = 0;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (g->state == CSP_G_WAITING && !g->internal) blocked++;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, S->ngor + 1); lua_setfield(L, -2, "goroutines");
  lua_pushinteger(L, S->rqcount); lua_setfield(L, -2, "runnable");
  lua_pushinteger(L, blocked); lua_setfield(L, -2, "blocked");
  lua_pushinteger(L, (lua_Integer)S->switches); lua_setfield(L, -2, "switches");
  lua_pushinteger(L, S->nchans); lua_setfield(L, -2, "channels_alive");
  lua_pushinteger(L, S->nheap); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, S->ntpool); lua_setfield(L, -2, "pooled_threads");
  lua_pushinteger(L, S->nextid); lua_setfield(L, -2, "goroutines_started");
  csp_metrics_stats(L, S);
  lua_pushinteger(L, csp_shared_alive()); lua_setfield(L, -2, "shared_alive");
  return 1;
}

static int sched_seed(lua_State *L) {
  csp_sched_get(L)->rng = (uint64_t)luaL_checkinteger(L, 1);
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, csp_close_free);
}

/* At lua_close: the scheduler is finalized after every object made after it. */
static int sched_gc(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, 1);
  csp_G *g, *next;
  if (S->closing) return 0;
  S->closing = 1;
  csp_trace_free(S);
  csp_port_teardown(S);  /* waits other threads could still complete */
  /* Close every handle and drain the loop while the records still exist: a request cancelled
  ** by the close calls back now, and csp_sched_wake refuses it (S->closing) without waking. */
  uv_walk(S->loop, close_walk, NULL);
  {
    int rc = uv_loop_close(S->loop);
    for (int i = 0; i < 1000 && rc == UV_EBUSY; i++) {
      uv_run(S->loop, UV_RUN_NOWAIT);
      rc = uv_loop_close(S->loop);
    }
    if (rc == 0) free(S->loop);  /* else leak it: a worker thread may still use it */
  }
  for (g = S->all.anext; g != &S->all; g = next) {
    next = g->anext;
    free(g->sel);
    free(g->xdepth);
    free(g);
  }
  while ((g = S->gfree) != NULL) {
    S->gfree = g->anext;
    free(g->sel);
    free(g);
  }
  free(S->maing.sel);
  csp_timer_free(S);
  free(S->rq);
  free(S->tpool);
  free(S->freeslots);
  free(S->scratch);
  return 0;
}

static const luaL_Reg sched_funcs[] = {
  {"go", sched_go},
  {"_go_internal", sched_go_internal},
  {"gosched", sched_gosched},
  {"goexit", sched_goexit},
  {"run", sched_run},
  {"step", sched_step},
  {"numgoroutine", sched_numgoroutine},
  {"goid", sched_goid},
  {"dump", sched_dump_l},
  {"stats", sched_stats},
  {"seed", sched_seed},
  {NULL, NULL}
};

/* CSP_SLICE: a duration with a unit (ns, us, ms, s; none: ms), default 10ms; 0 turns
** preemption off. */
static uint64_t slice_ns(const char *v) {
  char *end;
  double d;
  if (v == NULL || *v == '\0') return 10000000;
  d = strtod(v, &end);
  if (end == v || !(d >= 0)) return 10000000;
  if (strcmp(end, "ns") == 0) d *= 1e-9;
  else if (strcmp(end, "us") == 0) d *= 1e-6;
  else if (strcmp(end, "s") == 0) d *= 1;
  else d *= 1e-3;
  return d > 0 ? csp_timer_secs(d) : 0;
}

/* Creates the scheduler: leaves [module, sched] on the stack (module below). */
void csp_sched_open(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_newuserdatauv(L, sizeof *S, 1);
  const char *seed = getenv("CSP_SEED");
  memset(S, 0, sizeof *S);
  S->all.anext = S->all.aprev = &S->all;
  S->maing.S = S;
  S->maing.id = 1;
  S->maing.w.g = &S->maing;
  S->maing.state = CSP_G_RUNNING;
  S->maing.anext = S->maing.aprev = &S->maing;
  S->rng = seed && *seed ? strtoull(seed, NULL, 10) : (uv_hrtime() ^ ((uint64_t)getpid() << 32));
  S->nextid = 1;
  S->slice = slice_ns(getenv("CSP_SLICE"));
  {
    const char *gs = getenv("CSP_GCSTRESS");
    S->gcstress = gs == NULL || *gs == '\0' || strcmp(gs, "0") == 0 ? 0 : strcmp(gs, "full") == 0 ? 2 : 1;
  }
  S->rq = malloc(256 * sizeof *S->rq);
  S->rqmask = 255;
  S->tpool = malloc(POOL_MAX * sizeof *S->tpool);
  S->loop = malloc(sizeof *S->loop);
  S->steptmr = malloc(sizeof *S->steptmr);
  if (!S->rq || !S->tpool || !S->loop || !S->steptmr || uv_loop_init(S->loop) != 0) {
    free(S->rq); free(S->tpool); free(S->loop); free(S->steptmr);
    luaL_error(L, "csp: cannot initialise the event loop");
  }
  uv_timer_init(S->loop, S->steptmr);
  uv_unref((uv_handle_t *)S->steptmr);
  csp_timer_init(S);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, sched_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  S->mailbox = lua_newthread(L);  /* main's results wait here: never on main's own stack */
  lua_checkstack(S->mailbox, 16);
  lua_setiuservalue(L, -2, 1);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
  lua_createtable(L, 256, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &pending_key);
  S->pmask = 255;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, S);  /* anchored until lua_close */
  csp_setfuncs(L, sched_funcs);
}
