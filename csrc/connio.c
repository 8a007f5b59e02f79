/* connio.c: csp.conn's reads and writes, the methods that park: read, read_line, lines and
** set_max_line over the stream's buffer; write with backpressure (one write in flight, writers
** queued for their turn); close_write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "conn.h"

enum { RD_BYTES, RD_LINE, RD_LINES };

/* ---------------------------------------------------------------- timeouts */

static int err_timeout(lua_State *L) {
  return csp_fail(L, "ETIMEDOUT", "i/o timeout");
}

/* A write's timeout also says how many bytes went out (Go's n, err). */
static int err_wtimeout(lua_State *L, size_t n) {
  err_timeout(L);
  lua_pushinteger(L, (lua_Integer)n);
  return 4;
}

/* ---------------------------------------------------------------- buffered reads */

/* What a read can return from the buffer now: results pushed (count), or -1 to wait. */
static int try_bytes(lua_State *L, csp_Conn *c, csp_Stream *s, size_t n) {
  size_t avail = csp_buf_len(&s->rb);
  s->skip = 0;  /* raw reads see raw bytes, the rest of a too-long line included */
  if (avail > 0) {
    if (n > avail) n = avail;
    lua_pushlstring(L, csp_buf_data(&s->rb), n);
    csp_stream_take(s, n);
    return 1;
  }
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (s->rerr) return csp_conn_err(L, c, "read", s->rerr);
  return -1;
}

static int too_long(lua_State *L, int iter) {
  if (iter) return 0;
  return csp_fail(L, "ELINETOOLONG", "line too long");
}

/* A too-long line is dropped up to its newline; what follows it is kept. */
static int try_line(lua_State *L, csp_Conn *c, csp_Stream *s, int iter) {
  for (;;) {
    size_t avail = csp_buf_len(&s->rb), len;
    char *base = csp_buf_data(&s->rb), *nl;
    if (s->skip) {
      nl = avail ? memchr(base, '\n', avail) : NULL;
      if (nl == NULL) {
        csp_stream_take(s, avail);
        if (!s->rerr) return -1;
        s->skip = 0;
        continue;
      }
      csp_stream_take(s, (size_t)(nl - base) + 1);
      s->skip = 0;
      continue;
    }
    nl = avail > s->scan ? memchr(base + s->scan, '\n', avail - s->scan) : NULL;
    if (nl != NULL) {
      len = (size_t)(nl - base);
      if (len > s->linemax) {
        csp_stream_take(s, len + 1);
        return too_long(L, iter);
      }
      if (len > 0 && base[len - 1] == '\r') len--;
      lua_pushlstring(L, base, len);
      csp_stream_take(s, (size_t)(nl - base) + 1);
      return 1;
    }
    if (avail > s->linemax) {
      csp_stream_take(s, avail);
      s->skip = 1;
      return too_long(L, iter);
    }
    if (s->rerr) {
      if (avail > 0 && s->rerr == UV_EOF) {  /* a last line without its newline */
        len = avail;
        if (base[len - 1] == '\r') len--;
        lua_pushlstring(L, base, len);
        csp_stream_take(s, avail);
        return 1;
      }
      return iter ? 0 : csp_conn_err(L, c, "read", s->rerr);
    }
    s->scan = avail;
    return -1;
  }
}

/* ---------------------------------------------------------------- read, read_line, lines */

static int rd_k(lua_State *L, int status, lua_KContext ctx);
static int line_k(lua_State *L, int status, lua_KContext ctx);
static int lines_k(lua_State *L, int status, lua_KContext ctx);

static int rd_run(lua_State *L, csp_Conn *c, int mode) {
  static const lua_KFunction ks[] = {rd_k, line_k, lines_k};
  csp_Stream *s;
  csp_G *g;
  int r;
  if ((s = csp_conn_stream(L, c, &r)) == NULL) {
    if (mode == RD_LINES) return 0;
    return r ? csp_conn_err(L, c, "read", r) : csp_conn_errclosed(L, c, "read");
  }
  /* An expired deadline fails the call even with data buffered, as Go's Read (only a read of 0
  ** bytes returns at once, before the deadline is looked at). */
  if (s->rdl && !(mode == RD_BYTES && lua_tointeger(L, 2) == 0) && uv_hrtime() >= s->rdl)
    return mode == RD_LINES ? 0 : err_timeout(L);
  for (;;) {
    r = mode == RD_BYTES ? try_bytes(L, c, s, (size_t)lua_tointeger(L, 2))
                         : try_line(L, c, s, mode == RD_LINES);
    if (r >= 0) return r;
    if (s->rdl && uv_hrtime() >= s->rdl) return mode == RD_LINES ? 0 : err_timeout(L);
    if ((r = csp_stream_start_read(s)) == 0) break;
    s->rerr = r;
  }
  g = csp_sched_self(L, s->S);
  if (s->rdl) csp_wait_deadline(L, g, s->rdl);
  g->w.caseidx = 0;
  csp_wq_push(&s->rq, &g->w);
  csp_stream_settle(s);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, ks[mode]);
}

