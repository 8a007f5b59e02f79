/* raceclock.c: the race detector's happens-before: vector clocks of goroutines and of sync objects,
** and the hooks the core calls on every sync event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "csp.h"

void *csp_raceclock_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) {
    fputs("csp race detector: out of memory\n", stderr);
    abort();
  }
  return q;
}

/* ---------------------------------------------------------------- vector clocks */

static void vc_grow(RaceVC *v, uint32_t n) {
  if (n <= v->n) return;
  v->c = csp_raceclock_xrealloc(v->c, n * sizeof *v->c);
  memset(v->c + v->n, 0, (n - v->n) * sizeof *v->c);
  v->n = n;
}

uint32_t csp_raceclock_vc_get(const RaceVC *v, uint32_t i) {
  return i < v->n ? v->c[i] : 0;
}

static void vc_join(RaceVC *d, const RaceVC *s) {
  vc_grow(d, s->n);
  for (uint32_t i = 0; i < s->n; i++)
    if (s->c[i] > d->c[i]) d->c[i] = s->c[i];
}

static void vc_copy(RaceVC *d, const RaceVC *s) {
  vc_grow(d, s->n);
  if (s->n) memcpy(d->c, s->c, s->n * sizeof *s->c);
  if (d->n > s->n) memset(d->c + s->n, 0, (d->n - s->n) * sizeof *d->c);
}

/* After a release its own entry moves on: what it does next is not ordered before the receiver. */
static void tick(RaceG *g) {
  if (g->slot) g->vc.c[g->slot]++;
}

/* g's extension, where its clock lives: as for the clocks, no memory is fatal. */
static csp_GExt *rg_ext(csp_G *g) {
  csp_GExt *x = csp_sched_ext(g);
  if (x == NULL) {
    fputs("csp race detector: out of memory\n", stderr);
    abort();
  }
  return x;
}

RaceG *csp_raceclock_rg_of(csp_Sched *S, csp_G *g) {
  csp_GExt *x;
  if (g == NULL) g = S->cur ? S->cur : &S->maing;
  x = rg_ext(g);
  if (x->race == NULL) {  /* started before the detector was */
    RaceG *r = csp_raceclock_xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->id = g->id;
    x->race = r;
  }
  return (RaceG *)x->race;
}

void csp_raceclock_rg_slot(csp_Race *R, RaceG *g) {
  uint32_t s = R->nslots++;
  if (R->nslots > R->slotcap) {
    R->slotcap = R->slotcap ? R->slotcap * 2 : 64;
    R->slots = csp_raceclock_xrealloc(R->slots, R->slotcap * sizeof *R->slots);
  }
  R->slots[s].gid = g->id;
  R->slots[s].created = g->created;
  g->slot = s;
  vc_grow(&g->vc, s + 1);
  g->vc.c[s] = 1;
}

/* ---------------------------------------------------------------- sync objects' clocks */

static uint32_t obj_hash(const void *p, unsigned sub) {
  uint64_t h = ((uint64_t)(uintptr_t)p >> 3) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)sub * 0xff51afd7ed558ccdULL;
  return (uint32_t)(h ^ (h >> 32));
}

static void obj_rehash(csp_Race *R) {
  uint32_t ncap = R->objmask ? (R->objmask + 1) * 2 : 256;
  RaceObj **n = csp_raceclock_xrealloc(NULL, ncap * sizeof *n);
  memset(n, 0, ncap * sizeof *n);
  for (uint32_t i = 0; R->objmask && i <= R->objmask; i++) {
    RaceObj *o = R->objs[i], *next;
    for (; o; o = next) {
      uint32_t b = obj_hash(o->p, o->sub) & (ncap - 1);
      next = o->next;
      o->next = n[b];
      n[b] = o;
    }
  }
  free(R->objs);
  R->objs = n;
  R->objmask = ncap - 1;
}

/* The clock of (p, sub); NULL if it was never released to and make is 0. */
static RaceVC *obj_vc(csp_Race *R, const void *p, unsigned sub, int make) {
  RaceObj *o;
  if (R->objs) {
    for (o = R->objs[obj_hash(p, sub) & R->objmask]; o; o = o->next)
      if (o->p == p && o->sub == sub) return &o->vc;
  }
  if (!make) return NULL;
  if (R->nobjs >= R->objmask) obj_rehash(R);
  o = csp_raceclock_xrealloc(NULL, sizeof *o);
  memset(o, 0, sizeof *o);
  o->p = p;
  o->sub = sub;
  o->next = R->objs[obj_hash(p, sub) & R->objmask];
  R->objs[obj_hash(p, sub) & R->objmask] = o;
  R->nobjs++;
  return &o->vc;
}

