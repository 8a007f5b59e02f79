/* loop.c: the scheduler loop: resuming goroutines, polling libuv, deadlock and abort, gosched,
** time slices and preemption. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "csp.h"

#define POLL_MASK 63    /* poll libuv every 64 resumes while goroutines stay runnable */

/* A goroutine's first resume: its thread, the base frame, f and its arguments. Returns 0, or 1
** with a message pushed if it cannot start. */
static int sched_start(lua_State *L, csp_Sched *S, csp_G *g) {
  if (g->L == NULL) {
    int ok;
    S->starting = g;  /* a memory error from here on: loop_error lets it go */
    ok = csp_sched_thread_attach(L, S, g);
    S->starting = NULL;
    if (!ok) {
      lua_pushfstring(L, "goroutine %I: cannot create its thread", (LUAI_UACINT)g->id);
      csp_sched_pend_drop(L, S, g->nargs + 1);
      csp_sched_g_release(L, S, g, 0);
      return 1;
    }
    if (!lua_checkstack(g->L, g->nargs + 3)) {  /* the collector may have shrunk a pooled one */
      lua_pushfstring(L, "goroutine %I: cannot start: stack overflow (%d arguments)",
                      (LUAI_UACINT)g->id, g->nargs);
      csp_sched_pend_drop(L, S, g->nargs + 1);
      csp_sched_g_release(L, S, g, 0);
      return 1;
    }
    csp_exit_push(g);
    csp_sched_pend_pop(L, S, g->L, g->nargs + 1);
  }
  g->nargs += 2;  /* the base's (msgh, f, args...): see csp_exit_push */
  return 0;
}

static int sched_resume(lua_State *L, csp_Sched *S, csp_G *g) {
  int nres, st;
  if (!g->started) {
    if (sched_start(L, S, g)) return 1;
  } else if (lua_status(g->L) != LUA_YIELD) {  /* closed behind our back */
    lua_pushfstring(L, "goroutine %I: its coroutine was closed or resumed outside the scheduler",
                    (LUAI_UACINT)g->id);
    csp_sched_cancel(g);
    lua_settop(g->L, 0);
    csp_sched_g_release(L, S, g, 0);
    return 1;
  }
  if (g->readyat) csp_metrics_lag(S, g);
  if (S->trace) csp_trace_run(S, g);  /* it sees whether g starts */
  g->started = 1;
  g->state = CSP_G_RUNNING;
  S->cur = g;
  S->switches++;
  S->ncalls = 0;
  S->slice0 = 0;
  st = lua_resume(g->L, L, g->nargs, &nres);
  S->cur = NULL;
  if (S->trace) csp_trace_ran(S, g, st);
  if (st == LUA_YIELD) {
    if (g->exiting == CSP_EXIT_RESET) return csp_report_goexit(L, S, g);
    if (nres) lua_pop(g->L, nres);
    if (g->state == CSP_G_RUNNING) csp_sched_ready(S, g, 0);  /* bare coroutine.yield: a gosched */
    return 0;
  }
  if (st == LUA_OK) {
    if (g->panicking) {  /* unwound under its base: every <close> has run */
      csp_exit_panicmsg(L, g);
      lua_settop(g->L, 0);
      csp_sched_g_release(L, S, g, 1);
      return 1;
    }
    csp_sched_g_release(L, S, g, 1);
    return 0;
  }
  csp_report_panic(L, S, g);
  return 1;
}

/* ---------------------------------------------------------------- the loop */

/* Polls libuv once; wait says whether it may block. Returns whether the loop was alive. */
int csp_loop_poll(csp_Sched *S, int wait) {
  csp_timer_run(S);
  if (wait && S->rqcount > 0) wait = 0;
  csp_timer_arm(S);
  if (S->port) wait = csp_port_poll(S, wait);
  if (!uv_loop_alive(S->loop)) return 0;
  uv_run(S->loop, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT);
  if (S->port) csp_port_after(S);
  csp_timer_run(S);
  return 1;
}

