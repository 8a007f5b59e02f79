/* httpopt.c: a request's easy handle set up from its options, and the spare handles kept
** between requests (a plain GET's still set for the next one). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "http.h"

/* r's handle to curl's defaults; the URL it names goes (curl's reset drops CURLOPT_CURLU). */
static void handle_reset(Req *r) {
  curl_easy_reset(r->e);
  r->prof.plain = 0;
  curl_url_cleanup(r->uh);
  free(r->url);
  r->uh = NULL;
  r->url = NULL;
}

void csp_httpopt_handle_free(Handle *h) {
  curl_easy_cleanup(h->e);
  curl_url_cleanup(h->uh);  /* after the handle that pointed at it */
  free(h->url);
}

/* o[k] on the stack: its type, LUA_TNIL for nil or false. */
static int opt_get(lua_State *L, const char *k) {
  int t = lua_getfield(L, 1, k);
  return t == LUA_TBOOLEAN && !lua_toboolean(L, -1) ? LUA_TNIL : t;
}

static const char *opt_str(lua_State *L, const char *k) {
  const char *s = NULL;
  int t = opt_get(L, k);
  if (t == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (t != LUA_TNIL) luaL_error(L, "http: field %s must be a string", k);
  lua_pop(L, 1);  /* anchored by the table */
  return s;
}

/* An integer option: def when nil, none when false. */
lua_Integer csp_httpopt_int(lua_State *L, const char *k, lua_Integer def, lua_Integer none) {
  lua_Integer v = def;
  int t = lua_getfield(L, 1, k);
  if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) v = none;
  else if (t != LUA_TNIL && (!lua_isinteger(L, -1) || (v = lua_tointeger(L, -1)) < 0))
    luaL_error(L, "http: field %s must be a non-negative integer", k);
  lua_pop(L, 1);
  return v;
}

/* opts.timeout in seconds -> ms, at least 1; 0: none (a huge one, math.huge, 1e308 or 2^53 s,
** is none too, as for every other deadline). */
static long opt_timeout(lua_State *L) {
  lua_Number t = 0, ms;
  if (opt_get(L, "timeout") != LUA_TNIL && !((t = lua_tonumber(L, -1)) > 0))
    luaL_error(L, "http: field timeout must be a positive number");
  lua_pop(L, 1);
  if (!(t > 0) || t >= 1099511627776.0) return 0;
  ms = t * 1000;
  return ms <= 1 ? 1 : (long)ms + ((lua_Number)(long)ms < ms);
}

/* Go's crypto/x509 on Linux: $SSL_CERT_FILE replaces the default CA file, and one it cannot
** read is skipped (the directories still count); $SSL_CERT_DIR replaces the directories. */
static void certs_from_env(Multi *M) {
  const char *f, *d;
  M->env_read = 1;
  f = getenv("SSL_CERT_FILE");
  d = getenv("SSL_CERT_DIR");
  if (f != NULL && *f && access(f, R_OK) == 0) M->cafile = strdup(f);
  if (d != NULL && *d) M->capath = strdup(d);
}

/* Whether the CA file alone is the trust store (no $SSL_CERT_DIR, the file readable): then
** curl's default directory is dropped, for curl (>= 7.87) keeps the certificates read from a
** file in the multi handle only when no directory is set; with one, each new TLS connection
** read the whole system file again (~250M instructions, ~20 ms). Go reads them once too. The
** directory on Debian holds the file's certificates, linked by hash. */
static int cafile_alone(Multi *M, CURL *e) {
  if (M->cafile_alone < 0) {
    char *def = NULL;
    M->cafile_alone = M->capath == NULL &&
                      (M->cafile != NULL || (curl_easy_getinfo(e, CURLINFO_CAINFO, &def) == CURLE_OK &&
                                             def != NULL && access(def, R_OK) == 0));
  }
  return M->cafile_alone;
}

/* The variables curl 7.88 reads for the proxy of an http(s) request (curl_getenv: an empty
** one is none). Read once, as Go's ProxyFromEnvironment does. */
static void proxy_from_env(Multi *M) {
  static const char *const vars[] = {"http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
  M->noproxy = 1;
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v != NULL && *v) M->noproxy = 0;
  }
}

#define USER_AGENT "csp"

