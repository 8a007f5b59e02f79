/* url.c: csp.url.parse, resolve and format (RFC 3986) on liburiparser. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uriparser/Uri.h>
#include "csp.h"

/* The components of a reference, as Appendix B's expression splits it (every string matches):
** absent ones have len < 0. uriparser has already said the string is a URI reference. */
typedef struct Part { const char *p; long len; } Part;
typedef struct Split { Part scheme, auth, path, query, frag; } Split;

static void url_split(const char *s, size_t n, Split *o) {
  const char *e = s + n, *p = s, *q;
  memset(o, 0, sizeof *o);
  o->scheme.len = o->auth.len = o->query.len = o->frag.len = -1;
  for (q = s; q < e && *q != ':' && *q != '/' && *q != '?' && *q != '#'; q++) {}
  if (q < e && *q == ':' && q > s) {
    o->scheme.p = s;
    o->scheme.len = q - s;
    p = q + 1;
  }
  if (e - p >= 2 && p[0] == '/' && p[1] == '/') {
    for (q = p + 2; q < e && *q != '/' && *q != '?' && *q != '#'; q++) {}
    o->auth.p = p + 2;
    o->auth.len = q - p - 2;
    p = q;
  }
  for (q = p; q < e && *q != '?' && *q != '#'; q++) {}
  o->path.p = p;
  o->path.len = q - p;
  p = q;
  if (p < e && *p == '?') {
    for (q = p + 1; q < e && *q != '#'; q++) {}
    o->query.p = p + 1;
    o->query.len = q - p - 1;
    p = q;
  }
  if (p < e && *p == '#') {
    o->frag.p = p + 1;
    o->frag.len = e - p - 1;
  }
}

/* Errors name the function even when it is called through pcall (no call-site name then). */
static const char *check_str(lua_State *L, int arg, const char *fname, size_t *n) {
  if (lua_type(L, arg) != LUA_TSTRING)
    luaL_error(L, "bad argument #%d to '%s' (string expected, got %s)", arg, fname, luaL_typename(L, arg));
  return lua_tolstring(L, arg, n);
}

static void push_lower(lua_State *L, const char *p, size_t n) {
  luaL_Buffer b;
  char *d = luaL_buffinitsize(L, &b, n);
  for (size_t i = 0; i < n; i++) d[i] = (char)tolower((unsigned char)p[i]);
  luaL_pushresultsize(&b, n);
}

static void set_part(lua_State *L, const char *k, Part v) {
  if (v.len < 0) return;
  lua_pushlstring(L, v.p, (size_t)v.len);
  lua_setfield(L, -2, k);
}

/* Parses s strictly; on failure pushes nil, 'parse "s": ...', "EINVAL" and returns 0. */
static int url_parse_into(lua_State *L, const char *s, size_t n, UriUriA *u) {
  const char *err = NULL;
  if (memchr(s, '\0', n) != NULL || uriParseSingleUriExA(u, s, s + n, &err) != URI_SUCCESS) {
    long at = err ? (long)(err - s) : (long)(strlen(s));
    if (memchr(s, '\0', n) != NULL) at = (long)strlen(s);
    csp_fail(L, "EINVAL", "parse \"%s\": invalid character at offset %d", s, (int)at);
    return 0;
  }
  return 1;
}

/* u's port: -1 if it has none, -2 if its digits are no port (over 65535 or 5 digits). */
static long url_port(const UriUriA *u) {
  const char *p = u->portText.first;
  size_t pl;
  long v = 0;
  if (p == NULL || u->portText.afterLast <= p) return -1;
  pl = (size_t)(u->portText.afterLast - p);
  for (size_t i = 0; i < pl && v <= 65535; i++) v = v * 10 + (p[i] - '0');
  return pl > 5 || v > 65535 ? -2 : v;
}

