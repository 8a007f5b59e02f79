/* race.h: the race detector's hooks, called from the core only behind `if (S->race)`. */
#ifndef CSP_RACE_H
#define CSP_RACE_H

/* Sub-clocks of one object (a channel, a rwmutex): distinct keys next to the object's address. */
enum { CSP_RACE_CLOSE = 0, CSP_RACE_TIMER = 1, CSP_RACE_RW_R = 1, CSP_RACE_XSEND = 1, CSP_RACE_XRECV = 2 };

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
/* xchans: see raceclock.c. send: 1 a send, 0 a receive; ok: a receive got a value (not the close). */
void csp_race_xbegin(csp_Sched *S, const void *x, int send);
void csp_race_xend(csp_Sched *S, const void *x, int send, int ok);
void csp_race_open(lua_State *L);

/* --- internals shared by race.c (locations, reports, checks, Lua API) and raceclock.c --- */

/* Clocks are vectors over slots; a goroutine gets a slot on its first watched access, so one
** that only passes clocks along (most of csp's own helpers) costs no entry. Slot 0 = none,
** clock 0 = never. Slots are not recycled: the vectors grow with the goroutines that touch
** watched state. */
typedef struct RaceVC { uint32_t *c; uint32_t n; } RaceVC;

typedef struct RaceG {
  RaceVC vc;
  uint32_t slot, created;  /* created: location id of its csp.go */
  lua_Integer id;
} RaceG;

typedef struct RaceSlot { lua_Integer gid; uint32_t created; } RaceSlot;

typedef struct RaceObj {
  struct RaceObj *next;
  const void *p;
  unsigned sub;
  RaceVC vc;
} RaceObj;

/* A frame's location, found again without formatting it: its chunk's source string (verified by
** the short_src hash, since a collected chunk's string address can be reused), and the line with
** the line its function is defined at (a function on the main chunk's line is another frame). */
typedef struct RaceLocKey { const char *src; int64_t line; uint32_t srchash, id; } RaceLocKey;

typedef struct RaceRead { uint32_t slot, clock, loc; } RaceRead;

/* FastTrack: the last write as an epoch; reads as one epoch, or a set while they are concurrent. */
typedef struct RaceVar {
  uint32_t wslot, wclock, wloc;
  uint32_t rslot, rclock, rloc;
  RaceRead *reads;
  uint32_t nreads, readcap;
  int reported;
} RaceVar;

struct csp_Race {
  csp_Sched *S;
  RaceSlot *slots; uint32_t nslots, slotcap;
  RaceObj **objs; uint32_t objmask, nobjs;
  char **locs; uint32_t nlocs, loccap;
  uint32_t *lochash; uint32_t lochmask;   /* open addressing: 0 empty, else id */
  struct RaceLocKey *lockeys; uint32_t nlockeys, lockmask; /* (source, line) -> location id */
  uint64_t *pairs; uint32_t npairs, paircap;
  RaceVC exitvc, tmp;
};
typedef struct csp_Race csp_Race;

#define SLOT_SUB 2        /* channel ring slot i has sub-clock 2 + i */
#define SLOT_MAX 65536    /* beyond, slots share clocks (extra edges: races missed, never invented) */
#define USER_SUB 7        /* race.acquire/release on a Lua object */
#define MAX_FRAMES 16

/* raceclock.c */
void *csp_raceclock_xrealloc(void *p, size_t n);   /* aborts without memory */
uint32_t csp_raceclock_vc_get(const RaceVC *v, uint32_t i);
RaceG *csp_raceclock_rg_of(csp_Sched *S, csp_G *g);   /* g's clock (NULL: the running one) */
void csp_raceclock_rg_slot(csp_Race *R, RaceG *g);    /* gives g a slot on its first access */
void csp_raceclock_acquire(csp_Race *R, RaceG *g, const void *p, unsigned sub);
/* race.c */
uint32_t csp_race_loc_here(csp_Race *R, lua_State *L);  /* id of the running Lua location */

#endif
