/* stream.c: buffered byte streams over libuv (tcp, pipe, tty; regular files on the thread pool):
** read, read_line, lines, write with backpressure, close_write, close, deadlines; csp.stdin,
** csp.stdout and csp.stderr. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stream.h"

#define LINEMAX  65536  /* default longest line read_line returns */
#define BUF_INIT 4096   /* a stream's first read buffer: 10,000 idle conns must stay cheap */
#define BUF_READ 2048   /* smallest free space worth handing to a read */
#define MAX_NS   ((uint64_t)1 << 62)

static const char conn_tag = 0;

/* The Lua side of a stream. s is NULL once closed, or while a stdio stream is not opened yet
** (lazy >= 0: its descriptor): opening stdio makes it non-blocking, so only its users pay. */
typedef struct Conn {
  const void *tag;
  csp_Stream *s;
  int lazy;
  int isnet;
  char name[136];      /* for messages: "tcp 127.0.0.1:8000->127.0.0.1:41234", "/dev/stdin" */
  char laddr[64], raddr[64];
} Conn;

enum { RD_BYTES, RD_LINE, RD_LINES };

/* ---------------------------------------------------------------- errors */

static int err_code(lua_State *L, Conn *c, const char *op, int code) {
  if (code == UV_EOF) return csp_fail(L, uv_err_name(code), "EOF");
  return csp_fail(L, uv_err_name(code), "%s %s: %s", op, c->name, uv_strerror(code));
}

static int err_closed(lua_State *L, Conn *c, const char *op) {
  return csp_fail(L, "EBADF", "%s %s: %s", op, c->name,
                  c->isnet ? "use of closed network connection" : "file already closed");
}

static int err_timeout(lua_State *L) {
  return csp_fail(L, "ETIMEDOUT", "i/o timeout");
}

/* ---------------------------------------------------------------- deadlines */

static void io_timeout_fire(csp_Sched *S, csp_TimerNode *t) {
  csp_G *g = (csp_G *)((char *)t - offsetof(csp_G, tn));
  if (g->state != CSP_G_WAITING) return;  /* already woken by its operation */
  csp_wq_unlink(&g->w);
  g->wake = CSP_WAKE_TIMEOUT;
  csp_sched_ready(S, g, 0);
}

/* The heap counts the node in ntimed (a goroutine waits on it) while it is armed. */
void csp_io_deadline(lua_State *L, csp_Sched *S, csp_G *g, uint64_t when) {
  g->tn.fire = io_timeout_fire;
  g->tn.waiters = NULL;
  csp_timer_add(L, S, &g->tn, when);
}

void csp_io_undeadline(csp_Sched *S, csp_G *g) {
  if (g->tn.pos) csp_timer_del(S, &g->tn);
}

/* A deadline set while goroutines wait applies to them too (Go). */
static void retime(lua_State *L, csp_Sched *S, csp_WaitQ *q, uint64_t when) {
  for (csp_Waiter *w = q->head; w != NULL; w = w->next) {
    csp_io_undeadline(S, w->g);
    if (when) csp_io_deadline(L, S, w->g, when);
  }
}

/* ---------------------------------------------------------------- stdio descriptors */

/* libuv makes a descriptor non-blocking (and may reopen a tty): the flags it had are put back
** when the last stream on it closes, and at exit. */
static int stdio_users[3], stdio_flags[3], stdio_atexit;
static pthread_mutex_t stdio_mu = PTHREAD_MUTEX_INITIALIZER;  /* csp.threads share them */

static void stdio_restore(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (stdio_users[fd] > 0) fcntl(fd, F_SETFL, stdio_flags[fd]);
    stdio_users[fd] = 0;
  }
  uv_tty_reset_mode();
}

static void stdio_acquire(int fd) {
  pthread_mutex_lock(&stdio_mu);
  if (stdio_users[fd]++ == 0) stdio_flags[fd] = fcntl(fd, F_GETFL);
  if (!stdio_atexit) {
    stdio_atexit = 1;
    atexit(stdio_restore);  /* also runs if the library is unloaded (glibc ties it to the DSO) */
  }
  pthread_mutex_unlock(&stdio_mu);
}