static int rd_resume(lua_State *L, int status, lua_KContext ctx, int mode) {
  csp_G *g = (csp_G *)ctx;
  csp_Conn *c = (csp_Conn *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_wait_undeadline(g);
  if (c->s) csp_stream_settle(c->s);
  if (g->wake == CSP_WAKE_TIMEOUT) return mode == RD_LINES ? 0 : err_timeout(L);
  return rd_run(L, c, mode);
}

static int rd_k(lua_State *L, int status, lua_KContext ctx) {
  return rd_resume(L, status, ctx, RD_BYTES);
}

static int line_k(lua_State *L, int status, lua_KContext ctx) {
  return rd_resume(L, status, ctx, RD_LINE);
}

static int lines_k(lua_State *L, int status, lua_KContext ctx) {
  return rd_resume(L, status, ctx, RD_LINES);
}

/* c:read([n]): up to n bytes (default: whatever is buffered), at least one unless at the end. */
int csp_connio_read(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  CSP_PREEMPT(L, csp_sched_get(L), csp_connio_read);
  lua_Integer n = luaL_optinteger(L, 2, LUA_MAXINTEGER);
  luaL_argcheck(L, n >= 0, 2, "negative count");
  lua_settop(L, 1);
  lua_pushinteger(L, n);
  return rd_run(L, c, RD_BYTES);
}

int csp_connio_read_line(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  CSP_PREEMPT(L, csp_sched_get(L), csp_connio_read_line);
  lua_settop(L, 1);
  return rd_run(L, c, RD_LINE);
}

static int lines_iter(lua_State *L) {
  CSP_PREEMPT(L, csp_sched_get(L), lines_iter);
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  return rd_run(L, (csp_Conn *)lua_touserdata(L, 1), RD_LINES);
}

/* for line in c:lines(): ends at the end of the stream and on any error (Go's Scanner). */
int csp_connio_lines(lua_State *L) {
  csp_conn_check(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, lines_iter, 2);
  return 1;
}

/* c:set_max_line(n): the longest line read_line returns; returns the previous limit. */
int csp_connio_set_max_line(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  csp_Stream *s;
  int r;
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)1 << 30, 2, "out of range");
  if ((s = csp_conn_stream(L, c, &r)) == NULL)
    return r ? csp_conn_err(L, c, "read", r) : csp_conn_errclosed(L, c, "read");
  lua_pushinteger(L, (lua_Integer)s->linemax);
  s->linemax = (size_t)n;
  return 1;
}

/* ---------------------------------------------------------------- write */

static int wr_turn_k(lua_State *L, int status, lua_KContext ctx);
static int wr_done_k(lua_State *L, int status, lua_KContext ctx);

