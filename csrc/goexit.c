/* goexit.c: a goroutine's base frame: a yieldable pcall under which goexit and panics unwind, so
** that <close> handlers run on a path that may block. */
#include <stdlib.h>
#include <string.h>
#include "csp.h"

static const char panic_key = 0;   /* registry: thread -> panic message, lud(thread) -> error */
static const char sched_key = 0;   /* registry: light userdata of the scheduler, for the hook */
static const char pcall_key = 0;   /* registry: the base library's pcall */
static const char xpcall_key = 0;  /* registry: the base library's xpcall */

#define BASE_LINE "\n\t[C]: in ?"  /* the base frame's line at the end of a traceback */

/* Drops the base frame's line from the end of the traceback string on top of L. */
void csp_exit_striptb(lua_State *L) {
  size_t len, n = sizeof BASE_LINE - 1;
  const char *tb = lua_tolstring(L, -1, &len);
  if (tb && len >= n && memcmp(tb + len - n, BASE_LINE, n) == 0) {
    lua_pushlstring(L, tb, len - n);
    lua_remove(L, -2);
  }
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* The error as a string, never raising. */
static void push_errstring(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_pushcfunction(L, tostring_protected);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object cannot be converted to a string)");
  }
}

csp_G *csp_exit_self(lua_State *L) {
  csp_Sched *S;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sched_key);
  S = (csp_Sched *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return S && S->cur && S->cur->L == L ? S->cur : NULL;
}

/* Message handler of the base pcall: an error that reached it is a panic. Its message and
** traceback are taken here, before the stack unwinds; the error itself goes on unchanged, so
** the <close> handlers receive it. Only the first error counts (a __close may raise another). */
static int exit_msgh(lua_State *L) {
  csp_G *g = csp_exit_self(L);
  lua_settop(L, 1);
  if (g == NULL || (g->exiting == CSP_EXIT_UNWIND && lua_isnil(L, 1))) return 1;
  if (!lua_checkstack(L, 16)) return 1;  /* an overflowing stack: the error, without a traceback */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &panic_key);
  lua_pushthread(L);
  if (lua_rawget(L, 2) == LUA_TNIL) {
    push_errstring(L, 1);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
    csp_exit_striptb(L);
    lua_pushthread(L);
    lua_insert(L, -2);
    lua_rawset(L, 2);                 /* t[thread] = message + traceback */
    lua_pushvalue(L, 1);
    lua_rawsetp(L, 2, (void *)L);     /* t[lud(thread)] = the error */
  }
  lua_settop(L, 1);
  return 1;
}

static void forget_panic(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &panic_key);
  lua_pushthread(L);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pushnil(L);
  lua_rawsetp(L, -2, (void *)L);
  lua_pop(L, 1);
}

static int base_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_OK || status == LUA_YIELD) return 0;
  if (g->S->cur != g || g->L != L) {  /* resumed behind the scheduler's back: its error, as is */
    lua_sethook(L, NULL, 0, 0);
    forget_panic(L);
    return lua_error(L);
  }
  if (g->exiting == CSP_EXIT_UNWIND) {
    lua_sethook(L, NULL, 0, 0);
    if (lua_isnil(L, -1)) return 0;  /* goexit is done: every <close> ran */
  }
  g->panicking = 1;  /* the scheduler makes the panic from the error, left as the result */
  return 1;
}

/* The function a goroutine's thread starts with, (msgh, f, args...): a closure over the
** scheduler, first called when the scheduler first resumes the goroutine (S->cur). */
static int exit_base(lua_State *L) {
  csp_G *g = csp_sched_get(L)->cur;
  if (g == NULL || g->L != L) return luaL_error(L, "csp: a goroutine's base called outside the scheduler");
  return base_k(L, lua_pcallk(L, lua_gettop(L) - 2, 0, 1, (lua_KContext)g, base_k), (lua_KContext)g);
}

void csp_exit_push(csp_G *g) {
  lua_rawgeti(g->L, LUA_REGISTRYINDEX, g->S->baseref);
  lua_pushcfunction(g->L, exit_msgh);
}