static void stdio_release(int fd) {
  pthread_mutex_lock(&stdio_mu);
  if (stdio_users[fd] > 0 && --stdio_users[fd] == 0) {
    fcntl(fd, F_SETFL, stdio_flags[fd]);
    uv_tty_reset_mode();
  }
  pthread_mutex_unlock(&stdio_mu);
}

/* ---------------------------------------------------------------- stream memory */

csp_Stream *csp_stream_alloc(csp_Sched *S, int kind) {
  csp_Stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->S = S;
  s->kind = (uint8_t)kind;
  s->fd = -1;
  s->linemax = LINEMAX;
  return s;
}

static void st_free(csp_Stream *s) {
  free(s->buf);
  free(s);
}

static void st_close_cb(uv_handle_t *h) {
  st_free((csp_Stream *)h);
}

void csp_stream_discard(csp_Stream *s) {
  s->closed = 1;
  uv_close(&s->u.h, st_close_cb);
}

/* The handle keeps the program alive only while a goroutine waits to read from it (writes,
** connects and shutdowns are libuv requests: active while in flight). */
static void st_settle(csp_Stream *s) {
  if (s->kind == CSP_ST_FILE || s->closed) return;
  if (s->rq.head) uv_ref(&s->u.h);
  else uv_unref(&s->u.h);
}

static void wake_all(csp_Sched *S, csp_WaitQ *q, int how) {
  csp_Waiter *w;
  while ((w = csp_wq_take(q)) != NULL) {
    w->g->wake = (uint8_t)how;
    csp_sched_ready(S, w->g, 0);
  }
}

static void wake_turn(csp_Stream *s) {
  csp_Waiter *w = csp_wq_take(&s->wq);
  if (w) csp_sched_ready(s->S, w->g, 0);
}

/* Closes s: parked goroutines wake (or, from __gc, are merely unlinked) and the memory goes
** in the close callback, or once the thread pool is done with a file's buffers. */
static void st_close(csp_Stream *s, int wake) {
  csp_WaitQ *qs[4] = {&s->rq, &s->wq, &s->dq, &s->sq};
  s->closed = 1;
  for (int i = 0; i < 4; i++) {
    if (wake) wake_all(s->S, qs[i], CSP_WAKE_CLOSED);
    else csp_wq_detach(qs[i]);
  }
  if (s->fd >= 0) stdio_release(s->fd);
  if (s->kind == CSP_ST_FILE) {
    if (!s->reading && s->wlen == 0) st_free(s);
    return;
  }
  uv_close(&s->u.h, st_close_cb);
}

/* ---------------------------------------------------------------- reading */

/* Reading stops once this much is buffered: enough for the longest line plus its newline. */
static size_t st_hw(csp_Stream *s) {
  return s->linemax + 1 > 65536 ? s->linemax + 1 : 65536;
}

/* Free space at the buffer's tail for the next read: compacts, then grows up to the bound. */
static size_t buf_room(csp_Stream *s) {
  size_t used = s->tail - s->head, hw = st_hw(s), ncap;
  char *nb;
  if (s->cap - s->tail >= BUF_READ) return s->cap - s->tail;
  if (s->head > 0) {
    memmove(s->buf, s->buf + s->head, used);
    s->head = 0;
    s->tail = used;
    if (s->cap - s->tail >= BUF_READ) return s->cap - s->tail;
  }
  if (used >= hw) return s->cap - s->tail;
  ncap = s->cap ? s->cap * 2 : BUF_INIT;
  while (ncap < used + BUF_READ) ncap *= 2;
  if (ncap > hw + BUF_READ) ncap = hw + BUF_READ;
  if (ncap <= s->cap || (nb = realloc(s->buf, ncap)) == NULL) return s->cap - s->tail;
  s->buf = nb;
  s->cap = ncap;
  return ncap - s->tail;
}

static void buf_take(csp_Stream *s, size_t n) {
  s->head += n;
  s->scan = 0;
  if (s->head == s->tail) s->head = s->tail = 0;
}

static void st_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  csp_Stream *s = (csp_Stream *)h;
  size_t room = buf_room(s);
  (void)suggested;
  *b = uv_buf_init(room ? s->buf + s->tail : NULL, (unsigned)room);
}

