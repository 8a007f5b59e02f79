/* xchan.c: channels between threads (one mutex each, FIFO queues of waiters from any scheduler),
** the per-scheduler port that wakes a goroutine from another thread, and select with xchan cases. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/eventfd.h>
#include "xshared.h"

#define SPIN_NS 20000   /* poll the inbox this long before sleeping (a wake across vCPUs costs ~70 us) */

typedef struct Port Port;
typedef struct XRec XRec;
typedef struct XWaiter XWaiter;

typedef struct XQ { XWaiter *head, *tail; } XQ;

struct csp_XChan {
  csp_Shared h;
  pthread_mutex_t mu;  /* guards everything below and the waiters linked in the queues */
  uint32_t cap, count, head;
  int closed;
  csp_Blob **ring;
  XQ recvq, sendq;
};

/* One (goroutine, xchan) wait. linked is true exactly while it is in ch's queue (under ch->mu). */
struct XWaiter {
  XWaiter *next, *prev;
  csp_XChan *ch;       /* holds a ref while the record lives */
  XRec *rec;
  int caseidx, send, linked;
  csp_Blob *msg;       /* send: the value, until a receiver takes it */
};

/* A parked goroutine's xchan wait (a plain operation or a select). Every completer must win
** CAS(done, 0, 1); the winner fills fired/closed/val under the channel's mutex, then wakes the
** owner: directly on the same scheduler, else through the owner's port. */
struct XRec {
  atomic_int done;
  XRec *inext;         /* inbox link */
  XRec *cnext;         /* a closer's list of claimed records */
  Port *port;          /* the owner's port, ref held */
  csp_G *g;
  csp_Sched *S;
  int fired, fsend, closed;
  int delivered;       /* owner-thread only: g was readied for this record */
  int orphan;          /* owner-thread only: the wait was cancelled after a remote win */
  csp_Blob *val;
  int n;
  XWaiter w[];
};

/* Each scheduler's inbox: a lock-free stack of records that other threads completed, and an
** eventfd written only when the owner sleeps. */
struct Port {
  atomic_long refs;    /* the owner, each record, each poster in flight */
  _Atomic(XRec *) inbox;
  atomic_int parked;
  atomic_int idle;     /* counted in nidle: asleep with nothing but other threads to wake it */
  atomic_int dead;
  int efd;
  uv_poll_t *poll;
  csp_Sched *S;
  int nwait;           /* owner-thread only: records of parked goroutines */
  int refd;
  atomic_uint dumpgen; /* the deadlock-report round dump was made for (release: dump is set) */
  char *dump;          /* "thread N:" and its goroutines, for main's deadlock report */
  int global;          /* main only: the deadlock being reported is every thread's */
};

static atomic_int spinners;
static atomic_long nidle;  /* schedulers idle: when all are (main included), the process deadlocks */
static atomic_uint dumpround;  /* main asks idle threads for their goroutines (deadlock report) */

/* Whoever makes an idle scheduler runnable (a poster, or the owner waking) uncounts it first,
** so no wake-up is in flight while every scheduler counts as idle. */
static void port_busy(Port *P) {
  int one = 1;
  if (atomic_compare_exchange_strong(&P->idle, &one, 0)) atomic_fetch_sub(&nidle, 1);
}

static void port_setref(Port *P, int ref) {
  if (ref == P->refd) return;
  if (ref) uv_ref((uv_handle_t *)P->poll);
  else uv_unref((uv_handle_t *)P->poll);
  P->refd = ref;
}

/* ---------------------------------------------------------------- port */

static void port_unref(Port *P) {
  if (atomic_fetch_sub_explicit(&P->refs, 1, memory_order_acq_rel) == 1) {
    close(P->efd);
    free(P->dump);
    free(P);
  }
}

static void rec_free(XRec *r);

static void poll_cb(uv_poll_t *h, int status, int events) {
  Port *P = (Port *)h->data;
  uint64_t v;
  (void)status; (void)events;
  while (read(P->efd, &v, sizeof v) < 0 && errno == EINTR) {}
}

static Port *port_get(lua_State *L, csp_Sched *S) {
  Port *P = (Port *)S->port;
  if (P) return P;
  P = (Port *)calloc(1, sizeof *P);
  if (P == NULL) luaL_error(L, "not enough memory");
  P->poll = (uv_poll_t *)malloc(sizeof *P->poll);
  P->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (P->poll == NULL || P->efd < 0 || uv_poll_init(S->loop, P->poll, P->efd) != 0) {
    if (P->efd >= 0) close(P->efd);
    free(P->poll);
    free(P);
    luaL_error(L, "xchan: cannot create the scheduler's inbox");
  }
  atomic_init(&P->refs, 1);
  P->S = S;
  P->poll->data = P;
  uv_poll_start(P->poll, UV_READABLE, poll_cb);
  uv_unref((uv_handle_t *)P->poll);
  csp_port_register(P, 1);
  S->port = P;
  return P;
}

