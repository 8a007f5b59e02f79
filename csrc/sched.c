/* sched.c: goroutine records and their Lua threads, the run queue, pending starts, spawning, parking
** (the loop: loop.c; reports: report.c; the Lua bindings: schedlua.c). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "csp.h"

#define POOL_MAX 1024   /* idle threads cost GC time: keep at most this many */
#define GFREE_MAX 4096  /* idle goroutine records kept */


/* ---------------------------------------------------------------- run queue */

/* Grows a ring of cap elements of size sz (count of them from head) to ncap >= 2 * cap, in place
** where it can be: realloc moves a large block by remapping its pages, not by copying (a burst of
** spawns grows the run queue to millions of entries). The part that wrapped moves past the old
** end, so head stays. NULL if out of memory (the ring unchanged). */
static void *ring_grow(void *ring, size_t sz, uint32_t head, uint32_t count, uint32_t cap,
                       uint32_t ncap) {
  char *r = realloc(ring, (size_t)ncap * sz);
  if (r != NULL && head + count > cap) memcpy(r + (size_t)cap * sz, r, (size_t)(head + count - cap) * sz);
  return r;
}

/* The ring always has room for every goroutine record, every start still without one and main
** (grown when either is made), so readying never allocates and never fails. */
static void rq_grow(lua_State *L, csp_Sched *S, uint32_t need) {
  uint32_t cap = S->rqmask + 1, ncap = cap;
  csp_G **nrq;
  if (need <= cap) return;
  while (ncap < need) ncap *= 2;
  nrq = ring_grow(S->rq, sizeof *nrq, S->rqhead, S->rqcount, cap, ncap);
  if (nrq == NULL) luaL_error(L, "not enough memory");
  S->rq = nrq;
  S->rqmask = ncap - 1;
}

/* metrics.c: the ready-to-run delay of one ready in 64 is timed from here. */
void csp_sched_ready_timed(csp_G *g) {
  g->readyat = uv_hrtime();
}

/* ---------------------------------------------------------------- timer wakeups */

/* A goroutine woken because its deadline passed (a sleep, a timed wait, a timer channel's
** receiver) runs ahead of the run queue, as Go puts it in runnext: a deadline keeps its time
** under load, and in a burst of spawns a woken sleeper ends, its thread going to the next start,
** before the burst has made a thread for every goroutine. The goroutines one firing of the
** timers wakes go ahead in deadline order; those of the next firing go ahead only once they and
** the entry after them have run (S->switches counts resumes): however often timers fire, the
** queue moves. */
void csp_sched_timers_begin(csp_Sched *S) {
  S->tahead = S->switches >= S->tnext;
  S->tbatch = 0;
}

void csp_sched_ready_timer(csp_Sched *S, csp_G *g, int nargs) {
  csp_sched_ready(S, g, nargs);  /* the bookkeeping; then from the tail to the head */
  if (!S->tahead) return;
  S->rqhead = (S->rqhead - 1) & S->rqmask;
  S->rq[S->rqhead] = g;
  S->tbatch++;
}

void csp_sched_timers_end(csp_Sched *S) {
  uint32_t k = S->tbatch, h = S->rqhead, m = S->rqmask;
  for (uint32_t i = 0; i < k / 2; i++) {  /* each went to the head: they are in reverse */
    csp_G *t = S->rq[(h + i) & m];
    S->rq[(h + i) & m] = S->rq[(h + k - 1 - i) & m];
    S->rq[(h + k - 1 - i) & m] = t;
  }
  if (k > 0 && S->rqcount > k) S->tnext = S->switches + k + 1;
  S->tahead = 0;
  S->tbatch = 0;
}

/* ---------------------------------------------------------------- goroutine records */

