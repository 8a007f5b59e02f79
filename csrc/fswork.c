/* fswork.c: csp.fs requests on libuv's thread pool, no Lua: what a pool thread does for each
** (readdir, stat, lstat, dirstat, readfile, writefile: plain system calls, results kept in C
** memory; dirstat: open + getdents64 + fstatat of each entry; readfile: open + fstat + reads +
** close)
** and how the requests share the pool.
**
** Sharing the pool: metadata calls (stat, lstat, readdir, dirstat) keep at most twice the pool
** size of work items in libuv's queue: enough to keep every thread busy while the loop thread
** runs Lua, few enough that a DNS lookup (getaddrinfo: same pool, same FIFO) waits behind a
** handful of items, not behind a whole tree walk. Calls beyond that wait in a FIFO here; when an
** item completes, the waiting calls leave as batches, one work item running several calls in a
** row. A du issues a dirstat per directory: batching saves thread handoffs (pool and loop
** wake-ups), which on a small machine cost as much as the directory reads. readfile and writefile
** go straight to libuv, one item each: either may block for good (a FIFO nobody opens) and must
** neither hold up a batch nor wait for a slot that a blocked call holds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "fs.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* ---------------------------------------------------------------- request memory */

void csp_fswork_free(csp_FsReq *r) {
  free(r->ents);
  free(r->buf);
  free(r);
}

/* free_fn of the request's wait: nobody will come for the results. */
static void req_release(csp_Req *q) {
  csp_fswork_free((csp_FsReq *)(void *)((char *)q - offsetof(csp_FsReq, req)));
}

csp_FsReq *csp_fswork_new(csp_Sched *S, csp_FsState *fs, int op, const char *path, size_t plen) {
  csp_FsReq *r = calloc(1, sizeof *r + plen);
  if (r == NULL) return NULL;
  memcpy(r->path, path, plen + 1);
  r->op = op;
  r->S = S;
  r->fs = fs;
  r->req.free_fn = req_release;
  return r;
}

/* ---------------------------------------------------------------- pool side */

static void fail(csp_FsReq *r, const char *op, int e) {
  r->errop = op;
  r->sys = e;
  r->err = uv_translate_sys_error(e);
}

int csp_fswork_type(mode_t m) {
  if (S_ISREG(m)) return CSP_FT_FILE;
  if (S_ISDIR(m)) return CSP_FT_DIR;
  if (S_ISLNK(m)) return CSP_FT_LINK;
  if (S_ISFIFO(m)) return CSP_FT_FIFO;
  if (S_ISSOCK(m)) return CSP_FT_SOCKET;
  if (S_ISCHR(m)) return CSP_FT_CHAR;
  if (S_ISBLK(m)) return CSP_FT_BLOCK;
  return CSP_FT_UNKNOWN;
}

static int dirent_type(const struct dirent64 *de) {
#ifdef DT_UNKNOWN
  switch (de->d_type) {
    case DT_REG: return CSP_FT_FILE;
    case DT_DIR: return CSP_FT_DIR;
    case DT_LNK: return CSP_FT_LINK;
    case DT_FIFO: return CSP_FT_FIFO;
    case DT_SOCK: return CSP_FT_SOCKET;
    case DT_CHR: return CSP_FT_CHAR;
    case DT_BLK: return CSP_FT_BLOCK;
    default: return CSP_FT_UNKNOWN;
  }
#else
  (void)de;
  return CSP_FT_UNKNOWN;
#endif
}

static int ent_cmp(const void *a, const void *b) {
  return strcmp(((const csp_FsEnt *)a)->name, ((const csp_FsEnt *)b)->name);
}

/* ---------------------------------------------------------------- reading a directory */

#define DIRBUF 32768  /* glibc's readdir buffer: a directory of ~1000 entries in one call */

/* A directory read with getdents64 straight into the pool thread's stack: opendir would add an
** fstat, two fcntl calls and a 32 KB malloc to every directory (60k of the 360k calls a du of
** 20k directories makes besides its 200k lstats). */
typedef union DirBuf { struct dirent64 de; char b[DIRBUF]; } DirBuf;  /* aligned for dirent64 */

typedef struct DirRd {
  int fd;
  size_t pos, end;
  DirBuf *buf;  /* on the caller's stack */
} DirRd;

