/* syncmap.c: csp.syncmap, Go's sync.Map shared between threads: a mutex-guarded hash of encoded
** keys to encoded values; values are copied out and decoded with the lock released. */
#include <stdlib.h>
#include <string.h>
#include "xshared.h"

typedef struct Entry {
  struct Entry *next;
  uint64_t hash;
  csp_Blob *key, *val;
} Entry;

typedef struct SyncMap {
  csp_Shared h;
  pthread_mutex_t mu;
  Entry **b;
  size_t nb, n;
} SyncMap;

static uint64_t key_hash(const csp_Blob *k) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < k->len; i++) h = (h ^ k->data[i]) * 1099511628211ULL;
  return h;
}

static void sm_destroy(csp_Shared *s) {
  SyncMap *m = (SyncMap *)s;
  for (size_t i = 0; i < m->nb; i++) {
    Entry *e = m->b[i], *next;
    for (; e; e = next) {
      next = e->next;
      csp_blob_free(e->key);
      csp_blob_free(e->val);
      free(e);
    }
  }
  free(m->b);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static SyncMap *sm_check(lua_State *L) {
  return (SyncMap *)csp_proxy_check(L, 1, CSP_X_SYNCMAP, "syncmap");
}

/* Under mu. */
static Entry **sm_find(SyncMap *m, const csp_Blob *k, uint64_t h) {
  Entry **pe = &m->b[h & (m->nb - 1)];
  for (; *pe; pe = &(*pe)->next)
    if ((*pe)->hash == h && csp_blob_equal((*pe)->key, k)) return pe;
  return pe;
}

/* Under mu: room for one more entry (0 when out of memory). */
static int sm_grow(SyncMap *m) {
  size_t nnb;
  Entry **nb;
  if (m->n < m->nb) return 1;
  nnb = m->nb * 2;
  if ((nb = (Entry **)calloc(nnb, sizeof *nb)) == NULL) return 0;
  for (size_t i = 0; i < m->nb; i++) {
    Entry *e = m->b[i], *next;
    for (; e; e = next) {
      next = e->next;
      e->next = nb[e->hash & (nnb - 1)];
      nb[e->hash & (nnb - 1)] = e;
    }
  }
  free(m->b);
  m->b = nb;
  m->nb = nnb;
  return 1;
}

/* Decodes a copy taken under the lock, then frees it; pushes nil for NULL. */
static void push_copy(lua_State *L, csp_Blob *c) {
  if (c == NULL) {
    lua_pushnil(L);
    return;
  }
  lua_pushnil(L);
  {
    int n = csp_blob_decode(L, c);
    csp_blob_free(c);
    if (n == 1) lua_replace(L, -2);
    else lua_pop(L, n);
  }
}

/* The operations. op: what to do with the entry for key k, given new value v (may be NULL). */
enum { OP_LOAD, OP_STORE, OP_LOAD_OR_STORE, OP_LOAD_AND_DELETE, OP_DELETE, OP_SWAP, OP_CAS };

static const char box_mt = 0;

static int box_gc(lua_State *L) {
  csp_Blob **box = (csp_Blob **)lua_touserdata(L, 1);
  for (int i = 0; i < 3; i++) { csp_blob_free(box[i]); box[i] = NULL; }
  return 0;
}

/* Encoded values owned by a userdata until taken, so a raise while encoding leaks nothing. */
static csp_Blob **new_box(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", box_gc}, {NULL, NULL}};
  csp_Blob **box = (csp_Blob **)lua_newuserdatauv(L, 3 * sizeof *box, 0);
  box[0] = box[1] = box[2] = NULL;
  csp_keptmeta(L, &box_mt, meta);
  lua_setmetatable(L, -2);
  return box;
}

/* Under mu: a new entry for k (hash h) holding v, both taken; 0 when out of memory. */
static int sm_insert(SyncMap *m, csp_Blob **box, uint64_t h) {
  Entry *e;
  if (!sm_grow(m) || (e = (Entry *)malloc(sizeof *e)) == NULL) return 0;
  Entry **pe = sm_find(m, box[0], h);
  e->hash = h;
  e->key = box[0];
  e->val = box[2];
  e->next = NULL;
  *pe = e;
  m->n++;
  box[0] = box[2] = NULL;
  return 1;
}

/* The race detector's view, per map (Go's: a store before the loads that see it): an operation
** that wrote acquires the map's clock in this state and merges into it; any other acquires it. */
static void sm_race(lua_State *L, SyncMap *m, int wrote) {
  csp_Sched *S = csp_sched_get(L);
  if (S->race == NULL) return;
  if (wrote) csp_race_sync(S, NULL, m, 0);
  else csp_race_acq(S, NULL, m, 0);
}

/* box: 0 the key, 1 the old value (cas), 2 the new value. out: what is returned, a copy. */
static int sm_op(lua_State *L, int op) {
  SyncMap *m = sm_check(L);
  csp_Blob **box, *out = NULL, *drop = NULL;
  Entry **pe, *e;
  uint64_t h;
  int found, swapped = 0, oom = 0;
  lua_settop(L, op == OP_CAS ? 4 : 3);
  if (op == OP_CAS && lua_istable(L, 3))
    return luaL_error(L, "syncmap: compare_and_swap of an incomparable value (a table)");
  box = new_box(L);
  box[0] = csp_blob_key(L, 2);
  if (op == OP_STORE || op == OP_LOAD_OR_STORE || op == OP_SWAP) box[2] = csp_blob_encode(L, 3, 1);
  if (op == OP_CAS) {
    box[1] = csp_blob_encode(L, 3, 1);
    box[2] = csp_blob_encode(L, 4, 1);
  }
  h = key_hash(box[0]);
  pthread_mutex_lock(&m->mu);
  pe = sm_find(m, box[0], h);
  e = *pe;
  found = e != NULL;
  switch (op) {
    case OP_LOAD:
      if (found && (out = csp_blob_dup(e->val)) == NULL) oom = 1;
      break;
    case OP_LOAD_OR_STORE:
      if (found) out = csp_blob_dup(e->val);
      else if ((out = csp_blob_dup(box[2])) != NULL && !sm_insert(m, box, h)) oom = 1;
      if (out == NULL) oom = 1;
      break;
    case OP_STORE:
    case OP_SWAP:
      if (found) {
        drop = e->val;
        e->val = box[2];
        box[2] = NULL;
      } else if (!sm_insert(m, box, h)) {
        oom = 1;
      }
      if (op == OP_SWAP) { out = drop; drop = NULL; }
      break;
    case OP_LOAD_AND_DELETE:
    case OP_DELETE:
      if (found) {
        *pe = e->next;
        m->n--;
        out = e->val;
        drop = e->key;
        free(e);
      }
      break;
    case OP_CAS:
      if (found && csp_blob_same(e->val, box[1])) {
        drop = e->val;
        e->val = box[2];
        box[2] = NULL;
        swapped = 1;
      }
      break;
  }
  pthread_mutex_unlock(&m->mu);
  /* Freed outside the lock: a freed blob may drop the last ref of a shared object. */
  csp_blob_free(drop);
  for (int i = 0; i < 3; i++) { csp_blob_free(box[i]); box[i] = NULL; }
  if (oom) {
    csp_blob_free(out);
    return luaL_error(L, "not enough memory");
  }
  sm_race(L, m, op == OP_CAS ? swapped : op == OP_LOAD_OR_STORE ? !found : op != OP_LOAD);
  switch (op) {
    case OP_STORE: return 0;
    case OP_DELETE: csp_blob_free(out); return 0;
    case OP_CAS:
      lua_pushboolean(L, swapped);
      return 1;
    default:
      push_copy(L, out);
      lua_pushboolean(L, found);
      return 2;
  }
}

static int sm_load(lua_State *L) { return sm_op(L, OP_LOAD); }
static int sm_store(lua_State *L) { return sm_op(L, OP_STORE); }
static int sm_load_or_store(lua_State *L) { return sm_op(L, OP_LOAD_OR_STORE); }
static int sm_load_and_delete(lua_State *L) { return sm_op(L, OP_LOAD_AND_DELETE); }
static int sm_delete(lua_State *L) { return sm_op(L, OP_DELETE); }
static int sm_swap(lua_State *L) { return sm_op(L, OP_SWAP); }
static int sm_cas(lua_State *L) { return sm_op(L, OP_CAS); }

static const char snap_mt = 0;

typedef struct Snap { size_t n; csp_Blob **items; } Snap;

static void snap_free(Snap *s) {
  for (size_t i = 0; i < s->n; i++) csp_blob_free(s->items[i]);
  free(s->items);
  s->items = NULL;
  s->n = 0;
}

static int snap_gc(lua_State *L) {
  snap_free((Snap *)lua_touserdata(L, 1));
  return 0;
}

static const luaL_Reg snap_meta[] = {{"__gc", snap_gc}, {NULL, NULL}};

/* Pops f's result: did it return false (stop)? */
static int range_stop(lua_State *L) {
  int stop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  return stop;
}

static int range_k(lua_State *L, int status, lua_KContext i);

/* Stack: [map, f, snap, t, n]: t holds the snapshot's n keys and values in turn, so a yield in f
** (it may block, as Go's Range callback may) keeps them on the stack; from i on. */
static int range_from(lua_State *L, lua_Integer i) {
  lua_Integer n = lua_tointeger(L, 5);
  for (; i < n; i += 2) {
    lua_pushvalue(L, 2);
    lua_rawgeti(L, 4, i + 1);
    lua_rawgeti(L, 4, i + 2);
    lua_callk(L, 2, 1, (lua_KContext)i, range_k);
    if (range_stop(L)) break;
  }
  return 0;
}

static int range_k(lua_State *L, int status, lua_KContext i) {
  (void)status;
  if (range_stop(L)) return 0;
  return range_from(L, (lua_Integer)i + 2);
}

/* range(f): f(k, v) over a snapshot taken under the lock (each key once; later changes unseen);
** stops when f returns false. */
static int sm_range(lua_State *L) {
  SyncMap *m = sm_check(L);
  Snap *s;
  size_t j = 0;
  int oom = 0, t;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  s = (Snap *)lua_newuserdatauv(L, sizeof *s, 0);
  s->n = 0;
  s->items = NULL;
  csp_keptmeta(L, &snap_mt, snap_meta);
  lua_setmetatable(L, -2);
  pthread_mutex_lock(&m->mu);
  if (m->n && (s->items = (csp_Blob **)calloc(2 * m->n, sizeof *s->items)) == NULL) oom = 1;
  for (size_t i = 0; !oom && i < m->nb; i++)
    for (Entry *e = m->b[i]; e; e = e->next) {
      s->items[j] = csp_blob_dup(e->key);
      s->items[j + 1] = csp_blob_dup(e->val);
      j += 2;
      s->n = j;
    }
  pthread_mutex_unlock(&m->mu);
  if (oom) return luaL_error(L, "not enough memory");
  sm_race(L, m, 0);
  lua_createtable(L, (int)j, 0);
  t = lua_gettop(L);
  for (size_t i = 0; i < j; i++) {
    csp_Blob *b = s->items[i];
    if (b == NULL) return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    if (csp_blob_decode(L, b) == 1) lua_replace(L, -2);
    lua_rawseti(L, t, (lua_Integer)i + 1);
  }
  snap_free(s);  /* the table holds the values now */
  lua_pushinteger(L, (lua_Integer)j);
  return range_from(L, 0);
}

static int sm_tostring(lua_State *L) {
  SyncMap *m = sm_check(L);
  lua_pushfstring(L, "csp.syncmap: %p", (void *)m);
  return 1;
}

static int sm_new(lua_State *L) {
  SyncMap *m = (SyncMap *)calloc(1, sizeof *m);
  if (m == NULL || (m->b = (Entry **)calloc(8, sizeof *m->b)) == NULL) {
    free(m);
    return luaL_error(L, "not enough memory");
  }
  m->nb = 8;
  pthread_mutex_init(&m->mu, NULL);
  csp_shared_init(&m->h, CSP_X_SYNCMAP, sm_destroy);
  csp_proxy_push(L, &m->h, CSP_OP_ANY);
  csp_shared_unref(&m->h);
  return 1;
}

static const luaL_Reg sm_methods[] = {
  {"load", sm_load},
  {"store", sm_store},
  {"load_or_store", sm_load_or_store},
  {"load_and_delete", sm_load_and_delete},
  {"delete", sm_delete},
  {"swap", sm_swap},
  {"compare_and_swap", sm_cas},
  {"range", sm_range},
  {NULL, NULL}
};

void csp_syncmap_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"syncmap", sm_new}, {NULL, NULL}};
  static const luaL_Reg metas[] = {{"__tostring", sm_tostring}, {NULL, NULL}};
  csp_proxy_meta(L, CSP_X_SYNCMAP, "csp.syncmap", sm_methods, metas);
  csp_setfuncs(L, funcs);
}
