/* http.c: HTTP client requests (csp.http's core): options, waiting, feeding, results, errors. */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include "http.h"

static const char req_tag = 0;

/* ---------------------------------------------------------------- requests */

static Req *req_check(lua_State *L) {
  Req *r = (Req *)csp_checktag(L, 1, &req_tag, sizeof(Req), "csp.http request");
  if (r->M == NULL) luaL_argerror(L, 1, "request already freed");
  return r;
}

static void req_release(Req *r) {
  if (r->M == NULL) return;
  csp_httpcurl_req_unpark(r);
  if (r->attached) {
    r->attached = 0;
    r->M->nattached--;
    curl_multi_remove_handle(r->M->m, r->e);
  }
  if (r->M->m != NULL && r->M->nspare < (int)(sizeof r->M->spare / sizeof r->M->spare[0])) {
    curl_easy_reset(r->e);  /* keeps its caches (DNS, TLS sessions); options back to defaults */
    r->M->spare[r->M->nspare++] = r->e;
  } else {
    curl_easy_cleanup(r->e);
  }
  curl_slist_free_all(r->hdrs);
  csp_httpcurl_buf_free(&r->body);
  csp_httpcurl_buf_free(&r->head);
  csp_httpcurl_buf_free(&r->trail);
  csp_httpcurl_buf_free(&r->up);
  r->M = NULL;
}

static int req_gc(lua_State *L) {
  Req *r = (Req *)lua_touserdata(L, 1);
  /* At lua_close the multi may be gone already: then so is every attachment. */
  if (r->M != NULL && r->M->m == NULL) r->attached = 0;
  req_release(r);
  return 0;
}

