/* proc.c: core._spawn(cmd, args, opts) and the process handle it returns: p:wait() parks the
** caller on the process's request until it is done (procspawn.c runs it) and returns its status
** and outputs; p:kill() sends SIGKILL. csp.exec (lua/csp/exec.lua) is built on these. The Lua
** handle and the C process point at each other while both live. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "proc.h"

/* The Lua handle (core._spawn's result): wait once, kill any time. */
typedef struct Exec {
  const void *tag;
  csp_Proc *p;         /* NULL once waited for, or forgotten */
  const char *cmd;     /* for messages: anchored in the userdata's user value */
} Exec;

static const char exec_tag = 0;

/* ---------------------------------------------------------------- results */

static int err_result(lua_State *L, const char *cmd, const char *cwd, int code) {
  if (code == UV_ENOENT && cwd && access(cwd, F_OK) != 0)
    return csp_fail(L, uv_err_name(code), "chdir %s: %s", cwd, csp_strerror(code));
  if (code == UV_ENOENT && cmd[0] == '\0') return csp_fail(L, uv_err_name(code), "exec: no command");
  if (code == UV_ENOENT && strchr(cmd, '/') == NULL)
    return csp_fail(L, uv_err_name(code), "exec: \"%s\": executable file not found in $PATH", cmd);
  if (code == UV_ENOBUFS)
    return csp_fail(L, uv_err_name(code), "exec: \"%s\": output larger than %d MiB", cmd,
                    (int)(CSP_PROC_OUTMAX >> 20));
  return csp_fail(L, uv_err_name(code), "fork/exec %s: %s", cmd, csp_strerror(code));
}

/* Stack: [e]. The results of the finished process p, which goes. */
static int proc_results(lua_State *L, Exec *e, csp_Proc *p) {
  int err = p->out->err ? p->out->err : p->err->err;
  e->p = NULL;
  p->owner = NULL;
  if (p->spawnerr) {
    err_result(L, e->cmd, p->cwd, p->spawnerr);
    csp_procspawn_close(p);
    return 3;
  }
  if (err) {
    csp_procspawn_close(p);
    return err_result(L, e->cmd, NULL, err);
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, p->sig ? -1 : (lua_Integer)p->status);
  lua_setfield(L, -2, "status");
  if (p->sig) {
    lua_pushinteger(L, p->sig);
    lua_setfield(L, -2, "signal");
  }
  lua_pushlstring(L, p->out->buf.p ? csp_buf_data(&p->out->buf) : "", csp_buf_len(&p->out->buf));
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, p->err->buf.p ? csp_buf_data(&p->err->buf) : "", csp_buf_len(&p->err->buf));
  lua_setfield(L, -2, "stderr");
  csp_procspawn_close(p);  /* the buffers go in the close callbacks, after the copies above */
  return 1;
}

/* ---------------------------------------------------------------- the Lua handle */

static Exec *exec_check(lua_State *L) {
  return (Exec *)csp_checktag(L, 1, &exec_tag, sizeof(Exec), "csp.process");
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  Exec *e = (Exec *)lua_touserdata(L, 1);
  csp_Proc *p = (csp_Proc *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, p->req.g);
  csp_req_end(&p->req);  /* always done: nothing else wakes a process wait */
  return proc_results(L, e, p);
}

/* p:wait() -> {status=, signal=, stdout=, stderr=} or nil, err, code; once. */
static int exec_wait(lua_State *L) {
  Exec *e = exec_check(L);
  csp_Proc *p = e->p;
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
  if (e->p && !e->p->done) csp_procspawn_kill(e->p);
  return 0;
}

/* An unwaited process runs on, forgotten: its handles go when it has ended. */
static int exec_gc(lua_State *L) {
  Exec *e = (Exec *)lua_touserdata(L, 1);
  csp_Proc *p = e->p;
  e->p = NULL;
  if (p == NULL) return 0;
  p->owner = NULL;
  if (p->done && !p->waited) csp_procspawn_close(p);
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

static int exec_spawn(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  size_t cmdlen, inlen = 0;
  const char *cmd = luaL_checklstring(L, A_CMD, &cmdlen), *in = NULL, *cwd = NULL;
  char **argv, **env = NULL;
  int nul = strlen(cmd) != cmdlen, r;
  Exec *e;
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
  if ((r = csp_procspawn_start(S, argv, env, cwd, in, inlen, &e->p)) != 0)
    return err_result(L, cmd, NULL, r);
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
