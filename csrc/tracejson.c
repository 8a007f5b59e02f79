/* tracejson.c: the execution trace as Chrome trace-event JSON (chrome://tracing, Perfetto's JSON importer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trace.h"

/* Hand-rolled appends into room the writer reserved (CSP_TRACE_ROOM per record): printf would
** cost more than the scheduler spends recording. */
static const char dig2[] =
  "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
  "8081828384858687888990919293949596979899";

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static int ndigits(uint64_t v) {
  int k = 1;
  for (; v >= 10000; v /= 10000) k += 4;
  return k + (v >= 10) + (v >= 100) + (v >= 1000);
}

static unsigned char *put_u64(unsigned char *p, uint64_t v) {
  unsigned char *e, *q;
  if (v < 10) {  /* goroutine ids, mostly */
    *p = (unsigned char)('0' + v);
    return p + 1;
  }
  e = q = p + ndigits(v);
  for (; v >= 100; v /= 100) {  /* two digits a step, from the end */
    q -= 2;
    q[0] = (unsigned char)dig2[v % 100 * 2];
    q[1] = (unsigned char)dig2[v % 100 * 2 + 1];
  }
  if (v >= 10) {
    q[-2] = (unsigned char)dig2[v * 2];
    q[-1] = (unsigned char)dig2[v * 2 + 1];
  } else {
    q[-1] = (unsigned char)('0' + v);
  }
  return e;
}

static unsigned char *put_ts(unsigned char *p, uint64_t ns) {  /* microseconds, 3 decimals */
  unsigned r = (unsigned)(ns % 1000);
  p = put_u64(p, ns / 1000);
  *p++ = '.';
  *p++ = (unsigned char)('0' + r / 100);
  memcpy(p, dig2 + r % 100 * 2, 2);
  return p + 2;
}

static unsigned char *put_s(unsigned char *p, const char *s) {
  size_t k = strlen(s);
  memcpy(p, s, k);
  return p + k;
}

/* The writer's memory of what it formatted last: the microseconds of a timestamp (successive
** events are mostly in the same one) and the name fields of recent names, by address. Copied
** whole, a fixed size (the room reserved holds the excess), then the end is moved back. */
#define FRAG 80
typedef struct Frag { const char *key; size_t n; unsigned char s[FRAG]; } Frag;
typedef struct Num { uint64_t v; size_t n; unsigned char d[24]; } Num;
typedef struct Json {
  Num us;      /* the last timestamp's microseconds */
  Frag names[64];
} Json;

/* v from the digits remembered in c: the same, one more, or new. */
static unsigned char *put_num(Num *c, unsigned char *p, uint64_t v) {
  if (v != c->v || c->n == 0) {
    if (v == c->v + 1 && c->n > 0 && c->d[c->n - 1] != '9') {
      c->d[c->n - 1]++;
    } else {
      c->n = (size_t)(put_u64(c->d, v) - c->d);
    }
    c->v = v;
  }
  memcpy(p, c->d, 16);  /* whole: up to 16 digits, the room reserved holds the excess */
  if (c->n > 16) memcpy(p + 16, c->d + 16, c->n - 16);
  return p + c->n;
}

static unsigned char *put_tsc(Json *J, unsigned char *p, uint64_t ns) {
  uint64_t us = ns / 1000;
  unsigned r = (unsigned)(ns - us * 1000);
  p = put_num(&J->us, p, us);
  *p++ = '.';
  *p++ = (unsigned char)('0' + r / 100);
  memcpy(p, dig2 + r % 100 * 2, 2);
  return p + 2;
}

/* The common head of an event on track tid, up to its name: ,"name":" follows. */
static unsigned char *head(unsigned char *p, const char *ph_cat, uint32_t tid, uint64_t ts) {
  p = PUT(p, ",\n{\"ph\":\"");
  p = put_s(p, ph_cat);
  p = PUT(p, "\",\"pid\":1,\"tid\":");
  p = put_u64(p, tid);
  p = PUT(p, ",\"ts\":");
  return put_ts(p, ts);
}

/* "tid":T,"ts":TS from digits formatted once for the slice's events. */
static unsigned char *tsfield(unsigned char *p, const unsigned char *tid, size_t ntid,
                              const unsigned char *ts, size_t nts) {
  memcpy(p, tid, 16);  /* whole: tid holds 32 bytes, ts 48 (see slice) */
  p = PUT(p + ntid, ",\"ts\":");
  memcpy(p, ts, 32);
  return p + nts;
}

