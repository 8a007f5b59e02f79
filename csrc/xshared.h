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

/* An encoded list of values: C memory only, holding one ref per shared object inside. */
typedef struct csp_Blob {
  size_t len;
  int nshared;
  unsigned char data[];
} csp_Blob;

/* Encodes the n values from first; raises (leaking nothing) on a value that cannot cross. */
csp_Blob *csp_blob_encode(lua_State *L, int first, int n);
/* Pushes the values; returns how many. The blob is kept (free it with csp_blob_free). */
int csp_blob_decode(lua_State *L, const csp_Blob *b);
void csp_blob_free(csp_Blob *b);   /* drops the shared refs too; NULL is fine */
csp_Blob *csp_blob_dup(const csp_Blob *b);  /* NULL when out of memory; C only */
/* Encodes a key for syncmap (no tables); raises otherwise. */
csp_Blob *csp_blob_key(lua_State *L, int idx);
int csp_blob_equal(const csp_Blob *a, const csp_Blob *b);
int csp_blob_kind(const csp_Blob *b);   /* tag of the first value (for atomic.value's type) */
int csp_blob_hastable(const csp_Blob *b);

/* --- xchan.c --- */

typedef struct csp_XChan csp_XChan;
csp_XChan *csp_xchan_create(uint32_t cap);     /* one ref, owned by the caller */
void csp_xchan_closeall(csp_XChan *x);         /* closes if open (thread end) */
/* select.c's entry for a select with an xchan case. */
int csp_xselect(lua_State *L, csp_Sched *S, int n, int ordered);
void csp_xchan_open(lua_State *L);

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
int csp_ports_foreach(int (*f)(void *port, void *arg), void *arg);             /* is this OS thread the one that did not start as a csp.thread? */
void csp_thread_signal_main(void);     /* wakes main's scheduler to re-check for a deadlock */

#endif
