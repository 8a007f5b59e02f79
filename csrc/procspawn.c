/* procspawn.c: a process in C memory: started with posix_spawn (glibc: clone with
** CLONE_VM|CLONE_VFORK, so the cost does not grow with the parent's memory as fork's does) on
** libuv's thread pool (the scheduler thread never waits for a child's execve), its stdout and
** stderr captured whole from pipes, its stdin written, its exit watched by a pidfd on the loop;
** done once it exited and both outputs ended, or the spawn failed, which wakes its waiter (the
** request p->req). A libuv callback only touches C memory; no Lua here. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include "proc.h"
#include "stream.h"

extern char **environ;

#define OUT_READ 65536              /* smallest free space handed to a read */

/* ---------------------------------------------------------------- closing */

static void proc_unref(csp_Proc *p) {
  if (--p->refs > 0) return;
  if (p->owner) *p->owner = NULL;
  if (p->pidfd >= 0) close(p->pidfd);
  free(p->cwd);
  free(p);
}

static void pipe_close_cb(uv_handle_t *h) {
  csp_Pipe *pp = (csp_Pipe *)h;
  csp_Proc *p = pp->p;
  if (p->in == pp) p->in = NULL;  /* stdin closes early, once written */
  csp_buf_free(&pp->buf);
  free(pp);
  proc_unref(p);
}

static void proc_close_cb(uv_handle_t *h) {
  proc_unref((csp_Proc *)h);
}

static void pipe_close(csp_Pipe *pp) {
  if (pp && !uv_is_closing((uv_handle_t *)&pp->h)) uv_close((uv_handle_t *)&pp->h, pipe_close_cb);
}

/* The poll handle's reference is dropped by its close callback, or at once if it never was. */
void csp_procspawn_close(csp_Proc *p) {
  if (p->closing) return;
  p->closing = 1;
  csp_teardown_del(&p->td);
  pipe_close(p->in);
  pipe_close(p->out);
  pipe_close(p->err);
  if (p->polling) uv_close((uv_handle_t *)&p->h.poll, proc_close_cb);
  else proc_unref(p);
}

/* ---------------------------------------------------------------- libuv callbacks */

/* Before the spawn has finished, the kill is sent as soon as it has (spawn_done). */
void csp_procspawn_kill(csp_Proc *p) {
  if (!p->exited && !p->killed) {
    p->killed = 1;
    if (p->pid > 0) kill(p->pid, SIGKILL);
  }
}

/* The process is forgotten: nobody will wait for it (its handle was collected unwaited, or
** its waiter is gone: free_fn of req). */
static void proc_forget(csp_Proc *p) {
  if (p->owner) *p->owner = NULL;
  p->owner = NULL;
  csp_procspawn_close(p);
}

static void proc_release(csp_Req *q) {
  proc_forget((csp_Proc *)(void *)((char *)q - offsetof(csp_Proc, req)));
}

/* Done once the process exited and both outputs ended; a killed process's outputs are not
** waited for (a grandchild may hold them open). */
static void proc_check(csp_Proc *p) {
  if (p->done || !p->exited || !p->out->eof || !p->err->eof) return;
  p->done = 1;
  if (p->waited) csp_req_done(&p->req, 0);  /* wakes the waiter, or forgets p */
  else if (p->owner == NULL) proc_forget(p);
}

static void pipe_end(csp_Pipe *pp, int err) {
  if (pp->eof) return;
  pp->eof = 1;
  pp->err = err;
  uv_read_stop((uv_stream_t *)&pp->h);
}

/* Reaps the process if it has exited (a wake-up may be spurious, or a SIGCHLD another's). */
static void proc_reap(csp_Proc *p) {
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
  proc_reap((csp_Proc *)h);
}

static void sigchld_cb(uv_signal_t *h, int signum) {
  (void)signum;
  proc_reap((csp_Proc *)h);
}

/* Free space for the next read, growing past CSP_PROC_OUTMAX by at most one read: more shows an
** overflow. None without memory: the read then fails with UV_ENOBUFS. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  csp_Pipe *pp = (csp_Pipe *)h;
  size_t room = csp_buf_room(&pp->buf, OUT_READ, CSP_PROC_OUTMAX + 1);
  (void)suggested;
  *b = uv_buf_init(room ? pp->buf.p + pp->buf.tail : NULL, (unsigned)room);  /* <= 64 MiB */
}

