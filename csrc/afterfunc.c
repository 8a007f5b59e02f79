/* afterfunc.c: Go's time.AfterFunc on the timer heap, and its internal form (context deadlines). */
#include <stdlib.h>
#include <string.h>
#include "csp.h"

/* A call of f (the internal form: f(arg)) due on the timer heap. A node is live while a handle
** owns it, while it is pending (in the heap) and while it is fired (queued, its goroutines not
** started yet); meanwhile f and arg are anchored in the runner's table at 2*slot - 1 and 2*slot,
** so a call nobody references still runs, as in Go. Its heap node counts as waited for
** (waiters NULL): f may complete any blocked goroutine's wait, so none is deadlocked while a
** call is pending (Go's checkdead looks at pending timers too); csp.run waits for goroutines,
** not for calls not started yet (numgoroutine does not count them either). */
typedef struct AfterNode {
  csp_TimerNode tn;          /* first member: the heap hands back an AfterNode */
  struct AfterRunner *run;
  struct AfterNode *next;    /* in the runner's queue of fired nodes, or in its free list */
  uint32_t slot;             /* 1-based index in the runner's nodes */
  uint32_t nfired;           /* firings whose goroutines are not started yet */
  uint8_t internal;          /* csp's own: internal goroutines, an integer handle */
  uint8_t owned;             /* a handle still refers to it */
} AfterNode;

/* A node fires inside libuv's callback, where no Lua call may raise, so it only queues; the
** runner, one internal goroutine per scheduler parked while idle, starts the goroutines. Nodes
** are reused through the free list (a context deadline allocates nothing once warm) and freed
** with the runner's userdata, which anchors f and arg in its user value. */
typedef struct AfterRunner {
  csp_Sched *S;
  csp_G *g;                  /* NULL until started, or after it died */
  AfterNode *head, *tail, *free;
  AfterNode **nodes; uint32_t nnodes, cap;
  uint8_t parked;            /* g waits for a firing: the only state in which one readies it */
  uint8_t closed;            /* its __gc ran (lua_close): the nodes are gone */
} AfterRunner;

typedef struct AfterHandle {
  const void *tag;
  AfterRunner *r;
  AfterNode *n;
} AfterHandle;

static const char handle_tag = 0;
static const char handle_mt_key = 0;
static const char runner_key = 0;

#define RUNNER lua_upvalueindex(2)  /* of after_func, _after_func, _after_stop */

/* ---------------------------------------------------------------- nodes */

/* Pushes the runner's table of anchors (where no upvalue has it). */
static void pushanchors(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &runner_key);
  lua_getiuservalue(L, -1, 1);
  lua_remove(L, -2);
}

/* A node for f (at index fidx) and arg (aidx; 0: none), owned, not armed yet. */
static AfterNode *node_new(lua_State *L, AfterRunner *r, int anchors, int fidx, int aidx) {
  AfterNode *n = r->free;
  if (n != NULL) {
    r->free = n->next;
  } else {
    if (r->nnodes == r->cap) {
      uint32_t ncap = r->cap ? r->cap * 2 : 16;
      AfterNode **nn = realloc(r->nodes, ncap * sizeof *nn);
      if (nn == NULL) luaL_error(L, "not enough memory");
      r->nodes = nn;
      r->cap = ncap;
    }
    n = calloc(1, sizeof *n);
    if (n == NULL) luaL_error(L, "not enough memory");
    n->run = r;
    n->slot = ++r->nnodes;
    r->nodes[n->slot - 1] = n;
  }
  n->next = NULL;
  n->nfired = 0;
  n->owned = 1;
  n->tn.waiters = NULL;
  lua_pushvalue(L, fidx);
  lua_rawseti(L, anchors, 2 * (lua_Integer)n->slot - 1);
  if (aidx) {
    lua_pushvalue(L, aidx);
    lua_rawseti(L, anchors, 2 * (lua_Integer)n->slot);
  }
  return n;
}

/* Back to the free list, once neither owned, pending nor fired. */
static void node_release(lua_State *L, AfterRunner *r, int anchors, AfterNode *n) {
  if (n->owned || n->tn.pos || n->nfired) return;
  lua_pushnil(L);
  lua_rawseti(L, anchors, 2 * (lua_Integer)n->slot - 1);
  lua_pushnil(L);
  lua_rawseti(L, anchors, 2 * (lua_Integer)n->slot);
  n->next = r->free;
  r->free = n;
}

