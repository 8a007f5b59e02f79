/* copy.c: values crossing threads (encoded to C memory, decoded in another state) and the
** refcounted shared objects with their one-proxy-per-state userdata. */
#include <stdlib.h>
#include <string.h>
#include "xshared.h"

static const char proxy_tag = 0;
static const char cache_key = 0;       /* registry: weak-valued table, shared address -> proxy */
static const char mt_keys[8] = {0};    /* registry keys of the proxy metatables, by type */
static atomic_long shared_alive;

#define MAXDEPTH 200

typedef struct Proxy {
  const void *tag;
  csp_Shared *s;
  int type, op;   /* s's type, kept here: checking it touches no memory another thread writes */
} Proxy;

/* ---------------------------------------------------------------- shared objects */

void csp_shared_init(csp_Shared *s, int type, void (*destroy)(csp_Shared *)) {
  atomic_init(&s->refs, 1);
  s->type = type;
  s->destroy = destroy;
  atomic_fetch_add(&shared_alive, 1);
}

void csp_shared_ref(csp_Shared *s) {
  atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void csp_shared_unref(csp_Shared *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
    atomic_fetch_sub(&shared_alive, 1);
    s->destroy(s);
  }
}

long csp_shared_alive(void) {
  return atomic_load(&shared_alive);
}

static int proxy_gc(lua_State *L) {
  Proxy *p = (Proxy *)csp_testtag(L, 1, &proxy_tag, sizeof(Proxy));
  if (p && p->s) {
    csp_Shared *s = p->s;
    p->s = NULL;
    csp_shared_unref(s);
  }
  return 0;
}

void csp_proxy_push(lua_State *L, csp_Shared *s, int op) {
  Proxy *p;
  int cached = op == CSP_OP_ANY;
  if (cached) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key);
    if (lua_rawgetp(L, -1, s) == LUA_TUSERDATA) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 1);
  }
  p = (Proxy *)lua_newuserdatauv(L, sizeof *p, 0);
  p->tag = &proxy_tag;
  p->s = NULL;
  p->type = s->type;
  p->op = op;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mt_keys[s->type]);
  lua_setmetatable(L, -2);
  csp_shared_ref(s);
  p->s = s;
  if (cached) {
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, s);
    lua_remove(L, -2);
  }
}

csp_Shared *csp_proxy_test(lua_State *L, int idx, int type, int *op) {
  Proxy *p = (Proxy *)csp_testtag(L, idx, &proxy_tag, sizeof(Proxy));
  if (p == NULL || p->s == NULL || (type && p->type != type)) return NULL;
  if (op) *op = p->op;
  return p->s;
}

csp_Shared *csp_proxy_check(lua_State *L, int idx, int type, const char *tname) {
  csp_Shared *s = csp_proxy_test(L, idx, type, NULL);
  if (s == NULL) csp_tagerror(L, idx, tname);
  return s;
}

void csp_proxy_meta(lua_State *L, int type, const char *name, const luaL_Reg *methods,
                    const luaL_Reg *metas) {
  luaL_Reg all[8] = {{"__gc", proxy_gc}};  /* every proxy type's, then the type's own */
  int n = 1;
  for (; metas && metas[n - 1].name && n < 7; n++) all[n] = metas[n - 1];
  all[n].name = NULL;
  csp_newmeta(L, name, methods, all);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mt_keys[type]);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_key) != LUA_TTABLE) {
    lua_newtable(L);
    csp_setweak(L, -1, "v");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_key);
  }
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- encoding */

enum { T_NIL = 'n', T_FALSE = 'f', T_TRUE = 't', T_INT = 'i', T_FLT = 'd', T_STR = 's',
       T_TABLE = 'T', T_END = 'e', T_REF = 'R', T_SHARED = 'S' };

typedef struct Enc {
  lua_State *L;
  unsigned char *p;
  size_t n, cap;
  int box, seen;     /* stack slots: the growable buffer (a userdata), the table -> id map */
  int nextid, nshared, key;
  unsigned char local[128];
} Enc;