static void st_read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  csp_Stream *s = (csp_Stream *)h;
  (void)b;
  if (n == 0) return;  /* EAGAIN */
  if (n > 0) {
    s->tail += (size_t)n;
    if (s->tail - s->head < st_hw(s)) goto wake;
  } else if (n != UV_ENOBUFS || s->tail - s->head < st_hw(s)) {
    s->rerr = (int)n;  /* EOF, an error, or no memory for the buffer */
  }
  uv_read_stop(h);     /* end of stream, or the buffer is full: the kernel holds the rest */
  s->reading = 0;
wake:
  wake_all(s->S, &s->rq, CSP_WAKE_OK);
  st_settle(s);
}

static void fs_read_cb(uv_fs_t *req) {
  csp_Stream *s = (csp_Stream *)req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  s->reading = 0;
  if (s->closed) {
    if (s->wlen == 0) st_free(s);
    return;
  }
  if (n > 0) s->tail += (size_t)n;
  else s->rerr = n == 0 ? UV_EOF : (int)n;
  wake_all(s->S, &s->rq, CSP_WAKE_OK);
}

/* Starts reading ahead (a stream keeps reading until its buffer is full); 0 or an error. */
static int st_start_read(csp_Stream *s) {
  int r;
  if (s->reading || s->rerr) return 0;
  if (s->kind == CSP_ST_FILE) {
    size_t room = buf_room(s);
    uv_buf_t b;
    if (room == 0) return UV_ENOBUFS;
    b = uv_buf_init(s->buf + s->tail, (unsigned)room);
    s->rfs.data = s;
    r = uv_fs_read(s->S->loop, &s->rfs, s->fd, &b, 1, -1, fs_read_cb);
  } else {
    r = uv_read_start(&s->u.s, st_alloc_cb, st_read_cb);
  }
  if (r == 0) s->reading = 1;
  return r;
}

/* What a read can return from the buffer now: results pushed (count), or -1 to wait. */
static int try_bytes(lua_State *L, Conn *c, csp_Stream *s, size_t n) {
  size_t avail = s->tail - s->head;
  s->skip = 0;  /* raw reads see raw bytes, the rest of a too-long line included */
  if (avail > 0) {
    if (n > avail) n = avail;
    lua_pushlstring(L, s->buf + s->head, n);
    buf_take(s, n);
    return 1;
  }
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (s->rerr) return err_code(L, c, "read", s->rerr);
  return -1;
}

static int too_long(lua_State *L, int iter) {
  if (iter) return 0;
  return csp_fail(L, "ELINETOOLONG", "line too long");
}

/* A too-long line is dropped up to its newline; what follows it is kept. */
static int try_line(lua_State *L, Conn *c, csp_Stream *s, int iter) {
  for (;;) {
    size_t avail = s->tail - s->head, len;
    char *base = s->buf + s->head, *nl;
    if (s->skip) {
      nl = avail ? memchr(base, '\n', avail) : NULL;
      if (nl == NULL) {
        buf_take(s, avail);
        if (!s->rerr) return -1;
        s->skip = 0;
        continue;
      }
      buf_take(s, (size_t)(nl - base) + 1);
      s->skip = 0;
      continue;
    }
    nl = avail > s->scan ? memchr(base + s->scan, '\n', avail - s->scan) : NULL;
    if (nl != NULL) {
      len = (size_t)(nl - base);
      if (len > s->linemax) {
        buf_take(s, len + 1);
        return too_long(L, iter);
      }
      if (len > 0 && base[len - 1] == '\r') len--;
      lua_pushlstring(L, base, len);
      buf_take(s, (size_t)(nl - base) + 1);
      return 1;
    }
    if (avail > s->linemax) {
      buf_take(s, avail);
      s->skip = 1;
      return too_long(L, iter);
    }
    if (s->rerr) {
      if (avail > 0 && s->rerr == UV_EOF) {  /* a last line without its newline */
        len = avail;
        if (base[len - 1] == '\r') len--;
        lua_pushlstring(L, base, len);
        buf_take(s, avail);
        return 1;
      }
      return iter ? 0 : err_code(L, c, "read", s->rerr);
    }
    s->scan = avail;
    return -1;
  }
}

/* ---------------------------------------------------------------- stdio */