/* lua_close runs finalizers after the scheduler's own __gc (those set before require "csp"):
** its memory is still there, its loop and records are not. */
int csp_sched_gone(lua_State *L) {
  return luaL_error(L, "csp: called after lua_close tore its scheduler down");
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

static void anchors_set(lua_State *L, csp_Sched *S, int slot, int validx) {
  validx = lua_absindex(L, validx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->anchors);
  lua_pushvalue(L, validx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
}

void csp_sched_anchor(lua_State *L, csp_G *g, int validx) {
  anchors_set(L, g->S, g->slot, validx);
}

/* A goroutine's thread is made when it first runs, its record then too unless it was needed at
** spawn (csp_sched_go): goroutines that wait in the run queue cost their arguments, not a Lua
** thread. Threads and records are pooled separately. */
static csp_G *g_get(lua_State *L, csp_Sched *S) {
  csp_G *g = S->gfree;
  if (g != NULL) {
    S->gfree = g->anext;
    S->ngfree--;
  } else {
    rq_grow(L, S, (uint32_t)S->ngrec + S->pdcount + 2);
    if ((g = calloc(1, sizeof *g)) == NULL) luaL_error(L, "not enough memory");
    g->S = S;
    g->w.g = g;
    S->ngrec++;
  }
  g->anext = g->aprev = g;
  return g;
}

csp_GExt *csp_sched_ext_new(csp_G *g) {
  return g->ext = calloc(1, sizeof *g->ext);
}

/* Its goroutine ended: the extension goes back to blank (the race clock is csp_race_gend's). */
static void ext_clear(csp_GExt *x) {
  free(x->xdepth);
  x->xdepth = NULL;
  x->heldby = NULL;
  x->tname = NULL;
  x->tflow = 0;
}

static void g_put(csp_Sched *S, csp_G *g) {
  if (S->ngfree >= GFREE_MAX) {
    free(g->sel);
    free(g->ext);
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
int csp_sched_thread_attach(lua_State *L, csp_Sched *S, csp_G *g) {
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
    /* The slot is taken only once both allocations (which may raise) succeeded. */
    slot = S->nfree > 0 ? S->freeslots[S->nfree - 1] : S->nslots + 1;
    lua_State *co = lua_newthread(L);
    anchors_set(L, S, slot, -1);
    lua_pop(L, 1);
    if (S->nfree > 0) S->nfree--;
    else S->nslots++;
    g->L = co;
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
    anchors_set(L, S, g->slot, -1);
    lua_pop(L, 1);
    S->freeslots[S->nfree++] = g->slot;  /* room: freecap >= nslots (csp_sched_thread_attach) */
  }
  g->L = NULL;
}

/* A goroutine that ended. */
void csp_sched_g_release(lua_State *L, csp_Sched *S, csp_G *g, int reusable) {
  if (S->race) csp_race_gend(S, g);
  all_unlink(g);
  if (g->ext) ext_clear(g->ext);
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
** collector sees them). Goroutines start in spawn order (a start enters the run queue only at
** its tail), so the ring is consumed from its head. */
static void pend_push(lua_State *L, csp_Sched *S, int first, int n) {
  int t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->pending);
  t = lua_gettop(L);
  if (S->pcount + (uint32_t)n > S->pmask + 1) {
    uint32_t ncap = (S->pmask + 1) * 2;
    while (ncap < S->pcount + (uint32_t)n) ncap *= 2;
    /* Not wrapped (a burst of spawns), the values just go on past the end, where Lua grows the
    ** array part by doubling, with realloc, as for any t[#t + 1]; else a new table. */
    if (S->phead != 0) {
      lua_createtable(L, (int)ncap, 0);
      for (uint32_t i = 0; i < S->pcount; i++) {
        lua_rawgeti(L, t, ((S->phead + i) & S->pmask) + 1);
        lua_rawseti(L, -2, i + 1);
      }
      lua_replace(L, t);
      lua_pushvalue(L, t);
      lua_rawseti(L, LUA_REGISTRYINDEX, S->pending);
      S->phead = 0;
    }
    S->pmask = ncap - 1;
  }
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, t, ((S->phead + S->pcount + (uint32_t)i) & S->pmask) + 1);
  }
  S->pcount += (uint32_t)n;
  lua_settop(L, first - 1);
}

/* A burst of spawns grows the ring to its size; once it drains, a small ring replaces it, so the
** burst's memory goes back (2 MB after 1e5 goroutines spawned at once). Protected: the loop runs
** this, where a memory error must not unwind (then the big ring simply stays). */
#define PEND_MIN 256

static int pend_new(lua_State *L) {
  lua_createtable(L, PEND_MIN, 0);
  lua_rawseti(L, LUA_REGISTRYINDEX, (int)lua_tointeger(L, 1));
  return 0;
}

static void pend_shrink(lua_State *L, csp_Sched *S) {
  if (S->pcount > 0 || S->pmask < 16 * PEND_MIN) return;
  lua_pushcfunction(L, pend_new);
  lua_pushinteger(L, S->pending);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    lua_pop(L, 1);
    return;
  }
  S->phead = 0;
  S->pmask = PEND_MIN - 1;
}

void csp_sched_pend_drop(lua_State *L, csp_Sched *S, int n) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->pending);
  for (int i = 0; i < n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, ((S->phead + (uint32_t)i) & S->pmask) + 1);
  }
  S->phead = (S->phead + (uint32_t)n) & S->pmask;
  S->pcount -= (uint32_t)n;
  lua_pop(L, 1);
  pend_shrink(L, S);
}

/* Moves the n values at the ring's head onto co, one at a time: L (the loop's thread) was not
** sized for n values, co was (the caller checked its stack). */
void csp_sched_pend_pop(lua_State *L, csp_Sched *S, lua_State *co, int n) {
  int t;
  lua_rawgeti(L, LUA_REGISTRYINDEX, S->pending);
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
  pend_shrink(L, S);
}

