/* xshared.h: objects shared between threads (xchan, syncmap, atomics, thread handles), copied
** values, and the per-scheduler port through which other threads wake its goroutines. */
#ifndef CSP_XSHARED_H
#define CSP_XSHARED_H

#include <stdatomic.h>
#include <pthread.h>
#include "csp.h"

/* --- copy.c: shared objects and their proxies --- */

enum { CSP_X_XCHAN = 1, CSP_X_SYNCMAP, CSP_X_AINT, CSP_X_AVALUE, CSP_X_THREAD };

typedef struct csp_Shared csp_Shared;
/* Header of every shareable object. Each proxy in any state and each encoded copy in flight
** holds one ref; the last release frees (acq_rel, so other threads' writes precede the free). */
struct csp_Shared {
  atomic_long refs;
  int type;
  void (*destroy)(csp_Shared *s);
};

void csp_shared_init(csp_Shared *s, int type, void (*destroy)(csp_Shared *));
void csp_shared_ref(csp_Shared *s);
void csp_shared_unref(csp_Shared *s);
long csp_shared_alive(void);   /* shared objects not yet freed, process-wide */

/* A proxy: the one userdata standing for s in this state (== and table keys work); op is a
** channel view's direction (CSP_OP_ANY for the object itself). Takes a new ref. */
void csp_proxy_push(lua_State *L, csp_Shared *s, int op);
/* The object at idx if it is a proxy of type (0: any), else NULL; *op gets its view direction. */
csp_Shared *csp_proxy_test(lua_State *L, int idx, int type, int *op);
csp_Shared *csp_proxy_check(lua_State *L, int idx, int type, const char *tname);
/* Registers the metatable of a proxy type (stack top: the scheduler, upvalue 1 of each function):
** methods as __index, metamethods, __gc, __name. */
void csp_proxy_meta(lua_State *L, int type, const char *name, const luaL_Reg *methods,
                    const luaL_Reg *metas);

/* --- copy.c: values copied between states --- */

/* An encoded list of values: C memory only, holding one ref per shared object inside. data is
** pointer-aligned and so is every shared-object pointer in it (copy.c pads before each): the
** leak checker finds only aligned pointers, and these refs must not look like leaks. */
typedef struct csp_Blob {
  size_t len;
  int nshared;
  _Alignas(void *) unsigned char data[];
} csp_Blob;

/* Encodes the n values from first; raises (leaking nothing) on a value that cannot cross. */
csp_Blob *csp_blob_encode(lua_State *L, int first, int n);
/* Pushes the values; returns how many. The blob is kept (free it with csp_blob_free). */
int csp_blob_decode(lua_State *L, const csp_Blob *b);
void csp_blob_free(csp_Blob *b);   /* drops the shared refs too; NULL is fine */
csp_Blob *csp_blob_dup(const csp_Blob *b);  /* NULL when out of memory; C only */
/* Encodes a key for syncmap (no tables); raises otherwise. */
csp_Blob *csp_blob_key(lua_State *L, int idx);
int csp_blob_equal(const csp_Blob *a, const csp_Blob *b);  /* the same encoding (syncmap keys) */
/* a and b, one value each, equal as Lua's == has them (a cas's old value: 3 == 3.0, NaN never) */
int csp_blob_same(const csp_Blob *a, const csp_Blob *b);
int csp_blob_kind(const csp_Blob *b);   /* tag of the first value (for atomic.value's type) */
int csp_blob_hastable(const csp_Blob *b);

/* One value in flight through an xchan: nil, booleans, numbers and strings up to CSP_MSG_INLINE
** bytes are held inline (no allocation, the common case); anything else as a blob. */
#define CSP_MSG_INLINE 22
enum { CSP_M_EMPTY = 0, CSP_M_NIL, CSP_M_FALSE, CSP_M_TRUE, CSP_M_INT, CSP_M_FLT, CSP_M_STR, CSP_M_BLOB };
typedef struct csp_Msg {
  /* an inline string, a number, or the blob pointer: aligned, so the leak checker sees it */
  _Alignas(void *) unsigned char data[CSP_MSG_INLINE];
  unsigned char tag, len;
} csp_Msg;

/* Encodes the value at idx into m; raises (m untouched) on a value that cannot cross. */
void csp_msg_encode(lua_State *L, int idx, csp_Msg *m);
/* Pushes m's value and empties m (an empty m pushes nil). */
void csp_msg_push(lua_State *L, csp_Msg *m);
void csp_msg_free(csp_Msg *m);          /* empties m, dropping its blob; C only */

/* --- xchan.c --- */

