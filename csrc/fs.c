/* fs.c: csp.fs (stat, lstat, readdir, dirstat, readfile, writefile): checks a call's arguments,
** parks the caller on a request (fswork.c runs it on the thread pool) and turns the request's
** results into Lua values in the continuation, on the caller's thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fs.h"

/* Upvalues of the API functions. */
#define UP_STATE 2
#define UP_BUILD 3

/* Upvalues of build: field names, then type names (in CSP_FT_* order), all interned once. */
enum { K_NAME = 1, K_TYPE, K_SIZE, K_MODE, K_MTIME, K_ATIME, K_CTIME, K_INO, K_DEV, K_NLINK,
       K_UID, K_GID, K_BLOCKS, K_FILES, K_DIRS, K_LAST = K_DIRS };
static const char *const keynames[] = {"name", "type", "size", "mode", "mtime", "atime", "ctime",
                                       "ino", "dev", "nlink", "uid", "gid", "blocks", "files",
                                       "dirs"};
static const char *const typenames[] = {"unknown", "file", "dir", "link", "fifo", "socket",
                                        "char", "block"};
#define UP_TYPE(t) (K_LAST + 1 + (t))

/* ---------------------------------------------------------------- results, on the caller's side */

#define SETKEY(k) lua_pushvalue(L, lua_upvalueindex(k))
#define PUSHTYPE(t) lua_pushvalue(L, lua_upvalueindex(UP_TYPE(t)))

