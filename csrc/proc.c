/* proc.c: csp.exec(cmd, args [, opts]): runs a process on libuv, its stdout and stderr captured
** whole, opts.stdin written to it; the caller parks until the process has exited and both of its
** output pipes reached their end. opts.ctx kills it (SIGKILL) when the context is cancelled.
**
** Memory: every libuv handle is its own malloc'd block with the handle first (at lua_close the
** scheduler closes leftovers with free()). Proc (the process handle) counts the open handles and
** goes when the last one's close callback runs. A libuv callback only touches C memory; the
** continuation turns the results into Lua values. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "stream.h"

#define OUT_MAX ((size_t)64 << 20)  /* captured bytes per stream; more fails the call */
#define OUT_READ 65536              /* smallest free space handed to a read */

typedef struct Proc Proc;
typedef struct Exec Exec;

typedef struct Pipe {
  uv_pipe_t h;         /* first member: freed with free() if left open at lua_close */
  Proc *p;
  char *buf;           /* output captured so far */
  size_t len, cap;
  int eof;             /* no more reads: end of stream, an error, or overflow */
  int err;             /* 0 or the libuv error that ended it (not EOF) */
  uv_write_t wr;       /* stdin: the one write of data */
  size_t dlen;
  char data[];         /* stdin: a copy of opts.stdin (a cancelled main may drop the string) */
} Pipe;

struct Proc {
  uv_process_t h;      /* first member */
  csp_Sched *S;
  csp_G *g;
  uint32_t ticket;
  int refs;            /* handles not closed yet, this one included */
  Pipe *in, *out, *err;
  Exec *e;             /* the ctx watcher's handle on this process, while both live */
  int exited, woken, killed;
  int64_t status;
  int sig;
};

/* What the ctx watcher holds: kill(e) is a no-op once p is gone or done. */
struct Exec {
  const void *tag;
  Proc *p;
};

static const char exec_tag = 0;
static const char watch_key = 0;  /* registry: function(done, exited, e) starting the watcher */

/* ---------------------------------------------------------------- closing */

static void proc_unref(Proc *p) {
  if (--p->refs > 0) return;
  if (p->e) p->e->p = NULL;
  free(p);
}

static void pipe_close_cb(uv_handle_t *h) {
  Pipe *pp = (Pipe *)h;
  Proc *p = pp->p;
  if (p->in == pp) p->in = NULL;  /* stdin closes early, once written */
  free(pp->buf);
  free(pp);
  proc_unref(p);
}

static void proc_close_cb(uv_handle_t *h) {
  proc_unref((Proc *)h);
}

static void pipe_close(Pipe *pp) {
  if (pp && !uv_is_closing((uv_handle_t *)&pp->h)) uv_close((uv_handle_t *)&pp->h, pipe_close_cb);
}

static void proc_close(Proc *p) {
  pipe_close(p->in);
  pipe_close(p->out);
  pipe_close(p->err);
  if (!uv_is_closing((uv_handle_t *)&p->h)) uv_close((uv_handle_t *)&p->h, proc_close_cb);
}

/* ---------------------------------------------------------------- libuv callbacks */

static void proc_kill(Proc *p) {
  if (!p->exited && !p->killed) {
    p->killed = 1;
    uv_process_kill(&p->h, SIGKILL);
  }
}

/* Done once the process exited and both outputs ended; a killed process's outputs are not
** waited for (a grandchild may hold them open). */
static void proc_check(Proc *p) {
  if (p->woken || !p->exited || !p->out->eof || !p->err->eof) return;
  p->woken = 1;
  if (!csp_sched_wake(p->S, p->g, p->ticket, 0)) proc_close(p);  /* main's wait was cancelled */
}

static void pipe_end(Pipe *pp, int err) {
  if (pp->eof) return;
  pp->eof = 1;
  pp->err = err;
  uv_read_stop((uv_stream_t *)&pp->h);
}

