/* trace.c: the execution trace: fixed-size records in C buffers on the scheduler's thread, turned into a file by a writer thread. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "csp.h"
#include "xshared.h"
#include "trace.h"

typedef csp_TraceEv Ev;

#define NEV 4096       /* events per buffer (256 KiB) */
typedef struct Buf {
  struct Buf *next;
  int n;
  uint64_t calt, caln;  /* the clock at submit: ticks and ns since the trace started */
  Ev ev[NEV];
} Buf;

typedef struct csp_Trace {
  csp_Sched *S;
  const csp_TraceFormat *fmt;
  uint64_t t0, t0ns, slice0, main0, nextflow;  /* times in csp_trace_ticks(); t0ns in ns */
  uint64_t lastend;    /* when the last slice ended; 0 once the loop woke something since */
  uint64_t flowin, mainflow;     /* the wake that started the open slice (main's), 0: none */
  uint64_t flowout, mainout;     /* the flow its first wake continues (main's), 0: none yet */
  const char *flowname, *mainflowname;
  int mainrun;         /* main's slice is open (main runs Lua code, not the loop) */
  Buf *cur;
  char **names; size_t nnames, capnames;  /* interned "file:line" names, open addressing */
  int gen;             /* GC sentinels of earlier traces stay silent */
  /* shared with the writer thread, under mu */
  uv_thread_t th;
  uv_mutex_t mu;
  uv_cond_t cv;
  Buf *qhead, *qtail, *free;
  int stop, fd, err, nq;  /* nq: buffers queued or being written */
} csp_Trace;

static const char gcmt_key = 0;  /* registry: metatable of the GC sentinels */
static csp_Trace *active;        /* the process's one trace (guarded by trace_mu) */
static uv_mutex_t trace_mu;
static uv_once_t trace_once = UV_ONCE_INIT;
static int trace_gen;

/* ---------------------------------------------------------------- the writer thread */

void csp_trace_flush(csp_TraceOut *o) {
  size_t off = 0;
  while (off < o->n && !o->err) {
    ssize_t w = write(o->fd, o->b + off, o->n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) o->err = errno;
    else off += (size_t)w;
  }
  o->n = 0;
}

/* The wakes waiting for the end of their source goroutine's slice. */
typedef struct Flows { Ev *v; size_t n, cap; } Flows;

static void flow_add(Flows *f, const Ev *e) {
  if (f->n == f->cap) {
    size_t ncap = f->cap ? f->cap * 2 : 64;
    Ev *nv = realloc(f->v, ncap * sizeof *nv);
    if (nv == NULL) return;  /* no memory: that arrow is not drawn */
    f->v = nv;
    f->cap = ncap;
  }
  f->v[f->n++] = *e;
}

/* Hands e to the format; a slice takes the wakes its goroutine made (the others stay, in order:
** usually there are none). */
static void put(const csp_TraceFormat *fmt, csp_TraceOut *o, Flows *f, const Ev *e) {
  size_t k = 0, mine = 0;
  if (e->type == CSP_EV_FLOW) {
    flow_add(f, e);
    return;
  }
  if (e->type != CSP_EV_SLICE || f->n == 0) {
    fmt->event(o, e, NULL, 0);
    return;
  }
  for (size_t i = 0; i < f->n; i++) mine += f->v[i].tid == e->tid;
  if (mine == f->n) {
    fmt->event(o, e, f->v, f->n);
    f->n = 0;
    return;
  }
  for (size_t i = 0; i < f->n; i++) {  /* the slice's own to the end, the others to the front */
    if (f->v[i].tid != e->tid) {
      Ev t = f->v[k];
      f->v[k++] = f->v[i];
      f->v[i] = t;
    }
  }
  fmt->event(o, e, f->v + k, f->n - k);
  f->n = k;
}