/* ---------------------------------------------------------------- starts without a record */

/* Room for one more entry in S->pend; may raise (memory) before anything changed. */
static void pd_grow(lua_State *L, csp_Sched *S) {
  uint32_t cap = S->pend ? S->pdmask + 1 : 0;
  csp_Pend *np;
  if (S->pdcount < cap) return;
  np = ring_grow(S->pend, sizeof *np, S->pdhead, S->pdcount, cap, cap ? cap * 2 : PEND_MIN);
  if (np == NULL) luaL_error(L, "not enough memory");
  S->pend = np;
  S->pdmask = (cap ? cap * 2 : PEND_MIN) - 1;
}

/* The oldest entry of S->pend goes; a drained burst's ring goes with it. */
static void pd_shift(csp_Sched *S) {
  S->pdhead = (S->pdhead + 1) & S->pdmask;
  if (--S->pdcount == 0 && S->pdmask >= 16 * PEND_MIN) {
    free(S->pend);
    S->pend = NULL;
    S->pdhead = S->pdmask = 0;
  }
}

/* The loop just took the run queue's entry &S->all: the oldest record-less start gets its record,
** linked among all goroutines after younger ones made at spawn (csp_sched_sortbyid restores id
** order where it is shown). Its f and arguments stay at the pending ring's head for the first
** resume. A memory error leaves the entry queued as it was: the next run of the loop retries. */
csp_G *csp_sched_pend_record(lua_State *L, csp_Sched *S) {
  const csp_Pend *p = &S->pend[S->pdhead];
  csp_G *g;
  S->rqhead = (S->rqhead - 1) & S->rqmask;  /* back at the head while g_get may raise */
  S->rqcount++;
  g = g_get(L, S);
  csp_sched_rq_pop(S);
  g->id = p->id;
  g->parent = p->parent;
  g->internal = (uint8_t)p->internal;
  g->nargs = p->nvals - 1;
  g->exiting = CSP_EXIT_NO;
  g->panicking = 0;
  g->started = 0;
  g->reason = NULL;
  g->readyat = p->readyat;
  g->state = CSP_G_RUNNABLE;
  pd_shift(S);
  all_link(S, g);
  return g;
}

static int byid(const void *a, const void *b) {
  lua_Integer x = (*(csp_G *const *)a)->id, y = (*(csp_G *const *)b)->id;
  return (x > y) - (x < y);
}

void csp_sched_sortbyid(csp_G **v, size_t n) {
  qsort(v, n, sizeof *v, byid);
}

void csp_sched_cancel(csp_G *g) {
  if (g->ext) g->ext->heldby = NULL;
  csp_wq_unlink(&g->w);
  for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
  g->nsel = 0;
  if (g->req) csp_req_cancel(g);
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
  return g->sel;  /* NULL until first grown; the parker sets every field of the waiters it links */
}

/* ---------------------------------------------------------------- spawning */

/* The argument at arg is a function or has __call, else luaL_typeerror's error. */
void csp_sched_checkfunc(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TFUNCTION) return;
  if (luaL_getmetafield(L, arg, "__call") != LUA_TNIL) { lua_pop(L, 1); return; }
  luaL_typeerror(L, arg, "function");
}

