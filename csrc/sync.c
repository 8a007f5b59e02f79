/* sync.c: mutex, rwmutex, waitgroup, semaphore, cond and once, all parked on the one waiter. */
#include <string.h>
#include "csp.h"

static const char mutex_tag = 0, rw_tag = 0, wg_tag = 0, sem_tag = 0, cond_tag = 0,
                  once_tag = 0, closer_tag = 0;

/* The head of every sync record: csp_checktag's tag, then its scheduler. */
typedef struct SyncHead {
  const void *tag;
  csp_Sched *S;
} SyncHead;

typedef struct Mutex {
  SyncHead h;
  int locked;
  lua_Integer holder;  /* id of the goroutine that locked it last */
  csp_WaitQ q;
} Mutex;

typedef struct RWMutex {
  SyncHead h;
  long readers;        /* active readers */
  int writer;          /* a writer holds it */
  csp_WaitQ rq, wq;
} RWMutex;

typedef struct WaitGroup {
  SyncHead h;
  lua_Integer count;
  csp_WaitQ q;
} WaitGroup;

typedef struct Semaphore {
  SyncHead h;
  lua_Integer size, cur;
  csp_WaitQ q;
  csp_WaitQ doomed;  /* requests larger than size: never woken, but found by csp.leaks */
} Semaphore;

typedef struct Cond {
  SyncHead h;
  Mutex *mu;           /* user value 1 keeps it alive */
  csp_WaitQ q;
} Cond;

typedef struct Once {
  SyncHead h;
  int state;           /* 0 fresh, 1 running, 2 done */
  csp_WaitQ q;
} Once;

/* A to-be-closed helper: runs fn on its object (user value 1) when closed, on return, error or
** goexit alike; that is how wg:go and once:call finish without a pcall hiding the traceback. */
typedef struct Closer {
  const void *tag;
  void (*fn)(lua_State *L, void *obj);
  void *obj;
} Closer;

static inline void *sync_check(lua_State *L, int i, const void *tag, size_t size, const char *name) {
  SyncHead *h = (SyncHead *)csp_checktag(L, i, tag, size, name);
  if (h->S->closing) csp_sched_gone(L);  /* its waiters' records are gone */
  return h;
}

#define CHECK(L, i, T, tag, name) ((T *)sync_check(L, i, &tag, sizeof(T), name))

static void *sync_new(lua_State *L, size_t size, const void *tag, int nuv) {
  SyncHead *h = (SyncHead *)lua_newuserdatauv(L, size, nuv);
  memset(h, 0, size);
  h->tag = tag;
  h->S = csp_sched_get(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, tag);
  lua_setmetatable(L, -2);
  return h;
}

static int wake_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  return 0;
}

/* Parks the calling goroutine on q; the waker does the bookkeeping (ownership passes to it). */
static int park_on(lua_State *L, csp_Sched *S, csp_WaitQ *q, const char *reason, uint64_t weight) {
  csp_G *g = csp_sched_self(L, S);
  g->w.caseidx = 0;
  g->w.weight = weight;
  csp_wq_push(q, &g->w);
  return csp_sched_park(L, g, reason, (lua_KContext)g, wake_k);
}

static void wake_all(csp_Sched *S, csp_WaitQ *q) {
  csp_Waiter *w;
  while ((w = csp_wq_take(q)) != NULL) csp_sched_ready(S, w->g, 0);
}

static inline lua_Integer self_id(csp_Sched *S) {
  return S->cur ? S->cur->id : 1;
}

/* ---------------------------------------------------------------- Mutex */

static int mutex_new(lua_State *L) {
  sync_new(L, sizeof(Mutex), &mutex_tag, 0);
  return 1;
}

static int mutex_lock_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;  /* NULL when the lock was free */
  if (g == NULL) return 0;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (g->ext) g->ext->heldby = NULL;
  return 0;
}

