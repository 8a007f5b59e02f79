/* trace.c: execution trace in Chrome trace-event JSON: fixed-size records in C buffers, formatted and written by a writer thread. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "csp.h"

enum { EV_SLICE, EV_BLOCK, EV_FLOW_S, EV_FLOW_F, EV_NAME, EV_WAKE, EV_GC };

/* One event as the scheduler records it: no formatting on the scheduler's thread. s points to a
** string literal or to an interned name, both alive until the writer has finished. */
typedef struct Ev {
  uint64_t ts, a;      /* ns since the start; a: a slice's duration or a flow's id */
  const char *s;
  uint32_t tid, type;
} Ev;

#define NEV 8192       /* events per buffer (256 KiB) */
typedef struct Buf {
  struct Buf *next;
  int n;
  Ev ev[NEV];
} Buf;

typedef struct csp_Trace {
  csp_Sched *S;
  uint64_t t0, slice0, main0, nextflow;
  int mainrun;         /* main's slice is open (main runs Lua code, not the loop) */
  Buf *cur;
  char **names; size_t nnames, capnames;  /* interned "file:line" names, open addressing */
  int gen;             /* GC sentinels of earlier traces stay silent */
  /* shared with the writer thread, under mu */
  uv_thread_t th;
  uv_mutex_t mu;
  uv_cond_t cv;
  Buf *qhead, *qtail, *free;
  int stop, fd, err, nfree;
} csp_Trace;

static const char gcmt_key = 0;  /* registry: metatable of the GC sentinels */
static csp_Trace *active;        /* the process's one trace (guarded by trace_mu) */
static uv_mutex_t trace_mu;
static uv_once_t trace_once = UV_ONCE_INIT;
static int trace_gen;

/* ---------------------------------------------------------------- the writer thread */

typedef struct Out {
  int fd, err, first;
  size_t n;
  char b[1 << 16];
} Out;

static void out_flush(Out *o) {
  size_t off = 0;
  while (off < o->n && !o->err) {
    ssize_t w = write(o->fd, o->b + off, o->n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) o->err = errno;
    else off += (size_t)w;
  }
  o->n = 0;
}

/* Hand-rolled appends: printf would cost more than the scheduler spends recording. Every event
** fits in the 512 bytes out_lit makes room for: names are cut to 255 bytes when interned, and
** escaped for JSON then (reasons are literals that need no escaping). */
static void out_lit(Out *o, const char *s) {
  size_t k = strlen(s);
  if (o->n + k + 512 > sizeof o->b) out_flush(o);
  memcpy(o->b + o->n, s, k);
  o->n += k;
}

