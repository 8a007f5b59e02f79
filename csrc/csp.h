/* csp.h: types and internal interfaces shared by the files of the csp core. */
#ifndef CSP_H
#define CSP_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

typedef struct csp_Sched csp_Sched;
typedef struct csp_G csp_G;
typedef struct csp_Waiter csp_Waiter;
typedef struct csp_WaitQ csp_WaitQ;
typedef struct csp_TimerNode csp_TimerNode;

/* --- wait.c: the one way anything parks and wakes a goroutine: queues, requests, deadlines --- */

/* A goroutine waits in one of two ways, each with or without a deadline (csp_wait_deadline): on an
** object's wait queue (channels, select, sync, stream readers and writers awaiting their turn,
** close_write, accept, csp.run), woken by whoever completes its operation; or on a request (csp_Req:
** a filesystem call or html parse on the pool, a lookup or connect, a process, a stream write in
** flight, a curl transfer), woken by the callback that finishes it. A wait with only a deadline is
** a sleep. Waits other threads may complete (xchan) add a record of their own (xwait.c). */

/* A waiter links a goroutine into the queue of the object it waits on.
** Invariant: w->q != NULL exactly while w is linked in w->q. */
struct csp_Waiter {
  csp_Waiter *next, *prev;
  csp_WaitQ *q;
  csp_G *g;
  int caseidx;     /* 0: plain operation; >0: 1-based select case */
  int validx;      /* send: stack index in g->L of the value (an index survives reallocation) */
  uint64_t weight; /* semaphores: units wanted */
};

/* What a queue's waiters keep alive (a timer channel's receivers its deadline): while any wait
** and node is in the heap, *ntimed (the scheduler's count) includes it. */
typedef struct csp_WaitHold {
  const csp_TimerNode *node;
  uint32_t *ntimed;
} csp_WaitHold;

struct csp_WaitQ {
  csp_Waiter *head, *tail;
  uint32_t n;                /* waiters, counted only where hold is set */
  const csp_WaitHold *hold;  /* NULL: the waiters keep nothing alive */
};

/* Inline: every channel operation that parks or wakes goes through them (wait.c has the rest). */
void csp_wq_hold(csp_WaitQ *q, int delta);  /* a waiter came (1) to or left (-1) a queue with a hold */
int csp_wq_selected(csp_Waiter *w);      /* w, a select's, was taken: 0 if another thread won it */
void csp_wq_detach(csp_WaitQ *q);        /* unlinks every waiter (object being collected) */

static inline void csp_wq_push(csp_WaitQ *q, csp_Waiter *w) {
  w->q = q;
  w->next = NULL;
  w->prev = q->tail;
  if (q->tail) q->tail->next = w;
  else q->head = w;
  q->tail = w;
  if (q->hold) csp_wq_hold(q, 1);
}

static inline void csp_wq_unlink(csp_Waiter *w) {
  csp_WaitQ *q = w->q;
  if (q == NULL) return;
  if (w->prev) w->prev->next = w->next;
  else q->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else q->tail = w->prev;
  w->next = w->prev = NULL;
  w->q = NULL;
  if (q->hold) csp_wq_hold(q, -1);
}

/* Pops the head. Taking one case of a select completes the select (csp_wq_selected). */
static inline csp_Waiter *csp_wq_take(csp_WaitQ *q) {
  csp_Waiter *w;
  while ((w = q->head) != NULL) {
    csp_wq_unlink(w);
    if (w->caseidx == 0 || csp_wq_selected(w)) return w;
  }
  return NULL;
}

/* A request: C memory a goroutine parks on while the outside world (a pool thread, libuv, a
** process) works on it, in the style of luv's lreq. The outside may finish after the goroutine
** stopped waiting (a caught panic cut main's wait, a deadline or a close woke it, its thread was
** closed), so the memory has one rule: the last of the two to let go frees it, through free_fn
** (which may have more to do: close a handle, forget a process, free a stream's write slot).
** Invariant: r->g == g exactly while g->req == r: g waits on r, or was woken otherwise and will
** let go of r in its continuation (csp_req_end); csp_req_cancel lets go for a goroutine that will
** not come back. r->g == NULL: none will come; csp_req_done frees r. */
typedef struct csp_Req csp_Req;
struct csp_Req {
  csp_G *g;                     /* the goroutine that waits on it; NULL: none will come */
  void (*free_fn)(csp_Req *r);  /* set by the owner once; called by the last to let go */
  uint8_t done;                 /* the outside world is finished with it */
};

/* Parks g on r (just started outside); k is its continuation, which first calls csp_req_end. */
int csp_req_park(lua_State *L, csp_Req *r, csp_G *g, const char *reason, lua_KContext ctx,
                 lua_KFunction k);
