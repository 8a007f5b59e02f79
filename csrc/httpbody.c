/* httpbody.c: a response body as a csp stream (request{stream = true}'s body_reader, a conn):
** curl's write callback fills the stream's buffer and pauses over its bound, a reader that
** empties it resumes the transfer, closing it stops the transfer. */
#include "http.h"

/* The request whose body s is; NULL once it was let go (lua_close finalizes in any order). */
static Req *body_req(csp_Stream *s) {
  return (Req *)s->srcdata;
}

void csp_httpbody_unref(Req *r) {
  if (!r->reading) return;
  r->reading = 0;
  if (--r->M->nwait == 0) csp_httpcurl_multi_refs(r->M, 0);
}

/* A reader waiting on a transfer still under way holds the loop, as a request's goroutine does;
** an idle reader (or none) does not. */
static void body_settle(csp_Stream *s) {
  Req *r = body_req(s);
  if (r == NULL) return;
  if (s->rq.head == NULL || r->done) {
    csp_httpbody_unref(r);
  } else if (!r->reading) {
    r->reading = 1;
    if (r->M->nwait++ == 0) csp_httpcurl_multi_refs(r->M, 1);
  }
}

void csp_httpbody_unlist(Req *r) {
  if (!r->unpausing) return;
  for (Req **pp = &r->M->unpause; *pp != NULL; pp = &(*pp)->unext) {
    if (*pp == r) {
      *pp = r->unext;
      break;
    }
  }
  r->unpausing = 0;
}

/* A reader found the buffer empty: a paused transfer resumes from the multi's timer node, due
** now (a Lua call is under way here; curl may hand over data at once, and the reader has not
** parked yet). */
static void body_want(csp_Stream *s) {
  Req *r = body_req(s);
  Multi *M;
  if (r == NULL || !r->recv_paused || r->unpausing || !r->attached) return;
  M = r->M;
  r->unpausing = 1;
  r->unext = M->unpause;
  M->unpause = r;
  if (M->tn.pos) csp_timer_del(M->S, &M->tn);
  csp_timer_add(NULL, M->S, &M->tn, 0);
}

/* read's error once the buffer is empty: the transfer's, worded as for the request. */
static int body_fail(lua_State *L, csp_Stream *s) {
  Req *r = body_req(s);
  if (r == NULL || r->e == NULL) return csp_fail(L, "ECANCELED", "http: the request is gone");
  csp_httpresp_fail(L, r);
  lua_pop(L, 1);  /* the URL */
  return 3;
}

/* The reader closed (or was collected): an unfinished transfer stops, the request lets go. */
static void body_close(csp_Stream *s) {
  Req *r = body_req(s);
  if (r == NULL) return;
  s->srcdata = NULL;
  r->st = NULL;
  csp_httpbody_unref(r);
  if (!r->done && r->e != NULL) {
    r->cancelled = 1;
    csp_httpcurl_req_finish(r, CURLE_ABORTED_BY_CALLBACK);  /* wakes a context's watcher */
  }
  csp_http_req_drop(r);
}

const csp_StreamSrc csp_httpbody_src = {body_want, body_settle, body_fail, body_close};

/* The transfer ended: readers see the rest of the buffer, then EOF or the error. */
void csp_httpbody_end(Req *r) {
  csp_Stream *st = r->st;
  if (st->rerr == 0) st->rerr = r->result == CURLE_OK ? UV_EOF : UV_EIO;
  csp_stream_wake_all(r->M->S, &st->rq, CSP_WAKE_OK);
  csp_httpbody_unref(r);
}