#define SETOPT(e, o, v) do { if (curl_easy_setopt(e, o, v) != CURLE_OK) goto fail; } while (0)

/* The end of url's "scheme://authority" (the index of its path's '/'), or 0. */
static uint32_t url_origin_len(const char *url) {
  const char *a = strstr(url, "://"), *p = a != NULL ? strchr(a + 3, '/') : NULL;
  return p != NULL && p - url < 4096 ? (uint32_t)(p - url) : 0;
}

/* Whether curl's parse would store the path and query of tail ("/...") as they are: printable
** ASCII but '#' (a fragment), no upper-case percent escape (setting a part lower-cases those, a
** parse keeps them), a query not empty. Dot segments stay in both (url_parse's CURLU_PATH_AS_IS). */
static int url_tail_plain(const char *tail, size_t *qi) {
  const char *p = tail;
  *qi = 0;
  if (*p != '/') return 0;
  for (; *p != '\0'; p++) {
    unsigned char c = (unsigned char)*p;
    if (c <= 0x20 || c >= 0x7f || c == '#') return 0;
    if (c == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]) &&
        (isupper((unsigned char)p[1]) || isupper((unsigned char)p[2])))
      return 0;
    if (c == '?' && *qi == 0) {
      if (p[1] == '\0') return 0;
      *qi = (size_t)(p - tail);
    }
  }
  return p - tail < 65536;
}

/* url into r->uh by updating its path and query: when r->url is curl's normal form of r->uh
** (r->upre > 0) and url differs from it only in a plain tail, that is what curl's parse of url
** would hold; CURLOPT_URL names it (curl's state.url, not rebuilt while set). */
static int url_update(Req *r, const char *url) {
  uint32_t n = r->upre;
  size_t qi;
  char *copy;
  int ok;
  if (n == 0 || strncmp(r->url, url, n) != 0 || !url_tail_plain(url + n, &qi)) return 0;
  if ((copy = strdup(url)) == NULL) return 0;
  if (qi > 0) copy[n + qi] = '\0';
  ok = curl_url_set(r->uh, CURLUPART_PATH, copy + n, 0) == CURLUE_OK &&
       curl_url_set(r->uh, CURLUPART_QUERY, qi > 0 ? copy + n + qi + 1 : NULL, 0) == CURLUE_OK;
  if (qi > 0) copy[n + qi] = '?';
  if (!ok || curl_easy_setopt(r->e, CURLOPT_URL, copy) != CURLE_OK) {
    free(copy);
    return 0;
  }
  free(r->url);
  r->url = copy;
  return 1;
}

/* url parsed into a new r->uh, as curl would parse it but for dot segments, and named by its
** normal form. Go sends the path as given ("/a/../b"), and resolves a redirect's target (dot
** segments go): curl parses a CURLU it is given with the caller's flags only, so CURLU_PATH_AS_IS
** here keeps the request's path while curl resolves a Location as always (no
** CURLOPT_PATH_AS_IS, which would keep the dots there too). */
static int url_parse(Req *r, const char *url) {
  CURLU *u = curl_url();
  char *norm = NULL, *copy = NULL;
  if (u == NULL ||
      curl_url_set(u, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &norm, 0) != CURLUE_OK || (copy = strdup(url)) == NULL ||
      curl_easy_setopt(r->e, CURLOPT_URL, norm) != CURLE_OK ||
      curl_easy_setopt(r->e, CURLOPT_CURLU, u) != CURLE_OK) {
    curl_url_cleanup(u);
    curl_free(norm);
    free(copy);
    return 0;
  }
  r->uh = u;
  r->url = copy;
  r->upre = strcmp(norm, url) == 0 ? url_origin_len(url) : 0;
  curl_free(norm);
  return 1;
}

/* The URL, parsed by csp (url_parse) for every request. A plain request's handle keeps the URL
** it was last set with (url) and parsed (uh, set as CURLOPT_CURLU: curl copies it rather than
** parse). The same URL again sets nothing; one with a new plain path or query updates those
** parts; any other is parsed whole, once: curl parses a URL string at every transfer (~12k
** instructions with its rebuild). A URL csp cannot parse is left to curl, to fail as curl fails it. */
static int req_url(Req *r, const char *url) {
  if (r->prof.plain && r->uh != NULL && (strcmp(r->url, url) == 0 || url_update(r, url))) return 1;
  if (r->uh != NULL) {
    curl_easy_setopt(r->e, CURLOPT_CURLU, (CURLU *)NULL);
    curl_url_cleanup(r->uh);
    free(r->url);
    r->uh = NULL;
    r->url = NULL;
  }
  return url_parse(r, url) || curl_easy_setopt(r->e, CURLOPT_URL, url) == CURLE_OK;
}

