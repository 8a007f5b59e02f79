/* fs.c: filesystem operations on libuv's thread pool (readdir, stat, lstat, dirstat, readfile,
** writefile). A call is done whole by one pool thread with plain POSIX calls (dirstat: open +
** readdir + fstatat of each entry; readfile: open + fstat + reads + close), its results kept in
** C memory; the continuation turns them into Lua values on the caller's thread.
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
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "csp.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

static const char state_key = 0;  /* registry: the FsState userdata, alive until lua_close */

enum { OP_STAT, OP_LSTAT, OP_READDIR, OP_DIRSTAT, OP_DIRSUM, OP_READFILE, OP_WRITEFILE };

/* Upvalues of the API functions. */
#define UP_STATE 2
#define UP_BUILD 3

/* Upvalues of build: field names, then type names, all interned once. */
enum { K_NAME = 1, K_TYPE, K_SIZE, K_MODE, K_MTIME, K_ATIME, K_CTIME, K_INO, K_DEV, K_NLINK,
       K_UID, K_GID, K_BLOCKS, K_FILES, K_DIRS, K_LAST = K_DIRS };
static const char *const keynames[] = {"name", "type", "size", "mode", "mtime", "atime", "ctime",
                                       "ino", "dev", "nlink", "uid", "gid", "blocks", "files",
                                       "dirs"};
enum { T_UNKNOWN, T_FILE, T_DIR, T_LINK, T_FIFO, T_SOCKET, T_CHAR, T_BLOCK, T_COUNT };
static const char *const typenames[] = {"unknown", "file", "dir", "link", "fifo", "socket",
                                        "char", "block"};
#define UP_TYPE(t) (K_LAST + 1 + (t))

/* A directory entry, kept small: dirstat holds one per file of the directory. */
typedef struct Ent {
  size_t off;          /* name in the arena while it grows, */
  const char *name;    /* then a pointer into it */
  uint32_t len;
  uint8_t type;        /* T_* */
  uint8_t gone;        /* vanished between readdir and lstat */
  uint32_t mode;       /* dirstat only, from here on */
  int64_t size, ino, nlink, blocks;
  double mtime;
} Ent;

typedef struct FsState FsState;

typedef struct FsReq {
  uv_work_t work;      /* first member: libuv hands back the FsReq */
  struct FsReq *next;  /* in the FIFO of calls waiting for a pool slot */
  struct FsReq *bnext; /* the rest of the batch this work item runs */
  csp_Sched *S;
  FsState *fs;
  csp_G *g;
  uint32_t ticket;
  int op;
  int err;             /* 0 or a negative libuv error (its name is the code returned) */
  int sys;             /* the errno behind err (its text is the message, as in Go) */
  const char *errop;   /* the failing call, Go's name for it: "open", "read", "lstat"... */
  const char *errname; /* dirstat's lstat failure: the entry, appended to the path */
  struct stat st;      /* stat, lstat */
  Ent *ents;
  size_t nents, entcap;
  int64_t files, size, blocks; /* dirstat "summary": the non-directory entries, summed */
  char *buf;           /* readfile: the data; writefile: a copy of it; readdir: the names arena */
  size_t len, cap;
  int mode;            /* writefile permissions */
  char path[1];        /* NUL-terminated copy: the Lua string may die while a worker reads it */
} FsReq;

struct FsState {
  int inflight, limit;
  FsReq *head, *tail;
};

static void req_free(FsReq *r) {
  free(r->ents);
  free(r->buf);
  free(r);
}

/* ---------------------------------------------------------------- worker side (no Lua here) */

static void fail(FsReq *r, const char *op, int e) {
  r->errop = op;
  r->sys = e;
  r->err = uv_translate_sys_error(e);
}

static int mode_type(mode_t m) {
  if (S_ISREG(m)) return T_FILE;
  if (S_ISDIR(m)) return T_DIR;
  if (S_ISLNK(m)) return T_LINK;
  if (S_ISFIFO(m)) return T_FIFO;
  if (S_ISSOCK(m)) return T_SOCKET;
  if (S_ISCHR(m)) return T_CHAR;
  if (S_ISBLK(m)) return T_BLOCK;
  return T_UNKNOWN;
}

static int dirent_type(const struct dirent *de) {
#ifdef DT_UNKNOWN
  switch (de->d_type) {
    case DT_REG: return T_FILE;
    case DT_DIR: return T_DIR;
    case DT_LNK: return T_LINK;
    case DT_FIFO: return T_FIFO;
    case DT_SOCK: return T_SOCKET;
    case DT_CHR: return T_CHAR;
    case DT_BLK: return T_BLOCK;
    default: return T_UNKNOWN;
  }
#else
  (void)de;
  return T_UNKNOWN;
#endif
}