/* The table of a stat or lstat result. */
static void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, K_LAST);
  SETKEY(K_TYPE); PUSHTYPE(csp_fswork_type(st->st_mode)); lua_rawset(L, -3);
  SETKEY(K_SIZE); lua_pushinteger(L, (lua_Integer)st->st_size); lua_rawset(L, -3);
  SETKEY(K_MODE); lua_pushinteger(L, (lua_Integer)(st->st_mode & 07777)); lua_rawset(L, -3);
  SETKEY(K_MTIME); lua_pushnumber(L, csp_fswork_time(&st->st_mtim)); lua_rawset(L, -3);
  SETKEY(K_ATIME); lua_pushnumber(L, csp_fswork_time(&st->st_atim)); lua_rawset(L, -3);
  SETKEY(K_CTIME); lua_pushnumber(L, csp_fswork_time(&st->st_ctim)); lua_rawset(L, -3);
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
static void push_ent(lua_State *L, const csp_FsEnt *e) {
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
  csp_FsReq *r = (csp_FsReq *)lua_touserdata(L, 1);
  if (r->err != 0) {
    char msg[128], code[64];
    snprintf(msg, sizeof msg, "%s", csp_strerror(r->sys != 0 ? -r->sys : r->err));
    uv_err_name_r(r->err, code, sizeof code);
    if (r->errname) {
      size_t n = strlen(r->path);
      return csp_fail(L, code, "%s %s%s%s: %s", r->errop, r->path,
                      n > 0 && r->path[n - 1] == '/' ? "" : "/", r->errname, msg);
    }
    return csp_fail(L, code, "%s %s: %s", r->errop, r->path, msg);
  }
  switch (r->op) {
    case CSP_FS_STAT: case CSP_FS_LSTAT:
      push_stat(L, &r->st);
      SETKEY(K_NAME);
      push_base(L, r->path);
      lua_rawset(L, -3);
      return 1;
    case CSP_FS_READDIR:
      lua_createtable(L, (int)r->nents, 0);
      for (size_t i = 0; i < r->nents; i++) {
        lua_createtable(L, 0, 2);
        SETKEY(K_NAME); lua_pushlstring(L, r->ents[i].name, r->ents[i].len); lua_rawset(L, -3);
        SETKEY(K_TYPE); PUSHTYPE(r->ents[i].type); lua_rawset(L, -3);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    case CSP_FS_DIRSTAT:
      lua_createtable(L, (int)r->nents, 0);
      for (size_t i = 0; i < r->nents; i++) {
        push_ent(L, &r->ents[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      return 1;
    case CSP_FS_DIRSUM:
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
    case CSP_FS_READFILE:
      lua_pushlstring(L, r->buf ? r->buf : "", r->len);
      return 1;
    default:
      lua_pushboolean(L, 1);
      return 1;
  }
}

static int fs_k(lua_State *L, int status, lua_KContext ctx) {
  csp_FsReq *r = (csp_FsReq *)ctx;
  int top, st;
  if (status == LUA_YIELD) csp_sched_checkresume(L, r->req.g);
  csp_req_end(&r->req);  /* always done: nothing else wakes a filesystem call */
  top = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(UP_BUILD));
  lua_pushlightuserdata(L, r);
  st = lua_pcall(L, 1, LUA_MULTRET, 0);
  csp_fswork_free(r);
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - top;
}

/* Checks the path (and data), then parks until a pool thread has done op. */
static int fs_call(lua_State *L, int op) {
  csp_Sched *S = csp_sched_get(L);
  csp_FsState *fs = (csp_FsState *)lua_touserdata(L, lua_upvalueindex(UP_STATE));
  size_t plen, dlen = 0;
  const char *path = luaL_checklstring(L, 1, &plen);
  const char *data = NULL;
  lua_Integer mode = 0;
  csp_G *g;
  csp_FsReq *r;
  if (op == CSP_FS_WRITEFILE) {
    data = luaL_checklstring(L, 2, &dlen);
    mode = luaL_optinteger(L, 3, 0666);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "permission bits expected (0 to 0o7777)");
  }
  if (memchr(path, '\0', plen) != NULL) {  /* Go: EINVAL, without asking the system */
    lua_pushnil(L);
    lua_pushstring(L, op == CSP_FS_STAT ? "stat " : op == CSP_FS_LSTAT ? "lstat " : "open ");
    lua_pushlstring(L, path, plen);  /* whole, as Go's PathError prints it */
    lua_pushliteral(L, ": invalid argument");
    lua_concat(L, 3);
    lua_pushliteral(L, "EINVAL");
    return 3;
  }
  g = csp_sched_self(L, S);
  r = csp_fswork_new(S, fs, op, path, plen);
  if (r == NULL || (dlen > 0 && (r->buf = malloc(dlen)) == NULL)) {
    free(r);
    return luaL_error(L, "not enough memory");
  }
  if (dlen > 0) memcpy(r->buf, data, dlen);
  r->len = dlen;
  r->mode = (int)mode;
  csp_fswork_submit(fs, r);
  return csp_req_park(L, &r->req, g, "syscall", (lua_KContext)r, fs_k);
}

static int fs_stat(lua_State *L) { return fs_call(L, CSP_FS_STAT); }
static int fs_lstat(lua_State *L) { return fs_call(L, CSP_FS_LSTAT); }
static int fs_readdir(lua_State *L) { return fs_call(L, CSP_FS_READDIR); }
/* dirstat(dir [, form]): form "entries" (the default) or "summary". */
static int fs_dirstat(lua_State *L) {
  static const char *const forms[] = {"entries", "summary", NULL};
  int form = luaL_checkoption(L, 2, "entries", forms);
  lua_settop(L, 1);
  return fs_call(L, form == 0 ? CSP_FS_DIRSTAT : CSP_FS_DIRSUM);
}
static int fs_readfile(lua_State *L) { return fs_call(L, CSP_FS_READFILE); }
static int fs_writefile(lua_State *L) { return fs_call(L, CSP_FS_WRITEFILE); }

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
  csp_FsState *fs;
  luaL_checkstack(L, K_LAST + CSP_FT_COUNT + 8, "csp.fs");  /* build's upvalues go on the stack */
  lua_createtable(L, 0, 6);                        /* [module, sched, fs] */
  lua_pushvalue(L, -2);                            /* upvalue 1: sched */
  fs = (csp_FsState *)lua_newuserdatauv(L, sizeof *fs, 0);
  memset(fs, 0, sizeof *fs);
  fs->limit = 2 * size;
  fs->td.close = csp_fswork_teardown;
  csp_teardown_add((csp_Sched *)lua_touserdata(L, -2), &fs->td);  /* the sched copy */
  lua_pushvalue(L, -1);
  /* Anchored until lua_close under its own address (each load of the module makes a scheduler
  ** and a state): in-flight items and the scheduler's teardown list point at it. */
  lua_rawsetp(L, LUA_REGISTRYINDEX, fs);
  for (i = 0; i < K_LAST; i++) lua_pushstring(L, keynames[i]);
  for (i = 0; i < CSP_FT_COUNT; i++) lua_pushstring(L, typenames[i]);
  lua_pushcclosure(L, build, K_LAST + CSP_FT_COUNT);   /* upvalue 3: build */
  luaL_setfuncs(L, funcs, 3);
  lua_setfield(L, -3, "fs");
}
