/* http.c: HTTP client requests (csp.http's core): options, waiting, feeding, cancelling, the
** Lua API. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include "http.h"

static const char req_tag = 0;

enum { F_PRODUCER = 1, F_SINK = 2, F_DECODE = 4, F_READER = 8 };  /* _new's flags */

#define MAX_BODY ((int64_t)64 * 1024 * 1024)  /* default body limit (Go has none; a crawler needs one) */
#define MAX_REDIRECTS 10                       /* as Go's Client */

/* ---------------------------------------------------------------- request records */

static Req *req_check(lua_State *L) {
  Req *r = (Req *)csp_checktag(L, 1, &req_tag, sizeof(Req), "csp.http request");
  if (r->M == NULL) luaL_argerror(L, 1, "request already freed");
  return r;
}

/* Detaches r and gives its easy handle back (reset: options to defaults, caches kept); r->M
** stays, so a goroutine still parked on r can resume. */
void csp_http_req_drop(Req *r) {
  Multi *M = r->M;
  if (M == NULL || r->e == NULL) return;
  csp_httpcurl_req_unpark(r);
  csp_httpbody_unlist(r);
  csp_httpbody_unref(r);
  if (r->attached) {
    r->attached = 0;
    M->nattached--;
    curl_multi_remove_handle(M->m, r->e);
  }
  if (M->m != NULL && M->nspare < (int)(sizeof M->spare / sizeof M->spare[0])) {
    /* Kept as set only after a clean transfer: no retry's FRESH_CONNECT, no pause, no abort. */
    if (!(r->prof.plain && r->done && r->result == CURLE_OK && !r->retried && !r->cancelled)) {
      curl_easy_reset(r->e);
      r->prof.plain = 0;
    }
    M->sprof[M->nspare] = r->prof;
    M->spare[M->nspare++] = r->e;
  } else {
    curl_easy_cleanup(r->e);
  }
  r->e = NULL;
  curl_slist_free_all(r->hdrs);
  r->hdrs = NULL;
  csp_buf_free(&r->body);
  csp_buf_free(&r->head);
  csp_buf_free(&r->trail);
  csp_buf_free(&r->up);
}

/* Lets r go for good: a body stream no conn took goes with it; one a conn owns forgets it (at
** lua_close both are finalized, in either order). */
static void req_free(Req *r) {
  csp_Stream *st = r->st;
  if (r->M == NULL) return;
  csp_req_drop(&r->wr, -1);  /* lua_close: a goroutine still parked on r never resumes */
  if (r->M->m == NULL) r->attached = 0;  /* close_idle or lua_close took the multi: and the handles */
  csp_http_req_drop(r);
  r->st = NULL;
  if (st != NULL) {
    st->srcdata = NULL;
    if (st->rerr == 0) st->rerr = UV_ECANCELED;
    if (!r->handed) csp_stream_close(st, 0);
  }
  r->M = NULL;
}

static void req_release(csp_Req *q) {
  (void)q;  /* the userdata: collected once unreachable, never while a goroutine waits on it */
}

static int req_gc(lua_State *L) {
  req_free((Req *)lua_touserdata(L, 1));
  return 0;
}

/* __close (the caller's scope ends, by return or error): the transfer stops unless a body
** reader took it. */
static int req_close(lua_State *L) {
  Req *r = req_check(L);
  if (r->handed) return 0;
  if (!r->done) {
    r->cancelled = 1;
    csp_httpcurl_req_finish(r, CURLE_ABORTED_BY_CALLBACK);
  }
  csp_http_req_drop(r);
  return 0;
}

/* ---------------------------------------------------------------- options */