/* turn: this writer was woken to go next. The string is arg 2; it stays anchored in the conn's
** user value while libuv or the pool reads it. */
static int wr_run(lua_State *L, csp_Conn *c, int turn) {
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  csp_Stream *s;
  csp_G *g;
  int r, written = 0;
  if ((s = csp_conn_stream(L, c, &r)) == NULL)
    return r ? csp_conn_err(L, c, "write", r) : csp_conn_errclosed(L, c, "write");
  if (s->kind == CSP_ST_SRC) return csp_fail(L, "EBADF", "write %s: bad file descriptor", c->name);
  if (s->wbusy || (!turn && s->wq.head)) {
    g = csp_sched_self(L, s->S);
    if (s->wdl) csp_wait_deadline(L, g, s->wdl);
    g->w.caseidx = 0;
    csp_wq_push(&s->wq, &g->w);
    return csp_sched_park(L, g, "IO wait", (lua_KContext)g, wr_turn_k);
  }
  if (s->wdl && uv_hrtime() >= s->wdl) {
    csp_stream_wake_turn(s);
    return err_wtimeout(L, (size_t)lua_tointeger(L, 3));
  }
  if (s->fd == 1) fflush(stdout);  /* what print wrote comes first */
  else if (s->fd == 2) fflush(stderr);
  if (len > 0 && s->kind != CSP_ST_FILE) {  /* one piece: the count fits uv_try_write's int */
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)(len < csp_stream_bufmax ? len : csp_stream_bufmax));
    r = uv_try_write(&s->u.s, &b, 1);
    if (r < 0 && r != UV_EAGAIN) {
      csp_stream_wake_turn(s);
      return csp_conn_err(L, c, "write", r);
    }
    if (r > 0) written = r;
  }
  if ((size_t)written == len) {
    csp_stream_wake_turn(s);
    lua_pushinteger(L, (lua_Integer)len + lua_tointeger(L, 3));  /* 3: wr_pieces' part */
    return 1;
  }
  g = csp_sched_self(L, s->S);
  if (s->wdl) csp_wait_deadline(L, g, s->wdl);
  s->wp = p + written;
  s->wlen = len - (size_t)written;
  s->wsent = (size_t)written;
  s->wcancel = 0;
  if (s->kind == CSP_ST_FILE) {
    r = csp_stream_file_write(s);
  } else {
    s->wreq.data = s;
    r = csp_stream_write(&s->wreq, &s->u.s, s->wp, s->wlen, csp_stream_write_cb);
  }
  if (r != 0) {
    s->wlen = 0;
    csp_wait_undeadline(g);
    csp_stream_wake_turn(s);
    return csp_conn_err(L, c, "write", r);
  }
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 1);
  s->wbusy = 1;
  return csp_req_park(L, &s->wr, g, "IO wait", (lua_KContext)g, wr_done_k);
}

static int wr_turn_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_wait_undeadline(g);
  if (g->wake == CSP_WAKE_TIMEOUT) return err_wtimeout(L, (size_t)lua_tointeger(L, 3));
  return wr_run(L, (csp_Conn *)lua_touserdata(L, 1), 1);
}

/* Shuts a socket's sending side now, behind libuv's back: the bytes libuv still queues fail
** (EPIPE) instead of going out later, or of holding a uv_shutdown queued behind them. */
static void wr_shut(csp_Stream *s) {
  uv_os_fd_t fd;
  if (s->kind == CSP_ST_TCP && uv_fileno(&s->u.h, &fd) == 0) shutdown(fd, SHUT_WR);
}

/* The write in flight timed out: what is out is counted, the rest is not sent (Go: after a
** write deadline the connection is unusable for writing). A socket's sending side is shut, so
** libuv's queued bytes fail (EPIPE) instead of going out later; a file write stops after its
** current chunk; a pipe or tty cannot take back what libuv queued. */
static size_t wr_abandon(csp_Stream *s) {
  size_t n;
  if (s->kind == CSP_ST_FILE) {  /* the chunk on the pool may still land: not counted */
    s->wcancel = 1;
    return s->wsent;
  }
  n = s->wsent + s->wlen - uv_stream_get_write_queue_size(&s->u.s);  /* ours is the only write */
  wr_shut(s);
  return n;
}

/* Arg 3: what wr_pieces' writev took. A close took the write back from its writer (s NULL). */
static int wr_done_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_Conn *c = (csp_Conn *)lua_touserdata(L, 1);
  csp_Stream *s = c->s;
  int st, done;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_wait_undeadline(g);
  if (s == NULL) {
    if (g->wake == CSP_WAKE_TIMEOUT) return err_wtimeout(L, (size_t)lua_tointeger(L, 3));
    return csp_conn_errclosed(L, c, "write");
  }
  done = csp_req_end(&s->wr);
  if (g->wake == CSP_WAKE_TIMEOUT) {
    size_t n = wr_abandon(s);
    if (done) csp_stream_write_end(s);  /* else the write's callback frees the slot */
    return err_wtimeout(L, n + (size_t)lua_tointeger(L, 3));
  }
  st = s->wstatus;
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  csp_stream_write_end(s);
  if (st < 0) return csp_conn_err(L, c, "write", st);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 2) + lua_tointeger(L, 3));
  return 1;
}

