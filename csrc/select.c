/* select.c: select over channel cases: uniform random choice among ready cases, or park on all. */
#include <stdlib.h>
#include "csp.h"

static const char case_tag = 0;
static const char case_mt_key = 0;

/* A case: user value 1 the channel (or nil), 2 the value to send, 3 the handler.
** c is a cache of user value 1, valid because the user value keeps the channel alive. */
typedef struct SelCase {
  const void *tag;
  csp_Chan *c;
  void *x;   /* an xchan (xchan.c), c being NULL */
  uint8_t send, handler;
} SelCase;

typedef struct CaseInfo {
  const SelCase *sc;
  int order;  /* the ready cases' indices, in order; parking, a permutation of the enabled ones */
} CaseInfo;

/* Cases a select reads into a C array on its own stack; more go to the scheduler's scratch. */
#define SEL_LOCAL 8

static SelCase *case_test(lua_State *L, int idx) {
  return (SelCase *)csp_testtag(L, idx, &case_tag, sizeof(SelCase));
}

/* csp.recv(ch [, f]) and csp.send(ch, v [, f]): a nil channel gives a case that is never ready. */
static int case_new(lua_State *L, int send) {
  int fidx = send ? 3 : 2;
  csp_Chan *c = NULL;
  void *x = NULL;
  SelCase *sc;
  if (!lua_isnoneornil(L, fidx)) luaL_checktype(L, fidx, LUA_TFUNCTION);
  lua_settop(L, 3);
  if (!lua_isnil(L, 1) && (x = csp_xchan_case(L, 1, send)) == NULL)
    c = csp_chan_check(L, 1, send ? CSP_OP_SEND : CSP_OP_RECV);
  sc = (SelCase *)lua_newuserdatauv(L, sizeof *sc, 3);
  sc->tag = &case_tag;
  sc->c = c;
  sc->x = x;
  sc->send = (uint8_t)send;
  sc->handler = !lua_isnil(L, fidx);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  if (send) {
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
  }
  lua_pushvalue(L, fidx);
  lua_setiuservalue(L, -2, 3);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &case_mt_key);
  lua_setmetatable(L, -2);
  return 1;
}

static int sel_recv(lua_State *L) { return case_new(L, 0); }
static int sel_send(lua_State *L) { return case_new(L, 1); }

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* Stack of a select call: 1 the table, then case i at CASE(i), then the values of parked send
** cases. Cases stay on the stack: a parked select finds them unchanged. The options are C
** locals: pushing two nils for them cost every select two API calls. */
#define CASE(i) CSP_SEL_CASE(i)

/* The case i, with a handler, fired and its results (i [, v, ok]) are the top nres values. */
static int finish_handler(lua_State *L, int i, int nres) {
  int base;
  lua_getiuservalue(L, CASE(i), 3);
  base = lua_gettop(L) - 1;
  if (nres == 3) {
    lua_pushvalue(L, -3);
    lua_pushvalue(L, -3);
  }
  lua_callk(L, nres - 1, LUA_MULTRET, base, call_k);
  return lua_gettop(L) - base;
}

/* The case i fired and its results (i [, v, ok]) are the top nres values: run its handler. */
int csp_select_finish(lua_State *L, int i, int nres) {
  SelCase *sc = (SelCase *)lua_touserdata(L, CASE(i));  /* checked when the select began */
  return sc->handler ? finish_handler(L, i, nres) : nres;
}

/* ctx: the goroutine's record, its low bit set if a case has a handler (records are aligned). */
static int select_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)(ctx & ~(lua_KContext)1);
  int n = g->nargs;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  g->nsel = 0;
  if (g->wake == CSP_WAKE_CLOSED) return luaL_error(L, "send on closed channel");
  if (n == 0 || !(ctx & 1)) return n;  /* n 0: no case can fire, unless resumed by force */
  return csp_select_finish(L, (int)lua_tointeger(L, -n), n);
}

/* Runs case i on c, known ready, base being the stack top; pushes its results (i [, v, ok]) and
** returns how many. Whatever lies below them on the stack is not returned. */
static int sel_do(lua_State *L, int i, csp_Chan *c, int send, int base);

int csp_select_do(lua_State *L, int i, csp_Chan *c, int send) {
  return sel_do(L, i, c, send, lua_gettop(L));
}