static void enc_grow(Enc *e, size_t need) {
  size_t ncap = e->cap * 2;
  unsigned char *np;
  while (ncap < e->n + need) ncap *= 2;
  np = (unsigned char *)lua_newuserdatauv(e->L, ncap, 0);
  memcpy(np, e->p, e->n);
  lua_replace(e->L, e->box);  /* the old box goes to the collector */
  e->p = np;
  e->cap = ncap;
}

static void enc_put(Enc *e, const void *src, size_t len) {
  if (e->n + len > e->cap) enc_grow(e, len);
  memcpy(e->p + e->n, src, len);
  e->n += len;
}

static void enc_byte(Enc *e, unsigned char c) {
  if (e->n + 1 > e->cap) enc_grow(e, 1);
  e->p[e->n++] = c;
}

static void enc_varint(Enc *e, uint64_t v) {
  unsigned char b[10];
  size_t k = 0;
  do {
    b[k++] = (unsigned char)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
    v >>= 7;
  } while (v);
  enc_put(e, b, k);
}

static int enc_fail(Enc *e, int idx, const char *what) {
  lua_State *L = e->L;
  const char *tn = lua_type(L, idx) == LUA_TTHREAD ? "coroutine" : luaL_typename(L, idx);
  if (lua_type(L, idx) == LUA_TUSERDATA && luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
    tn = lua_tostring(L, -1);
  if (e->key) return luaL_error(L, "%s: cannot use a %s as a key", what, tn);
  return luaL_error(L, "%s: cannot send a %s to another thread", what, tn);
}

static void enc_value(Enc *e, int idx, int depth);

static void enc_table(Enc *e, int idx, int depth) {
  lua_State *L = e->L;
  lua_Integer narr, i;
  if (depth > MAXDEPTH) luaL_error(L, "xchan: table nested too deeply to send to another thread");
  if (lua_getmetatable(L, idx)) luaL_error(L, "xchan: cannot send a table with a metatable to another thread");
  if (lua_isnil(L, e->seen)) {
    lua_newtable(L);
    lua_replace(L, e->seen);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, e->seen) == LUA_TNUMBER) {  /* seen: a cycle or a shared subtable */
    enc_byte(e, T_REF);
    enc_varint(e, (uint64_t)lua_tointeger(L, -1));
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, idx);
  lua_pushinteger(L, e->nextid++);
  lua_rawset(L, e->seen);
  luaL_checkstack(L, 4, "xchan: table too deep");
  narr = (lua_Integer)lua_rawlen(L, idx);
  enc_byte(e, T_TABLE);
  enc_varint(e, (uint64_t)narr);
  for (i = 1; i <= narr; i++) {
    lua_rawgeti(L, idx, i);
    enc_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_isinteger(L, -2)) {
      lua_Integer k = lua_tointeger(L, -2);
      if (k >= 1 && k <= narr) { lua_pop(L, 1); continue; }
    }
    enc_value(e, lua_gettop(L) - 1, depth + 1);
    enc_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  enc_byte(e, T_END);
}

static void enc_value(Enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: enc_byte(e, T_NIL); break;
    case LUA_TBOOLEAN: enc_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE); break;
    case LUA_TNUMBER: {
      lua_Integer iv = lua_tointeger(L, idx);  /* 0 for a float that is not integral */
      lua_Number d = lua_tonumber(L, idx);
      if (e->key && d != d) luaL_error(L, "syncmap: key is NaN");  /* as a Lua table's */
      /* A key 1.0 is the key 1, as in a Lua table; 2.5 stays a float key of its own. */
      if (lua_isinteger(L, idx) || (e->key && lua_numbertointeger(d, &iv) && (lua_Number)iv == d)) {
        enc_byte(e, T_INT);
        enc_put(e, &iv, sizeof iv);
      } else {
        enc_byte(e, T_FLT);
        enc_put(e, &d, sizeof d);
      }
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      enc_byte(e, T_STR);
      enc_varint(e, len);
      enc_put(e, s, len);
      break;
    }
    case LUA_TTABLE:
      if (e->key) enc_fail(e, idx, "syncmap");
      enc_table(e, idx, depth);
      break;
    case LUA_TUSERDATA: {
      int op = CSP_OP_ANY;
      csp_Shared *s = csp_proxy_test(L, idx, 0, &op);
      unsigned char o = (unsigned char)op;
      if (s == NULL) enc_fail(e, idx, e->key ? "syncmap" : "xchan");
      enc_byte(e, T_SHARED);
      enc_byte(e, o);
      while (e->n % sizeof s) enc_byte(e, 0);  /* zero padding: blobs compare bytewise */
      enc_put(e, &s, sizeof s);
      e->nshared++;
      break;
    }
    default:
      enc_fail(e, idx, e->key ? "syncmap" : "xchan");
  }
}

