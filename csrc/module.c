/* module.c: luaopen_csp_core: builds the module table from each concept's registrations. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stream.h"

/* Stack: [module, sched]: each function gets the scheduler as upvalue 1. */
void csp_setfuncs(lua_State *L, const luaL_Reg *l) {
  for (; l->name != NULL; l++) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l->func, 1);
    lua_setfield(L, -3, l->name);
  }
}

/* Method lookups on a userdata cost two hash lookups, "__index" in the metatable and the name
** in the methods table. Both tables get 4 times the nodes they need, and "__index" goes in first:
** it then sits in its main position and the names rarely collide, so each lookup is one probe
** (a collision costs a chain step, and where it falls depends on the hash seed of the run). */
#define SPARSE(n) (4 * (n))

static int reg_count(const luaL_Reg *l) {
  int n = 0;
  while (l && l[n].name) n++;
  return n;
}

/* Stack top: the scheduler, upvalue 1 of every function. Pushes the metatable. */
void csp_newmeta(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta) {
  int up = lua_gettop(L);
  if (methods == NULL) {
    csp_newmeta_index(L, name, 0, up, meta);
    return;
  }
  lua_createtable(L, 0, SPARSE(reg_count(methods)));
  lua_pushvalue(L, up);
  luaL_setfuncs(L, methods, 1);
  csp_newmeta_index(L, name, up + 1, up, meta);
  lua_remove(L, up + 1);
}

void csp_newmeta_index(lua_State *L, const char *name, int idx, int sched, const luaL_Reg *meta) {
  lua_createtable(L, 0, SPARSE(reg_count(meta) + 4));  /* + __index, __name, __gc, __metatable */
  if (idx != 0) {
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
  }
  if (meta) {
    lua_pushvalue(L, sched);
    luaL_setfuncs(L, meta, 1);
  }
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
  }
}

/* Pushes the metatable kept in the registry at key; the first call makes it (csp_newmeta with
** nil as the upvalue: a cached metatable must keep no value alive). */
void csp_keptmeta(lua_State *L, const void *key, const luaL_Reg *meta) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_pushnil(L);
  csp_newmeta(L, NULL, NULL, meta);
  lua_remove(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Stack: the nup upvalues on top (popped). Pushes a metatable whose metamethods meta close over
** them: for a metatable that is not a type's (race.c's proxy of a watched table). */
void csp_newmeta_up(lua_State *L, const luaL_Reg *meta, int nup) {
  lua_createtable(L, 0, SPARSE(reg_count(meta) + 2));
  lua_insert(L, -(nup + 1));
  luaL_setfuncs(L, meta, nup);
}

/* Gives the table at idx a metatable making it weak (mode "k", "v" or "kv"). */
void csp_setweak(lua_State *L, int idx, const char *mode) {
  idx = lua_absindex(L, idx);
  lua_createtable(L, 0, 1);
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, idx);
}

/* A methods table for csp_newmeta_index: as sparse as csp_newmeta's. */
void csp_newmethods(lua_State *L, int n) {
  lua_createtable(L, 0, SPARSE(n));
}

void csp_close_free(uv_handle_t *h) {
  free(h);
}

void csp_tagerror(lua_State *L, int idx, const char *tname) {
  luaL_typeerror(L, idx, tname);
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

const char *csp_strerror(int code) {
  static _Thread_local char buf[128];
  if (code >= 0 || code <= -1000) return uv_strerror(code);  /* not an errno: UV_EOF, UV_EAI_* */
  snprintf(buf, sizeof buf, "%s", strerror(-code));
  if (buf[0] >= 'A' && buf[0] <= 'Z' && buf[1] >= 'a' && buf[1] <= 'z') buf[0] = (char)(buf[0] - 'A' + 'a');
  return buf;
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