static void node_fire(csp_Sched *S, csp_TimerNode *t) {
  AfterNode *n = (AfterNode *)t;
  AfterRunner *r = n->run;
  if (n->nfired++ == 0) {
    n->next = NULL;
    if (r->tail) r->tail->next = n;
    else r->head = n;
    r->tail = n;
  }
  if (r->parked) {
    r->parked = 0;
    csp_sched_ready(S, r->g, 0);
  }
}

/* ---------------------------------------------------------------- the runner */

static int runner_drain(lua_State *L) {
  AfterRunner *r = (AfterRunner *)lua_touserdata(L, 1);
  csp_Sched *S = r->S;
  int anchors;
  pushanchors(L);
  anchors = lua_gettop(L);
  while (r->head != NULL) {
    AfterNode *n = r->head;
    uint32_t k = n->nfired;
    r->head = n->next;
    if (r->head == NULL) r->tail = NULL;
    n->nfired = 0;
    while (k-- > 0) {
      int first = lua_gettop(L) + 1;
      csp_G *g;
      lua_rawgeti(L, anchors, 2 * (lua_Integer)n->slot - 1);
      if (n->internal) lua_rawgeti(L, anchors, 2 * (lua_Integer)n->slot);
      g = csp_sched_spawn(L, S, first, n->internal);
      if (S->race) csp_race_acq(S, g, n, CSP_RACE_TIMER);  /* arming before f */
    }
    node_release(L, r, anchors, n);
  }
  return 0;
}

static int runner_k(lua_State *L, int status, lua_KContext ctx) {
  AfterRunner *r = (AfterRunner *)ctx;
  csp_G *g = r->g;
  if (status == LUA_YIELD && r->S->cur != g) {  /* resumed by hand: it raises, never parks again */
    r->g = NULL;
    r->parked = 0;
  }
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (r->closed) return 0;
  lua_pushcfunction(L, runner_drain);
  lua_pushlightuserdata(L, r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {  /* out of memory: a panic; the next arming starts another */
    r->g = NULL;
    return lua_error(L);
  }
  r->parked = 1;
  return csp_sched_park(L, g, "after_func", ctx, runner_k);
}

static int runner_main(lua_State *L) {
  return runner_k(L, LUA_OK, (lua_KContext)lua_touserdata(L, 1));
}

/* Puts n in the heap ns from now, starting the runner if there is none. */
static void node_arm(lua_State *L, csp_Sched *S, AfterRunner *r, AfterNode *n, uint64_t ns) {
  if (r->g == NULL) {
    int top = lua_gettop(L);
    lua_pushcfunction(L, runner_main);
    lua_pushlightuserdata(L, r);
    r->g = csp_sched_spawn(L, S, top + 1, 1);
  }
  n->tn.fire = node_fire;
  if (S->race) csp_race_rel(S, n, CSP_RACE_TIMER);
  csp_timer_add(L, S, &n->tn, uv_hrtime() + ns);
}

/* lua_close: the nodes go (out of the heap first, unless the scheduler is gone already). */
static int runner_gc(lua_State *L) {
  AfterRunner *r = (AfterRunner *)lua_touserdata(L, 1);
  for (uint32_t i = 0; i < r->nnodes; i++) {
    if (r->nodes[i]->tn.pos && !r->S->closing) csp_timer_del(r->S, &r->nodes[i]->tn);
    free(r->nodes[i]);
  }
  free(r->nodes);
  r->nodes = NULL;
  r->nnodes = r->cap = 0;
  r->head = r->tail = r->free = NULL;
  r->parked = 0;
  r->closed = 1;
  return 0;
}

/* ---------------------------------------------------------------- Lua API */

static AfterRunner *runner_up(lua_State *L) {
  AfterRunner *r = (AfterRunner *)lua_touserdata(L, RUNNER);
  if (r->closed) luaL_error(L, "csp: after_func while the state closes");
  return r;
}

/* after_func(d, f): Go's time.AfterFunc. */
static int after_func(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  uint64_t ns = csp_timer_ns(L, 1);
  AfterRunner *r;
  AfterHandle *h;
  csp_sched_checkfunc(L, 2);
  r = runner_up(L);
  lua_settop(L, 2);
  lua_getiuservalue(L, RUNNER, 1);
  h = (AfterHandle *)lua_newuserdatauv(L, sizeof *h, 0);
  h->tag = &handle_tag;
  h->r = r;
  h->n = NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &handle_mt_key);
  lua_setmetatable(L, -2);
  h->n = node_new(L, r, 3, 2, 0);  /* after the handle exists: its __gc releases the node */
  h->n->internal = 0;
  node_arm(L, S, r, h->n, ns);
  return 1;
}

