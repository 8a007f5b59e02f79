/* leak.c: csp.leaks(): goroutines parked forever on objects nothing live can reach, found by the collector. */
#include <stdlib.h>
#include <string.h>
#include "csp.h"

static const char leaked_key = 0;  /* registry: weak-keyed set of the threads found leaked */
static const char fin_key = 0;     /* registry: metatable of the sentinels */
static const char sched_key = 0;   /* registry: the scheduler, while the CSP_LEAKS report is due */
static const char list_key = 0;    /* registry: metatable of the lists csp.leaks() returns */

/* Waits only another goroutine can end; sleep, I/O and syscalls end by themselves. */
static int objwait(const char *reason) {
  return reason && (strncmp(reason, "chan ", 5) == 0 || strncmp(reason, "select", 6) == 0 ||
                    strncmp(reason, "sync.", 5) == 0 || strcmp(reason, "semacquire") == 0);
}

/* Is the waiter queue q inside the userdata at idx? (bounds from its own size: safe on any) */
static int holds(lua_State *L, int idx, const csp_WaitQ *q) {
  const char *p = lua_touserdata(L, idx);
  if (p == NULL || lua_type(L, idx) != LUA_TUSERDATA) return 0;
  return (const char *)q >= p && (const char *)(q + 1) <= p + lua_rawlen(L, idx);
}

/* Pushes the object holding q, found in g's parked frame (the blocking C function's arguments and
** values) or one user value below them (a select case's channel, a cond's mutex); 0 if not found. */
static int push_owner(lua_State *L, csp_G *g, const csp_WaitQ *q) {
  lua_Debug ar;
  if (!lua_getstack(g->L, 0, &ar)) return 0;
  for (int n = 1;; n++) {
    if (!lua_checkstack(g->L, 2) || lua_getlocal(g->L, &ar, n) == NULL) return 0;
    lua_xmove(g->L, L, 1);
    if (holds(L, -1, q)) return 1;
    if (lua_type(L, -1) == LUA_TUSERDATA && lua_rawlen(L, -1) < sizeof(csp_Chan) * 2) {
      for (int i = 1; i <= 3; i++) {  /* a select case has 3 user values, a view 1 */
        int t = lua_getiuservalue(L, -1, i);  /* pushes nil past the last one */
        if (t != LUA_TNONE && holds(L, -1, q)) {
          lua_remove(L, -2);
          return 1;
        }
        lua_pop(L, 1);
        if (t == LUA_TNONE) break;
      }
    }
    lua_pop(L, 1);
  }
}

/* A timer channel still armed will wake its receivers: they are not candidates. */
static int armed(const csp_WaitQ *q) {
  return q->hold && q->hold->node->pos;
}

/* A sentinel's objects died: its goroutine leaked. T[2] is its call's session: sentinels that
** outlive their call (their goroutine was live) die later and must then say nothing. */
static int fin(lua_State *L) {
  if (lua_rawgeti(L, 1, 2) != LUA_TTABLE || lua_rawgeti(L, -1, 1) != LUA_TBOOLEAN) return 0;
  lua_rawgeti(L, 1, 1);
  lua_pushboolean(L, 1);
  lua_rawset(L, lua_upvalueindex(1));
  return 0;
}

static const luaL_Reg fin_meta[] = {{"__gc", fin}, {NULL, NULL}};

/* Links g's sentinel T (on top) as the value of each object g waits on in E (ephemeron at e).
** Returns 0 (T popped) if g cannot be judged: then it stays a root. */
static int link_objects(lua_State *L, csp_G *g, int e) {
  int n = g->nsel, t = lua_gettop(L);
  for (int i = -1; i < n; i++) {
    const csp_WaitQ *q = i < 0 ? g->w.q : g->sel[i].q;
    if (q == NULL) continue;
    if (armed(q) || !push_owner(L, g, q)) {
      lua_settop(L, t);
      lua_pushnil(L);
      lua_rawseti(L, t, 2);  /* T dies unjudged: its finalizer must not count it */
      lua_pop(L, 1);
      return 0;
    }
    lua_pushvalue(L, -1);
    if (lua_rawget(L, e) == LUA_TNIL) {  /* E[obj]: the list of its waiters' sentinels */
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, e);
    }
    lua_pushvalue(L, t);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 2);
  }
  lua_settop(L, t - 1);
  return 1;
}

