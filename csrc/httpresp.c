/* httpresp.c: a request's outcome as Lua values: the response table (status, headers lowercased
** and joined as Go's Header.Get sees them, body or body reader), or the error worded as Go's
** net/http client words it, with a code. */
#include <stdio.h>
#include <string.h>
#include "conn.h"
#include "http.h"

static const char hdr_mt_key = 0;

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

/* What Go's transport would call malformed in a status line curl refused, from curl's words,
** or NULL (a scheme curl does not speak). curl 7.88 fails all of them, and the schemes, with
** CURLE_UNSUPPORTED_PROTOCOL. Go quotes the line or its code; csp never sees them (curl calls no
** header callback for that line), so the quoted part is left out. */
static const char *malformed(const char *detail) {
  if (strncmp(detail, "Received HTTP/0.9", 17) == 0) return "response";
  if (strcmp(detail, "Unsupported HTTP version in response") == 0 ||  /* "HTTP/1.1 abc" */
      strncmp(detail, "Unsupported response code", 25) == 0)
    return "status code";
  if (strncmp(detail, "Unsupported HTTP", 16) == 0) return "version";
  return NULL;
}

/* Pushes the error text (without the 'Method "URL": ' prefix Lua adds) and its code. */
static void push_error(lua_State *L, Req *r) {
  long oserr = 0;
  const char *code = NULL;
  const char *detail = r->err[0] ? r->err : curl_easy_strerror(r->result);
  if (r->cancelled && r->cmsg[0]) {  /* the caller's context: its own words */
    lua_pushstring(L, r->cmsg);
    lua_pushliteral(L, "ECANCELED");
    return;
  }
  curl_easy_getinfo(r->e, CURLINFO_OS_ERRNO, &oserr);
  switch (r->result) {
    case CURLE_TOO_MANY_REDIRECTS:
      lua_pushfstring(L, "stopped after %d redirects", r->follow);
      code = "ELOOP";
      break;
    case CURLE_COULDNT_CONNECT:
      lua_pushliteral(L, "dial tcp ");
      push_hostport(L, r);
      if (r->open_errno) oserr = r->open_errno;
      if (r->open_errno) lua_pushfstring(L, ": socket: %s", csp_strerror(uv_translate_sys_error((int)oserr)));
      else if (oserr) lua_pushfstring(L, ": connect: %s", csp_strerror(uv_translate_sys_error((int)oserr)));
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
      lua_pushstring(L, csp_buf_len(&r->head) == 0
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
      const char *colon, *what = malformed(detail);
      if (what != NULL) {
        lua_pushfstring(L, "net/http: HTTP/1.x transport connection broken: malformed HTTP %s", what);
        code = "EPROTO";
        break;
      }
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
    case CURLE_OUT_OF_MEMORY:  /* before the headers' end: curl's cap on a header line, past csp's */
      if (!r->in_trailers) {
        lua_pushfstring(L, "net/http: server response headers exceeded %d bytes; aborted", HEADER_MAX);
        code = "EMSGSIZE";
      } else {
        lua_pushstring(L, detail);
      }
      break;
    case CURLE_GOT_NOTHING:
      lua_pushliteral(L, "EOF");
      code = "EOF";
      break;
    case CURLE_PARTIAL_FILE:
      lua_pushliteral(L, "unexpected EOF");
      code = "EOF";
      break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
      if (oserr) {
        lua_pushfstring(L, "%s: %s", r->result == CURLE_RECV_ERROR ? "read" : "write",
                        csp_strerror(uv_translate_sys_error((int)oserr)));
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


/* Pushes its result for a failed request (done, not handed to a reader): nil, message, code,
** and the URL the message names (where a redirect chain stopped, else the last one tried). */
int csp_httpresp_fail(lua_State *L, Req *r) {
  char *at = NULL;
  lua_pushnil(L);
  push_error(L, r);
  if (r->result == CURLE_TOO_MANY_REDIRECTS) curl_easy_getinfo(r->e, CURLINFO_REDIRECT_URL, &at);
  if (at == NULL) curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &at);
  if (at != NULL) lua_pushstring(L, at);
  else lua_pushnil(L);
  return 4;
}

/* ---------------------------------------------------------------- the response */

/* headers[k] for any spelling of k: the table holds lowercase names. */
static int hdr_index(lua_State *L) {
  char small[64];
  size_t n;
  const char *k;
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  k = lua_tolstring(L, 2, &n);
  if (n < sizeof small) {
    for (size_t i = 0; i < n; i++) small[i] = (char)(k[i] >= 'A' && k[i] <= 'Z' ? k[i] + 32 : k[i]);
    lua_pushlstring(L, small, n);
  } else {
    luaL_Buffer b;
    char *d = luaL_buffinitsize(L, &b, n);
    for (size_t i = 0; i < n; i++) d[i] = (char)(k[i] >= 'A' && k[i] <= 'Z' ? k[i] + 32 : k[i]);
    luaL_pushresultsize(&b, n);
  }
  lua_rawget(L, 1);
  return 1;
}

/* Pushes a lowercase copy of p[0..n). */
static void push_lower(lua_State *L, const char *p, size_t n) {
  char small[64], *d = small;
  luaL_Buffer b;
  if (n >= sizeof small) d = luaL_buffinitsize(L, &b, n);
  for (size_t i = 0; i < n; i++) d[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
  if (d == small) lua_pushlstring(L, small, n);
  else luaL_pushresultsize(&b, n);
}

/* Pushes the header lines of b as a table: lower-case names, repeated ones joined with ", ". */
static void push_headers(lua_State *L, const csp_Buf *b, int skip_status) {
  const char *p = csp_buf_data(b), *end = csp_buf_data(b) + csp_buf_len(b);
  int nlines = 0;
  for (const char *q = p; q != NULL && q < end; q = memchr(q, '\n', (size_t)(end - q)))
    nlines++, q++;
  lua_createtable(L, 0, nlines);
  for (; p < end; skip_status = 0) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *le = eol ? eol : end, *colon, *v, *ve;
    if (!skip_status && (colon = memchr(p, ':', (size_t)(le - p))) != NULL && colon > p) {
      v = colon + 1;
      ve = le;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      push_lower(L, p, (size_t)(colon - p));
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
  lua_rawgetp(L, LUA_REGISTRYINDEX, &hdr_mt_key);
  lua_setmetatable(L, -2);
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

/* The reason phrase of an HTTP/1 status line; h2 has none. */
static void push_reason(lua_State *L, const csp_Buf *h) {
  const char *p = csp_buf_data(h), *le, *sp, *e;
  if (p == NULL || csp_buf_len(h) <= 13 || (le = memchr(p, '\n', csp_buf_len(h))) == NULL ||
      (sp = memchr(p, ' ', (size_t)(le - p))) == NULL ||
      (sp = memchr(sp + 1, ' ', (size_t)(le - sp - 1))) == NULL) {
    lua_pushliteral(L, "");
    return;
  }
  for (e = le; e > sp + 1 && (e[-1] == '\r' || e[-1] == ' '); e--) {}
  lua_pushlstring(L, sp + 1, (size_t)(e - sp - 1));
}

/* Pushes the caller's URL as given, but for its scheme in lower case (as Go's url.Parse) and a
** space escaped, as it was sent (Go's URL.String). */
static void push_given(lua_State *L, int urlidx) {
  size_t n, i;
  const char *u = lua_tolstring(L, urlidx, &n);
  for (i = 0; i < n && u[i] != ':' && !(u[i] >= 'A' && u[i] <= 'Z'); i++) {}
  if (i == n || u[i] == ':') {
    lua_pushvalue(L, urlidx);
  } else {
    i += strcspn(u + i, ":");
    push_lower(L, u, i);
    lua_pushlstring(L, u + i, n - i);
    lua_concat(L, 2);
  }
  if (memchr(u, ' ', n) != NULL) {
    luaL_gsub(L, lua_tostring(L, -1), " ", "%20");
    lua_remove(L, -2);
  }
}

/* The final URL, as Go's resp.Request.URL: the caller's spelling when curl followed no redirect
** ("http://h:p" without curl's "/", "/p?", dot segments, a fragment), else curl's, unless that
** is the caller's but for a fragment (a redirect back to it). */
static void push_url(lua_State *L, Req *r, const char *eff, int urlidx) {
  long redirects = 0;
  size_t n, base;
  const char *u, *hash;
  curl_easy_getinfo(r->e, CURLINFO_REDIRECT_COUNT, &redirects);
  if (redirects == 0 || eff == NULL || *eff == '\0') {
    push_given(L, urlidx);
    return;
  }
  u = lua_tolstring(L, urlidx, &n);
  hash = memchr(u, '#', n);
  base = hash ? (size_t)(hash - u) : n;
  if (strlen(eff) == base && memcmp(eff, u, base) == 0) push_given(L, urlidx);
  else lua_pushstring(L, eff);
}

/* req:result(url)'s values: the response table, or csp_httpresp_fail's. A body reader's
** request hands its stream to a new conn (which anchors the request: stack index 1). */
int csp_httpresp_result(lua_State *L, Req *r, int urlidx) {
  char *eff = NULL, name[128];
  long status = 0, ver = 0;
  if (r->result != CURLE_OK && !(r->st != NULL && r->ready)) return csp_httpresp_fail(L, r);
  curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &eff);
  curl_easy_getinfo(r->e, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(r->e, CURLINFO_HTTP_VERSION, &ver);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  push_reason(L, &r->head);
  lua_setfield(L, -2, "reason");
  push_headers(L, &r->head, 1);
  lua_setfield(L, -2, "headers");
  if (csp_buf_len(&r->trail) > 0) {
    push_headers(L, &r->trail, 0);
    lua_setfield(L, -2, "trailers");
  }
  if (r->st != NULL) {
    snprintf(name, sizeof name, "body of %s", eff ? eff : "?");
    csp_conn_push_src(L, r->st, name);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);  /* the conn anchors the request */
    r->handed = 1;
    lua_setfield(L, -2, "body_reader");
  } else if (!r->sink) {
    lua_pushlstring(L, csp_buf_len(&r->body) ? csp_buf_data(&r->body) : "", csp_buf_len(&r->body));
    lua_setfield(L, -2, "body");
  }
  push_url(L, r, eff, urlidx);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, proto_name(ver));
  lua_setfield(L, -2, "proto");
  return 1;
}

void csp_httpresp_open(lua_State *L) {
  static const luaL_Reg meta[] = {{"__index", hdr_index}, {NULL, NULL}};
  csp_newmeta(L, NULL, NULL, meta);  /* hdr_index ignores its upvalue */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hdr_mt_key);
}