/* The next entry but . and ..; NULL at the end (errno 0) or on an error (errno set). */
static struct dirent64 *dir_next(DirRd *d) {
  for (;;) {
    struct dirent64 *de;
    if (d->pos >= d->end) {
      ssize_t n = getdents64(d->fd, d->buf->b, DIRBUF);
      if (n <= 0) {
        if (n == 0) errno = 0;
        return NULL;
      }
      d->pos = 0;
      d->end = (size_t)n;
    }
    de = (struct dirent64 *)(void *)(d->buf->b + d->pos);
    d->pos += de->d_reclen;
    if (de->d_name[0] == '.' &&
        (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0'))) continue;
    return de;
  }
}

/* Opens r's path as a directory; 0 (r failed) when it cannot. A file that is not one fails as
** in Go, whose open succeeds and whose getdents says ENOTDIR: "readdirent PATH: not a directory". */
static int dir_open(csp_FsReq *r, DirRd *d) {
  d->fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  d->pos = d->end = 0;
  if (d->fd < 0) {
    int e = errno, fd = e == ENOTDIR ? open(r->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
    fail(r, fd >= 0 ? "readdirent" : "open", e);
    if (fd >= 0) close(fd);
  }
  return d->fd >= 0;
}

/* Appends one entry; returns 0 when out of memory. */
static int ent_add(csp_FsReq *r, const char *name, int type) {
  size_t len = strlen(name);
  if (r->nents == r->entcap) {
    size_t ncap = r->entcap ? r->entcap * 2 : 64;
    csp_FsEnt *ne = realloc(r->ents, ncap * sizeof *ne);
    if (ne == NULL) return 0;
    r->ents = ne;
    r->entcap = ncap;
  }
  if (r->len + len + 1 > r->cap) {
    size_t ncap = r->cap ? r->cap * 2 : 4096;
    char *nb;
    while (ncap < r->len + len + 1) ncap *= 2;
    if ((nb = realloc(r->buf, ncap)) == NULL) return 0;
    r->buf = nb;
    r->cap = ncap;
  }
  memcpy(r->buf + r->len, name, len + 1);
  r->ents[r->nents].off = r->len;
  r->ents[r->nents].len = (uint32_t)len;
  r->ents[r->nents].type = (uint8_t)type;
  r->ents[r->nents].gone = 0;
  r->nents++;
  r->len += len + 1;
  return 1;
}

/* Names in the arena become pointers once it stops growing; sorted as Go's os.ReadDir. */
static void ents_sort(csp_FsReq *r) {
  for (size_t i = 0; i < r->nents; i++) r->ents[i].name = r->buf + r->ents[i].off;
  if (r->nents > 1) qsort(r->ents, r->nents, sizeof *r->ents, ent_cmp);
}

/* readdir and dirstat: names sorted (as Go's os.ReadDir), "." and ".." left out. dirstat lstats
** every entry relative to the open directory; readdir only those getdents64 gave no type. */
static void do_dir(csp_FsReq *r, int withstat) {
  struct dirent64 *de;
  size_t i, n;
  DirRd d;
  DirBuf buf;
  d.buf = &buf;
  if (!dir_open(r, &d)) return;
  while ((de = dir_next(&d)) != NULL) {
    if (!ent_add(r, de->d_name, dirent_type(de))) {
      errno = ENOMEM;
      break;
    }
  }
  if (errno != 0) fail(r, "readdirent", errno);
  if (r->err == 0) {
    ents_sort(r);
    for (i = 0; i < r->nents; i++) {
      csp_FsEnt *e = &r->ents[i];
      struct stat st;
      if (!withstat && e->type != CSP_FT_UNKNOWN) continue;
      if (fstatat(d.fd, e->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {  /* removed since readdir: not an error (Go skips it too) */
          e->gone = 1;
          continue;
        }
        fail(r, "lstat", errno);
        r->errname = e->name;
        break;
      }
      e->type = (uint8_t)csp_fswork_type(st.st_mode);
      e->mode = (uint32_t)st.st_mode;
      e->size = (int64_t)st.st_size;
      e->ino = (int64_t)st.st_ino;
      e->nlink = (int64_t)st.st_nlink;
      e->blocks = (int64_t)st.st_blocks;
      e->mtime = csp_fswork_time(&st.st_mtim);
    }
    for (i = n = 0; i < r->nents; i++)
      if (!r->ents[i].gone) r->ents[n++] = r->ents[i];
    r->nents = n;
  }
  close(d.fd);
}

/* dirstat's "summary" form: the same reads and lstats, but only subdirectory names are kept
** (sorted); every other entry is counted and summed here, so a walk pays nothing per file in
** Lua. An entry getdents64 already calls a directory needs no lstat: its own size is not summed. */
static void do_dirsum(csp_FsReq *r) {
  struct dirent64 *de;
  struct stat st;
  DirRd d;
  DirBuf buf;
  d.buf = &buf;
  if (!dir_open(r, &d)) return;
  while ((de = dir_next(&d)) != NULL) {
    int type = dirent_type(de);
    if (type != CSP_FT_DIR) {
      if (fstatat(d.fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  /* removed since readdir, as dirstat */
        fail(r, "lstat", errno);
        if (ent_add(r, de->d_name, CSP_FT_UNKNOWN)) r->errname = r->buf + r->ents[r->nents - 1].off;
        break;
      }
      type = csp_fswork_type(st.st_mode);
    }
    if (type != CSP_FT_DIR) {
      r->files++;
      r->size += (int64_t)st.st_size;
      r->blocks += (int64_t)st.st_blocks;
    } else if (!ent_add(r, de->d_name, CSP_FT_DIR)) {
      errno = ENOMEM;
      break;
    }
  }
  if (r->err == 0 && errno != 0) fail(r, "readdirent", errno);
  if (r->err == 0) ents_sort(r);
  close(d.fd);
}

/* A call interrupted by csp_fswork_teardown's signal is not made again. */
static int stopped(csp_FsReq *r) {
  return atomic_load_explicit(&r->stop, memory_order_acquire);
}

static void do_readfile(csp_FsReq *r) {
  struct stat st;
  size_t cap = 8192;
  int fd = stopped(r) ? (errno = EINTR, -1) : open(r->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(r, "open", errno);
    return;
  }
  /* The size is a hint only: files in /proc say 0, and a file may grow while we read. */
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) cap = (size_t)st.st_size + 1;
  for (;;) {
    ssize_t n;
    if (r->len == r->cap) {
      size_t ncap = r->cap ? r->cap * 2 : cap;
      char *nb = realloc(r->buf, ncap);
      if (nb == NULL) {
        fail(r, "read", ENOMEM);
        break;
      }
      r->buf = nb;
      r->cap = ncap;
    }
    n = read(fd, r->buf + r->len, r->cap - r->len);
    if (n < 0) {
      if (errno == EINTR && !stopped(r)) continue;
      fail(r, "read", errno);
      break;
    }
    if (n == 0) break;
    r->len += (size_t)n;
  }
  close(fd);
}

static void do_writefile(csp_FsReq *r) {
  size_t done = 0;
  int fd = stopped(r) ? (errno = EINTR, -1) : open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, r->mode);
  if (fd < 0) {
    fail(r, "open", errno);
    return;
  }
  while (done < r->len) {
    ssize_t n = write(fd, r->buf + done, r->len - done);
    if (n < 0) {
      if (errno == EINTR && !stopped(r)) continue;
      fail(r, "write", errno);
      break;
    }
    done += (size_t)n;
  }
  if (close(fd) != 0 && r->err == 0) fail(r, "close", errno);
}

static void work_one(csp_FsReq *r) {
  switch (r->op) {
    case CSP_FS_STAT:
      if (stat(r->path, &r->st) != 0) fail(r, "stat", errno);
      break;
    case CSP_FS_LSTAT:
      if (lstat(r->path, &r->st) != 0) fail(r, "lstat", errno);
      break;
    case CSP_FS_READDIR: do_dir(r, 0); break;
    case CSP_FS_DIRSTAT: do_dir(r, 1); break;
    case CSP_FS_DIRSUM: do_dirsum(r); break;
    case CSP_FS_READFILE:
    case CSP_FS_WRITEFILE:
      r->worker = pthread_self();
      atomic_store_explicit(&r->phase, 1, memory_order_release);  /* publishes worker */
      if (r->op == CSP_FS_READFILE) do_readfile(r);
      else do_writefile(r);
      atomic_store_explicit(&r->phase, 2, memory_order_release);
      break;
  }
}

static void work_cb(uv_work_t *w) {
  for (csp_FsReq *r = (csp_FsReq *)w; r != NULL; r = r->bnext) work_one(r);
}

/* ---------------------------------------------------------------- loop side */

#define BATCH_MAX 16  /* bounds how long a call can wait behind the others of its batch */

static void after_cb(uv_work_t *w, int status);

static void start(csp_FsState *fs, csp_FsReq *first) {
  fs->inflight++;
  uv_queue_work(first->S->loop, &first->work, work_cb, after_cb);  /* fails only without work_cb */
}

static int batchable(const csp_FsReq *r) {
  return r->op != CSP_FS_READFILE && r->op != CSP_FS_WRITEFILE;
}

void csp_fswork_submit(csp_FsState *fs, csp_FsReq *r) {
  r->bnext = NULL;
  if (!batchable(r)) {
    r->lprev = NULL;
    if ((r->lnext = fs->blocking) != NULL) r->lnext->lprev = r;
    fs->blocking = r;
    uv_queue_work(r->S->loop, &r->work, work_cb, after_cb);
    return;
  }
  if (fs->inflight < fs->limit) {
    start(fs, r);
    return;
  }
  r->next = NULL;
  if (fs->tail) fs->tail->next = r;
  else fs->head = r;
  fs->tail = r;
}

/* Fills the free slots from the FIFO: the waiting calls are shared out evenly between them. */
static void refill(csp_FsState *fs) {
  while (fs->head && fs->inflight < fs->limit) {
    int waiting = 0, want, n = 1;
    csp_FsReq *first = fs->head, *last = first, *p;
    for (p = fs->head; p != NULL && waiting < BATCH_MAX * fs->limit; p = p->next) waiting++;
    want = (waiting + (fs->limit - fs->inflight) - 1) / (fs->limit - fs->inflight);
    if (want > BATCH_MAX) want = BATCH_MAX;
    for (fs->head = first->next; n < want && fs->head != NULL; n++) {
      last->bnext = fs->head;
      last = fs->head;
      fs->head = fs->head->next;
    }
    last->bnext = NULL;
    if (fs->head == NULL) fs->tail = NULL;
    start(fs, first);
  }
}

/* On the loop thread, inside uv_run: no Lua API here. */
static void after_cb(uv_work_t *w, int status) {
  csp_FsReq *r = (csp_FsReq *)w, *next;
  csp_FsState *fs = r->fs;
  if (!batchable(r)) {
    if (r->lprev != NULL) r->lprev->lnext = r->lnext;
    else fs->blocking = r->lnext;
    if (r->lnext != NULL) r->lnext->lprev = r->lprev;
  }
  if (r->S->closing) {  /* lua_close: nobody waits any more; calls never started go too */
    while ((next = fs->head) != NULL) {
      fs->head = next->next;
      csp_fswork_free(next);
    }
    fs->tail = NULL;
    for (; r != NULL; r = next) {
      next = r->bnext;
      csp_fswork_free(r);
    }
    return;
  }
  if (batchable(r)) {
    fs->inflight--;
    refill(fs);
  }
  for (; r != NULL; r = next) {
    next = r->bnext;
    if (status != 0 && r->err == 0) {  /* UV_ECANCELED: nobody cancels, but stay exact */
      r->err = status;
      r->errop = r->op == CSP_FS_STAT ? "stat" : r->op == CSP_FS_LSTAT ? "lstat" : "open";
    }
    csp_req_done(&r->req, 0);  /* frees r if nobody waits for it any more */
  }
}

/* ---------------------------------------------------------------- lua_close */

/* A readfile or writefile may block for good (a FIFO nobody opens), and libuv joins its pool
** threads at exit: the process would never end, where Go's just exits. At lua_close each such
** call is told to stop and its thread gets SIGURG (its default: ignored) with a handler
** installed for the moment without SA_RESTART, so the blocked call fails with EINTR. The
** signal may land just before the call starts: it is sent again until the call is over. */
static void urg_noop(int sig) {
  (void)sig;
}

static int interrupt_running(csp_FsState *fs) {
  int n = 0;
  for (csp_FsReq *r = fs->blocking; r != NULL; r = r->lnext) {
    atomic_store_explicit(&r->stop, 1, memory_order_release);
    if (atomic_load_explicit(&r->phase, memory_order_acquire) == 1) {
      pthread_kill(r->worker, SIGURG);
      n++;
    }
  }
  return n;
}

void csp_fswork_teardown(csp_Teardown *t) {
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;  /* schedulers of other threads */
  static int users;
  static struct sigaction old;
  csp_FsState *fs = (csp_FsState *)(void *)((char *)t - offsetof(csp_FsState, td));
  struct sigaction sa;
  csp_teardown_del(t);
  if (fs->blocking == NULL) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = urg_noop;
  sigemptyset(&sa.sa_mask);
  pthread_mutex_lock(&mu);
  if (users++ == 0) sigaction(SIGURG, &sa, &old);
  pthread_mutex_unlock(&mu);
  for (int i = 0; i < 1000 && interrupt_running(fs) > 0; i++) uv_sleep(1);  /* 1 s at most */
  pthread_mutex_lock(&mu);
  if (--users == 0) sigaction(SIGURG, &old, NULL);
  pthread_mutex_unlock(&mu);
}