/* g waits on no queue (any more): a finalized channel unlinks its waiters. */
static int unlinked(const csp_G *g) {
  if (g->w.q) return 0;
  for (int i = 0; i < g->nsel; i++)
    if (g->sel[i].q) return 0;
  return 1;
}

static int is_leaked(lua_State *L, csp_G *g, int found) {
  int r;
  lua_pushthread(g->L);
  lua_xmove(g->L, L, 1);
  r = lua_rawget(L, found) != LUA_TNIL;
  lua_pop(L, 1);
  return r;
}

/* Pushes the list of leaked goroutines' dump entries. The candidates (parked on channels and sync
** objects) lose their anchor; each becomes the value of a sentinel keyed weakly by the objects it
** waits on, so the references a parked goroutine holds to its own objects do not count. A full
** collection then finalizes the sentinels whose objects only candidates reach: those leaked. The
** finalization resurrects them for this cycle; they are anchored again before anything else runs. */
static void leaks(lua_State *L, csp_Sched *S) {
  int base = lua_gettop(L), e = base + 2, found = base + 3, mt = base + 4, session = base + 5;
  int placeholder;
  csp_G **cand;
  int ncand = 0, n = 0, was;
  luaL_Buffer b;
  size_t total = 1;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) total++;
  cand = (csp_G **)lua_newuserdatauv(L, total * sizeof *cand, 0);  /* collected, even on error */
  lua_newtable(L);  /* E */
  csp_setweak(L, e, "k");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &leaked_key);  /* found: thread -> true, kept weakly */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &fin_key);
  lua_createtable(L, 1, 0);  /* session: [1] = true while this call collects */
  lua_pushboolean(L, 1);
  lua_rawseti(L, session, 1);
  lua_pushboolean(L, 0);
  placeholder = lua_gettop(L);  /* not nil: the anchor slots stay live keys, restored in place */
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {
    if (g->internal || g->state != CSP_G_WAITING || !g->started || !objwait(g->reason) ||
        lua_status(g->L) != LUA_YIELD || g->tn.pos)
      continue;
    was = is_leaked(L, g, found);
    lua_createtable(L, 2, 0);  /* the sentinel: T[1] = the thread, T[2] = the session */
    lua_pushthread(g->L);
    lua_xmove(g->L, L, 1);
    lua_pushvalue(L, -1);  /* judged again, never a root: what it holds may be all that reaches */
    lua_pushnil(L);        /* another leaked goroutine */
    lua_rawset(L, found);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, session);
    lua_rawseti(L, -2, 2);
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    if (strcmp(g->reason, "select (no cases)") == 0 || (was && g->xw == NULL && unlinked(g))) {
      lua_pop(L, 1);  /* nothing can ever wake it (a leak's collection finalized what it waits on
                      ** and that unlinked it): unreferenced, found at once */
    } else if (g->xw != NULL || unlinked(g)) {
      lua_pushnil(L);  /* an xchan wait (another thread may end it), or none known: a root */
      lua_rawseti(L, -2, 2);
      lua_pop(L, 1);
      continue;
    } else if (!link_objects(L, g, e)) {  /* pops T */
      continue;
    }
    cand[ncand++] = g;
  }
  for (int i = 0; i < ncand; i++) csp_sched_anchor(L, cand[i], placeholder);
  lua_gc(L, LUA_GCCOLLECT);
  lua_pushnil(L);
  lua_rawseti(L, session, 1);
  for (int i = 0; i < ncand; i++) {  /* every candidate is alive: in E or resurrected in found */
    lua_pushthread(cand[i]->L);
    lua_xmove(cand[i]->L, L, 1);
    csp_sched_anchor(L, cand[i], -1);
    lua_pop(L, 1);
  }
  lua_settop(L, found);
  ncand = 0;  /* cand now holds the leaked, in id order */
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (!g->internal && g->state == CSP_G_WAITING && g->started && is_leaked(L, g, found)) cand[ncand++] = g;
  csp_sched_sortbyid(cand, (size_t)ncand);
  lua_newtable(L);
  for (int i = 0; i < ncand; i++) {
    luaL_buffinit(L, &b);
    csp_sched_dumpg(L, &b, cand[i]);
    luaL_pushresult(&b);
    lua_rawseti(L, -2, ++n);
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &list_key);
  lua_setmetatable(L, -2);
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
}