static const char *opt_str(lua_State *L, int t, const char *k) {
  const char *s = NULL;
  int ty = lua_getfield(L, t, k);
  if (ty == LUA_TSTRING) s = lua_tostring(L, -1);
  else if (ty != LUA_TNIL) luaL_error(L, "http: field %s must be a string", k);
  lua_pop(L, 1);  /* anchored by the table */
  return s;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_Integer v = def;
  int ty = lua_getfield(L, t, k);
  if (ty != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "http: field %s must be an integer", k);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_bool(lua_State *L, int t, const char *k) {
  int v;
  lua_getfield(L, t, k);
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

#define SETOPT(e, o, v) do { if (curl_easy_setopt(e, o, v) != CURLE_OK) goto fail; } while (0)

/* _new{method=, url=, headers={"Name: value",...}, body=string, stream=bool, timeout_ms=,
** max_body=, follow=, insecure=, cainfo=, capath=, http_version=, sink=, decode=} -> request.
** The Lua glue has checked and normalised every field; this checks only what memory safety
** needs. */
static int http_new(lua_State *L) {
  Multi *M = csp_httpcurl_multi_of(L);
  Req *r;
  CURL *e;
  const char *method, *url, *cainfo, *capath, *ver;
  lua_Integer timeout, follow;
  size_t blen = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  method = opt_str(L, 1, "method");
  url = opt_str(L, 1, "url");
  if (method == NULL || url == NULL) return luaL_error(L, "http: method and url are required");
  cainfo = opt_str(L, 1, "cainfo");
  capath = opt_str(L, 1, "capath");
  ver = opt_str(L, 1, "http_version");
  timeout = opt_int(L, 1, "timeout_ms", 0);
  follow = opt_int(L, 1, "follow", 10);
  r = (Req *)lua_newuserdatauv(L, sizeof *r, 1);
  memset(r, 0, sizeof *r);
  r->tag = &req_tag;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &req_tag);
  lua_setmetatable(L, -2);
  csp_httpcurl_multi_get(L, M);
  e = M->nspare > 0 ? M->spare[--M->nspare] : curl_easy_init();
  if (e == NULL) return luaL_error(L, "not enough memory");
  r->e = e;
  r->M = M;
  r->max_body = opt_int(L, 1, "max_body", -1);
  r->sink = (uint8_t)opt_bool(L, 1, "sink");
  SETOPT(e, CURLOPT_PRIVATE, (char *)r);
  SETOPT(e, CURLOPT_NOSIGNAL, 1L);
  SETOPT(e, CURLOPT_ERRORBUFFER, r->err);
  SETOPT(e, CURLOPT_URL, url);
  SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
  SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SETOPT(e, CURLOPT_USERAGENT, "csp");
  SETOPT(e, CURLOPT_WRITEFUNCTION, csp_httpcurl_write_cb);
  SETOPT(e, CURLOPT_WRITEDATA, r);
  SETOPT(e, CURLOPT_HEADERFUNCTION, csp_httpcurl_header_cb);
  SETOPT(e, CURLOPT_HEADERDATA, r);
  SETOPT(e, CURLOPT_OPENSOCKETFUNCTION, csp_httpcurl_open_cb);
  SETOPT(e, CURLOPT_OPENSOCKETDATA, r);
  SETOPT(e, CURLOPT_CLOSESOCKETFUNCTION, csp_httpcurl_close_cb);
  SETOPT(e, CURLOPT_CLOSESOCKETDATA, M);
  /* Over TLS a second request waits for the first connection's ALPN answer, to share it as
  ** h2 streams; in clear text (HTTP/1.1 only) waiting would serialise concurrent requests. */
  if (strncasecmp(url, "https:", 6) == 0) SETOPT(e, CURLOPT_PIPEWAIT, 1L);
  else {
    SETOPT(e, CURLOPT_PREREQFUNCTION, csp_httpcurl_prereq_cb);
    SETOPT(e, CURLOPT_PREREQDATA, r);
  }
  SETOPT(e, CURLOPT_TCP_NODELAY, 1L);
  if (follow > 0) {
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(e, CURLOPT_MAXREDIRS, (long)follow);
  }
  if (timeout > 0) SETOPT(e, CURLOPT_TIMEOUT_MS, (long)timeout);
  if (r->max_body >= 0) SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
  if (opt_bool(L, 1, "decode")) SETOPT(e, CURLOPT_ACCEPT_ENCODING, "");
  if (opt_bool(L, 1, "insecure")) {
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 0L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (cainfo) SETOPT(e, CURLOPT_CAINFO, cainfo);
  if (capath) SETOPT(e, CURLOPT_CAPATH, capath);
  SETOPT(e, CURLOPT_HTTP_VERSION,
         ver && strcmp(ver, "1.1") == 0 ? (long)CURL_HTTP_VERSION_1_1 : (long)CURL_HTTP_VERSION_2TLS);
  /* Headers: Go sends no Expect; curl would add one to larger bodies. */
  if ((r->hdrs = curl_slist_append(NULL, "Expect:")) == NULL) goto fail;
  if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
    for (lua_Integer i = 1; lua_geti(L, -1, i) == LUA_TSTRING; i++) {
      struct curl_slist *n = curl_slist_append(r->hdrs, lua_tostring(L, -1));
      lua_pop(L, 1);
      if (n == NULL) goto fail;
      r->hdrs = n;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  SETOPT(e, CURLOPT_HTTPHEADER, r->hdrs);
  /* Method and body. */
  if (lua_getfield(L, 1, "body") == LUA_TSTRING) {
    const char *b = lua_tolstring(L, -1, &blen);
    lua_setiuservalue(L, -2, 1);  /* curl reads it in place: anchored by the request */
    SETOPT(e, CURLOPT_POST, 1L);
    SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    SETOPT(e, CURLOPT_POSTFIELDS, b);
  } else {
    lua_pop(L, 1);
    if (opt_bool(L, 1, "stream")) {
      r->streamed = 1;
      SETOPT(e, CURLOPT_POST, 1L);
      SETOPT(e, CURLOPT_READFUNCTION, csp_httpcurl_read_cb);
      SETOPT(e, CURLOPT_READDATA, r);
    }
  }
  if (strcmp(method, "POST") == 0 && !r->streamed && lua_getiuservalue(L, -1, 1) == LUA_TNIL) {
    SETOPT(e, CURLOPT_POST, 1L);  /* an empty body, still a POST */
    SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    SETOPT(e, CURLOPT_POSTFIELDS, "");
  }
  lua_settop(L, 2);
  if (strcmp(method, "HEAD") == 0) SETOPT(e, CURLOPT_NOBODY, 1L);
  else if (strcmp(method, "GET") == 0 && !r->streamed && lua_getiuservalue(L, -1, 1) == LUA_TNIL)
    SETOPT(e, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "POST") != 0) SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
  lua_settop(L, 2);
  if (curl_multi_add_handle(M->m, e) != CURLM_OK) goto fail;
  r->attached = 1;
  M->nattached++;
  return 1;
fail:
  lua_settop(L, 2);
  req_release(r);
  return luaL_error(L, "http: cannot set up the request (out of memory?)");
}

static int req_wait_k(lua_State *L, int status, lua_KContext ctx);

/* Resumes what the goroutine paused, outside curl's callbacks. */
static void req_unpause(Req *r) {
  int mask;
  if (!r->attached || !(r->recv_paused || r->send_paused)) return;
  if (r->recv_paused && r->body.len < SINK_CHUNK) r->recv_paused = 0;
  if (r->send_paused && !r->need) r->send_paused = 0;
  mask = (r->recv_paused ? CURLPAUSE_RECV : 0) | (r->send_paused ? CURLPAUSE_SEND : 0);
  curl_easy_pause(r->e, mask);
}

/* req:wait() -> "data", chunk | "need" | "done": parks until curl has something for the Lua side:
** a piece of body for the sink, a request for more upload body, or the end. */
static int req_wait(lua_State *L) {
  Req *r = req_check(L);
  csp_Sched *S = csp_sched_get(L);
  csp_G *g;
  if (r->parked) return luaL_error(L, "http: request already waited on");
  if (r->sink && r->body.len > 0 && (r->done || r->body.len >= SINK_CHUNK)) {
    lua_pushliteral(L, "data");
    lua_pushlstring(L, r->body.p, r->body.len);
    r->body.len = 0;
    req_unpause(r);
    return 2;
  }
  if (r->done) {
    lua_pushliteral(L, "done");
    return 1;
  }
  if (r->need) {
    lua_pushliteral(L, "need");
    return 1;
  }
  g = csp_sched_self(L, S);
  r->g = r->owner = g;
  r->ticket = g->ticket;
  r->parked = 1;
  if (r->M->nwait++ == 0) csp_httpcurl_multi_refs(r->M, 1);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)r, req_wait_k);
}

