/* schedlua.c: the scheduler's Lua bindings: go, gosched, goexit, run, step, numgoroutine, goid,
** dump, stats, seed, and the scheduler's __gc (the loop's teardown). */
#include <stdlib.h>
#include <string.h>
#include "csp.h"

static int sched_go(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checkany(L, 1);
  lua_pushinteger(L, csp_sched_go(L, S, 1, 0));
  return 1;
}

/* For csp's own Lua parts (context deadlines...): a goroutine that is not the user's. */
static int sched_go_internal(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checkany(L, 1);
  csp_sched_go(L, S, 1, 1);
  return 0;
}

static int sched_gosched(lua_State *L) {
  return csp_sched_yield(L, csp_sched_get(L));
}

static int sched_goexit(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_G *g = csp_sched_self(L, S);
  if (g != &S->maing) return csp_exit_goexit(L, g);
  /* Go: main's Goexit lets the others run to the end, then reports a deadlock. */
  if (S->ngor > 0) {
    csp_wq_push(&S->runwait, &g->w);
    g->reason = "goexit";
    g->state = CSP_G_WAITING;
    csp_loop_run(L, S);
    lua_settop(S->mailbox, 0);
  }
  return luaL_error(L, "fatal error: no goroutines (main called csp.goexit) - deadlock!");
}

static int run_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

static int sched_run(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  csp_G *g;
  if (S->cur) return luaL_error(L, "csp.run: cannot be called from a goroutine");
  if (!lua_isnoneornil(L, 1)) csp_sched_go(L, S, 1, 0);
  g = csp_sched_self(L, S);
  if (S->ngor == 0) return 0;
  csp_wq_push(&S->runwait, &g->w);
  return csp_sched_park(L, g, "csp.run", 0, run_k);
}

static void step_cb(uv_timer_t *h) {
  (void)h;  /* its only job is to end uv_run */
}

static int sched_step(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  double timeout = lua_isnoneornil(L, 1) ? 0 : csp_checknumber(L, 1);
  csp_G *g;
  if (S->cur) return luaL_error(L, "csp.step: cannot be called from a goroutine");
  g = csp_sched_self(L, S);
  csp_sched_ready(S, g, 0);
  g->reason = "runnable";
  csp_loop_run(L, S);  /* runs what was ready before this call */
  lua_settop(S->mailbox, 0);
  if (S->rqcount == 0 && timeout > 0 && S->ngor > 0) {  /* with no work left, nothing to wait for */
    csp_timer_run(S);
    csp_timer_arm(S);
    uv_ref((uv_handle_t *)S->steptmr);
    uv_timer_start(S->steptmr, step_cb, (csp_timer_secs(timeout) + 999999) / 1000000, 0);
    uv_run(S->loop, UV_RUN_ONCE);
    uv_timer_stop(S->steptmr);
    uv_unref((uv_handle_t *)S->steptmr);
    csp_timer_run(S);
  } else {
    csp_loop_poll(S, 0);
  }
  lua_pushboolean(L, S->ngor > 0 || S->rqcount > 0);
  return 1;
}

static int sched_numgoroutine(lua_State *L) {
  lua_pushinteger(L, csp_sched_get(L)->ngor + 1);
  return 1;
}

static int sched_goid(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  lua_pushinteger(L, (S->cur && S->cur->L == L) ? S->cur->id : 1);
  return 1;
}

static int sched_stats(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  long blocked = 0;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext)
    if (g->state == CSP_G_WAITING && !g->internal) blocked++;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, S->ngor + 1); lua_setfield(L, -2, "goroutines");
  lua_pushinteger(L, S->rqcount); lua_setfield(L, -2, "runnable");
  lua_pushinteger(L, blocked); lua_setfield(L, -2, "blocked");
  lua_pushinteger(L, (lua_Integer)S->switches); lua_setfield(L, -2, "switches");
  lua_pushinteger(L, S->nchans); lua_setfield(L, -2, "channels_alive");
  lua_pushinteger(L, S->nheap); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, S->ntpool); lua_setfield(L, -2, "pooled_threads");
  lua_pushinteger(L, S->nextid); lua_setfield(L, -2, "goroutines_started");
  csp_metrics_stats(L, S);
  lua_pushinteger(L, csp_shared_alive()); lua_setfield(L, -2, "shared_alive");
  return 1;
}

static int sched_seed(lua_State *L) {
  csp_sched_get(L)->rng = (uint64_t)luaL_checkinteger(L, 1);
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, csp_close_free);
}

void csp_teardown_add(csp_Sched *S, csp_Teardown *t) {
  t->prev = S->teardown.prev;
  t->next = &S->teardown;
  S->teardown.prev->next = t;
  S->teardown.prev = t;
}

void csp_teardown_del(csp_Teardown *t) {
  if (t->next == NULL) return;
  t->prev->next = t->next;
  t->next->prev = t->prev;
  t->next = t->prev = NULL;
}

/* At lua_close: the scheduler is finalized after every object made after it. */
int csp_schedlua_gc(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, 1);
  csp_G *g, *next;
  if (S->closing) return 0;
  S->closing = 1;
  csp_trace_free(S);
  csp_port_teardown(S);  /* waits other threads could still complete */
  /* Goroutines let go of their requests (one done but not taken back is freed now); close every
  ** handle and drain the loop while the records still exist: a request cancelled by the close
  ** calls back now and, nobody waiting for it, is freed. */
  for (g = S->all.anext; g != &S->all; g = g->anext)
    if (g->req) csp_req_cancel(g);
  while (S->teardown.next != &S->teardown) S->teardown.next->close(S->teardown.next);
  uv_walk(S->loop, close_walk, NULL);
  {
    int rc = uv_loop_close(S->loop);
    for (int i = 0; i < 1000 && rc == UV_EBUSY; i++) {
      if (i >= 10) uv_sleep(1);  /* a pool thread still finishing (an interrupted readfile) */
      uv_run(S->loop, UV_RUN_NOWAIT);
      rc = uv_loop_close(S->loop);
    }
    if (rc == 0) free(S->loop);  /* else leak it: a worker thread may still use it */
  }
  for (g = S->all.anext; g != &S->all; g = next) {
    next = g->anext;
    free(g->sel);
    if (g->ext) free(g->ext->xdepth);
    free(g->ext);
    free(g);
  }
  while ((g = S->gfree) != NULL) {
    S->gfree = g->anext;
    free(g->sel);
    free(g->ext);
    free(g);
  }
  free(S->maing.sel);
  free(S->maing.ext);
  csp_timer_free(S);
  free(S->rq);
  free(S->pend);
  free(S->tpool);
  free(S->freeslots);
  free(S->scratch);
  return 0;
}

const luaL_Reg csp_schedlua_funcs[] = {
  {"go", sched_go},
  {"_go_internal", sched_go_internal},
  {"gosched", sched_gosched},
  {"goexit", sched_goexit},
  {"run", sched_run},
  {"step", sched_step},
  {"numgoroutine", sched_numgoroutine},
  {"goid", sched_goid},
  {"dump", csp_report_dump_l},
  {"stats", sched_stats},
  {"seed", sched_seed},
  {NULL, NULL}
};