void csp_port_signal(void *port) {
  uint64_t one = 1;
  Port *P = (Port *)port;
  while (write(P->efd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Records in the inbox, oldest first. */
static XRec *port_take(Port *P) {
  XRec *r = atomic_exchange_explicit(&P->inbox, NULL, memory_order_acquire), *rev = NULL;
  while (r) {
    XRec *next = r->inext;
    r->inext = rev;
    rev = r;
    r = next;
  }
  return rev;
}

static void unlink_locals(csp_G *g) {
  for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
  g->nsel = 0;
}

/* Owner thread: readies the goroutines whose waits other threads completed. */
static int port_drain(Port *P) {
  int n = 0;
  XRec *r = port_take(P), *next;
  for (; r; r = next) {
    next = r->inext;
    if (r->orphan || atomic_load(&P->dead)) {
      rec_free(r);
      continue;
    }
    r->delivered = 1;
    unlink_locals(r->g);  /* no local waker may see this select's cases as ready any more */
    csp_sched_ready(P->S, r->g, 0);
    n++;
  }
  return n;
}

static void port_post(Port *P, XRec *r) {
  XRec *head;
  atomic_fetch_add_explicit(&P->refs, 1, memory_order_relaxed);  /* r's ref keeps P alive here */
  head = atomic_load_explicit(&P->inbox, memory_order_relaxed);
  do r->inext = head;
  while (!atomic_compare_exchange_weak(&P->inbox, &head, r));
  port_busy(P);
  if (atomic_exchange(&P->parked, 0)) csp_port_signal(P);
  if (atomic_load(&P->dead)) {  /* the owner is gone: nobody else will free what we posted */
    XRec *x = port_take(P), *next;
    for (; x; x = next) { next = x->inext; rec_free(x); }
  }
  port_unref(P);
}

/* Wakes a record's owner after the completer unlocked. */
static void rec_wake(csp_Sched *S, XRec *r) {
  if (r->S == S) {
    r->delivered = 1;
    unlink_locals(r->g);
    csp_sched_ready(S, r->g, 0);
  } else {
    port_post(r->port, r);
  }
}

static int dump_l(lua_State *L) {
  csp_sched_dumpto(L, (csp_Sched *)lua_touserdata(L, 1));
  return 1;
}

/* An idle thread's goroutines, kept for main's deadlock report (made on its own thread: only
** it may walk its state). */
static void port_dump(csp_Sched *S, Port *P, unsigned round) {
  lua_State *L = S->loopL;
  char *d = NULL;
  if (L && lua_checkstack(L, 4)) {
    lua_pushcfunction(L, dump_l);
    lua_pushlightuserdata(L, S);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (s && (d = malloc(len + 64)) != NULL)
        snprintf(d, len + 64, "\n\nthread %lld:\n%s", (long long)csp_thread_id(), s);
    }
    lua_pop(L, 1);
  }
  free(P->dump);
  P->dump = d;
  atomic_store_explicit(&P->dumpgen, round, memory_order_release);
}

static int dumped(void *port, void *round) {
  Port *P = (Port *)port;
  return atomic_load_explicit(&P->dumpgen, memory_order_acquire) == *(unsigned *)round;
}

/* sched.c, main's deadlock report: appends the other threads' goroutines to the string on L. */
static int add_dump(void *port, void *L) {
  Port *P = (Port *)port;
  if (P->dump) lua_pushstring((lua_State *)L, P->dump);
  else lua_pushliteral((lua_State *)L, "");
  lua_concat((lua_State *)L, 2);
  return 1;
}

void csp_port_dumps(lua_State *L, csp_Sched *S) {
  Port *P = (Port *)S->port;
  if (!P->global) return;  /* a deadlock of this scheduler alone: the others' dumps may be stale */
  P->global = 0;
  csp_ports_foreach(add_dump, L);
}

/* sched.c, before the loop polls libuv: take what other threads completed; while goroutines
** wait on other threads keep the loop alive, spin briefly, and count as idle if nothing else
** (timer, I/O) can wake it. When every scheduler is idle the process is deadlocked: main
** reports it (its loop is left not alive); another thread that sees it wakes main to look.
** Returns whether to block. */
int csp_port_poll(csp_Sched *S, int wait) {
  Port *P = (Port *)S->port;
  int alone;
  if (port_drain(P)) return 0;
  if (!wait) return 0;
  port_setref(P, 0);
  if (P->nwait == 0 || csp_thread_others(S) == 0) return wait;  /* the local rule decides */
  alone = !uv_loop_alive(S->loop);
  if (S->nheap == 0 && atomic_fetch_add(&spinners, 1) < 1) {
    uint64_t until = uv_hrtime() + SPIN_NS;
    while (atomic_load_explicit(&P->inbox, memory_order_relaxed) == NULL && uv_hrtime() < until) {}
    atomic_fetch_sub(&spinners, 1);
    if (port_drain(P)) return 0;
  } else {
    atomic_fetch_sub(&spinners, 1);
  }
  if (alone) {
    atomic_fetch_add(&nidle, 1);
    atomic_store(&P->idle, 1);
    if (atomic_load(&P->inbox) != NULL) {
      port_busy(P);
      port_drain(P);
      return 0;
    }
    if (!csp_thread_main()) {
      unsigned round = atomic_load(&dumpround);
      if (round != atomic_load(&P->dumpgen)) port_dump(S, P, round);
    }
    if (atomic_load(&nidle) >= 1 + csp_thread_others(S)) {
      if (csp_thread_main()) {
        unsigned round = atomic_load(&dumpround);
        if (round != 0 && csp_ports_foreach(dumped, &round)) {
          port_busy(P);
          P->global = 1;
          return wait;  /* the loop is not alive: sched_loop reports the deadlock */
        }
        atomic_fetch_add(&dumpround, 1);  /* every idle thread dumps its goroutines, then main looks again */
        csp_thread_wakeall();
      } else {
        csp_thread_signal_main();
      }
    }
  }
  port_setref(P, 1);
  atomic_store(&P->parked, 1);
  if (atomic_load(&P->inbox) != NULL) {
    atomic_store(&P->parked, 0);
    port_busy(P);
    port_drain(P);
    return 0;
  }
  return 1;
}

void csp_port_after(csp_Sched *S) {
  Port *P = (Port *)S->port;
  atomic_store(&P->parked, 0);
  port_busy(P);
  port_drain(P);
}

/* ---------------------------------------------------------------- records */

static XRec *rec_new(lua_State *L, csp_Sched *S, int n) {
  XRec *r = (XRec *)calloc(1, sizeof *r + (size_t)n * sizeof(XWaiter));
  if (r == NULL) luaL_error(L, "not enough memory");
  r->n = n;
  r->S = S;
  atomic_init(&r->done, 0);
  return r;
}

static void q_push(XQ *q, XWaiter *w) {
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  w->linked = 1;
}

static void q_unlink(XQ *q, XWaiter *w) {
  if (!w->linked) return;
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->next = w->prev = NULL;
  w->linked = 0;
}

/* Frees a record from any thread: unlinks what is still linked, drops refs. */
static void rec_free(XRec *r) {
  for (int i = 0; i < r->n; i++) {
    XWaiter *w = &r->w[i];
    if (w->ch == NULL) continue;
    pthread_mutex_lock(&w->ch->mu);
    q_unlink(w->send ? &w->ch->sendq : &w->ch->recvq, w);
    pthread_mutex_unlock(&w->ch->mu);
    csp_blob_free(w->msg);
    csp_shared_unref(&w->ch->h);
  }
  csp_blob_free(r->val);
  if (r->port) port_unref(r->port);
  free(r);
}

/* The first waiter of q whose record this caller wins (losers were completed elsewhere). */
static XWaiter *q_take(XQ *q) {
  XWaiter *w;
  while ((w = q->head) != NULL) {
    int zero = 0;
    q_unlink(q, w);
    if (atomic_compare_exchange_strong(&w->rec->done, &zero, 1)) return w;
  }
  return NULL;
}

/* Drops stale waiters at the head: is there a live one? */
static int q_live(XQ *q) {
  XWaiter *w;
  while ((w = q->head) != NULL && atomic_load(&w->rec->done)) q_unlink(q, w);
  return w != NULL;
}

/* wait.c: a local waker taking a select's case claims the select (its xchan cases may race). */
int csp_xsel_claim(csp_G *g) {
  XRec *r = (XRec *)g->xw;
  int zero = 0;
  if (!atomic_compare_exchange_strong(&r->done, &zero, 1)) return 0;
  r->delivered = 1;
  return 1;
}

static int xsel_stale(csp_G *g) {
  return g->xw != NULL && atomic_load(&((XRec *)g->xw)->done);
}

/* select.c: a local case whose only waiters are selects another thread won is not ready. */
int csp_xsel_ready(csp_Chan *c, int send) {
  csp_WaitQ *q = send ? &c->recvq : &c->sendq;
  while (q->head && q->head->caseidx > 0 && xsel_stale(q->head->g)) csp_wq_unlink(q->head);
  return csp_chan_ready(c, send);
}

/* sched.c: g's wait is cancelled (panic, deadlock, thread end). */
void csp_xchan_cancel(csp_G *g) {
  XRec *r = (XRec *)g->xw;
  int zero = 0;
  g->xw = NULL;
  r->port->nwait--;
  if (atomic_compare_exchange_strong(&r->done, &zero, 1) || r->delivered) rec_free(r);
  else r->orphan = 1;  /* a post is in flight: the drain frees it */
}

/* sched.c, the scheduler's end: cancel every wait, then retire the port. */
void csp_port_teardown(csp_Sched *S) {
  Port *P = (Port *)S->port;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (g->xw) csp_xchan_cancel(g);
  if (S->maing.xw) csp_xchan_cancel(&S->maing);
  if (P == NULL) return;
  csp_port_register(P, 0);
  atomic_store(&P->dead, 1);
  {
    XRec *x = port_take(P), *next;
    for (; x; x = next) { next = x->inext; rec_free(x); }
  }
  uv_close((uv_handle_t *)P->poll, (uv_close_cb)free);
  S->port = NULL;
  port_unref(P);
}

/* ---------------------------------------------------------------- the channel */

static void xchan_destroy(csp_Shared *s) {
  csp_XChan *x = (csp_XChan *)s;
  for (uint32_t i = 0; i < x->count; i++) csp_blob_free(x->ring[(x->head + i) % x->cap]);
  free(x->ring);
  pthread_mutex_destroy(&x->mu);
  free(x);
}

csp_XChan *csp_xchan_create(uint32_t cap) {
  csp_XChan *x = (csp_XChan *)calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  if (cap && (x->ring = (csp_Blob **)calloc(cap, sizeof *x->ring)) == NULL) {
    free(x);
    return NULL;
  }
  x->cap = cap;
  pthread_mutex_init(&x->mu, NULL);
  csp_shared_init(&x->h, CSP_X_XCHAN, xchan_destroy);
  return x;
}

static int x_sendready(csp_XChan *x) {
  return x->closed || x->count < x->cap || q_live(&x->recvq);
}

static int x_recvready(csp_XChan *x) {
  return x->count > 0 || x->closed || q_live(&x->sendq);
}

/* Under x->mu: *woken gets a record to wake after unlocking (or NULL). *ok: 1 a value, 0 closed,
** -1 nothing after all (the only sender's select was won meanwhile by its own thread: a claim
** takes no channel lock, so a waiter seen live may be gone when it is taken). */
static csp_Blob *x_recv_locked(csp_XChan *x, int *ok, XRec **woken) {
  XWaiter *w;
  csp_Blob *b;
  *woken = NULL;
  if (x->count > 0) {
    b = x->ring[x->head];
    x->ring[x->head] = NULL;
    if (++x->head == x->cap) x->head = 0;
    x->count--;
    if ((w = q_take(&x->sendq)) != NULL) {  /* a slot freed: the first sender's value takes it */
      x->ring[(x->head + x->count) % x->cap] = w->msg;
      x->count++;
      w->msg = NULL;
      w->rec->fired = w->caseidx;
      w->rec->fsend = 1;
      *woken = w->rec;
    }
    *ok = 1;
    return b;
  }
  if ((w = q_take(&x->sendq)) != NULL) {
    b = w->msg;
    w->msg = NULL;
    w->rec->fired = w->caseidx;
    w->rec->fsend = 1;
    *woken = w->rec;
    *ok = 1;
    return b;
  }
  *ok = x->closed ? 0 : -1;
  return NULL;
}

/* Under x->mu, open: takes b and returns 1, or 0 if no receiver is left and the buffer is full
** (see x_recv_locked). */
static int x_send_locked(csp_XChan *x, csp_Blob *b, XRec **woken) {
  XWaiter *w = q_take(&x->recvq);
  *woken = NULL;
  if (w) {
    w->rec->val = b;
    w->rec->fired = w->caseidx;
    w->rec->fsend = 0;
    *woken = w->rec;
    return 1;
  }
  if (x->count >= x->cap) return 0;
  x->ring[(x->head + x->count) % x->cap] = b;
  x->count++;
  return 1;
}

/* Returns the woken records as a list through cnext. */
static XRec *x_close_locked(csp_XChan *x) {
  XRec *list = NULL;
  XWaiter *w;
  x->closed = 1;
  while ((w = q_take(&x->recvq)) != NULL) {
    w->rec->fired = w->caseidx;
    w->rec->fsend = 0;
    w->rec->closed = 1;
    w->rec->cnext = list;
    list = w->rec;
  }
  while ((w = q_take(&x->sendq)) != NULL) {
    w->rec->fired = w->caseidx;
    w->rec->fsend = 1;
    w->rec->closed = 1;
    w->rec->cnext = list;
    list = w->rec;
  }
  return list;
}

static void wake_list(csp_Sched *S, XRec *list) {
  while (list) {
    XRec *next = list->cnext;
    rec_wake(S, list);
    list = next;
  }
}

void csp_xchan_closeall(csp_XChan *x) {
  XRec *list = NULL;
  pthread_mutex_lock(&x->mu);
  if (!x->closed) list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  wake_list(NULL, list);
}

/* ---------------------------------------------------------------- Lua API */

static csp_XChan *xcheck(lua_State *L, int idx, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, idx, CSP_X_XCHAN, &vop);
  if (x == NULL) luaL_typeerror(L, idx, "xchan");
  if (vop == CSP_OP_SEND && op == CSP_OP_RECV) luaL_error(L, "recv from send-only channel");
  if (vop == CSP_OP_RECV && op == CSP_OP_SEND) luaL_error(L, "send to receive-only channel");
  if (vop == CSP_OP_RECV && op == CSP_OP_CLOSE) luaL_error(L, "close of receive-only channel");
  return x;
}

/* select.c: the xchan at idx for a case, or NULL if it is not one. */
void *csp_xchan_case(lua_State *L, int idx, int send) {
  if (csp_proxy_test(L, idx, CSP_X_XCHAN, NULL) == NULL) return NULL;
  return xcheck(L, idx, send ? CSP_OP_SEND : CSP_OP_RECV);
}

/* Parks g on r (its waiters linked, their channels locked by the caller, who unlocks next). */
static void rec_arm(lua_State *L, csp_Sched *S, csp_G *g, XRec *r) {
  Port *P = port_get(L, S);
  atomic_fetch_add_explicit(&P->refs, 1, memory_order_relaxed);
  r->port = P;
  r->g = g;
  g->xw = r;
  P->nwait++;
}

static XRec *rec_done(csp_G *g) {  /* the continuation takes its record */
  XRec *r = (XRec *)g->xw;
  g->xw = NULL;
  r->port->nwait--;
  return r;
}

static int push_recv(lua_State *L, csp_Blob *b, int ok) {
  if (!ok) {
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    return 2;
  }
  lua_pushnil(L);  /* a slot for the value, so the blob is freed before anything can raise */
  {
    int n = csp_blob_decode(L, b);
    csp_blob_free(b);
    if (n != 1) lua_settop(L, lua_gettop(L) - n);
    else lua_replace(L, -2);
  }
  lua_pushboolean(L, 1);
  return 2;
}

static int xsend_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  XRec *r;
  int closed;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  r = rec_done(g);
  closed = r->closed;
  rec_free(r);
  if (closed) return luaL_error(L, "send on closed channel");
  return 0;
}