/* From the libuv callback that finishes r (no Lua here): readies r->g if it still waits on r
** (its continuation takes r); frees r if nobody will come for it. Returns whether g was woken. */
int csp_req_done(csp_Req *r, int nargs);
/* In r's continuation: its goroutine lets go of r. 1: r is done and now the continuation's to
** free. 0: the goroutine was woken otherwise (a deadline) and r is still in flight, left to
** csp_req_done to free; the caller may still read r and cancel its libuv request, until it
** blocks again. */
int csp_req_end(csp_Req *r);
/* The owner takes r back from its goroutine (r lives in an object being closed): the goroutine,
** if still parked on r, is woken with how (CSP_WAKE_CLOSED), or left parked if how < 0 (the object
** is being collected); its continuation must not touch r. Returns 1 if r is done: nothing is in
** flight and the owner frees it now; 0: csp_req_done will call free_fn. */
int csp_req_drop(csp_Req *r, int how);
void csp_req_cancel(csp_G *g);         /* csp_sched_cancel: g lets go of g->req */

/* Deadlines: a parked goroutine's own timer node (csp_sched_cancel removes it); the fire unlinks
** its waiter and readies it with CSP_WAKE_TIMEOUT. The continuation removes it first. */
void csp_wait_deadline(lua_State *L, csp_G *g, uint64_t when);
void csp_wait_undeadline(csp_G *g);

/* --- timer.c: 4-ary min-heap of deadlines driven by one uv_timer --- */

typedef void (*csp_TimerFire)(csp_Sched *S, csp_TimerNode *t);

struct csp_TimerNode {
  uint64_t when;       /* uv_hrtime() deadline, ns */
  uint32_t pos;        /* 1-based heap position; 0 = not in the heap */
  csp_TimerFire fire;
  const uint32_t *waiters; /* how many wait for it (a timer channel's receivers); NULL: one */
};

/* A heap slot keeps its deadline beside the node, so sifting compares within the heap array and
** never reads the nodes (scattered over goroutine records) it passes. */
typedef struct csp_HeapSlot {
  uint64_t when;
  csp_TimerNode *t;
} csp_HeapSlot;

/* L may be NULL (a libuv or curl callback): then, without memory to grow, t is not added. */
void csp_timer_add(lua_State *L, csp_Sched *S, csp_TimerNode *t, uint64_t when);
void csp_timer_del(csp_Sched *S, csp_TimerNode *t);
int csp_timer_run(csp_Sched *S);           /* fires due nodes; returns how many */
void csp_timer_arm(csp_Sched *S);          /* arms the uv_timer for the earliest node */
/* Seconds to ns, the one conversion of every duration and deadline: NaN and <= 0 give 0, other
** values at least 1; huge
** values and math.huge give CSP_MAX_NS (~146 years: never, in practice), never an overflow. */
uint64_t csp_timer_secs(double d);
uint64_t csp_timer_ns(lua_State *L, int arg); /* csp_timer_secs of a number argument */
void csp_timer_init(csp_Sched *S);
void csp_timer_free(csp_Sched *S);
void csp_timer_open(lua_State *L);  /* registers sleep/now/after/tick/ticker/timer, after_func */
void csp_after_open(lua_State *L);  /* afterfunc.c: after_func, and _after_func/_after_stop */

/* --- sched.c: goroutines, run queue, the scheduler loop --- */

enum { CSP_G_FREE, CSP_G_RUNNABLE, CSP_G_RUNNING, CSP_G_WAITING };
enum { CSP_WAKE_OK, CSP_WAKE_CLOSED, CSP_WAKE_TIMEOUT };

/* What few goroutines use (goexit under a pcall, a mutex wait, a trace, the race detector),
** behind one pointer: the record stays in a smaller malloc size class. Made on first need
** (csp_sched_ext), kept with the record while it is pooled (cleared when its goroutine ends),
** freed with it. */
typedef struct csp_GExt {
  int *xdepth;         /* goexit: [0] how many pcalls it still has to pass, [1..] their depths */
  lua_Integer *heldby; /* parked on a mutex: its holder's id, for the deadlock report */
  const char *tname;   /* trace.c: the function that started it, while a trace runs */
  uint64_t tflow;      /* trace.c: flow id of the wake not yet shown as run */
  void *race;          /* race detector's clock (race.c); NULL while it is off */
} csp_GExt;

