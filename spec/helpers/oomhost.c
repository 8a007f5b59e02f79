/* oomhost: a lua5.4 whose allocator fails past memlimit(bytes) (nil: no limit), for oom_spec. */
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
static size_t used, limit = (size_t)-1;
static void *alloc(void *ud, void *p, size_t osize, size_t nsize) {
  size_t o = p ? osize : 0;
  void *q;
  (void)ud;
  if (nsize == 0) { free(p); used -= o; return NULL; }
  if (nsize > o && used + (nsize - o) > limit) return NULL;
  if ((q = realloc(p, nsize)) == NULL) return NULL;
  used = used - o + nsize;
  return q;
}
static int memlimit(lua_State *L) {
  limit = lua_isnoneornil(L, 1) ? (size_t)-1 : used + (size_t)luaL_checkinteger(L, 1);
  return 0;
}
int main(int argc, char **argv) {
  lua_State *L = lua_newstate(alloc, NULL);
  int st;
  luaL_openlibs(L);
  lua_register(L, "memlimit", memlimit);
  st = luaL_dofile(L, argv[1]);
  if (st != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return st != LUA_OK;
}
