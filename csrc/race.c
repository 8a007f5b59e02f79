/* race.c: the race detector (CSP_RACE): vector clocks from sync events, FastTrack checks on
** globals and watched tables, Go-style reports, exit status 66. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dlfcn.h>
#include "csp.h"

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
** the short_src hash, since a collected chunk's string address can be reused) and line. */
typedef struct RaceLocKey { const char *src; int line; uint32_t srchash, id; } RaceLocKey;

typedef struct RaceRead { uint32_t slot, clock, loc; } RaceRead;

/* FastTrack: the last write as an epoch; reads as one epoch, or a set while they are concurrent. */
typedef struct RaceVar {
  uint32_t wslot, wclock, wloc;
  uint32_t rslot, rclock, rloc;
  RaceRead *reads;
  uint32_t nreads, readcap;
  int reported;
} RaceVar;

typedef struct csp_Race {
  csp_Sched *S;
  RaceSlot *slots; uint32_t nslots, slotcap;
  RaceObj **objs; uint32_t objmask, nobjs;
  char **locs; uint32_t nlocs, loccap;
  uint32_t *lochash; uint32_t lochmask;   /* open addressing: 0 empty, else id */
  struct RaceLocKey *lockeys; uint32_t nlockeys, lockmask; /* (source, line) -> location id */
  uint64_t *pairs; uint32_t npairs, paircap;
  RaceVC exitvc, tmp;
} csp_Race;

#define SLOT_SUB 2        /* channel ring slot i has sub-clock 2 + i */
#define SLOT_MAX 65536    /* beyond, slots share clocks (extra edges: races missed, never invented) */
#define USER_SUB 7        /* race.acquire/release on a Lua object */
#define MAX_FRAMES 16

static const char race_key = 0;   /* registry: the userdata owning csp_Race */
static const char var_mt = 0;     /* registry: metatable of RaceVar userdata */
static int race_found;            /* reports printed, process-wide: read at exit */
static int race_report_only;
static int race_exit_registered;
static void *race_self;           /* this library, pinned while exit handlers may run */

static uint32_t loc_here(csp_Race *R, lua_State *L);

static void *xrealloc(void *p, size_t n) {
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
  v->c = xrealloc(v->c, n * sizeof *v->c);
  memset(v->c + v->n, 0, (n - v->n) * sizeof *v->c);
  v->n = n;
}

