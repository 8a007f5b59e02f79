/* html.c: the raw material of csp.html.links: gumbo parses the document, a walk in C collects
** the href of every <a> and the first <base href>; lua/csp/html.lua resolves them. */
#include <string.h>
#include <gumbo.h>
#include "csp.h"

static const char box_name[] = "csp.html.output";

/* The parse tree lives in a userdata until freed, so a Lua memory error while pushing the
** results leaves it to __gc instead of leaking it. */
typedef struct {
  GumboOptions options;
  GumboOutput *out;
} Box;

static void box_free(Box *b) {
  if (b->out != NULL) {
    gumbo_destroy_output(&b->options, b->out);
    b->out = NULL;
  }
}

static int box_gc(lua_State *L) {
  box_free((Box *)luaL_checkudata(L, 1, box_name));
  return 0;
}

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

/* _hrefs(body) -> { href of each <a href>, in document order }, href of the first <base href>
** (HTML's "frozen base URL" rule: first in tree order) or nil. The values are as written,
** with character references decoded. */
static int html_hrefs(lua_State *L) {
  size_t len;
  const char *body;
  Box *b;
  const GumboNode *n, *root;
  const char *base = NULL;
  lua_Integer k = 0;
  luaL_checktype(L, 1, LUA_TSTRING);
  body = lua_tolstring(L, 1, &len);
  b = (Box *)lua_newuserdatauv(L, sizeof *b, 0);
  b->out = NULL;
  b->options = kGumboDefaultOptions;
  b->options.max_errors = 0; /* parse errors are not wanted: keep garbage input from piling them up */
  luaL_setmetatable(L, box_name);
  lua_newtable(L);
  b->out = gumbo_parse_with_options(&b->options, body, len);
  root = b->out->document;
  for (n = root; n != NULL; n = next_node(n, root)) {
    const char *href;
    if (n->type != GUMBO_NODE_ELEMENT && n->type != GUMBO_NODE_TEMPLATE) continue;
    if (n->v.element.tag == GUMBO_TAG_A) {
      if ((href = attr(n, "href")) != NULL) {
        lua_pushstring(L, href);
        lua_rawseti(L, -2, ++k);
      }
    } else if (n->v.element.tag == GUMBO_TAG_BASE && base == NULL) {
      base = attr(n, "href");
    }
  }
  if (base != NULL) lua_pushstring(L, base);
  else lua_pushnil(L);
  box_free(b);
  return 2;
}

void csp_html_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"_hrefs", html_hrefs}, {NULL, NULL}};
  if (luaL_newmetatable(L, box_name)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);         /* [module, sched, html] */
  luaL_setfuncs(L, funcs, 0);
  lua_setfield(L, -3, "html");
}
