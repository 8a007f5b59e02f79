/* floor.c: Lua's own floor under the core benchmarks: methods that only return or yield.
** A userdata whose methods do no work (send, recv, lock, unlock return at once; wait yields and
** returns a value when resumed; range(n) iterates n values; select reads its case table first)
** and a driver that resumes coroutines from C in a ring, as csp's loop does (lua_resume from the
** loop's state). There is no channel, queue, record or check, except the bare run queue,
** channels, mutex and heap that the sieve's, the sleepers' and the mutex hand-off's order of
** switches needs (below): a workload written with these pays only what any runtime whose
** goroutines are Lua coroutines and whose operations are C methods pays (the scripts beside
** this file; bench/README.md, "Lua's floor"). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "lua.h"
#include "lauxlib.h"

static int fl_nop(lua_State *L) {
  (void)L;
  return 0;
}

/* A receive that found an item: v, ok. */
static int fl_recv(lua_State *L) {
  lua_pushinteger(L, 1);
  lua_pushboolean(L, 1);
  return 2;
}

static int fl_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  lua_pushinteger(L, 1);
  return 1;
}

/* A receive (or send) that parks: yields from C, as a blocked channel operation does. */
static int fl_wait(lua_State *L) {
  return lua_yieldk(L, 0, 0, fl_wait_k);
}

/* The iterator of `for v in o:range(n)`: n values, then nil (the count lives in the object). */
static int fl_range_next(lua_State *L) {
  lua_Integer *left = (lua_Integer *)lua_touserdata(L, 1);
  if (*left <= 0) return 0;
  (*left)--;
  lua_pushinteger(L, 1);
  return 1;
}

static int fl_range(lua_State *L) {
  *(lua_Integer *)lua_touserdata(L, 1) = luaL_checkinteger(L, 2);
  lua_pushcfunction(L, fl_range_next);
  lua_pushvalue(L, 1);
  return 2;
}

/* select's reads: what any select over a case table must do before anything else, read through
** the Lua API: the options probe (a key past the cases: default, ordered), then each case
** fetched and told apart from a foreign userdata by its size (the cheapest check that is safe on
** any value). Returns as the cheap select does; select_park reads, then yields. */
static void fl_select_reads(lua_State *L) {
  int n = (int)lua_rawlen(L, 1);
  lua_pushinteger(L, n);
  if (lua_next(L, 1) != 0) lua_pop(L, 2);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    if (lua_touserdata(L, -1) == NULL || lua_rawlen(L, -1) != sizeof(lua_Integer))
      luaL_error(L, "case #%d: not a floor object", i);
  }
}

static int fl_select(lua_State *L) {
  fl_select_reads(L);
  return fl_recv(L);
}

static int fl_select_park(lua_State *L) {
  fl_select_reads(L);
  return fl_wait(L);
}

static int fl_new(lua_State *L) {
  lua_newuserdatauv(L, sizeof(lua_Integer), 0);
  luaL_setmetatable(L, "bench.floor");
  return 1;
}

