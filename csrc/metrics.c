/* metrics.c: the counters behind csp.stats(): blocked by reason, run-queue peak, buffers, loop lag. */
#include "csp.h"

static int lag_bucket(uint64_t ns) {
  int e, idx;
  if (ns < 4) return (int)ns;
  e = 63 - __builtin_clzll(ns);
  idx = (e - 1) * 4 + (int)((ns >> (e - 2)) & 3);
  return idx < CSP_LAG_BUCKETS ? idx : CSP_LAG_BUCKETS - 1;
}

static double bucket_mid(int idx) {  /* seconds */
  int e = idx / 4 + 1, sub = idx % 4;
  if (idx < 4) return idx / CSP_NS;
  return (double)((uint64_t)(4 + sub) << (e - 2)) * 1.125 / CSP_NS;  /* a quarter bucket wide */
}

/* g was readied at g->readyat (one ready in 64 is timed) and runs now. */
void csp_metrics_lag(csp_Sched *S, csp_G *g) {
  uint64_t now = uv_hrtime();
  S->m.lag[lag_bucket(now > g->readyat ? now - g->readyat : 0)]++;
  S->m.nlag++;
  g->readyat = 0;
}

static double lag_quantile(csp_Sched *S, double q) {
  uint64_t want = (uint64_t)(q * (double)S->m.nlag), seen = 0;
  if (S->m.nlag == 0) return 0;
  for (int i = 0; i < CSP_LAG_BUCKETS; i++) {
    seen += S->m.lag[i];
    if (seen > want) return bucket_mid(i);
  }
  return bucket_mid(CSP_LAG_BUCKETS - 1);
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

void csp_metrics_stats(lua_State *L, csp_Sched *S) {
  lua_newtable(L);  /* blocked_by: reason -> goroutines parked for it */
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {
    if (g->state != CSP_G_WAITING || g->internal) continue;
    lua_getfield(L, -1, g->reason ? g->reason : "waiting");
    lua_Integer n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    setint(L, g->reason ? g->reason : "waiting", n + 1);
  }
  lua_setfield(L, -2, "blocked_by");
  setint(L, "runnable_max", S->m.rqmax);
  setint(L, "timer_heap", S->nheap);
  setint(L, "timers_waited", S->ntimed);
  setint(L, "chan_buffered", S->m.bufvals);
  setint(L, "chan_buffered_bytes", S->m.bufbytes);
  setint(L, "loop_lag_samples", (lua_Integer)S->m.nlag);
  lua_pushnumber(L, lag_quantile(S, 0.5));
  lua_setfield(L, -2, "loop_lag_p50");
  lua_pushnumber(L, lag_quantile(S, 0.99));
  lua_setfield(L, -2, "loop_lag_p99");
}
