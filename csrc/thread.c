/* thread.c: csp.thread (an OS thread with its own Lua state, scheduler and loop), join, nthreads,
** and the process-wide registry of schedulers' ports. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <dlfcn.h>
#include <lualib.h>
#include "xshared.h"

enum { TH_RUNNING, TH_OK, TH_ERROR };

typedef struct XThread {
  csp_Shared h;
  lua_Integer id;
  char *code; size_t codelen;  /* the function's bytecode, or NULL with modname */
  char *modname;
  char *path, *cpath;
  csp_Blob *args;
  atomic_int state;            /* TH_RUNNING until results or err are final (release) */
  csp_Blob *results;
  char *err;
  csp_XChan *done;             /* closed when the thread has ended: joiners wait on it */
} XThread;

static atomic_long live;        /* csp.threads running */
static atomic_long nextid;
/* This OS thread's csp.thread id (0 on main): a pthread key, not _Thread_local, whose dynamic
** TLS in a dlopen'ed module goes through __tls_get_addr, where gcc 12's ThreadSanitizer
** sometimes computes a bogus range and dies ("failed to allocate 0x1ec2... bytes"). */
static pthread_key_t self_key;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_init(void) {
  pthread_key_create(&self_key, NULL);
}

static lua_Integer self_id(void) {
  pthread_once(&self_once, self_init);
  return (lua_Integer)(intptr_t)pthread_getspecific(self_key);
}

static pthread_mutex_t ports_mu = PTHREAD_MUTEX_INITIALIZER;
static void **ports;
static int nports, portscap;
static void *main_port;

void csp_port_signal(void *port);

/* ---------------------------------------------------------------- ports */

void csp_port_register(void *port, int add) {
  pthread_mutex_lock(&ports_mu);
  if (self_id() == 0) main_port = add ? port : NULL;
  if (add) {
    if (nports == portscap) {
      int ncap = portscap ? portscap * 2 : 8;
      void **np = realloc(ports, (size_t)ncap * sizeof *np);
      if (np) { ports = np; portscap = ncap; }
    }
    if (nports < portscap) ports[nports++] = port;
  } else {
    for (int i = 0; i < nports; i++)
      if (ports[i] == port) { ports[i] = ports[--nports]; break; }
  }
  pthread_mutex_unlock(&ports_mu);
}

int csp_thread_main(void) {
  return self_id() == 0;
}

lua_Integer csp_thread_id(void) {
  return self_id();
}

static int ports_each(int (*f)(void *port, void *arg), void *arg, int withmain) {
  int r = 1;
  pthread_mutex_lock(&ports_mu);
  for (int i = 0; i < nports && r; i++)
    if (withmain || ports[i] != main_port) r = f(ports[i], arg);
  pthread_mutex_unlock(&ports_mu);
  return r;
}

int csp_ports_foreach(int (*f)(void *port, void *arg), void *arg) {
  return ports_each(f, arg, 0);
}

int csp_ports_all(int (*f)(void *port, void *arg), void *arg) {
  return ports_each(f, arg, 1);
}

void csp_thread_signal_main(void) {
  pthread_mutex_lock(&ports_mu);
  if (main_port) csp_port_signal(main_port);
  pthread_mutex_unlock(&ports_mu);
}

void csp_thread_wakeall(void) {
  pthread_mutex_lock(&ports_mu);
  for (int i = 0; i < nports; i++) csp_port_signal(ports[i]);
  pthread_mutex_unlock(&ports_mu);
}

/* Every scheduler counts main plus the running threads: the others, seen from any of them,
** are as many as the running threads. */
long csp_thread_others(csp_Sched *S) {
  (void)S;
  return atomic_load(&live);
}

/* ---------------------------------------------------------------- the thread */

static void thread_destroy(csp_Shared *s) {
  XThread *th = (XThread *)s;
  free(th->code);
  free(th->modname);
  free(th->path);
  free(th->cpath);
  csp_blob_free(th->args);
  csp_blob_free(th->results);
  free(th->err);
  if (th->done) csp_shared_unref((csp_Shared *)th->done);
  free(th);
}