/* What a hand-off, a park and a resume touch comes first (w up to xw, 104 B): two of the record's
** cache lines, or three, instead of all four. The sieve's 3,000 goroutines do not fit the cache,
** so each line a hand-off touches may miss (docs/design.md, "The record's layout"). */
struct csp_G {
  csp_Waiter w;        /* the single-operation waiter */
  lua_State *L;        /* its thread, anchored while the record lives */
  csp_Sched *S;
  int nargs;           /* values a waker pushed onto R */
  int nsel;
  uint8_t state, wake, exiting, started;
  uint8_t panicking;   /* its base caught an error: the thread's result is the panic's error */
  uint8_t internal;    /* a helper of csp's own: not counted, not dumped, not waited for */
  uint64_t readyat;    /* metrics.c: when it was readied (sampled; 0: not timed) */
  const char *reason;  /* Go's wait reason, shown in dumps */
  void *xw;            /* xchan.c: its wait another thread may complete (NULL: none) */
  lua_Integer id, parent;
  csp_Req *req;        /* the request it waits on, until it lets go of it (wait.c) */
  csp_Waiter *sel;     /* select waiters, grown on demand, kept */
  csp_TimerNode tn;    /* its deadline: a sleep's or an I/O wait's (csp_wait_deadline) */
  csp_G *anext, *aprev;/* all live goroutines, by id */
  csp_GExt *ext;       /* NULL until first needed */
  int slot;            /* anchor slot; 0 for main */
  int selcap;
};
/* 200 B: malloc's 208-byte chunks (a parked goroutine's cost, see docs/design.md). */
_Static_assert(sizeof(csp_G) <= 200, "csp_G outgrew its malloc size class");

/* metrics.c: counters kept always (a few instructions each), read by csp.stats(). */
#define CSP_LAG_BUCKETS 192  /* ready-to-run delays: 4 buckets per power of two of ns */
/* One ready in 64 has its delay timed: a clock read costs 25 ns here, a switch some 100. */
#define CSP_LAG_MASK 63
typedef struct csp_Metrics {
  uint32_t rqmax;          /* run-queue high-water mark */
  uint32_t lagclock;       /* counts readies: one in CSP_LAG_MASK + 1 is timed */
  long bufvals;            /* values waiting in channel buffers */
  long long bufbytes;      /* bytes of the strings among them */
  uint64_t nlag;
  uint64_t lag[CSP_LAG_BUCKETS];
} csp_Metrics;

/* A goroutine not started yet and still without a record (sched.c). */
typedef struct csp_Pend {
  lua_Integer id, parent;
  uint64_t readyat;    /* as csp_G's (metrics.c) */
  int nvals;           /* f and its arguments, waiting in the pending-start ring */
  int internal;
} csp_Pend;

/* Something whose libuv handles own more than their own blocks (a process's pipe buffers): at
** lua_close the scheduler calls close for each one linked, before it closes the leftover handles
** with free(), so its handles close with its own callbacks. Unlinked by close (or before). */
typedef struct csp_Teardown {
  void (*close)(struct csp_Teardown *t);
  struct csp_Teardown *next, *prev;
} csp_Teardown;

struct csp_Sched {
  csp_G **rq; uint32_t rqhead, rqcount, rqmask;
  csp_G *cur;          /* goroutine being resumed; NULL on main or in the loop */
  csp_G maing;         /* main (id 1): a waiter that is not a coroutine */
  /* Set by a waker that hands main something it must give back if main's call never returns
  ** (cut short by a panic after a mutex or semaphore weight was already handed to it). */
  void (*undo)(csp_Sched *S, void *obj, uint64_t weight);
  void *undoobj;
  lua_State *mailbox;  /* main's results */
  lua_State *loopL;    /* thread the loop runs on (its own: main's frames stay where wakers read them) */
  int depth;           /* loop nesting: 0 or 1 */
  csp_G *starting;     /* the goroutine whose thread the loop is making (may raise: memory) */
  struct { lua_State *L; int slot; } *tpool; int ntpool;  /* idle threads */
  csp_G *gfree; int ngfree, ngrec;  /* idle records (linked by anext); records in all */
  int *freeslots; int nfree, freecap, nslots;  /* anchor slots */
  int anchors, pending;  /* registry refs: goroutine threads by slot; the pending-start ring */
  int baseref;         /* registry ref: every goroutine's base function (goexit.c) */
  uint32_t phead, pcount, pmask;    /* ring of pending starts */
  /* Goroutines spawned with no thread at hand wait without a record: who they are is here, in
  ** spawn order; each has an entry &S->all in the run queue, where it gets its record. */
  csp_Pend *pend; uint32_t pdhead, pdcount, pdmask;
  lua_Integer nextid;
  long ngor;           /* live goroutines, main excluded */
  csp_G all;           /* sentinel of the all-goroutines list */
  csp_WaitQ runwait;   /* csp.run waiting for every goroutine to end */
  csp_Teardown teardown; /* sentinel of the list closed at lua_close */
  uv_loop_t *loop;
  uv_timer_t *tmr;     /* drives the timer heap; freed in its close callback */
  csp_HeapSlot *heap; uint32_t nheap, heapcap;
  uint32_t ntimed;     /* heap nodes someone waits for: the uv_timer is ref'd while > 0 */
  uint64_t rng;
  uint64_t switches;
  long nchans;
  uint32_t ticks;      /* resumes: the loop polls libuv every 64 */
  uint64_t tnext;      /* switches from which goroutines a timer wakes go ahead again (sched.c) */
  uint32_t tbatch;     /* those put ahead by the timers firing now; tahead: they may go ahead */
  int tahead;
  uv_timer_t *steptmr; /* bounds csp.step's wait */
  void *scratch; size_t scratchcap; /* select's case table, reused */
  int closing;
  uint32_t ncalls;     /* calls that may block since the running goroutine was resumed */
  uint64_t slice0;     /* when its slice began (0: not read yet), uv_hrtime() ns */
  uint64_t slice;      /* the time slice, ns (CSP_SLICE); 0: no preemption */
  int gcstress;        /* CSP_GCSTRESS: collect at every scheduler step (1; "full": always full) */
  struct csp_Trace *trace; /* trace.c: non-NULL while an execution trace is written */
  csp_Metrics m;
  void *port;          /* xchan.c: inbox for wakes from other threads (NULL until needed) */
  struct csp_Race *race; /* the race detector (race.c); NULL = off: every hook tests only this */
};