static void read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  csp_Pipe *pp = (csp_Pipe *)h;
  csp_Proc *p = pp->p;
  (void)b;
  if (n == 0) return;
  if (n > 0) {
    pp->buf.tail += (size_t)n;
    if (csp_buf_len(&pp->buf) <= CSP_PROC_OUTMAX) return;
    n = UV_ENOBUFS;
  } else if (n == UV_ENOBUFS) {
    n = UV_ENOMEM;  /* the buffer could not grow */
  }
  pipe_end(pp, n == UV_EOF ? 0 : (int)n);
  if (n != UV_EOF) csp_procspawn_kill(p);  /* nobody reads it any more: it must not block writing */
  proc_check(p);
}

static void write_cb(uv_write_t *req, int status) {
  csp_Pipe *pp = (csp_Pipe *)req->data;
  if (status == UV_ECANCELED) return;  /* being closed (maybe by lua_close): touch nothing */
  pipe_close(pp);  /* end of input for the process; a write error (EPIPE) is not the caller's */
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
  csp_Proc *p;
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
static void pipes_open(csp_Proc *p, int fds[3][2]) {
  csp_Pipe *ps[3] = {p->in, p->out, p->err};
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

/* Stack: [cmd, args, opts, e]. Allocates csp_Proc and its pipes; NULL when out of memory. */
static csp_Proc *proc_new(csp_Sched *S, size_t inlen, int with_in) {
  csp_Proc *p = (csp_Proc *)calloc(1, sizeof *p);
  if (p) p->out = (csp_Pipe *)calloc(1, sizeof(csp_Pipe));
  if (p && p->out) p->err = (csp_Pipe *)calloc(1, sizeof(csp_Pipe));
  if (p && p->err && with_in) p->in = (csp_Pipe *)calloc(1, sizeof(csp_Pipe) + inlen);
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
    csp_Pipe *ps[3] = {p->in, p->out, p->err};
    for (int i = 0; i < 3; i++) {
      if (ps[i] == NULL) continue;
      ps[i]->p = p;
      uv_pipe_init(S->loop, &ps[i]->h, 0);
      p->refs++;
    }
  }
  return p;
}

static void proc_teardown(csp_Teardown *t) {
  csp_procspawn_close((csp_Proc *)(void *)((char *)t - offsetof(csp_Proc, td)));
}

/* Everything started: the reads, the write of stdin, the watch of the pidfd. From here on its
** handles are open, and lua_close closes them with their callbacks (the buffers go too). */
static void proc_start(csp_Proc *p) {
  int r;
  p->td.close = proc_teardown;
  csp_teardown_add(p->S, &p->td);
  if (!p->out->eof && (r = uv_read_start((uv_stream_t *)&p->out->h, alloc_cb, read_cb)) != 0)
    pipe_end(p->out, r);
  if (!p->err->eof && (r = uv_read_start((uv_stream_t *)&p->err->h, alloc_cb, read_cb)) != 0)
    pipe_end(p->err, r);
  if (p->out->err || p->err->err) csp_procspawn_kill(p);
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
static void spawn_failed(csp_Proc *p, int r) {
  p->spawnerr = uv_translate_sys_error(r);
  p->exited = 1;
  p->out->eof = p->err->eof = 1;
  pipe_close(p->in);
  proc_check(p);
}

/* Watches p->pid's exit: a pidfd on uv_poll, else SIGCHLD (CSP_NOPIDFD=1 forces that, for
** the specs). Returns 0 or an errno. */
static int exit_watch(csp_Proc *p) {
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
  csp_Proc *p = sp->p;
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


int csp_procspawn_start(csp_Sched *S, char **argv, char **env, const char *cwd, const char *in,
                        size_t inlen, csp_Proc **owner) {
  Spawn *sp = spawn_new(argv, env, cwd);
  csp_Proc *p = sp ? proc_new(S, inlen, in != NULL) : NULL;
  int r = 0, i;
  if (p && cwd && (p->cwd = strdup(cwd)) == NULL) {
    csp_procspawn_close(p);
    p = NULL;
  }
  if (p == NULL) {
    free(sp);
    return UV_ENOMEM;
  }
  for (i = 0; i < 3; i++) sp->fds[i][0] = sp->fds[i][1] = -1;
  for (i = in ? 0 : 1; i < 3 && r == 0; i++) r = make_pipe(sp->fds[i]);
  if (r != 0) {
    pipes_close_fds(sp->fds);
    free(sp);
    csp_procspawn_close(p);
    return uv_translate_sys_error(r);
  }
  if (p->in) {
    memcpy(p->in->data, in, inlen);
    p->in->dlen = inlen;
  }
  sp->p = p;
  uv_queue_work(S->loop, &sp->req, spawn_work, spawn_done);  /* fails only without spawn_work */
  *owner = p;
  p->owner = owner;
  return 0;
}