static unsigned char *namef(unsigned char *p, const char *name) {
  p = PUT(p, ",\"name\":\"");
  p = put_s(p, name);
  *p++ = '"';
  return p;
}

/* namef(), from the fragments remembered. */
static unsigned char *namec(Json *J, unsigned char *p, const char *name) {
  Frag *f = &J->names[((uintptr_t)name >> 3) & 63];
  if (f->key != name) {
    unsigned char t[CSP_TRACE_ROOM / 2];
    size_t n = (size_t)(namef(t, name) - t);
    if (n > FRAG) return namef(p, name);
    memcpy(f->s, t, n);
    f->n = n;
    f->key = name;
  }
  for (size_t i = 0; i < f->n; i += 16) memcpy(p + i, f->s + i, 16);
  return p + f->n;
}

static unsigned char *meta(unsigned char *p, uint32_t tid, const char *name) {
  p = PUT(p, ",\n{\"ph\":\"M\",\"pid\":1,\"tid\":");
  p = put_u64(p, tid);
  p = PUT(p, ",\"name\":\"thread_name\",\"args\":{\"name\":\"");
  if (tid == 0) {
    p = PUT(p, "GC");
  } else {
    *p++ = 'G';
    p = put_u64(p, tid);
    *p++ = ' ';
    p = put_s(p, name);
  }
  p = PUT(p, "\"}},\n{\"ph\":\"M\",\"pid\":1,\"tid\":");
  p = put_u64(p, tid);
  p = PUT(p, ",\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":");
  p = put_u64(p, tid);
  return PUT(p, "}}");
}

/* A flow's start or finish (ph "s", or "f" with its binding point): an event of its own, the id
** without CSP_TRACE_SIDE; name NULL: none (a chain's hop). */
static unsigned char *side(Json *J, unsigned char *p, const char *ph, const unsigned char *tid,
                           size_t ntid, const unsigned char *ts, size_t nts, uint64_t id,
                           const char *name) {
  p = PUT(p, ",\n{\"ph\":\"");
  p = put_s(p, ph);
  p = PUT(p, "\",\"cat\":\"flow\",\"pid\":1,\"tid\":");
  p = tsfield(p, tid, ntid, ts, nts);
  p = put_u64(PUT(p, ",\"id\":"), id & ~CSP_TRACE_SIDE);
  if (name != NULL) p = namec(J, p, name);
  *p++ = '}';
  return p;
}

/* A slice: the flow that started it ("f" binding its start), the slice, the flows it made ("s"
** at its end: the chain of wakes it continues first, then its side flows) and the instant saying
** why it stopped, in that order: Perfetto's importer takes events of one time slices first, the
** others in file order, binding a flow to the slice on top of its track. A chain's hops share
** its id, an "s" then an "f" each (a flow matches by id, category and name, and its id may
** begin again once it ended), without a name: the woken's wait reason is not known when the
** waker's slice is written. Chrome's flow events v1, which every reader of the format knows
** (v2's bind_id fields on the slices cost fewer bytes, but Perfetto alone reads them). */
static void slice(csp_TraceOut *o, const csp_TraceEv *e, const csp_TraceEv *flows, size_t nflows) {
  Json *J = o->st;
  unsigned char tid[32], ts[48], end[48], *p;
  size_t ntid = (size_t)(put_u64(tid, e->tid) - tid), nts, nend;
  uint64_t in = e->flow & CSP_TRACE_SIDE ? 0 : e->flow, out = e->out;
  nts = (size_t)(put_tsc(J, ts, e->ts) - ts);
  nend = (size_t)(put_tsc(J, end, e->ts + e->dur) - end);
  p = o->b + o->n;
  if (e->flow & CSP_TRACE_SIDE) p = side(J, p, "f\",\"bp\":\"e", tid, ntid, ts, nts, e->flow, e->fname);
  else if (in) p = side(J, p, "f\",\"bp\":\"e", tid, ntid, ts, nts, in, NULL);
  p = PUT(p, ",\n{\"ph\":\"X\",\"pid\":1,\"tid\":");
  p = tsfield(p, tid, ntid, ts, nts);
  p = PUT(p, ",\"dur\":");
  p = namec(J, put_ts(p, e->dur), e->s);
  *p++ = '}';
  if (out) {
    o->n = (size_t)(p - o->b);
    csp_trace_need(o, CSP_TRACE_ROOM);
    p = side(J, o->b + o->n, "s", tid, ntid, end, nend, out, NULL);
  }
  for (size_t i = 0; i < nflows; i++) {  /* side flows only: see csp_trace_ready */
    o->n = (size_t)(p - o->b);
    csp_trace_need(o, CSP_TRACE_ROOM);
    p = side(J, o->b + o->n, "s", tid, ntid, end, nend, flows[i].flow, flows[i].s);
  }
  if (e->why) {
    p = PUT(p, ",\n{\"ph\":\"i\",\"pid\":1,\"tid\":");
    p = tsfield(p, tid, ntid, end, nend);
    p = namec(J, p, e->why);
    *p++ = '}';
  }
  o->n = (size_t)(p - o->b);
}

/* An instant on track tid, thread-scoped (the format's default scope). */
static unsigned char *instant(unsigned char *p, const char *ph_cat, uint32_t tid, uint64_t ts,
                              const char *name) {
  p = head(p, ph_cat, tid, ts);
  p = namef(p, name);
  *p++ = '}';
  return p;
}

static void json_event(csp_TraceOut *o, const csp_TraceEv *e, const csp_TraceEv *flows, size_t nflows) {
  unsigned char *p;
  csp_trace_need(o, CSP_TRACE_ROOM);
  p = o->b + o->n;
  switch (e->type) {
    case CSP_EV_SLICE:
      slice(o, e, flows, nflows);
      return;
    case CSP_EV_BLOCK:
      p = instant(p, "i", e->tid, e->ts, e->s);
      break;
    case CSP_EV_WAKE:
      p = instant(p, "i\",\"cat\":\"wake", e->tid, e->ts, e->s);
      break;
    case CSP_EV_NAME:
      p = meta(p, e->tid, e->s);
      break;
    case CSP_EV_GC:
      p = head(p, "i\",\"cat\":\"gc", 0, e->ts);
      p = PUT(p, ",\"s\":\"g\",\"name\":\"GC cycle\"}");
      break;
  }
  o->n = (size_t)(p - o->b);
}

static int json_open(csp_TraceOut *o) {
  unsigned char *p = o->b + o->n;
  if ((o->st = calloc(1, sizeof(Json))) == NULL) return 0;
  p = PUT(p, "[\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"csp\"}}");
  o->n = (size_t)(p - o->b);
  return 1;
}

static void json_close(csp_TraceOut *o) {
  csp_trace_need(o, 4);
  memcpy(o->b + o->n, "\n]\n", 3);
  o->n += 3;
  free(o->st);
  o->st = NULL;
}

/* The length of the well-formed UTF-8 sequence (RFC 3629) a byte >= 0x80 starts at s, or 0.
** A NUL ends the test, so it never reads past the string. */
static int utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  int n = c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
  for (int i = 1; i < n; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) ||  /* overlong; surrogates */
      (c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F))    /* overlong; past U+10FFFF */
    return 0;
  return n;
}