/* _after_func(d, f, arg) -> id: f(arg) in an internal goroutine (not counted, dumped or waited
** for). The id is owned until _after_stop(id), which its owner calls exactly once. */
static int after_func_internal(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  uint64_t ns = csp_timer_ns(L, 1);
  AfterRunner *r;
  AfterNode *n;
  csp_sched_checkfunc(L, 2);
  r = runner_up(L);
  lua_settop(L, 3);
  lua_getiuservalue(L, RUNNER, 1);
  n = node_new(L, r, 4, 2, 3);
  n->internal = 1;
  node_arm(L, S, r, n, ns);
  lua_pushinteger(L, n->slot);
  return 1;
}

/* _after_stop(id): stops the call if pending (returns whether it was) and gives the id up. */
static int after_stop_internal(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  lua_Integer id = luaL_checkinteger(L, 1);
  AfterRunner *r = (AfterRunner *)lua_touserdata(L, RUNNER);
  AfterNode *n;
  int was;
  if (r->closed) return 0;
  luaL_argcheck(L, id >= 1 && (lua_Unsigned)id <= r->nnodes, 1, "not an after_func id");
  n = r->nodes[id - 1];
  luaL_argcheck(L, n->internal && n->owned, 1, "not an owned after_func id");
  was = n->tn.pos != 0;
  if (was) csp_timer_del(S, &n->tn);
  n->owned = 0;
  lua_getiuservalue(L, RUNNER, 1);
  node_release(L, r, lua_gettop(L), n);
  lua_pushboolean(L, was);
  return 1;
}

/* The handle's node, or NULL once the state closes. */
static AfterNode *handle_node(lua_State *L) {
  AfterHandle *h = (AfterHandle *)csp_checktag(L, 1, &handle_tag, sizeof(AfterHandle), "csp.afterfunc");
  return h->r->closed ? NULL : h->n;
}

/* Go's Timer.Stop: true if it stopped a pending call. A call that fired is not stopped, even if
** its goroutine has not started yet (Go starts it as the timer fires). */
static int handle_stop(lua_State *L) {
  AfterNode *n = handle_node(L);
  int was = n != NULL && n->tn.pos != 0;
  if (was) csp_timer_del(csp_sched_get(L), &n->tn);
  lua_pushboolean(L, was);
  return 1;
}

/* Go's Timer.Reset: f runs d from now (again, if it ran); true if a call was pending. */
static int handle_reset(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  AfterNode *n = handle_node(L);
  uint64_t ns = csp_timer_ns(L, 2);
  int was;
  if (n == NULL) return luaL_error(L, "csp: after_func while the state closes");
  was = n->tn.pos != 0;
  if (was) csp_timer_del(S, &n->tn);
  node_arm(L, S, n->run, n, ns);
  lua_pushboolean(L, was);
  return 1;
}

static int handle_gc(lua_State *L) {
  AfterHandle *h = (AfterHandle *)lua_touserdata(L, 1);
  if (h->n == NULL || h->r->closed) return 0;
  h->n->owned = 0;
  pushanchors(L);
  node_release(L, h->r, lua_gettop(L), h->n);
  return 0;
}

/* Stack: [module, sched]. */
void csp_after_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"stop", handle_stop}, {"reset", handle_reset}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", handle_gc}, {NULL, NULL}};
  static const luaL_Reg runner_meta[] = {{"__gc", runner_gc}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"after_func", after_func}, {"_after_func", after_func_internal},
    {"_after_stop", after_stop_internal}, {NULL, NULL}
  };
  AfterRunner *r;
  csp_newmeta(L, "csp.afterfunc", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &handle_mt_key);
  r = (AfterRunner *)lua_newuserdatauv(L, sizeof *r, 1);
  memset(r, 0, sizeof *r);
  r->S = (csp_Sched *)lua_touserdata(L, -2);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  csp_newmeta(L, NULL, NULL, runner_meta);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &runner_key);  /* [module, sched, runner] */
  for (const luaL_Reg *f = funcs; f->name; f++) {
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, f->func, 2);
    lua_setfield(L, -4, f->name);
  }
  lua_pop(L, 1);
}
