/* fs.h: the csp.fs request record, shared by fswork.c (the pool side) and fs.c (the Lua side). */
#ifndef CSP_FS_H
#define CSP_FS_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include "csp.h"

enum { CSP_FS_STAT, CSP_FS_LSTAT, CSP_FS_READDIR, CSP_FS_DIRSTAT, CSP_FS_DIRSUM, CSP_FS_READFILE,
       CSP_FS_WRITEFILE };

/* File types, the index of their names in fs.c. */
enum { CSP_FT_UNKNOWN, CSP_FT_FILE, CSP_FT_DIR, CSP_FT_LINK, CSP_FT_FIFO, CSP_FT_SOCKET,
       CSP_FT_CHAR, CSP_FT_BLOCK, CSP_FT_COUNT };

/* A directory entry, kept small: dirstat holds one per file of the directory. */
typedef struct csp_FsEnt {
  size_t off;          /* name in the arena while it grows, */
  const char *name;    /* then a pointer into it */
  uint32_t len;
  uint8_t type;        /* CSP_FT_* */
  uint8_t gone;        /* vanished between readdir and lstat */
  uint32_t mode;       /* dirstat only, from here on */
  int64_t size, ino, nlink, blocks;
  double mtime;
} csp_FsEnt;

typedef struct csp_FsState csp_FsState;

/* One call: its arguments, then its results, in C memory from the call until its continuation
** has built the Lua values (or until csp_req_done frees it, when nobody waits any more). */
typedef struct csp_FsReq {
  uv_work_t work;      /* first member: libuv hands back the request */
  csp_Req req;         /* the caller's wait (wait.c) */
  struct csp_FsReq *next;  /* in the FIFO of calls waiting for a pool slot */
  struct csp_FsReq *bnext; /* the rest of the batch this work item runs */
  struct csp_FsReq *lnext, *lprev;  /* readfile, writefile: in fs->blocking while on the pool */
  pthread_t worker;    /* the pool thread running it, once phase is 1 */
  atomic_int phase;    /* 0 queued, 1 running (may block for good: a FIFO), 2 done */
  atomic_int stop;     /* lua_close: give up at the next interrupted call */
  csp_Sched *S;
  csp_FsState *fs;
  int op;
  int err;             /* 0 or a negative libuv error (its name is the code returned) */
  int sys;             /* the errno behind err (its text is the message, as in Go) */
  const char *errop;   /* the failing call, Go's name for it: "open", "read", "lstat"... */
  const char *errname; /* dirstat's lstat failure: the entry, appended to the path */
  struct stat st;      /* stat, lstat */
  csp_FsEnt *ents;
  size_t nents, entcap;
  int64_t files, size, blocks; /* dirstat "summary": the non-directory entries, summed */
  char *buf;           /* readfile: the data; writefile: a copy of it; readdir: the names arena */
  size_t len, cap;
  int mode;            /* writefile permissions */
  char path[1];        /* NUL-terminated copy: the Lua string may die while a worker reads it */
} csp_FsReq;

/* Calls in flight on the pool, and those waiting for a slot. */
struct csp_FsState {
  int inflight, limit;
  csp_FsReq *head, *tail;
  csp_FsReq *blocking;  /* readfile and writefile calls on the pool */
  csp_Teardown td;      /* at lua_close, interrupts them (csp_fswork_teardown) */
};

/* fswork.c: a request for op on path (NULL without memory; its wait's free_fn set); starts r on
** the pool (or queues it); frees r; a st_mode's file type. */
csp_FsReq *csp_fswork_new(csp_Sched *S, csp_FsState *fs, int op, const char *path, size_t plen);
void csp_fswork_submit(csp_FsState *fs, csp_FsReq *r);
void csp_fswork_free(csp_FsReq *r);
void csp_fswork_teardown(csp_Teardown *t);
int csp_fswork_type(mode_t m);

static inline double csp_fswork_time(const struct timespec *t) {
  return (double)t->tv_sec + (double)t->tv_nsec / CSP_NS;
}

#endif