/* Parks g, the caller, in m's queue; k runs once an unlock hands m over to it. */
static int mutex_park(lua_State *L, Mutex *m, csp_G *g, lua_KContext ctx, lua_KFunction k) {
  g->w.caseidx = 0;
  if (csp_sched_ext(g) != NULL) g->ext->heldby = &m->holder;  /* no memory: a report without it */
  csp_wq_push(&m->q, &g->w);
  return csp_sched_park(L, g, "sync.Mutex.Lock", ctx, k);
}

/* Locks m for the caller, parking if needed; k runs once it holds m. */
static int mutex_acquire(lua_State *L, Mutex *m, lua_KContext ctx, lua_KFunction k) {
  if (!m->locked) {
    m->locked = 1;
    m->holder = self_id(m->h.S);
    if (m->h.S->race) csp_race_acq(m->h.S, NULL, m, 0);
    return k(L, LUA_OK, ctx);
  }
  return mutex_park(L, m, csp_sched_self(L, m->h.S), ctx, k);
}

static int mutex_lock(lua_State *L) {
  Mutex *m = CHECK(L, 1, Mutex, mutex_tag, "mutex");
  csp_G *g;
  CSP_PREEMPT(L, m->h.S, mutex_lock);
  if (!m->locked) {
    if (m->h.S->race) return mutex_acquire(L, m, 0, mutex_lock_k);
    m->locked = 1;  /* mutex_acquire's first case, without its calls */
    m->holder = self_id(m->h.S);
    return 0;
  }
  g = csp_sched_self(L, m->h.S);  /* once: the continuation gets it as its context */
  return mutex_park(L, m, g, (lua_KContext)g, mutex_lock_k);
}

/* FIFO handoff: the lock goes straight to the longest waiter, so none starves. */
static void mutex_handoff(csp_Sched *S, void *obj, uint64_t weight) {
  Mutex *m = (Mutex *)obj;
  csp_Waiter *w = csp_wq_take(&m->q);
  (void)weight;
  if (w == NULL) {
    m->locked = 0;
    return;
  }
  m->holder = w->g->id;
  if (S->race) csp_race_acq(S, w->g, m, 0);
  csp_sched_grant(w->g, mutex_handoff, m);
  csp_sched_ready(S, w->g, 0);
}

static void mutex_release(lua_State *L, Mutex *m) {
  if (!m->locked) luaL_error(L, "fatal error: sync: unlock of unlocked mutex");
  if (m->h.S->race) csp_race_rel(m->h.S, m, 0);
  mutex_handoff(m->h.S, m, 0);
}

static int mutex_unlock(lua_State *L) {
  Mutex *m = CHECK(L, 1, Mutex, mutex_tag, "mutex");
  if (m->locked && m->q.head == NULL && !m->h.S->race) m->locked = 0;  /* nobody to hand it to */
  else mutex_release(L, m);
  return 0;
}

static int mutex_trylock(lua_State *L) {
  Mutex *m = CHECK(L, 1, Mutex, mutex_tag, "mutex");
  int ok = !m->locked;
  if (ok) {
    m->locked = 1;
    m->holder = self_id(m->h.S);
    if (m->h.S->race) csp_race_acq(m->h.S, NULL, m, 0);
  }
  lua_pushboolean(L, ok);
  return 1;
}

/* ---------------------------------------------------------------- RWMutex */

static int rw_new(lua_State *L) {
  sync_new(L, sizeof(RWMutex), &rw_tag, 0);
  return 1;
}

static int rw_rlock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  CSP_PREEMPT(L, rw->h.S, rw_rlock);
  if (!rw->writer && rw->wq.head == NULL) {  /* a waiting writer blocks new readers */
    rw->readers++;
    if (rw->h.S->race) csp_race_acq(rw->h.S, NULL, rw, CSP_RACE_RW_R);
    return 0;
  }
  return park_on(L, rw->h.S, &rw->rq, "sync.RWMutex.RLock", 0);
}