static uint32_t vc_get(const RaceVC *v, uint32_t i) {
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

static RaceG *rg_of(csp_Sched *S, csp_G *g) {
  if (g == NULL) g = S->cur ? S->cur : &S->maing;
  if (g->race == NULL) {  /* started before the detector was */
    RaceG *r = xrealloc(NULL, sizeof *r);
    memset(r, 0, sizeof *r);
    r->id = g->id;
    g->race = r;
  }
  return (RaceG *)g->race;
}

static void rg_slot(csp_Race *R, RaceG *g) {
  uint32_t s = R->nslots++;
  if (R->nslots > R->slotcap) {
    R->slotcap = R->slotcap ? R->slotcap * 2 : 64;
    R->slots = xrealloc(R->slots, R->slotcap * sizeof *R->slots);
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
  RaceObj **n = xrealloc(NULL, ncap * sizeof *n);
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
  o = xrealloc(NULL, sizeof *o);
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

static void acquire(csp_Race *R, RaceG *g, const void *p, unsigned sub) {
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
  acquire(S->race, rg_of(S, g), obj, sub);
}

void csp_race_rel(csp_Sched *S, const void *obj, unsigned sub) {
  RaceG *g = rg_of(S, NULL);
  vc_copy(obj_vc(S->race, obj, sub, 1), &g->vc);
  tick(g);
}

void csp_race_merge(csp_Sched *S, const void *obj, unsigned sub) {
  RaceG *g = rg_of(S, NULL);
  vc_join(obj_vc(S->race, obj, sub, 1), &g->vc);
  tick(g);
}

/* Semaphore operations run as under x/sync's s.mu: each is ordered after every earlier one. */
void csp_race_sync(csp_Sched *S, csp_G *g, const void *obj, unsigned sub) {
  RaceG *r = rg_of(S, g);
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
  RaceG *r = rg_of(S, g);
  acquire(S->race, r, rw, 0);
  acquire(S->race, r, rw, CSP_RACE_RW_R);
}

void csp_race_rwunlock(csp_Sched *S, const void *rw) {
  RaceG *g = rg_of(S, NULL);
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
  RaceG *p = rg_of(S, NULL), *c;
  if (g->race) {  /* a record reused before its end was seen */
    free(((RaceG *)g->race)->vc.c);
    free(g->race);
  }
  c = xrealloc(NULL, sizeof *c);
  memset(c, 0, sizeof *c);
  c->id = g->id;
  vc_copy(&c->vc, &p->vc);
  c->created = loc_here(S->race, L);
  g->race = c;
  tick(p);
}

void csp_race_gend(csp_Sched *S, csp_G *g) {
  RaceG *r = (RaceG *)g->race;
  csp_Race *R = S->race;
  if (r == NULL) return;
  if (!g->internal) {  /* csp.run (or main's goexit) returns after every goroutine ended */
    vc_join(&R->exitvc, &r->vc);
    if (S->ngor == 1 && S->runwait.head) vc_join(&rg_of(S, S->runwait.head->g)->vc, &R->exitvc);
  }
  free(r->vc.c);
  free(r);
  g->race = NULL;
}

/* An unbuffered exchange orders both ways (Go's racesync). A buffered channel whose receiver
** was parked: the value "goes through" slot head, as Go pretends, and head moves on (the ring is
** empty, so only the slot numbering sees it). */
void csp_race_handoff(csp_Sched *S, csp_Chan *c, csp_G *peer) {
  RaceG *me = rg_of(S, NULL), *p = rg_of(S, peer);
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
  relacq(S->race, rg_of(S, g), c, SLOT_SUB + idx % SLOT_MAX);
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

/* ---------------------------------------------------------------- locations */

static uint32_t str_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* Interns a location string; ids start at 1. */
static uint32_t loc_intern(csp_Race *R, const char *s) {
  uint32_t h = str_hash(s), i;
  if (R->nlocs + 1 >= R->lochmask / 2) {
    uint32_t ncap = R->lochmask ? (R->lochmask + 1) * 2 : 1024;
    uint32_t *nh = xrealloc(NULL, ncap * sizeof *nh);
    memset(nh, 0, ncap * sizeof *nh);
    for (uint32_t id = 1; id <= R->nlocs; id++) {
      uint32_t j = str_hash(R->locs[id]) & (ncap - 1);
      while (nh[j]) j = (j + 1) & (ncap - 1);
      nh[j] = id;
    }
    free(R->lochash);
    R->lochash = nh;
    R->lochmask = ncap - 1;
  }
  for (i = h & R->lochmask; R->lochash[i]; i = (i + 1) & R->lochmask)
    if (strcmp(R->locs[R->lochash[i]], s) == 0) return R->lochash[i];
  if (R->nlocs + 2 > R->loccap) {
    R->loccap = R->loccap ? R->loccap * 2 : 256;
    R->locs = xrealloc(R->locs, R->loccap * sizeof *R->locs);
  }
  R->locs[++R->nlocs] = strcpy(xrealloc(NULL, strlen(s) + 1), s);
  R->lochash[i] = R->nlocs;
  return R->nlocs;
}

static void frame_str(char *buf, size_t n, lua_Debug *ar) {
  if (*ar->what == 'm')
    snprintf(buf, n, "%s:%d in main chunk", ar->short_src, ar->currentline);
  else if (ar->name)
    snprintf(buf, n, "%s:%d in function '%s'", ar->short_src, ar->currentline, ar->name);
  else
    snprintf(buf, n, "%s:%d in function <%s:%d>", ar->short_src, ar->currentline, ar->short_src,
             ar->linedefined);
}

static uint32_t lockey_hash(const char *src, int line) {
  uint64_t h = ((uint64_t)(uintptr_t)src >> 3) * 0x9e3779b97f4a7c15ULL ^ (uint64_t)line * 0xff51afd7ed558ccdULL;
  return (uint32_t)(h ^ (h >> 32));
}

static void lockey_put(csp_Race *R, const char *src, int line, uint32_t srchash, uint32_t id) {
  uint32_t i;
  if (R->nlockeys + 1 >= R->lockmask / 2) {  /* grow (or start): rehash every key */
    uint32_t ncap = R->lockmask ? (R->lockmask + 1) * 2 : 256;
    RaceLocKey *nk = xrealloc(NULL, ncap * sizeof *nk);
    memset(nk, 0, ncap * sizeof *nk);
    for (uint32_t j = 0; R->lockmask && j <= R->lockmask; j++) {
      RaceLocKey *k = &R->lockeys[j];
      if (!k->id) continue;
      for (i = lockey_hash(k->src, k->line) & (ncap - 1); nk[i].id; i = (i + 1) & (ncap - 1)) {}
      nk[i] = *k;
    }
    free(R->lockeys);
    R->lockeys = nk;
    R->lockmask = ncap - 1;
  }
  for (i = lockey_hash(src, line) & R->lockmask; R->lockeys[i].id; i = (i + 1) & R->lockmask) {
    RaceLocKey *k = &R->lockeys[i];
    if (k->src == src && k->line == line) break;  /* a reused address: replace */
  }
  if (!R->lockeys[i].id) R->nlockeys++;
  R->lockeys[i].src = src;
  R->lockeys[i].line = line;
  R->lockeys[i].srchash = srchash;
  R->lockeys[i].id = id;
}

/* The first Lua frame of L's stack (C frames: the metamethod, csp.go, table.insert...). Called
** whenever a variable's epoch changes: the name ("n", the costly part) and the text are only
** made the first time a (source, line) is seen. */
static uint32_t loc_here(csp_Race *R, lua_State *L) {
  lua_Debug ar;
  char buf[512];
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    uint32_t sh, id;
    lua_getinfo(L, "Sl", &ar);
    if (*ar.what == 'C') continue;
    sh = str_hash(ar.short_src);
    if (R->lockeys) {
      for (uint32_t i = lockey_hash(ar.source, ar.currentline) & R->lockmask; R->lockeys[i].id;
           i = (i + 1) & R->lockmask) {
        RaceLocKey *k = &R->lockeys[i];
        if (k->src == ar.source && k->line == ar.currentline && k->srchash == sh) return k->id;
      }
    }
    lua_getinfo(L, "n", &ar);
    frame_str(buf, sizeof buf, &ar);
    id = loc_intern(R, buf);
    lockey_put(R, ar.source, ar.currentline, sh, id);
    return id;
  }
  return loc_intern(R, "?");
}

static void print_stack(lua_State *L) {
  lua_Debug ar;
  char buf[512];
  int n = 0;
  for (int level = 0; n < MAX_FRAMES && lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sln", &ar);
    if (*ar.what == 'C') continue;
    frame_str(buf, sizeof buf, &ar);
    fprintf(stderr, "  %s\n", buf);
    n++;
  }
  if (n == 0) fputs("  ?\n", stderr);
}

/* ---------------------------------------------------------------- reports */

static int is_ident(const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
      return 0;
  return 1;
}

/* The variable of the access being checked: key at 2, proxy at 1, name in upvalue 4. */
static void var_name(lua_State *L, char *buf, size_t n) {
  char key[200];
  const char *tname = lua_tostring(L, lua_upvalueindex(4));  /* NULL: the globals */
  int ident = 0;
  switch (lua_type(L, 2)) {
    case LUA_TSTRING:
      ident = is_ident(lua_tostring(L, 2));
      snprintf(key, sizeof key, ident ? "%s" : "\"%s\"", lua_tostring(L, 2));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, 2)) snprintf(key, sizeof key, "%lld", (long long)lua_tointeger(L, 2));
      else snprintf(key, sizeof key, "%.14g", (double)lua_tonumber(L, 2));
      break;
    case LUA_TBOOLEAN:
      snprintf(key, sizeof key, "%s", lua_toboolean(L, 2) ? "true" : "false");
      break;
    default:
      snprintf(key, sizeof key, "%s: %p", luaL_typename(L, 2), lua_topointer(L, 2));
  }
  if (tname == NULL) snprintf(buf, n, ident ? "%s" : "_G[%s]", key);
  else if (*tname) snprintf(buf, n, ident ? "%s.%s" : "%s[%s]", tname, key);
  else snprintf(buf, n, ident ? "field '%s' of table: %p" : "[%s] of table: %p", key, lua_topointer(L, 1));
}

static void print_who(const char *what, const char *var, lua_Integer gid) {
  if (gid == 1) fprintf(stderr, "%s at %s by main goroutine:\n", what, var);
  else fprintf(stderr, "%s at %s by goroutine %lld:\n", what, var, (long long)gid);
}

static void print_created(csp_Race *R, lua_Integer gid, uint32_t loc) {
  if (gid == 1) return;
  fprintf(stderr, "\nGoroutine %lld created at:\n  %s\n", (long long)gid,
          loc && loc <= R->nlocs ? R->locs[loc] : "?");
}

/* Once per variable and once per pair of locations (kinds included), as Go dedups. */
static void report(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v, int write, int pwrite,
                   uint32_t pslot, uint32_t ploc) {
  char var[300];
  uint32_t a, b;
  uint64_t pair;
  if (v->reported) return;
  a = loc_here(R, L) * 2 + (uint32_t)write;
  b = ploc * 2 + (uint32_t)pwrite;
  pair = a < b ? ((uint64_t)a << 32 | b) : ((uint64_t)b << 32 | a);
  for (uint32_t i = 0; i < R->npairs; i++)
    if (R->pairs[i] == pair) return;
  if (R->npairs == R->paircap) {
    R->paircap = R->paircap ? R->paircap * 2 : 16;
    R->pairs = xrealloc(R->pairs, R->paircap * sizeof *R->pairs);
  }
  R->pairs[R->npairs++] = pair;
  v->reported = 1;
  race_found++;
  var_name(L, var, sizeof var);
  fflush(stdout);
  fputs("==================\nWARNING: DATA RACE\n", stderr);
  print_who(write ? "Write" : "Read", var, g->id);
  print_stack(L);
  fputc('\n', stderr);
  print_who(pwrite ? "Previous write" : "Previous read", var, R->slots[pslot].gid);
  fprintf(stderr, "  %s\n", ploc && ploc <= R->nlocs ? R->locs[ploc] : "?");
  print_created(R, g->id, g->created);
  if (R->slots[pslot].gid != g->id) print_created(R, R->slots[pslot].gid, R->slots[pslot].created);
  fputs("==================\n", stderr);
  fflush(stderr);
}

/* ---------------------------------------------------------------- FastTrack checks */

static void add_read(RaceVar *v, uint32_t slot, uint32_t clock, uint32_t loc) {
  if (v->nreads == v->readcap) {
    v->readcap = v->readcap ? v->readcap * 2 : 4;
    v->reads = xrealloc(v->reads, v->readcap * sizeof *v->reads);
  }
  v->reads[v->nreads].slot = slot;
  v->reads[v->nreads].clock = clock;
  v->reads[v->nreads].loc = loc;
  v->nreads++;
}

static void on_read(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v) {
  uint32_t s, c, loc, m = 0;
  if (!g->slot) rg_slot(R, g);
  s = g->slot;
  c = g->vc.c[s];
  if (v->rslot == s && v->rclock == c) return;  /* same epoch: the common case */
  for (uint32_t i = 0; i < v->nreads; i++)
    if (v->reads[i].slot == s && v->reads[i].clock == c) return;
  if (v->wclock && v->wclock > vc_get(&g->vc, v->wslot))
    report(L, R, g, v, 0, 1, v->wslot, v->wloc);
  loc = loc_here(R, L);
  if (v->nreads == 0) {
    if (v->rclock == 0 || v->rclock <= vc_get(&g->vc, v->rslot)) {  /* exclusive */
      v->rslot = s;
      v->rclock = c;
      v->rloc = loc;
      return;
    }
    add_read(v, v->rslot, v->rclock, v->rloc);  /* concurrent readers: a read set */
    v->rslot = v->rclock = 0;
  }
  for (uint32_t i = 0; i < v->nreads; i++)  /* drop reads ordered before this one */
    if (v->reads[i].slot != s && v->reads[i].clock > vc_get(&g->vc, v->reads[i].slot))
      v->reads[m++] = v->reads[i];
  v->nreads = m;
  add_read(v, s, c, loc);
}

static void on_write(lua_State *L, csp_Race *R, RaceG *g, RaceVar *v) {
  uint32_t s, c;
  if (!g->slot) rg_slot(R, g);
  s = g->slot;
  c = g->vc.c[s];
  if (v->wslot == s && v->wclock == c) return;
  if (v->wclock && v->wclock > vc_get(&g->vc, v->wslot)) {
    report(L, R, g, v, 1, 1, v->wslot, v->wloc);
  } else if (v->rclock && v->rclock > vc_get(&g->vc, v->rslot)) {
    report(L, R, g, v, 1, 0, v->rslot, v->rloc);
  } else {
    for (uint32_t i = 0; i < v->nreads; i++)
      if (v->reads[i].clock > vc_get(&g->vc, v->reads[i].slot)) {
        report(L, R, g, v, 1, 0, v->reads[i].slot, v->reads[i].loc);
        break;
      }
  }
  v->wslot = s;
  v->wclock = c;
  v->wloc = loc_here(R, L);
  v->rslot = v->rclock = 0;
  v->nreads = 0;
}

/* ---------------------------------------------------------------- proxies */

static int var_gc(lua_State *L) {
  RaceVar *v = (RaceVar *)lua_touserdata(L, 1);
  free(v->reads);
  v->reads = NULL;
  return 0;
}

/* The shadow record of key 2 (upvalue 3: key -> RaceVar userdata). */
static RaceVar *var_get(lua_State *L) {
  RaceVar *v;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(3)) == LUA_TNIL) {
    lua_pop(L, 1);
    v = (RaceVar *)lua_newuserdatauv(L, sizeof *v, 0);
    memset(v, 0, sizeof *v);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &var_mt);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, lua_upvalueindex(3));
  }
  v = (RaceVar *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Accesses are checked unless no goroutine runs them (a finalizer inside the loop) or the key
** cannot be one (nil, NaN: the table operation raises or misses as usual). */
static int tracked(lua_State *L, csp_Sched *S) {
  if (S->race == NULL || (S->cur == NULL && S->depth > 0)) return 0;
  if (lua_isnil(L, 2)) return 0;
  if (lua_type(L, 2) == LUA_TNUMBER && lua_tonumber(L, 2) != lua_tonumber(L, 2)) return 0;
  return 1;
}

/* Upvalues of the proxy metamethods: 1 sched, 2 hidden contents, 3 shadow, 4 name (nil: _G). */
static int race_index(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 2);
  if (tracked(L, S)) on_read(L, S->race, rg_of(S, NULL), var_get(L));
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(2));
  return 1;
}