static void obj_del(csp_Race *R, const void *p, unsigned sub) {
  RaceObj **pp;
  if (!R->objs) return;
  for (pp = &R->objs[obj_hash(p, sub) & R->objmask]; *pp; pp = &(*pp)->next) {
    RaceObj *o = *pp;
    if (o->p == p && o->sub == sub) {
      *pp = o->next;
      free(o->vc.c);
      free(o);
      R->nobjs--;
      return;
    }
  }
}

void csp_raceclock_acquire(csp_Race *R, RaceG *g, const void *p, unsigned sub) {
  RaceVC *v = obj_vc(R, p, sub, 0);
  if (v) vc_join(&g->vc, v);
}

/* Go's racereleaseacquire: the object gets g's clock, g gets the object's previous one. */
static void relacq(csp_Race *R, RaceG *g, const void *p, unsigned sub) {
  RaceVC *v = obj_vc(R, p, sub, 1);
  vc_copy(&R->tmp, v);
  vc_copy(v, &g->vc);
  vc_join(&g->vc, &R->tmp);
  tick(g);
}

/* ---------------------------------------------------------------- hooks */

void csp_race_acq(csp_Sched *S, csp_G *g, const void *obj, unsigned sub) {
  csp_raceclock_acquire(S->race, csp_raceclock_rg_of(S, g), obj, sub);
}

void csp_race_rel(csp_Sched *S, const void *obj, unsigned sub) {
  RaceG *g = csp_raceclock_rg_of(S, NULL);
  vc_copy(obj_vc(S->race, obj, sub, 1), &g->vc);
  tick(g);
}

void csp_race_merge(csp_Sched *S, const void *obj, unsigned sub) {
  RaceG *g = csp_raceclock_rg_of(S, NULL);
  vc_join(obj_vc(S->race, obj, sub, 1), &g->vc);
  tick(g);
}

/* Semaphore operations run as under x/sync's s.mu: each is ordered after every earlier one. */
void csp_race_sync(csp_Sched *S, csp_G *g, const void *obj, unsigned sub) {
  RaceG *r = csp_raceclock_rg_of(S, g);
  RaceVC *v = obj_vc(S->race, obj, sub, 1);
  vc_join(&r->vc, v);
  vc_copy(v, &r->vc);
  tick(r);
}

void csp_race_wakeq(csp_Sched *S, const void *obj, unsigned sub, csp_WaitQ *q) {
  for (csp_Waiter *w = q->head; w; w = w->next) csp_race_acq(S, w->g, obj, sub);
}

/* RWMutex as Go annotates it: clock 0 is writerSem (readers merge into it on RUnlock), clock 1
** readerSem (RLock acquires it); Lock acquires both, Unlock stores both. */
void csp_race_rwlock(csp_Sched *S, csp_G *g, const void *rw) {
  RaceG *r = csp_raceclock_rg_of(S, g);
  csp_raceclock_acquire(S->race, r, rw, 0);
  csp_raceclock_acquire(S->race, r, rw, CSP_RACE_RW_R);
}

void csp_race_rwunlock(csp_Sched *S, const void *rw) {
  RaceG *g = csp_raceclock_rg_of(S, NULL);
  vc_copy(obj_vc(S->race, rw, 0, 1), &g->vc);
  vc_copy(obj_vc(S->race, rw, CSP_RACE_RW_R, 1), &g->vc);
  tick(g);
}

/* Done (Add < 0) merges; reaching zero hands the merged clock to every waiter. */
void csp_race_wg(csp_Sched *S, const void *wg, lua_Integer n, lua_Integer count, csp_WaitQ *q) {
  if (n < 0) csp_race_merge(S, wg, 0);
  if (count == 0) csp_race_wakeq(S, wg, 0, q);
}

void csp_race_once(csp_Sched *S, const void *o, csp_WaitQ *q) {
  csp_race_rel(S, o, 0);
  csp_race_wakeq(S, o, 0, q);
}