/* Parking needs g (csp_sched_self raises where one cannot block) and a record: both are got
** with no lock held, then the caller relocks and checks again. */
static XRec *x_prepare(lua_State *L, csp_Sched *S, csp_G **g, int n) {
  *g = csp_sched_self(L, S);
  port_get(L, S);
  return rec_new(L, S, n);
}

static int x_send(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_SEND);
  csp_Sched *S = csp_sched_get(L);
  csp_Blob *b;
  XRec *woken, *r = NULL;
  csp_G *g = NULL;
  lua_settop(L, 2);
  b = csp_blob_encode(L, 2, 1);
  for (;;) {
    pthread_mutex_lock(&x->mu);
    if (x->closed) {
      pthread_mutex_unlock(&x->mu);
      csp_blob_free(b);
      free(r);
      return luaL_error(L, "send on closed channel");
    }
    if ((x->count < x->cap || q_live(&x->recvq)) && x_send_locked(x, b, &woken)) {
      pthread_mutex_unlock(&x->mu);
      free(r);
      if (woken) rec_wake(S, woken);
      return 0;
    }
    if (r) break;
    pthread_mutex_unlock(&x->mu);
    {
      /* b would leak if this raised: let a box own it meanwhile */
      csp_Blob **box = (csp_Blob **)lua_newuserdatauv(L, sizeof *box, 0);
      *box = b;
      r = x_prepare(L, S, &g, 1);
      lua_pop(L, 1);
    }
  }
  r->w[0].ch = x;
  r->w[0].rec = r;
  r->w[0].send = 1;
  r->w[0].msg = b;
  csp_shared_ref(&x->h);
  q_push(&x->sendq, &r->w[0]);
  rec_arm(L, S, g, r);
  pthread_mutex_unlock(&x->mu);
  return csp_sched_park(L, g, "chan send", (lua_KContext)g, xsend_k);
}

