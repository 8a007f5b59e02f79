/* conn.c: the csp.conn userdata over a stream (connio.c: its reads and writes): making one for a
** connection or a standard descriptor, errors, addresses, deadlines, close; csp.stdin, csp.stdout
** and csp.stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "conn.h"

const char csp_conn_tag = 0;

/* ---------------------------------------------------------------- errors */

int csp_conn_err(lua_State *L, csp_Conn *c, const char *op, int code) {
  if (code == UV_EOF) return csp_fail(L, uv_err_name(code), "EOF");
  if (c->s != NULL && c->s->kind == CSP_ST_SRC) return c->s->src->fail(L, c->s);
  return csp_fail(L, uv_err_name(code), "%s %s: %s", op, c->name, csp_strerror(code));
}

int csp_conn_errclosed(lua_State *L, csp_Conn *c, const char *op) {
  return csp_fail(L, "EBADF", "%s %s: %s", op, c->name,
                  c->isnet ? "use of closed network connection" : "file already closed");
}

/* ---------------------------------------------------------------- the userdata */

static csp_Conn *conn_new(lua_State *L) {
  csp_Conn *c = (csp_Conn *)lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->tag = &csp_conn_tag;
  c->lazy = -1;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &csp_conn_tag);
  lua_setmetatable(L, -2);
  return c;
}

/* csp_conn_stream's slow path: opens the stdio descriptor on first use. */
csp_Stream *csp_conn_stdio(lua_State *L, csp_Conn *c, int *err) {
  if ((c->s = csp_stdio_open(L, c->lazy, err)) != NULL) c->lazy = -1;
  return c->s;
}

void csp_conn_addrname(const struct sockaddr *sa, char *out, size_t size) {
  char ip[64];
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(out, size, "[%s]:%d", ip, ntohs(a->sin6_port));
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(out, size, "%s:%d", ip, ntohs(a->sin_port));
  } else {
    snprintf(out, size, "?");
  }
}

void csp_conn_push(lua_State *L, csp_Stream *s) {
  csp_Conn *c = conn_new(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0)
    csp_conn_addrname((struct sockaddr *)&ss, c->laddr, sizeof c->laddr);
  len = sizeof ss;
  if (uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0)
    csp_conn_addrname((struct sockaddr *)&ss, c->raddr, sizeof c->raddr);
  snprintf(c->name, sizeof c->name, "tcp %s->%s", c->laddr, c->raddr);
  c->isnet = 1;
  uv_tcp_nodelay(&s->u.tcp, 1);  /* Go's default: small writes go out at once */
  uv_unref(&s->u.h);
  c->s = s;
}

void csp_conn_push_src(lua_State *L, csp_Stream *s, const char *name) {
  csp_Conn *c = conn_new(L);
  snprintf(c->name, sizeof c->name, "%s", name);
  c->s = s;
}

/* ---------------------------------------------------------------- close */

/* c:close(): goroutines blocked on c return an error; closing twice returns one. */
int csp_conn_close(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  csp_Stream *s = c->s;
  if (s == NULL) {
    if (c->lazy < 0) return csp_conn_errclosed(L, c, "close");
    c->lazy = -1;
  } else {
    c->s = NULL;
    csp_stream_close(s, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_gc(lua_State *L) {
  csp_Conn *c = (csp_Conn *)lua_touserdata(L, 1);
  if (c->s) {
    csp_Stream *s = c->s;
    c->s = NULL;
    csp_stream_close(s, 0);
  }
  return 0;
}

/* ---------------------------------------------------------------- addresses, deadlines */

static int conn_addr(lua_State *L, const char *a) {
  if (*a) lua_pushstring(L, a);
  else lua_pushnil(L);
  return 1;
}

static int conn_remote_addr(lua_State *L) {
  return conn_addr(L, csp_conn_check(L)->raddr);
}

static int conn_local_addr(lua_State *L) {
  return conn_addr(L, csp_conn_check(L)->laddr);
}

/* A deadline set while goroutines wait applies to them too (Go). */
static void retime_g(lua_State *L, csp_G *g, uint64_t when) {
  csp_wait_undeadline(g);
  if (when) csp_wait_deadline(L, g, when);
}

static void retime(lua_State *L, csp_WaitQ *q, uint64_t when) {
  for (csp_Waiter *w = q->head; w != NULL; w = w->next) retime_g(L, w->g, when);
}

static int set_deadline(lua_State *L, int which) {
  csp_Conn *c = csp_conn_check(L);
  uint64_t when = 0;
  csp_Stream *s;
  int r;
  if (!lua_isnoneornil(L, 2)) {
    double t = csp_checknumber(L, 2);
    when = csp_timer_secs(t) + 1;  /* 1 for the past: operations time out at once */
  }
  if ((s = csp_conn_stream(L, c, &r)) == NULL)
    return r ? csp_conn_err(L, c, "set", r) : csp_conn_errclosed(L, c, "set");
  if (which & 1) {
    s->rdl = when;
    retime(L, &s->rq, when);
  }
  if (which & 2) {
    s->wdl = when;
    retime(L, &s->wq, when);
    if (s->wr.g && s->wr.g->state == CSP_G_WAITING) retime_g(L, s->wr.g, when);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_set_deadline(lua_State *L) {
  return set_deadline(L, 3);
}

static int conn_set_read_deadline(lua_State *L) {
  return set_deadline(L, 1);
}

static int conn_set_write_deadline(lua_State *L) {
  return set_deadline(L, 2);
}

static int conn_tostring(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  if (c->s == NULL && c->lazy < 0) lua_pushfstring(L, "csp.conn (%s, closed)", c->name);
  else lua_pushfstring(L, "csp.conn (%s)", c->name);
  return 1;
}

/* ---------------------------------------------------------------- registration */

static void stdio_new(lua_State *L, int fd, const char *name) {
  csp_Conn *c = conn_new(L);
  c->lazy = fd;
  snprintf(c->name, sizeof c->name, "%s", name);
}

/* Stack: [module, sched]. */
void csp_conn_open(lua_State *L) {
  const char *bm = getenv("CSP_BUFMAX");
  if (bm && strtoull(bm, NULL, 10) > 0 && strtoull(bm, NULL, 10) < CSP_BUFMAX_DEFAULT)
    csp_stream_bufmax = (size_t)strtoull(bm, NULL, 10);
  static const luaL_Reg methods[] = {
    {"read", csp_connio_read}, {"read_line", csp_connio_read_line}, {"lines", csp_connio_lines},
    {"write", csp_connio_write}, {"close_write", csp_connio_close_write}, {"close", csp_conn_close},
    {"remote_addr", conn_remote_addr}, {"local_addr", conn_local_addr},
    {"set_deadline", conn_set_deadline}, {"set_read_deadline", conn_set_read_deadline},
    {"set_write_deadline", conn_set_write_deadline}, {"set_max_line", csp_connio_set_max_line},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", conn_gc}, {"__close", csp_conn_close}, {"__tostring", conn_tostring}, {NULL, NULL}
  };
  csp_newmeta(L, "csp.conn", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &csp_conn_tag);

  stdio_new(L, 0, "/dev/stdin");
  lua_setfield(L, -3, "stdin");
  stdio_new(L, 1, "/dev/stdout");
  lua_setfield(L, -3, "stdout");
  stdio_new(L, 2, "/dev/stderr");
  lua_setfield(L, -3, "stderr");
}