/* The child starts with its parent's clock; where it was made is kept for reports. */
void csp_race_spawn(lua_State *L, csp_Sched *S, csp_G *g) {
  RaceG *p = csp_raceclock_rg_of(S, NULL), *c;
  csp_GExt *x = rg_ext(g);
  if (x->race) {  /* a record reused before its end was seen */
    free(((RaceG *)x->race)->vc.c);
    free(x->race);
  }
  c = csp_raceclock_xrealloc(NULL, sizeof *c);
  memset(c, 0, sizeof *c);
  c->id = g->id;
  vc_copy(&c->vc, &p->vc);
  c->created = csp_race_loc_here(S->race, L);
  x->race = c;
  tick(p);
}

void csp_race_gend(csp_Sched *S, csp_G *g) {
  RaceG *r = g->ext ? (RaceG *)g->ext->race : NULL;
  csp_Race *R = S->race;
  if (r == NULL) return;
  if (!g->internal) {  /* csp.run (or main's goexit) returns after every goroutine ended */
    vc_join(&R->exitvc, &r->vc);
    if (S->ngor == 1 && S->runwait.head) vc_join(&csp_raceclock_rg_of(S, S->runwait.head->g)->vc, &R->exitvc);
  }
  free(r->vc.c);
  free(r);
  g->ext->race = NULL;
}

/* An unbuffered exchange orders both ways (Go's racesync). A buffered channel whose receiver
** was parked: the value "goes through" slot head, as Go pretends, and head moves on (the ring is
** empty, so only the slot numbering sees it). */
void csp_race_handoff(csp_Sched *S, csp_Chan *c, csp_G *peer) {
  RaceG *me = csp_raceclock_rg_of(S, NULL), *p = csp_raceclock_rg_of(S, peer);
  if (c->cap == 0) {
    vc_join(&me->vc, &p->vc);
    vc_copy(&p->vc, &me->vc);
    tick(me);
    tick(p);
    return;
  }
  csp_race_slot(S, c, c->head, NULL);
  csp_race_slot(S, c, c->head, peer);
  if (++c->head == c->cap) c->head = 0;
}

/* The k-th send and receive meet on slot k mod cap: send k before receive k, and receive k
** before send k+cap completes. */
void csp_race_slot(csp_Sched *S, csp_Chan *c, uint32_t idx, csp_G *g) {
  relacq(S->race, csp_raceclock_rg_of(S, g), c, SLOT_SUB + idx % SLOT_MAX);
}

void csp_race_close(csp_Sched *S, csp_Chan *c) {
  csp_race_rel(S, c, CSP_RACE_CLOSE);
  csp_race_wakeq(S, c, CSP_RACE_CLOSE, &c->recvq);
  csp_race_wakeq(S, c, CSP_RACE_CLOSE, &c->sendq);
}

void csp_race_forget(csp_Sched *S, csp_Chan *c) {
  uint32_t n = c->cap < SLOT_MAX ? c->cap : SLOT_MAX;
  obj_del(S->race, c, CSP_RACE_CLOSE);
  obj_del(S->race, c, CSP_RACE_TIMER);
  for (uint32_t i = 0; i < n; i++) obj_del(S->race, c, SLOT_SUB + i);
}

/* An xchan is shared, its clocks are not: they live in this state's table under its address, and
** only edges between this state's goroutines exist (values crossing threads are copies); a peer
** on another thread released nothing here, so acquiring from it gets nothing. Each side releases
** when its operation begins, before any peer can complete it (a parked side does nothing until
** it resumes), and acquires the other side's clock when it completes: a send before the receive
** that gets its value, a receive before a send completes (Go: unbuffered, or k before k + cap:
** here every receive begun, not just the k-th; extra edges miss races, never invent them). */
void csp_race_xbegin(csp_Sched *S, const void *x, int send) {
  csp_race_merge(S, x, send ? CSP_RACE_XSEND : CSP_RACE_XRECV);
}

/* A close merged into CSP_RACE_CLOSE (csp_race_xbegin's send side uses another clock). */
void csp_race_xend(csp_Sched *S, const void *x, int send, int ok) {
  csp_race_acq(S, NULL, x, send ? CSP_RACE_XRECV : ok ? CSP_RACE_XSEND : CSP_RACE_CLOSE);
}