static uint64_t dec_varint(const unsigned char **pp) {
  const unsigned char *p = *pp;
  uint64_t v = 0;
  int shift = 0;
  for (;;) {
    unsigned char c = *p++;
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
    shift += 7;
  }
  *pp = p;
  return v;
}

/* A shared object's op and pointer (p just after T_SHARED: the op byte, zero padding, the
** pointer). The encoder pads by offset and a blob's data is aligned, so address works here. */
static const unsigned char *dec_shared(const unsigned char *p, csp_Shared **s, int *op) {
  uintptr_t a = (uintptr_t)(p + 1);
  *op = *p;
  a = (a + sizeof *s - 1) & ~(uintptr_t)(sizeof *s - 1);
  memcpy(s, (const void *)a, sizeof *s);
  return (const unsigned char *)a + sizeof *s;
}

/* Walks one value, calling f on each shared object in it; returns the byte after it. */
static const unsigned char *walk(const unsigned char *p, void (*f)(csp_Shared *)) {
  switch (*p++) {
    case T_INT: case T_FLT: return p + 8;
    case T_STR: { uint64_t len = dec_varint(&p); return p + len; }
    case T_REF: dec_varint(&p); return p;
    case T_SHARED: {
      csp_Shared *s;
      int op;
      p = dec_shared(p, &s, &op);
      f(s);
      return p;
    }
    case T_TABLE: {
      uint64_t narr = dec_varint(&p);
      for (uint64_t i = 0; i < narr; i++) p = walk(p, f);
      while (*p != T_END) p = walk(walk(p, f), f);
      return p + 1;
    }
    default: return p;
  }
}

static void walk_all(const csp_Blob *b, void (*f)(csp_Shared *)) {
  const unsigned char *p = b->data;
  uint64_t n = dec_varint(&p);
  for (uint64_t i = 0; i < n; i++) p = walk(p, f);
}

static csp_Blob *enc_run(lua_State *L, int first, int n, int key) {
  Enc e;
  csp_Blob *b;
  first = lua_absindex(L, first);
  e.L = L;
  e.p = e.local;
  e.n = 0;
  e.cap = sizeof e.local;
  e.nextid = 1;
  e.nshared = 0;
  e.key = key;
  luaL_checkstack(L, 8, NULL);
  lua_pushnil(L);
  e.box = lua_gettop(L);
  lua_pushnil(L);
  e.seen = lua_gettop(L);
  enc_varint(&e, (uint64_t)n);
  for (int i = 0; i < n; i++) enc_value(&e, first + i, 0);
  b = (csp_Blob *)malloc(sizeof *b + e.n);
  if (b == NULL) luaL_error(L, "not enough memory");
  b->len = e.n;
  b->nshared = e.nshared;
  memcpy(b->data, e.p, e.n);
  lua_pop(L, 2);
  if (b->nshared) walk_all(b, csp_shared_ref);  /* refs only once nothing can raise */
  return b;
}

csp_Blob *csp_blob_encode(lua_State *L, int first, int n) {
  return enc_run(L, first, n, 0);
}

