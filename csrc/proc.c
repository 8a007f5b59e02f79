/* proc.c: core._spawn(cmd, args, opts) starts a process with posix_spawn (glibc: clone with
** CLONE_VM|CLONE_VFORK, so the cost does not grow with the parent's memory as fork's does) on
** libuv's thread pool (the scheduler thread never waits for a child's execve), its stdout and
** stderr on pipes captured whole, opts.stdin written to it; p:wait() parks the caller until the
** process has exited (watched by a pidfd on the loop) and both outputs reached their end, or the
** spawn failed; p:kill() sends SIGKILL. csp.exec (lua/csp/exec.lua) is built on these.
**
** Memory: every libuv handle is its own malloc'd block with the handle first (at lua_close the
** scheduler closes leftovers with free()). Proc (the pidfd poll handle) counts the open handles
** and goes when the last one's close callback runs. The Lua handle (Exec) and Proc point at each
** other while both live. A libuv callback only touches C memory; the continuation turns the
** results into Lua values. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include "stream.h"

extern char **environ;

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
  union {             /* first member; initialised (polling) only once the spawn succeeded */
    uv_poll_t poll;    /* readable on the pidfd once the process has exited */
    uv_signal_t sig;   /* without pidfds (Linux < 5.3, a seccomp filter): SIGCHLD */
  } h;
  int pidfd, polling, closing;
  pid_t pid;           /* 0 until spawned; unreaped until exited: kill(pid) hits no reused pid */
  int spawnerr;        /* libuv error of a failed spawn (then exited is set too) */
  char *cwd;           /* a copy of opts.cwd, for a failed spawn's message */
  csp_Sched *S;
  csp_Req req;         /* wait's: free_fn forgets the process once its waiter is gone */
  int waited;          /* wait parked on req (a second wait raises) */
  int refs;            /* handles not closed yet, this one included */
  Pipe *in, *out, *err;
  Exec *e;             /* the Lua handle on this process, while both live */
  int exited, done, killed;
  int64_t status;
  int sig;
};

/* The Lua handle (core._spawn's result): wait once, kill any time. */
struct Exec {
  const void *tag;
  Proc *p;             /* NULL once waited for */
  const char *cmd;     /* for messages: anchored in the userdata's user value */
};

static const char exec_tag = 0;

/* ---------------------------------------------------------------- closing */

static void proc_unref(Proc *p) {
  if (--p->refs > 0) return;
  if (p->e) p->e->p = NULL;
  if (p->pidfd >= 0) close(p->pidfd);
  free(p->cwd);
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

/* The poll handle's reference is dropped by its close callback, or at once if it never was. */
static void proc_close(Proc *p) {
  if (p->closing) return;
  p->closing = 1;
  pipe_close(p->in);
  pipe_close(p->out);
  pipe_close(p->err);
  if (p->polling) uv_close((uv_handle_t *)&p->h.poll, proc_close_cb);
  else proc_unref(p);
}

/* ---------------------------------------------------------------- libuv callbacks */

/* Before the spawn has finished, the kill is sent as soon as it has (spawn_done). */
static void proc_kill(Proc *p) {
  if (!p->exited && !p->killed) {
    p->killed = 1;
    if (p->pid > 0) kill(p->pid, SIGKILL);
  }
}

/* The process is forgotten: nobody will wait for it (its handle was collected unwaited, or
** its waiter is gone: free_fn of req). */
static void proc_forget(Proc *p) {
  if (p->e) p->e->p = NULL;
  p->e = NULL;
  proc_close(p);
}

static void proc_release(csp_Req *q) {
  proc_forget((Proc *)(void *)((char *)q - offsetof(Proc, req)));
}

/* Done once the process exited and both outputs ended; a killed process's outputs are not
** waited for (a grandchild may hold them open). */
static void proc_check(Proc *p) {
  if (p->done || !p->exited || !p->out->eof || !p->err->eof) return;
  p->done = 1;
  if (p->waited) csp_req_done(&p->req, 0);  /* wakes the waiter, or forgets p */
  else if (p->e == NULL) proc_forget(p);
}

static void pipe_end(Pipe *pp, int err) {
  if (pp->eof) return;
  pp->eof = 1;
  pp->err = err;
  uv_read_stop((uv_stream_t *)&pp->h);
}

/* Reaps the process if it has exited (a wake-up may be spurious, or a SIGCHLD another's). */
static void proc_reap(Proc *p) {
  int ws;
  pid_t r;
  do r = waitpid(p->pid, &ws, WNOHANG); while (r < 0 && errno == EINTR);
  if (r == 0) return;
  /* r < 0 (ECHILD): the host set SIGCHLD to SIG_IGN and the kernel reaped it; no status left */
  if (p->pidfd >= 0) uv_poll_stop(&p->h.poll);
  else uv_signal_stop(&p->h.sig);
  p->exited = 1;
  p->status = r > 0 && WIFEXITED(ws) ? WEXITSTATUS(ws) : 0;
  p->sig = r > 0 && WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
  if (p->killed) {
    pipe_end(p->out, 0);
    pipe_end(p->err, 0);
  }
  proc_check(p);
}

static void exit_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  proc_reap((Proc *)h);
}

