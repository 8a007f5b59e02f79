/* port.c: each scheduler's port: the inbox through which other threads wake its goroutines, idle
** accounting across threads (deadlock detection) and the deadlock report's per-thread dumps. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/eventfd.h>
#include "xshared.h"

#define SPIN_NS 20000   /* poll the inbox this long before sleeping (a wake across vCPUs costs ~70 us) */
#define SPIN_MISSES 8   /* after this many spins in a row found nothing, spin once in 8 parks */
#define LATE_NS 1000000 /* a wake left for later goes out at the poster's first xchan call after this */
#define BACKSTOP_MS 10  /* and in any case this late (Go preempts a goroutine after 10 ms) */

static atomic_int nawake;  /* schedulers with a port that are not asleep in their loop */
static int ncpu;            /* set once (ncpu_once), before the first port exists */
static pthread_once_t ncpu_once = PTHREAD_ONCE_INIT;
static atomic_long nidle;  /* schedulers idle: when all are (main included), the process deadlocks */
static atomic_uint dumpround;  /* main asks idle threads for their goroutines (deadlock report) */
static atomic_int nlate;   /* ports whose wake was left for later (late set) */

/* Whoever makes an idle scheduler runnable (a poster, or the owner waking) uncounts it first,
** so no wake-up is in flight while every scheduler counts as idle. */
static void port_busy(csp_Port *P) {
  int one = 1;
  if (atomic_compare_exchange_strong(&P->idle, &one, 0)) atomic_fetch_sub(&nidle, 1);
}

static void port_setref(csp_Port *P, int ref) {
  if (ref == P->refd) return;
  if (ref) uv_ref((uv_handle_t *)P->poll);
  else uv_unref((uv_handle_t *)P->poll);
  P->refd = ref;
}

/* ---------------------------------------------------------------- port */

void csp_port_unref(csp_Port *P) {
  if (atomic_fetch_sub_explicit(&P->refs, 1, memory_order_acq_rel) == 1) {
    close(P->efd);
    free(P->dump);
    free(P);
  }
}


static void poll_cb(uv_poll_t *h, int status, int events) {
  csp_Port *P = (csp_Port *)h->data;
  uint64_t v;
  (void)status; (void)events;
  while (read(P->efd, &v, sizeof v) < 0 && errno == EINTR) {}
}

static void ncpu_init(void) {
  ncpu = (int)uv_available_parallelism();
}

csp_Port *csp_port_get(lua_State *L, csp_Sched *S) {
  csp_Port *P = (csp_Port *)S->port;
  if (P) return P;
  pthread_once(&ncpu_once, ncpu_init);  /* every thread's first port: one writer, then reads */
  P = (csp_Port *)calloc(1, sizeof *P);
  if (P == NULL) luaL_error(L, "not enough memory");
  P->poll = (uv_poll_t *)malloc(sizeof *P->poll);
  P->backstop = (uv_timer_t *)malloc(sizeof *P->backstop);
  P->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (P->poll == NULL || P->backstop == NULL || P->efd < 0 ||
      uv_poll_init(S->loop, P->poll, P->efd) != 0) {
    if (P->efd >= 0) close(P->efd);
    free(P->poll);
    free(P->backstop);
    free(P);
    luaL_error(L, "xchan: cannot create the scheduler's inbox");
  }
  atomic_init(&P->refs, 1);
  atomic_fetch_add(&nawake, 1);
  P->S = S;
  P->id = csp_thread_id();
  P->poll->data = P;
  uv_poll_start(P->poll, UV_READABLE, poll_cb);
  uv_unref((uv_handle_t *)P->poll);
  uv_timer_init(S->loop, P->backstop);  /* cannot fail */
  P->backstop->data = P;
  uv_unref((uv_handle_t *)P->backstop);
  csp_port_register(P, 1);
  S->port = P;
  return P;
}

void csp_port_signal(void *port) {
  uint64_t one = 1;
  csp_Port *P = (csp_Port *)port;
  while (write(P->efd, &one, sizeof one) < 0 && errno == EINTR) {}
}

/* Records in the inbox, oldest first. */
csp_XRec *csp_port_take(csp_Port *P) {
  csp_XRec *r = atomic_exchange_explicit(&P->inbox, NULL, memory_order_acquire), *rev = NULL;
  while (r) {
    csp_XRec *next = r->inext;
    r->inext = rev;
    rev = r;
    r = next;
  }
  return rev;
}

void csp_port_unlink_locals(csp_G *g) {
  for (int i = 0; i < g->nsel; i++) csp_wq_unlink(&g->sel[i]);
  g->nsel = 0;
}