static int xrecv_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  XRec *r;
  csp_Blob *b;
  int ok;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  r = rec_done(g);
  b = r->val;
  r->val = NULL;
  ok = !r->closed;
  rec_free(r);
  return push_recv(L, b, ok);
}

/* Receives into the stack: returns 2 (v, ok), or parks with k. */
static int x_recv_do(lua_State *L, csp_XChan *x, lua_KFunction k) {
  csp_Sched *S = csp_sched_get(L);
  XRec *woken, *r = NULL;
  csp_G *g = NULL;
  csp_Blob *b;
  int ok;
  for (;;) {
    pthread_mutex_lock(&x->mu);
    if (x_recvready(x) && (b = x_recv_locked(x, &ok, &woken), ok >= 0)) {
      pthread_mutex_unlock(&x->mu);
      free(r);
      if (woken) rec_wake(S, woken);
      return push_recv(L, b, ok);
    }
    if (r) break;
    pthread_mutex_unlock(&x->mu);
    r = x_prepare(L, S, &g, 1);
  }
  r->w[0].ch = x;
  r->w[0].rec = r;
  csp_shared_ref(&x->h);
  q_push(&x->recvq, &r->w[0]);
  rec_arm(L, S, g, r);
  pthread_mutex_unlock(&x->mu);
  return csp_sched_park(L, g, "chan receive", (lua_KContext)g, k);
}