static void sigchld_cb(uv_signal_t *h, int signum) {
  (void)signum;
  proc_reap((Proc *)h);
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

/* ---------------------------------------------------------------- results */

static int err_result(lua_State *L, const char *cmd, const char *cwd, int code) {
  if (code == UV_ENOENT && cwd && access(cwd, F_OK) != 0)
    return csp_fail(L, uv_err_name(code), "chdir %s: %s", cwd, uv_strerror(code));
  if (code == UV_ENOENT && strchr(cmd, '/') == NULL)
    return csp_fail(L, uv_err_name(code), "exec: \"%s\": executable file not found in $PATH", cmd);
  if (code == UV_ENOBUFS)
    return csp_fail(L, uv_err_name(code), "exec: \"%s\": output larger than %d MiB", cmd,
                    (int)(OUT_MAX >> 20));
  return csp_fail(L, uv_err_name(code), "fork/exec %s: %s", cmd, uv_strerror(code));
}

/* Stack: [e]. The results of the finished process p, which goes. */
static int proc_results(lua_State *L, Exec *e, Proc *p) {
  int err = p->out->err ? p->out->err : p->err->err;
  e->p = NULL;
  p->e = NULL;
  if (p->spawnerr) {
    err_result(L, e->cmd, p->cwd, p->spawnerr);
    proc_close(p);
    return 3;
  }
  if (err) {
    proc_close(p);
    return err_result(L, e->cmd, NULL, err);
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
  return 1;
}

/* ---------------------------------------------------------------- the Lua handle */

static Exec *exec_check(lua_State *L) {
  return (Exec *)csp_checktag(L, 1, &exec_tag, sizeof(Exec), "csp.process");
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  Exec *e = (Exec *)lua_touserdata(L, 1);
  Proc *p = (Proc *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, p->req.g);
  csp_req_end(&p->req);  /* always done: nothing else wakes a process wait */
  return proc_results(L, e, p);
}

/* p:wait() -> {status=, signal=, stdout=, stderr=} or nil, err, code; once. */
static int exec_wait(lua_State *L) {
  Exec *e = exec_check(L);
  Proc *p = e->p;
  csp_G *g;
  if (p == NULL || p->waited) return luaL_error(L, "exec: Wait was already called");
  g = csp_sched_self(L, p->S);
  lua_settop(L, 1);
  if (p->done) return proc_results(L, e, p);
  p->waited = 1;
  return csp_req_park(L, &p->req, g, "syscall", (lua_KContext)p, wait_k);
}

static int exec_kill(lua_State *L) {
  Exec *e = exec_check(L);
  if (e->p && !e->p->done) proc_kill(e->p);
  return 0;
}

/* An unwaited process runs on, forgotten: its handles go when it has ended. */
static int exec_gc(lua_State *L) {
  Exec *e = (Exec *)lua_touserdata(L, 1);
  Proc *p = e->p;
  e->p = NULL;
  if (p == NULL) return 0;
  p->e = NULL;
  if (p->done && !p->waited) proc_close(p);
  return 0;
}

/* ---------------------------------------------------------------- spawn */

enum { A_CMD = 1, A_ARGS, A_OPTS, A_EXEC };

/* A string option, NULL if absent; *nul set if it holds a NUL byte. */
static const char *opt_string(lua_State *L, const char *name, size_t *len, int *nul) {
  const char *s = NULL;
  size_t n = 0;
  if (lua_getfield(L, A_OPTS, name) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, A_OPTS, lua_pushfstring(L, "field '%s': string expected, got %s", name,
                                               luaL_typename(L, -1)));
    s = lua_tolstring(L, -1, &n);
    if (len) *len = n;
    else if (strlen(s) != n) *nul = 1;
  }
  lua_pop(L, 1);  /* still referenced by opts */
  return s;
}

/* A NULL-terminated array of the strings of the table at idx (argv with cmd first, or env),
** in a userdata left on the stack; *nul set if one holds a NUL byte. */
static char **string_array(lua_State *L, int idx, int arg, const char *first, const char *what,
                           int *nul) {
  lua_Integer n = idx ? luaL_len(L, idx) : 0, i, k = first != NULL;
  char **v;
  if (n < 0 || n >= 65536) luaL_argerror(L, arg, lua_pushfstring(L, "too many %s", what));
  v = (char **)lua_newuserdatauv(L, (size_t)(n + k + 1) * sizeof *v, 0);
  if (first) v[0] = (char *)first;
  for (i = 1; i <= n; i++) {
    size_t len;
    if (lua_geti(L, idx, i) != LUA_TSTRING)
      luaL_argerror(L, arg, lua_pushfstring(L, "%s[%d]: string expected, got %s", what, (int)i,
                                            luaL_typename(L, -1)));
    v[k++] = (char *)lua_tolstring(L, -1, &len);
    if (strlen(v[k - 1]) != len) *nul = 1;
    lua_pop(L, 1);  /* anchored by the table, which is on the stack */
  }
  v[k] = NULL;
  return v;
}

/* A pipe with both ends close-on-exec, neither on 0-2 (a child's dup2 onto itself would keep
** close-on-exec). Returns 0 or an errno. */
static int make_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return errno;
  for (int i = 0; i < 2; i++) {
    if (fds[i] <= STDERR_FILENO) {
      int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
      if (fd < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return e;
      }
      close(fds[i]);
      fds[i] = fd;
    }
  }
  return 0;
}