int csp_sched_gone(lua_State *L);       /* raises: the scheduler was torn down by lua_close */
/* S, if it is still live: raises after teardown (lua_close). */
static inline csp_Sched *csp_sched_live(lua_State *L, csp_Sched *S) {
  if (__builtin_expect(S->closing, 0)) csp_sched_gone(L);
  return S;
}
/* Upvalue 1 of every core function, live. Inline: every entry calls it. */
static inline csp_Sched *csp_sched_get(lua_State *L) {
  return csp_sched_live(L, (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1)));
}
/* Seedable. wyrand, as Go's cheaprand (one 64x64->128 multiply), where the compiler has 128-bit
** integers; splitmix64 elsewhere. */
static inline uint64_t csp_sched_rand(csp_Sched *S) {
#ifdef __SIZEOF_INT128__
  uint64_t z = (S->rng += 0xa0761d6478bd642fULL);
  unsigned __int128 m = (unsigned __int128)z * (z ^ 0xe7037ed1a0b428dbULL);
  return (uint64_t)(m >> 64) ^ (uint64_t)m;
#else
  uint64_t z = (S->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
#endif
}
/* Uniform in [0, n) by a multiply, not a 64-bit division; the bias, under n / 2^32, is nothing
** for a select's n. Go's cheaprandn does the same. */
static inline uint32_t csp_sched_randn(csp_Sched *S, uint32_t n) {
  return (uint32_t)(((csp_sched_rand(S) >> 32) * n) >> 32);
}

/* The hot half of the scheduler is inline below: a channel operation that parks or wakes pays
** for no call into sched.c unless it is main's, and none into trace.c unless a trace runs. */
csp_G *csp_sched_self_slow(lua_State *L, csp_Sched *S);
int csp_sched_in_finalizer(lua_State *L);  /* whether L runs a __gc metamethod */
int csp_sched_park_main(lua_State *L, csp_G *g, lua_KContext ctx, lua_KFunction k);
void csp_sched_ready_timed(csp_G *g);
void csp_trace_ready(csp_Sched *S, csp_G *g);  /* trace.c: a trace runs */
void csp_sched_badresume(lua_State *L, csp_G *g);

/* The goroutine L is; raises if L cannot block (main gets its record, see sched.c). */
static inline csp_G *csp_sched_self(lua_State *L, csp_Sched *S) {
  csp_G *g = S->cur;
  if (g != NULL && g->L == L && lua_isyieldable(L)) return g;
  return csp_sched_self_slow(L, S);
}

/* Parks g (csp_sched_self's, already linked where it waits); k is called when it is woken. */
static inline int csp_sched_park(lua_State *L, csp_G *g, const char *reason, lua_KContext ctx,
                                 lua_KFunction k) {
  g->reason = reason;
  g->state = CSP_G_WAITING;
  g->wake = CSP_WAKE_OK;
  g->nargs = 0;
  if (g != &g->S->maing) return lua_yieldk(L, 0, ctx, k);
  return csp_sched_park_main(L, g, ctx, k);
}

/* Queues g to run; the nargs values the waker pushed (csp_sched_results) are its call's results. */
/* g (or &S->all, a start without a record) at the run queue's tail, which has room for it. */
static inline void csp_sched_rq_push(csp_Sched *S, csp_G *g) {
  S->rq[(S->rqhead + S->rqcount) & S->rqmask] = g;
  if (++S->rqcount > S->m.rqmax) S->m.rqmax = S->rqcount;
}

static inline void csp_sched_ready(csp_Sched *S, csp_G *g, int nargs) {
  if (S->trace) csp_trace_ready(S, g);
  if ((++S->m.lagclock & CSP_LAG_MASK) == 0) csp_sched_ready_timed(g);  /* metrics' sample */
  g->nargs = nargs;
  g->state = CSP_G_RUNNABLE;
  csp_sched_rq_push(S, g);
}

void csp_sched_timers_begin(csp_Sched *S);  /* around the firing of due timers */
void csp_sched_timers_end(csp_Sched *S);
void csp_sched_ready_timer(csp_Sched *S, csp_G *g, int nargs);  /* a deadline woke g */

/* A continuation's first step: checks the goroutine is resumed by the scheduler. */
static inline void csp_sched_checkresume(lua_State *L, csp_G *g) {
  if (g->S->cur != g) csp_sched_badresume(L, g);
}

/* Where wakers push g's results: its own thread, or for main the mailbox (never main's stack,
** which the loop is running on). */
static inline lua_State *csp_sched_results(csp_G *g) {
  return g == &g->S->maing ? g->S->mailbox : g->L;
}

/* A waker handing g a lock or weight: recorded for main only (see csp_Sched.undo). */
static inline void csp_sched_grant(csp_G *g, void (*undo)(csp_Sched *, void *, uint64_t), void *obj) {
  if (g == &g->S->maing) {
    g->S->undo = undo;
    g->S->undoobj = obj;
  }
}
int csp_sched_yield(lua_State *L, csp_Sched *S); /* Gosched */

/* Fairness: a call that may block yields first when its goroutine has run longer than a time
** slice, even if it could complete at once (Go preempts after 10 ms). The clock is read every
** CSP_SLICE_MASK + 1 such calls. CSP_PREEMPT goes first in the call, before its stack changes
** in a way a second run would mind: fn is run again when the goroutine is resumed. */
#define CSP_SLICE_MASK 63
int csp_sched_slice_over(lua_State *L, csp_Sched *S);
int csp_sched_preempt(lua_State *L, csp_Sched *S, lua_CFunction fn);
#define CSP_PREEMPT(L, S, fn) do { \
    if ((++(S)->ncalls & CSP_SLICE_MASK) == 0 && csp_sched_slice_over(L, S)) \
      return csp_sched_preempt(L, S, fn); \
  } while (0)