static void writer(void *arg) {
  csp_Trace *T = arg;
  csp_TraceOut *o = malloc(sizeof *o);
  Flows flows = {NULL, 0, 0};
  csp_Cal cal = {0, 0, 1.0};
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);  /* SIGINT and SIGQUIT are for the scheduler's thread */
  if (o != NULL) {
    o->fd = T->fd;
    o->err = 0;
    o->n = 0;
    o->st = NULL;
    if (!T->fmt->open(o)) {
      free(o);
      o = NULL;
    }
  }
  for (;;) {  /* without memory the buffers are still taken back: the scheduler never waits */
    Buf *b;
    uv_mutex_lock(&T->mu);
    while (T->qhead == NULL && !T->stop) uv_cond_wait(&T->cv, &T->mu);
    b = T->qhead;
    if (b == NULL) { uv_mutex_unlock(&T->mu); break; }
    T->qhead = b->next;
    if (T->qhead == NULL) T->qtail = NULL;
    uv_mutex_unlock(&T->mu);
    csp_cal_next(&cal, b->calt, b->caln);
    for (int i = 0; o && i < b->n; i++) {
      Ev e = csp_cal_ev(&cal, &b->ev[i]);
      put(T->fmt, o, &flows, &e);
    }
    if (b->calt >= cal.pt + CSP_CAL_MIN) {  /* the next buffer's segment starts here */
      cal.pt = b->calt;
      cal.pn = b->caln;
    }
    b->n = 0;
    uv_mutex_lock(&T->mu);
    b->next = T->free;
    T->free = b;
    T->nq--;
    uv_cond_broadcast(&T->cv);
    uv_mutex_unlock(&T->mu);
  }
  free(flows.v);  /* wakes whose slice never ended (the trace stopped first): no arrow */
  if (o == NULL) {
    T->err = ENOMEM;  /* read after the join */
    return;
  }
  T->fmt->close(o);
  csp_trace_flush(o);
  T->err = o->err;
  free(o);
}

/* ---------------------------------------------------------------- recording */

/* Hands the full buffer to the writer and takes an empty one. The scheduler waits while MAXQ
** buffers are queued: a writer that cannot keep up slows the program rather than filling memory. */
#define MAXQ 64
static void submit(csp_Trace *T) {
  Buf *b = T->cur, *nb;
  csp_trace_calib(T->t0, T->t0ns, &b->calt, &b->caln);
  uv_mutex_lock(&T->mu);
  b->next = NULL;
  if (T->qtail) T->qtail->next = b;
  else T->qhead = b;
  T->qtail = b;
  T->nq++;
  uv_cond_broadcast(&T->cv);  /* the writer waits for work, the scheduler for room: one condition */
  while (T->nq >= MAXQ) uv_cond_wait(&T->cv, &T->mu);
  nb = T->free;
  if (nb) T->free = nb->next;
  uv_mutex_unlock(&T->mu);
  if (nb == NULL && (nb = malloc(sizeof *nb)) == NULL) {
    uv_mutex_lock(&T->mu);  /* no memory: wait for the writer to give one back */
    while (T->free == NULL) uv_cond_wait(&T->cv, &T->mu);
    nb = T->free;
    T->free = nb->next;
    uv_mutex_unlock(&T->mu);
  }
  nb->n = 0;
  T->cur = nb;
}