static void out_u64(Out *o, uint64_t v) {
  char t[24];
  int k = 0;
  do { t[k++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (k) o->b[o->n++] = t[--k];
}

static void out_ts(Out *o, uint64_t ns) {  /* microseconds, 3 decimals */
  out_u64(o, ns / 1000);
  o->b[o->n++] = '.';
  o->b[o->n++] = (char)('0' + ns / 100 % 10);
  o->b[o->n++] = (char)('0' + ns / 10 % 10);
  o->b[o->n++] = (char)('0' + ns % 10);
}

static void out_head(Out *o, const char *ph, const char *cat, uint32_t tid, uint64_t ts) {
  out_lit(o, o->first ? "\n{\"ph\":\"" : ",\n{\"ph\":\"");
  o->first = 0;
  out_lit(o, ph);
  out_lit(o, "\",\"cat\":\"");
  out_lit(o, cat);
  out_lit(o, "\",\"pid\":1,\"tid\":");
  out_u64(o, tid);
  out_lit(o, ",\"ts\":");
  out_ts(o, ts);
}

static void out_name(Out *o, const char *name) {
  out_lit(o, ",\"name\":\"");
  out_lit(o, name);
  out_lit(o, "\"}");
}

static void out_meta(Out *o, uint32_t tid, const char *name) {
  out_lit(o, o->first ? "\n" : ",\n");
  o->first = 0;
  out_lit(o, "{\"ph\":\"M\",\"pid\":1,\"tid\":");
  out_u64(o, tid);
  out_lit(o, ",\"name\":\"thread_name\",\"args\":{\"name\":\"");
  if (tid == 0) out_lit(o, "GC");
  else { out_lit(o, "G"); out_u64(o, tid); out_lit(o, " "); out_lit(o, name); }
  out_lit(o, "\"}},\n{\"ph\":\"M\",\"pid\":1,\"tid\":");
  out_u64(o, tid);
  out_lit(o, ",\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":");
  out_u64(o, tid);
  out_lit(o, "}}");
}

static void out_event(Out *o, const Ev *e) {
  switch (e->type) {
    case EV_SLICE:
      out_head(o, "X", "run", e->tid, e->ts);
      out_lit(o, ",\"dur\":");
      out_ts(o, e->a);
      out_name(o, e->s);
      break;
    case EV_BLOCK: case EV_WAKE:
      out_head(o, "i", e->type == EV_BLOCK ? "block" : "wake", e->tid, e->ts);
      out_lit(o, ",\"s\":\"t\"");
      out_name(o, e->s);
      break;
    case EV_FLOW_S: case EV_FLOW_F:
      out_head(o, e->type == EV_FLOW_S ? "s" : "f\",\"bp\":\"e", "flow", e->tid, e->ts);
      out_lit(o, ",\"id\":");
      out_u64(o, e->a);
      out_name(o, e->s);
      break;
    case EV_NAME:
      out_meta(o, e->tid, e->s);
      break;
    case EV_GC:
      out_head(o, "i", "gc", 0, e->ts);
      out_lit(o, ",\"s\":\"g\"");
      out_name(o, "GC cycle");
      break;
  }
}

static void writer(void *arg) {
  csp_Trace *T = arg;
  Out *o = malloc(sizeof *o);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);  /* SIGINT and SIGQUIT are for the scheduler's thread */
  if (o == NULL) { T->err = ENOMEM; return; }  /* start() checks the allocation first: rare */
  o->fd = T->fd;
  o->err = 0;
  o->first = 1;
  o->n = 0;
  out_lit(o, "[\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"csp\"}}");
  o->first = 0;
  for (;;) {
    Buf *b;
    uv_mutex_lock(&T->mu);
    while (T->qhead == NULL && !T->stop) uv_cond_wait(&T->cv, &T->mu);
    b = T->qhead;
    if (b == NULL) { uv_mutex_unlock(&T->mu); break; }
    T->qhead = b->next;
    if (T->qhead == NULL) T->qtail = NULL;
    uv_mutex_unlock(&T->mu);
    for (int i = 0; i < b->n; i++) out_event(o, &b->ev[i]);
    out_flush(o);
    b->n = 0;
    uv_mutex_lock(&T->mu);
    b->next = T->free;
    T->free = b;
    uv_mutex_unlock(&T->mu);
  }
  out_lit(o, "\n]\n");
  out_flush(o);
  T->err = o->err;  /* read after the join */
  free(o);
}

/* ---------------------------------------------------------------- recording */

/* Hands the full buffer to the writer and takes an empty one; without memory, events are lost
** rather than the program stopped. */
static void submit(csp_Trace *T) {
  Buf *b = T->cur, *nb;
  uv_mutex_lock(&T->mu);
  b->next = NULL;
  if (T->qtail) T->qtail->next = b;
  else T->qhead = b;
  T->qtail = b;
  nb = T->free;
  if (nb) T->free = nb->next;
  uv_cond_signal(&T->cv);
  uv_mutex_unlock(&T->mu);
  if (nb == NULL && (nb = malloc(sizeof *nb)) == NULL) {
    uv_mutex_lock(&T->mu);  /* wait for the writer to give one back */
    while (T->free == NULL) {
      uv_mutex_unlock(&T->mu);
      uv_sleep(1);
      uv_mutex_lock(&T->mu);
    }
    nb = T->free;
    T->free = nb->next;
    uv_mutex_unlock(&T->mu);
  }
  nb->n = 0;
  T->cur = nb;
}

static inline void ev(csp_Trace *T, int type, uint32_t tid, uint64_t now, uint64_t a, const char *s) {
  Ev *e;
  if (T->cur->n == NEV) submit(T);
  e = &T->cur->ev[T->cur->n++];
  e->ts = now - T->t0;
  e->a = a;
  e->s = s;
  e->tid = tid;
  e->type = (uint32_t)type;
}

static const char *intern(csp_Trace *T, const char *s) {
  size_t h = 5381, i;
  for (const char *p = s; *p; p++) h = h * 33 + (unsigned char)*p;
  if (T->nnames * 2 >= T->capnames) {  /* grow: rehash into twice the room */
    size_t ncap = T->capnames ? T->capnames * 2 : 64;
    char **nn = calloc(ncap, sizeof *nn);
    if (nn == NULL) return "?";
    for (i = 0; i < T->capnames; i++) {
      if (T->names[i] == NULL) continue;
      size_t hh = 5381, j;
      for (const char *p = T->names[i]; *p; p++) hh = hh * 33 + (unsigned char)*p;
      for (j = hh & (ncap - 1); nn[j]; j = (j + 1) & (ncap - 1)) {}
      nn[j] = T->names[i];
    }
    free(T->names);
    T->names = nn;
    T->capnames = ncap;
  }
  for (i = h & (T->capnames - 1); T->names[i]; i = (i + 1) & (T->capnames - 1))
    if (strcmp(T->names[i], s) == 0) return T->names[i];
  if ((T->names[i] = strdup(s)) == NULL) return "?";
  T->nnames++;
  return T->names[i];
}

/* s as the contents of a JSON string, cut to fit out (whole escapes only). */
static const char *json_escape(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (n + 7 > size) break;
    if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
    else if (c < 0x20) n += (size_t)snprintf(out + n, 7, "\\u%04x", c);
    else out[n++] = (char)c;
  }
  out[n] = '\0';
  return out;
}

/* The name of the function on top of co's stack (popped), or of level lvl's function. */
static const char *fname(csp_Trace *T, lua_State *co, int lvl) {
  lua_Debug ar;
  char buf[200], esc[256];
  if (lvl < 0) { if (!lua_getinfo(co, ">S", &ar)) return "?"; }
  else if (!lua_getstack(co, lvl, &ar) || !lua_getinfo(co, "S", &ar)) return "?";
  if (ar.what[0] == 'C') return "[C function]";
  snprintf(buf, sizeof buf, "%s:%d", ar.short_src, ar.linedefined);
  return intern(T, json_escape(buf, esc, sizeof esc));
}

static void name_started(csp_Trace *T, csp_G *g, uint64_t now) {
  int lvl = 0;
  lua_Debug ar;
  while (lua_getstack(g->L, lvl + 1, &ar)) lvl++;  /* the bottom frame: the base (goexit.c) */
  g->tname = fname(T, g->L, lvl > 0 ? lvl - 1 : lvl);  /* the goroutine's function, just above */
  ev(T, EV_NAME, (uint32_t)g->id, now, 0, g->tname);
}

static const char *flowname(csp_G *g) {
  if (!g->started && g->reason == NULL) return "go";
  return g->reason ? g->reason : "wake";
}

void csp_trace_ready(csp_Sched *S, csp_G *g) {
  csp_Trace *T = S->trace;
  uint64_t now = uv_hrtime();
  uint32_t from;
  if (g == S->cur || g->state == CSP_G_RUNNING) return;  /* a gosched, not a wake */
  if (S->cur) from = (uint32_t)S->cur->id;
  else if (S->depth == 0) from = 1;
  else {  /* from the loop: a timer or an I/O completion */
    const char *r = g->reason ? g->reason : "";
    ev(T, EV_WAKE, (uint32_t)g->id, now, 0,
       strcmp(r, "IO wait") == 0 || strcmp(r, "syscall") == 0 ? "I/O ready" :
       strcmp(r, "sleep") == 0 || strncmp(r, "chan", 4) == 0 || strcmp(r, "select") == 0 ? "timer fired"
                                                                                         : "wake");
    return;
  }
  g->tflow = ++T->nextflow;
  ev(T, EV_FLOW_S, from, now, g->tflow, flowname(g));
}

void csp_trace_run(csp_Sched *S, csp_G *g) {
  csp_Trace *T = S->trace;
  uint64_t now = uv_hrtime();
  T->slice0 = now;
  if (!g->started) {
    lua_pushvalue(g->L, 3);  /* (base, msgh, f, args...): see goexit.c's csp_exit_push */
    g->tname = fname(T, g->L, -1);
    ev(T, EV_NAME, (uint32_t)g->id, now, 0, g->tname);
  }
  if (g->tflow) {
    ev(T, EV_FLOW_F, (uint32_t)g->id, now, g->tflow, flowname(g));
    g->tflow = 0;
  }
}

void csp_trace_ran(csp_Sched *S, csp_G *g, int status) {
  csp_Trace *T = S->trace;
  uint64_t now = uv_hrtime();
  ev(T, EV_SLICE, (uint32_t)g->id, T->slice0, now - T->slice0, g->tname ? g->tname : "?");
  if (status == LUA_OK) ev(T, EV_BLOCK, (uint32_t)g->id, now, 0, "end");
  else if (status != LUA_YIELD) ev(T, EV_BLOCK, (uint32_t)g->id, now, 0, "panic");
  else if (g->exiting) ev(T, EV_BLOCK, (uint32_t)g->id, now, 0, "goexit");
  else if (g->state == CSP_G_WAITING) ev(T, EV_BLOCK, (uint32_t)g->id, now, 0, g->reason ? g->reason : "wait");
  else ev(T, EV_BLOCK, (uint32_t)g->id, now, 0, "gosched");
}

void csp_trace_loop(csp_Sched *S, int enter) {
  csp_Trace *T = S->trace;
  uint64_t now = uv_hrtime();
  csp_G *m = &S->maing;
  if (enter) {
    if (T->mainrun) ev(T, EV_SLICE, 1, T->main0, now - T->main0, "main");
    T->mainrun = 0;
    ev(T, EV_BLOCK, 1, now, 0, m->reason ? m->reason : "wait");
    return;
  }
  T->mainrun = 1;
  T->main0 = now;
  if (m->tflow) {
    ev(T, EV_FLOW_F, 1, now, m->tflow, flowname(m));
    m->tflow = 0;
  }
}

/* ---------------------------------------------------------------- GC cycles */

/* A sentinel nobody references: finalized at the end of the next cycle, it records the cycle and
** leaves a new one behind. */
static void gc_sentinel(lua_State *L, int gen) {
  int *p = lua_newuserdatauv(L, sizeof(int), 0);
  *p = gen;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &gcmt_key);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

static int gc_fin(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  int gen = *(int *)lua_touserdata(L, 1);
  if (S->closing || S->trace == NULL || S->trace->gen != gen) return 0;
  ev(S->trace, EV_GC, 0, uv_hrtime(), 0, NULL);
  gc_sentinel(L, gen);
  return 0;
}

/* ---------------------------------------------------------------- start and stop */

static void init_mu(void) { uv_mutex_init(&trace_mu); }

static void trace_finish(csp_Trace *T) {
  csp_Sched *S = T->S;
  uint64_t now = uv_hrtime();
  if (S->cur) ev(T, EV_SLICE, (uint32_t)S->cur->id, T->slice0, now - T->slice0,
                 S->cur->tname ? S->cur->tname : "?");
  if (T->mainrun) ev(T, EV_SLICE, 1, T->main0, now - T->main0, "main");
  S->trace = NULL;
  submit(T);
  uv_mutex_lock(&T->mu);
  T->stop = 1;
  uv_cond_signal(&T->cv);
  uv_mutex_unlock(&T->mu);
  uv_thread_join(&T->th);
  close(T->fd);
  free(T->cur);
  while (T->free) { Buf *b = T->free; T->free = b->next; free(b); }
  for (size_t i = 0; i < T->capnames; i++) free(T->names[i]);
  free(T->names);
  uv_mutex_destroy(&T->mu);
  uv_cond_destroy(&T->cv);
  uv_mutex_lock(&trace_mu);
  if (active == T) active = NULL;
  uv_mutex_unlock(&trace_mu);
}

/* os.exit without closing the state, or SIGQUIT: the trace still ends well-formed. */
static void trace_atexit(void) {
  csp_Trace *T;
  uv_mutex_lock(&trace_mu);
  T = active;
  uv_mutex_unlock(&trace_mu);
  if (T) {
    trace_finish(T);
    free(T);
  }
}

/* Returns NULL, or the error pushed as nil, msg, code. */
static csp_Trace *trace_start(lua_State *L, csp_Sched *S, const char *path) {
  static int registered;
  csp_Trace *T;
  int fd;
  uv_once(&trace_once, init_mu);
  uv_mutex_lock(&trace_mu);
  if (active) {
    uv_mutex_unlock(&trace_mu);
    csp_fail(L, "EBUSY", "trace: tracing is already enabled");
    return NULL;
  }
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int e = uv_translate_sys_error(errno);
    uv_mutex_unlock(&trace_mu);
    csp_fail(L, uv_err_name(e), "open %s: %s", path, uv_strerror(e));
    return NULL;
  }
  T = calloc(1, sizeof *T);
  if (T == NULL || (T->cur = malloc(sizeof *T->cur)) == NULL) {
    free(T);
    close(fd);
    uv_mutex_unlock(&trace_mu);
    luaL_error(L, "not enough memory");
    return NULL;
  }
  T->S = S;
  T->fd = fd;
  T->cur->n = 0;
  T->gen = ++trace_gen;
  T->t0 = uv_hrtime();
  uv_mutex_init(&T->mu);
  uv_cond_init(&T->cv);
  if (uv_thread_create(&T->th, writer, T) != 0) {
    uv_mutex_destroy(&T->mu);
    uv_cond_destroy(&T->cv);
    free(T->cur);
    free(T);
    close(fd);
    uv_mutex_unlock(&trace_mu);
    csp_fail(L, "EAGAIN", "trace: cannot start the writer thread");
    return NULL;
  }
  active = T;
  if (!registered) registered = atexit(trace_atexit) == 0;
  uv_mutex_unlock(&trace_mu);
  ev(T, EV_NAME, 0, T->t0, 0, "GC");
  ev(T, EV_NAME, 1, T->t0, 0, "main");
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {  /* names of those already running */
    g->tflow = 0;
    if (g->started && g->L && (g == S->cur || lua_status(g->L) == LUA_YIELD)) name_started(T, g, T->t0);
  }
  S->maing.tflow = 0;
  T->mainrun = S->cur == NULL && S->depth == 0;
  T->main0 = T->slice0 = T->t0;
  S->trace = T;
  gc_sentinel(L, T->gen);
  return T;
}