/* After any error out of the loop body (a panic, a deadlock, Ctrl-C, a memory error): main's
** waiters go, and main leaves the run queue if something readied it meanwhile, so nothing is
** left dangling and the next blocking call runs the loop again. L: the loop's thread, empty. */
static void loop_error(lua_State *L, csp_Sched *S) {
  uint32_t n = 0;
  int readied = 0;
  if (S->starting) {  /* its thread could not be made: it never runs */
    csp_G *g = S->starting;
    S->starting = NULL;
    csp_sched_pend_drop(L, S, g->nargs + 1);
    csp_sched_g_release(L, S, g, 0);
  }
  S->cur = NULL;
  for (uint32_t i = 0; i < S->rqcount; i++) {
    csp_G *g = S->rq[(S->rqhead + i) & S->rqmask];
    if (g != &S->maing) S->rq[(S->rqhead + n++) & S->rqmask] = g;
    else readied = 1;
  }
  S->rqcount = n;
  if (readied && S->undo)  /* main's call completed but will raise: give back what it got */
    S->undo(S, S->undoobj, S->maing.w.weight);
  S->undo = NULL;
  csp_sched_cancel(&S->maing);
  S->maing.state = CSP_G_RUNNING;
  lua_settop(S->mailbox, 0);
}

/* Goroutines whose parked thread was closed with coroutine.close (or resumed by a plain
** coroutine.resume, which raises in it) can never run again: before calling a deadlock, when no
** libuv request can still hold their records, let them go (that may end a csp.run). */
int csp_loop_reap(lua_State *L, csp_Sched *S) {
  int n = 0;
  csp_G *g, *next;
  for (g = S->all.anext; g != &S->all; g = next) {
    next = g->anext;
    if (g->state == CSP_G_WAITING && g->started && lua_status(g->L) != LUA_YIELD) {
      csp_sched_cancel(g);
      csp_sched_g_release(L, S, g, 0);
      n++;
    }
  }
  return n;
}

/* Room the loop needs on its thread (panic messages, dumps, anchors). */
#define LOOP_STACK 40

/* CSP_GCSTRESS (a testing mode): a collector step before every resume and a full collection
** every 1024 (every time with "full"). Both shrink the stacks of threads they traverse, so a
** push onto a stack the core did not size shows up under ASan. */
static void sched_gcstress(lua_State *L, csp_Sched *S) {
  if (S->gcstress > 1 || (S->ticks & 1023) == 0) lua_gc(L, LUA_GCCOLLECT);
  else lua_gc(L, LUA_GCSTEP, 0);
}

/* The next goroutine's thread and the one after's record: their first reads are cache misses
** when many goroutines take turns (10^5 sleepers waking); asked for one
** resume ahead, they arrive while this one runs. The next record was asked for a resume ago. */
static inline void loop_prefetch(csp_Sched *S) {
  csp_G *n = S->rq[S->rqhead];
  if (n->L != NULL) __builtin_prefetch(n->L);
  if (S->rqcount > 1) {
    csp_G *m = S->rq[(S->rqhead + 1) & S->rqmask];
    __builtin_prefetch(m);
    __builtin_prefetch((char *)m + 64);
  }
}

/* The loop proper, protected by csp_loop_run: ends when main is readied, raises otherwise. */
static int loop_body(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, 1);
  if (!lua_checkstack(L, LOOP_STACK)) return luaL_error(L, "stack overflow (csp scheduler)");
  for (;;) {
    csp_G *g;
    if (csp_sigpending && csp_signal_take(L, S)) return lua_error(L);  /* Ctrl-C: interrupted! */
    g = csp_sched_rq_pop(S);
    if (g == &S->maing) return 0;
    if (g == NULL) {
      if (csp_loop_poll(S, 1) || S->rqcount > 0) continue;
      if (csp_loop_reap(L, S) && S->rqcount > 0) continue;
      csp_report_dump(L, S, "fatal error: all goroutines are asleep - deadlock!\n\n");
      if (S->port) csp_port_dumps(L, S);  /* other threads' goroutines, when they are all idle */
      return lua_error(L);
    }
    if (g == &S->all) g = csp_sched_pend_record(L, S);  /* a start still without a record */
    if ((++S->ticks & POLL_MASK) == 0) csp_loop_poll(S, 0);
    if (S->rqcount > 0) loop_prefetch(S);
    if (S->gcstress) sched_gcstress(L, S);
    if (sched_resume(L, S, g)) return lua_error(L);
  }
}