/* Owner thread: readies the goroutines whose waits other threads completed. */
static int port_drain(csp_Port *P) {
  int n = 0;
  csp_XRec *r = csp_port_take(P), *next;
  for (; r; r = next) {
    next = r->inext;
    if (r->orphan || atomic_load(&P->dead)) {
      csp_xchan_rec_free(r);
      continue;
    }
    r->delivered = 1;
    csp_port_unlink_locals(r->g);  /* no local waker may see this select's cases as ready any more */
    csp_sched_ready(P->S, r->g, 0);
    n++;
  }
  if (n) P->lateoff = 0;
  return n;
}

/* ---------------------------------------------------------------- wakes left for later */

/* Whether the poster (S) leaves P's sleeping owner asleep a while: only when every CPU already has
** an awake scheduler, so the wake would take a CPU from one (a woken main preempts a worker, and
** each sleep and wake costs both sides kernel time: ~2 results a wake in the job farm); Go, too,
** readies into the waker's P and starts no thread when no P is idle. The record is in P's inbox
** already; the wake goes out when the poster blocks or ends, at its first xchan call LATE_NS
** later, when any scheduler goes to sleep (a CPU frees), or at P's backstop timer (BACKSTOP_MS),
** which P arms when it sleeps while the others fill the CPUs: without it nobody may defer. */
static int port_defer(csp_Sched *S, csp_Port *P) {
  csp_Port *me = S ? (csp_Port *)S->port : NULL;  /* no S: a thread's end closing its xchans */
  if (me == NULL || me->asleep || !atomic_load(&P->parked) || !atomic_load(&P->lateok)) return 0;
  if (atomic_load(&nawake) < ncpu || atomic_load(&P->dead)) return 0;
  if (!atomic_exchange(&P->late, 1)) atomic_fetch_add(&nlate, 1);
  if (me->late0 == 0) me->late0 = uv_hrtime();
  return 1;
}

static int flush_one(void *port, void *arg) {
  csp_Port *P = (csp_Port *)port;
  (void)arg;
  if (atomic_load_explicit(&P->late, memory_order_relaxed) && atomic_exchange(&P->late, 0)) {
    atomic_fetch_sub(&nlate, 1);
    if (atomic_exchange(&P->parked, 0)) csp_port_signal(P);
  }
  return 1;
}

/* Sends every wake left for later, whoever left it (the registry keeps the ports alive). */
static void port_flush(csp_Port *me) {
  me->late0 = 0;
  if (atomic_load(&nlate) > 0) csp_ports_all(flush_one, NULL);
}

void csp_port_flushdue(csp_Port *P) {
  if (uv_hrtime() - P->late0 >= LATE_NS) port_flush(P);
}

/* The owner is awake: nothing of its own is left late any more. */
static void port_unlate(csp_Port *P) {
  if (atomic_load_explicit(&P->late, memory_order_relaxed) && atomic_exchange(&P->late, 0))
    atomic_fetch_sub(&nlate, 1);
}

/* It may go off before the poll (a loop whose clock was stale): uv_stop keeps uv_run from
** then blocking, so the owner always looks at its inbox. */
static void backstop_cb(uv_timer_t *t) {
  ((csp_Port *)t->data)->fired = 1;
  uv_stop(t->loop);
}

/* Before sleeping: arms the backstop, and so lets posters defer, when the other awake schedulers
** fill the CPUs, unless the last one found nothing (an idle thread pays one early wake a post). */
static int port_arm(csp_Port *P) {
  if (P->lateoff || atomic_load(&nawake) <= ncpu) return 0;
  if (!P->armed) {
    uv_update_time(P->backstop->loop);  /* from now, not from the loop's last poll */
    uv_timer_start(P->backstop, backstop_cb, BACKSTOP_MS, 0);
  }
  P->armed = 1;
  return 1;
}

/* Awake again: the backstop stops; one that went off with nothing come turns arming off. */
static void port_disarm(csp_Port *P, int got) {
  if (P->armed) {
    uv_timer_stop(P->backstop);
    P->armed = 0;
  }
  if (got) P->lateoff = 0;
  else if (P->fired) P->lateoff = 1;
  P->fired = 0;
}

/* ---------------------------------------------------------------- posting */