/* parse(s) -> {scheme=, userinfo=, host=, port=, path=, query=, fragment=} or nil, err, "EINVAL" */
static int url_parse(lua_State *L) {
  size_t n;
  const char *s = check_str(L, 1, "parse", &n);
  UriUriA u;
  Split sp;
  if (!url_parse_into(L, s, n, &u)) return 3;
  url_split(s, n, &sp);
  lua_createtable(L, 0, 7);
  if (sp.scheme.len >= 0) {
    push_lower(L, sp.scheme.p, (size_t)sp.scheme.len);
    lua_setfield(L, -2, "scheme");
  }
  if (sp.auth.len >= 0) {
    const char *h = u.hostText.first, *he = u.hostText.afterLast;
    if (u.userInfo.first != NULL) {
      lua_pushlstring(L, u.userInfo.first, (size_t)(u.userInfo.afterLast - u.userInfo.first));
      lua_setfield(L, -2, "userinfo");
    }
    if (h == NULL) h = he = sp.auth.p;
    if (u.hostData.ip6 != NULL || u.hostData.ipFuture.first != NULL) {  /* keep the brackets */
      h--;
      he++;
    }
    push_lower(L, h, (size_t)(he - h));
    lua_setfield(L, -2, "host");
    long v = url_port(&u);
    if (v == -2) {
      size_t pl = (size_t)(u.portText.afterLast - u.portText.first);
      char port[16];
      memcpy(port, u.portText.first, pl > 15 ? 15 : pl);
      port[pl > 15 ? 15 : pl] = '\0';
      uriFreeUriMembersA(&u);
      lua_pop(L, 1);
      return csp_fail(L, "EINVAL", "parse \"%s\": invalid port \":%s\" after host", s, port);
    }
    if (v >= 0) {
      lua_pushinteger(L, v);
      lua_setfield(L, -2, "port");
    }
  }
  set_part(L, "path", sp.path);
  set_part(L, "query", sp.query);
  set_part(L, "fragment", sp.frag);
  uriFreeUriMembersA(&u);
  return 1;
}

/* _absolute(s) -> whether parse(s) gives a URL with a scheme, without parse's table (html.links
** checks its base URL with it on every page). */
static int url_absolute(lua_State *L) {
  size_t n;
  const char *s = check_str(L, 1, "_absolute", &n), *err;
  UriUriA u;
  Split sp;
  int ok = 0;
  if (memchr(s, '\0', n) == NULL && uriParseSingleUriExA(&u, s, s + n, &err) == URI_SUCCESS) {
    url_split(s, n, &sp);
    ok = sp.scheme.len >= 0 && (sp.auth.len < 0 || url_port(&u) != -2);
    uriFreeUriMembersA(&u);
  }
  lua_pushboolean(L, ok);
  return 1;
}

/* resolve(base, ref) -> the target URI (section 5.2, strict), or nil, err, "EINVAL". */
static int url_resolve(lua_State *L) {
  size_t bn, rn;
  const char *base = check_str(L, 1, "resolve", &bn), *ref = check_str(L, 2, "resolve", &rn);
  UriUriA b, r, t;
  int len = 0, ok;
  char *out;
  if (!url_parse_into(L, base, bn, &b)) return 3;
  if (b.scheme.first == NULL) {
    uriFreeUriMembersA(&b);
    return csp_fail(L, "EINVAL", "resolve \"%s\": base URL is not absolute", base);
  }
  if (!url_parse_into(L, ref, rn, &r)) {
    uriFreeUriMembersA(&b);
    return 3;
  }
  ok = uriAddBaseUriExA(&t, &r, &b, URI_RESOLVE_STRICTLY) == URI_SUCCESS;
  uriFreeUriMembersA(&b);
  uriFreeUriMembersA(&r);
  if (!ok) return luaL_error(L, "not enough memory");
  if (uriToStringCharsRequiredA(&t, &len) != URI_SUCCESS || (out = malloc((size_t)len + 1)) == NULL) {
    uriFreeUriMembersA(&t);
    return luaL_error(L, "not enough memory");
  }
  ok = uriToStringA(out, &t, len + 1, NULL) == URI_SUCCESS;
  uriFreeUriMembersA(&t);
  if (ok) lua_pushstring(L, out);
  free(out);
  if (!ok) return luaL_error(L, "not enough memory");
  return 1;
}

static const char *opt_field(lua_State *L, const char *k, size_t *n) {
  const char *v = NULL;
  int t = lua_getfield(L, 1, k);
  if (t == LUA_TSTRING) v = lua_tolstring(L, -1, n);
  else if (t != LUA_TNIL)
    luaL_error(L, "bad argument #1 to 'format' (field '%s': string expected, got %s)", k, luaL_typename(L, -1));
  lua_pop(L, 1);  /* anchored by the table */
  return v;
}

