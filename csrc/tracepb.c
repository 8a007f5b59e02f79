/* tracepb.c: the execution trace as a Perfetto protobuf trace (TracePacket/TrackEvent, names interned, varints). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "trace.h"

/* Field tags (field number << 3 | wire type) of perfetto.protos messages, from Perfetto's
** protos/perfetto/trace: Trace, TracePacket, TrackEvent, TrackDescriptor, InternedData. */
#define TRACE_PACKET     0x0A        /* Trace.packet = 1 */
#define PKT_TIMESTAMP    0x40        /* TracePacket.timestamp = 8 (ns, trace clock) */
#define PKT_SEQID        0x50        /* .trusted_packet_sequence_id = 10 */
#define PKT_TRACK_EVENT  0x5A        /* .track_event = 11 */
#define PKT_INTERNED     0x62        /* .interned_data = 12 */
#define PKT_SEQFLAGS     0x68        /* .sequence_flags = 13 */
#define PKT_TRACK_DESC   "\xE2\x03"  /* .track_descriptor = 60 */
#define TE_CATEGORY_IID  0x18        /* TrackEvent.category_iids = 3 */
#define TE_TYPE          0x48        /* .type = 9: 1 slice begin, 2 slice end, 3 instant */
#define TE_NAME_IID      0x50        /* .name_iid = 10 */
#define TE_TRACK_UUID    0x58        /* .track_uuid = 11 */
#define TE_FLOW_IDS      "\xF9\x02"  /* .flow_ids = 47, fixed64 */
#define TE_TERM_FLOW_IDS "\x81\x03"  /* .terminating_flow_ids = 48, fixed64 */
#define ID_CATEGORIES    0x0A        /* InternedData.event_categories = 1 */
#define ID_NAMES         0x12        /* .event_names = 2 */
#define IID_IID          0x08        /* EventCategory/EventName.iid = 1 */
#define IID_NAME         0x12        /* .name = 2 */
#define TD_UUID          0x08        /* TrackDescriptor.uuid = 1 */
#define TD_NAME          0x12        /* .name = 2 */
#define TD_PROCESS       0x1A        /* .process = 3: ProcessDescriptor pid = 1, process_name = 6 */
#define TD_THREAD        0x22        /* .thread = 4: ThreadDescriptor pid = 1, tid = 2, thread_name = 5 */
#define TD_PARENT        0x28        /* .parent_uuid = 5 */

enum { SLICE_BEGIN = 1, SLICE_END = 2, INSTANT = 3 };
enum { CAT_RUN = 1, CAT_BLOCK, CAT_WAKE, CAT_GC };  /* interned in the first packet */
#define SEQ 1                        /* the one packet sequence; interned ids are scoped by it */
#define PROC_UUID (1ull << 40)       /* the process track; goroutine t's track is t + 1 */

typedef struct Pb {
  const char **keys; uint32_t *iids; size_t cap, n;  /* names interned, by address */
} Pb;