static int leaks_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  if (S->depth > 0 && S->cur == NULL)
    return luaL_error(L, "csp.leaks: cannot run while the scheduler is running (in a finalizer?)");
  /* In a finalizer the collection it needs does nothing: an empty list, and the goroutines found
  ** leaked before forgotten. */
  if (csp_sched_in_finalizer(L)) return luaL_error(L, "csp.leaks: cannot run in a finalizer (__gc)");
  lua_settop(L, 0);
  leaks(L, S);
  return 1;
}

static int list_tostring(lua_State *L) {
  luaL_Buffer b;
  lua_Integer n = luaL_len(L, 1);
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) luaL_addstring(&b, "\n\n");
    lua_rawgeti(L, 1, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  return 1;
}

/* The CSP_LEAKS report on stderr, once: the scheduler in the registry (sched_key) says it is
** still due. */
static void report(lua_State *L, csp_Sched *S) {
  int n;
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &sched_key);
  leaks(L, S);
  n = (int)luaL_len(L, -1);
  if (n > 0) {
    lua_pushcfunction(L, list_tostring);
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    fprintf(stderr, "csp: %d leaked goroutine%s (blocked forever, unreachable):\n\n%s\n", n,
            n > 1 ? "s" : "", lua_tostring(L, -1));
    fflush(stderr);
  }
  lua_pop(L, 1);
}

static csp_Sched *due(lua_State *L) {
  csp_Sched *S;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &sched_key);
  S = (csp_Sched *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return S;
}

/* Main's hook (signal.c) on a return event: the report when the script's chunk returns. Returns
** whether return events are still wanted on L. */
int csp_leak_atret(lua_State *L, lua_Debug *ar) {
  lua_Debug up;
  csp_Sched *S = due(L);
  const char *name;
  int ismain;
  if (S == NULL) return 0;
  ismain = lua_pushthread(L);
  lua_pop(L, 1);
  if (!ismain) return 0;     /* a goroutine's thread, which inherited main's hook */
  if (ar->event != LUA_HOOKRET) return 1;
  if (!lua_getinfo(L, "S", ar) || strcmp(ar->what, "main") != 0 || lua_getstack(L, 2, &up))
    return 1;  /* not the script's own chunk (a required module's chunk has a caller) */
  if (S->depth > 0) return 0;
  for (int n = 1; (name = lua_getlocal(L, ar, n)) != NULL; n++) {  /* dead now, still on the stack */
    lua_pop(L, 1);
    if (name[0] != '(') { lua_pushnil(L); lua_setlocal(L, ar, n); }
  }
  report(L, S);
  return 0;
}

/* SIGINT: the report before interrupted! unwinds main (no return event will come). L is main's
** thread, running Lua code or at the top of the loop (no goroutine running). */
void csp_leak_interrupted(lua_State *L, csp_Sched *S) {
  if (due(L) == S && lua_checkstack(L, 30)) report(L, S);
}

/* Stack: [module, sched]. */
void csp_leak_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"leaks", leaks_l}, {NULL, NULL}};
  const char *env = getenv("CSP_LEAKS");
  static const luaL_Reg list_meta[] = {{"__tostring", list_tostring}, {NULL, NULL}};
  csp_newmeta(L, "csp.leaks", NULL, list_meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &list_key);
  lua_newtable(L);  /* the set of leaked threads, weak keys */
  csp_setweak(L, -1, "k");
  csp_newmeta(L, NULL, NULL, fin_meta);  /* the sentinels' metatable: fin's upvalue the table */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &fin_key);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &leaked_key);
  csp_setfuncs(L, funcs);
  if (env && *env && strcmp(env, "0") != 0) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sched_key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    csp_signal_hookret(lua_tothread(L, -1));
    lua_pop(L, 1);
  }
}