void csp_sched_cancel(csp_G *g);        /* unlinks every waiter and deadline of g */
csp_GExt *csp_sched_ext_new(csp_G *g);  /* makes g's extension; NULL: no memory */
static inline csp_GExt *csp_sched_ext(csp_G *g) {  /* g's extension, made if need be */
  return g->ext != NULL ? g->ext : csp_sched_ext_new(g);
}
csp_Waiter *csp_sched_selwaiters(lua_State *L, csp_G *g, int n);
void csp_sched_open(lua_State *L);
/* For leak.c, signal.c: a goroutine's dump entry; the whole dump; a parked thread's anchor. */
void csp_sched_dumpg(lua_State *L, luaL_Buffer *b, csp_G *g);
void csp_sched_dump(lua_State *L, csp_Sched *S, const char *header);
void csp_sched_anchor(lua_State *L, csp_G *g, int validx);


/* --- goexit.c: a goroutine's base frame; goexit and panics unwind under it, yieldably --- */
enum { CSP_EXIT_NO, CSP_EXIT_RESET, CSP_EXIT_UNWIND };  /* csp_G.exiting */
/* Pushes onto g's thread, below f and its arguments, the base frame's function and its message
** handler: the thread's stack is (base, msgh, f, args...). Room: 2 slots, as for LUA_MINSTACK. */
void csp_exit_push(csp_G *g);
int csp_exit_goexit(lua_State *L, csp_G *g);     /* csp.goexit in goroutine g */
void csp_exit_panicmsg(lua_State *L, csp_G *g);  /* pushes g's panic message (panicking set) */
void csp_exit_striptb(lua_State *L);             /* drops the base frame from a traceback on top */
csp_G *csp_exit_self(lua_State *L);   /* the goroutine the scheduler runs on L, or NULL (slow) */
void csp_exit_open(lua_State *L);

/* --- chan.c --- */