/* Starts f(...) from the values at [first, top], which it pops. */
csp_G *csp_sched_spawn(lua_State *L, csp_Sched *S, int first, int internal) {
  int n = lua_gettop(L) - first + 1;
  csp_G *g;
  csp_sched_checkfunc(L, first);
  g = g_get(L, S);
  if (S->ntpool > 0 && n <= LUA_MINSTACK - 2) {  /* a thread is at hand: no need to wait in the ring */
    csp_sched_thread_attach(L, S, g);
    csp_exit_push(g);  /* f runs under the base frame: pushed first, nothing is rotated */
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

/* csp.go: starts f(...) from the values at [first, top], which it pops; returns its id. With no
** idle thread to start it on, it waits in the pending ring without a record until its turn comes
** (csp_sched_pend_record): 48 bytes instead of a 208-byte record each, which for 1e6 goroutines
** spawned at once is most of their memory and page faults. The race detector and a running
** trace take the record at spawn (a clock and a flow to keep from the spawning goroutine). */
lua_Integer csp_sched_go(lua_State *L, csp_Sched *S, int first, int internal) {
  int n = lua_gettop(L) - first + 1;
  csp_Pend *p;
  if (S->ntpool > 0 || S->race || S->trace) return csp_sched_spawn(L, S, first, internal)->id;
  csp_sched_checkfunc(L, first);
  rq_grow(L, S, (uint32_t)S->ngrec + S->pdcount + 2);
  pd_grow(L, S);
  pend_push(L, S, first, n);  /* may raise (memory): nothing is counted yet */
  p = &S->pend[(S->pdhead + S->pdcount++) & S->pdmask];
  p->id = ++S->nextid;
  p->parent = S->cur ? S->cur->id : 1;
  p->nvals = n;
  p->internal = internal;
  p->readyat = (++S->m.lagclock & CSP_LAG_MASK) == 0 ? uv_hrtime() : 0;  /* as csp_sched_ready */
  if (!internal) S->ngor++;
  csp_sched_rq_push(S, &S->all);
  return p->id;
}

/* ---------------------------------------------------------------- parking */

/* From 5.4.4 every lua_gc call made while the collector runs a finalizer answers -1, and 0 means
** only that the program stopped the collector. Before, a finalizer saw 0 as well, and only a
** walk of the stack told them apart: ~1,400 instructions per block of main under a stopped
** collector, which the compile-time check spares 5.4.4 and later. */
int csp_sched_in_finalizer(lua_State *L) {
  int r = lua_gc(L, LUA_GCISRUNNING);
  if (r != 0) return r == -1;
#if LUA_VERSION_RELEASE_NUM >= 50404
  return 0;
#else
  {
    lua_Debug ar;
    for (int level = 0; lua_getstack(L, level, &ar); level++) {
      lua_getinfo(L, "n", &ar);
      if (ar.namewhat && strcmp(ar.namewhat, "metamethod") == 0 && ar.name &&
          strcmp(ar.name, "__gc") == 0)
        return 1;
    }
    return 0;
  }
#endif
}

/* csp_sched_self when L is not a goroutine that may block here: raises, or main's record. */
csp_G *csp_sched_self_slow(lua_State *L, csp_Sched *S) {
  csp_G *g = S->cur;
  if (g != NULL) {
    if (g->L != L)
      luaL_error(L, "attempt to block inside a plain coroutine running in a goroutine "
                    "(start a goroutine with csp.go instead)");
    luaL_error(L, "attempt to block in a non-yieldable context");
  }
  if (S->depth > 0) luaL_error(L, "attempt to block while the scheduler is running (in a finalizer?)");
  if (csp_sched_in_finalizer(L)) luaL_error(L, "attempt to block in a non-yieldable context (__gc)");
  g = &S->maing;
  g->L = L;  /* the thread that blocks: the main chunk, or a plain coroutine it resumed */
  return g;
}

/* Main cannot yield: it runs the loop until it is readied; its results wait in the mailbox. */
int csp_sched_park_main(lua_State *L, csp_G *g, lua_KContext ctx, lua_KFunction k) {
  csp_Sched *S = g->S;
  S->undo = NULL;
  csp_loop_run(L, S);  /* returns once main is readied; raises on panic or deadlock */
  lua_xmove(S->mailbox, L, g->nargs);
  return k(L, LUA_OK, ctx);
}

/* Resumed by coroutine.resume through coroutine.running(), not by the scheduler. */
void csp_sched_badresume(lua_State *L, csp_G *g) {
  /* Its record stays (a libuv request may still hold it, let go of by csp_sched_cancel) until the
  ** thread is dead and nothing can be in flight: csp_loop_reap lets it go then. */
  csp_sched_cancel(g);
  luaL_error(L, "goroutine resumed outside the scheduler");
}

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
  csp_Sched *S = (csp_Sched *)lua_newuserdatauv(L, sizeof *S, 2);
  const char *seed = getenv("CSP_SEED");
  memset(S, 0, sizeof *S);
  S->all.anext = S->all.aprev = &S->all;
  S->teardown.next = S->teardown.prev = &S->teardown;
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
  {
    static const luaL_Reg meta[] = {{"__gc", csp_schedlua_gc}, {NULL, NULL}};
    csp_newmeta(L, NULL, NULL, meta);
    lua_setmetatable(L, -2);
  }
  S->mailbox = lua_newthread(L);  /* main's results wait here: never on main's own stack */
  lua_checkstack(S->mailbox, 16);
  lua_setiuservalue(L, -2, 1);
  S->loopL = lua_newthread(L);  /* the loop runs here, above nobody's frame (loop.c) */
  lua_setiuservalue(L, -2, 2);
  /* Integer keys: the registry's array part, cheaper to reach than a light userdata key. */
  lua_newtable(L);
  S->anchors = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, PEND_MIN, 0);
  S->pending = luaL_ref(L, LUA_REGISTRYINDEX);
  S->pmask = PEND_MIN - 1;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, S);  /* anchored until lua_close */
  csp_setfuncs(L, csp_schedlua_funcs);
}