static unsigned char *varint(unsigned char *p, uint64_t v) {
  while (v >= 0x80) {
    *p++ = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  *p++ = (unsigned char)v;
  return p;
}

static size_t vlen(uint64_t v) {  /* a varint's bytes: 7 bits each */
  return (size_t)(70 - __builtin_clzll(v | 1)) / 7;
}

static unsigned char *fixed64(unsigned char *p, uint64_t v) {  /* little-endian */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  memcpy(p, &v, 8);
#else
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
#endif
  return p + 8;
}

static unsigned char *lenfield(unsigned char *p, unsigned tag, const void *s, size_t k) {
  *p++ = (unsigned char)tag;
  p = varint(p, k);
  memcpy(p, s, k);
  return p + k;
}

/* Writes a packet holding the given TracePacket fields. */
static void packet(csp_TraceOut *o, const unsigned char *body, size_t k) {
  unsigned char *p;
  csp_trace_need(o, k + 8);
  p = o->b + o->n;
  p = lenfield(p, TRACE_PACKET, body, k);
  o->n = (size_t)(p - o->b);
}

/* The head of a TrackEvent packet whose event fields take k bytes; they follow. */
static unsigned char *te_head(unsigned char *p, uint64_t ts, size_t k) {
  *p++ = TRACE_PACKET;
  p = varint(p, 1 + vlen(ts) + 2 + 1 + vlen(k) + k);
  *p++ = PKT_TIMESTAMP;
  p = varint(p, ts);
  *p++ = PKT_SEQID;
  *p++ = SEQ;
  *p++ = PKT_TRACK_EVENT;
  return varint(p, k);
}

/* A TrackEvent packet, written in place: an event of the type on goroutine tid's track, with
** category cat and interned name n when not 0, and flow f under tag ftag when f is not 0. Its
** lengths (under 128: one byte each) are filled in once its fields are written. */
static void event(csp_TraceOut *o, uint64_t ts, int type, uint32_t tid, int cat, uint32_t n,
                  const char *ftag, uint64_t f) {
  unsigned char *p, *pk, *te;
  csp_trace_need(o, 64);
  p = o->b + o->n;
  *p = TRACE_PACKET;
  pk = p + 2;
  pk[0] = PKT_TIMESTAMP;
  p = varint(pk + 1, ts);
  p[0] = PKT_SEQID;
  p[1] = SEQ;
  p[2] = PKT_TRACK_EVENT;
  te = p + 4;
  te[0] = TE_TYPE;
  te[1] = (unsigned char)type;
  te[2] = TE_TRACK_UUID;
  p = varint(te + 3, (uint64_t)tid + 1);
  if (cat) {
    p[0] = TE_CATEGORY_IID;
    p[1] = (unsigned char)cat;
    p += 2;
  }
  if (n) {
    *p = TE_NAME_IID;
    p = varint(p + 1, n);
  }
  if (f) {
    memcpy(p, ftag, 2);
    p = fixed64(p + 2, f);
  }
  te[-1] = (unsigned char)(p - te);
  pk[-1] = (unsigned char)(p - pk);
  o->n = (size_t)(p - o->b);
}

/* ---------------------------------------------------------------- interned names */

static size_t slot(const Pb *pb, const char *s) {
  uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL;
  size_t i = (size_t)(h >> 32) & (pb->cap - 1);
  while (pb->keys[i] && pb->keys[i] != s) i = (i + 1) & (pb->cap - 1);
  return i;
}

static int grow(Pb *pb) {
  Pb nb = *pb;
  nb.cap = pb->cap ? pb->cap * 2 : 64;
  nb.keys = calloc(nb.cap, sizeof *nb.keys);
  nb.iids = malloc(nb.cap * sizeof *nb.iids);
  if (nb.keys == NULL || nb.iids == NULL) {
    free(nb.keys);
    free(nb.iids);
    return 0;
  }
  for (size_t i = 0; i < pb->cap; i++) {
    if (pb->keys[i] == NULL) continue;
    size_t j = slot(&nb, pb->keys[i]);
    nb.keys[j] = pb->keys[i];
    nb.iids[j] = pb->iids[i];
  }
  free(pb->keys);
  free(pb->iids);
  *pb = nb;
  return 1;
}

/* Interns s: its InternedData packet goes out before any packet that uses it. 0: no memory. */
static uint32_t intern(csp_TraceOut *o, const char *s) {
  Pb *pb = o->st;
  size_t i, k;
  unsigned char ev[CSP_TRACE_ROOM / 2], body[CSP_TRACE_ROOM / 2 + 16], *p;
  if ((pb->n + 1) * 2 > pb->cap && !grow(pb)) return 0;
  i = slot(pb, s);
  pb->keys[i] = s;
  pb->iids[i] = (uint32_t)++pb->n;
  k = strlen(s);
  if (k > 255) k = 255;
  p = ev;
  *p++ = IID_IID;
  p = varint(p, pb->iids[i]);
  p = lenfield(p, IID_NAME, s, k);
  k = (size_t)(p - ev);
  p = body;
  *p++ = PKT_SEQID;
  *p++ = SEQ;
  *p++ = PKT_INTERNED;
  p = varint(p, k + 1 + vlen(k));
  p = lenfield(p, ID_NAMES, ev, k);
  packet(o, body, (size_t)(p - body));
  return pb->iids[i];
}

/* The interned id of name s: the scheduler's strings are unique by address. */
static inline uint32_t iid(csp_TraceOut *o, const char *s) {
  Pb *pb = o->st;
  if (pb->cap) {
    size_t i = slot(pb, s);
    if (pb->keys[i]) return pb->iids[i];
  }
  return intern(o, s);
}

/* ---------------------------------------------------------------- events */

static void instant(csp_TraceOut *o, uint64_t ts, uint32_t tid, int cat, const char *name) {
  event(o, ts, INSTANT, tid, cat, iid(o, name), NULL, 0);
}

/* The slice's end carries the flows it started (the goroutines it woke): their arrows leave
** it. Its chain flow (out, 0: none) and the side flows; in pieces when there are several (main
** starting thousands of goroutines). */
static void slice_end(csp_TraceOut *o, uint64_t ts, uint32_t tid, uint64_t out,
                      const csp_TraceEv *flows, size_t n) {
  unsigned char *p;
  size_t k = n + (out != 0);
  if (k <= 1) {  /* the common case */
    event(o, ts, SLICE_END, tid, 0, 0, TE_FLOW_IDS, out ? out : n ? flows[0].flow : 0);
    return;
  }
  csp_trace_need(o, 64);
  p = te_head(o->b + o->n, ts, 3 + vlen((uint64_t)tid + 1) + k * 10);
  *p++ = TE_TYPE;
  *p++ = SLICE_END;
  *p++ = TE_TRACK_UUID;
  p = varint(p, (uint64_t)tid + 1);
  o->n = (size_t)(p - o->b);
  for (size_t i = 0; i < k; i++) {
    csp_trace_need(o, 10);
    p = o->b + o->n;
    memcpy(p, TE_FLOW_IDS, 2);
    p = fixed64(p + 2, out ? (i == 0 ? out : flows[i - 1].flow) : flows[i].flow);
    o->n = (size_t)(p - o->b);
  }
}

static void slice(csp_TraceOut *o, const csp_TraceEv *e, const csp_TraceEv *flows, size_t n) {
  uint64_t end = e->ts + e->dur;
  event(o, e->ts, SLICE_BEGIN, e->tid, CAT_RUN, iid(o, e->s), TE_TERM_FLOW_IDS, e->flow);
  slice_end(o, end, e->tid, e->out, flows, n);
  if (e->why) instant(o, end, e->tid, CAT_BLOCK, e->why);
}

/* A packet holding TrackDescriptor td (k bytes). */
static void desc_packet(csp_TraceOut *o, const unsigned char *td, size_t k) {
  unsigned char body[400], *p = body;
  *p++ = PKT_SEQID;
  *p++ = SEQ;
  memcpy(p, PKT_TRACK_DESC, 2);
  p = varint(p + 2, k);
  memcpy(p, td, k);
  packet(o, body, (size_t)(p + k - body));
}

/* A goroutine's track: a thread of the process, named "G7 prog.lua:12"; 0 is the GC's track. */
static void track(csp_TraceOut *o, uint32_t tid, const char *name) {
  char tn[300];
  unsigned char th[320], td[360], *p = th, *q = td;
  int k = snprintf(tn, sizeof tn, "G%lu %.255s", (unsigned long)tid, name);
  *p++ = 0x08;  /* ThreadDescriptor.pid */
  *p++ = 1;
  *p++ = 0x10;  /* .tid */
  p = varint(p, tid);
  p = lenfield(p, 0x2A, tn, (size_t)k);  /* .thread_name */
  *q++ = TD_UUID;
  q = varint(q, (uint64_t)tid + 1);
  *q++ = TD_PARENT;
  q = varint(q, PROC_UUID);
  if (tid == 0) q = lenfield(q, TD_NAME, "GC", 2);  /* not a thread: its instants stand alone */
  else q = lenfield(q, TD_THREAD, th, (size_t)(p - th));
  desc_packet(o, td, (size_t)(q - td));
}

static void pb_event(csp_TraceOut *o, const csp_TraceEv *e, const csp_TraceEv *flows, size_t n) {
  switch (e->type) {
    case CSP_EV_SLICE: slice(o, e, flows, n); break;
    case CSP_EV_BLOCK: instant(o, e->ts, e->tid, CAT_BLOCK, e->s); break;
    case CSP_EV_WAKE: instant(o, e->ts, e->tid, CAT_WAKE, e->s); break;
    case CSP_EV_NAME: track(o, e->tid, e->s); break;
    case CSP_EV_GC: instant(o, e->ts, 0, CAT_GC, "GC cycle"); break;
  }
}

/* The first packets: the sequence starts clean, the categories, the process "csp" (pid 1). */
static int pb_open(csp_TraceOut *o) {
  static const char *cats[] = {"run", "block", "wake", "gc"};
  unsigned char id[96], body[128], proc[16], *p = id, *q;
  if ((o->st = calloc(1, sizeof(Pb))) == NULL) return 0;
  for (int i = 0; i < 4; i++) {
    unsigned char c[16], *r = c;
    *r++ = IID_IID;
    *r++ = (unsigned char)(CAT_RUN + i);
    r = lenfield(r, IID_NAME, cats[i], strlen(cats[i]));
    p = lenfield(p, ID_CATEGORIES, c, (size_t)(r - c));
  }
  q = body;
  *q++ = PKT_SEQID;
  *q++ = SEQ;
  *q++ = PKT_SEQFLAGS;
  *q++ = 1;  /* SEQ_INCREMENTAL_STATE_CLEARED: the interned ids below start here */
  q = lenfield(q, PKT_INTERNED, id, (size_t)(p - id));
  packet(o, body, (size_t)(q - body));
  p = proc;
  *p++ = 0x08;  /* ProcessDescriptor.pid */
  *p++ = 1;
  p = lenfield(p, 0x32, "csp", 3);  /* .process_name */
  q = id;
  *q++ = TD_UUID;
  q = varint(q, PROC_UUID);
  q = lenfield(q, TD_PROCESS, proc, (size_t)(p - proc));
  desc_packet(o, id, (size_t)(q - id));
  return 1;
}

static void pb_close(csp_TraceOut *o) {
  Pb *pb = o->st;
  free(pb->keys);
  free(pb->iids);
  free(pb);
  o->st = NULL;
}

static const char *pb_name(const char *s, char *out, size_t size) {
  return csp_trace_name(s, out, size, 0);  /* a protobuf string is UTF-8 */
}

const csp_TraceFormat csp_trace_pb = {pb_name, pb_open, pb_event, pb_close};
