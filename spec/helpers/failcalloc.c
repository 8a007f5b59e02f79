/* failcalloc: an LD_PRELOAD shim for sched_spec. Its Lua function, loaded from the same file with
** package.loadlib(path, "luaopen_failcalloc"), makes the next n calloc calls fail: the memory
** errors of the scheduler's C allocations (a goroutine's record) that a Lua allocator cannot make. */
#include <errno.h>
#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>

extern void *__libc_calloc(size_t nmemb, size_t size);
static long failing;

void *calloc(size_t nmemb, size_t size) {
  if (failing > 0) {
    failing--;
    errno = ENOMEM;
    return NULL;
  }
  return __libc_calloc(nmemb, size);
}

static int arm(lua_State *L) {
  failing = (long)luaL_checkinteger(L, 1);
  return 0;
}

int luaopen_failcalloc(lua_State *L) {
  lua_pushcfunction(L, arm);
  return 1;
}
