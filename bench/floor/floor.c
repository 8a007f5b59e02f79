/* floor.c: Lua's own floor under the core benchmarks: methods that only return or yield.
** A userdata whose methods do no work (send, recv, lock, unlock return at once; wait yields and
** returns a value when resumed; range(n) iterates n values) and a driver that resumes coroutines
** from C in a ring, as csp's loop does (lua_resume from the loop's state). There is no channel,
** queue, record or check, except the bare channels and run queue the sieve's order of switches
** needs (below): a workload written with these pays only what any runtime whose goroutines are
** Lua coroutines and whose operations are C methods pays (the scripts beside this file;
** bench/README.md, "Lua's floor"). */
#include <stdio.h>
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

/* ---------------------------------------------------------------- the sieve's floor
** The sieve needs its hand-offs in order, so its floor has channels: unbuffered, of integers,
** with one waiting receiver or sender a side (a sieve channel has one of each), and a FIFO run
** queue of coroutines that the driver resumes from C. Nothing else: no select, no close, no
** check beyond the userdata's, no preemption, no goroutine record (the coroutine is the thread). */
typedef struct FlChan {
  lua_State *recvr, *sendr;  /* the parked receiver or sender, if any */
  lua_Integer v;             /* the parked sender's value */
} FlChan;

#define RQ_SIZE 8192  /* more than the sieve's goroutines */
static struct { lua_State *co; int nargs; } rq[RQ_SIZE];
static unsigned rqhead, rqtail;

static void fc_ready(lua_State *L, lua_State *co, int nargs) {
  if (rqtail - rqhead == RQ_SIZE) luaL_error(L, "floor: run queue full");
  rq[rqtail % RQ_SIZE].co = co;
  rq[rqtail % RQ_SIZE].nargs = nargs;
  rqtail++;
}

static int fc_new(lua_State *L) {
  FlChan *c = (FlChan *)lua_newuserdatauv(L, sizeof *c, 0);
  c->recvr = c->sendr = NULL;
  luaL_setmetatable(L, "bench.floor.chan");
  return 1;
}

static int fc_send_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
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
    fc_ready(L, r, 1);
    return 0;
  }
  c->v = v;
  c->sendr = L;
  return lua_yieldk(L, 0, 0, fc_send_k);
}

static int fc_recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 1;  /* the value its sender pushed */
}

static int fc_recv(lua_State *L) {
  FlChan *c = (FlChan *)lua_touserdata(L, 1);
  lua_State *s = c->sendr;
  if (s != NULL) {
    c->sendr = NULL;
    lua_pushinteger(L, c->v);
    fc_ready(L, s, 0);
    return 1;
  }
  c->recvr = L;
  return lua_yieldk(L, 0, 0, fc_recv_k);
}

/* go(co): co to the run queue's tail (the caller anchors it). */
static int fc_go(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTHREAD);
  fc_ready(L, lua_tothread(L, 1), 0);
  return 0;
}

/* sched(main): resumes the run queue's head until main has returned; the rest is abandoned. */
static int fc_sched(lua_State *L) {
  lua_State *main;
  luaL_checktype(L, 1, LUA_TTHREAD);
  main = lua_tothread(L, 1);
  rqhead = rqtail = 0;
  fc_ready(L, main, 0);
  while (rqhead != rqtail) {
    lua_State *co = rq[rqhead % RQ_SIZE].co;
    int nargs = rq[rqhead % RQ_SIZE].nargs, nres, st;
    rqhead++;
    st = lua_resume(co, L, nargs, &nres);
    if (st == LUA_YIELD) continue;  /* parked on a channel, yielding nothing */
    if (st != LUA_OK) {
      lua_xmove(co, L, 1);
      return lua_error(L);
    }
    if (co == main) break;
  }
  rqhead = rqtail = 0;
  return 0;
}

static int fl_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
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
    {"lock", fl_nop}, {"unlock", fl_nop}, {NULL, NULL}
  };
  static const luaL_Reg funcs[] = {
    {"new", fl_new}, {"run", fl_run}, {"chan", fc_new}, {"go", fc_go}, {"sched", fc_sched}, {"now", fl_now}, {"rss", fl_rss}, {NULL, NULL}
  };
  static const luaL_Reg chan_methods[] = {{"send", fc_send}, {"recv", fc_recv}, {NULL, NULL}};
  luaL_newmetatable(L, "bench.floor");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  luaL_newmetatable(L, "bench.floor.chan");
  luaL_newlib(L, chan_methods);
  lua_setfield(L, -2, "__index");
  luaL_newlib(L, funcs);
  return 1;
}