/* format(t) -> the URI reference of components t (section 5.3). */
static int url_format(lua_State *L) {
  size_t sl = 0, ul = 0, hl = 0, pl = 0, ql = 0, fl = 0;
  const char *scheme, *user, *host, *path, *query, *frag;
  lua_Integer port = 0;
  int has_port;
  luaL_Buffer b;
  if (!lua_istable(L, 1))
    luaL_error(L, "bad argument #1 to 'format' (table expected, got %s)", luaL_typename(L, 1));
  scheme = opt_field(L, "scheme", &sl);
  user = opt_field(L, "userinfo", &ul);
  host = opt_field(L, "host", &hl);
  path = opt_field(L, "path", &pl);
  query = opt_field(L, "query", &ql);
  frag = opt_field(L, "fragment", &fl);
  has_port = lua_getfield(L, 1, "port") != LUA_TNIL;
  if (has_port) {
    if (!lua_isinteger(L, -1))
      luaL_error(L, "bad argument #1 to 'format' (field 'port': integer expected, got %s)",
                 lua_type(L, -1) == LUA_TNUMBER ? "float" : luaL_typename(L, -1));
    port = lua_tointeger(L, -1);
  }
  lua_pop(L, 1);
  if (path == NULL) path = "";
  if (host == NULL && (user != NULL || has_port))
    luaL_error(L, "bad argument #1 to 'format' (userinfo or port without host)");
  luaL_buffinit(L, &b);
  if (scheme) {
    luaL_addlstring(&b, scheme, sl);
    luaL_addchar(&b, ':');
  }
  if (host) {
    luaL_addstring(&b, "//");
    if (user) {
      luaL_addlstring(&b, user, ul);
      luaL_addchar(&b, '@');
    }
    luaL_addlstring(&b, host, hl);
    if (has_port) {
      lua_pushfstring(L, ":%I", (LUAI_UACINT)port);
      luaL_addvalue(&b);
    }
    if (pl > 0 && path[0] != '/') luaL_addchar(&b, '/');
  } else if (pl >= 2 && path[0] == '/' && path[1] == '/') {
    luaL_addstring(&b, "/.");  /* sections 3.3 and 4.2: "//x" must not read as an authority */
  } else if (!scheme) {
    const char *c = memchr(path, ':', pl), *sl2 = memchr(path, '/', pl);
    if (c != NULL && (sl2 == NULL || c < sl2)) luaL_addstring(&b, "./");  /* nor "a:b" as a scheme */
  }
  luaL_addlstring(&b, path, pl);
  if (query) {
    luaL_addchar(&b, '?');
    luaL_addlstring(&b, query, ql);
  }
  if (frag) {
    luaL_addchar(&b, '#');
    luaL_addlstring(&b, frag, fl);
  }
  luaL_pushresult(&b);
  return 1;
}

/* ---------------------------------------------------------------- links (pool threads: no Lua) */

struct csp_UrlBase {
  UriUriA uri;
  char *text;            /* the string uri points into */
};

/* An attribute URL as browsers read it: surrounding spaces and control characters dropped,
** tabs and newlines inside removed (WHATWG URL parser), the fragment cut off; then the bytes
** RFC 3986 disallows after the scheme and authority percent-encoded, a stray "%" as "%25".
** Returns a malloc'd string, or NULL (empty, a same-document reference, no memory). */
static char *link_clean(const char *h, int keep_empty) {
  size_t n = strlen(h), i = 0, j, k = 0, start;
  const char *p;
  char *t, *out;
  static const char hex[] = "0123456789ABCDEF";
  while (i < n && (unsigned char)h[i] <= 32) i++;
  while (n > i && (unsigned char)h[n - 1] <= 32) n--;
  if ((t = malloc(n - i + 1)) == NULL) return NULL;
  for (j = i; j < n && h[j] != '#'; j++)
    if (h[j] != '\t' && h[j] != '\n' && h[j] != '\r') t[k++] = h[j];
  t[k] = '\0';
  if (k == 0 && (!keep_empty || (j < n && h[j] == '#'))) {
    free(t);
    return NULL;
  }
  /* scheme ":" "//" authority are left as they are: a bad host must fail to parse */
  start = 0;
  for (p = t; *p && *p != ':' && *p != '/' && *p != '?'; p++) {}
  if (*p == ':' && p > t) {
    start = (size_t)(p - t) + 1;
    if (t[start] == '/' && t[start + 1] == '/') {
      start += 2;
      while (t[start] && t[start] != '/' && t[start] != '?') start++;
    }
  } else if (t[0] == '/' && t[1] == '/') {
    start = 2;
    while (t[start] && t[start] != '/' && t[start] != '?') start++;
  }
  if ((out = malloc(start + 3 * (k - start) + 1)) == NULL) {
    free(t);
    return NULL;
  }
  memcpy(out, t, start);
  j = start;
  for (i = start; i < k; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c == '%' && isxdigit((unsigned char)t[i + 1]) && isxdigit((unsigned char)t[i + 2])) {
      out[j++] = '%';
    } else if (c != '%' && (isalnum(c) || strchr("-._~!$&'()*+,;=:@/?", c) != NULL) && c < 128) {
      out[j++] = (char)c;
    } else {
      out[j++] = '%';
      out[j++] = hex[c >> 4];
      out[j++] = hex[c & 15];
    }
  }
  out[j] = '\0';
  free(t);
  return out;
}