static csp_Stream *stdio_open(lua_State *L, int fd, int *err) {
  csp_Sched *S = csp_sched_get(L);
  uv_handle_type t = uv_guess_handle(fd);
  int kind, r = 0;
  csp_Stream *s;
  switch (t) {
    case UV_TTY: kind = CSP_ST_TTY; break;
    case UV_NAMED_PIPE: kind = CSP_ST_PIPE; break;
    case UV_TCP: kind = CSP_ST_TCP; break;
    case UV_FILE: kind = CSP_ST_FILE; break;
    default: *err = UV_EBADF; return NULL;
  }
  if ((s = csp_stream_alloc(S, kind)) == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  stdio_acquire(fd);
  s->fd = fd;
  switch (kind) {
    case CSP_ST_TTY:
      if (uv_tty_init(S->loop, &s->u.tty, fd, fd == 0) != 0) s->kind = CSP_ST_FILE;  /* not registered */
      break;
    case CSP_ST_PIPE:
      uv_pipe_init(S->loop, &s->u.pipe, 0);
      r = uv_pipe_open(&s->u.pipe, fd);
      break;
    case CSP_ST_TCP:
      uv_tcp_init(S->loop, &s->u.tcp);
      r = uv_tcp_open(&s->u.tcp, fd);
      break;
  }
  if (r != 0) {
    *err = r;
    stdio_release(fd);
    s->fd = -1;
    csp_stream_discard(s);
    return NULL;
  }
  if (s->kind != CSP_ST_FILE) uv_unref(&s->u.h);
  return s;
}

/* ---------------------------------------------------------------- conn objects */

static Conn *conn_new(lua_State *L) {
  Conn *c = (Conn *)lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->tag = &conn_tag;
  c->lazy = -1;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &conn_tag);
  lua_setmetatable(L, -2);
  return c;
}

static Conn *conn_check(lua_State *L) {
  return (Conn *)csp_checktag(L, 1, &conn_tag, sizeof(Conn), "csp.conn");
}

/* The conn's stream, opening stdio on first use; NULL when closed (or *err: stdio failed). */
static csp_Stream *conn_stream(lua_State *L, Conn *c, int *err) {
  *err = 0;
  if (c->s != NULL || c->lazy < 0) return c->s;
  if ((c->s = stdio_open(L, c->lazy, err)) != NULL) c->lazy = -1;
  return c->s;
}

void csp_addr_name(const struct sockaddr *sa, char *out, size_t size) {
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

void csp_stream_push(lua_State *L, csp_Stream *s) {
  Conn *c = conn_new(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0)
    csp_addr_name((struct sockaddr *)&ss, c->laddr, sizeof c->laddr);
  len = sizeof ss;
  if (uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len) == 0)
    csp_addr_name((struct sockaddr *)&ss, c->raddr, sizeof c->raddr);
  snprintf(c->name, sizeof c->name, "tcp %s->%s", c->laddr, c->raddr);
  c->isnet = 1;
  uv_tcp_nodelay(&s->u.tcp, 1);  /* Go's default: small writes go out at once */
  uv_unref(&s->u.h);
  c->s = s;
}

/* ---------------------------------------------------------------- read, read_line, lines */

static int rd_k(lua_State *L, int status, lua_KContext ctx);
static int line_k(lua_State *L, int status, lua_KContext ctx);
static int lines_k(lua_State *L, int status, lua_KContext ctx);

static int rd_run(lua_State *L, Conn *c, int mode) {
  static const lua_KFunction ks[] = {rd_k, line_k, lines_k};
  csp_Stream *s;
  csp_G *g;
  int r;
  if ((s = conn_stream(L, c, &r)) == NULL) {
    if (mode == RD_LINES) return 0;
    return r ? err_code(L, c, "read", r) : err_closed(L, c, "read");
  }
  for (;;) {
    r = mode == RD_BYTES ? try_bytes(L, c, s, (size_t)lua_tointeger(L, 2))
                         : try_line(L, c, s, mode == RD_LINES);
    if (r >= 0) return r;
    if (s->rdl && uv_hrtime() >= s->rdl) return mode == RD_LINES ? 0 : err_timeout(L);
    if ((r = st_start_read(s)) == 0) break;
    s->rerr = r;
  }
  g = csp_sched_self(L, s->S);
  if (s->rdl) csp_io_deadline(L, s->S, g, s->rdl);
  g->w.caseidx = 0;
  csp_wq_push(&s->rq, &g->w);
  st_settle(s);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, ks[mode]);
}