typedef struct csp_Chan csp_Chan;
typedef struct csp_Timer csp_Timer;

struct csp_Chan {  /* what every operation reads first, in the cache line the tag is in */
  const void *tag;     /* &csp_chan_tag: first field, checked before anything else is read */
  csp_Sched *S;
  csp_Timer *timer;    /* timer channels: the pending tick lives here, not in the ring */
  uint32_t cap, count, head;
  uint8_t closed, big; /* big: the ring is a table in user value 1 */
  uint8_t finalized;
  csp_WaitQ recvq, sendq;
};

/* Timer channels (after, tick, ticker, timer) are channels with this record after them. */
struct csp_Timer {
  csp_TimerNode tn;    /* first member: the heap hands back a csp_Timer */
  csp_Chan *chan;
  uint64_t period;     /* ns; 0 for one-shot */
  double tick;         /* value of the pending tick */
  uint8_t pending;     /* a tick waits in the channel (counted in count) */
  csp_WaitHold hold;   /* the channel's receivers keep tn alive (recvq.hold) */
};

extern const char csp_chan_tag;
enum { CSP_OP_ANY, CSP_OP_SEND, CSP_OP_RECV, CSP_OP_CLOSE };

/* The channel at idx, or NULL (the size is checked before the tag is read). Inline: hot path. */
static inline csp_Chan *csp_chan_test(lua_State *L, int idx) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_rawlen(L, idx) >= sizeof(csp_Chan) && *(const void **)p == &csp_chan_tag)
    return (csp_Chan *)p;
  return NULL;
}

csp_Chan *csp_chan_checkview(lua_State *L, int idx, int op);

/* Checks a channel or a directional view allowed to do op; a view at idx is replaced by its channel. */
static inline csp_Chan *csp_chan_check(lua_State *L, int idx, int op) {
  csp_Chan *c = csp_chan_test(L, idx);
  return c && !c->S->closing ? c : csp_chan_checkview(L, idx, op);
}
csp_Chan *csp_chan_new(lua_State *L, csp_Sched *S, uint32_t cap, int timer);
void csp_chan_view(lua_State *L, int idx, int op); /* pushes a send-only or receive-only view */
int csp_timer_chan_due(csp_Chan *c);  /* timer.c: runs a due timer channel's firing now */
/* Could the op complete now (1 or 0)? (A timer channel past its deadline can: Go 1.23 runs it
** here.) No branch on the answer: in a busy select it is a coin toss, and a mispredicted branch
** costs more than the tests. */
static inline int csp_chan_ready(csp_Chan *c, int send) {
  int r;
  if (send) return (c->closed != 0) | (c->recvq.head != NULL) | (c->count < c->cap);
  r = (c->count > 0) | (c->sendq.head != NULL) | (c->closed != 0);
  if (c->timer != NULL && !r) r = csp_timer_chan_due(c);
  return r;
}
/* chidx: the stack index of the channel (its user values are the ring); 0 for an unbuffered one. */
int csp_chan_tryrecv(lua_State *L, csp_Chan *c, int chidx); /* pushes v, ok; 0 if it would block */
/* 1 if sent, 0 if not; validx 0: the value is on top of L's stack and a send consumes it. */
int csp_chan_trysend(lua_State *L, csp_Chan *c, int chidx, int validx);
void csp_chan_drain_tick(csp_Chan *c);          /* drops a pending timer tick */
void csp_chan_deliver(csp_Chan *c, double v);     /* timer tick: to a waiter or the pending slot */
void csp_chan_open(lua_State *L);

/* --- select.c --- */
void csp_select_open(lua_State *L);
/* For xchan.c's select: case i (1-based) of the select running on L; its results. A select's
** stack: 1 the case table, then case i at CSP_SEL_CASE(i), then send values and results. */
#define CSP_SEL_CASE(i) (1 + (i))
void csp_select_case(lua_State *L, int i, csp_Chan **c, void **x, int *send);
int csp_select_do(lua_State *L, int i, csp_Chan *c, int send);
int csp_select_finish(lua_State *L, int i, int nres);
/* Which of nready ready cases a select takes (their list's index): uniformly at random, or the
** first with ordered. Both selects list the ready cases without a branch on readiness. */
static inline int csp_select_pick(csp_Sched *S, int nready, int ordered) {
  return ordered ? 0 : (int)csp_sched_randn(S, (uint32_t)nready);
}