static int rw_tryrlock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  int ok = !rw->writer && rw->wq.head == NULL;
  if (ok) rw->readers++;
  if (ok && rw->h.S->race) csp_race_acq(rw->h.S, NULL, rw, CSP_RACE_RW_R);
  lua_pushboolean(L, ok);
  return 1;
}

static void rw_handoff_writer(RWMutex *rw);

static void rw_undo_read(csp_Sched *S, void *obj, uint64_t weight) {
  RWMutex *rw = (RWMutex *)obj;
  (void)S; (void)weight;
  if (--rw->readers == 0) rw_handoff_writer(rw);
}

static void rw_unlock_raw(RWMutex *rw);

static void rw_undo_write(csp_Sched *S, void *obj, uint64_t weight) {
  (void)S; (void)weight;
  rw_unlock_raw((RWMutex *)obj);
}

static void rw_handoff_writer(RWMutex *rw) {
  csp_Waiter *w = csp_wq_take(&rw->wq);
  if (w) {
    rw->writer = 1;
    if (rw->h.S->race) csp_race_rwlock(rw->h.S, w->g, rw);
    csp_sched_grant(w->g, rw_undo_write, rw);
    csp_sched_ready(rw->h.S, w->g, 0);
  }
}

static int rw_runlock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  if (rw->readers <= 0) return luaL_error(L, "fatal error: sync: RUnlock of unlocked RWMutex");
  if (rw->h.S->race) csp_race_merge(rw->h.S, rw, 0);
  if (--rw->readers == 0) rw_handoff_writer(rw);
  return 0;
}

static int rw_lock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  CSP_PREEMPT(L, rw->h.S, rw_lock);
  if (!rw->writer && rw->readers == 0) {
    rw->writer = 1;
    if (rw->h.S->race) csp_race_rwlock(rw->h.S, NULL, rw);
    return 0;
  }
  return park_on(L, rw->h.S, &rw->wq, "sync.RWMutex.Lock", 0);
}

static int rw_trylock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  int ok = !rw->writer && rw->readers == 0;
  if (ok) rw->writer = 1;
  if (ok && rw->h.S->race) csp_race_rwlock(rw->h.S, NULL, rw);
  lua_pushboolean(L, ok);
  return 1;
}

/* Readers that waited go first, then the next writer (Go's rule: neither side starves). */
static void rw_unlock_raw(RWMutex *rw) {
  csp_Waiter *w;
  rw->writer = 0;
  if (rw->rq.head == NULL) {
    rw_handoff_writer(rw);
    return;
  }
  while ((w = csp_wq_take(&rw->rq)) != NULL) {
    rw->readers++;
    if (rw->h.S->race) csp_race_acq(rw->h.S, w->g, rw, CSP_RACE_RW_R);
    csp_sched_grant(w->g, rw_undo_read, rw);
    csp_sched_ready(rw->h.S, w->g, 0);
  }
}

static int rw_unlock(lua_State *L) {
  RWMutex *rw = CHECK(L, 1, RWMutex, rw_tag, "rwmutex");
  if (!rw->writer) return luaL_error(L, "fatal error: sync: Unlock of unlocked RWMutex");
  if (rw->h.S->race) csp_race_rwunlock(rw->h.S, rw);
  rw_unlock_raw(rw);
  return 0;
}

/* ---------------------------------------------------------------- WaitGroup */

static int wg_new(lua_State *L) {
  sync_new(L, sizeof(WaitGroup), &wg_tag, 0);
  return 1;
}

static void wg_add_n(lua_State *L, WaitGroup *wg, lua_Integer n) {
  /* checked before adding: the counter stays sane for the caller who catches the error */
  if (n > 0 && wg->count > LUA_MAXINTEGER - n) luaL_error(L, "sync: WaitGroup counter overflow");
  if (wg->count + n < 0) luaL_error(L, "sync: negative WaitGroup counter");
  wg->count += n;
  if (wg->h.S->race) csp_race_wg(wg->h.S, wg, n, wg->count, &wg->q);
  if (wg->count == 0) wake_all(wg->h.S, &wg->q);
}

