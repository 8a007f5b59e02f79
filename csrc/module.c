/* module.c: luaopen_csp_core: builds the module table from each concept's registrations. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include "stream.h"

/* Stack: [module, sched]: each function gets the scheduler as upvalue 1. */
void csp_setfuncs(lua_State *L, const luaL_Reg *l) {
  for (; l->name != NULL; l++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l->func, 1);
    lua_setfield(L, -3, l->name);
  }
}

/* Stack top: the scheduler, upvalue 1 of every function. Pushes the metatable. */
void csp_newmeta(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
  int up = lua_gettop(L);
  lua_createtable(L, 0, 6);
  if (methods) {
    lua_newtable(L);
    lua_pushvalue(L, up);
    luaL_setfuncs(L, methods, 1);
    lua_setfield(L, -2, "__index");
  }
  if (meta) {
    lua_pushvalue(L, up);
    luaL_setfuncs(L, meta, 1);
  }
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
  }
}

void csp_close_free(uv_handle_t *h) {
  free(h);
}

void *csp_testtag(lua_State *L, int idx, const void *tag, size_t size) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_rawlen(L, idx) == size && *(const void **)p == tag) return p;
  return NULL;
}

void *csp_checktag(lua_State *L, int idx, const void *tag, size_t size, const char *tname) {
  void *p = csp_testtag(L, idx, tag, size);
  if (p == NULL) luaL_typeerror(L, idx, tname);
  return p;
}

const char *csp_typename(lua_State *L, int idx) {
  int t;
  idx = lua_absindex(L, idx);
  t = luaL_getmetafield(L, idx, "__name");  /* pushes nothing when there is none */
  const char *name = t == LUA_TSTRING ? lua_tostring(L, -1) : luaL_typename(L, idx);
  if (t != LUA_TNIL) lua_pop(L, 1);  /* a __name string stays anchored by its metatable */
  return name;
}

lua_Number csp_checknumber(lua_State *L, int arg) {
  lua_Number d = luaL_checknumber(L, arg);
  if (d != d) luaL_argerror(L, arg, "number expected, got nan");
  return d;
}

int csp_fail(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_pushstring(L, code);
  return 3;
}

/* A write to a closed socket must return EPIPE, not kill the process; a host's own handler stays. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

/* The one symbol core.so exports (the build hides every other with -fvisibility=hidden). */
__attribute__((visibility("default"))) int luaopen_csp_core(lua_State *L) {
  luaL_checkstack(L, 40, "csp");  /* the opens below push more than LUA_MINSTACK between them */
  ignore_sigpipe();
  csp_stdio_guard();
  lua_newtable(L);
  csp_sched_open(L);
  csp_exit_open(L);
  csp_race_open(L);
  csp_chan_open(L);
  csp_select_open(L);
  csp_timer_open(L);
  csp_sync_open(L);
  csp_fs_open(L);
  csp_net_open(L);
  csp_html_open(L);
  csp_proc_open(L);
  csp_http_open(L);
  csp_url_open(L);
  csp_leak_open(L);
  csp_signal_open(L);
  csp_trace_open(L);
  csp_xshared_open(L);
  lua_pop(L, 1);
  return 1;
}