static int x_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  return x_recv_do(L, x, xrecv_k);
}

static int xrange_k(lua_State *L, int status, lua_KContext ctx) {
  xrecv_k(L, status, ctx);
  lua_pop(L, 1);
  return 1;
}

static int x_range_iter(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  lua_settop(L, 1);
  if (x_recv_do(L, x, xrange_k) == 2) lua_pop(L, 1);
  return 1;
}

static int x_range(lua_State *L) {
  xcheck(L, 1, CSP_OP_RECV);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, x_range_iter, 1);
  lua_pushvalue(L, 1);
  return 2;
}

static int x_try_send(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_SEND);
  csp_Sched *S = csp_sched_get(L);
  csp_Blob *b;
  XRec *woken;
  lua_settop(L, 2);
  b = csp_blob_encode(L, 2, 1);
  pthread_mutex_lock(&x->mu);
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    csp_blob_free(b);
    return luaL_error(L, "send on closed channel");
  }
  if ((x->count < x->cap || q_live(&x->recvq)) && x_send_locked(x, b, &woken)) {
    pthread_mutex_unlock(&x->mu);
    if (woken) rec_wake(S, woken);
    lua_pushboolean(L, 1);
    return 1;
  }
  pthread_mutex_unlock(&x->mu);
  csp_blob_free(b);
  lua_pushboolean(L, 0);
  return 1;
}