/* Pushes the panic of g (its thread finished with the error as its one result): "goroutine N:
** msg" + traceback, with the note of a __close that raised another error while it unwound. */
void csp_exit_panicmsg(lua_State *L, csp_G *g) {
  lua_State *co = g->L;
  int t, orig;
  if (!lua_checkstack(co, 2)) {  /* a finished thread has room, unless memory ran out */
    lua_pushfstring(L, "goroutine %I: not enough memory", (LUAI_UACINT)g->id);
    return;
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &panic_key);
  t = lua_gettop(L);
  lua_pushvalue(co, -1);
  lua_xmove(co, L, 1);                         /* [t, err] */
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (lua_rawget(L, t) == LUA_TNIL) {          /* no message: a memory error, or the handler's */
    lua_pop(L, 1);
    push_errstring(L, t + 1);
  }
  lua_pushfstring(L, "goroutine %I: %s", (LUAI_UACINT)g->id, lua_tostring(L, -1));
  lua_replace(L, -2);                          /* [t, err, msg] */
  orig = lua_rawgetp(L, t, (void *)co) != LUA_TNIL;
  if (orig && !lua_rawequal(L, -1, t + 1)) {  /* a __close raised: its error replaced the first */
    lua_pop(L, 1);
    push_errstring(L, t + 1);
    lua_pushfstring(L, "\n(then, while closing: %s)", lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_concat(L, 2);
  } else {
    lua_pop(L, 1);
  }
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  lua_pushnil(L);
  lua_rawset(L, t);
  lua_pushnil(L);
  lua_rawsetp(L, t, (void *)co);
  lua_replace(L, t);
  lua_settop(L, t);
}

/* ---------------------------------------------------------------- goexit */

static int stack_depth(lua_State *L) {
  lua_Debug ar;
  int n = 0;
  while (lua_getstack(L, n, &ar)) n++;
  return n;
}

/* While goexit unwinds: a pcall it passes catches the nil error; when that pcall returns, the
** error is raised again from where it returned, so goexit goes on down (Go: recover returns nil
** during Goexit). A pcall of a <close> handler's own is deeper: it behaves as usual. */
static void exit_hook(lua_State *L, lua_Debug *ar) {
  csp_G *g = csp_exit_self(L);
  int depth, *xd;
  if (g == NULL || g->exiting != CSP_EXIT_UNWIND || g->ext == NULL ||
      (xd = g->ext->xdepth) == NULL || xd[0] == 0 || ar->event != LUA_HOOKRET)
    return;
  depth = stack_depth(L) - 1;
  if (depth != xd[xd[0]]) return;
  xd[0]--;
  if (!lua_getinfo(L, "r", ar) || ar->ntransfer < 2) return;
  lua_getlocal(L, ar, ar->ftransfer + 1);  /* nil, or what a __close raised meanwhile */
  lua_error(L);
}

/* Where goexit keeps the depths (n + 1 ints), in g's extension; raises without memory. */
static int *xdepth_new(lua_State *L, csp_G *g, int n) {
  csp_GExt *x = csp_sched_ext(g);
  if (x == NULL || (x->xdepth = malloc((size_t)(n + 1) * sizeof *x->xdepth)) == NULL) {
    lua_pop(L, 3);
    luaL_error(L, "not enough memory");
  }
  return x->xdepth;
}

static void xdepth_free(csp_G *g) {
  if (g->ext) {
    free(g->ext->xdepth);
    g->ext->xdepth = NULL;
  }
}

/* Ends goroutine g: records the depth of every pcall between here and the base, then raises nil
** with the hook set. Under an xpcall (whose handler would see the error) it yields instead and
** the scheduler resets the thread (<close> handlers cannot block then). */
int csp_exit_goexit(lua_State *L, csp_G *g) {
  lua_Debug ar;
  int n = stack_depth(L), k = 0, *xd = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &pcall_key);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &xpcall_key);
  xdepth_free(g);
  for (int level = 0; level < n && lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "f", &ar);
    if (lua_rawequal(L, -1, -2)) {  /* xpcall */
      lua_pop(L, 3);
      xdepth_free(g);
      g->exiting = CSP_EXIT_RESET;
      return lua_yield(L, 0);
    }
    if (lua_rawequal(L, -1, -3)) {
      if (xd == NULL) xd = xdepth_new(L, g, n);
      xd[1 + k++] = n - 1 - level;  /* innermost first: popped from the end, so reversed */
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  for (int i = 1; i <= k / 2; i++) {
    int t = xd[i];
    xd[i] = xd[k + 1 - i];
    xd[k + 1 - i] = t;
  }
  if (k > 0) xd[0] = k;
  g->exiting = CSP_EXIT_UNWIND;
  if (k > 0) lua_sethook(L, exit_hook, LUA_MASKRET, 0);
  lua_pushnil(L);
  return lua_error(L);
}

/* Stack: [module, sched]. */
void csp_exit_open(lua_State *L) {
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &panic_key);
  lua_pushlightuserdata(L, lua_touserdata(L, -1));
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sched_key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_getfield(L, -1, "pcall");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &pcall_key);
  lua_getfield(L, -1, "xpcall");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &xpcall_key);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, exit_base, 1);
  ((csp_Sched *)lua_touserdata(L, -2))->baseref = luaL_ref(L, LUA_REGISTRYINDEX);
}