static int boot(lua_State *L) {
  XThread *th = (XThread *)lua_touserdata(L, 1);
  int base, n;
  lua_settop(L, 0);
  lua_getglobal(L, "package");
  if (th->path) { lua_pushstring(L, th->path); lua_setfield(L, -2, "path"); }
  if (th->cpath) { lua_pushstring(L, th->cpath); lua_setfield(L, -2, "cpath"); }
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "csp.core");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "thread");  /* like every core function, its upvalue 1 is the scheduler */
  lua_getupvalue(L, -1, 1);
  csp_port_get(L, (csp_Sched *)lua_touserdata(L, -1));  /* from the start: in deadlock reports, counted awake */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "csp");
  lua_call(L, 1, 0);
  lua_settop(L, 0);
  if (th->modname) {
    lua_getglobal(L, "require");
    lua_pushstring(L, th->modname);
    lua_call(L, 1, 1);
    if (lua_type(L, -1) != LUA_TFUNCTION)
      return luaL_error(L, "module '%s' did not return a function", th->modname);
  } else if (luaL_loadbufferx(L, th->code, th->codelen, "=thread", "b") != LUA_OK) {
    return lua_error(L);
  }
  base = lua_gettop(L) - 1;
  n = csp_blob_decode(L, th->args);
  lua_call(L, n, LUA_MULTRET);
  th->results = csp_blob_encode(L, base + 1, lua_gettop(L) - base);
  return 0;
}

static int msgh(lua_State *L) {
  if (!lua_isstring(L, 1) && luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1)) return 1;
  if (!lua_isstring(L, 1)) lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  else lua_settop(L, 1);
  return 1;
}

static void *thread_main(void *arg) {
  XThread *th = (XThread *)arg;
  lua_State *L = luaL_newstate();
  int st = TH_OK;
  pthread_once(&self_once, self_init);
  pthread_setspecific(self_key, (void *)(intptr_t)th->id);
  if (L == NULL) {
    th->err = strdup("cannot create a Lua state");
    st = TH_ERROR;
  } else {
    luaL_openlibs(L);
    lua_pushcfunction(L, msgh);
    lua_pushcfunction(L, boot);
    lua_pushlightuserdata(L, th);
    if (lua_pcall(L, 1, 0, 1) != LUA_OK) {
      const char *m = lua_tostring(L, -1);
      size_t len = strlen(m ? m : "?") + 32;
      if ((th->err = malloc(len)) != NULL)
        snprintf(th->err, len, "thread %lld: %s", (long long)th->id, m ? m : "?");
      st = TH_ERROR;
    }
    lua_close(L);  /* its goroutines are dropped, like those of a Go program whose main returned */
  }
  atomic_store_explicit(&th->state, st, memory_order_release);
  csp_xchan_closeall(th->done);
  atomic_fetch_sub(&live, 1);
  csp_thread_wakeall();  /* a scheduler waiting on others re-checks for a deadlock */
  csp_shared_unref(&th->h);
  return NULL;
}

/* Lua unloads csp/core.so when a state closes: never while another thread runs its code. */
static void *pinned;

static void pin_module(void) {
  Dl_info info;
  if (dladdr((void *)pin_module, &info) && info.dli_fname)
    pinned = dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE | RTLD_NOLOAD);
}

typedef struct DumpBuf { char *p; size_t n, cap; } DumpBuf;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  DumpBuf *b = (DumpBuf *)ud;
  (void)L;
  if (b->n + sz > b->cap) {
    size_t ncap = b->cap ? b->cap * 2 : 1024;
    char *np;
    while (ncap < b->n + sz) ncap *= 2;
    if ((np = realloc(b->p, ncap)) == NULL) return 1;
    b->p = np;
    b->cap = ncap;
  }
  memcpy(b->p + b->n, p, sz);
  b->n += sz;
  return 0;
}

static char *field_dup(lua_State *L, const char *name) {
  const char *s;
  char *r = NULL;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, name);
    if ((s = lua_tostring(L, -1)) != NULL) r = strdup(s);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return r;
}