/* s as a name the formats write, cut to fit out (whole sequences and escapes only): well-formed
** UTF-8 as it is, a byte of no well-formed sequence (a Latin-1 file name) as the code point of
** that value; json: as a JSON string's contents (that code point as \u00XX, '"', '\\' and
** control bytes escaped), else that code point in UTF-8 (a protobuf string is UTF-8). */
const char *csp_trace_name(const char *s, char *out, size_t size, int json) {
  size_t n = 0;
  while (*s) {
    unsigned char c = (unsigned char)*s;
    int k = c >= 0x80 ? utf8_len((const unsigned char *)s) : 1;
    if (n + 7 > size) break;
    if (json && (c == '"' || c == '\\')) {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (json && (c < 0x20 || k == 0)) {
      n += (size_t)snprintf(out + n, 7, "\\u%04x", c);
    } else if (k == 0) {
      out[n++] = (char)(0xC0 | (c >> 6));
      out[n++] = (char)(0x80 | (c & 0x3F));
    } else {
      memcpy(out + n, s, (size_t)k);
      n += (size_t)k;
    }
    s += k ? k : 1;
  }
  out[n] = '\0';
  return out;
}

static const char *json_name(const char *s, char *out, size_t size) {
  return csp_trace_name(s, out, size, 1);
}

const csp_TraceFormat csp_trace_json = {json_name, json_open, json_event, json_close};