csp_Blob *csp_blob_key(lua_State *L, int idx) {
  return enc_run(L, idx, 1, 1);
}

void csp_blob_free(csp_Blob *b) {
  if (b == NULL) return;
  if (b->nshared) walk_all(b, csp_shared_unref);
  free(b);
}

int csp_blob_equal(const csp_Blob *a, const csp_Blob *b) {
  return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* Two encoded numbers (their tags at p, q) compared as Lua's == does: an integer equals a float
** only if the float is that integer exactly; NaN equals nothing; 0.0 equals -0.0. */
static int num_equal(const unsigned char *p, const unsigned char *q) {
  lua_Integer i, j;
  lua_Number x, y;
  if (*p == T_FLT && *q == T_FLT) {
    memcpy(&x, p + 1, 8); memcpy(&y, q + 1, 8);
    return x == y;
  }
  if (*p == T_FLT) { const unsigned char *t = p; p = q; q = t; }  /* p the integer */
  memcpy(&i, p + 1, 8);
  if (*q == T_INT) { memcpy(&j, q + 1, 8); return i == j; }
  memcpy(&y, q + 1, 8);
  return lua_numbertointeger(y, &j) && (lua_Number)j == y && i == j;
}

int csp_blob_same(const csp_Blob *a, const csp_Blob *b) {
  const unsigned char *p = a->data, *q = b->data;
  dec_varint(&p);
  dec_varint(&q);
  if ((*p == T_INT || *p == T_FLT) && (*q == T_INT || *q == T_FLT)) return num_equal(p, q);
  return csp_blob_equal(a, b);
}

int csp_blob_kind(const csp_Blob *b) {
  const unsigned char *p = b->data;
  dec_varint(&p);
  if (*p == T_TRUE) return T_FALSE;  /* one kind: boolean */
  if (*p == T_FLT) return T_INT;     /* one kind: number */
  if (*p == T_SHARED) {
    csp_Shared *s;
    int op;
    dec_shared(p + 1, &s, &op);
    return 256 + s->type;
  }
  return *p;
}

int csp_blob_hastable(const csp_Blob *b) {
  const unsigned char *p = b->data;
  dec_varint(&p);
  return *p == T_TABLE;
}

/* ---------------------------------------------------------------- decoding */

typedef struct Dec {
  lua_State *L;
  int ids, nextid;
} Dec;

static const unsigned char *dec_value(Dec *d, const unsigned char *p) {
  lua_State *L = d->L;
  luaL_checkstack(L, 4, "xchan: value too deep");
  switch (*p++) {
    case T_NIL: lua_pushnil(L); return p;
    case T_FALSE: lua_pushboolean(L, 0); return p;
    case T_TRUE: lua_pushboolean(L, 1); return p;
    case T_INT: { lua_Integer v; memcpy(&v, p, 8); lua_pushinteger(L, v); return p + 8; }
    case T_FLT: { lua_Number v; memcpy(&v, p, 8); lua_pushnumber(L, v); return p + 8; }
    case T_STR: {
      uint64_t len = dec_varint(&p);
      lua_pushlstring(L, (const char *)p, (size_t)len);
      return p + len;
    }
    case T_REF:
      lua_rawgeti(L, d->ids, (lua_Integer)dec_varint(&p));
      return p;
    case T_SHARED: {
      csp_Shared *s;
      int op;
      p = dec_shared(p, &s, &op);
      csp_proxy_push(L, s, op);
      return p;
    }
    case T_TABLE: {
      uint64_t narr = dec_varint(&p);
      int t;
      lua_createtable(L, narr > 1u << 26 ? 0 : (int)narr, 0);
      t = lua_gettop(L);
      if (lua_isnil(L, d->ids)) {
        lua_newtable(L);
        lua_replace(L, d->ids);
      }
      lua_pushvalue(L, t);
      lua_rawseti(L, d->ids, d->nextid++);
      for (uint64_t i = 1; i <= narr; i++) {
        p = dec_value(d, p);
        lua_rawseti(L, t, (lua_Integer)i);
      }
      while (*p != T_END) {
        p = dec_value(d, p);
        p = dec_value(d, p);
        if (lua_isnil(L, -2)) lua_pop(L, 2);  /* cannot happen from an encoder: keep it safe */
        else lua_rawset(L, t);
      }
      return p + 1;
    }
    default:
      lua_pushnil(L);
      return p;
  }
}

int csp_blob_decode(lua_State *L, const csp_Blob *b) {
  Dec d;
  const unsigned char *p = b->data;
  uint64_t n = dec_varint(&p);
  int base;
  if (n > INT32_MAX / 2 || !lua_checkstack(L, (int)n + 8)) luaL_error(L, "xchan: too many values");
  d.L = L;
  d.nextid = 1;
  lua_pushnil(L);
  d.ids = lua_gettop(L);
  base = d.ids;
  for (uint64_t i = 0; i < n; i++) p = dec_value(&d, p);
  lua_remove(L, base);
  return (int)n;
}

/* ---------------------------------------------------------------- messages */

void csp_msg_encode(lua_State *L, int idx, csp_Msg *m) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: m->tag = CSP_M_NIL; return;
    case LUA_TBOOLEAN: m->tag = lua_toboolean(L, idx) ? CSP_M_TRUE : CSP_M_FALSE; return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        memcpy(m->data, &v, sizeof v);
        m->tag = CSP_M_INT;
      } else {
        lua_Number v = lua_tonumber(L, idx);
        memcpy(m->data, &v, sizeof v);
        m->tag = CSP_M_FLT;
      }
      return;
    case LUA_TSTRING: {
      size_t len;
      const char *p = lua_tolstring(L, idx, &len);
      if (len <= CSP_MSG_INLINE) {
        memcpy(m->data, p, len);
        m->len = (unsigned char)len;
        m->tag = CSP_M_STR;
        return;
      }
      break;
    }
    default: break;
  }
  {
    csp_Blob *b = csp_blob_encode(L, idx, 1);
    memcpy(m->data, &b, sizeof b);
    m->tag = CSP_M_BLOB;
  }
}