#define WR_IOV 8  /* pieces one writev may take (c:write(a, b, ...)) */

/* c:write of several pieces while nothing else is being written: one uv_try_write (writev) of
** them all, without building their concatenation (an echo or a chat line is `line, "\n"`). What
** the kernel does not take is concatenated and goes the ordinary way, arg 3 holding the count
** already out. Returns -1 when the ordinary path must take the whole write. */
static int wr_pieces(lua_State *L, csp_Conn *c, int n, uv_buf_t *b, size_t total) {
  size_t skip;
  csp_Stream *s = c->s;
  int r, first;
  if (n - 1 > WR_IOV || s == NULL || s->kind >= CSP_ST_FILE || s->fd == 1 || s->fd == 2 ||
      s->wbusy || s->wq.head || s->wdl || total == 0 || total > INT32_MAX)
    return -1;
  r = uv_try_write(&s->u.s, b, (unsigned)(n - 1));
  if (r < 0 && r != UV_EAGAIN) return csp_conn_err(L, c, "write", r);
  if ((size_t)(skip = r > 0 ? (size_t)r : 0) == total) {
    lua_pushinteger(L, (lua_Integer)total);
    return 1;
  }
  for (first = 2; skip >= (size_t)b[first - 2].len; first++) skip -= b[first - 2].len;
  if (skip > 0) {
    lua_pushlstring(L, b[first - 2].base + skip, b[first - 2].len - skip);
    lua_replace(L, first);
  }
  lua_concat(L, n - first + 1);  /* the rest, at index first */
  if (first > 2) {
    lua_replace(L, 2);
    lua_settop(L, 2);
  }
  lua_pushinteger(L, r > 0 ? r : 0);
  return wr_run(L, c, 0);
}

/* c:write(s, ...): returns the byte count once libuv (or the kernel) has taken all of it;
** several arguments go out as one write, as with Lua's file:write. */
int csp_connio_write(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  CSP_PREEMPT(L, csp_sched_get(L), csp_connio_write);
  int n = lua_gettop(L);
  uv_buf_t b[WR_IOV];
  size_t total = 0;
  for (int i = 2; i <= n; i++) {
    size_t len;
    const char *p = luaL_checklstring(L, i, &len);  /* the string stays at i: p stays valid */
    if (i - 2 < WR_IOV) b[i - 2] = uv_buf_init((char *)p, (unsigned)len);
    total += len;
  }
  if (n > 2) {
    int r = wr_pieces(L, c, n, b, total);
    if (r >= 0) return r;
    lua_concat(L, n - 1);
  } else if (n < 2) {
    luaL_checklstring(L, 2, NULL);
  }
  return wr_run(L, c, 0);
}

/* ---------------------------------------------------------------- close_write */

static int shut_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  csp_Conn *c = (csp_Conn *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (c->s == NULL) return csp_conn_errclosed(L, c, "shutdown");
  if (c->s->sstatus < 0) return csp_conn_err(L, c, "shutdown", c->s->sstatus);
  lua_pushboolean(L, 1);
  return 1;
}

/* c:close_write(): half-close (tcp shutdown); other streams close. As Go's CloseWrite, the
** socket is shut at once: a write still blocked on a peer that does not read fails (EPIPE)
** rather than hold the shutdown, which libuv queues behind it, forever. */
int csp_connio_close_write(lua_State *L) {
  csp_Conn *c = csp_conn_check(L);
  csp_Stream *s;
  csp_G *g;
  int r;
  if ((s = csp_conn_stream(L, c, &r)) == NULL)
    return r ? csp_conn_err(L, c, "shutdown", r) : csp_conn_errclosed(L, c, "shutdown");
  if (s->kind != CSP_ST_TCP) return csp_conn_close(L);
  if (s->shut) {
    lua_pushboolean(L, 1);
    return 1;
  }
  g = csp_sched_self(L, s->S);
  if (uv_stream_get_write_queue_size(&s->u.s) > 0) wr_shut(s);
  s->sreq.data = s;
  if ((r = uv_shutdown(&s->sreq, &s->u.s, csp_stream_shutdown_cb)) != 0) return csp_conn_err(L, c, "shutdown", r);
  s->shut = 1;
  g->w.caseidx = 0;
  csp_wq_push(&s->sq, &g->w);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, shut_k);
}