static int rd_resume(lua_State *L, int status, lua_KContext ctx, int mode) {
  csp_G *g = (csp_G *)ctx;
  Conn *c = (Conn *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_io_undeadline(g->S, g);
  if (c->s) st_settle(c->s);
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
static int conn_read(lua_State *L) {
  Conn *c = conn_check(L);
  lua_Integer n = luaL_optinteger(L, 2, LUA_MAXINTEGER);
  luaL_argcheck(L, n >= 0, 2, "negative count");
  lua_settop(L, 1);
  lua_pushinteger(L, n);
  return rd_run(L, c, RD_BYTES);
}

static int conn_read_line(lua_State *L) {
  Conn *c = conn_check(L);
  lua_settop(L, 1);
  return rd_run(L, c, RD_LINE);
}

static int lines_iter(lua_State *L) {
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));
  return rd_run(L, (Conn *)lua_touserdata(L, 1), RD_LINES);
}

/* for line in c:lines(): ends at the end of the stream and on any error (Go's Scanner). */
static int conn_lines(lua_State *L) {
  conn_check(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, lines_iter, 2);
  return 1;
}

/* c:set_max_line(n): the longest line read_line returns; returns the previous limit. */
static int conn_set_max_line(lua_State *L) {
  Conn *c = conn_check(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  csp_Stream *s;
  int r;
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)1 << 30, 2, "out of range");
  if ((s = conn_stream(L, c, &r)) == NULL)
    return r ? err_code(L, c, "read", r) : err_closed(L, c, "read");
  lua_pushinteger(L, (lua_Integer)s->linemax);
  s->linemax = (size_t)n;
  return 1;
}

/* ---------------------------------------------------------------- write */

static void wr_complete(csp_Stream *s, int status) {
  csp_Waiter *w;
  s->wlen = 0;
  if (s->closed) {
    s->wbusy = 0;
    return;
  }
  s->wstatus = status;
  if ((w = csp_wq_take(&s->dq)) != NULL) {  /* its writer clears wbusy once it has the status */
    s->wdone = 1;
    csp_sched_ready(s->S, w->g, 0);
    return;
  }
  s->wbusy = 0;  /* its writer gave up (deadline): the next one may go */
  wake_turn(s);
}

static void st_write_cb(uv_write_t *req, int status) {
  wr_complete((csp_Stream *)req->data, status);
}

static int file_write_next(csp_Stream *s);

static void fs_write_cb(uv_fs_t *req) {
  csp_Stream *s = (csp_Stream *)req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (s->closed) {
    s->wlen = 0;
    s->wbusy = 0;
    if (!s->reading) st_free(s);
    return;
  }
  if (n > 0 && (size_t)n < s->wlen) {  /* short write: the rest, still on the pool */
    int r;
    s->wp += n;
    s->wlen -= (size_t)n;
    if ((r = file_write_next(s)) == 0) return;
    n = r;
  } else if (n == 0) {
    n = UV_EIO;
  }
  wr_complete(s, n < 0 ? (int)n : 0);
}

static int file_write_next(csp_Stream *s) {
  uv_buf_t b = uv_buf_init((char *)s->wp, (unsigned)s->wlen);
  s->wfs.data = s;
  return uv_fs_write(s->S->loop, &s->wfs, s->fd, &b, 1, -1, fs_write_cb);
}

static int wr_turn_k(lua_State *L, int status, lua_KContext ctx);
static int wr_done_k(lua_State *L, int status, lua_KContext ctx);

