/* race.c: the race detector (CSP_RACE): FastTrack checks on globals and watched tables, locations,
** Go-style reports, exit status 66, the Lua API (clocks: raceclock.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>
#include "csp.h"

static const char race_key = 0;   /* registry: the userdata owning csp_Race */
static const char var_mt = 0;     /* registry: metatable of RaceVar userdata */
static int race_found;            /* reports printed, process-wide: read at exit */
static int race_report_only;
static int race_exit_registered;
static void *race_self;           /* this library, pinned while exit handlers may run */

/* ---------------------------------------------------------------- locations */

static uint32_t str_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* Interns a location string; ids start at 1. */
static uint32_t loc_intern(csp_Race *R, const char *s) {
  uint32_t h = str_hash(s), i;
  if (R->nlocs + 1 >= R->lochmask / 2) {
    uint32_t ncap = R->lochmask ? (R->lochmask + 1) * 2 : 1024;
    uint32_t *nh = csp_raceclock_xrealloc(NULL, ncap * sizeof *nh);
    memset(nh, 0, ncap * sizeof *nh);
    for (uint32_t id = 1; id <= R->nlocs; id++) {
      uint32_t j = str_hash(R->locs[id]) & (ncap - 1);
      while (nh[j]) j = (j + 1) & (ncap - 1);
      nh[j] = id;
    }
    free(R->lochash);
    R->lochash = nh;
    R->lochmask = ncap - 1;
  }
  for (i = h & R->lochmask; R->lochash[i]; i = (i + 1) & R->lochmask)
    if (strcmp(R->locs[R->lochash[i]], s) == 0) return R->lochash[i];
  if (R->nlocs + 2 > R->loccap) {
    R->loccap = R->loccap ? R->loccap * 2 : 256;
    R->locs = csp_raceclock_xrealloc(R->locs, R->loccap * sizeof *R->locs);
  }
  R->locs[++R->nlocs] = strcpy(csp_raceclock_xrealloc(NULL, strlen(s) + 1), s);
  R->lochash[i] = R->nlocs;
  return R->nlocs;
}

static void frame_str(char *buf, size_t n, lua_Debug *ar) {
  if (*ar->what == 'm')
    snprintf(buf, n, "%s:%d in main chunk", ar->short_src, ar->currentline);
  else if (ar->name)
    snprintf(buf, n, "%s:%d in function '%s'", ar->short_src, ar->currentline, ar->name);
  else
    snprintf(buf, n, "%s:%d in function <%s:%d>", ar->short_src, ar->currentline, ar->short_src,
             ar->linedefined);
}

static uint32_t lockey_hash(const char *src, int64_t line) {
  uint64_t h = ((uint64_t)(uintptr_t)src >> 3) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)line * 0xff51afd7ed558ccdULL;
  return (uint32_t)(h ^ (h >> 32));
}

static void lockey_put(csp_Race *R, const char *src, int64_t line, uint32_t srchash, uint32_t id) {
  uint32_t i;
  if (R->nlockeys + 1 >= R->lockmask / 2) {  /* grow (or start): rehash every key */
    uint32_t ncap = R->lockmask ? (R->lockmask + 1) * 2 : 256;
    RaceLocKey *nk = csp_raceclock_xrealloc(NULL, ncap * sizeof *nk);
    memset(nk, 0, ncap * sizeof *nk);
    for (uint32_t j = 0; R->lockmask && j <= R->lockmask; j++) {
      RaceLocKey *k = &R->lockeys[j];
      if (!k->id) continue;
      for (i = lockey_hash(k->src, k->line) & (ncap - 1); nk[i].id; i = (i + 1) & (ncap - 1)) {}
      nk[i] = *k;
    }
    free(R->lockeys);
    R->lockeys = nk;
    R->lockmask = ncap - 1;
  }
  for (i = lockey_hash(src, line) & R->lockmask; R->lockeys[i].id; i = (i + 1) & R->lockmask) {
    RaceLocKey *k = &R->lockeys[i];
    if (k->src == src && k->line == line) break;  /* a reused address: replace */
  }
  if (!R->lockeys[i].id) R->nlockeys++;
  R->lockeys[i].src = src;
  R->lockeys[i].line = line;
  R->lockeys[i].srchash = srchash;
  R->lockeys[i].id = id;
}