static inline Ev *rec(csp_Trace *T, int type, uint32_t tid, uint64_t now) {
  Ev *e;
  if (T->cur->n == NEV) submit(T);
  e = &T->cur->ev[T->cur->n++];
  e->ts = now - T->t0;
  e->tid = tid;
  e->type = (uint32_t)type;
  return e;
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

/* The name of the function on top of co's stack (popped), or of level lvl's function. */
static const char *fname(csp_Trace *T, lua_State *co, int lvl) {
  lua_Debug ar;
  char buf[200], esc[256];
  if (lvl < 0) { if (!lua_getinfo(co, ">S", &ar)) return "?"; }
  else if (!lua_getstack(co, lvl, &ar) || !lua_getinfo(co, "S", &ar)) return "?";
  if (ar.what[0] == 'C') return "[C function]";
  snprintf(buf, sizeof buf, "%s:%d", ar.short_src, ar.linedefined);
  return intern(T, T->fmt->name ? T->fmt->name(buf, esc, sizeof esc) : buf);
}

/* g's trace fields live in its extension (csp.h): without memory for one, g goes unnamed ("?")
** and its wakes without flows. */
static const char *tname_of(csp_G *g) {
  return g->ext && g->ext->tname ? g->ext->tname : "?";
}

static void tname_set(csp_G *g, const char *name) {
  if (csp_sched_ext(g)) g->ext->tname = name;
}

static uint64_t tflow_take(csp_G *g) {
  uint64_t f = g->ext ? g->ext->tflow : 0;
  if (f) g->ext->tflow = 0;
  return f;
}

static void name_track(csp_Trace *T, csp_G *g, uint64_t now) {
  Ev *e = rec(T, CSP_EV_NAME, (uint32_t)g->id, now);
  e->s = tname_of(g);
}

static void name_started(csp_Trace *T, csp_G *g, uint64_t now) {
  int lvl = 0;
  lua_Debug ar;
  while (lua_getstack(g->L, lvl + 1, &ar)) lvl++;  /* the bottom frame: the base (goexit.c) */
  tname_set(g, fname(T, g->L, lvl > 0 ? lvl - 1 : lvl));  /* the goroutine's function, just above */
  name_track(T, g, now);
}

static const char *flowname(csp_G *g) {
  if (!g->started && g->reason == NULL) return "go";
  return g->reason ? g->reason : "wake";
}

/* g becomes ready: a flow from the goroutine running (main outside the loop), or, readied by
** the loop itself, an instant saying what woke it. A flow leaves the end of its source's slice. */
void csp_trace_ready(csp_Sched *S, csp_G *g) {
  csp_Trace *T = S->trace;
  uint32_t from;
  uint64_t in, *out;
  csp_GExt *x;
  Ev *e;
  if (g == S->cur || g->state == CSP_G_RUNNING) return;  /* a gosched, not a wake */
  if (S->cur) {
    from = (uint32_t)S->cur->id;
    in = T->flowin;
    out = &T->flowout;
  } else if (S->depth == 0) {
    from = 1;
    in = T->mainflow;
    out = &T->mainout;
  } else {  /* from the loop: a timer or an I/O completion */
    const char *r = g->reason ? g->reason : "";
    e = rec(T, CSP_EV_WAKE, (uint32_t)g->id, csp_trace_ticks());
    e->s = strcmp(r, "IO wait") == 0 || strcmp(r, "syscall") == 0 ? "I/O ready" :
           strcmp(r, "sleep") == 0 || strncmp(r, "chan", 4) == 0 || strcmp(r, "select") == 0 ? "timer fired"
                                                                                         : "wake";
    T->lastend = 0;  /* the loop polled: time passed since the last slice */
    return;
  }
  /* A slice's first wake continues the flow that started it (one id along a chain of wakes,
  ** see CSP_TRACE_SIDE), carried by the slice's record; the others are side flows. */
  if ((x = csp_sched_ext(g)) == NULL) return;
  if (*out == 0 && (S->cur || T->mainrun)) {
    x->tflow = *out = in && !(in & CSP_TRACE_SIDE) ? in : ++T->nextflow;
    return;
  }
  x->tflow = ++T->nextflow | CSP_TRACE_SIDE;
  e = rec(T, CSP_EV_FLOW, from, T->t0);
  e->flow = x->tflow;
  e->s = flowname(g);
}

/* g's slice starts: nothing is recorded until it ends (one record per slice). It starts where
** the last one ended, unless the loop woke something in between (then it may have waited): the
** scheduler's own few hundred ns between two slices count in the second, and the clock, slow to
** read on some virtual machines, is read once a switch. */
void csp_trace_run(csp_Sched *S, csp_G *g) {
  csp_Trace *T = S->trace;
  T->slice0 = T->lastend ? T->lastend : csp_trace_ticks();
  if (!g->started) {
    int f = 3, top = lua_gettop(g->L);  /* (base, msgh, f, args...): see goexit.c's csp_exit_push */
    if (lua_iscfunction(g->L, f))  /* a trampoline (wg:go's): named after the function it runs */
      for (int i = f + 1; i <= top && i <= f + 2; i++)
        if (lua_isfunction(g->L, i) && !lua_iscfunction(g->L, i)) { f = i; break; }
    lua_pushvalue(g->L, f);
    tname_set(g, fname(T, g->L, -1));
    name_track(T, g, T->slice0);
  }
  T->flowin = tflow_take(g);
  T->flowout = 0;
  if (T->flowin) T->flowname = flowname(g);
}

/* Why g's slice stopped. A panic and a goexit that unwinds end with LUA_OK (their base caught the
** error: goexit.c), so the flags tell them from a return; a <close> handler that blocks while
** goexit unwinds shows its wait reason. */
static const char *stopped(csp_G *g, int status) {
  if (status == LUA_OK) return g->panicking ? "panic" : g->exiting ? "goexit" : "end";
  if (status != LUA_YIELD) return "panic";
  if (g->exiting == CSP_EXIT_RESET) return "goexit";
  if (g->state == CSP_G_WAITING) return g->reason ? g->reason : "wait";
  return "gosched";
}

/* A slice's record; why NULL: it is still running (the trace stops). */
static void slice(csp_Trace *T, uint32_t tid, uint64_t start, uint64_t now, const char *name,
                  const char *why, uint64_t flow, const char *flowname, uint64_t out) {
  Ev *e = rec(T, CSP_EV_SLICE, tid, start);
  e->dur = now - start;
  e->s = name;
  e->why = why;
  e->flow = flow;
  e->fname = flowname;
  e->out = out;
}

void csp_trace_ran(csp_Sched *S, csp_G *g, int status) {
  csp_Trace *T = S->trace;
  T->lastend = csp_trace_ticks();
  slice(T, (uint32_t)g->id, T->slice0, T->lastend, tname_of(g), stopped(g, status),
        T->flowin, T->flowname, T->flowout);
  T->flowin = 0;
}

/* Main enters the loop (its slice ends: it waits) or leaves it (a slice starts). */
void csp_trace_loop(csp_Sched *S, int enter) {
  csp_Trace *T = S->trace;
  uint64_t now = enter || !T->lastend ? csp_trace_ticks() : T->lastend;
  csp_G *m = &S->maing;
  if (enter) {
    const char *why = m->reason ? m->reason : "wait";
    T->lastend = now;
    if (T->mainrun) {
      slice(T, 1, T->main0, now, "main", why, T->mainflow, T->mainflowname, T->mainout);
    } else {
      Ev *e = rec(T, CSP_EV_BLOCK, 1, now);
      e->s = why;
    }
    T->mainrun = 0;
    T->mainflow = T->mainout = 0;
    return;
  }
  T->mainrun = 1;
  T->main0 = now;
  T->mainflow = tflow_take(m);
  T->mainout = 0;
  if (T->mainflow) T->mainflowname = flowname(m);
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
  rec(S->trace, CSP_EV_GC, 0, csp_trace_ticks());
  gc_sentinel(L, gen);
  return 0;
}

/* ---------------------------------------------------------------- start and stop */

static void init_mu(void) { uv_mutex_init(&trace_mu); }

static void trace_finish(csp_Trace *T) {
  csp_Sched *S = T->S;
  uint64_t now = csp_trace_ticks();
  if (S->cur) slice(T, (uint32_t)S->cur->id, T->slice0, now, tname_of(S->cur),
                    NULL, T->flowin, T->flowname, T->flowout);
  if (T->mainrun) slice(T, 1, T->main0, now, "main", NULL, T->mainflow, T->mainflowname, T->mainout);
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
static csp_Trace *trace_start(lua_State *L, csp_Sched *S, const char *path, const csp_TraceFormat *fmt) {
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
    csp_fail(L, uv_err_name(e), "open %s: %s", path, csp_strerror(e));
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
  T->fmt = fmt;
  T->fd = fd;
  T->cur->n = 0;
  T->gen = ++trace_gen;
  T->t0ns = csp_trace_now_ns();
  T->t0 = csp_trace_ticks();
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
  rec(T, CSP_EV_NAME, 0, T->t0)->s = "GC";
  rec(T, CSP_EV_NAME, 1, T->t0)->s = "main";
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {  /* names of those already running */
    tflow_take(g);
    if (g->started && g->L && (g == S->cur || lua_status(g->L) == LUA_YIELD)) name_started(T, g, T->t0);
  }
  tflow_take(&S->maing);
  T->mainrun = S->cur == NULL && S->depth == 0;
  T->main0 = T->slice0 = T->t0;
  S->trace = T;
  gc_sentinel(L, T->gen);
  return T;
}

/* Perfetto's protobuf for its extensions, JSON otherwise. */
static const csp_TraceFormat *format_of(const char *path) {
  static const char *const pb[] = {".pftrace", ".perfetto-trace", ".pb"};
  size_t n = strlen(path);
  for (int i = 0; i < 3; i++) {
    size_t k = strlen(pb[i]);
    if (n > k && strcmp(path + n - k, pb[i]) == 0) return &csp_trace_pb;
  }
  return &csp_trace_json;
}

static int trace_start_l(lua_State *L) {
  static const char *const names[] = {"json", "perfetto", NULL};
  csp_Sched *S = csp_sched_get(L);
  const char *path = luaL_checkstring(L, 1);
  const csp_TraceFormat *fmt = format_of(path);
  if (!lua_isnoneornil(L, 2)) fmt = luaL_checkoption(L, 2, NULL, names) ? &csp_trace_pb : &csp_trace_json;
  lua_settop(L, 1);
  if (trace_start(L, S, path, fmt) == NULL) return lua_gettop(L) - 1;
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
    return csp_fail(L, uv_err_name(err), "trace: write: %s", csp_strerror(err));
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
  static const luaL_Reg gcmt[] = {{"__gc", gc_fin}, {NULL, NULL}};
  const char *env = getenv("CSP_TRACE");
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, -1);
  csp_newmeta(L, NULL, NULL, gcmt);  /* gc_fin's upvalue: the scheduler */
  lua_rawsetp(L, LUA_REGISTRYINDEX, &gcmt_key);
  lua_newtable(L);  /* module.trace */
  lua_pushvalue(L, -2);
  csp_setfuncs(L, funcs);
  lua_pop(L, 1);
  lua_setfield(L, -3, "trace");
  if (env && *env && csp_thread_id() == 0) {  /* one trace a process: its first state's; a
                                              ** csp.thread's goroutines are not traced */
    int top = lua_gettop(L);
    if (trace_start(L, S, env, format_of(env)) == NULL)
      fprintf(stderr, "csp: CSP_TRACE: %s\n", lua_tostring(L, top + 2));
    lua_settop(L, top);
  }
}