static int x_try_recv(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_RECV);
  csp_Sched *S = csp_sched_get(L);
  XRec *woken;
  csp_Blob *b;
  int ok;
  lua_settop(L, 1);
  pthread_mutex_lock(&x->mu);
  if (!x_recvready(x) || (b = x_recv_locked(x, &ok, &woken), ok < 0)) {
    pthread_mutex_unlock(&x->mu);
    lua_pushnil(L);
    lua_pushboolean(L, 0);
    lua_pushboolean(L, 0);
    return 3;
  }
  pthread_mutex_unlock(&x->mu);
  if (woken) rec_wake(S, woken);
  push_recv(L, b, ok);
  lua_pushboolean(L, 1);
  return 3;
}

static int x_close(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_CLOSE);
  XRec *list;
  pthread_mutex_lock(&x->mu);
  if (x->closed) {
    pthread_mutex_unlock(&x->mu);
    return luaL_error(L, "close of closed channel");
  }
  list = x_close_locked(x);
  pthread_mutex_unlock(&x->mu);
  wake_list(csp_sched_get(L), list);
  return 0;
}

static int x_len(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_ANY);
  uint32_t n;
  pthread_mutex_lock(&x->mu);
  n = x->count;
  pthread_mutex_unlock(&x->mu);
  lua_pushinteger(L, n);
  return 1;
}

static int x_cap(lua_State *L) {
  lua_pushinteger(L, xcheck(L, 1, CSP_OP_ANY)->cap);
  return 1;
}

static int x_view(lua_State *L, int op) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, 1, CSP_X_XCHAN, &vop);
  if (x == NULL) return luaL_typeerror(L, 1, "xchan");
  if (vop != CSP_OP_ANY && vop != op)
    return luaL_error(L, "cannot convert %s channel to %s", vop == CSP_OP_SEND ? "send-only" : "receive-only",
                      op == CSP_OP_SEND ? "send-only" : "receive-only");
  csp_proxy_push(L, &x->h, op);
  return 1;
}

static int x_sender(lua_State *L) { return x_view(L, CSP_OP_SEND); }
static int x_receiver(lua_State *L) { return x_view(L, CSP_OP_RECV); }

static int x_base(lua_State *L) {
  csp_XChan *x = xcheck(L, 1, CSP_OP_ANY);
  csp_proxy_push(L, &x->h, CSP_OP_ANY);
  return 1;
}

static int x_tostring(lua_State *L) {
  int vop = CSP_OP_ANY;
  csp_XChan *x = (csp_XChan *)csp_proxy_test(L, 1, CSP_X_XCHAN, &vop);
  if (x == NULL) return luaL_typeerror(L, 1, "xchan");
  lua_pushfstring(L, "%s: %p (%d/%d)", vop == CSP_OP_SEND ? "xchan<-" : vop == CSP_OP_RECV ? "<-xchan" : "xchan",
                  (void *)x, (int)x->count, (int)x->cap);
  return 1;
}

static int x_new(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  csp_XChan *x;
  luaL_argcheck(L, cap >= 0 && cap <= (1 << 26), 1, "makechan: size out of range");
  if ((x = csp_xchan_create((uint32_t)cap)) == NULL) return luaL_error(L, "not enough memory");
  csp_proxy_push(L, &x->h, CSP_OP_ANY);
  csp_shared_unref(&x->h);  /* the proxy's ref is the only one */
  return 1;
}

/* ---------------------------------------------------------------- select with xchan cases */

typedef struct XCase {
  csp_Chan *c;
  csp_XChan *x;
  csp_Blob *msg;
  int send, ready, order;
} XCase;

typedef struct XSelBox {
  int n;
  csp_XChan **locks;  /* distinct xchans, by address */
  int nlocks;
  XCase cs[];
} XSelBox;