/* The first Lua frame of L's stack (C frames: the metamethod, csp.go, table.insert...). Called
** whenever a variable's epoch changes: the name ("n", the costly part) and the text are only
** made the first time a (source, line) is seen. */
uint32_t csp_race_loc_here(csp_Race *R, lua_State *L) {
  lua_Debug ar;
  char buf[512];
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    uint32_t sh, id;
    int64_t at;
    lua_getinfo(L, "Sl", &ar);
    if (*ar.what == 'C') continue;
    sh = str_hash(ar.short_src);
    at = (int64_t)ar.linedefined << 32 | (uint32_t)ar.currentline;
    if (R->lockeys) {
      for (uint32_t i = lockey_hash(ar.source, at) & R->lockmask; R->lockeys[i].id;
           i = (i + 1) & R->lockmask) {
        RaceLocKey *k = &R->lockeys[i];
        if (k->src == ar.source && k->line == at && k->srchash == sh) return k->id;
      }
    }
    lua_getinfo(L, "n", &ar);
    frame_str(buf, sizeof buf, &ar);
    id = loc_intern(R, buf);
    lockey_put(R, ar.source, at, sh, id);
    return id;
  }
  return loc_intern(R, "?");
}

static void print_stack(lua_State *L) {
  lua_Debug ar;
  char buf[512];
  int n = 0;
  for (int level = 0; n < MAX_FRAMES && lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sln", &ar);
    if (*ar.what == 'C') continue;
    frame_str(buf, sizeof buf, &ar);
    fprintf(stderr, "  %s\n", buf);
    n++;
  }
  if (n == 0) fputs("  ?\n", stderr);
}

/* ---------------------------------------------------------------- reports */

static int is_ident(const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

/* The variable of the access being checked: key at 2, proxy at 1, name in upvalue 4. */
static void var_name(lua_State *L, char *buf, size_t n) {
  char key[200];
  const char *tname = lua_tostring(L, lua_upvalueindex(4));  /* NULL: the globals */
  int ident = 0;
  switch (lua_type(L, 2)) {
    case LUA_TSTRING:
      ident = is_ident(lua_tostring(L, 2));
      snprintf(key, sizeof key, ident ? "%s" : "\"%s\"", lua_tostring(L, 2));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, 2)) snprintf(key, sizeof key, "%lld", (long long)lua_tointeger(L, 2));
      else snprintf(key, sizeof key, "%.14g", (double)lua_tonumber(L, 2));
      break;
    case LUA_TBOOLEAN:
      snprintf(key, sizeof key, "%s", lua_toboolean(L, 2) ? "true" : "false");
      break;
    default:
      snprintf(key, sizeof key, "%s: %p", luaL_typename(L, 2), lua_topointer(L, 2));
  }
  if (tname == NULL) snprintf(buf, n, ident ? "%s" : "_G[%s]", key);
  else if (*tname) snprintf(buf, n, ident ? "%s.%s" : "%s[%s]", tname, key);
  else snprintf(buf, n, ident ? "field '%s' of table: %p" : "[%s] of table: %p", key, lua_topointer(L, 1));
}

static void print_who(const char *what, const char *var, lua_Integer gid) {
  if (gid == 1) fprintf(stderr, "%s at %s by main goroutine:\n", what, var);
  else fprintf(stderr, "%s at %s by goroutine %lld:\n", what, var, (long long)gid);
}

static void print_created(csp_Race *R, lua_Integer gid, uint32_t loc) {
  if (gid == 1) return;
  fprintf(stderr, "\nGoroutine %lld created at:\n  %s\n", (long long)gid,
          loc && loc <= R->nlocs ? R->locs[loc] : "?");
}

/* Once per variable and once per pair of locations (kinds included), as Go dedups. */
static void report(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v, int write, int pwrite,
                   uint32_t pslot, uint32_t ploc) {
  char var[300];
  uint32_t a, b;
  uint64_t pair;
  if (v->reported) return;
  a = csp_race_loc_here(R, L) * 2 + (uint32_t)write;
  b = ploc * 2 + (uint32_t)pwrite;
  pair = a < b ? ((uint64_t)a << 32 | b) : ((uint64_t)b << 32 | a);
  for (uint32_t i = 0; i < R->npairs; i++)
    if (R->pairs[i] == pair) return;
  if (R->npairs == R->paircap) {
    R->paircap = R->paircap ? R->paircap * 2 : 16;
    R->pairs = csp_raceclock_xrealloc(R->pairs, R->paircap * sizeof *R->pairs);
  }
  R->pairs[R->npairs++] = pair;
  v->reported = 1;
  race_found++;
  var_name(L, var, sizeof var);
  fflush(stdout);
  fputs("==================\nWARNING: DATA RACE\n", stderr);
  print_who(write ? "Write" : "Read", var, g->id);
  print_stack(L);
  fputc('\n', stderr);
  print_who(pwrite ? "Previous write" : "Previous read", var, R->slots[pslot].gid);
  fprintf(stderr, "  %s\n", ploc && ploc <= R->nlocs ? R->locs[ploc] : "?");
  print_created(R, g->id, g->created);
  if (R->slots[pslot].gid != g->id) print_created(R, R->slots[pslot].gid, R->slots[pslot].created);
  fputs("==================\n", stderr);
  fflush(stderr);
}