/* Spawns argv with its stdio on the pipes (fd[i][child end]); fills *pid, returns 0 or an errno.
** The child gets default signal dispositions and an empty mask (SIGPIPE is ignored here). */
static int spawn(pid_t *pid, const char *cmd, char **argv, char **env, const char *cwd,
                 int fds[3][2]) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t all, none;
  int r;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  if (fds[0][0] >= 0) posix_spawn_file_actions_adddup2(&fa, fds[0][0], STDIN_FILENO);
  else posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1][1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, fds[2][1], STDERR_FILENO);
  if (cwd) posix_spawn_file_actions_addchdir_np(&fa, cwd);
  /* posix_spawnp looks cmd up in this process's PATH, as Go's LookPath does, not env's. */
  r = posix_spawnp(pid, cmd, &fa, &at, argv, env ? env : environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return r;
}

/* What the pool thread needs, in C memory: the Lua strings may be collected meanwhile. */
typedef struct Spawn {
  uv_work_t req;
  Proc *p;
  int fds[3][2];
  char **argv, **env, *cwd;
  pid_t pid;
  int err;             /* errno of posix_spawnp */
  char *blk[];         /* argv, env and the bytes of every string */
} Spawn;

/* Bytes that copying the NULL-terminated array v takes (pointers and strings). */
static size_t strv_size(char **v) {
  size_t n = sizeof(char *);
  for (; v && *v; v++) n += sizeof(char *) + strlen(*v) + 1;
  return n;
}

/* Copies v into *at (pointers first, then the strings); returns the copy. */
static char **strv_copy(char **v, char **at) {
  size_t n = 0, i;
  char **out = (char **)(void *)*at, *str;
  while (v[n]) n++;
  str = *at + (n + 1) * sizeof(char *);
  for (i = 0; i < n; i++) {
    size_t len = strlen(v[i]) + 1;
    memcpy(str, v[i], len);
    out[i] = str;
    str += len;
  }
  out[n] = NULL;
  *at = str;
  return out;
}

static Spawn *spawn_new(char **argv, char **env, const char *cwd) {
  size_t n = sizeof(Spawn) + strv_size(argv) + (env ? strv_size(env) : 0) + (cwd ? strlen(cwd) + 1 : 0);
  Spawn *sp = (Spawn *)calloc(1, n);
  char *at;
  if (sp == NULL) return NULL;
  at = (char *)sp->blk;
  sp->argv = strv_copy(argv, &at);
  if (env) sp->env = strv_copy(env, &at);
  if (cwd) sp->cwd = strcpy(at, cwd);
  return sp;
}

static void spawn_work(uv_work_t *req) {
  Spawn *sp = (Spawn *)req;
  sp->err = spawn(&sp->pid, sp->argv[0], sp->argv, sp->env, sp->cwd, sp->fds);
}