static int trace_start_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const char *path = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  if (trace_start(L, S, path) == NULL) return lua_gettop(L) - 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int trace_stop_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_Trace *T = S->trace;
  int err;
  if (T == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  trace_finish(T);
  err = T->err;
  free(T);
  if (err) {
    err = uv_translate_sys_error(err);
    return csp_fail(L, uv_err_name(err), "trace: write: %s", uv_strerror(err));
  }
  lua_pushboolean(L, 1);
  return 1;
}

void csp_trace_free(csp_Sched *S) {
  csp_Trace *T = S->trace;
  if (T == NULL) return;
  trace_finish(T);
  free(T);
}

/* Stack: [module, sched]. */
void csp_trace_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"start", trace_start_l}, {"stop", trace_stop_l}, {NULL, NULL}};
  const char *env = getenv("CSP_TRACE");
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, -1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, gc_fin, 1);
  lua_setfield(L, -2, "__gc");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &gcmt_key);
  lua_newtable(L);  /* module.trace */
  lua_pushvalue(L, -2);
  csp_setfuncs(L, funcs);
  lua_pop(L, 1);
  lua_setfield(L, -3, "trace");
  if (env && *env) {
    int top = lua_gettop(L);
    if (trace_start(L, S, env) == NULL)
      fprintf(stderr, "csp: CSP_TRACE: %s\n", lua_tostring(L, top + 2));
    lua_settop(L, top);
  }
}