/* turn: this writer was woken to go next. The string is arg 2; it stays anchored in the conn's
** user value while libuv or the pool reads it. */
static int wr_run(lua_State *L, Conn *c, int turn) {
  size_t len;
  const char *p = lua_tolstring(L, 2, &len);
  csp_Stream *s;
  csp_G *g;
  int r, written = 0;
  if ((s = conn_stream(L, c, &r)) == NULL)
    return r ? err_code(L, c, "write", r) : err_closed(L, c, "write");
  if (s->wbusy && s->wdone && s->wowner == &s->S->maing && s->wowner->ticket != s->wticket)
    s->wbusy = s->wdone = 0;  /* main's wait for it was cancelled by a caught panic */
  if (s->wbusy || (!turn && s->wq.head)) {
    g = csp_sched_self(L, s->S);
    if (s->wdl) csp_io_deadline(L, s->S, g, s->wdl);
    g->w.caseidx = 0;
    csp_wq_push(&s->wq, &g->w);
    return csp_sched_park(L, g, "IO wait", (lua_KContext)g, wr_turn_k);
  }
  if (s->wdl && uv_hrtime() >= s->wdl) {
    wake_turn(s);
    return err_timeout(L);
  }
  if (s->fd == 1) fflush(stdout);  /* what print wrote comes first */
  else if (s->fd == 2) fflush(stderr);
  if (len > 0 && s->kind != CSP_ST_FILE) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    r = uv_try_write(&s->u.s, &b, 1);
    if (r < 0 && r != UV_EAGAIN) {
      wake_turn(s);
      return err_code(L, c, "write", r);
    }
    if (r > 0) written = r;
  }
  if ((size_t)written == len) {
    wake_turn(s);
    lua_pushinteger(L, (lua_Integer)len + lua_tointeger(L, 3));  /* 3: wr_pieces' part */
    return 1;
  }
  g = csp_sched_self(L, s->S);
  if (s->wdl) csp_io_deadline(L, s->S, g, s->wdl);
  s->wp = p + written;
  s->wlen = len - (size_t)written;
  if (s->kind == CSP_ST_FILE) {
    r = file_write_next(s);
  } else {
    uv_buf_t b = uv_buf_init((char *)s->wp, (unsigned)s->wlen);
    s->wreq.data = s;
    r = uv_write(&s->wreq, &s->u.s, &b, 1, st_write_cb);
  }
  if (r != 0) {
    s->wlen = 0;
    csp_io_undeadline(s->S, g);
    wake_turn(s);
    return err_code(L, c, "write", r);
  }
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, 1, 1);
  s->wbusy = 1;
  s->wdone = 0;
  s->wowner = g;
  s->wticket = g->ticket;
  g->w.caseidx = 0;
  csp_wq_push(&s->dq, &g->w);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, wr_done_k);
}

static int wr_turn_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_io_undeadline(g->S, g);
  if (g->wake == CSP_WAKE_TIMEOUT) return err_timeout(L);
  return wr_run(L, (Conn *)lua_touserdata(L, 1), 1);
}

static int wr_done_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  Conn *c = (Conn *)lua_touserdata(L, 1);
  csp_Stream *s = c->s;
  int st;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_io_undeadline(g->S, g);
  if (g->wake == CSP_WAKE_TIMEOUT) return err_timeout(L);  /* the write stays queued */
  if (s == NULL) return err_closed(L, c, "write");
  st = s->wstatus;
  s->wbusy = s->wdone = 0;
  s->wowner = NULL;
  lua_pushnil(L);
  lua_setiuservalue(L, 1, 1);
  wake_turn(s);
  if (st < 0) return err_code(L, c, "write", st);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, 2) + lua_tointeger(L, 3));
  return 1;
}

#define WR_IOV 8  /* pieces one writev may take (c:write(a, b, ...)) */