/* Parent ends to libuv; child ends closed here (the child holds its copies). */
static void pipes_open(Proc *p, int fds[3][2]) {
  Pipe *ps[3] = {p->in, p->out, p->err};
  for (int i = 0; i < 3; i++) {
    int mine = i == 0 ? 1 : 0;
    if (fds[i][0] < 0) continue;
    close(fds[i][1 - mine]);
    if (uv_pipe_open(&ps[i]->h, fds[i][mine]) != 0) {
      close(fds[i][mine]);  /* cannot happen for a fresh pipe; the output then reads as ended */
      if (i > 0) pipe_end(ps[i], UV_EBADF);
    }
  }
}

static void pipes_close_fds(int fds[3][2]) {
  for (int i = 0; i < 3; i++) {
    if (fds[i][0] < 0) continue;
    close(fds[i][0]);
    close(fds[i][1]);
  }
}

/* Stack: [cmd, args, opts, e]. Allocates Proc and its pipes; NULL when out of memory. */
static Proc *proc_new(csp_Sched *S, size_t inlen, int with_in) {
  Proc *p = (Proc *)calloc(1, sizeof *p);
  if (p) p->out = (Pipe *)calloc(1, sizeof(Pipe));
  if (p && p->out) p->err = (Pipe *)calloc(1, sizeof(Pipe));
  if (p && p->err && with_in) p->in = (Pipe *)calloc(1, sizeof(Pipe) + inlen);
  if (p == NULL || p->out == NULL || p->err == NULL || (with_in && p->in == NULL)) {
    if (p) {
      free(p->out);
      free(p->err);
      free(p);
    }
    return NULL;
  }
  p->S = S;
  p->req.free_fn = proc_release;
  p->pidfd = -1;
  p->refs = 1;
  {
    Pipe *ps[3] = {p->in, p->out, p->err};
    for (int i = 0; i < 3; i++) {
      if (ps[i] == NULL) continue;
      ps[i]->p = p;
      uv_pipe_init(S->loop, &ps[i]->h, 0);
      p->refs++;
    }
  }
  return p;
}

/* Everything started: the reads, the write of stdin, the watch of the pidfd. */
static void proc_start(Proc *p) {
  int r;
  if (!p->out->eof && (r = uv_read_start((uv_stream_t *)&p->out->h, alloc_cb, read_cb)) != 0)
    pipe_end(p->out, r);
  if (!p->err->eof && (r = uv_read_start((uv_stream_t *)&p->err->h, alloc_cb, read_cb)) != 0)
    pipe_end(p->err, r);
  if (p->out->err || p->err->err) proc_kill(p);
  if (p->in) {
    p->in->wr.data = p->in;
    if (p->in->dlen == 0 ||
        csp_stream_write(&p->in->wr, (uv_stream_t *)&p->in->h, p->in->data, p->in->dlen, write_cb) != 0)
      pipe_close(p->in);
  }
  if (p->pidfd >= 0) uv_poll_start(&p->h.poll, UV_READABLE, exit_cb);
  else uv_signal_start(&p->h.sig, sigchld_cb, SIGCHLD);
}

/* The spawn failed (r: an errno): the process reads as exited with nothing captured. */
static void spawn_failed(Proc *p, int r) {
  p->spawnerr = uv_translate_sys_error(r);
  p->exited = 1;
  p->out->eof = p->err->eof = 1;
  pipe_close(p->in);
  proc_check(p);
}

/* Watches p->pid's exit: a pidfd on uv_poll, else SIGCHLD (CSP_NOPIDFD=1 forces that, for
** the specs). Returns 0 or an errno. */
static int exit_watch(Proc *p) {
  const char *env = getenv("CSP_NOPIDFD");
  int force = env != NULL && strcmp(env, "1") == 0, r;
  if (!force && (p->pidfd = pidfd_open(p->pid, 0)) >= 0) {
    if (uv_poll_init(p->S->loop, &p->h.poll, p->pidfd) != 0) return EBADF;
  } else if (!force && errno != ENOSYS && errno != EPERM) {
    return errno;
  } else if ((r = uv_signal_init(p->S->loop, &p->h.sig)) != 0) {
    return -r;  /* libuv's codes are negated errnos here */
  }
  p->polling = 1;
  return 0;
}