/* ---------------------------------------------------------------- FastTrack checks */

static void add_read(RaceVar *v, uint32_t slot, uint32_t clock, uint32_t loc) {
  if (v->nreads == v->readcap) {
    v->readcap = v->readcap ? v->readcap * 2 : 4;
    v->reads = csp_raceclock_xrealloc(v->reads, v->readcap * sizeof *v->reads);
  }
  v->reads[v->nreads].slot = slot;
  v->reads[v->nreads].clock = clock;
  v->reads[v->nreads].loc = loc;
  v->nreads++;
}

static void on_read(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v) {
  uint32_t s, c, loc, m = 0;
  if (!g->slot) csp_raceclock_rg_slot(R, g);
  s = g->slot;
  c = g->vc.c[s];
  if (v->rslot == s && v->rclock == c) return;  /* same epoch: the common case */
  for (uint32_t i = 0; i < v->nreads; i++)
    if (v->reads[i].slot == s && v->reads[i].clock == c) return;
  if (v->wclock && v->wclock > csp_raceclock_vc_get(&g->vc, v->wslot))
    report(L, R, g, v, 0, 1, v->wslot, v->wloc);
  loc = csp_race_loc_here(R, L);
  if (v->nreads == 0) {
    if (v->rclock == 0 || v->rclock <= csp_raceclock_vc_get(&g->vc, v->rslot)) {  /* exclusive */
      v->rslot = s;
      v->rclock = c;
      v->rloc = loc;
      return;
    }
    add_read(v, v->rslot, v->rclock, v->rloc);  /* concurrent readers: a read set */
    v->rslot = v->rclock = 0;
  }
  for (uint32_t i = 0; i < v->nreads; i++)  /* drop reads ordered before this one */
    if (v->reads[i].slot != s && v->reads[i].clock > csp_raceclock_vc_get(&g->vc, v->reads[i].slot))
      v->reads[m++] = v->reads[i];
  v->nreads = m;
  add_read(v, s, c, loc);
}

static void on_write(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v) {
  uint32_t s, c;
  if (!g->slot) csp_raceclock_rg_slot(R, g);
  s = g->slot;
  c = g->vc.c[s];
  if (v->wslot == s && v->wclock == c) return;
  if (v->wclock && v->wclock > csp_raceclock_vc_get(&g->vc, v->wslot)) {
    report(L, R, g, v, 1, 1, v->wslot, v->wloc);
  } else if (v->rclock && v->rclock > csp_raceclock_vc_get(&g->vc, v->rslot)) {
    report(L, R, g, v, 1, 0, v->rslot, v->rloc);
  } else {
    for (uint32_t i = 0; i < v->nreads; i++)
      if (v->reads[i].clock > csp_raceclock_vc_get(&g->vc, v->reads[i].slot)) {
        report(L, R, g, v, 1, 0, v->reads[i].slot, v->reads[i].loc);
        break;
      }
  }
  v->wslot = s;
  v->wclock = c;
  v->wloc = csp_race_loc_here(R, L);
  v->rslot = v->rclock = 0;
  v->nreads = 0;
}

/* ---------------------------------------------------------------- proxies */

static int var_gc(lua_State *L) {
  RaceVar *v = (RaceVar *)lua_touserdata(L, 1);
  free(v->reads);
  v->reads = NULL;
  return 0;
}