static int req_wait_k(lua_State *L, int status, lua_KContext ctx) {
  Req *r = (Req *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, r->owner);
  csp_httpcurl_req_unpark(r);
  r->g = NULL;
  return req_wait(L);
}

/* req:feed(chunk|nil): the next piece of the upload body; nil or "" ends it. */
static int req_feed(lua_State *L) {
  Req *r = req_check(L);
  size_t n = 0;
  const char *s = luaL_optlstring(L, 2, NULL, &n);
  if (!r->need) return 0;
  r->need = 0;
  r->up.len = 0;
  r->up_off = 0;
  if (s == NULL || n == 0) r->up_eof = 1;
  else if (!csp_httpcurl_buf_add(&r->up, s, n)) return luaL_error(L, "not enough memory");
  req_unpause(r);
  return 0;
}

/* req:cancel(): the goroutine gave up (ctx done): the transfer stops, wait returns "done". */
static int req_cancel(lua_State *L) {
  Req *r = req_check(L);
  if (r->done) return 0;
  r->cancelled = 1;
  csp_httpcurl_req_finish(r, CURLE_ABORTED_BY_CALLBACK);
  return 0;
}

/* Pushes the header lines of b as a table: lower-case names, repeated ones joined with ", ". */
static void push_headers(lua_State *L, const Buf *b, int skip_status) {
  const char *p = b->p, *end = b->p + b->len;
  lua_newtable(L);
  if (b->len == 0) return;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *colon, *v, *ve;
    const char *le = eol ? eol : end;
    if (skip_status) {
      skip_status = 0;
      p = eol ? eol + 1 : end;
      continue;
    }
    colon = memchr(p, ':', (size_t)(le - p));
    if (colon != NULL && colon > p) {
      luaL_Buffer kb;
      v = colon + 1;
      ve = le;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      luaL_buffinit(L, &kb);
      for (const char *k = p; k < colon; k++) luaL_addchar(&kb, (char)(*k >= 'A' && *k <= 'Z' ? *k + 32 : *k));
      luaL_pushresult(&kb);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, -3);
    }
    p = le + 1;
  }
}

static const char *proto_name(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0: return "HTTP/1.0";
    case CURL_HTTP_VERSION_1_1: return "HTTP/1.1";
    case CURL_HTTP_VERSION_2_0: return "HTTP/2.0";
    case CURL_HTTP_VERSION_3: return "HTTP/3.0";
    default: return "HTTP/1.1";
  }
}

