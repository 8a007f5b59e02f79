/* http.c: HTTP client requests (csp.http's core): options, waiting, feeding, cancelling, the
** Lua API. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "http.h"

static const char req_tag = 0;

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
  csp_httpcurl_req_dialed(r);
  csp_httpcurl_req_unpark(r);
  csp_httpbody_unlist(r);
  csp_httpbody_unref(r);
  if (r->attached) {
    r->attached = 0;
    M->nattached--;
    curl_multi_remove_handle(M->m, r->e);
  }
  csp_httpopt_give_back(r);
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

/* Pushes s[0..n) quoted as Go's %q does (bytes from 0x80 up are passed as they are). */
static void push_quoted(lua_State *L, const char *s, size_t n) {
  static const char esc[] = "\a\b\t\n\v\f\r", letter[] = "abtnvfr";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    const char *e = c != 0 ? strchr(esc, c) : NULL;
    if (c == '"' || c == '\\') {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, (char)c);
    } else if (e != NULL) {
      luaL_addchar(&b, '\\');
      luaL_addchar(&b, letter[e - esc]);
    } else if (c < 0x20 || c == 0x7f) {
      char x[5];
      snprintf(x, sizeof x, "\\x%02x", c);
      luaL_addstring(&b, x);
    } else {
      luaL_addchar(&b, (char)c);
    }
  }
  luaL_addchar(&b, '"');
  luaL_pushresult(&b);
}

/* Go's url.Parse failure: 'parse "URL": ' what, pieces of text and a quoted part. Returns 2. */
static int url_parse_error(lua_State *L, const char *u, size_t n, const char *what, const char *q,
                           size_t qn, const char *after) {
  lua_pushliteral(L, "parse ");
  push_quoted(L, u, n);
  lua_pushfstring(L, ": %s", what);
  if (q != NULL) push_quoted(L, q, qn);
  else lua_pushliteral(L, "");
  lua_pushstring(L, after);
  lua_concat(L, 5);
  return 2;
}

/* What Go's unescape(host, encodeHost) refuses in h[0..n): a bad or ASCII %-escape (%25 aside),
** a byte a host may not hold; pushes the parse error and returns 2, or returns 0. */
static int host_refused(lua_State *L, const char *u, size_t un, const char *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c == '%') {
      if (i + 2 >= n || !isxdigit((unsigned char)h[i + 1]) || !isxdigit((unsigned char)h[i + 2]))
        return url_parse_error(L, u, un, "invalid URL escape ", h + i, n - i < 3 ? n - i : 3, "");
      if (h[i + 1] < '8' && strncmp(h + i, "%25", 3) != 0)
        return url_parse_error(L, u, un, "invalid URL escape ", h + i, 3, "");
      i += 2;
    } else if (c < 0x80 && !isalnum(c) && !strchr("!$&'()*+,;=:[]<>\"-_.~", c)) {
      return url_parse_error(L, u, un, "invalid character ", h + i, 1, " in host name");
    }
  }
  return 0;
}