static void exit_cb(uv_process_t *h, int64_t status, int sig) {
  Proc *p = (Proc *)h;
  p->exited = 1;
  p->status = status;
  p->sig = sig;
  if (p->killed) {
    pipe_end(p->out, 0);
    pipe_end(p->err, 0);
  }
  proc_check(p);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  Pipe *pp = (Pipe *)h;
  (void)suggested;
  if (pp->cap - pp->len < OUT_READ && pp->cap < OUT_MAX + 1) {
    size_t ncap = pp->cap ? pp->cap * 2 : OUT_READ;
    char *nb;
    if (ncap > OUT_MAX + 1) ncap = OUT_MAX + 1;  /* one byte more shows an overflow */
    if ((nb = realloc(pp->buf, ncap)) != NULL) {
      pp->buf = nb;
      pp->cap = ncap;
    }
  }
  *b = uv_buf_init(pp->cap > pp->len ? pp->buf + pp->len : NULL, (unsigned)(pp->cap - pp->len));
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  Pipe *pp = (Pipe *)h;
  Proc *p = pp->p;
  (void)b;
  if (n == 0) return;
  if (n > 0) {
    pp->len += (size_t)n;
    if (pp->len <= OUT_MAX) return;
    n = UV_ENOBUFS;
  } else if (n == UV_ENOBUFS) {
    n = UV_ENOMEM;  /* the buffer could not grow */
  }
  pipe_end(pp, n == UV_EOF ? 0 : (int)n);
  if (n != UV_EOF) proc_kill(p);  /* nobody reads it any more: it must not block writing */
  proc_check(p);
}

static void write_cb(uv_write_t *req, int status) {
  Pipe *pp = (Pipe *)req->data;
  if (status == UV_ECANCELED) return;  /* being closed (maybe by lua_close): touch nothing */
  pipe_close(pp);  /* end of input for the process; a write error (EPIPE) is not the caller's */
}

/* ---------------------------------------------------------------- the ctx watcher */

static int exec_kill(lua_State *L) {
  Exec *e = (Exec *)csp_checktag(L, 1, &exec_tag, sizeof(Exec), "csp.exec");
  if (e->p && !e->p->woken) proc_kill(e->p);
  return 0;
}

static int exec_gc(lua_State *L) {
  Exec *e = (Exec *)lua_touserdata(L, 1);
  if (e->p) e->p->e = NULL;
  e->p = NULL;
  return 0;
}

/* Runs as csp's own goroutine: kills the process if done fires before exited is closed. */
static const char watch_src[] =
  "local go, select, recv, kill = ...\n"
  "local function watch(done, exited, e)\n"
  "  if select({recv(done), recv(exited)}) == 1 then kill(e) end\n"
  "end\n"
  "return function(done, exited, e) go(watch, done, exited, e) end\n";

/* ---------------------------------------------------------------- exec */

enum { A_CMD = 1, A_ARGS, A_OPTS, A_EXITED, A_EXEC, A_DONE };

static int err_result(lua_State *L, const char *cmd, const char *cwd, int code) {
  lua_pushnil(L);
  if (code == UV_ENOENT && cwd && access(cwd, F_OK) != 0)
    lua_pushfstring(L, "chdir %s: %s", cwd, uv_strerror(code));
  else if (code == UV_ENOENT && strchr(cmd, '/') == NULL)
    lua_pushfstring(L, "exec: \"%s\": executable file not found in $PATH", cmd);
  else if (code == UV_ENOBUFS)
    lua_pushfstring(L, "exec: \"%s\": output larger than %d MiB", cmd, (int)(OUT_MAX >> 20));
  else
    lua_pushfstring(L, "fork/exec %s: %s", cmd, uv_strerror(code));
  lua_pushstring(L, uv_err_name(code));
  return 3;
}

/* The exited channel tells the watcher to go; closed from Lua code, never from a callback. */
static void close_exited(lua_State *L) {
  if (lua_isnil(L, A_EXITED)) return;
  lua_getfield(L, A_EXITED, "close");
  lua_pushvalue(L, A_EXITED);
  lua_call(L, 1, 0);
}