/* c:write of several pieces while nothing else is being written: one uv_try_write (writev) of
** them all, without building their concatenation (an echo or a chat line is `line, "\n"`). What
** the kernel does not take is concatenated and goes the ordinary way, arg 3 holding the count
** already out. Returns -1 when the ordinary path must take the whole write. */
static int wr_pieces(lua_State *L, Conn *c, int n, uv_buf_t *b, size_t total) {
  size_t skip;
  csp_Stream *s = c->s;
  int r, first;
  if (n - 1 > WR_IOV || s == NULL || s->kind == CSP_ST_FILE || s->fd == 1 || s->fd == 2 ||
      s->wbusy || s->wq.head || s->wdl || total == 0 || total > INT32_MAX)
    return -1;
  r = uv_try_write(&s->u.s, b, (unsigned)(n - 1));
  if (r < 0 && r != UV_EAGAIN) return err_code(L, c, "write", r);
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
static int conn_write(lua_State *L) {
  Conn *c = conn_check(L);
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

/* ---------------------------------------------------------------- close_write, close */

static void st_shutdown_cb(uv_shutdown_t *req, int status) {
  csp_Stream *s = (csp_Stream *)req->data;
  if (s->closed) return;
  s->sstatus = status;
  wake_all(s->S, &s->sq, CSP_WAKE_OK);
}

static int shut_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  Conn *c = (Conn *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (c->s == NULL) return err_closed(L, c, "shutdown");
  if (c->s->sstatus < 0) return err_code(L, c, "shutdown", c->s->sstatus);
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_close(lua_State *L);

/* c:close_write(): half-close (tcp shutdown) once queued writes are out; other streams close. */
static int conn_close_write(lua_State *L) {
  Conn *c = conn_check(L);
  csp_Stream *s;
  csp_G *g;
  int r;
  if ((s = conn_stream(L, c, &r)) == NULL)
    return r ? err_code(L, c, "shutdown", r) : err_closed(L, c, "shutdown");
  if (s->kind != CSP_ST_TCP) return conn_close(L);
  if (s->shut) {
    lua_pushboolean(L, 1);
    return 1;
  }
  g = csp_sched_self(L, s->S);
  s->sreq.data = s;
  if ((r = uv_shutdown(&s->sreq, &s->u.s, st_shutdown_cb)) != 0) return err_code(L, c, "shutdown", r);
  s->shut = 1;
  g->w.caseidx = 0;
  csp_wq_push(&s->sq, &g->w);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, shut_k);
}

/* c:close(): goroutines blocked on c return an error; closing twice returns one. */
static int conn_close(lua_State *L) {
  Conn *c = conn_check(L);
  csp_Stream *s = c->s;
  if (s == NULL) {
    if (c->lazy < 0) return err_closed(L, c, "close");
    c->lazy = -1;
  } else {
    c->s = NULL;
    st_close(s, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int conn_gc(lua_State *L) {
  Conn *c = (Conn *)lua_touserdata(L, 1);
  if (c->s) {
    csp_Stream *s = c->s;
    c->s = NULL;
    st_close(s, 0);
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
  return conn_addr(L, conn_check(L)->raddr);
}

static int conn_local_addr(lua_State *L) {
  return conn_addr(L, conn_check(L)->laddr);
}

static int set_deadline(lua_State *L, int which) {
  Conn *c = conn_check(L);
  uint64_t when = 0;
  csp_Stream *s;
  int r;
  if (!lua_isnoneornil(L, 2)) {
    double t = csp_checknumber(L, 2);
    if (!(t > 0)) when = 1;  /* the past: pending and later operations time out at once */
    else if (t * CSP_NS >= (double)MAX_NS) when = MAX_NS;
    else when = (uint64_t)(t * CSP_NS) + 1;
  }
  if ((s = conn_stream(L, c, &r)) == NULL)
    return r ? err_code(L, c, "set", r) : err_closed(L, c, "set");
  if (which & 1) {
    s->rdl = when;
    retime(L, s->S, &s->rq, when);
  }
  if (which & 2) {
    s->wdl = when;
    retime(L, s->S, &s->wq, when);
    retime(L, s->S, &s->dq, when);
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
  Conn *c = conn_check(L);
  if (c->s == NULL && c->lazy < 0) lua_pushfstring(L, "csp.conn (%s, closed)", c->name);
  else lua_pushfstring(L, "csp.conn (%s)", c->name);
  return 1;
}

/* ---------------------------------------------------------------- registration */

static void stdio_new(lua_State *L, int fd, const char *name) {
  Conn *c = conn_new(L);
  c->lazy = fd;
  snprintf(c->name, sizeof c->name, "%s", name);
}

/* Stack: [module, sched]. */
void csp_stream_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"read", conn_read}, {"read_line", conn_read_line}, {"lines", conn_lines},
    {"write", conn_write}, {"close_write", conn_close_write}, {"close", conn_close},
    {"remote_addr", conn_remote_addr}, {"local_addr", conn_local_addr},
    {"set_deadline", conn_set_deadline}, {"set_read_deadline", conn_set_read_deadline},
    {"set_write_deadline", conn_set_write_deadline}, {"set_max_line", conn_set_max_line},
    {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", conn_gc}, {"__close", conn_close}, {"__tostring", conn_tostring}, {NULL, NULL}
  };
  lua_createtable(L, 0, 5);
  lua_newtable(L);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, methods, 1);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, meta, 1);
  lua_pushliteral(L, "csp.conn");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &conn_tag);

  stdio_new(L, 0, "/dev/stdin");
  lua_setfield(L, -3, "stdin");
  stdio_new(L, 1, "/dev/stdout");
  lua_setfield(L, -3, "stdout");
  stdio_new(L, 2, "/dev/stderr");
  lua_setfield(L, -3, "stderr");
}