/* Go's refusals of URLs no request can be made for, before curl sees them: pushes the message
** and returns 1, or returns 0. */
static int url_refused(lua_State *L, const char *u) {
  const char *p = u, *auth, *aend, *host, *port;
  size_t i;
  if (!isalpha((unsigned char)*p)) return lua_pushliteral(L, "unsupported protocol scheme \"\""), 1;
  while (isalnum((unsigned char)*p) || *p == '+' || *p == '.' || *p == '-') p++;
  if (*p != ':') return lua_pushliteral(L, "unsupported protocol scheme \"\""), 1;
  if (!((p - u == 4 && strncasecmp(u, "http", 4) == 0) || (p - u == 5 && strncasecmp(u, "https", 5) == 0))) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "unsupported protocol scheme \"");
    for (const char *q = u; q < p; q++) luaL_addchar(&b, (char)tolower((unsigned char)*q));
    luaL_addchar(&b, '"');
    luaL_pushresult(&b);
    return 1;
  }
  if (p[1] != '/' || p[2] != '/') return lua_pushliteral(L, "http: no Host in request URL"), 1;
  auth = p + 3;
  aend = auth + strcspn(auth, "/?#");
  for (const char *q = auth; q < aend; q++)
    if (*q == '@') auth = q + 1;  /* the userinfo goes */
  host = auth;
  if (*auth == '[' && (port = memchr(auth, ']', (size_t)(aend - auth))) != NULL) port++;
  else port = auth + strcspn(auth, ":") < aend ? auth + strcspn(auth, ":") : aend;
  if (port == host) return lua_pushliteral(L, "http: no Host in request URL"), 1;
  if (port < aend && !(aend - port == 1 && *port == ':')) {
    long v = 0;
    for (i = 1; port + i < aend && isdigit((unsigned char)port[i]) && v <= 65535; i++) v = v * 10 + (port[i] - '0');
    if (*port != ':' || port + i != aend || v > 65535) {
      lua_pushliteral(L, "invalid port \"");
      lua_pushlstring(L, port, (size_t)(aend - port));
      lua_pushliteral(L, "\" after host");
      lua_concat(L, 3);
      return 1;
    }
  }
  for (p = u; *p; p++)
    if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
      return lua_pushliteral(L, "invalid character in URL"), 1;
  return 0;
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
static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer def, lua_Integer none) {
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

#define SETOPT(e, o, v) do { if (curl_easy_setopt(e, o, v) != CURLE_OK) goto fail; } while (0)

/* The options that point at r itself, and the URL: set for every request. */
static int req_bind(Req *r, const char *url) {
  CURL *e = r->e;
  SETOPT(e, CURLOPT_PRIVATE, (char *)r);
  SETOPT(e, CURLOPT_ERRORBUFFER, r->err);
  SETOPT(e, CURLOPT_URL, url);
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
  SETOPT(e, CURLOPT_USERAGENT, "csp");
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

/* The request's header lines (lua index 4, or none: Go sends no Expect, curl would add one to
** larger bodies). */
static int req_headers(lua_State *L, Req *r) {
  struct curl_slist *l = r->M->expect;
  if (lua_type(L, 4) == LUA_TTABLE) {
    if ((l = r->hdrs = curl_slist_append(NULL, "Expect:")) == NULL) return 0;
    for (lua_Integer i = 1; lua_geti(L, 4, i) == LUA_TSTRING; i++) {
      struct curl_slist *n = curl_slist_append(r->hdrs, lua_tostring(L, -1));
      lua_pop(L, 1);
      if (n == NULL) return 0;
    }
    lua_pop(L, 1);
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
  if (strcmp(method, "HEAD") == 0) SETOPT(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0) SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
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
  if (!req_common(r)) goto fail;
  /* Over TLS a second request waits for the first connection's ALPN answer, to share it as
  ** h2 streams; in clear text (HTTP/1.1 only) waiting would serialise concurrent requests.
  ** Requests that cannot multiplex keep their connections apart (Multi.h1); a handle keeps
  ** its share through curl_easy_reset, so it is set every time. */
  if (strncasecmp(url, "https:", 6) == 0 && !(ver && strcmp(ver, "1.1") == 0)) {
    SETOPT(e, CURLOPT_PIPEWAIT, 1L);
    SETOPT(e, CURLOPT_SHARE, (CURLSH *)NULL);
  } else {
    SETOPT(e, CURLOPT_SHARE, M->h1);
  }
  if (r->follow > 0) {
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(e, CURLOPT_MAXREDIRS, (long)r->follow);
  }
  if (timeout > 0) SETOPT(e, CURLOPT_TIMEOUT_MS, timeout);
  if (r->max_body >= 0) SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
  if (flags & F_DECODE) SETOPT(e, CURLOPT_ACCEPT_ENCODING, "");
  if (opt_get(L, "insecure") != LUA_TNIL) {
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  lua_pop(L, 1);
  if (cainfo || M->cafile) SETOPT(e, CURLOPT_CAINFO, cainfo ? cainfo : M->cafile);
  if (!cainfo && M->capath) SETOPT(e, CURLOPT_CAPATH, M->capath);
  SETOPT(e, CURLOPT_HTTP_VERSION,
         ver && strcmp(ver, "1.1") == 0 ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
  if (!req_headers(L, r) || !req_body(L, r, method, flags)) goto fail;
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
static int req_setup(lua_State *L, Req *r, const char *method, const char *url, int flags) {
  Multi *M = r->M;
  if (!M->env_read) {
    certs_from_env(M);
    proxy_from_env(M);
  }
  if (M->expect == NULL && (M->expect = curl_slist_append(NULL, "Expect:")) == NULL) return 0;
  req_profile(L, r, method, url, flags);
  if (M->nspare > 0) {
    Prof *sp = &M->sprof[--M->nspare];
    r->e = M->spare[M->nspare];
    if (prof_same(sp, &r->prof)) return req_bind(r, url);
    if (sp->plain) curl_easy_reset(r->e);
  } else if ((r->e = curl_easy_init()) == NULL) {
    return 0;
  }
  return req_bind(r, url) && req_options(L, r, method, url, flags);
}

/* _new(opts, METHOD, url, header_lines|nil, flags) -> request | nil, err (a URL Go refuses).
** The Lua glue has checked opts and made the header lines; this checks what memory safety
** needs. opts: timeout (s), max_body, follow (false: none), insecure, cainfo, http_version,
** body (a string). flags: F_*. */
static int http_new(lua_State *L) {
  Multi *M = csp_httpcurl_multi_of(L);
  const char *method = luaL_checkstring(L, 2), *url = luaL_checkstring(L, 3);
  int flags = (int)luaL_checkinteger(L, 5);
  Req *r;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 5);
  if (url_refused(L, url)) return csp_fail(L, "EINVAL", "%s", lua_tostring(L, -1));
  r = (Req *)lua_newuserdatauv(L, sizeof *r, 1);  /* index 6 */
  memset(r, 0, sizeof *r);
  r->tag = &req_tag;
  r->wr.free_fn = req_release;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &req_tag);
  lua_setmetatable(L, -2);
  csp_httpcurl_multi_get(L, M);
  r->M = M;
  r->sink = (flags & F_SINK) != 0;
  r->follow = (int)opt_int(L, "follow", MAX_REDIRECTS, 0);
  r->max_body = opt_int(L, "max_body", flags & (F_SINK | F_READER) ? -1 : MAX_BODY, -1);
  if (flags & F_READER) {
    if ((r->st = csp_stream_alloc(M->S, CSP_ST_SRC)) == NULL) return luaL_error(L, "not enough memory");
    r->st->src = &csp_httpbody_src;
    r->st->srcdata = r;
  }
  if (!req_setup(L, r, method, url, flags) || curl_multi_add_handle(M->m, r->e) != CURLM_OK) {
    req_free(r);
    return luaL_error(L, "http: cannot set up the request (out of memory?)");
  }
  r->attached = 1;
  M->nattached++;
  return 1;
}

/* ---------------------------------------------------------------- waiting, feeding */

static int req_wait_k(lua_State *L, int status, lua_KContext ctx);

/* Resumes what the goroutine paused, outside curl's callbacks. */
static void req_unpause(Req *r) {
  int mask;
  if (!r->attached || !(r->recv_paused || r->send_paused)) return;
  if (r->recv_paused && csp_buf_len(&r->body) < SINK_CHUNK) r->recv_paused = 0;
  if (r->send_paused && !r->need) r->send_paused = 0;
  mask = (r->recv_paused ? CURLPAUSE_RECV : 0) | (r->send_paused ? CURLPAUSE_SEND : 0);
  curl_easy_pause(r->e, mask);
}

/* req:wait() -> "data", chunk | "need" | "done": parks until curl has something for the Lua side:
** a piece of body for the sink, a request for more upload body, or the end (with a body
** reader: the last header block; afterwards, the end of the transfer or the reader's close). */
static int req_wait(lua_State *L) {
  Req *r = (Req *)csp_checktag(L, 1, &req_tag, sizeof(Req), "csp.http request");
  csp_Sched *S;
  csp_G *g;
  if (r->M == NULL || r->e == NULL || r->done || (r->st && r->ready && !r->handed) || (r->handed && !r->st)) {
    if (r->sink && csp_buf_len(&r->body) > 0) goto data;
    lua_pushliteral(L, "done");
    return 1;
  }
  if (r->parked) return luaL_error(L, "http: request already waited on");
  if (r->sink && csp_buf_len(&r->body) >= SINK_CHUNK) goto data;
  if (r->need) {
    lua_pushliteral(L, "need");
    return 1;
  }
  S = csp_sched_get(L);
  g = csp_sched_self(L, S);
  r->parked = 1;
  r->weak = r->handed;  /* a reader's watcher: the reader's own wait holds the loop */
  if (!r->weak && r->M->nwait++ == 0) csp_httpcurl_multi_refs(r->M, 1);
  return csp_req_park(L, &r->wr, g, "IO wait", (lua_KContext)r, req_wait_k);
data:
  lua_pushliteral(L, "data");
  lua_pushlstring(L, csp_buf_data(&r->body), csp_buf_len(&r->body));
  csp_buf_clear(&r->body);
  req_unpause(r);
  return 2;
}

static int req_wait_k(lua_State *L, int status, lua_KContext ctx) {
  Req *r = (Req *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, r->wr.g);
  csp_req_end(&r->wr);  /* always done: only curl's callbacks (or a cancel) wake it */
  csp_httpcurl_req_unpark(r);
  return req_wait(L);
}

/* req:feed(chunk|nil): the next piece of the upload body; nil or "" ends it. */
static int req_feed(lua_State *L) {
  Req *r = req_check(L);
  size_t n = 0;
  const char *s = luaL_optlstring(L, 2, NULL, &n);
  if (!r->need) return 0;
  r->need = 0;
  csp_buf_clear(&r->up);
  r->up_off = 0;
  if (s == NULL || n == 0) r->up_eof = 1;
  else if (!csp_buf_put(&r->up, s, n)) return luaL_error(L, "not enough memory");
  req_unpause(r);
  return 0;
}

/* req:cancel([why]): the caller gave up (its context is done): the transfer stops, wait returns
** "done", and result (or a body reader's read) fails with why. */
static int req_cancel(lua_State *L) {
  Req *r = req_check(L);
  const char *why = luaL_optstring(L, 2, "");
  if (r->done || r->e == NULL) return 0;
  r->cancelled = 1;
  strncpy(r->cmsg, why, sizeof r->cmsg - 1);
  csp_httpcurl_req_finish(r, CURLE_ABORTED_BY_CALLBACK);
  return 0;
}

/* req:result(url) -> response table | nil, err, code, url (the URL the error names); url is
** the request's, as given. Without a body reader the request is done with afterwards. */
static int req_result(lua_State *L) {
  Req *r = req_check(L);
  int n;
  luaL_checkstring(L, 2);
  if (r->e == NULL || !(r->done || (r->st && r->ready))) return luaL_error(L, "http: request not done");
  if (r->handed) return luaL_error(L, "http: the body went to a reader already");
  n = csp_httpresp_result(L, r, 2);
  if (!r->handed) csp_http_req_drop(r);
  return n;
}

/* ---------------------------------------------------------------- the pool */

/* close_idle(): closes the pooled connections when no request is in flight. */
static int http_close_idle(lua_State *L) {
  Multi *M = csp_httpcurl_multi_of(L);
  if (M->nattached == 0) csp_httpcurl_multi_close(M);
  return 0;
}

/* idle_count(): connections the pool holds open (idle, plus those serving requests in flight). */
static int http_idle_count(lua_State *L) {
  lua_pushinteger(L, csp_httpcurl_multi_of(L)->nsock);
  return 1;
}

/* Stack: [module, sched]. Adds module.http = { _new, close_idle, idle_count }. */
void csp_http_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_new", http_new}, {"close_idle", http_close_idle}, {"idle_count", http_idle_count},
    {NULL, NULL}
  };
  static const luaL_Reg methods[] = {
    {"wait", req_wait}, {"feed", req_feed}, {"cancel", req_cancel}, {"result", req_result},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {{"__gc", req_gc}, {"__close", req_close}, {NULL, NULL}};
  static const luaL_Reg multi_meta[] = {{"__gc", csp_httpcurl_multi_gc}, {NULL, NULL}};
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, -1);
  Multi **box = (Multi **)lua_newuserdatauv(L, sizeof *box, 0);
  Multi *M = calloc(1, sizeof *M);
  *box = NULL;
  if (M == NULL) luaL_error(L, "not enough memory");
  *box = M;
  M->S = S;
  M->tn.fire = csp_httpcurl_timer_fire;
  M->tn.waiters = &M->nwait;
  lua_pushnil(L);  /* the __gc's upvalue: none (not the box) */
  csp_newmeta(L, NULL, NULL, multi_meta);
  lua_setmetatable(L, -3);
  lua_pop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &csp_http_multi_key);
  csp_newmeta(L, "csp.http request", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &req_tag);
  csp_httpresp_open(L);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_pushinteger(L, F_PRODUCER);
  lua_setfield(L, -2, "PRODUCER");
  lua_pushinteger(L, F_SINK);
  lua_setfield(L, -2, "SINK");
  lua_pushinteger(L, F_DECODE);
  lua_setfield(L, -2, "DECODE");
  lua_pushinteger(L, F_READER);
  lua_setfield(L, -2, "READER");
  lua_setfield(L, -3, "http");
}
