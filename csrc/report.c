/* report.c: what the scheduler says about goroutines: dumps with tracebacks, a goroutine's panic
** (its <close> handlers first), goexit's unwinding. */
#include <stdlib.h>
#include <string.h>
#include "csp.h"

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
  if (g->state == CSP_G_WAITING && g->ext && g->ext->heldby) {
    lua_pushfstring(L, "\n\t(held by goroutine %I)", (LUAI_UACINT)*g->ext->heldby);
    luaL_addvalue(b);
  }
  lua_pushfstring(L, "\ncreated by goroutine %I", (LUAI_UACINT)g->parent);
  luaL_addvalue(b);
}

/* The entry of a goroutine whose start has no record yet: as csp_sched_dumpg's for one not
** started. */
static void dump_pend(lua_State *L, luaL_Buffer *b, const csp_Pend *p) {
  lua_pushfstring(L, "goroutine %I [runnable]:\n\t(not started yet)\ncreated by goroutine %I",
                  (LUAI_UACINT)p->id, (LUAI_UACINT)p->parent);
  luaL_addvalue(b);
}

/* Pushes the dump: main first, then every goroutine in id order (Go's traceback format): the
** records sorted, merged with the starts without one (in id order already). */
void csp_report_dump(lua_State *L, csp_Sched *S, const char *header) {
  luaL_Buffer b;
  /* maing.L is the thread main last blocked on, alive while it blocks (the loop runs: depth > 0);
  ** after, it may be a plain coroutine the collector freed. Else main is L's caller. */
  lua_State *mainL = S->depth > 0 && S->maing.L ? S->maing.L : L;
  size_t n = 0, k = 0;
  uint32_t j = 0;
  csp_G **v;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) n += !g->internal;
  v = (csp_G **)lua_newuserdatauv(L, (n ? n : 1) * sizeof *v, 0);  /* below the buffer */
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (!g->internal) v[k++] = g;
  csp_sched_sortbyid(v, n);
  luaL_buffinit(L, &b);
  if (header) luaL_addstring(&b, header);
  lua_pushfstring(L, "goroutine 1 [%s]:\n", g_statename(S, &S->maing));
  luaL_addvalue(&b);
  add_traceback(&b, L, mainL, 0);
  if (S->maing.state == CSP_G_WAITING && S->maing.ext && S->maing.ext->heldby) {
    lua_pushfstring(L, "\n\t(held by goroutine %I)", (LUAI_UACINT)*S->maing.ext->heldby);
    luaL_addvalue(&b);
  }
  for (k = 0; k < n || j < S->pdcount;) {
    const csp_Pend *p = j < S->pdcount ? &S->pend[(S->pdhead + j) & S->pdmask] : NULL;
    if (p != NULL && p->internal) {
      j++;
      continue;
    }
    luaL_addstring(&b, "\n\n");
    if (p != NULL && (k == n || p->id < v[k]->id)) {
      dump_pend(L, &b, p);
      j++;
    } else {
      csp_sched_dumpg(L, &b, v[k++]);
    }
  }
  luaL_pushresult(&b);
  lua_remove(L, -2);  /* the array */
}

void csp_sched_dump(lua_State *L, csp_Sched *S, const char *header) {
  csp_report_dump(L, S, header);
}

void csp_sched_dumpto(lua_State *L, csp_Sched *S) {
  csp_report_dump(L, S, NULL);
}

int csp_report_dump_l(lua_State *L) {
  csp_report_dump(L, csp_sched_get(L), NULL);
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
void csp_report_panic(lua_State *L, csp_Sched *S, csp_G *g) {
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
      csp_sched_g_release(L, S, g, reusable);
      return;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  csp_sched_g_release(L, S, g, reusable);
}

/* Ends goroutine g by csp.goexit: its pending <close> variables run, bypassing any pcall. */
int csp_report_goexit(lua_State *L, csp_Sched *S, csp_G *g) {
  if (g_close(L, S, g) != LUA_OK) {
    lua_pushfstring(L, "goroutine %I: %s", (LUAI_UACINT)g->id,
                    lua_isstring(L, -1) ? lua_tostring(L, -1) : "error in __close during goexit");
    lua_remove(L, -2);
    csp_sched_g_release(L, S, g, 0);
    return 1;
  }
  csp_sched_g_release(L, S, g, 1);
  return 0;
}

/* Resumes g; returns 1 with a panic message on L's stack if it raised. */