/* run(co1, co2, ...): resumes each live coroutine in turn until all have returned. */
static int fl_run(lua_State *L) {
  int n = lua_gettop(L), live = n;
  for (int i = 1; i <= n; i++) luaL_checktype(L, i, LUA_TTHREAD);
  while (live > 0) {
    for (int i = 1; i <= n; i++) {
      lua_State *co = lua_tothread(L, i);
      int nres, st;
      if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) continue;  /* returned */
      st = lua_resume(co, L, 0, &nres);
      if (st == LUA_OK) live--;
      else if (st != LUA_YIELD) {
        lua_xmove(co, L, 1);
        return lua_error(L);
      }
      lua_pop(co, nres);
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- a run queue
** The sieve, the sleepers and the mutex hand-off need their switches in order, which the ring
** cannot give: here is the least a scheduler of coroutines has. floor.go(f, ...) queues
** f(...), whose coroutine is made when it starts, anchored in a registry table;
** floor.sched(main [, all]) resumes the FIFO run queue from C until main returns (the rest
** abandoned, as Go does at exit), or with all until nothing is left, sleeping until the next
** deadline (in whole ms, as csp's loop waits) when nothing runs. Channels are unbuffered, of
** integers, with one parked coroutine a side (a sieve channel has one sender and one
** receiver); floor.sleep(d) parks on a binary heap of deadlines; floor.mutex() hands itself
** over to its one waiter; floor.gosched() goes to the tail. Nothing else: no select, close,
** goroutine record, value other than an integer, or argument check. */
#define RQ_SIZE (1 << 17)  /* more than the workloads' coroutines */
static struct { lua_State *co; int nargs, pbase; } rq[RQ_SIZE];  /* co NULL: not started */
static unsigned rqhead, rqtail;
static int pendtop = 1;          /* next free index of the pending functions and arguments */
static const char anchors_key = 0, pend_key = 0;

static void fc_ready(lua_State *L, lua_State *co, int nargs, int pbase) {
  if (rqtail - rqhead == RQ_SIZE) luaL_error(L, "floor: run queue full");
  rq[rqtail % RQ_SIZE].co = co;
  rq[rqtail % RQ_SIZE].nargs = nargs;
  rq[rqtail % RQ_SIZE].pbase = pbase;
  rqtail++;
}

static uint64_t fc_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct FlChan {
  lua_State *recvr, *sendr;  /* the parked receiver or sender, if any */
  lua_Integer v;             /* the parked sender's value */
} FlChan;

static int fc_new(lua_State *L) {
  FlChan *c = (FlChan *)lua_newuserdatauv(L, sizeof *c, 0);
  c->recvr = c->sendr = NULL;
  luaL_setmetatable(L, "bench.floor.chan");
  return 1;
}

static int fc_k0(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

static int fc_k1(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 1;  /* the value its resumer pushed */
}

/* A parked receiver gets the value on its stack and goes to the run queue; the sender runs on,
** as in Go. Else the sender parks with its value. */
static int fc_send(lua_State *L) {
  FlChan *c = (FlChan *)lua_touserdata(L, 1);
  lua_Integer v = lua_tointeger(L, 2);
  lua_State *r = c->recvr;
  if (r != NULL) {
    c->recvr = NULL;
    lua_pushinteger(r, v);  /* a yielded coroutine has room for its resume's values */
    fc_ready(L, r, 1, 0);
    return 0;
  }
  c->v = v;
  c->sendr = L;
  return lua_yieldk(L, 0, 0, fc_k0);
}

static int fc_recv(lua_State *L) {
  FlChan *c = (FlChan *)lua_touserdata(L, 1);
  lua_State *s = c->sendr;
  if (s != NULL) {
    c->sendr = NULL;
    lua_pushinteger(L, c->v);
    fc_ready(L, s, 0, 0);
    return 1;
  }
  c->recvr = L;
  return lua_yieldk(L, 0, 0, fc_k1);
}

/* A mutex with one parked coroutine at most (the hand-off workload has two): unlock hands it
** to the one waiting, which the run queue resumes owning it, as csp and Go hand over. */
typedef struct FlMutex {
  int locked;
  lua_State *waiter;
} FlMutex;

static int fm_new(lua_State *L) {
  FlMutex *m = (FlMutex *)lua_newuserdatauv(L, sizeof *m, 0);
  m->locked = 0;
  m->waiter = NULL;
  luaL_setmetatable(L, "bench.floor.mutex");
  return 1;
}

static int fm_lock(lua_State *L) {
  FlMutex *m = (FlMutex *)lua_touserdata(L, 1);
  if (!m->locked) {
    m->locked = 1;
    return 0;
  }
  m->waiter = L;
  return lua_yieldk(L, 0, 0, fc_k0);
}

static int fm_unlock(lua_State *L) {
  FlMutex *m = (FlMutex *)lua_touserdata(L, 1);
  lua_State *w = m->waiter;
  if (w != NULL) {
    m->waiter = NULL;
    fc_ready(L, w, 0, 0);
  } else {
    m->locked = 0;
  }
  return 0;
}

/* gosched(): to the run queue's tail. */
static int fc_gosched(lua_State *L) {
  fc_ready(L, L, 0, 0);
  return lua_yieldk(L, 0, 0, fc_k0);
}

/* The sleepers' deadlines: a binary min-heap. */
static struct { uint64_t when; lua_State *co; } *heap;
static size_t nheap, heapcap;

static int fc_sleep(lua_State *L) {
  uint64_t when = fc_clock() + (uint64_t)(luaL_checknumber(L, 1) * 1e9);
  size_t i;
  if (nheap == heapcap) {
    size_t ncap = heapcap ? heapcap * 2 : 1024;
    void *nh = realloc(heap, ncap * sizeof *heap);
    if (nh == NULL) return luaL_error(L, "not enough memory");
    heap = nh;
    heapcap = ncap;
  }
  i = nheap++;
  for (; i > 0 && heap[(i - 1) / 2].when > when; i = (i - 1) / 2) heap[i] = heap[(i - 1) / 2];
  heap[i].when = when;
  heap[i].co = L;
  return lua_yieldk(L, 0, 0, fc_k0);
}

static lua_State *heap_pop(void) {
  lua_State *co = heap[0].co;
  size_t i = 0, c;
  nheap--;
  while ((c = 2 * i + 1) < nheap) {
    if (c + 1 < nheap && heap[c + 1].when < heap[c].when) c++;
    if (heap[c].when >= heap[nheap].when) break;
    heap[i] = heap[c];
    i = c;
  }
  heap[i] = heap[nheap];
  return co;
}

/* go(f, ...): f and its arguments wait in the pending table; the coroutine is made when it
** first runs (as csp does: a goroutine waiting to start costs no thread). */
static int fc_go(lua_State *L) {
  int n = lua_gettop(L), pbase = pendtop;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pend_key);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, pendtop++);
  }
  fc_ready(L, NULL, n - 1, pbase);
  return 0;
}

/* The thread of a goroutine starting: anchored (its reference below the function on its stack),
** with f and the arguments taken from the pending table (at 4). */
static lua_State *fc_start(lua_State *L, int pbase, int nargs) {
  lua_State *co = lua_newthread(L);
  lua_pushinteger(co, luaL_ref(L, 3));
  for (int i = 0; i <= nargs; i++) {
    lua_rawgeti(L, 4, pbase + i);
    lua_xmove(L, co, 1);
    lua_pushnil(L);
    lua_rawseti(L, 4, pbase + i);
  }
  return co;
}

/* sched(main [, all]) */
static int fc_sched(lua_State *L) {
  lua_State *main;
  int all = lua_toboolean(L, 2), maindone = 0;
  luaL_checktype(L, 1, LUA_TTHREAD);
  main = lua_tothread(L, 1);
  rqhead = rqtail = 0;
  nheap = 0;
  fc_ready(L, main, 0, 0);
  lua_settop(L, 2);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key);  /* 3 */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pend_key);     /* 4 */
  for (;;) {
    lua_State *co;
    int nargs, nres, st;
    if (rqhead == rqtail) {
      uint64_t now = fc_clock();
      if (nheap == 0 || (maindone && !all)) break;
      if (heap[0].when > now) {  /* in whole ms, as csp's loop (libuv) waits: sleepers batch */
        uint64_t ms = (heap[0].when - now + 999999) / 1000000;
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
        while (nanosleep(&ts, &ts) != 0) {}
        now = fc_clock();
      }
      while (nheap > 0 && heap[0].when <= now) fc_ready(L, heap_pop(), 0, 0);
      continue;
    }
    co = rq[rqhead % RQ_SIZE].co;
    nargs = rq[rqhead % RQ_SIZE].nargs;
    if (co == NULL) co = fc_start(L, rq[rqhead % RQ_SIZE].pbase, nargs);
    rqhead++;
    if (rqhead == rqtail) pendtop = 1;  /* nothing pending: the table's slots are free again */
    else if (rq[rqhead % RQ_SIZE].co) __builtin_prefetch(rq[rqhead % RQ_SIZE].co);  /* as csp */
    st = lua_resume(co, L, nargs, &nres);
    if (st == LUA_YIELD) continue;  /* parked, yielding nothing */
    if (st != LUA_OK) {
      lua_xmove(co, L, 1);
      return lua_error(L);
    }
    if (co == main) {
      maindone = 1;
      if (!all) break;
    } else {
      luaL_unref(L, 3, (int)lua_tointeger(co, 1));  /* its reference, below the function */
    }
  }
  rqhead = rqtail = 0;
  return 0;
}