void csp_select_case(lua_State *L, int i, csp_Chan **c, void **x, int *send) {
  SelCase *sc = (SelCase *)lua_touserdata(L, CASE(i));  /* checked when the select began */
  *c = sc->c;
  *x = sc->x;
  *send = sc->send;
}

/* -1 (stack as before) if the case was not ready after all: its only waiter was a select that
** another thread completed meanwhile (xchan.c); the caller starts over. */
static int sel_do(lua_State *L, int i, csp_Chan *c, int send, int base) {
  int chidx = 0;
  if (c->cap > 0) {  /* the channel, whose user values are the ring (an unbuffered has none) */
    lua_getiuservalue(L, CASE(i), 1);
    chidx = base + 1;
  }
  if (!send) {
    lua_pushinteger(L, i);
    if (csp_chan_tryrecv(L, c, chidx)) return 3;
    lua_settop(L, base);
    return -1;
  }
  if (c->closed) luaL_error(L, "send on closed channel");
  lua_getiuservalue(L, CASE(i), 2);
  if (!csp_chan_trysend(L, c, chidx, chidx ? chidx + 1 : base + 1)) {
    lua_settop(L, base);
    return -1;
  }
  lua_pushinteger(L, i);
  return 1;
}

static CaseInfo *scratch(lua_State *L, csp_Sched *S, int n) {
  if ((size_t)n > S->scratchcap / sizeof(CaseInfo)) {
    size_t ncap = S->scratchcap ? S->scratchcap : 16 * sizeof(CaseInfo);
    while (ncap < (size_t)n * sizeof(CaseInfo)) ncap *= 2;
    void *nb = realloc(S->scratch, ncap);
    if (nb == NULL) luaL_error(L, "not enough memory");
    S->scratch = nb;
    S->scratchcap = ncap;
  }
  return (CaseInfo *)S->scratch;
}

static int sel_park(lua_State *L, csp_Sched *S, CaseInfo *cs, int n) {
  csp_G *g = csp_sched_self(L, S);
  csp_Waiter *ws;
  int m = 0, handlers = 0;
  ws = csp_sched_selwaiters(L, g, n);
  for (int i = 0; i < n; i++)
    if (cs[i].sc->c) cs[m++].order = i;
  for (int i = m - 1; i > 0; i--) {  /* queued in random order, as Go does */
    int j = (int)csp_sched_randn(S, (uint32_t)i + 1);
    int t = cs[i].order; cs[i].order = cs[j].order; cs[j].order = t;
  }
  for (int k = 0; k < m; k++) {
    const SelCase *sc = cs[cs[k].order].sc;
    csp_Waiter *w = &ws[k];
    w->g = g;
    w->caseidx = cs[k].order + 1;
    w->validx = 0;
    w->weight = 0;
    handlers |= sc->handler;
    if (sc->send) {
      lua_getiuservalue(L, CASE(w->caseidx), 2);
      w->validx = lua_gettop(L);
    }
    csp_wq_push(sc->send ? &sc->c->sendq : &sc->c->recvq, w);
  }
  g->nsel = m;
  return csp_sched_park(L, g, n ? "select" : "select (no cases)", (lua_KContext)g | handlers,
                        select_k);
}

/* The scheduler of a select: its first case's channel's, which spares the upvalue's lookup. */
static csp_Sched *sel_sched(lua_State *L, const CaseInfo *cs, int n) {
  if (n == 0 || cs[0].sc->c == NULL) return csp_sched_get(L);
  return csp_sched_live(L, cs[0].sc->c->S);
}