static int race_newindex(lua_State *L) {
  csp_Sched *S = (csp_Sched *)lua_touserdata(L, lua_upvalueindex(1));
  lua_settop(L, 3);
  if (tracked(L, S)) on_write(L, S->race, rg_of(S, NULL), var_get(L));
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, lua_upvalueindex(2));
  return 0;
}

static int race_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(2)));
  return 1;
}

/* pairs over a proxy: its raw part first (the globals that predate the detector), then the rest. */
static int pairs_next(lua_State *L) {
  lua_settop(L, 2);
  if (!lua_toboolean(L, lua_upvalueindex(3))) {
    lua_pushvalue(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushboolean(L, 1);
    lua_replace(L, lua_upvalueindex(3));
    lua_pushnil(L);
  } else {
    lua_pushvalue(L, 2);
  }
  if (lua_next(L, lua_upvalueindex(2))) return 2;
  lua_pushnil(L);
  return 1;
}

static int race_pairs(lua_State *L) {
  lua_settop(L, 1);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, pairs_next, 3);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* Proxies the table at idx in place: its metatable reaches the contents moved to a hidden table
** (moved: all of them; kept raw, unobserved: none, except for _G, whose existing entries, the
** standard library and csp itself, stay raw so reading them costs nothing). name: see var_name. */
static void proxy(lua_State *L, int idx, csp_Sched *S, const char *name, int move) {
  int hidden, shadow;
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  hidden = lua_gettop(L);
  lua_newtable(L);
  shadow = lua_gettop(L);
  if (move) {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, hidden);
    }
    lua_pushnil(L);  /* clearing existing fields during a traversal is allowed */
    while (lua_next(L, idx)) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, idx);
    }
  }
  lua_createtable(L, 0, 6);
  {
    static const struct { const char *name; lua_CFunction f; } mm[] = {
      {"__index", race_index}, {"__newindex", race_newindex}, {"__len", race_len},
      {"__pairs", race_pairs}};
    for (int i = 0; i < 4; i++) {
      lua_rawgetp(L, LUA_REGISTRYINDEX, S);
      lua_pushvalue(L, hidden);
      lua_pushvalue(L, shadow);
      if (name) lua_pushstring(L, name);
      else lua_pushnil(L);
      if (mm[i].f == race_pairs) {  /* pairs: upvalues raw table, hidden */
        lua_pop(L, 4);
        lua_pushvalue(L, idx);
        lua_pushvalue(L, hidden);
        lua_pushcclosure(L, race_pairs, 2);
      } else {
        lua_pushcclosure(L, mm[i].f, 4);
      }
      lua_setfield(L, -2, mm[i].name);
    }
  }
  if (name) {  /* a watched table keeps its proxy; _G does not (test harnesses restore it) */
    lua_pushliteral(L, "csp.race.watched");
    lua_setfield(L, -2, "__metatable");
  } else {
    lua_pushliteral(L, "csp.race.globals");
    lua_setfield(L, -2, "__name");
  }
  lua_setmetatable(L, idx);
  lua_pop(L, 2);
}