/* "host:port" of the URL curl last tried, as Go's dial errors name it. */
static void push_hostport(lua_State *L, Req *r) {
  char *ip = NULL, *eff = NULL;
  long port = 0;
  curl_easy_getinfo(r->e, CURLINFO_PRIMARY_IP, &ip);
  curl_easy_getinfo(r->e, CURLINFO_PRIMARY_PORT, &port);
  if (ip != NULL && *ip && port > 0) {
    lua_pushfstring(L, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, (int)port);
    return;
  }
  curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &eff);
  {
    CURLU *u = curl_url();
    char *host = NULL, *ps = NULL;
    if (u && eff && curl_url_set(u, CURLUPART_URL, eff, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &ps, CURLU_DEFAULT_PORT) == CURLUE_OK)
      lua_pushfstring(L, "%s:%s", host, ps);
    else
      lua_pushliteral(L, "?");
    curl_free(host);
    curl_free(ps);
    curl_url_cleanup(u);
  }
}

static const char *errno_code(long e) {
  return e ? uv_err_name(uv_translate_sys_error((int)e)) : NULL;
}

/* Pushes the error text (without the 'Method "URL": ' prefix Lua adds) and its code. */
static void push_error(lua_State *L, Req *r) {
  long oserr = 0;
  const char *code = NULL;
  const char *detail = r->err[0] ? r->err : curl_easy_strerror(r->result);
  curl_easy_getinfo(r->e, CURLINFO_OS_ERRNO, &oserr);
  switch (r->result) {
    case CURLE_COULDNT_CONNECT:
      lua_pushliteral(L, "dial tcp ");
      push_hostport(L, r);
      if (r->open_errno) oserr = r->open_errno;
      if (r->open_errno) lua_pushfstring(L, ": socket: %s", uv_strerror(uv_translate_sys_error((int)oserr)));
      else if (oserr) lua_pushfstring(L, ": connect: %s", uv_strerror(uv_translate_sys_error((int)oserr)));
      else lua_pushfstring(L, ": %s", detail);
      lua_concat(L, 3);
      code = oserr ? errno_code(oserr) : "ECONNREFUSED";
      break;
    case CURLE_COULDNT_RESOLVE_HOST: {
      char *eff = NULL;
      CURLU *u = curl_url();
      char *host = NULL;
      curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &eff);
      if (u && eff && curl_url_set(u, CURLUPART_URL, eff, 0) == CURLUE_OK)
        curl_url_get(u, CURLUPART_HOST, &host, 0);
      lua_pushfstring(L, "dial tcp: lookup %s: no such host", host ? host : "?");
      curl_free(host);
      curl_url_cleanup(u);
      code = "EAI_NONAME";
      break;
    }
    case CURLE_OPERATION_TIMEDOUT:
      lua_pushstring(L, r->head.len == 0
        ? "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        : "context deadline exceeded (Client.Timeout or context cancellation while reading body)");
      code = "ETIMEDOUT";
      break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
      if (strstr(detail, "issuer") || strstr(detail, "self-signed") || strstr(detail, "self signed"))
        lua_pushfstring(L, "tls: failed to verify certificate: x509: certificate signed by unknown authority (%s)", detail);
      else if (strstr(detail, "expired"))
        lua_pushfstring(L, "tls: failed to verify certificate: x509: certificate has expired or is not yet valid (%s)", detail);
      else if (strstr(detail, "match"))
        lua_pushfstring(L, "tls: failed to verify certificate: x509: certificate is not valid for this host (%s)", detail);
      else
        lua_pushfstring(L, "tls: %s", detail);
      code = "EX509";
      break;
    case CURLE_UNSUPPORTED_PROTOCOL: {
      char *eff = NULL;
      const char *colon;
      curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &eff);
      colon = eff ? strchr(eff, ':') : NULL;
      lua_pushfstring(L, "unsupported protocol scheme \"");
      if (colon) lua_pushlstring(L, eff, (size_t)(colon - eff));
      else lua_pushliteral(L, "");
      lua_pushliteral(L, "\"");
      lua_concat(L, 3);
      break;
    }
    case CURLE_SSL_CONNECT_ERROR:
      if (strstr(detail, "wrong version number") || strstr(detail, "packet length too long"))
        lua_pushliteral(L, "http: server gave HTTP response to HTTPS client");
      else
        lua_pushfstring(L, "tls: %s", detail);
      code = "EPROTO";
      break;
    case CURLE_GOT_NOTHING:
      lua_pushliteral(L, "EOF");
      code = "EOF";
      break;
    case CURLE_PARTIAL_FILE:
      lua_pushliteral(L, "unexpected EOF");
      code = "EOF";
      break;
    case CURLE_FILESIZE_EXCEEDED:
      lua_pushfstring(L, "http: response body too large (limit %I bytes)", (LUAI_UACINT)r->max_body);
      code = "EMSGSIZE";
      break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      if (oserr) {
        lua_pushfstring(L, "%s: %s", r->result == CURLE_RECV_ERROR ? "read" : "write",
                        uv_strerror(uv_translate_sys_error((int)oserr)));
        code = errno_code(oserr);
      } else {
        lua_pushstring(L, detail);
      }
      break;
    default:
      if (r->too_large) {
        lua_pushfstring(L, "http: response body too large (limit %I bytes)", (LUAI_UACINT)r->max_body);
        code = "EMSGSIZE";
      } else if (r->bad[0]) {
        lua_pushstring(L, r->bad);
        code = "EPROTO";
      } else if (r->hdr_too_large) {
        lua_pushfstring(L, "net/http: server response headers exceeded %d bytes; aborted", HEADER_MAX);
        code = "EMSGSIZE";
      } else {
        lua_pushstring(L, detail);
        if (oserr) code = errno_code(oserr);
      }
  }
  if (code) lua_pushstring(L, code);
  else lua_pushfstring(L, "CURLE_%d", (int)r->result);
}