static double ts(const struct timespec *t) {
  return (double)t->tv_sec + (double)t->tv_nsec / CSP_NS;
}

static int ent_cmp(const void *a, const void *b) {
  return strcmp(((const Ent *)a)->name, ((const Ent *)b)->name);
}

/* Appends one entry; returns 0 when out of memory. */
static int ent_add(FsReq *r, const char *name, int type) {
  size_t len = strlen(name);
  if (r->nents == r->entcap) {
    size_t ncap = r->entcap ? r->entcap * 2 : 64;
    Ent *ne = realloc(r->ents, ncap * sizeof *ne);
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

/* readdir and dirstat: names sorted (as Go's os.ReadDir), "." and ".." left out. dirstat lstats
** every entry relative to the open directory; readdir only those readdir(3) gave no type. */
static void do_dir(FsReq *r, int withstat) {
  struct dirent *de;
  DIR *d;
  size_t i, n;
  int fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fail(r, "open", errno);
    return;
  }
  if ((d = fdopendir(fd)) == NULL) {
    fail(r, "open", errno);
    close(fd);
    return;
  }
  for (;;) {
    errno = 0;
    if ((de = readdir(d)) == NULL) {
      if (errno != 0) fail(r, "readdirent", errno);
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    if (!ent_add(r, de->d_name, dirent_type(de))) {
      fail(r, "readdirent", ENOMEM);
      break;
    }
  }
  if (r->err == 0) {
    for (i = 0; i < r->nents; i++) r->ents[i].name = r->buf + r->ents[i].off;
    if (r->nents > 1) qsort(r->ents, r->nents, sizeof *r->ents, ent_cmp);
    for (i = 0; i < r->nents; i++) {
      Ent *e = &r->ents[i];
      struct stat st;
      if (!withstat && e->type != T_UNKNOWN) continue;
      if (fstatat(fd, e->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {  /* removed since readdir: not an error (Go skips it too) */
          e->gone = 1;
          continue;
        }
        fail(r, "lstat", errno);
        r->errname = e->name;
        break;
      }
      e->type = (uint8_t)mode_type(st.st_mode);
      e->mode = (uint32_t)st.st_mode;
      e->size = (int64_t)st.st_size;
      e->ino = (int64_t)st.st_ino;
      e->nlink = (int64_t)st.st_nlink;
      e->blocks = (int64_t)st.st_blocks;
      e->mtime = ts(&st.st_mtim);
    }
    for (i = n = 0; i < r->nents; i++)
      if (!r->ents[i].gone) r->ents[n++] = r->ents[i];
    r->nents = n;
  }
  closedir(d);
}

/* dirstat's "summary" form: the same reads and lstats, but only subdirectory names are kept
** (sorted); every other entry is counted and summed here, so a walk pays nothing per file in
** Lua. An entry readdir(3) already calls a directory needs no lstat: its own size is not summed. */
static void do_dirsum(FsReq *r) {
  struct dirent *de;
  struct stat st;
  DIR *d;
  int fd = open(r->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || (d = fdopendir(fd)) == NULL) {
    fail(r, "open", errno);
    if (fd >= 0) close(fd);
    return;
  }
  for (;;) {
    int type;
    errno = 0;
    if ((de = readdir(d)) == NULL) {
      if (errno != 0) fail(r, "readdirent", errno);
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    type = dirent_type(de);
    if (type != T_DIR) {
      if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  /* removed since readdir, as dirstat */
        fail(r, "lstat", errno);
        if (ent_add(r, de->d_name, T_UNKNOWN)) r->errname = r->buf + r->ents[r->nents - 1].off;
        break;
      }
      type = mode_type(st.st_mode);
    }
    if (type != T_DIR) {
      r->files++;
      r->size += (int64_t)st.st_size;
      r->blocks += (int64_t)st.st_blocks;
    } else if (!ent_add(r, de->d_name, T_DIR)) {
      fail(r, "readdirent", ENOMEM);
      break;
    }
  }
  if (r->err == 0) {
    for (size_t i = 0; i < r->nents; i++) r->ents[i].name = r->buf + r->ents[i].off;
    if (r->nents > 1) qsort(r->ents, r->nents, sizeof *r->ents, ent_cmp);
  }
  closedir(d);
}

static void do_readfile(FsReq *r) {
  struct stat st;
  size_t cap = 8192;
  int fd = open(r->path, O_RDONLY | O_CLOEXEC);
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
      if (errno == EINTR) continue;
      fail(r, "read", errno);
      break;
    }
    if (n == 0) break;
    r->len += (size_t)n;
  }
  close(fd);
}

static void do_writefile(FsReq *r) {
  size_t done = 0;
  int fd = open(r->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, r->mode);
  if (fd < 0) {
    fail(r, "open", errno);
    return;
  }
  while (done < r->len) {
    ssize_t n = write(fd, r->buf + done, r->len - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(r, "write", errno);
      break;
    }
    done += (size_t)n;
  }
  if (close(fd) != 0 && r->err == 0) fail(r, "close", errno);
}

static void work_one(FsReq *r) {
  switch (r->op) {
    case OP_STAT:
      if (stat(r->path, &r->st) != 0) fail(r, "stat", errno);
      break;
    case OP_LSTAT:
      if (lstat(r->path, &r->st) != 0) fail(r, "lstat", errno);
      break;
    case OP_READDIR: do_dir(r, 0); break;
    case OP_DIRSTAT: do_dir(r, 1); break;
    case OP_DIRSUM: do_dirsum(r); break;
    case OP_READFILE: do_readfile(r); break;
    case OP_WRITEFILE: do_writefile(r); break;
  }
}

static void work_cb(uv_work_t *w) {
  for (FsReq *r = (FsReq *)w; r != NULL; r = r->bnext) work_one(r);
}

/* ---------------------------------------------------------------- loop side */

#define BATCH_MAX 16  /* bounds how long a call can wait behind the others of its batch */

static void after_cb(uv_work_t *w, int status);

static void start(FsState *fs, FsReq *first) {
  fs->inflight++;
  uv_queue_work(first->S->loop, &first->work, work_cb, after_cb);  /* fails only without work_cb */
}

static int batchable(const FsReq *r) {
  return r->op != OP_READFILE && r->op != OP_WRITEFILE;
}

static void submit(FsState *fs, FsReq *r) {
  r->bnext = NULL;
  if (!batchable(r)) {
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
static void refill(FsState *fs) {
  while (fs->head && fs->inflight < fs->limit) {
    int waiting = 0, want, n = 1;
    FsReq *first = fs->head, *last = first, *p;
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
  FsReq *r = (FsReq *)w, *next;
  FsState *fs = r->fs;
  if (r->S->closing) {  /* lua_close: the goroutine records are gone; calls never started too */
    while ((next = fs->head) != NULL) {
      fs->head = next->next;
      req_free(next);
    }
    fs->tail = NULL;
    for (; r != NULL; r = next) {
      next = r->bnext;
      req_free(r);
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
      r->errop = r->op == OP_STAT ? "stat" : r->op == OP_LSTAT ? "lstat" : "open";
    }
    if (!csp_sched_wake(r->S, r->g, r->ticket, 0)) req_free(r);  /* the wait was cancelled */
  }
}

/* ---------------------------------------------------------------- results, on the caller's side */

#define SETKEY(k) lua_pushvalue(L, lua_upvalueindex(k))
#define PUSHTYPE(t) lua_pushvalue(L, lua_upvalueindex(UP_TYPE(t)))

/* The table of a stat or lstat result. */
static void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, K_LAST);
  SETKEY(K_TYPE); PUSHTYPE(mode_type(st->st_mode)); lua_rawset(L, -3);
  SETKEY(K_SIZE); lua_pushinteger(L, (lua_Integer)st->st_size); lua_rawset(L, -3);
  SETKEY(K_MODE); lua_pushinteger(L, (lua_Integer)(st->st_mode & 07777)); lua_rawset(L, -3);
  SETKEY(K_MTIME); lua_pushnumber(L, ts(&st->st_mtim)); lua_rawset(L, -3);
  SETKEY(K_ATIME); lua_pushnumber(L, ts(&st->st_atim)); lua_rawset(L, -3);
  SETKEY(K_CTIME); lua_pushnumber(L, ts(&st->st_ctim)); lua_rawset(L, -3);
  SETKEY(K_INO); lua_pushinteger(L, (lua_Integer)st->st_ino); lua_rawset(L, -3);
  SETKEY(K_DEV); lua_pushinteger(L, (lua_Integer)st->st_dev); lua_rawset(L, -3);
  SETKEY(K_NLINK); lua_pushinteger(L, (lua_Integer)st->st_nlink); lua_rawset(L, -3);
  SETKEY(K_UID); lua_pushinteger(L, (lua_Integer)st->st_uid); lua_rawset(L, -3);
  SETKEY(K_GID); lua_pushinteger(L, (lua_Integer)st->st_gid); lua_rawset(L, -3);
  SETKEY(K_BLOCKS); lua_pushinteger(L, (lua_Integer)st->st_blocks); lua_rawset(L, -3);
}

/* A dirstat entry: the fields a walk needs, in a table whose 8 slots are all used (more
** fields would double its size: per-file allocation and collection dominate a du's main thread).
** dev, uid, gid, atime and ctime are stat/lstat's only. */
static void push_ent(lua_State *L, const Ent *e) {
  lua_createtable(L, 0, 8);
  SETKEY(K_NAME); lua_pushlstring(L, e->name, e->len); lua_rawset(L, -3);
  SETKEY(K_TYPE); PUSHTYPE(e->type); lua_rawset(L, -3);
  SETKEY(K_SIZE); lua_pushinteger(L, (lua_Integer)e->size); lua_rawset(L, -3);
  SETKEY(K_MODE); lua_pushinteger(L, (lua_Integer)(e->mode & 07777)); lua_rawset(L, -3);
  SETKEY(K_MTIME); lua_pushnumber(L, e->mtime); lua_rawset(L, -3);
  SETKEY(K_INO); lua_pushinteger(L, (lua_Integer)e->ino); lua_rawset(L, -3);
  SETKEY(K_NLINK); lua_pushinteger(L, (lua_Integer)e->nlink); lua_rawset(L, -3);
  SETKEY(K_BLOCKS); lua_pushinteger(L, (lua_Integer)e->blocks); lua_rawset(L, -3);
}

/* Go's FileInfo.Name for a path: its last element. */
static void push_base(lua_State *L, const char *p) {
  size_t n = strlen(p);
  const char *s;
  while (n > 1 && p[n - 1] == '/') n--;
  for (s = p + n; s > p && s[-1] != '/'; s--) {}
  if (s == p + n && n > 0) s--;  /* "/" */
  lua_pushlstring(L, s, (size_t)(p + n - s));
}

/* The results of request r (a light userdata): runs under lua_pcall so that a memory error
** while building them cannot leak r. Upvalues: the interned keys and type names. */
static int build(lua_State *L) {
  FsReq *r = (FsReq *)lua_touserdata(L, 1);
  if (r->err != 0) {
    char msg[128], code[64];
    /* Go's texts are the C library's with a lower-case first letter ("is a directory");
    ** libuv's differ for a few ("illegal operation on a directory"). */
    if (r->sys != 0) {
      snprintf(msg, sizeof msg, "%s", strerror(r->sys));
      if (msg[0] >= 'A' && msg[0] <= 'Z' && msg[1] >= 'a' && msg[1] <= 'z')
        msg[0] = (char)(msg[0] - 'A' + 'a');
    } else {
      uv_strerror_r(r->err, msg, sizeof msg);
    }
    uv_err_name_r(r->err, code, sizeof code);
    if (r->errname) {
      size_t n = strlen(r->path);
      return csp_fail(L, code, "%s %s%s%s: %s", r->errop, r->path,
                      n > 0 && r->path[n - 1] == '/' ? "" : "/", r->errname, msg);
    }
    return csp_fail(L, code, "%s %s: %s", r->errop, r->path, msg);
  }
  switch (r->op) {
    case OP_STAT: case OP_LSTAT:
      push_stat(L, &r->st);
      SETKEY(K_NAME);
      push_base(L, r->path);
      lua_rawset(L, -3);
      return 1;
    case OP_READDIR:
      lua_createtable(L, (int)r->nents, 0);
      for (size_t i = 0; i < r->nents; i++) {
        lua_createtable(L, 0, 2);
        SETKEY(K_NAME); lua_pushlstring(L, r->ents[i].name, r->ents[i].len); lua_rawset(L, -3);
        SETKEY(K_TYPE); PUSHTYPE(r->ents[i].type); lua_rawset(L, -3);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    case OP_DIRSTAT:
      lua_createtable(L, (int)r->nents, 0);
      for (size_t i = 0; i < r->nents; i++) {
        push_ent(L, &r->ents[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    case OP_DIRSUM:
      lua_createtable(L, 0, 4);
      SETKEY(K_FILES); lua_pushinteger(L, (lua_Integer)r->files); lua_rawset(L, -3);
      SETKEY(K_SIZE); lua_pushinteger(L, (lua_Integer)r->size); lua_rawset(L, -3);
      SETKEY(K_BLOCKS); lua_pushinteger(L, (lua_Integer)r->blocks); lua_rawset(L, -3);
      SETKEY(K_DIRS);
      lua_createtable(L, (int)r->nents, 0);
      for (size_t i = 0; i < r->nents; i++) {
        lua_pushlstring(L, r->ents[i].name, r->ents[i].len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      lua_rawset(L, -3);
      return 1;
    case OP_READFILE:
      lua_pushlstring(L, r->buf ? r->buf : "", r->len);
      return 1;
    default:
      lua_pushboolean(L, 1);
      return 1;
  }
}

static int fs_k(lua_State *L, int status, lua_KContext ctx) {
  FsReq *r = (FsReq *)ctx;
  int top, st;
  if (status == LUA_YIELD) csp_sched_checkresume(L, r->g);
  top = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(UP_BUILD));
  lua_pushlightuserdata(L, r);
  st = lua_pcall(L, 1, LUA_MULTRET, 0);
  req_free(r);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

/* Checks the path (and data), then parks until a pool thread has done op. */
static int fs_call(lua_State *L, int op) {
  csp_Sched *S = csp_sched_get(L);
  FsState *fs = (FsState *)lua_touserdata(L, lua_upvalueindex(UP_STATE));
  size_t plen, dlen = 0;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = NULL;
  lua_Integer mode = 0;
  csp_G *g;
  FsReq *r;
  if (op == OP_WRITEFILE) {
    data = luaL_checklstring(L, 2, &dlen);
    mode = luaL_optinteger(L, 3, 0666);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "permission bits expected (0 to 0o7777)");
  }
  if (memchr(path, '\0', plen) != NULL) {  /* Go: EINVAL, without asking the system */
    return csp_fail(L, "EINVAL", "%s %s: invalid argument",
                    op == OP_STAT ? "stat" : op == OP_LSTAT ? "lstat" : "open", path);
  }
  g = csp_sched_self(L, S);
  r = calloc(1, sizeof *r + plen);
  if (r == NULL || (dlen > 0 && (r->buf = malloc(dlen)) == NULL)) {
    free(r);
    return luaL_error(L, "not enough memory");
  }
  memcpy(r->path, path, plen + 1);
  if (dlen > 0) memcpy(r->buf, data, dlen);
  r->len = dlen;
  r->mode = (int)mode;
  r->op = op;
  r->S = S;
  r->fs = fs;
  r->g = g;
  r->ticket = g->ticket;
  submit(fs, r);
  return csp_sched_park(L, g, "syscall", (lua_KContext)r, fs_k);
}

static int fs_stat(lua_State *L) { return fs_call(L, OP_STAT); }
static int fs_lstat(lua_State *L) { return fs_call(L, OP_LSTAT); }
static int fs_readdir(lua_State *L) { return fs_call(L, OP_READDIR); }
/* dirstat(dir [, form]): form "entries" (the default) or "summary". */
static int fs_dirstat(lua_State *L) {
  static const char *const forms[] = {"entries", "summary", NULL};
  int form = luaL_checkoption(L, 2, "entries", forms);
  lua_settop(L, 1);
  return fs_call(L, form == 0 ? OP_DIRSTAT : OP_DIRSUM);
}
static int fs_readfile(lua_State *L) { return fs_call(L, OP_READFILE); }
static int fs_writefile(lua_State *L) { return fs_call(L, OP_WRITEFILE); }

/* libuv's pool size, read the way libuv reads it (threadpool.c: default 4, at most 1024). */
static int pool_size(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  long n = v ? strtol(v, NULL, 10) : 4;
  if (n < 1) n = 1;
  if (n > 1024) n = 1024;
  return (int)n;
}

/* Stack: [module, sched]. Adds module.fs. */
void csp_fs_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"stat", fs_stat}, {"lstat", fs_lstat}, {"readdir", fs_readdir}, {"dirstat", fs_dirstat},
    {"readfile", fs_readfile}, {"writefile", fs_writefile}, {NULL, NULL}
  };
  int size = pool_size(), i;
  FsState *fs;
  lua_createtable(L, 0, 6);                        /* [module, sched, fs] */
  lua_pushvalue(L, -2);                            /* upvalue 1: sched */
  fs = (FsState *)lua_newuserdatauv(L, sizeof *fs, 0);
  memset(fs, 0, sizeof *fs);
  fs->limit = 2 * size;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &state_key);  /* in-flight items point at it */
  for (i = 0; i < K_LAST; i++) lua_pushstring(L, keynames[i]);
  for (i = 0; i < T_COUNT; i++) lua_pushstring(L, typenames[i]);
  lua_pushcclosure(L, build, K_LAST + T_COUNT);   /* upvalue 3: build */
  luaL_setfuncs(L, funcs, 3);
  lua_setfield(L, -3, "fs");
}