/* --- xchan.c: the hooks the core calls for waits other threads may complete --- */
int csp_xsel_claim(csp_G *g);            /* a local waker completing g's select: did it win? */
int csp_xsel_ready(csp_Chan *c, int send); /* csp_chan_ready, skipping waiters of selects won elsewhere */
void csp_xchan_cancel(csp_G *g);         /* g->xw != NULL */
int csp_port_poll(csp_Sched *S, int wait); /* S->port != NULL; returns whether to block */
void csp_port_after(csp_Sched *S);
void csp_port_teardown(csp_Sched *S);
void csp_port_dumps(lua_State *L, csp_Sched *S); /* appends the other threads' goroutines to the dump on L */
void csp_sched_dumpto(lua_State *L, csp_Sched *S); /* pushes S's dump (no header) */
void *csp_xchan_case(lua_State *L, int idx, int send);
int csp_xselect(lua_State *L, csp_Sched *S, int n, int ordered, int nonblock);
long csp_shared_alive(void);
void csp_xshared_open(lua_State *L);     /* xchan, thread, syncmap, atomic */

/* --- sync.c --- */
void csp_sync_open(lua_State *L);

/* --- fs.c, fswork.c (fs.h): filesystem calls on libuv's thread pool --- */
void csp_fs_open(lua_State *L);

/* --- net.c, conn.c, connio.c, stream.c, stdio.c: tcp, pipes, ttys, stdio --- */
void csp_net_open(lua_State *L);

/* --- proc.c, procspawn.c (proc.h): processes --- */
void csp_proc_open(lua_State *L);

/* --- html.c: links extraction with gumbo --- */
void csp_html_open(lua_State *L);

/* --- http.c: HTTP client on libcurl's multi interface --- */
void csp_http_open(lua_State *L);

/* --- url.c: RFC 3986 parse, resolve, format on liburiparser --- */
void csp_url_open(lua_State *L);
/* For csp.html.links on a pool thread (no Lua): the base a document's links resolve against
** (its URL, then its first <base href>), and one link resolved, filtered and normalised as
** links() returns it (malloc'd), or NULL when the link is dropped. */
typedef struct csp_UrlBase csp_UrlBase;
csp_UrlBase *csp_url_base_new(const char *url, const char *base_href);
void csp_url_base_free(csp_UrlBase *b);
char *csp_url_link(const csp_UrlBase *b, const char *href);

/* --- leak.c, signal.c, trace.c, metrics.c: observability --- */
void csp_leak_open(lua_State *L);
int csp_leak_atret(lua_State *L, lua_Debug *ar); /* main's hook: 1 while the exit report waits */
void csp_leak_interrupted(lua_State *L, csp_Sched *S); /* SIGINT: the CSP_LEAKS report now */
void csp_signal_open(lua_State *L);
void csp_signal_hookret(lua_State *mainL); /* main's hook (signal.c owns it) on return events */
extern volatile int csp_sigpending;  /* a SIGINT or SIGQUIT for the loop to act on */
int csp_signal_take(lua_State *L, csp_Sched *S); /* 1: main's call must raise the message pushed */
void csp_trace_open(lua_State *L);
void csp_trace_run(csp_Sched *S, csp_G *g);
void csp_trace_ran(csp_Sched *S, csp_G *g, int status);
void csp_trace_loop(csp_Sched *S, int enter);
void csp_trace_free(csp_Sched *S);
void csp_metrics_lag(csp_Sched *S, csp_G *g);
void csp_metrics_stats(lua_State *L, csp_Sched *S); /* adds its fields to the table on top */

/* A value (at idx, of type t) entering (sign 1) or leaving (-1) a channel buffer. */
static inline void csp_metrics_buf(csp_Sched *S, lua_State *L, int idx, int t, int sign) {
  S->m.bufvals += sign;
  if (t == LUA_TSTRING) S->m.bufbytes += sign * (long long)lua_rawlen(L, idx);
}

/* Close callback of a malloc'd handle (the handle first in its allocation). */
void csp_close_free(uv_handle_t *h);

/* --- sched.c, loop.c, report.c, schedlua.c: the scheduler's internals, shared by its files --- */