/* ---------------------------------------------------------------- state, exit, Lua API */

static void race_exit(int status, void *arg) {
  (void)arg;
  if (race_found == 0) return;
  fflush(stdout);
  fprintf(stderr, "Found %d data race(s)\n", race_found);
  fflush(NULL);
  if (status == 0 && !race_report_only) _exit(66);  /* Go's exitcode: only a clean exit changes */
}

static int race_gc(lua_State *L) {
  csp_Race *R = *(csp_Race **)lua_touserdata(L, 1);
  csp_Sched *S;
  if (R == NULL) return 0;
  S = R->S;
  for (csp_G *g = S->all.anext; g != &S->all; g = g->anext) {
    if (g->race) { free(((RaceG *)g->race)->vc.c); free(g->race); g->race = NULL; }
  }
  if (S->maing.race) { free(((RaceG *)S->maing.race)->vc.c); free(S->maing.race); S->maing.race = NULL; }
  for (uint32_t i = 0; R->objmask && i <= R->objmask; i++) {
    RaceObj *o = R->objs[i], *next;
    for (; o; o = next) { next = o->next; free(o->vc.c); free(o); }
  }
  for (uint32_t i = 1; i <= R->nlocs; i++) free(R->locs[i]);
  free(R->lockeys);
  free(R->objs); free(R->locs); free(R->lochash); free(R->pairs); free(R->slots);
  free(R->exitvc.c); free(R->tmp.c);
  free(R);
  S->race = NULL;
  *(csp_Race **)lua_touserdata(L, 1) = NULL;
  return 0;
}