static int th_new(lua_State *L) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  int n = lua_gettop(L);
  XThread *th;
  csp_Blob *args;
  pthread_t tid;
  pthread_attr_t attr;
  int rc;
  if (lua_type(L, 1) == LUA_TFUNCTION) {
    const char *name;
    if (lua_iscfunction(L, 1)) return luaL_argerror(L, 1, "Lua function expected, got C function");
    for (int i = 1; (name = lua_getupvalue(L, 1, i)) != NULL; i++) {
      lua_pop(L, 1);
      if (i > 1 || strcmp(name, "_ENV") != 0)
        return luaL_argerror(L, 1, "function has upvalues (only _ENV can be sent to a thread)");
    }
  } else if (lua_type(L, 1) != LUA_TSTRING) {
    return luaL_typeerror(L, 1, "function or module name");
  }
  args = csp_blob_encode(L, 2, n - 1);
  th = (XThread *)calloc(1, sizeof *th);
  if (th == NULL) { csp_blob_free(args); return luaL_error(L, "not enough memory"); }
  csp_shared_init(&th->h, CSP_X_THREAD, thread_destroy);  /* this ref: the running thread's */
  th->args = args;
  atomic_init(&th->state, TH_RUNNING);
  th->id = atomic_fetch_add(&nextid, 1) + 1;
  th->path = field_dup(L, "path");
  th->cpath = field_dup(L, "cpath");
  th->done = csp_xchan_create(0);
  if (lua_type(L, 1) == LUA_TSTRING) {
    th->modname = strdup(lua_tostring(L, 1));
  } else {
    DumpBuf b = {NULL, 0, 0};
    lua_pushvalue(L, 1);
    rc = lua_dump(L, dump_writer, &b, 0);
    lua_pop(L, 1);
    th->code = b.p;
    th->codelen = b.n;
    if (rc != 0) th->code = NULL, free(b.p);
  }
  if (th->done == NULL || (th->modname == NULL && th->code == NULL)) {
    csp_shared_unref(&th->h);
    return luaL_error(L, "not enough memory");
  }
  csp_proxy_push(L, &th->h, CSP_OP_ANY);  /* may raise: the thread is not started yet */
  csp_port_get(L, csp_sched_get(L));
  pthread_once(&once, pin_module);
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  atomic_fetch_add(&live, 1);
  rc = pthread_create(&tid, &attr, thread_main, th);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    atomic_fetch_sub(&live, 1);
    csp_shared_unref(&th->h);
    return luaL_error(L, "csp.thread: cannot start a thread (%s)", strerror(rc));
  }
  return 1;
}

static XThread *th_check(lua_State *L) {
  return (XThread *)csp_proxy_check(L, 1, CSP_X_THREAD, "thread");
}

static int join_result(lua_State *L, XThread *th) {
  int st = atomic_load_explicit(&th->state, memory_order_acquire);
  if (st == TH_ERROR) {
    lua_pushstring(L, th->err ? th->err : "thread: not enough memory");
    return lua_error(L);
  }
  return th->results ? csp_blob_decode(L, th->results) : 0;
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  csp_xchan_recv_k(L, status, ctx, join_k);
  lua_settop(L, 1);
  return join_result(L, th_check(L));
}

static int th_join(lua_State *L) {
  XThread *th = th_check(L);
  lua_settop(L, 1);
  if (th->id == self_id()) return luaL_error(L, "thread %I: a thread cannot join itself", (LUAI_UACINT)th->id);
  if (atomic_load_explicit(&th->state, memory_order_acquire) == TH_RUNNING) {
    csp_xchan_recv(L, th->done, "thread join", join_k);  /* closed when the thread ends */
    lua_settop(L, 1);
  }
  return join_result(L, th);
}

static int th_id(lua_State *L) {
  lua_pushinteger(L, th_check(L)->id);
  return 1;
}

static int th_tostring(lua_State *L) {
  XThread *th = th_check(L);
  int st = atomic_load(&th->state);
  lua_pushfstring(L, "thread %I (%s)", (LUAI_UACINT)th->id,
                  st == TH_RUNNING ? "running" : st == TH_OK ? "done" : "failed");
  return 1;
}

static int th_nthreads(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

static const luaL_Reg th_methods[] = {{"join", th_join}, {"id", th_id}, {NULL, NULL}};

void csp_thread_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"thread", th_new}, {"nthreads", th_nthreads}, {NULL, NULL}};
  static const luaL_Reg metas[] = {{"__tostring", th_tostring}, {NULL, NULL}};
  csp_proxy_meta(L, CSP_X_THREAD, "csp.thread", th_methods, metas);
  csp_setfuncs(L, funcs);
}

/* Stack: [module, sched]. */
void csp_xshared_open(lua_State *L) {
  csp_xchan_open(L);
  csp_thread_open(L);
  csp_syncmap_open(L);
  csp_atomic_open(L);
}
