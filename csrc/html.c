/* html.c: csp.html.links' core: gumbo parses the document on libuv's thread pool, a walk in C
** collects the href of every <a> and the first <base href>, url.c resolves them there. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <gumbo.h>
#include "csp.h"

static const GumboVector *children(const GumboNode *n) {
  switch (n->type) {
    case GUMBO_NODE_DOCUMENT: return &n->v.document.children;
    case GUMBO_NODE_ELEMENT:
    case GUMBO_NODE_TEMPLATE: return &n->v.element.children;
    default: return NULL;
  }
}

/* The next node in document order after n, within root's subtree, or NULL. Iterative, with
** parent links: deeply nested garbage must not exhaust the C stack. */
static const GumboNode *next_node(const GumboNode *n, const GumboNode *root) {
  const GumboVector *c = children(n);
  if (c != NULL && c->length > 0) return (const GumboNode *)c->data[0];
  while (n != root && n->parent != NULL) {
    const GumboNode *p = n->parent;
    unsigned int i = (unsigned int)n->index_within_parent + 1;
    c = children(p);
    if (c != NULL && i < c->length) return (const GumboNode *)c->data[i];
    n = p;
  }
  return NULL;
}

static const char *attr(const GumboNode *n, const char *name) {
  const GumboAttribute *a = gumbo_get_attribute(&n->v.element.attributes, name);
  return a != NULL ? a->value : NULL;
}

#define INLINE_MAX (8 * 1024)

/* ---------------------------------------------------------------- a parse's memory */

/* gumbo makes about a hundred small allocations for even a tiny page and frees them one by one
** at the end: a page up to ARENA_MAX bytes parses into an arena instead, freed whole. Larger
** (hostile) pages take each block from malloc, linked into a list, since an arena never reuses
** what gumbo frees while it parses. Either way the tree goes whole, never by
** gumbo_destroy_output: it recurses once per level, and deep nesting overflows the C stack. */
#define ARENA_MAX (256 * 1024)
#define ARENA_CHUNK (16 * 1024)

typedef struct Chunk {
  struct Chunk *next, *prev;  /* prev: blocks only (arena chunks are never freed singly) */
  max_align_t data[];
} Chunk;

typedef struct Arena {
  char *cur, *end;
  Chunk *chunks;
  size_t next;              /* the next chunk's size: doubling keeps their number small */
  int nomem;
} Arena;

static Chunk *chunk_new(Arena *a, size_t size) {
  Chunk *c = malloc(sizeof *c + size);
  if (c == NULL) {
    a->nomem = 1;
    return NULL;  /* gumbo does not check: as with its default malloc */
  }
  c->prev = NULL;
  c->next = a->chunks;
  if (a->chunks != NULL) a->chunks->prev = c;
  a->chunks = c;
  return c;
}

static void *arena_alloc(void *ud, size_t size) {
  Arena *a = (Arena *)ud;
  char *p;
  size = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  if ((size_t)(a->end - a->cur) < size) {
    size_t n = a->next > size ? a->next : size;
    Chunk *c = chunk_new(a, n);
    if (c == NULL) return NULL;
    a->cur = (char *)c->data;
    a->end = a->cur + n;
    if (a->next < 1024 * 1024) a->next *= 2;
  }
  p = a->cur;
  a->cur += size;
  return p;
}

static void arena_free(void *ud, void *p) {
  (void)ud; (void)p;
}

static void *block_alloc(void *ud, size_t size) {
  Chunk *c = chunk_new((Arena *)ud, size);
  return c != NULL ? c->data : NULL;
}

static void block_free(void *ud, void *p) {
  Arena *a = (Arena *)ud;
  Chunk *c;
  if (p == NULL) return;
  c = (Chunk *)(void *)((char *)p - offsetof(Chunk, data));
  if (c->prev != NULL) c->prev->next = c->next;
  else a->chunks = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  free(c);
}

static void arena_release(Arena *a) {
  while (a->chunks != NULL) {
    Chunk *c = a->chunks;
    a->chunks = c->next;
    free(c);
  }
}

/* ---------------------------------------------------------------- requests */

/* One parse: C memory, done whole by a pool thread (gumbo is quadratic on hostile nesting and
** must not stall the scheduler). The body is copied: a cancelled wait may let the Lua string go
** while the worker still reads. Results: the hrefs, NUL-terminated, one after another in out. */
typedef struct HtmlReq {
  uv_work_t work;          /* first member: libuv hands back the HtmlReq */
  csp_Req req;             /* the parked goroutine's; the last of it and the pool frees r */
  int nomem;
  char *body;
  size_t len;
  char *base_url;          /* the document's URL (absolute) */
  char *out;               /* the hrefs */
  size_t outlen, outcap, n;
} HtmlReq;

static void hreq_free(HtmlReq *r) {
  free(r->body);
  free(r->base_url);
  free(r->out);
  free(r);
}

static void hreq_release(csp_Req *q) {
  hreq_free((HtmlReq *)((char *)q - offsetof(HtmlReq, req)));
}

static void hreq_add(HtmlReq *r, const char *s) {
  size_t n = strlen(s) + 1;
  if (r->nomem) return;
  if (r->outlen + n > r->outcap) {
    size_t ncap = r->outcap ? r->outcap : 4096;
    char *p;
    while (ncap < r->outlen + n) ncap *= 2;
    if ((p = realloc(r->out, ncap)) == NULL) {
      r->nomem = 1;
      return;
    }
    r->out = p;
    r->outcap = ncap;
  }
  memcpy(r->out + r->outlen, s, n);
  r->outlen += n;
}