static int wg_add(lua_State *L) {
  WaitGroup *wg = CHECK(L, 1, WaitGroup, wg_tag, "waitgroup");
  wg_add_n(L, wg, luaL_checkinteger(L, 2));
  return 0;
}

static int wg_done(lua_State *L) {
  wg_add_n(L, CHECK(L, 1, WaitGroup, wg_tag, "waitgroup"), -1);
  return 0;
}

static int wg_wait(lua_State *L) {
  WaitGroup *wg = CHECK(L, 1, WaitGroup, wg_tag, "waitgroup");
  CSP_PREEMPT(L, wg->h.S, wg_wait);
  if (wg->count == 0) {
    if (wg->h.S->race) csp_race_acq(wg->h.S, NULL, wg, 0);
    return 0;
  }
  return park_on(L, wg->h.S, &wg->q, "sync.WaitGroup.Wait", 0);
}

static void closer_push(lua_State *L, int objidx, void (*fn)(lua_State *, void *), void *obj) {
  Closer *c;
  objidx = lua_absindex(L, objidx);
  c = (Closer *)lua_newuserdatauv(L, sizeof *c, 1);
  c->tag = &closer_tag;
  c->fn = fn;
  c->obj = obj;
  lua_pushvalue(L, objidx);
  lua_setiuservalue(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &closer_tag);
  lua_setmetatable(L, -2);
}

static int closer_close(lua_State *L) {
  Closer *c = (Closer *)csp_testtag(L, 1, &closer_tag, sizeof(Closer));
  if (c && c->fn) {
    void (*fn)(lua_State *, void *) = c->fn;
    c->fn = NULL;  /* exactly once */
    fn(L, c->obj);
  }
  return 0;
}