static int sel_select(lua_State *L) {
  CaseInfo local[SEL_LOCAL], *cs = local;
  csp_Sched *S;
  int n, nready, pick, ordered = 0, deftype = LUA_TNIL, nonblock = 0, nres, hasx;
  if (lua_type(L, 1) != LUA_TTABLE) luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_gettop(L) != 1) lua_settop(L, 1);  /* the test costs less than lua_settop */
  n = (int)lua_rawlen(L, 1);
  /* The options are keys past the cases: without any (the usual case) lua_next from the last
  ** case finds nothing, which costs less than looking both up. */
  if (n > 0) lua_pushinteger(L, n);
  else lua_pushnil(L);
  if (lua_next(L, 1) != 0) {
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(2)); /* raw lookups with interned keys: no metamethods */
    lua_rawget(L, 1);                      /* 2: default, until the settop below */
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_rawget(L, 1);                      /* 3: ordered */
    ordered = lua_toboolean(L, 3);
    deftype = lua_type(L, 2);
    if (deftype != LUA_TNIL && deftype != LUA_TBOOLEAN && deftype != LUA_TFUNCTION)
      return luaL_argerror(L, 1, lua_pushfstring(L, "field 'default': function or boolean "
                                                    "expected, got %s", luaL_typename(L, 2)));
    nonblock = deftype == LUA_TFUNCTION || lua_toboolean(L, 2);
    lua_settop(L, 1);
  }
  /* Room for the cases, then a case's results (channel, i, v, ok) and its handler's call or,
  ** parking, the send cases' values and what the waker pushes. A C call starts with
  ** LUA_MINSTACK free slots above its argument, which is enough for 4 cases. */
  if (n > 4 && !lua_checkstack(L, 2 * n + 16)) return luaL_error(L, "select: too many cases");
  if (n > SEL_LOCAL) cs = scratch(L, csp_sched_get(L), n);
again:
  nready = 0;
  hasx = 0;
  /* One pass reads each case and tests it: the ready cases' indices are listed in cs[].order
  ** without a branch on readiness (each case writes its index at the list's end, which moves
  ** on only if it is ready). Every local channel is the scheduler's: c->S is S. */
  for (int i = 0; i < n; i++) {  /* API calls inside: what lives across them is spilled */
    const SelCase *sc;
    lua_rawgeti(L, 1, i + 1);  /* left on the stack at CASE(i + 1) */
    if ((cs[i].sc = sc = case_test(L, -1)) == NULL)
      return luaL_argerror(L, 1, lua_pushfstring(L, "case #%d: csp.recv or csp.send expected, got %s",
                                                 i + 1, csp_typename(L, -1)));
    if (sc->c == NULL) {  /* a nil channel's case is never ready; an xchan's is xselect's */
      hasx |= sc->x != NULL;
      continue;
    }
    cs[nready].order = i;
    nready += sc->c->S->port ? csp_xsel_ready(sc->c, sc->send) : csp_chan_ready(sc->c, sc->send);
  }
  S = sel_sched(L, cs, n);
  /* Only a select that may block yields at the end of a slice: one with a default is a
  ** non-blocking call, and those never let another goroutine run (API.md). Run again, the call
  ** starts over from the table (its first lua_settop drops the cases); what the tests did
  ** meanwhile (a due timer channel's firing) stays done, as it would have happened anyway. */
  if (!nonblock) CSP_PREEMPT(L, S, sel_select);
  if (hasx && (nres = csp_xselect(L, S, n, ordered, nonblock)) >= 0) return nres;
  if (nready > 0 && !hasx) {
    const SelCase *sc;
    pick = cs[csp_select_pick(S, nready, ordered)].order;
    sc = cs[pick].sc;
    if ((nres = sel_do(L, pick + 1, sc->c, sc->send, CASE(n))) < 0) {
      lua_settop(L, 1);
      goto again;
    }
    return sc->handler ? finish_handler(L, pick + 1, nres) : nres;
  }
  if (deftype == LUA_TFUNCTION) {  /* read again: only select's own C ran since */
    int base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_rawget(L, 1);
    lua_callk(L, 0, LUA_MULTRET, base, call_k);
    return lua_gettop(L) - base;
  }
  if (nonblock) {
    lua_pushinteger(L, 0);
    return 1;
  }
  return sel_park(L, S, cs, n);
}

static int case_tostring(lua_State *L) {
  SelCase *sc = case_test(L, 1);
  lua_pushfstring(L, "csp.%s case: %p", sc && sc->send ? "send" : "recv", (void *)sc);
  return 1;
}

void csp_select_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"recv", sel_recv}, {"send", sel_send}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__tostring", case_tostring}, {NULL, NULL}};
  csp_newmeta(L, "csp.case", NULL, meta);
  lua_pushliteral(L, "csp.case");
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &case_mt_key);
  csp_setfuncs(L, funcs);
  lua_pushvalue(L, -1);
  lua_pushliteral(L, "default");
  lua_pushliteral(L, "ordered");
  lua_pushcclosure(L, sel_select, 3);
  lua_setfield(L, -3, "select");
}
