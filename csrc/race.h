/* race.h: the race detector's hooks, called from the core only behind `if (S->race)`. */
#ifndef CSP_RACE_H
#define CSP_RACE_H

/* Sub-clocks of one object (a channel, a rwmutex): distinct keys next to the object's address. */
enum { CSP_RACE_CLOSE = 0, CSP_RACE_TIMER = 1, CSP_RACE_RW_R = 1 };

/* g NULL: the running goroutine (S->cur, or main). */
void csp_race_spawn(lua_State *L, csp_Sched *S, csp_G *g);   /* parent before child */
void csp_race_gend(csp_Sched *S, csp_G *g);                   /* end before csp.run returns */
void csp_race_acq(csp_Sched *S, csp_G *g, const void *obj, unsigned sub);
void csp_race_rel(csp_Sched *S, const void *obj, unsigned sub);      /* release-store */
void csp_race_merge(csp_Sched *S, const void *obj, unsigned sub);    /* release-merge */
void csp_race_sync(csp_Sched *S, csp_G *g, const void *obj, unsigned sub); /* acquire + merge */
void csp_race_wakeq(csp_Sched *S, const void *obj, unsigned sub, csp_WaitQ *q); /* acq for waiters */
void csp_race_rwlock(csp_Sched *S, csp_G *g, const void *rw);
void csp_race_rwunlock(csp_Sched *S, const void *rw);
void csp_race_wg(csp_Sched *S, const void *wg, lua_Integer n, lua_Integer count, csp_WaitQ *q);
void csp_race_once(csp_Sched *S, const void *o, csp_WaitQ *q);
/* Channels (Go's racesync / racenotify): see race.c. */
void csp_race_handoff(csp_Sched *S, csp_Chan *c, csp_G *peer);
void csp_race_slot(csp_Sched *S, csp_Chan *c, uint32_t idx, csp_G *g);
void csp_race_close(csp_Sched *S, csp_Chan *c);
void csp_race_forget(csp_Sched *S, csp_Chan *c);
void csp_race_open(lua_State *L);

#endif
