/* atomic.c: csp.atomic.int (C11 atomic 64-bit integer) and csp.atomic.value (Go's atomic.Value:
** an encoded value under a leaf lock, its kind fixed by the first store), shared between threads. */
#include <stdlib.h>
#include "xshared.h"

typedef struct AInt {
  csp_Shared h;
  _Atomic lua_Integer v;
} AInt;

typedef struct AValue {
  csp_Shared h;
  pthread_mutex_t mu;
  csp_Blob *v;   /* NULL until the first store */
  int kind;
} AValue;

static void free_self(csp_Shared *s) { free(s); }

/* The race detector's view (Go's: atomics synchronise): a load acquires the object's clock in this
** state, a write (or a cas that swapped) acquires it and merges into it. */
static void a_race(lua_State *L, const void *a, int write) {
  csp_Sched *S = csp_sched_get(L);
  if (S->race == NULL) return;
  if (write) csp_race_sync(S, NULL, a, 0);
  else csp_race_acq(S, NULL, a, 0);
}

static AInt *ai_check(lua_State *L) {
  return (AInt *)csp_proxy_check(L, 1, CSP_X_AINT, "atomic.int");
}

/* Integers wrap around as Go's do; arithmetic goes through unsigned to avoid C's overflow UB. */
static int ai_load(lua_State *L) {
  AInt *a = ai_check(L);
  lua_pushinteger(L, atomic_load(&a->v));
  a_race(L, a, 0);
  return 1;
}
static int ai_store(lua_State *L) {
  AInt *a = ai_check(L);
  atomic_store(&a->v, luaL_checkinteger(L, 2));
  a_race(L, a, 1);
  return 0;
}
static int ai_add(lua_State *L) {
  AInt *a = ai_check(L);
  lua_Integer d = luaL_checkinteger(L, 2);
  lua_Integer old = atomic_fetch_add(&a->v, d);
  a_race(L, a, 1);
  lua_pushinteger(L, (lua_Integer)((lua_Unsigned)old + (lua_Unsigned)d));
  return 1;
}
static int ai_swap(lua_State *L) {
  AInt *a = ai_check(L);
  lua_pushinteger(L, atomic_exchange(&a->v, luaL_checkinteger(L, 2)));
  a_race(L, a, 1);
  return 1;
}
static int ai_cas(lua_State *L) {
  AInt *a = ai_check(L);
  lua_Integer old = luaL_checkinteger(L, 2), nv = luaL_checkinteger(L, 3);
  int swapped = atomic_compare_exchange_strong(&a->v, &old, nv);
  a_race(L, a, swapped);
  lua_pushboolean(L, swapped);
  return 1;
}
static int ai_tostring(lua_State *L) {
  lua_pushfstring(L, "csp.atomic.int: %I", (LUAI_UACINT)atomic_load(&ai_check(L)->v));
  return 1;
}

static int ai_new(lua_State *L) {
  lua_Integer v = luaL_optinteger(L, 1, 0);
  AInt *a = (AInt *)malloc(sizeof *a);
  if (a == NULL) return luaL_error(L, "not enough memory");
  atomic_init(&a->v, v);
  csp_shared_init(&a->h, CSP_X_AINT, free_self);
  csp_proxy_push(L, &a->h, CSP_OP_ANY);
  csp_shared_unref(&a->h);
  return 1;
}

/* ---------------------------------------------------------------- value */