static void port_post(csp_Sched *S, csp_Port *P, csp_XRec *r) {
  csp_XRec *head;
  atomic_fetch_add_explicit(&P->refs, 1, memory_order_relaxed);  /* r's ref keeps P alive here */
  head = atomic_load_explicit(&P->inbox, memory_order_relaxed);
  do r->inext = head;
  while (!atomic_compare_exchange_weak(&P->inbox, &head, r));
  port_busy(P);
  if (!port_defer(S, P) && atomic_exchange(&P->parked, 0)) csp_port_signal(P);
  if (atomic_load(&P->dead)) {  /* the owner is gone: nobody else will free what we posted */
    csp_XRec *x = csp_port_take(P), *next;
    for (; x; x = next) { next = x->inext; csp_xchan_rec_free(x); }
  }
  csp_port_unref(P);
}

/* Wakes a record's owner after the completer unlocked. */
void csp_port_rec_wake(csp_Sched *S, csp_XRec *r) {
  if (r->S == S) {
    r->delivered = 1;
    csp_port_unlink_locals(r->g);
    csp_sched_ready(S, r->g, 0);
  } else {
    port_post(S, r->port, r);
  }
}

/* ---------------------------------------------------------------- the deadlock report */

#define DUMP_WAIT_MS 200  /* main waits this long for busy threads' dumps */

static int dump_l(lua_State *L) {
  csp_sched_dumpto(L, (csp_Sched *)lua_touserdata(L, 1));
  return 1;
}

/* This thread's goroutines, kept for main's deadlock report (made on its own thread: only it
** may walk its state), when main asked (a new round) and the loop is between goroutines. */
static void port_dump(csp_Sched *S, csp_Port *P) {
  unsigned round = atomic_load_explicit(&dumpround, memory_order_relaxed);
  /* The thread running here: the loop's, or main's (at depth 0 the callers, gosched and step,
  ** have just set maing.L); none while a goroutine runs. */
  lua_State *L = S->depth > 0 ? S->loopL : S->maing.L;
  char *d = NULL;
  if (round == atomic_load_explicit(&P->dumpgen, memory_order_relaxed) || csp_thread_main()) return;
  if (S->cur != NULL || L == NULL) return;
  if (lua_checkstack(L, 4)) {
    lua_pushcfunction(L, dump_l);
    lua_pushlightuserdata(L, S);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      if (s && (d = malloc(len + 64)) != NULL)
        snprintf(d, len + 64, "\n\nthread %lld:\n%s", (long long)P->id, s);
    }
    lua_pop(L, 1);
  }
  free(P->dump);
  P->dump = d;
  atomic_store_explicit(&P->dumpgen, round, memory_order_release);
}

static int dumped(void *port, void *round) {
  csp_Port *P = (csp_Port *)port;
  return atomic_load_explicit(&P->dumpgen, memory_order_acquire) == *(unsigned *)round;
}

typedef struct DumpSec { lua_Integer id; char *text; } DumpSec;
typedef struct DumpList { DumpSec *v; int n, cap; unsigned round; } DumpList;

/* A copy of each thread's section (C only: the registry's lock is held). */
static int add_dump(void *port, void *arg) {
  csp_Port *P = (csp_Port *)port;
  DumpList *l = (DumpList *)arg;
  char busy[128], *text;
  if (l->n == l->cap) {
    int ncap = l->cap ? 2 * l->cap : 8;
    DumpSec *nv = realloc(l->v, (size_t)ncap * sizeof *nv);
    if (nv == NULL) return 0;
    l->v = nv;
    l->cap = ncap;
  }
  if (!dumped(P, &l->round)) {
    snprintf(busy, sizeof busy, "\n\nthread %lld:\n(busy outside the scheduler: its goroutines "
             "could not be listed)", (long long)P->id);
    text = strdup(busy);
  } else {
    text = strdup(P->dump ? P->dump : "");
  }
  if (text == NULL) return 0;
  l->v[l->n].id = P->id;
  l->v[l->n++].text = text;
  return 1;
}

static int cmp_sec(const void *a, const void *b) {
  lua_Integer x = ((const DumpSec *)a)->id, y = ((const DumpSec *)b)->id;
  return x < y ? -1 : x > y;
}

/* loop.c, main's deadlock report: appends every other thread's goroutines to the dump on L, in
** thread order. In a deadlock of the whole process every thread has dumped already; in one of
** main alone the others are asked now, and main waits a little for those busy running goroutines. */
void csp_port_dumps(lua_State *L, csp_Sched *S) {
  csp_Port *P = (csp_Port *)S->port;
  DumpList l = {NULL, 0, 0, 0};
  if (P->global) {
    l.round = atomic_load(&dumpround);
  } else {
    l.round = atomic_fetch_add(&dumpround, 1) + 1;
    csp_thread_wakeall();
    for (int ms = 0; ms < DUMP_WAIT_MS && !csp_ports_foreach(dumped, &l.round); ms++) uv_sleep(1);
  }
  P->global = 0;
  csp_ports_foreach(add_dump, &l);
  if (l.n > 1) qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_sec);
  for (int i = 0; i < l.n; i++) {  /* the stack has room: LOOP_STACK */
    lua_pushstring(L, l.v[i].text);
    free(l.v[i].text);
    lua_concat(L, 2);
  }
  free(l.v);
}