static void wg_done_fn(lua_State *L, void *obj) {
  wg_add_n(L, (WaitGroup *)obj, -1);
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

/* Body of a wg:go goroutine: [wg, f, args...]. */
static int wg_body(lua_State *L) {
  WaitGroup *wg = (WaitGroup *)lua_touserdata(L, 1);
  closer_push(L, 1, wg_done_fn, wg);
  lua_insert(L, 2);
  lua_toclose(L, 2);
  lua_callk(L, lua_gettop(L) - 3, 0, 0, call_k);
  return 0;
}

static int wg_go(lua_State *L) {
  WaitGroup *wg = CHECK(L, 1, WaitGroup, wg_tag, "waitgroup");
  csp_sched_checkfunc(L, 2);
  lua_getfield(L, lua_upvalueindex(2), "go");
  lua_pushcfunction(L, wg_body);
  lua_rotate(L, 1, 2);  /* go, wg_body, wg, f, args... */
  wg_add_n(L, wg, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* ---------------------------------------------------------------- Semaphore (weighted, FIFO) */

static int sem_new(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  Semaphore *s;
  luaL_argcheck(L, n >= 0, 1, "size must be non-negative");
  s = (Semaphore *)sync_new(L, sizeof(Semaphore), &sem_tag, 0);
  s->size = n;
  return 1;
}

static lua_Integer sem_weight(lua_State *L) {
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 0, 2, "weight must be non-negative");
  return k;
}

static int sem_acquire(lua_State *L) {
  Semaphore *s = CHECK(L, 1, Semaphore, sem_tag, "semaphore");
  CSP_PREEMPT(L, s->h.S, sem_acquire);
  lua_Integer k = sem_weight(L);
  if (k > s->size)  /* x/sync: doomed, it waits apart, so it holds up no other request */
    return park_on(L, s->h.S, &s->doomed, "semacquire", (uint64_t)k);
  if (s->size - s->cur >= k && s->q.head == NULL) {
    s->cur += k;
    if (s->h.S->race) csp_race_sync(s->h.S, NULL, s, 0);
    return 0;
  }
  return park_on(L, s->h.S, &s->q, "semacquire", (uint64_t)k);
}

static int sem_try_acquire(lua_State *L) {
  Semaphore *s = CHECK(L, 1, Semaphore, sem_tag, "semaphore");
  lua_Integer k = sem_weight(L);
  int ok = s->size - s->cur >= k && s->q.head == NULL;  /* false for k > size, as x/sync */
  if (ok) s->cur += k;
  if (ok && s->h.S->race) csp_race_sync(s->h.S, NULL, s, 0);
  lua_pushboolean(L, ok);
  return 1;
}

/* Wakes waiters in order while the head fits: a large request is not passed by small ones. */
static void sem_release_raw(csp_Sched *S, void *obj, uint64_t k) {
  Semaphore *s = (Semaphore *)obj;
  csp_Waiter *w;
  s->cur -= (lua_Integer)k;
  while ((w = s->q.head) != NULL && s->size - s->cur >= (lua_Integer)w->weight) {
    s->cur += (lua_Integer)w->weight;
    csp_wq_take(&s->q);
    if (S->race) csp_race_sync(S, w->g, s, 0);
    csp_sched_grant(w->g, sem_release_raw, s);
    csp_sched_ready(S, w->g, 0);
  }
}

static int sem_release(lua_State *L) {
  Semaphore *s = CHECK(L, 1, Semaphore, sem_tag, "semaphore");
  lua_Integer k = luaL_optinteger(L, 2, 1);
  luaL_argcheck(L, k >= 0, 2, "weight must be non-negative");
  if (k > s->cur) return luaL_error(L, "semaphore: released more than held");
  if (s->h.S->race) csp_race_sync(s->h.S, NULL, s, 0);
  sem_release_raw(s->h.S, s, (uint64_t)k);
  return 0;
}

/* ---------------------------------------------------------------- Cond */

static int cond_new(lua_State *L) {
  Mutex *m = CHECK(L, 1, Mutex, mutex_tag, "mutex");
  Cond *c = (Cond *)sync_new(L, sizeof(Cond), &cond_tag, 1);
  c->mu = m;
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int cond_relock_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  if (g->ext) g->ext->heldby = NULL;
  return 0;
}

static int cond_wait_k(lua_State *L, int status, lua_KContext ctx) {
  Cond *c = (Cond *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  return mutex_acquire(L, c->mu, ctx, cond_relock_k);  /* may park again, on the mutex */
}

static int cond_wait(lua_State *L) {
  Cond *c = CHECK(L, 1, Cond, cond_tag, "cond");
  csp_G *g = csp_sched_self(L, c->h.S);
  lua_settop(L, 1);
  mutex_release(L, c->mu);
  g->w.caseidx = 0;
  csp_wq_push(&c->q, &g->w);
  return csp_sched_park(L, g, "sync.Cond.Wait", (lua_KContext)g, cond_wait_k);
}

static int cond_signal(lua_State *L) {
  Cond *c = CHECK(L, 1, Cond, cond_tag, "cond");
  csp_Waiter *w = csp_wq_take(&c->q);
  if (w) csp_sched_ready(c->h.S, w->g, 0);
  return 0;
}

static int cond_broadcast(lua_State *L) {
  Cond *c = CHECK(L, 1, Cond, cond_tag, "cond");
  wake_all(c->h.S, &c->q);
  return 0;
}

/* ---------------------------------------------------------------- Once */

static int once_new(lua_State *L) {
  sync_new(L, sizeof(Once), &once_tag, 0);
  return 1;
}

/* f returned or raised: either way the once is done (Go), and its waiters go on. */
static void once_done_fn(lua_State *L, void *obj) {
  Once *o = (Once *)obj;
  (void)L;
  o->state = 2;
  if (o->h.S->race) csp_race_once(o->h.S, o, &o->q);
  wake_all(o->h.S, &o->q);
}

static int once_call(lua_State *L) {
  Once *o = CHECK(L, 1, Once, once_tag, "once");
  csp_sched_checkfunc(L, 2);
  if (o->state == 2) {
    if (o->h.S->race) csp_race_acq(o->h.S, NULL, o, 0);
    return 0;
  }
  if (o->state == 1) return park_on(L, o->h.S, &o->q, "sync.Once.Do", 0);
  o->state = 1;
  closer_push(L, 1, once_done_fn, o);
  lua_insert(L, 2);
  lua_toclose(L, 2);
  lua_callk(L, lua_gettop(L) - 3, 0, 0, call_k);
  return 0;
}

/* ---------------------------------------------------------------- registration */

static int sync_tostring(lua_State *L) {
  const char *name = luaL_getmetafield(L, 1, "__name") == LUA_TSTRING ? lua_tostring(L, -1) : "sync";
  lua_pushfstring(L, "%s: %p", name, lua_touserdata(L, 1));
  return 1;
}

/* Stack: [module, sched]. */
static void sync_meta(lua_State *L, const void *tag, const char *name, const luaL_Reg *methods) {
  static const luaL_Reg meta[] = {{"__tostring", sync_tostring}, {NULL, NULL}};
  int n = 0;
  while (methods[n].name) n++;
  csp_newmethods(L, n);
  for (const luaL_Reg *r = methods; r->name; r++) {  /* upvalues: sched, module */
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -4);
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, -2, r->name);
  }
  csp_newmeta_index(L, name, lua_gettop(L), lua_gettop(L) - 1, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, tag);
  lua_pop(L, 1);
}

/* Stack: [module, sched]. */
void csp_sync_open(lua_State *L) {
  static const luaL_Reg mutex_m[] = {
    {"lock", mutex_lock}, {"unlock", mutex_unlock}, {"trylock", mutex_trylock}, {NULL, NULL}};
  static const luaL_Reg rw_m[] = {
    {"rlock", rw_rlock}, {"runlock", rw_runlock}, {"lock", rw_lock}, {"unlock", rw_unlock},
    {"trylock", rw_trylock}, {"tryrlock", rw_tryrlock}, {NULL, NULL}};
  static const luaL_Reg wg_m[] = {
    {"add", wg_add}, {"done", wg_done}, {"wait", wg_wait}, {"go", wg_go}, {NULL, NULL}};
  static const luaL_Reg sem_m[] = {
    {"acquire", sem_acquire}, {"release", sem_release}, {"try_acquire", sem_try_acquire},
    {NULL, NULL}};
  static const luaL_Reg cond_m[] = {
    {"wait", cond_wait}, {"signal", cond_signal}, {"broadcast", cond_broadcast}, {NULL, NULL}};
  static const luaL_Reg once_m[] = {{"call", once_call}, {NULL, NULL}};
  static const luaL_Reg closer_meta[] = {{"__close", closer_close}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {
    {"mutex", mutex_new}, {"rwmutex", rw_new}, {"waitgroup", wg_new}, {"semaphore", sem_new},
    {"cond", cond_new}, {"once", once_new}, {NULL, NULL}};
  sync_meta(L, &mutex_tag, "csp.mutex", mutex_m);
  sync_meta(L, &rw_tag, "csp.rwmutex", rw_m);
  sync_meta(L, &wg_tag, "csp.waitgroup", wg_m);
  sync_meta(L, &sem_tag, "csp.semaphore", sem_m);
  sync_meta(L, &cond_tag, "csp.cond", cond_m);
  sync_meta(L, &once_tag, "csp.once", once_m);
  csp_newmeta(L, NULL, NULL, closer_meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &closer_tag);
  csp_setfuncs(L, funcs);
}