static csp_Blob *msg_blob(const csp_Msg *m) {
  csp_Blob *b;
  memcpy(&b, m->data, sizeof b);
  return b;
}

void csp_msg_push(lua_State *L, csp_Msg *m) {
  switch (m->tag) {
    case CSP_M_FALSE: lua_pushboolean(L, 0); break;
    case CSP_M_TRUE: lua_pushboolean(L, 1); break;
    case CSP_M_INT: { lua_Integer v; memcpy(&v, m->data, sizeof v); lua_pushinteger(L, v); break; }
    case CSP_M_FLT: { lua_Number v; memcpy(&v, m->data, sizeof v); lua_pushnumber(L, v); break; }
    case CSP_M_STR: lua_pushlstring(L, (const char *)m->data, m->len); break;
    case CSP_M_BLOB: {
      csp_Blob *b = msg_blob(m);
      int n;
      m->tag = CSP_M_EMPTY;
      lua_pushnil(L);  /* a slot for the value: a one-value blob pushes one */
      n = csp_blob_decode(L, b);
      csp_blob_free(b);
      if (n == 1) lua_replace(L, -2);
      else lua_pop(L, n);
      return;
    }
    default: lua_pushnil(L); break;
  }
  m->tag = CSP_M_EMPTY;
}

void csp_msg_free(csp_Msg *m) {
  if (m->tag == CSP_M_BLOB) csp_blob_free(msg_blob(m));
  m->tag = CSP_M_EMPTY;
}

/* A copy with its own refs (C only: callable under a lock). */
csp_Blob *csp_blob_dup(const csp_Blob *b) {
  csp_Blob *c = (csp_Blob *)malloc(sizeof *c + b->len);
  if (c == NULL) return NULL;
  memcpy(c, b, sizeof *c + b->len);
  if (c->nshared) walk_all(c, csp_shared_ref);
  return c;
}