static void av_destroy(csp_Shared *s) {
  AValue *a = (AValue *)s;
  csp_blob_free(a->v);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

static AValue *av_check(lua_State *L) {
  return (AValue *)csp_proxy_check(L, 1, CSP_X_AVALUE, "atomic.value");
}

static const char box_mt = 0;

static int box_gc(lua_State *L) {
  csp_Blob **box = (csp_Blob **)lua_touserdata(L, 1);
  csp_blob_free(box[0]); csp_blob_free(box[1]);
  box[0] = box[1] = NULL;
  return 0;
}

static csp_Blob **new_box(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", box_gc}, {NULL, NULL}};
  csp_Blob **box = (csp_Blob **)lua_newuserdatauv(L, 2 * sizeof *box, 0);
  box[0] = box[1] = NULL;
  csp_keptmeta(L, &box_mt, meta);
  lua_setmetatable(L, -2);
  return box;
}

static void push_blob(lua_State *L, csp_Blob *c) {  /* decodes and frees; nil for NULL */
  lua_pushnil(L);
  if (c == NULL) return;
  if (csp_blob_decode(L, c) == 1) lua_replace(L, -2);
  csp_blob_free(c);
}

static int av_load(lua_State *L) {
  AValue *a = av_check(L);
  csp_Blob *c = NULL;
  int oom = 0;
  pthread_mutex_lock(&a->mu);
  if (a->v && (c = csp_blob_dup(a->v)) == NULL) oom = 1;
  pthread_mutex_unlock(&a->mu);
  if (oom) return luaL_error(L, "not enough memory");
  a_race(L, a, 0);
  push_blob(L, c);
  return 1;
}

/* Stores or swaps v at 2 (what: the Go method's words in errors); pushes the old value if swap. */
static int av_put(lua_State *L, int swap) {
  AValue *a = av_check(L);
  csp_Blob **box, *old;
  int kind, bad = 0;
  lua_settop(L, 2);
  if (lua_isnil(L, 2))
    return luaL_error(L, swap ? "sync/atomic: swap of nil value into Value"
                              : "sync/atomic: store of nil value into Value");
  box = new_box(L);
  box[0] = csp_blob_encode(L, 2, 1);
  kind = csp_blob_kind(box[0]);
  pthread_mutex_lock(&a->mu);
  if (a->v && a->kind != kind) {
    bad = 1;
  } else {
    old = a->v;
    a->v = box[0];
    a->kind = kind;
    box[0] = old;
  }
  pthread_mutex_unlock(&a->mu);
  if (bad)
    return luaL_error(L, swap ? "sync/atomic: swap of inconsistently typed value into Value"
                              : "sync/atomic: store of inconsistently typed value into Value");
  a_race(L, a, 1);
  old = box[0];
  box[0] = NULL;
  if (!swap) {
    csp_blob_free(old);
    return 0;
  }
  push_blob(L, old);
  return 1;
}

static int av_store(lua_State *L) { return av_put(L, 0); }
static int av_swap(lua_State *L) { return av_put(L, 1); }

static int av_cas(lua_State *L) {
  AValue *a = av_check(L);
  csp_Blob **box, *drop = NULL;
  const char *bad = NULL;  /* Go's two panics: old's type against new's, new's against the Value's */
  int kind, swapped = 0;
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) return luaL_error(L, "sync/atomic: compare and swap of nil value into Value");
  if (lua_istable(L, 2))
    return luaL_error(L, "sync/atomic: compare and swap of an incomparable value (a table)");
  box = new_box(L);
  if (!lua_isnil(L, 2)) box[1] = csp_blob_encode(L, 2, 1);
  box[0] = csp_blob_encode(L, 3, 1);
  kind = csp_blob_kind(box[0]);
  pthread_mutex_lock(&a->mu);
  if (box[1] && csp_blob_kind(box[1]) != kind) {
    bad = "sync/atomic: compare and swap of inconsistently typed values";
  } else if (a->v && a->kind != kind) {
    bad = "sync/atomic: compare and swap of inconsistently typed value into Value";
  } else if (box[1] == NULL ? a->v == NULL : (a->v && csp_blob_same(a->v, box[1]))) {
    drop = a->v;
    a->v = box[0];
    a->kind = kind;
    box[0] = NULL;
    swapped = 1;
  }
  pthread_mutex_unlock(&a->mu);
  csp_blob_free(drop);
  csp_blob_free(box[0]); csp_blob_free(box[1]);
  box[0] = box[1] = NULL;
  if (bad) return luaL_error(L, "%s", bad);
  a_race(L, a, swapped);
  lua_pushboolean(L, swapped);
  return 1;
}

static int av_tostring(lua_State *L) {
  lua_pushfstring(L, "csp.atomic.value: %p", (void *)av_check(L));
  return 1;
}

static int av_new(lua_State *L) {
  AValue *a = (AValue *)calloc(1, sizeof *a);
  if (a == NULL) return luaL_error(L, "not enough memory");
  pthread_mutex_init(&a->mu, NULL);
  csp_shared_init(&a->h, CSP_X_AVALUE, av_destroy);
  csp_proxy_push(L, &a->h, CSP_OP_ANY);
  csp_shared_unref(&a->h);
  return 1;
}

void csp_atomic_open(lua_State *L) {
  static const luaL_Reg ai_methods[] = {{"load", ai_load}, {"store", ai_store}, {"add", ai_add},
                                        {"swap", ai_swap}, {"cas", ai_cas}, {NULL, NULL}};
  static const luaL_Reg ai_metas[] = {{"__tostring", ai_tostring}, {NULL, NULL}};
  static const luaL_Reg av_methods[] = {{"load", av_load}, {"store", av_store}, {"swap", av_swap},
                                        {"cas", av_cas}, {NULL, NULL}};
  static const luaL_Reg av_metas[] = {{"__tostring", av_tostring}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"int", ai_new}, {"value", av_new}, {NULL, NULL}};
  csp_proxy_meta(L, CSP_X_AINT, "csp.atomic.int", ai_methods, ai_metas);
  csp_proxy_meta(L, CSP_X_AVALUE, "csp.atomic.value", av_methods, av_metas);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_setfield(L, -3, "atomic");
}