typedef struct csp_XChan csp_XChan;
csp_XChan *csp_xchan_create(uint32_t cap);     /* one ref, owned by the caller */
void csp_xchan_closeall(csp_XChan *x);         /* closes if open (thread end) */
/* select.c's entry for a select with an xchan case. */
int csp_xselect(lua_State *L, csp_Sched *S, int n, int ordered, int nonblock);
void csp_xchan_open(lua_State *L);

/* --- xchan.c, xsel.c, port.c: internals shared by the three --- */

typedef struct csp_Port csp_Port;
typedef struct csp_XRec csp_XRec;
typedef struct csp_XWaiter csp_XWaiter;

/* A queue of waiters; n (their number) is read without the mutex by the lock-free paths. */
typedef struct csp_XQ { csp_XWaiter *head, *tail; atomic_int n; } csp_XQ;

typedef struct csp_XSlot {
  _Atomic uint64_t seq;  /* whose turn: see xring.c */
  csp_Msg m;
} csp_XSlot;

#define CSP_XR_CLOSED ((uint64_t)1 << 63)  /* in tail: closed, no push may start */

struct csp_XChan {
  csp_Shared h;            /* alone in its line: every park and wake moves refs (xwait.c) */
  _Alignas(64) uint32_t cap;  /* read by every operation: with the fields written only at close */
  int closed;              /* under mu */
  csp_XSlot *ring;         /* cap > 0: the buffer (xring.c), in ringmem */
  void *ringmem;
  /* Each in its own cache line: producers' tail, consumers' head, then what waits need. */
  _Alignas(64) _Atomic uint64_t tail;
  _Alignas(64) _Atomic uint64_t head;
  _Alignas(64) pthread_mutex_t mu;  /* guards closed, the queues and the waiters linked there */
  csp_XQ recvq, sendq;
};

/* One (goroutine, xchan) wait. linked is true exactly while it is in ch's queue (under ch->mu). */
struct csp_XWaiter {
  csp_XWaiter *next, *prev;
  csp_XChan *ch;       /* holds a ref while the record lives */
  csp_XRec *rec;
  int caseidx, send, linked;
  csp_Msg msg;         /* send: the value, until a receiver takes it */
};

/* A parked goroutine's xchan wait (a plain operation or a select). Every completer must win
** CAS(done, 0, 1); the winner fills fired/closed/val under the channel's mutex, then wakes the
** owner: directly on the same scheduler, else through the owner's port. */
struct csp_XRec {
  atomic_int done;
  csp_XRec *inext;         /* inbox link */
  csp_XRec *cnext;         /* a closer's list of claimed records */
  csp_Port *port;          /* the owner's port, ref held */
  csp_G *g;
  csp_Sched *S;
  int fired, fsend, closed;
  int retry;           /* woken to try again (a buffered xchan's value went to another) */
  int ncases, ordered; /* a select's, to run it again */
  int delivered;       /* owner-thread only: g was readied for this record */
  int orphan;          /* owner-thread only: the wait was cancelled after a remote win */
  csp_Msg val;         /* a receive's value */
  int n;
  csp_XWaiter w[];
};

/* Each scheduler's inbox: a lock-free stack of records that other threads completed, and an
** eventfd written only when the owner sleeps. */
struct csp_Port {
  atomic_long refs;    /* the owner, each record, each poster in flight */
  _Atomic(csp_XRec *) inbox;
  atomic_int parked;
  atomic_int idle;     /* counted in nidle: asleep with nothing but other threads to wake it */
  atomic_int dead;
  int efd;
  uv_poll_t *poll;
  csp_Sched *S;
  int nwait;           /* owner-thread only: records of parked goroutines */
  csp_XRec *spare;     /* owner-thread only: a free record of one waiter (xwait.c) */
  int refd;
  int asleep;          /* owner-thread only: not counted in nawake (port.c) */
  /* Deferred wakes (port.c): a poster may leave this owner asleep (lateok: it sleeps with its
  ** backstop armed); late: a wake was left, counted in nlate. */
  atomic_int lateok, late;
  uv_timer_t *backstop;
  uint64_t late0;      /* owner-thread only: when this scheduler first left a wake unflushed (0: none) */
  int armed, fired;    /* owner-thread only: the backstop runs; it went off */
  int lateoff;         /* owner-thread only: the last backstop found nothing: arm none until a post comes */
  unsigned spinmiss, spinskip;  /* owner-thread only: fruitless spins in a row; parks since */
  atomic_uint dumpgen; /* the deadlock-report round dump was made for (release: dump is set) */
  char *dump;          /* "thread N:" and its goroutines, for main's deadlock report */
  lua_Integer id;      /* the owner's csp.thread id (0: main) */
  int global;          /* main only: the deadlock being reported is every thread's */
};

