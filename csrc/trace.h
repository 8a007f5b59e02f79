/* trace.h: the execution trace's records and output formats, shared by trace.c (recording, the writer thread) and tracejson.c, tracepb.c (the two file formats). */
#ifndef CSP_TRACE_H
#define CSP_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

enum { CSP_EV_SLICE, CSP_EV_BLOCK, CSP_EV_FLOW, CSP_EV_NAME, CSP_EV_WAKE, CSP_EV_GC };

/* One event as the scheduler records it: no formatting on the scheduler's thread. The strings
** are literals or names interned by trace.c, alive until the writer has finished. A slice carries
** the wake that started it and the reason it stopped: one record for what a switch shows. A wake
** (CSP_EV_FLOW, no time: the clock is read twice a switch, not three times) leaves the slice of
** its source goroutine when that slice ends; the first wake of a slice is not a record but the
** slice's out (64 bytes a record, one record a switch in a ping-pong). */
typedef struct csp_TraceEv {
  uint64_t ts;          /* ns since the trace started; a slice's start (not read for CSP_EV_FLOW) */
  uint64_t dur;         /* CSP_EV_SLICE: its length */
  uint64_t flow;        /* CSP_EV_FLOW: its id; CSP_EV_SLICE: the flow that woke it (0: none) */
  uint64_t out;         /* CSP_EV_SLICE: the flow its first wake continues (0: none) */
  const char *s;        /* the slice's, instant's, flow's or track's name */
  const char *why;      /* CSP_EV_SLICE: why it stopped (NULL: it had not, the trace ended) */
  const char *fname;    /* CSP_EV_SLICE: the name of the flow that woke it */
  uint32_t tid;         /* the goroutine's id (1: main; 0: the GC track); a flow's source */
  uint32_t type;
} csp_TraceEv;

/* Flow ids: a slice's first wake continues the flow that started the slice (or starts one), so
** a chain of wakes (ping-pong) is one id stepping from slice to slice, written in JSON as fields
** of the slices themselves (flow events v2: bind_id, flow_in, flow_out); its other wakes are side
** flows, ids with this bit, written as flow events of their own (v1: "s", "f"). In protobuf
** every id is the same: a slice ends the flow that started it and starts the ones it made. */
#define CSP_TRACE_SIDE (1ull << 62)

/* The writer thread's output buffer; st is the format's own state. */
typedef struct csp_TraceOut {
  int fd, err;
  size_t n;
  void *st;
  unsigned char b[1 << 18];  /* 256 KiB a write(2) */
} csp_TraceOut;

/* Every record fits in this much room (names are cut to 255 bytes when interned); a packet that
** does not (a slice that woke thousands) is written in pieces, each checked on its own. */
#define CSP_TRACE_ROOM 1024

typedef struct csp_TraceFormat {
  /* The name as the format writes it (valid UTF-8; JSON-escaped), into out (size bytes), when
  ** interned. */
  const char *(*name)(const char *s, char *out, size_t size);
  int (*open)(csp_TraceOut *o);     /* 0: no memory */
  /* Any record but CSP_EV_FLOW; a slice comes with the wakes it made, flows[0..nflows). */
  void (*event)(csp_TraceOut *o, const csp_TraceEv *e, const csp_TraceEv *flows, size_t nflows);
  void (*close)(csp_TraceOut *o);   /* the file's end; frees st */
} csp_TraceFormat;

/* s as a name the formats write (tracejson.c): well-formed UTF-8 as it is, any other byte as
** its code point; json: a JSON string's contents. Cut to fit out (size bytes). */
const char *csp_trace_name(const char *s, char *out, size_t size, int json);

extern const csp_TraceFormat csp_trace_json, csp_trace_pb;

void csp_trace_flush(csp_TraceOut *o);

/* Room for k more bytes. */
static inline void csp_trace_need(csp_TraceOut *o, size_t k) {
  if (o->n + k > sizeof o->b) csp_trace_flush(o);
}

/* The clock uv_hrtime reads, without libuv's call in between. */
static inline uint64_t csp_trace_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* What the scheduler's thread stamps records with, twice a switch: on x86 the time-stamp counter
** (12 ns a read on this project's kvm guest, clock_gettime 29), elsewhere csp_trace_now_ns().
** Each buffer carries both clocks read at its submit; the writer maps ticks to ns linearly between
** a buffer's submit and the previous one's, so the counter's rate needs no measuring and cannot
** drift (an invariant counter is assumed, as the kernel's own kvm-clock and tsc clocksources do). */
#if defined(__x86_64__) || defined(__i386__)
static inline uint64_t csp_trace_ticks(void) { return __rdtsc(); }
static inline void csp_trace_calib(uint64_t t0, uint64_t t0ns, uint64_t *t, uint64_t *n) {
  *t = csp_trace_ticks() - t0;
  *n = csp_trace_now_ns() - t0ns;
}
#else
static inline uint64_t csp_trace_ticks(void) { return csp_trace_now_ns(); }
static inline void csp_trace_calib(uint64_t t0, uint64_t t0ns, uint64_t *t, uint64_t *n) {
  (void)t0ns;
  *n = *t = csp_trace_ticks() - t0;
}
#endif

/* The writer's map from ticks to ns: n = pn + (t - pt) * scale, (pt, pn) the last calibration. */
typedef struct csp_Cal { uint64_t pt, pn; double scale; } csp_Cal;
#define CSP_CAL_MIN (1u << 20)

/* Takes a buffer's calibration (calt, caln): the scale over the time since the last one, or since the start
** when that is too short (CSP_CAL_MIN ticks) to measure (about 0.4 ms of a GHz counter). */
static inline void csp_cal_next(csp_Cal *c, uint64_t calt, uint64_t caln) {
  if (calt >= c->pt + CSP_CAL_MIN) c->scale = (double)(caln - c->pn) / (double)(calt - c->pt);
  else if (calt > 0) c->scale = (double)caln / (double)calt;
}

static inline uint64_t csp_cal_ns(const csp_Cal *c, uint64_t t) {
  double d = (double)(int64_t)(t - c->pt) * c->scale;
  return d <= -(double)c->pn ? 0 : c->pn + (uint64_t)(int64_t)d;
}

/* e with its times in ns (a record's ticks). */
static inline csp_TraceEv csp_cal_ev(const csp_Cal *c, const csp_TraceEv *e) {
  csp_TraceEv r = *e;
  if (e->type == CSP_EV_FLOW) return r;
  r.ts = csp_cal_ns(c, e->ts);
  if (e->type == CSP_EV_SLICE) {
    uint64_t end = csp_cal_ns(c, e->ts + e->dur);
    r.dur = end > r.ts ? end - r.ts : 0;
  }
  return r;
}

#endif