/* Back on the loop thread. At lua_close (S->closing) the pipes were freed by the scheduler's
** handle walk and nobody waits: only the C memory and the descriptors are left to let go. */
static void spawn_done(uv_work_t *req, int status) {
  Spawn *sp = (Spawn *)req;
  Proc *p = sp->p;
  int r = status != 0 ? ECANCELED : sp->err;
  if (p->S->closing) {
    pipes_close_fds(sp->fds);
    if (r == 0) kill(sp->pid, SIGKILL);  /* unreaped: the host process reaps or exits */
    free(p->cwd);
    free(p);
    free(sp);
    return;
  }
  if (r == 0) {
    p->pid = sp->pid;
    if ((r = exit_watch(p)) != 0) {
      kill(p->pid, SIGKILL);
      while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {}
      p->pid = 0;
    }
  }
  if (r != 0) {
    pipes_close_fds(sp->fds);
    free(sp);
    spawn_failed(p, r);
    return;
  }
  pipes_open(p, sp->fds);
  free(sp);
  if (p->killed) kill(p->pid, SIGKILL);  /* a kill that came while it was being spawned */
  proc_start(p);
  if (p->pidfd < 0) proc_reap(p);  /* a SIGCHLD before the watch started is not seen again */
}

static int exec_spawn(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  size_t cmdlen, inlen = 0;
  const char *cmd = luaL_checklstring(L, A_CMD, &cmdlen), *in = NULL, *cwd = NULL;
  char **argv, **env = NULL;
  int nul = strlen(cmd) != cmdlen, r = 0, i;
  Exec *e;
  Proc *p;
  Spawn *sp;
  if (!lua_isnoneornil(L, A_ARGS)) luaL_checktype(L, A_ARGS, LUA_TTABLE);
  if (!lua_isnoneornil(L, A_OPTS)) luaL_checktype(L, A_OPTS, LUA_TTABLE);
  lua_settop(L, A_OPTS);
  e = (Exec *)lua_newuserdatauv(L, sizeof *e, 1);  /* A_EXEC */
  e->tag = &exec_tag;
  e->p = NULL;
  e->cmd = cmd;
  lua_pushvalue(L, A_CMD);
  lua_setiuservalue(L, A_EXEC, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &exec_tag);
  lua_setmetatable(L, A_EXEC);
  argv = string_array(L, lua_istable(L, A_ARGS) ? A_ARGS : 0, A_ARGS, cmd, "args", &nul);
  if (lua_istable(L, A_OPTS)) {
    in = opt_string(L, "stdin", &inlen, &nul);
    cwd = opt_string(L, "cwd", NULL, &nul);
    if (lua_getfield(L, A_OPTS, "env") != LUA_TNIL) {
      int ei = lua_gettop(L);
      if (!lua_istable(L, ei))
        luaL_argerror(L, A_OPTS, lua_pushfstring(L, "field 'env': table expected, got %s",
                                                 luaL_typename(L, ei)));
      env = string_array(L, ei, A_OPTS, NULL, "field 'env'", &nul);
    }
  }
  csp_sched_self(L, S);  /* raises if the caller cannot block in wait: before anything starts */
  if (nul) return err_result(L, cmd, NULL, UV_EINVAL);  /* Go: EINVAL, nothing started */
  sp = spawn_new(argv, env, cwd);
  p = sp ? proc_new(S, inlen, in != NULL) : NULL;
  if (p && cwd && (p->cwd = strdup(cwd)) == NULL) {
    proc_close(p);
    p = NULL;
  }
  if (p == NULL) {
    free(sp);
    return err_result(L, cmd, NULL, UV_ENOMEM);
  }
  for (i = 0; i < 3; i++) sp->fds[i][0] = sp->fds[i][1] = -1;
  for (i = in ? 0 : 1; i < 3 && r == 0; i++) r = make_pipe(sp->fds[i]);
  if (r != 0) {
    pipes_close_fds(sp->fds);
    free(sp);
    proc_close(p);
    return err_result(L, cmd, NULL, uv_translate_sys_error(r));
  }
  if (p->in) {
    memcpy(p->in->data, in, inlen);
    p->in->dlen = inlen;
  }
  sp->p = p;
  uv_queue_work(S->loop, &sp->req, spawn_work, spawn_done);  /* fails only without spawn_work */
  e->p = p;
  p->e = e;
  lua_settop(L, A_EXEC);
  return 1;
}

/* Stack: [module, sched]. */
void csp_proc_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"_spawn", exec_spawn}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"wait", exec_wait}, {"kill", exec_kill}, {NULL, NULL}};
  static const luaL_Reg meta[] = {{"__gc", exec_gc}, {NULL, NULL}};
  csp_newmeta(L, "csp.process", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &exec_tag);
  csp_setfuncs(L, funcs);
}