/* The options that point at r itself, and the URL: set for every request. */
static int req_bind(Req *r, const char *url) {
  CURL *e = r->e;
  SETOPT(e, CURLOPT_PRIVATE, (char *)r);
  SETOPT(e, CURLOPT_ERRORBUFFER, r->err);
  if (!req_url(r, url)) goto fail;
  SETOPT(e, CURLOPT_WRITEDATA, r);
  SETOPT(e, CURLOPT_HEADERDATA, r);
  SETOPT(e, CURLOPT_OPENSOCKETDATA, r);
  SETOPT(e, CURLOPT_PREREQDATA, r);
  return 1;
fail:
  return 0;
}

/* The options every request sets alike (after a reset), but for the connection cache. */
static int req_common(Req *r) {
  Multi *M = r->M;
  CURL *e = r->e;
  SETOPT(e, CURLOPT_NOSIGNAL, 1L);
  SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SETOPT(e, CURLOPT_WRITEFUNCTION, csp_httpcurl_write_cb);
  SETOPT(e, CURLOPT_HEADERFUNCTION, csp_httpcurl_header_cb);
  SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, csp_httpcurl_open_cb);
  SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, csp_httpcurl_close_cb);
  SETOPT(e, CURLOPT_CLOSESOCKETDATA, M);
  SETOPT(e, CURLOPT_PREREQFUNCTION, csp_httpcurl_prereq_cb);
  SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
  if (M->noproxy) {
    SETOPT(e, CURLOPT_PROXY, "");
    SETOPT(e, CURLOPT_NOPROXY, "");
  }
  return 1;
fail:
  return 0;
}

/* Go's client sends no Accept or Expect: curl's are left out ("Name:" in the list), its Accept
** of any type on every request and Expect on larger bodies. The User-Agent is a line of the
** list too, not CURLOPT_USERAGENT: curl 7.88 would format it anew for every request. */
static struct curl_slist *headers_start(void) {
  struct curl_slist *l = curl_slist_append(NULL, "Expect:");
  if (l != NULL && curl_slist_append(l, "Accept:") == NULL) {
    curl_slist_free_all(l);
    return NULL;
  }
  return l;
}

static int headers_agent(struct curl_slist *l) {
  return curl_slist_append(l, "User-Agent: " USER_AGENT) != NULL;
}

/* The header list of requests with no lines of their own (made once per multi handle); with
** "Content-Type:" too for those sending a body (see req_headers). */
static struct curl_slist *headers_default(int body) {
  struct curl_slist *l = headers_start();
  if (l != NULL && (!headers_agent(l) || (body && curl_slist_append(l, "Content-Type:") == NULL))) {
    curl_slist_free_all(l);
    return NULL;
  }
  return l;
}

/* Whether line sets header name (n bytes): "Name: value", or "Name;" (empty). */
static int line_names(const char *line, const char *name, size_t n) {
  return strncasecmp(line, name, n) == 0 && (line[n] == ':' || line[n] == ';');
}

/* Whether the request sends a body: curl gives every such request a form's Content-Type
** (application/x-www-form-urlencoded) unless one is in the list; Go sends none of its own. */
static int req_sends_body(lua_State *L, const char *method, int flags) {
  int t = lua_getfield(L, 1, "body");
  lua_pop(L, 1);
  return t == LUA_TSTRING || (flags & F_PRODUCER) || strcmp(method, "POST") == 0;
}