static int exec_k(lua_State *L, int status, lua_KContext ctx) {
  Proc *p = (Proc *)ctx;
  int err = p->out->err ? p->out->err : p->err->err;
  if (status == LUA_YIELD) csp_sched_checkresume(L, p->g);
  if (p->e) {
    p->e->p = NULL;
    p->e = NULL;
  }
  if (err) {
    proc_close(p);
    close_exited(L);
    return err_result(L, lua_tostring(L, A_CMD), NULL, err);
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, p->sig ? -1 : (lua_Integer)p->status);
  lua_setfield(L, -2, "status");
  if (p->sig) {
    lua_pushinteger(L, p->sig);
    lua_setfield(L, -2, "signal");
  }
  lua_pushlstring(L, p->out->buf ? p->out->buf : "", p->out->len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, p->err->buf ? p->err->buf : "", p->err->len);
  lua_setfield(L, -2, "stderr");
  proc_close(p);  /* the buffers go in the close callbacks, after the copies above */
  close_exited(L);
  return 1;
}

static const char *opt_string(lua_State *L, const char *name, size_t *len) {
  const char *s = NULL;
  if (lua_getfield(L, A_OPTS, name) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, A_OPTS, lua_pushfstring(L, "opts.%s must be a string", name));
    s = lua_tolstring(L, -1, len);
  }
  lua_pop(L, 1);  /* still referenced by opts */
  return s;
}

/* A NULL-terminated array of the strings of the table at idx (argv with cmd first, or env),
** in a userdata left on the stack. */
static char **string_array(lua_State *L, int idx, int arg, const char *first, const char *what) {
  lua_Integer n = idx ? luaL_len(L, idx) : 0, i, k = first != NULL;
  char **v;
  if (n < 0 || n >= 65536) luaL_argerror(L, arg, lua_pushfstring(L, "too many %s", what));
  v = (char **)lua_newuserdatauv(L, (size_t)(n + k + 1) * sizeof *v, 0);
  if (first) v[0] = (char *)first;
  for (i = 1; i <= n; i++) {
    if (lua_geti(L, idx, i) != LUA_TSTRING)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s[%d] must be a string", what, (int)i));
    v[k++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);  /* anchored by the table, which is on the stack */
  }
  v[k] = NULL;
  return v;
}

