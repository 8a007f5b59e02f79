/* proc.h: a process in C memory, shared by procspawn.c (spawning, pipes, exit) and proc.c (Lua). */
#ifndef CSP_PROC_H
#define CSP_PROC_H

#include <sys/types.h>
#include "buf.h"
#include "csp.h"

#define CSP_PROC_OUTMAX ((size_t)64 << 20)  /* captured bytes per stream; more fails the call */

typedef struct csp_Proc csp_Proc;

typedef struct csp_Pipe {
  uv_pipe_t h;         /* first member: freed with free() if left open at lua_close */
  csp_Proc *p;
  csp_Buf buf;         /* output captured so far */
  int eof;             /* no more reads: end of stream, an error, or overflow */
  int err;             /* 0 or the libuv error that ended it (not EOF) */
  uv_write_t wr;       /* stdin: the one write of data */
  size_t dlen;
  char data[];         /* stdin: a copy of opts.stdin (a cancelled main may drop the string) */
} csp_Pipe;

/* Memory: every libuv handle is its own malloc'd block with the handle first (at lua_close the
** scheduler closes leftovers with free()). csp_Proc (the pidfd poll handle) counts the open
** handles and goes when the last one's close callback runs. */
struct csp_Proc {
  union {             /* first member; initialised (polling) only once the spawn succeeded */
    uv_poll_t poll;    /* readable on the pidfd once the process has exited */
    uv_signal_t sig;   /* without pidfds (Linux < 5.3, a seccomp filter): SIGCHLD */
  } h;
  int pidfd, polling, closing;
  pid_t pid;           /* 0 until spawned; unreaped until exited: kill(pid) hits no reused pid */
  int spawnerr;        /* libuv error of a failed spawn (then exited is set too) */
  char *cwd;           /* a copy of opts.cwd, for a failed spawn's message */
  csp_Sched *S;
  csp_Teardown td;     /* linked while started and not closing: lua_close closes it */
  csp_Req req;         /* wait's: free_fn forgets the process once its waiter is gone */
  int waited;          /* wait parked on req (a second wait raises) */
  int refs;            /* handles not closed yet, this one included */
  csp_Pipe *in, *out, *err;
  csp_Proc **owner;    /* the Lua handle's pointer to it, while both live (cleared on forgetting) */
  int exited, done, killed;
  int64_t status;
  int sig;
};

/* Starts argv[0] with posix_spawn on the pool: stdin from in[0..inlen) (in NULL: /dev/null),
** stdout and stderr captured on pipes. *owner is set to the process (the Lua handle's pointer).
** Returns 0 or a libuv error (nothing started). */
int csp_procspawn_start(csp_Sched *S, char **argv, char **env, const char *cwd, const char *in,
                        size_t inlen, csp_Proc **owner);
void csp_procspawn_kill(csp_Proc *p);   /* SIGKILL, now or as soon as it is spawned */
void csp_procspawn_close(csp_Proc *p);  /* its handles close; its memory goes with the last */

#endif