/* The request's header lines (lua index 4, or none): the caller's User-Agent replaces csp's;
** with a body and no Content-Type of the caller's, "Content-Type:" keeps curl's out. */
static int req_headers(lua_State *L, Req *r, int body) {
  Multi *M = r->M;
  struct curl_slist *l = M->headers;
  if (lua_type(L, 4) == LUA_TTABLE) {
    int agent = 1, type = body;
    if ((l = r->hdrs = headers_start()) == NULL) return 0;
    for (lua_Integer i = 1; lua_geti(L, 4, i) == LUA_TSTRING; i++) {
      const char *line = lua_tostring(L, -1);
      if (line_names(line, "User-Agent", 10)) agent = 0;
      if (line_names(line, "Content-Type", 12)) type = 0;
      if (curl_slist_append(r->hdrs, line) == NULL) return 0;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (agent && !headers_agent(r->hdrs)) return 0;
    if (type && curl_slist_append(r->hdrs, "Content-Type:") == NULL) return 0;
  } else if (body) {
    if (M->headers_body == NULL && (M->headers_body = headers_default(1)) == NULL) return 0;
    l = M->headers_body;
  }
  return curl_easy_setopt(r->e, CURLOPT_HTTPHEADER, l) == CURLE_OK;
}

/* Method and body: a string body is read in place, anchored by the request. */
static int req_body(lua_State *L, Req *r, const char *method, int flags) {
  CURL *e = r->e;
  if (lua_getfield(L, 1, "body") == LUA_TSTRING) {
    size_t blen;
    const char *b = lua_tolstring(L, -1, &blen);
    lua_setiuservalue(L, 6, 1);
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    SETOPT(e, CURLOPT_POSTFIELDS, b);
  } else {
    lua_pop(L, 1);
    if (flags & F_PRODUCER) {
      r->streamed = 1;
      SETOPT(e, CURLOPT_POST, 1L);
      SETOPT(e, CURLOPT_READFUNCTION, csp_httpcurl_read_cb);
      SETOPT(e, CURLOPT_READDATA, r);
    } else if (strcmp(method, "POST") == 0) {
      SETOPT(e, CURLOPT_POST, 1L);  /* an empty body, still a POST */
      SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
      SETOPT(e, CURLOPT_POSTFIELDS, "");
    } else if (strcmp(method, "GET") == 0) {
      SETOPT(e, CURLOPT_HTTPGET, 1L);
    }
  }
  if (strcmp(method, "HEAD") == 0) {
    SETOPT(e, CURLOPT_NOBODY, 1L);
    r->nobody = 1;
  } else if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0) SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
  else if (strcmp(method, "GET") == 0 && (r->streamed || lua_getiuservalue(L, 6, 1) != LUA_TNIL))
    SETOPT(e, CURLOPT_CUSTOMREQUEST, method);  /* a GET with a body */
  return 1;
fail:
  return 0;
}