static int exec_start(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const char *cmd = luaL_checkstring(L, A_CMD), *in = NULL, *cwd = NULL;
  size_t inlen = 0;
  char **argv, **env = NULL;
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  Proc *p;
  csp_G *g;
  int r, i;
  if (!lua_isnoneornil(L, A_ARGS)) luaL_checktype(L, A_ARGS, LUA_TTABLE);
  if (!lua_isnoneornil(L, A_OPTS)) luaL_checktype(L, A_OPTS, LUA_TTABLE);
  lua_settop(L, A_OPTS);
  lua_pushnil(L);  /* A_EXITED */
  lua_pushnil(L);  /* A_EXEC */
  lua_pushnil(L);  /* A_DONE */
  /* The context's methods run Lua code: before the strings are taken from the tables. */
  if (lua_istable(L, A_OPTS) && lua_getfield(L, A_OPTS, "ctx") != LUA_TNIL) {
    int ci = lua_gettop(L);
    lua_getfield(L, ci, "err");
    lua_pushvalue(L, ci);
    lua_call(L, 1, 1);
    if (!lua_isnil(L, -1)) {  /* Go: Start on a cancelled context fails with its error */
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    lua_getfield(L, ci, "done");
    lua_pushvalue(L, ci);
    lua_call(L, 1, 1);
    lua_replace(L, A_DONE);
  }
  lua_settop(L, A_DONE);
  argv = string_array(L, lua_istable(L, A_ARGS) ? A_ARGS : 0, A_ARGS, cmd, "args");
  if (lua_istable(L, A_OPTS)) {
    in = opt_string(L, "stdin", &inlen);
    cwd = opt_string(L, "cwd", NULL);
    if (lua_getfield(L, A_OPTS, "env") != LUA_TNIL) {
      int ei = lua_gettop(L);
      if (!lua_istable(L, ei)) luaL_argerror(L, A_OPTS, "opts.env must be a table");
      env = string_array(L, ei, A_OPTS, NULL, "opts.env");
    }
  }
  g = csp_sched_self(L, S);  /* raises if this cannot block: before anything starts */
  if (!lua_isnil(L, A_DONE)) {  /* the watcher, and all else that may raise, before the spawn */
    Exec *e;
    csp_chan_new(L, S, 0, 0);
    lua_replace(L, A_EXITED);
    e = (Exec *)lua_newuserdatauv(L, sizeof *e, 0);
    e->tag = &exec_tag;
    e->p = NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &exec_tag);
    lua_setmetatable(L, -2);
    lua_replace(L, A_EXEC);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &watch_key);
    lua_pushvalue(L, A_DONE);
    lua_pushvalue(L, A_EXITED);
    lua_pushvalue(L, A_EXEC);
    lua_call(L, 3, 0);
  }

  p = (Proc *)calloc(1, sizeof *p);
  if (p) p->out = (Pipe *)calloc(1, sizeof(Pipe));
  if (p && p->out) p->err = (Pipe *)calloc(1, sizeof(Pipe));
  if (p && p->err && in) p->in = (Pipe *)malloc(sizeof(Pipe) + inlen);
  if (p == NULL || p->out == NULL || p->err == NULL || (in && p->in == NULL)) {
    if (p) {
      free(p->out);
      free(p->err);
      free(p);
    }
    close_exited(L);
    return err_result(L, cmd, NULL, UV_ENOMEM);
  }
  p->S = S;
  p->refs = 1;
  if (p->in) {
    memset(p->in, 0, sizeof(Pipe));
    memcpy(p->in->data, in, inlen);
    p->in->dlen = inlen;
  }
  {
    Pipe *ps[3] = {p->in, p->out, p->err};
    for (i = 0; i < 3; i++) {
      if (ps[i] == NULL) continue;
      ps[i]->p = p;
      uv_pipe_init(S->loop, &ps[i]->h, 0);
      p->refs++;
    }
  }
  memset(&o, 0, sizeof o);
  stdio[0].flags = p->in ? (uv_stdio_flags)(UV_CREATE_PIPE | UV_READABLE_PIPE) : UV_IGNORE;
  stdio[0].data.stream = p->in ? (uv_stream_t *)&p->in->h : NULL;
  stdio[1].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = (uv_stream_t *)&p->out->h;
  stdio[2].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = (uv_stream_t *)&p->err->h;
  o.file = cmd;
  o.args = argv;
  o.env = env;
  o.cwd = cwd;
  o.exit_cb = exit_cb;
  o.stdio_count = 3;
  o.stdio = stdio;
  if ((r = uv_spawn(S->loop, &p->h, &o)) != 0) {
    proc_close(p);  /* a failed spawn's handle is closed too */
    close_exited(L);
    return err_result(L, cmd, cwd, r);
  }
  if ((r = uv_read_start((uv_stream_t *)&p->out->h, alloc_cb, read_cb)) != 0) pipe_end(p->out, r);
  if ((r = uv_read_start((uv_stream_t *)&p->err->h, alloc_cb, read_cb)) != 0) pipe_end(p->err, r);
  if (p->out->err || p->err->err) proc_kill(p);
  if (p->in) {
    p->in->wr.data = p->in;
    if (p->in->dlen == 0 ||
        csp_stream_write(&p->in->wr, (uv_stream_t *)&p->in->h, p->in->data, p->in->dlen, write_cb) != 0)
      pipe_close(p->in);
  }
  if (!lua_isnil(L, A_EXEC)) {
    Exec *e = (Exec *)lua_touserdata(L, A_EXEC);
    e->p = p;
    p->e = e;
  }
  p->g = g;
  p->ticket = g->ticket;
  lua_settop(L, A_DONE);
  return csp_sched_park(L, g, "syscall", (lua_KContext)p, exec_k);
}

/* Stack: [module, sched]. */
void csp_proc_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"exec", exec_start}, {NULL, NULL}};
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, exec_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "csp.exec");
  lua_setfield(L, -2, "__name");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &exec_tag);
  if (luaL_loadbufferx(L, watch_src, sizeof watch_src - 1, "=csp.exec", "t") != LUA_OK) lua_error(L);
  lua_getfield(L, -3, "_go_internal");
  lua_getfield(L, -4, "select");
  lua_getfield(L, -5, "recv");
  lua_pushcfunction(L, exec_kill);
  lua_call(L, 4, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &watch_key);
  csp_setfuncs(L, funcs);
}