static void race_enable(lua_State *L, csp_Sched *S, const char *mode) {
  csp_Race *R, **box;
  if (S->race) return;
  race_report_only = mode && strcmp(mode, "report") == 0;
  R = xrealloc(NULL, sizeof *R);
  memset(R, 0, sizeof *R);
  R->S = S;
  R->nslots = 1;
  box = (csp_Race **)lua_newuserdatauv(L, sizeof *box, 0);
  *box = R;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, race_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &race_key);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, var_gc);
  lua_setfield(L, -2, "__gc");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &var_mt);
  S->race = R;
  rg_of(S, &S->maing);
  if (!race_exit_registered) {
    Dl_info info;
    race_exit_registered = 1;
    /* lua_close unloads this library before exit handlers run: pin it (a handle kept for the
    ** process's life, never closed), so race_exit stays mapped. */
    if (dladdr((void *)race_exit, &info) && info.dli_fname)
      race_self = dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE);
    on_exit(race_exit, NULL);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  if (lua_getmetatable(L, -1)) {  /* a strict-mode _G: leave it alone, say so */
    if (lua_getfield(L, -1, "__name") != LUA_TSTRING || strcmp(lua_tostring(L, -1), "csp.race.globals"))
      fputs("csp race detector: _G has a metatable; globals are not watched\n", stderr);
    lua_pop(L, 2);
  } else {
    proxy(L, -1, S, NULL, 0);
  }
  lua_pop(L, 1);
}