/* port.c */
void csp_port_unref(csp_Port *P);
void csp_port_retire(csp_Port *P);  /* the owner's end: no longer counted awake */
csp_Port *csp_port_get(lua_State *L, csp_Sched *S);   /* S's port, created on first use */
csp_XRec *csp_port_take(csp_Port *P);
void csp_port_unlink_locals(csp_G *g);
void csp_port_rec_wake(csp_Sched *S, csp_XRec *r);
void csp_port_flushdue(csp_Port *P);
/* xchan operations: the wakes this scheduler left (port.c) go out once they are LATE_NS old. */
static inline void csp_port_due(csp_Sched *S) {
  csp_Port *P = (csp_Port *)S->port;
  if (P != NULL && P->late0 != 0) csp_port_flushdue(P);
}
/* xring.c: a buffered xchan's lock-free queue of values */
int csp_xring_init(csp_XChan *x);
void csp_xring_free(csp_XChan *x);
int csp_xring_push(csp_XChan *x, csp_Msg *m);   /* 1 (m emptied), 0 full, -1 closed */
int csp_xring_pop(csp_XChan *x, csp_Msg *out);  /* 1, or 0 when none is published */
int csp_xring_ready(csp_XChan *x);
int csp_xring_room(csp_XChan *x);
uint32_t csp_xring_len(csp_XChan *x);
void csp_xring_close(csp_XChan *x);
int csp_xring_drained(csp_XChan *x);
/* xwait.c: records, waiter queues (callers hold the channel's mutex), parking */
csp_XRec *csp_xrec_new(lua_State *L, csp_Sched *S, int n);
void csp_xchan_q_push(csp_XQ *q, csp_XWaiter *w);
void csp_xq_unlink(csp_XQ *q, csp_XWaiter *w);
void csp_xchan_q_unlink(csp_XWaiter *w);
csp_XWaiter *csp_xq_take(csp_XQ *q);   /* the first waiter whose record this caller wins */
int csp_xq_live(csp_XQ *q);            /* drops claimed waiters at the head: is one left? */
void csp_xchan_rec_free(csp_XRec *r);
void csp_xrec_drop(csp_Sched *S, csp_XRec *r);     /* owner: r holds nothing; NULL is fine */
void csp_xrec_release(csp_Sched *S, csp_XRec *r);  /* owner: a plain op's record after its wait */
void csp_xchan_rec_arm(lua_State *L, csp_Sched *S, csp_G *g, csp_XRec *r);
csp_XRec *csp_xchan_rec_done(csp_G *g);   /* the continuation takes its record */
csp_XRec *csp_xchan_prepare(lua_State *L, csp_Sched *S, csp_G **g, int n);
/* Parks g, armed: a goroutine yields to k; main returns once readied (then runs k's work). */
int csp_xchan_park(lua_State *L, csp_G *g, const char *reason, lua_KFunction k);
/* xchan.c: the channel operations (callers of the _locked ones hold x->mu) */
int csp_xchan_sendready(csp_XChan *x);
int csp_xchan_recvready(csp_XChan *x);
int csp_xchan_recv_locked(csp_XChan *x, csp_Msg *out, csp_XRec **woken);
int csp_xchan_send_locked(csp_XChan *x, csp_Msg *m, csp_XRec **woken);
void csp_xchan_wake(csp_Sched *S, csp_XRec *list);  /* after unlocking: what *woken listed */
int csp_xchan_push_recv(lua_State *L, csp_Msg *m, int ok);
/* A receive (thread.c's join too): pushes (v, ok) and returns 2, or parks for reason; the
** continuation k must call csp_xchan_recv_k(..., k) first, which pushes (v, ok) or parks again. */
int csp_xchan_recv(lua_State *L, csp_XChan *x, const char *reason, lua_KFunction k);
int csp_xchan_recv_k(lua_State *L, int status, lua_KContext ctx, lua_KFunction k);
int csp_xchan_recheck(csp_XChan *x, int send);

/* --- thread.c, syncmap.c, atomic.c --- */
void csp_thread_open(lua_State *L);
void csp_syncmap_open(lua_State *L);
void csp_atomic_open(lua_State *L);
long csp_thread_others(csp_Sched *S);  /* schedulers other than S's that may still wake it */
void csp_thread_wakeall(void);         /* every port re-checks (a thread ended) */
void csp_port_register(void *port, int add);
int csp_thread_main(void);
lua_Integer csp_thread_id(void);       /* this OS thread's csp.thread id; 0 on main */
/* Calls f(port, arg) for every registered port but main's; returns 0 as soon as f does, else 1.
** The ports stay registered (alive) meanwhile. */
int csp_ports_foreach(int (*f)(void *port, void *arg), void *arg);
int csp_ports_all(int (*f)(void *port, void *arg), void *arg);  /* main's too */
void csp_thread_signal_main(void);     /* wakes main's scheduler to re-check for a deadlock */

#endif