/* ---------------------------------------------------------------- polling */

/* The loop will block, or has woken: kept in nawake, which decides whether spinning is free. */
static int port_sleep(csp_Port *P, int wait) {
  if (wait && !P->asleep) {
    P->asleep = 1;
    atomic_fetch_sub(&nawake, 1);
  }
  return wait;
}

static void port_awake(csp_Port *P) {
  if (P->asleep) {
    P->asleep = 0;
    atomic_fetch_add(&nawake, 1);
  }
}

void csp_port_retire(csp_Port *P) {
  if (!P->asleep) atomic_fetch_sub(&nawake, 1);
  P->asleep = 1;  /* from here on this scheduler defers no wake */
  port_flush(P);
  port_unlate(P);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Polls the inbox a while before sleeping, since waking a sleeping vCPU costs ~70 us, but only
** while every awake scheduler has a CPU (a spin never takes one from work) and while spinning
** pays: after SPIN_MISSES fruitless spins in a row, only once in 8 parks. Returns whether
** something came. */
static int port_spin(csp_Sched *S, csp_Port *P) {
  uint64_t until;
  if (S->nheap > 0 || atomic_load(&nawake) > ncpu) return 0;
  if (P->spinmiss >= SPIN_MISSES && (++P->spinskip & 7) != 0) return 0;
  until = uv_hrtime() + SPIN_NS;
  while (atomic_load_explicit(&P->inbox, memory_order_relaxed) == NULL && uv_hrtime() < until)
    cpu_relax();
  if (atomic_load_explicit(&P->inbox, memory_order_relaxed) == NULL) {
    P->spinmiss++;
    return 0;
  }
  P->spinmiss = 0;
  return 1;
}

/* sched.c, before the loop polls libuv: take what other threads completed; while goroutines
** wait on other threads keep the loop alive, spin briefly, and count as idle if nothing else
** (timer, I/O) can wake it. When every scheduler is idle the process is deadlocked: main
** reports it (its loop is left not alive); another thread that sees it wakes main to look.
** Returns whether to block. */
int csp_port_poll(csp_Sched *S, int wait) {
  csp_Port *P = (csp_Port *)S->port;
  int alone;
  port_awake(P);
  port_dump(S, P);
  if (wait) port_flush(P);  /* it may sleep: what it deferred goes out, and a CPU may free */
  else if (P->late0) csp_port_flushdue(P);
  if (port_drain(P)) return 0;
  if (!wait) return 0;
  port_setref(P, 0);
  if (P->nwait == 0 || csp_thread_others(S) == 0) return port_sleep(P, wait);  /* the local rule decides */
  alone = !uv_loop_alive(S->loop);
  if (port_spin(S, P) && port_drain(P)) return 0;
  if (alone) {
    atomic_fetch_add(&nidle, 1);
    atomic_store(&P->idle, 1);
    if (atomic_load(&P->inbox) != NULL) {
      port_busy(P);
      port_drain(P);
      return 0;
    }
    port_dump(S, P);
    if (atomic_load(&nidle) >= 1 + csp_thread_others(S)) {
      if (csp_thread_main()) {
        unsigned round = atomic_load(&dumpround);
        if (round != 0 && csp_ports_foreach(dumped, &round)) {
          port_busy(P);
          P->global = 1;
          return port_sleep(P, wait);  /* the loop is not alive: sched_loop reports the deadlock */
        }
        atomic_fetch_add(&dumpround, 1);  /* every idle thread dumps its goroutines, then main looks again */
        csp_thread_wakeall();
      } else {
        csp_thread_signal_main();
      }
    }
  }
  port_setref(P, 1);
  atomic_store(&P->lateok, port_arm(P));  /* before parked: a poster seeing parked sees this */
  atomic_store(&P->parked, 1);
  if (atomic_load(&P->inbox) != NULL) {
    atomic_store(&P->parked, 0);
    port_busy(P);
    port_drain(P);
    return 0;
  }
  return port_sleep(P, 1);
}

void csp_port_after(csp_Sched *S) {
  csp_Port *P = (csp_Port *)S->port;
  port_awake(P);
  atomic_store(&P->parked, 0);
  port_unlate(P);
  port_busy(P);
  port_disarm(P, port_drain(P));
}