/* Refusals of a URL before curl sees it, as Go's: url.Parse's (pushes 'parse "URL": why',
** returns 2: Go's Get returns it unprefixed) or its Client's and dialer's (pushes why, returns 1:
** the caller prefixes 'Get "URL": '); 0 if curl may have it. A NUL among u's n bytes is a
** control character too (curl would read the URL up to it). */
static int url_refused(lua_State *L, const char *u, size_t n) {
  const char *p = u, *auth, *aend, *host, *hend, *port;
  size_t i;
  for (p = u; p < u + n; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return url_parse_error(L, u, n, "net/url: invalid control character in URL", NULL, 0, "");
  p = u;
  if (*p == ':') return url_parse_error(L, u, n, "missing protocol scheme", NULL, 0, "");
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
  if (*auth == '[') {  /* Go: the last ']', then an optional port */
    for (hend = aend; hend > auth && hend[-1] != ']'; hend--) {}
    if (hend == auth) return url_parse_error(L, u, n, "missing ']' in host", NULL, 0, "");
    port = hend;
  } else {
    for (port = aend; port > auth && port[-1] != ':'; port--) {}
    port = port > auth ? port - 1 : aend;
  }
  if (port < aend) {  /* Go's validOptionalPort: ':' and digits */
    for (i = 1; port + i < aend && isdigit((unsigned char)port[i]); i++) {}
    if (*port != ':' || port + i != aend)
      return url_parse_error(L, u, n, "invalid port ", port, (size_t)(aend - port), " after host");
  }
  if (host_refused(L, u, n, host, (size_t)(aend - host))) return 2;
  if (port == host) return lua_pushliteral(L, "http: no Host in request URL"), 1;
  if (aend - port > 1) {  /* digits: too many for a port is the dialer's complaint */
    long v = 0;
    for (i = 1; port + i < aend && v <= 65535; i++) v = v * 10 + (port[i] - '0');
    if (v > 65535) {
      lua_pushliteral(L, "dial tcp: address ");
      lua_pushlstring(L, port + 1, (size_t)(aend - port - 1));
      lua_pushliteral(L, ": invalid port");
      lua_concat(L, 3);
      return 1;
    }
  }
  /* Go's unescape of the path and the fragment (not the query): every '%' starts an escape. */
  for (p = aend; p < u + n; p++) {
    if (*p == '?') p += strcspn(p, "#");
    if (p < u + n && *p == '%' &&
        (u + n - p < 3 || !isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2])))
      return url_parse_error(L, u, n, "invalid URL escape ", p, u + n - p < 3 ? (size_t)(u + n - p) : 3, "");
  }
  return 0;
}

/* The URL curl is given: a space (which Go's client sends escaped) as %20; else u as is. */
static const char *url_escaped(lua_State *L, const char *u) {
  return strchr(u, ' ') == NULL ? u : luaL_gsub(L, u, " ", "%20");  /* as httpresp.c's push_given */
}

/* _new(opts, METHOD, url, header_lines|nil, flags) -> request | nil, err (a URL Go refuses).
** The Lua glue has checked opts and made the header lines; this checks what memory safety
** needs. opts: timeout (s), max_body, follow (false: none), insecure, cainfo, http_version,
** body (a string). flags: F_*. */
static int http_new(lua_State *L) {
  Multi *M = csp_httpcurl_multi_of(L);
  size_t ulen;
  const char *method = luaL_checkstring(L, 2), *url = luaL_checklstring(L, 3, &ulen);
  int flags = (int)luaL_checkinteger(L, 5), refused;
  Req *r;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 5);
  if ((refused = url_refused(L, url, ulen)) != 0) {  /* 2: whole (Go's parse error) */
    lua_pushnil(L);
    lua_insert(L, -2);
    lua_pushliteral(L, "EINVAL");
    lua_pushboolean(L, refused == 2);
    return 4;
  }
  csp_httpcurl_multi_get(L, M);
  if (!csp_httpdl_h2() && lua_getfield(L, 1, "http_version") == LUA_TSTRING &&
      strcmp(lua_tostring(L, -1), "2") == 0)
    return csp_fail(L, "EPROTONOSUPPORT", "http: HTTP/2 requested, and this libcurl has no HTTP/2");
  lua_settop(L, 5);
  r = (Req *)lua_newuserdatauv(L, sizeof *r, 1);  /* index 6 */
  memset(r, 0, sizeof *r);
  r->tag = &req_tag;
  r->wr.free_fn = req_release;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &req_tag);
  lua_setmetatable(L, -2);
  r->M = M;
  r->sink = (flags & F_SINK) != 0;
  r->follow = (int)csp_httpopt_int(L, "follow", MAX_REDIRECTS, 0);
  r->max_body = csp_httpopt_int(L, "max_body", flags & (F_SINK | F_READER) ? -1 : MAX_BODY, -1);
  if (flags & F_READER) {
    if ((r->st = csp_stream_alloc(M->S, CSP_ST_SRC)) == NULL) return luaL_error(L, "not enough memory");
    r->st->src = &csp_httpbody_src;
    r->st->srcdata = r;
  }
  if (!csp_httpopt_setup(L, r, method, url_escaped(L, url), flags) ||
      curl_multi_add_handle(M->m, r->e) != CURLM_OK) {
    req_free(r);
    return luaL_error(L, "http: cannot set up the request (out of memory?)");
  }
  r->attached = 1;
  M->nattached++;
  lua_settop(L, 6);  /* r, not the escaped URL above it */
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
  M->cafile_alone = -1;
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