/* The request's own options, on a handle reset to curl's defaults. */
static int req_options(lua_State *L, Req *r, const char *method, const char *url, int flags) {
  Multi *M = r->M;
  CURL *e = r->e;
  const char *cainfo = opt_str(L, "cainfo"), *ver = opt_str(L, "http_version");
  long timeout = opt_timeout(L);
  int h2 = csp_httpdl_h2() && !(ver && strcmp(ver, "1.1") == 0);  /* "2" without it: refused */
  if (!req_common(r)) goto fail;
  /* Over TLS a second request waits for the first connection's ALPN answer, to share it as
  ** h2 streams; in clear text (HTTP/1.1 only) waiting would serialise concurrent requests.
  ** Requests that cannot multiplex keep their connections apart (Multi.h1); a handle keeps
  ** its share through curl_easy_reset, so it is set every time. */
  if (h2 && strncasecmp(url, "https:", 6) == 0) {
    SETOPT(e, CURLOPT_PIPEWAIT, 1L);
    SETOPT(e, CURLOPT_SHARE, (CURLSH *)NULL);
  } else {
    SETOPT(e, CURLOPT_SHARE, M->h1);
  }
  if (r->follow > 0) {
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(e, CURLOPT_MAXREDIRS, (long)r->follow);
  }
  if (timeout > 0) {
    SETOPT(e, CURLOPT_TIMEOUT_MS, timeout);
    r->deadline = uv_hrtime() + (uint64_t)timeout * 1000000u;  /* a handover keeps it */
  }
  /* Not "" (every coding this curl decodes: "deflate, gzip, br, zstd"): curl 7.88 formats
  ** the header into each request byte by byte (~40 instructions a byte). Go asks for gzip. */
  if (flags & F_DECODE) SETOPT(e, CURLOPT_ACCEPT_ENCODING, "gzip, deflate");
  if (opt_get(L, "insecure") != LUA_TNIL) {
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  lua_pop(L, 1);
  if (cainfo || M->cafile) SETOPT(e, CURLOPT_CAINFO, cainfo ? cainfo : M->cafile);
  if (!cainfo && M->capath) SETOPT(e, CURLOPT_CAPATH, M->capath);
  else if (cainfo || cafile_alone(M, e)) SETOPT(e, CURLOPT_CAPATH, (char *)NULL);
  /* a libcurl without HTTP/2 refuses 2TLS (CURLE_UNSUPPORTED_PROTOCOL) */
  SETOPT(e, CURLOPT_HTTP_VERSION, h2 ? (long)CURL_HTTP_VERSION_2TLS : (long)CURL_HTTP_VERSION_1_1);
  if (!req_headers(L, r, req_sends_body(L, method, flags)) || !req_body(L, r, method, flags)) goto fail;
  lua_settop(L, 6);
  return 1;
fail:
  lua_settop(L, 6);
  return 0;
}

static int opt_absent(lua_State *L, const char *k) {
  int t = lua_getfield(L, 1, k);
  lua_pop(L, 1);
  return t == LUA_TNIL;
}

/* r->prof: what r sets beyond req_bind's. */
static void req_profile(lua_State *L, Req *r, const char *method, const char *url, int flags) {
  Prof *p = &r->prof;
  memset(p, 0, sizeof *p);
  p->max_body = r->max_body;
  p->follow = r->follow;
  p->flags = flags;
  p->https = strncasecmp(url, "https:", 6) == 0;
  p->plain = !(flags & (F_PRODUCER | F_SINK | F_READER)) && strcmp(method, "GET") == 0 &&
             lua_type(L, 4) != LUA_TTABLE && opt_absent(L, "body") && opt_absent(L, "timeout") &&
             opt_absent(L, "insecure") && opt_absent(L, "cainfo") && opt_absent(L, "http_version");
}

static int prof_same(const Prof *a, const Prof *b) {
  return a->plain && b->plain && a->max_body == b->max_body && a->follow == b->follow &&
         a->flags == b->flags && a->https == b->https;
}

/* r's easy handle, set up: a spare one still set for the same profile takes only req_bind. */
int csp_httpopt_setup(lua_State *L, Req *r, const char *method, const char *url, int flags) {
  Multi *M = r->M;
  if (!M->env_read) {
    certs_from_env(M);
    proxy_from_env(M);
  }
  if (M->headers == NULL && (M->headers = headers_default(0)) == NULL) return 0;
  req_profile(L, r, method, url, flags);
  if (M->nspare > 0) {
    Handle *h = &M->spare[--M->nspare];
    Prof want = r->prof;
    r->e = h->e;
    r->prof = h->prof;
    r->url = h->url;
    r->uh = h->uh;
    r->upre = h->upre;
    if (prof_same(&r->prof, &want)) return req_bind(r, url);
    if (r->prof.plain) handle_reset(r);
    r->prof = want;
  } else if ((r->e = curl_easy_init()) == NULL) {
    return 0;
  }
  return req_bind(r, url) && req_options(L, r, method, url, flags);
}

/* r's easy handle back to the spares (or cleaned up when they are full or the multi went). */
void csp_httpopt_give_back(Req *r) {
  Multi *M = r->M;
  if (M->m != NULL && M->nspare < (int)(sizeof M->spare / sizeof M->spare[0])) {
    Handle *h = &M->spare[M->nspare++];
    /* Kept as set only after a clean transfer: no retry's FRESH_CONNECT, no pause, no abort. */
    if (!(r->prof.plain && r->done && r->result == CURLE_OK && !r->retried && !r->cancelled))
      handle_reset(r);
    h->e = r->e;
    h->prof = r->prof;
    h->url = r->url;
    h->uh = r->uh;
    h->upre = r->upre;
  } else {
    Handle h = {r->e, r->prof, r->url, r->uh, 0};
    csp_httpopt_handle_free(&h);
  }
  r->e = NULL;
  r->url = NULL;
  r->uh = NULL;
}