static int race_enable_l(lua_State *L) {
  race_enable(L, csp_sched_get(L), luaL_optstring(L, 1, "1"));
  return 0;
}

static int race_enabled_l(lua_State *L) {
  lua_pushboolean(L, csp_sched_get(L)->race != NULL);
  return 1;
}

static int race_watch_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TSTRING);
  lua_settop(L, 2);
  if (S->race == NULL) {
    lua_settop(L, 1);
    return 1;
  }
  if (lua_getmetatable(L, 1)) {
    if (lua_getfield(L, -1, "__metatable") == LUA_TSTRING &&
        strcmp(lua_tostring(L, -1), "csp.race.watched") == 0) {
      lua_settop(L, 1);
      return 1;
    }
    return luaL_argerror(L, 1, "a table with a metatable cannot be watched");
  }
  proxy(L, 1, S, lua_isnil(L, 2) ? "" : lua_tostring(L, 2), 1);
  lua_settop(L, 1);
  return 1;
}

/* race.acquire(x) / race.release(x): Go's runtime.RaceAcquire/RaceRelease on any Lua object. */
static const void *user_key(lua_State *L) {
  const void *p = lua_topointer(L, 1);
  luaL_argcheck(L, p != NULL, 1, "table, function, thread or userdata expected");
  return p;
}

static int race_acquire_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const void *p = user_key(L);
  if (S->race) csp_race_acq(S, NULL, p, USER_SUB);
  return 0;
}

static int race_release_l(lua_State *L) {
  csp_Sched *S = csp_sched_get(L);
  const void *p = user_key(L);
  if (S->race) csp_race_rel(S, p, USER_SUB);
  return 0;
}

static int race_errors_l(lua_State *L) {
  lua_pushinteger(L, race_found);
  return 1;
}

/* Stack: [module, sched]. CSP_RACE: unset, empty or 0 = off; report = report only; else on. */
void csp_race_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"_race_enable", race_enable_l}, {"_race_enabled", race_enabled_l},
    {"_race_watch", race_watch_l}, {"_race_acquire", race_acquire_l},
    {"_race_release", race_release_l}, {"_race_errors", race_errors_l}, {NULL, NULL}};
  const char *env = getenv("CSP_RACE");
  csp_setfuncs(L, funcs);
  if (env && *env && strcmp(env, "0") != 0) race_enable(L, (csp_Sched *)lua_touserdata(L, -1), env);
}