/* Worker side: no Lua here. The hrefs are resolved once the walk is over: the first <base
** href> in tree order applies to every link, even those before it (HTML's rule). */
static void hreq_work(uv_work_t *w) {
  HtmlReq *r = (HtmlReq *)w;
  GumboOptions options = kGumboDefaultOptions;
  GumboOutput *out;
  const GumboNode *n, *root;
  const char *base = NULL, **hrefs = NULL;
  size_t nh = 0, caph = 0;
  csp_UrlBase *b;
  Arena arena = {NULL, NULL, NULL, ARENA_CHUNK, 0};
  options.max_errors = 0; /* parse errors are not wanted: keep garbage input from piling them up */
  options.allocator = r->len <= ARENA_MAX ? arena_alloc : block_alloc;
  options.deallocator = r->len <= ARENA_MAX ? arena_free : block_free;
  options.userdata = &arena;
  out = gumbo_parse_with_options(&options, r->body, r->len);
  if (out == NULL || arena.nomem) {
    arena_release(&arena);
    r->nomem = 1;
    return;
  }
  root = out->document;
  for (n = root; n != NULL && !r->nomem; n = next_node(n, root)) {
    const char *href;
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) continue;
    if (n->v.element.tag == GUMBO_TAG_A) {
      if ((href = attr(n, "href")) != NULL) {
        if (nh == caph) {
          const char **nw = realloc(hrefs, (caph = caph ? caph * 2 : 64) * sizeof *nw);
          if (nw == NULL) {
            r->nomem = 1;
            break;
          }
          hrefs = nw;
        }
        hrefs[nh++] = href;
      }
    } else if (n->v.element.tag == GUMBO_TAG_BASE && base == NULL) {
      base = attr(n, "href");
    }
  }
  if (!r->nomem && (b = csp_url_base_new(r->base_url, base)) != NULL) {
    for (size_t i = 0; i < nh; i++) {
      char *u = csp_url_link(b, hrefs[i]);
      if (u == NULL) continue;
      hreq_add(r, u);
      r->n++;
      free(u);
    }
    csp_url_base_free(b);
  } else {
    r->nomem = 1;
  }
  free(hrefs);
  arena_release(&arena);
  free(r->body);
  r->body = NULL;
}

static void hreq_done(uv_work_t *w, int status) {
  (void)status;
  csp_req_done(&((HtmlReq *)w)->req, 0);  /* frees r if nobody waits for it any more */
}

/* Pushes { links }; frees r. */
static int hreq_push(lua_State *L, HtmlReq *r) {
  const char *p = r->out;
  if (r->nomem) {
    hreq_free(r);
    return luaL_error(L, "not enough memory");
  }
  lua_createtable(L, (int)(r->n < 1000000 ? r->n : 1000000), 0);
  for (size_t i = 1; i <= r->n; i++) {
    size_t l = strlen(p);
    lua_pushlstring(L, p, l);
    lua_rawseti(L, -2, (lua_Integer)i);
    p += l + 1;
  }
  hreq_free(r);
  return 1;
}

static int hrefs_k(lua_State *L, int status, lua_KContext ctx) {
  HtmlReq *r = (HtmlReq *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, r->req.g);
  csp_req_end(&r->req);  /* always done: nothing else wakes a parse */
  return hreq_push(L, r);
}

/* _hrefs(body, base_url [, max_bytes]) -> { absolute http(s) URL of each <a href>, in document
** order }, resolved on liburiparser against base_url and the first <base href> (HTML's "frozen
** base URL" rule: first in tree order). Only the first max_bytes bytes are parsed. The
** parse runs on libuv's thread pool while the caller parks; where the caller cannot block
** (a plain coroutine, a finalizer), it runs right here. */
static int html_hrefs(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  size_t len;
  const char *body;
  const char *base_url;
  lua_Integer max = luaL_optinteger(L, 3, LUA_MAXINTEGER);
  HtmlReq *r;
  csp_G *g = S->cur;
  int can_park;
  luaL_checktype(L, 1, LUA_TSTRING);
  body = lua_tolstring(L, 1, &len);
  base_url = luaL_checkstring(L, 2);
  if (max < 0) max = 0;
  if ((lua_Unsigned)max < len) len = (size_t)max;
  r = calloc(1, sizeof *r);
  if (r == NULL || (r->body = malloc(len ? len : 1)) == NULL || (r->base_url = strdup(base_url)) == NULL) {
    if (r) free(r->body);
    free(r);
    return luaL_error(L, "not enough memory");
  }
  memcpy(r->body, body, len);
  r->len = len;
  can_park = g != NULL ? (g->L == L && lua_isyieldable(L)) : S->depth == 0;
  /* A small page parses here: the trip through the pool would cost more than the parse, and
  ** gumbo's worst case on 8 KiB (1,600 nested elements) is a few milliseconds. */
  if (!can_park || len <= INLINE_MAX) {
    hreq_work(&r->work);
    return hreq_push(L, r);
  }
  g = csp_sched_self(L, S);
  r->req.free_fn = hreq_release;
  if (uv_queue_work(S->loop, &r->work, hreq_work, hreq_done) != 0) {
    hreq_work(&r->work);
    return hreq_push(L, r);
  }
  return csp_req_park(L, &r->req, g, "syscall", (lua_KContext)r, hrefs_k);
}

void csp_html_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"_hrefs", html_hrefs}, {NULL, NULL}};
  lua_createtable(L, 0, 2);         /* [module, sched, html] */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);       /* upvalue 1: the scheduler */
  lua_setfield(L, -3, "html");
}