/* req:result() -> response table | nil, err, code, url (the URL the error names) */
static int req_result(lua_State *L) {
  Req *r = req_check(L);
  char *eff = NULL;
  long status = 0, ver = 0;
  if (!r->done) return luaL_error(L, "http: request not done");
  curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &eff);
  if (r->result != CURLE_OK) {
    lua_pushnil(L);
    if (r->result == CURLE_TOO_MANY_REDIRECTS) {
      char *next = NULL;
      curl_easy_getinfo(r->e, CURLINFO_REDIRECT_URL, &next);
      lua_pushliteral(L, "too many redirects");
      lua_pushliteral(L, "ELOOP");
      lua_pushstring(L, next ? next : eff);
      return 4;
    }
    push_error(L, r);
    lua_pushstring(L, eff);
    return 4;
  }
  curl_easy_getinfo(r->e, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->e, CURLINFO_HTTP_VERSION, &ver);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  {  /* the reason phrase of an HTTP/1 status line; h2 has none */
    const char *p = r->head.p, *le;
    lua_pushliteral(L, "");
    if (p && r->head.len > 13 && (le = memchr(p, '\n', r->head.len)) != NULL) {
      const char *sp = memchr(p, ' ', (size_t)(le - p));
      if (sp && (sp = memchr(sp + 1, ' ', (size_t)(le - sp - 1))) != NULL) {
        const char *e = le;
        while (e > sp + 1 && (e[-1] == '\r' || e[-1] == ' ')) e--;
        lua_pop(L, 1);
        lua_pushlstring(L, sp + 1, (size_t)(e - sp - 1));
      }
    }
    lua_setfield(L, -2, "reason");
  }
  push_headers(L, &r->head, 1);
  lua_setfield(L, -2, "headers");
  if (r->trail.len > 0) {
    push_headers(L, &r->trail, 0);
    lua_setfield(L, -2, "trailers");
  }
  if (!r->sink) {
    lua_pushlstring(L, r->body.p ? r->body.p : "", r->body.len);
    lua_setfield(L, -2, "body");
    csp_httpcurl_buf_free(&r->body);
  }
  lua_pushstring(L, eff ? eff : "");
  lua_setfield(L, -2, "url");
  lua_pushstring(L, proto_name(ver));
  lua_setfield(L, -2, "proto");
  return 1;
}

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
  static const luaL_Reg meta[] = {{"__gc", req_gc}, {NULL, NULL}};
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, -1);
  Multi **box = (Multi **)lua_newuserdatauv(L, sizeof *box, 0);
  Multi *M = calloc(1, sizeof *M);
  *box = NULL;
  if (M == NULL) luaL_error(L, "not enough memory");
  *box = M;
  M->S = S;
  M->tn.fire = csp_httpcurl_timer_fire;
  M->tn.waiters = &M->nwait;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, csp_httpcurl_multi_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &csp_http_multi_key);
  /* The request metatable, under req_tag. */
  csp_newmeta(L, "csp.http request", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &req_tag);
  lua_newtable(L);
  luaL_setfuncs(L, funcs, 0);
  lua_setfield(L, -3, "http");
}