/* The shadow record of key 2 (upvalue 3: key -> RaceVar userdata). */
static RaceVar *var_get(lua_State *L) {
  RaceVar *v;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(3)) == LUA_TNIL) {
    lua_pop(L, 1);
    v = (RaceVar *)lua_newuserdatauv(L, sizeof *v, 0);
    memset(v, 0, sizeof *v);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &var_mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, lua_upvalueindex(3));
  }
  v = (RaceVar *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Accesses are checked unless no goroutine runs them (a finalizer inside the loop) or the key
** cannot be one (nil, NaN: the table operation raises or misses as usual). */
static int tracked(lua_State *L, csp_Sched *S) {
  if (S->race == NULL || (S->cur == NULL && S->depth > 0)) return 0;
  if (lua_isnil(L, 2)) return 0;
  if (lua_type(L, 2) == LUA_TNUMBER && lua_tonumber(L, 2) != lua_tonumber(L, 2)) return 0;
  return 1;
}

/* Upvalues of the proxy metamethods: 1 sched, 2 hidden contents, 3 shadow, 4 name (nil: _G). */
static int race_index(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 2);
  if (tracked(L, S)) on_read(L, S->race, csp_raceclock_rg_of(S, NULL), var_get(L));
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

static int race_newindex(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 3);
  if (tracked(L, S)) on_write(L, S->race, csp_raceclock_rg_of(S, NULL), var_get(L));
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, lua_upvalueindex(2));
  return 0;
}

static int race_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(2)));
  return 1;
}

/* pairs over a proxy: its raw part first (the globals that predate the detector), then the rest. */
static int pairs_next(lua_State *L) {
  lua_settop(L, 2);
  if (!lua_toboolean(L, lua_upvalueindex(3))) {
    lua_pushvalue(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushboolean(L, 1);
    lua_replace(L, lua_upvalueindex(3));
    lua_pushnil(L);
  } else {
    lua_pushvalue(L, 2);
  }
  if (lua_next(L, lua_upvalueindex(2))) return 2;
  lua_pushnil(L);
  return 1;
}

static int race_pairs(lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, pairs_next, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Proxies the table at idx in place: its metatable reaches the contents moved to a hidden table
** (moved: all of them; kept raw, unobserved: none, except for _G, whose existing entries, the
** standard library and csp itself, stay raw so reading them costs nothing). name: see var_name. */
static void proxy(lua_State *L, int idx, csp_Sched *S, const char *name, int move) {
  int hidden, shadow;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  hidden = lua_gettop(L);
  lua_newtable(L);
  shadow = lua_gettop(L);
  if (move) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, hidden);
    }
    lua_pushnil(L);  /* clearing existing fields during a traversal is allowed */
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, idx);
    }
  }
  {
    static const luaL_Reg mm[] = {
      {"__index", race_index}, {"__newindex", race_newindex}, {"__len", race_len}, {NULL, NULL}};
    lua_rawgetp(L, LUA_REGISTRYINDEX, S);
    lua_pushvalue(L, hidden);
    lua_pushvalue(L, shadow);
    if (name) lua_pushstring(L, name);
    else lua_pushnil(L);
    csp_newmeta_up(L, mm, 4);
    lua_pushvalue(L, idx);  /* pairs: upvalues raw table, hidden */
    lua_pushvalue(L, hidden);
    lua_pushcclosure(L, race_pairs, 2);
    lua_setfield(L, -2, "__pairs");
  }
  if (name) {  /* a watched table keeps its proxy; _G does not (test harnesses restore it) */
    lua_pushliteral(L, "csp.race.watched");
    lua_setfield(L, -2, "__metatable");
  } else {
    lua_pushliteral(L, "csp.race.globals");
    lua_setfield(L, -2, "__name");
  }
  lua_setmetatable(L, idx);
  lua_pop(L, 2);
}

/* ---------------------------------------------------------------- state, exit, Lua API */

static void race_exit(int status, void *arg) {
  (void)arg;
  if (race_found == 0) return;
  fflush(stdout);
  fprintf(stderr, "Found %d data race(s)\n", race_found);
  fflush(NULL);
  if (status == 0 && !race_report_only) _exit(66);  /* Go's exitcode: only a clean exit changes */
}

static void race_gfree(csp_G *g) {
  RaceG *r = g->ext ? (RaceG *)g->ext->race : NULL;
  if (r == NULL) return;
  free(r->vc.c);
  free(r);
  g->ext->race = NULL;
}

static int race_gc(lua_State *L) {
  csp_Race *R = *(csp_Race **)lua_touserdata(L, 1);
  csp_Sched *S;
  if (R == NULL) return 0;
  S = R->S;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) race_gfree(g);
  race_gfree(&S->maing);
  for (uint32_t i = 0; R->objmask && i <= R->objmask; i++) {
    RaceObj *o = R->objs[i], *next;
    for (; o; o = next) { next = o->next; free(o->vc.c); free(o); }
  }
  for (uint32_t i = 1; i <= R->nlocs; i++) free(R->locs[i]);
  free(R->lockeys);
  free(R->objs); free(R->locs); free(R->lochash); free(R->pairs); free(R->slots);
  free(R->exitvc.c); free(R->tmp.c);
  free(R);
  S->race = NULL;
  *(csp_Race **)lua_touserdata(L, 1) = NULL;
  return 0;
}