static int fl_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)fc_clock() * 1e-9);
  return 1;
}

/* Resident memory in bytes (VmRSS of /proc/self/status), as bench/parked.lua reads it. */
static int fl_rss(lua_State *L) {
  char line[256];
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return luaL_error(L, "cannot open /proc/self/status");
  while (kb < 0 && fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmRSS: %ld", &kb) != 1) kb = -1;
  fclose(f);
  if (kb < 0) return luaL_error(L, "no VmRSS in /proc/self/status");
  lua_pushinteger(L, (lua_Integer)kb * 1024);
  return 1;
}

int luaopen_bench_floor(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"send", fl_nop}, {"recv", fl_recv}, {"wait", fl_wait}, {"range", fl_range},
    {"lock", fl_nop}, {"unlock", fl_nop}, {"select", fl_select}, {"select_park", fl_select_park},
    {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"new", fl_new}, {"run", fl_run}, {"now", fl_now}, {"rss", fl_rss},
    {"go", fc_go}, {"sched", fc_sched}, {"gosched", fc_gosched}, {"sleep", fc_sleep},
    {"chan", fc_new}, {"mutex", fm_new}, {NULL, NULL}
  };
  static const luaL_Reg chan_methods[] = {{"send", fc_send}, {"recv", fc_recv}, {NULL, NULL}};
  static const luaL_Reg mutex_methods[] = {{"lock", fm_lock}, {"unlock", fm_unlock}, {NULL, NULL}};
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &pend_key);
  luaL_newmetatable(L, "bench.floor");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  luaL_newmetatable(L, "bench.floor.chan");
  luaL_newlib(L, chan_methods);
  lua_setfield(L, -2, "__index");
  luaL_newmetatable(L, "bench.floor.mutex");
  luaL_newlib(L, mutex_methods);
  lua_setfield(L, -2, "__index");
  luaL_newlib(L, funcs);
  return 1;
}
