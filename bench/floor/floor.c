/* floor.c: Lua's own floor under the core benchmarks: methods that only return or yield.
** A userdata whose methods do no work (send, recv, lock, unlock return at once; wait yields and
** returns a value when resumed; range(n) iterates n values) and a driver that resumes coroutines from C in a ring, as csp's
** loop does (lua_resume from the loop's state). There is no channel, queue, record or check:
** a workload written with these pays only what any runtime whose goroutines are Lua coroutines
** and whose operations are C methods pays (the scripts beside this file; bench/README.md, "Lua's floor"). */
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
    {"new", fl_new}, {"run", fl_run}, {"now", fl_now}, {"rss", fl_rss}, {NULL, NULL}
  };
  luaL_newmetatable(L, "bench.floor");
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  luaL_newlib(L, funcs);
  return 1;
}