static char *uri_string(const UriUriA *u) {
  int len = 0;
  char *out;
  if (uriToStringCharsRequiredA(u, &len) != URI_SUCCESS || (out = malloc((size_t)len + 1)) == NULL)
    return NULL;
  if (uriToStringA(out, u, len + 1, NULL) != URI_SUCCESS) {
    free(out);
    return NULL;
  }
  return out;
}

/* ref against base: the target as a malloc'd string, or NULL when ref is not a URI reference. */
static char *link_resolve(const UriUriA *base, const char *ref) {
  UriUriA r, t;
  const char *err;
  char *out = NULL;
  if (uriParseSingleUriA(&r, ref, &err) != URI_SUCCESS) return NULL;
  if (uriAddBaseUriExA(&t, &r, base, URI_RESOLVE_STRICTLY) == URI_SUCCESS) {
    out = uri_string(&t);
    uriFreeUriMembersA(&t);
  }
  uriFreeUriMembersA(&r);
  return out;
}

csp_UrlBase *csp_url_base_new(const char *url, const char *href) {
  csp_UrlBase *b = calloc(1, sizeof *b);
  const char *err;
  if (b == NULL || (b->text = strdup(url)) == NULL) goto fail;
  if (uriParseSingleUriA(&b->uri, b->text, &err) != URI_SUCCESS) goto fail_text;
  if (href != NULL) {  /* an unusable <base href> leaves the document's URL in force */
    char *c = link_clean(href, 1), *abs = c ? link_resolve(&b->uri, c) : NULL;
    UriUriA nb;
    free(c);
    if (abs != NULL && uriParseSingleUriA(&nb, abs, &err) == URI_SUCCESS) {
      uriFreeUriMembersA(&b->uri);
      free(b->text);
      b->uri = nb;
      b->text = abs;
    } else {
      free(abs);
    }
  }
  return b;
fail_text:
  free(b->text);
fail:
  free(b);
  return NULL;
}

void csp_url_base_free(csp_UrlBase *b) {
  if (b == NULL) return;
  uriFreeUriMembersA(&b->uri);
  free(b->text);
  free(b);
}

/* The absolute http(s) URL of an href, without fragment, scheme and host lowercased; NULL if
** the link is dropped (same-document, another scheme, no host, unparseable). */
char *csp_url_link(const csp_UrlBase *b, const char *href) {
  char *c = link_clean(href, 0), *abs;
  Split sp;
  size_t n;
  if (c == NULL) return NULL;
  abs = link_resolve(&b->uri, c);
  free(c);
  if (abs == NULL) return NULL;
  n = strlen(abs);
  url_split(abs, n, &sp);
  if (!((sp.scheme.len == 4 && strncasecmp(sp.scheme.p, "http", 4) == 0) ||
        (sp.scheme.len == 5 && strncasecmp(sp.scheme.p, "https", 5) == 0)) || sp.auth.len <= 0) {
    free(abs);
    return NULL;
  }
  for (long i = 0; i < sp.scheme.len; i++) abs[i] = (char)tolower((unsigned char)abs[i]);
  {  /* the host: after any userinfo, up to the port */
    char *h = (char *)sp.auth.p, *e = h + sp.auth.len, *at = memchr(h, '@', (size_t)(e - h));
    if (at != NULL) h = at + 1;
    if (h == e) {
      free(abs);
      return NULL;
    }
    if (*h == '[') {
      for (; h < e && *h != ']'; h++) *h = (char)tolower((unsigned char)*h);
    } else {
      for (; h < e && *h != ':'; h++) *h = (char)tolower((unsigned char)*h);
    }
  }
  if (sp.frag.len >= 0) abs[sp.frag.p - 1 - abs] = '\0';
  return abs;
}

/* Stack: [module, sched]. Adds module.url. */
void csp_url_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"parse", url_parse}, {"resolve", url_resolve}, {"format", url_format},
    {"_absolute", url_absolute}, {NULL, NULL}
  };
  lua_createtable(L, 0, 4);
  luaL_setfuncs(L, funcs, 0);
  lua_setfield(L, -3, "url");
}