static const char xselbox_mt = 0;

static int xselbox_gc(lua_State *L) {
  XSelBox *bx = (XSelBox *)lua_touserdata(L, 1);
  for (int i = 0; i < bx->n; i++) {
    csp_blob_free(bx->cs[i].msg);
    bx->cs[i].msg = NULL;
  }
  return 0;
}

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
  return x < y ? -1 : x > y;
}

static void lock_all(XSelBox *bx) {
  for (int i = 0; i < bx->nlocks; i++) pthread_mutex_lock(&bx->locks[i]->mu);
}

static void unlock_all(XSelBox *bx) {
  for (int i = bx->nlocks - 1; i >= 0; i--) pthread_mutex_unlock(&bx->locks[i]->mu);
}

static int xselect_k(lua_State *L, int status, lua_KContext ctx) {
  csp_G *g = (csp_G *)ctx;
  int n = g->nargs, fired, fsend, closed;
  XRec *r;
  csp_Blob *b;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  unlink_locals(g);
  r = rec_done(g);
  if (n > 0) {  /* a local case fired: the usual results are on the stack */
    rec_free(r);
    if (g->wake == CSP_WAKE_CLOSED) return luaL_error(L, "send on closed channel");
    return csp_select_finish(L, (int)lua_tointeger(L, -n), n);
  }
  fired = r->fired;
  fsend = r->fsend;
  closed = r->closed;
  b = r->val;
  r->val = NULL;
  rec_free(r);
  if (fsend) {
    if (closed) return luaL_error(L, "send on closed channel");
    lua_pushinteger(L, fired);
    return csp_select_finish(L, fired, 1);
  }
  lua_pushinteger(L, fired);
  push_recv(L, b, !closed);
  return csp_select_finish(L, fired, 3);
}

static void free_msgs(XSelBox *bx) {
  for (int i = 0; i < bx->n; i++) {
    csp_blob_free(bx->cs[i].msg);
    bx->cs[i].msg = NULL;
  }
}

/* Under the locks: picks a ready case (uniformly, or the first with ordered); -1 if none. */
static int xsel_pick(csp_Sched *S, XSelBox *bx, int ordered) {
  XCase *cs = bx->cs;
  int nready = 0, pick = -1;
  for (int i = 0; i < bx->n; i++) {
    if (cs[i].x) cs[i].ready = cs[i].send ? x_sendready(cs[i].x) : x_recvready(cs[i].x);
    else cs[i].ready = cs[i].c && csp_xsel_ready(cs[i].c, cs[i].send);
    if (cs[i].ready) {
      nready++;
      if (ordered && pick < 0) pick = i;
    }
  }
  if (nready > 0 && pick < 0) {
    int r = (int)(csp_sched_rand(S) % (uint64_t)nready);
    for (pick = 0; !cs[pick].ready || r-- > 0; pick++) {}
  }
  return pick;
}

#define XSEL_RETRY (-2)

/* Under the locks: runs the ready case pick, unlocks, returns the select's results, or
** XSEL_RETRY when an xchan case seen ready was not (see x_recv_locked): the caller starts over. */
static int xsel_fire(lua_State *L, csp_Sched *S, XSelBox *bx, int pick) {
  XCase *c = &bx->cs[pick];
  XRec *woken = NULL;
  if (c->x == NULL) {
    int nres;
    unlock_all(bx);
    if ((nres = csp_select_do(L, pick + 1, c->c, c->send)) < 0) return XSEL_RETRY;
    free_msgs(bx);
    return csp_select_finish(L, pick + 1, nres);
  }
  if (c->send) {
    if (c->x->closed) {
      unlock_all(bx);
      free_msgs(bx);
      return luaL_error(L, "send on closed channel");
    }
    if (!x_send_locked(c->x, c->msg, &woken)) {
      unlock_all(bx);
      return XSEL_RETRY;
    }
    c->msg = NULL;
    unlock_all(bx);
    free_msgs(bx);
    if (woken) rec_wake(S, woken);
    lua_pushinteger(L, pick + 1);
    return csp_select_finish(L, pick + 1, 1);
  } else {
    int ok;
    csp_Blob *b = x_recv_locked(c->x, &ok, &woken);
    unlock_all(bx);
    if (ok < 0) return XSEL_RETRY;
    free_msgs(bx);
    if (woken) rec_wake(S, woken);
    lua_pushinteger(L, pick + 1);
    push_recv(L, b, ok);
    return csp_select_finish(L, pick + 1, 3);
  }
}