static void race_enable(lua_State *L, csp_Sched *S, const char *mode) {
  static const luaL_Reg box_meta[] = {{"__gc", race_gc}, {NULL, NULL}};
  static const luaL_Reg var_meta[] = {{"__gc", var_gc}, {NULL, NULL}};
  csp_Race *R, **box;
  if (S->race) return;
  race_report_only = mode && strcmp(mode, "report") == 0;
  R = csp_raceclock_xrealloc(NULL, sizeof *R);
  memset(R, 0, sizeof *R);
  R->S = S;
  R->nslots = 1;
  box = (csp_Race **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = R;
  lua_pushnil(L);  /* the __gc functions' upvalue: none */
  csp_newmeta(L, NULL, NULL, box_meta);
  lua_setmetatable(L, -3);
  csp_newmeta(L, NULL, NULL, var_meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &var_mt);
  lua_pop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &race_key);
  S->race = R;
  csp_raceclock_rg_of(S, &S->maing);
  if (!race_exit_registered) {
    Dl_info info;
    race_exit_registered = 1;
    /* lua_close unloads this library before exit handlers run: pin it (a handle kept for the
    ** process's life, never closed), so race_exit stays mapped. */
    if (dladdr((void *)race_exit, &info) && info.dli_fname)
      race_self = dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
    on_exit(race_exit, NULL);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (lua_getmetatable(L, -1)) {  /* a strict-mode _G: leave it alone, say so */
    if (lua_getfield(L, -1, "__name") != LUA_TSTRING || strcmp(lua_tostring(L, -1), "csp.race.globals"))
      fputs("csp race detector: _G has a metatable; globals are not watched\n", stderr);
    lua_pop(L, 2);
  } else {
    proxy(L, -1, S, NULL, 0);
  }
  lua_pop(L, 1);
}

static int race_enable_l(lua_State *L) {
  race_enable(L, csp_sched_get(L), luaL_optstring(L, 1, "1"));
  return 0;
}

static int race_enabled_l(lua_State *L) {
  lua_pushboolean(L, csp_sched_get(L)->race != NULL);
  return 1;
}

static int race_watch_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  if (S->race == NULL) {
    lua_settop(L, 1);
    return 1;
  }
  if (lua_getmetatable(L, 1)) {
    if (lua_getfield(L, -1, "__metatable") == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "csp.race.watched") == 0) {
      lua_settop(L, 1);
      return 1;
    }
    return luaL_argerror(L, 1, "a table with a metatable cannot be watched");
  }
  proxy(L, 1, S, lua_isnil(L, 2) ? "" : lua_tostring(L, 2), 1);
  lua_settop(L, 1);
  return 1;
}

/* race.csp_raceclock_acquire(x) / race.release(x): Go's runtime.RaceAcquire/RaceRelease on any Lua object. */
static const void *user_key(lua_State *L) {
  const void *p = lua_topointer(L, 1);
  luaL_argcheck(L, p != NULL, 1, "table, function, thread or userdata expected");
  return p;
}

static int race_acquire_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const void *p = user_key(L);
  if (S->race) csp_race_acq(S, NULL, p, USER_SUB);
  return 0;
}

static int race_release_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const void *p = user_key(L);
  if (S->race) csp_race_rel(S, p, USER_SUB);
  return 0;
}

static int race_errors_l(lua_State *L) {
  lua_pushinteger(L, race_found);
  return 1;
}

/* Stack: [module, sched]. CSP_RACE: unset, empty or 0 = off; report = report only; else on. */
void csp_race_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_race_enable", race_enable_l}, {"_race_enabled", race_enabled_l},
    {"_race_watch", race_watch_l}, {"_race_acquire", race_acquire_l},
    {"_race_release", race_release_l}, {"_race_errors", race_errors_l}, {NULL, NULL}};
  const char *env = getenv("CSP_RACE");
  csp_setfuncs(L, funcs);
  if (env && *env && strcmp(env, "0") != 0) race_enable(L, (csp_Sched *)lua_touserdata(L, -1), env);
}