/* sched.c: goroutine records, threads, the pending-start ring, spawning */
static inline csp_G *csp_sched_rq_pop(csp_Sched *S) {
  csp_G *g;
  if (S->rqcount == 0) return NULL;
  g = S->rq[S->rqhead];
  S->rqhead = (S->rqhead + 1) & S->rqmask;
  S->rqcount--;
  return g;
}
int csp_sched_thread_attach(lua_State *L, csp_Sched *S, csp_G *g);
void csp_sched_g_release(lua_State *L, csp_Sched *S, csp_G *g, int reusable);
void csp_sched_pend_drop(lua_State *L, csp_Sched *S, int n);
void csp_sched_pend_pop(lua_State *L, csp_Sched *S, lua_State *co, int n);
csp_G *csp_sched_spawn(lua_State *L, csp_Sched *S, int first, int internal);
lua_Integer csp_sched_go(lua_State *L, csp_Sched *S, int first, int internal);
csp_G *csp_sched_pend_record(lua_State *L, csp_Sched *S);
void csp_sched_sortbyid(csp_G **v, size_t n);
void csp_sched_checkfunc(lua_State *L, int arg);  /* a function or a callable, else an error */
/* report.c: dumps, a goroutine's panic, goexit */
void csp_report_dump(lua_State *L, csp_Sched *S, const char *header);
int csp_report_dump_l(lua_State *L);
void csp_report_panic(lua_State *L, csp_Sched *S, csp_G *g);
int csp_report_goexit(lua_State *L, csp_Sched *S, csp_G *g);
/* loop.c: the loop */
int csp_loop_poll(csp_Sched *S, int wait);
int csp_loop_reap(lua_State *L, csp_Sched *S);
void csp_loop_run(lua_State *L, csp_Sched *S);
/* schedlua.c: the Lua bindings */
extern const luaL_Reg csp_schedlua_funcs[];
int csp_schedlua_gc(lua_State *L);
void csp_teardown_add(csp_Sched *S, csp_Teardown *t);
void csp_teardown_del(csp_Teardown *t);  /* a no-op if t is not linked */

/* A userdata with a tag first: NULL unless the value at idx is one (never reads a foreign one).
** Inline: every method of every type starts with it. */
static inline void *csp_testtag(lua_State *L, int idx, const void *tag, size_t size) {
  void *p = lua_touserdata(L, idx);
  if (p && lua_rawlen(L, idx) == size && *(const void **)p == tag) return p;
  return NULL;
}
void csp_tagerror(lua_State *L, int idx, const char *tname);  /* raises luaL_typeerror's error */
static inline void *csp_checktag(lua_State *L, int idx, const void *tag, size_t size,
                                 const char *tname) {
  void *p = csp_testtag(L, idx, tag, size);
  if (p == NULL) csp_tagerror(L, idx, tname);
  return p;
}

/* What luaL_typeerror calls the value at idx: its metatable's __name, else its type's name. */
const char *csp_typename(lua_State *L, int idx);

/* luaL_checknumber refusing NaN (no duration or time is NaN). */
lua_Number csp_checknumber(lua_State *L, int arg);

/* The one way an outside-world failure is returned: pushes nil, the formatted message and code
** (a stable name: the libuv/errno one, "ENOENT", or csp's own, "ELINETOOLONG"); returns 3. */
int csp_fail(lua_State *L, const char *code, const char *fmt, ...);
/* Go's text for a libuv error code: the C library's, first letter lower-cased ("is a directory",
** "transport endpoint is not connected"), where libuv words a few differently; libuv's own for
** codes that are not an errno (UV_EOF, UV_EAI_*). Valid until the thread's next call. */
const char *csp_strerror(int code);

/* Registers C closures with the scheduler as upvalue 1 (on the stack top: the module table). */
void csp_setfuncs(lua_State *L, const luaL_Reg *l);
/* Pushes a new metatable: __index a table of methods (NULL: none), the metamethods meta (NULL:
** none), __name (NULL: none); every function gets the value on the stack top (the scheduler) as
** upvalue 1. The one way csp builds a type's metatable. */
void csp_newmeta(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);
/* The same with the caller's methods table: __index the table at idx (0: none), upvalue 1 of
** the metamethods the value at sched. csp_newmethods pushes an empty methods table sized for n. */
void csp_newmeta_index(lua_State *L, const char *name, int idx, int sched, const luaL_Reg *meta);
void csp_newmethods(lua_State *L, int n);
/* Pushes the metatable (metamethods meta, no upvalue) kept in the registry at key, made on first
** use: for the private boxes a raise must not leak (their only metamethod a __gc). */
void csp_keptmeta(lua_State *L, const void *key, const luaL_Reg *meta);
/* A metatable that is no type's: its metamethods meta close over the nup values on the stack top
** (popped); pushed. csp_setweak gives the table at idx a weak mode ("k", "v", "kv"). No other
** file sets __gc, __index or __mode by hand. */
void csp_newmeta_up(lua_State *L, const luaL_Reg *meta, int nup);
void csp_setweak(lua_State *L, int idx, const char *mode);

/* For the few static functions of a hot path that GCC would otherwise keep out of line. */
#define CSP_HOT static inline __attribute__((always_inline))

#define CSP_NS 1000000000.0
#define CSP_MAX_NS ((uint64_t)1 << 62)  /* longer durations are clamped: now + it cannot wrap */

#include "race.h"

#endif