/* Runs the loop until main is readied, on the loop's own thread, protected: main's frame stays
** the top one of its thread (wakers read a parked main's values there by index), and whatever
** error leaves the loop, a memory error included, it is left as a whole (loop_error: depth back
** to 0, main's wait undone) before the error goes on to main's caller. One pcall per block. */
void csp_loop_run(lua_State *L, csp_Sched *S) {
  lua_State *T = S->loopL;
  int st;
  luaL_checkstack(L, 1, "csp scheduler");  /* room for the error */
  S->depth++;
  if (S->trace) csp_trace_loop(S, 1);
  lua_settop(T, 0);
  lua_pushcfunction(T, loop_body);
  lua_pushlightuserdata(T, S);
  st = lua_pcall(T, 1, 0, 0);
  S->depth--;
  S->ncalls = 0;  /* main's slice starts again */
  S->slice0 = 0;
  if (st != LUA_OK) {
    lua_xmove(T, L, 1);
    loop_error(T, S);
  } else if (S->maing.readyat) {
    csp_metrics_lag(S, &S->maing);
  }
  S->maing.state = CSP_G_RUNNING;
  if (S->trace) csp_trace_loop(S, 0);
  if (st != LUA_OK) lua_error(L);
}

/* ---------------------------------------------------------------- API */

static int gosched_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return 0;
}

/* Go's Gosched: due timers first (schedule() runs them before it picks), so a sleeper whose time
** is up runs before the caller goes on; I/O is polled by the loop in its own time, as in Go.
** Where a goroutine cannot yield (a table.sort comparator, a plain coroutine) it does nothing:
** Gosched never fails. */
int csp_sched_yield(lua_State *L, csp_Sched *S) {
  csp_G *g;
  if (S->cur != NULL && (S->cur->L != L || !lua_isyieldable(L))) return 0;
  g = csp_sched_self(L, S);
  if (g != &S->maing) {
    csp_timer_run(S);
    csp_sched_ready(S, g, 0);
    return lua_yieldk(L, 0, 0, gosched_k);
  }
  csp_loop_poll(S, 0);
  csp_sched_ready(S, g, 0);  /* main goes to the tail: everything ready runs first */
  g->reason = "runnable";
  csp_loop_run(L, S);
  lua_settop(S->mailbox, 0);
  return 0;
}

/* Whether the running goroutine (or main) used up its slice and may be switched out here. */
int csp_sched_slice_over(lua_State *L, csp_Sched *S) {
  uint64_t now;
  if (S->slice == 0) return 0;
  now = uv_hrtime();
  if (S->slice0 == 0) {  /* the first check of this run: the slice starts now */
    S->slice0 = now;
    return 0;
  }
  if (now - S->slice0 < S->slice) return 0;
  if (S->cur) return S->cur->L == L && lua_isyieldable(L);  /* never where blocking would raise */
  return S->depth == 0 && !csp_sched_in_finalizer(L);  /* main, outside the loop and __gc */
}

/* ctx: the preempted call, run again. Rare (once per slice), so the check that the scheduler
** resumed it looks the scheduler up rather than keep the call in every goroutine's record. */
static int again_k(lua_State *L, int status, lua_KContext ctx) {
  if (status == LUA_YIELD && csp_exit_self(L) == NULL)
    return luaL_error(L, "goroutine resumed outside the scheduler");  /* it waits on nothing */
  return ((lua_CFunction)ctx)(L);
}

int csp_sched_preempt(lua_State *L, csp_Sched *S, lua_CFunction fn) {
  csp_G *g = S->cur;
  if (g != NULL) {
    S->ticks |= POLL_MASK;  /* the loop polls before the next resume: timers and I/O get in */
    csp_sched_ready(S, g, 0);
    return lua_yieldk(L, 0, (lua_KContext)fn, again_k);
  }
  csp_sched_yield(L, S);  /* main: the others run, then the call goes on */
  return fn(L);
}