/* Under the locks, nothing ready: links a waiter per case (local ones as select.c does, xchan
** ones on record r, in one random order, as Go does), unlocks and parks. */
static int xsel_park(lua_State *L, csp_Sched *S, XSelBox *bx, csp_G *g, XRec *r, int *order) {
  XCase *cs = bx->cs;
  int m = 0, nx = 0, nl = 0;
  csp_Waiter *ws = g->sel;
  for (int i = 0; i < bx->n; i++)
    if (cs[i].x || cs[i].c) order[m++] = i;
  for (int i = m - 1; i > 0; i--) {
    int j = (int)(csp_sched_rand(S) % (uint64_t)(i + 1));
    int t = order[i]; order[i] = order[j]; order[j] = t;
  }
  for (int k = 0; k < m; k++) {
    int i = order[k];
    if (cs[i].x) {
      XWaiter *w = &r->w[nx++];
      w->ch = cs[i].x;
      w->rec = r;
      w->caseidx = i + 1;
      w->send = cs[i].send;
      w->msg = cs[i].msg;
      cs[i].msg = NULL;
      csp_shared_ref(&cs[i].x->h);
      q_push(cs[i].send ? &cs[i].x->sendq : &cs[i].x->recvq, w);
    } else {
      csp_Waiter *w = &ws[nl++];
      memset(w, 0, sizeof *w);
      w->g = g;
      w->caseidx = i + 1;
      if (cs[i].send) {
        lua_getiuservalue(L, 3 + i + 1, 2);  /* room: checked by csp_xselect */
        w->validx = lua_gettop(L);
      }
      csp_wq_push(cs[i].send ? &cs[i].c->sendq : &cs[i].c->recvq, w);
    }
  }
  g->nsel = nl;
  rec_arm(L, S, g, r);
  unlock_all(bx);
  return csp_sched_park(L, g, "select", (lua_KContext)g, xselect_k);
}

static XSelBox *xsel_box(lua_State *L, int n) {
  size_t sz = sizeof(XSelBox) + (size_t)n * (sizeof(XCase) + sizeof(void *) + sizeof(int));
  XSelBox *bx = (XSelBox *)lua_newuserdatauv(L, sz, 0);
  memset(bx, 0, sz);
  bx->n = n;
  bx->locks = (csp_XChan **)(bx->cs + n);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &xselbox_mt) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, xselbox_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &xselbox_mt);
  }
  lua_setmetatable(L, -2);
  return bx;
}

/* select.c hands over a select with at least one xchan case (stack: see select.c). Returns -1
** when nothing is ready and there is a default, which select.c runs. */
int csp_xselect(lua_State *L, csp_Sched *S, int n, int ordered) {
  XSelBox *bx;
  XCase *cs;
  XRec *r = NULL;
  csp_G *g = NULL;
  int pick, nl = 0, nx = 0;
  if (!lua_checkstack(L, n + 16)) return luaL_error(L, "select: too many cases");
  bx = xsel_box(L, n);  /* owns the encoded send values until they are linked or sent */
  cs = bx->cs;
  for (int i = 0; i < n; i++) {
    void *x;
    csp_select_case(L, i + 1, &cs[i].c, &x, &cs[i].send);
    cs[i].x = (csp_XChan *)x;
    if (cs[i].x) {
      int k;
      nx++;
      for (k = 0; k < bx->nlocks && bx->locks[k] != cs[i].x; k++) {}
      if (k == bx->nlocks) bx->locks[bx->nlocks++] = cs[i].x;
      if (cs[i].send) {  /* encoded before any lock: it may raise */
        lua_getiuservalue(L, 3 + i + 1, 2);
        cs[i].msg = csp_blob_encode(L, -1, 1);
        lua_pop(L, 1);
      }
    } else if (cs[i].c) {
      nl++;
    }
  }
  qsort(bx->locks, (size_t)bx->nlocks, sizeof *bx->locks, cmp_ptr);
  for (;;) {
    lock_all(bx);
    if ((pick = xsel_pick(S, bx, ordered)) >= 0) {
      int nres = xsel_fire(L, S, bx, pick);
      if (nres == XSEL_RETRY) continue;
      free(r);
      return nres;
    }
    if (lua_toboolean(L, 2)) {
      unlock_all(bx);
      free_msgs(bx);
      free(r);
      return -1;
    }
    if (r) break;
    unlock_all(bx);
    g = csp_sched_self(L, S);
    if (nl > 0) csp_sched_selwaiters(L, g, nl);
    r = x_prepare(L, S, &g, nx);
  }
  return xsel_park(L, S, bx, g, r, (int *)(bx->locks + n));
}

static const luaL_Reg xchan_methods[] = {
  {"send", x_send},
  {"recv", x_recv},
  {"close", x_close},
  {"range", x_range},
  {"try_send", x_try_send},
  {"try_recv", x_try_recv},
  {"len", x_len},
  {"cap", x_cap},
  {"base", x_base},
  {"sender", x_sender},
  {"receiver", x_receiver},
  {NULL, NULL}
};

void csp_xchan_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"xchan", x_new}, {NULL, NULL}};
  static const luaL_Reg metas[] = {{"__len", x_len}, {"__tostring", x_tostring}, {NULL, NULL}};
  csp_proxy_meta(L, CSP_X_XCHAN, "csp.xchan", xchan_methods, metas);
  csp_setfuncs(L, funcs);
}
