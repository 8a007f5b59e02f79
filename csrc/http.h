/* http.h: the HTTP client's records (Multi, Req), shared by httpcurl.c (curl's side) and http.c. */
#ifndef CSP_HTTP_H
#define CSP_HTTP_H

#include <curl/curl.h>
#include "csp.h"
#include "stream.h"
/* One Multi per scheduler (C memory, boxed in the registry until lua_close). Its sockets are
** watched by one uv_poll each; its single timeout is a node of the scheduler's deadline heap.
** Neither keeps the loop alive unless a goroutine is parked on a request (nwait > 0): idle
** pooled connections must not hide a deadlock nor hold the program open. */
typedef struct Poll Poll;

typedef struct Sock Sock;

/* What a plain request (a GET with no body, header lines, timeout, TLS option nor body
** reader, sink or producer) set on its easy handle beyond the per-request pointers: a spare
** handle whose last request had the same needs neither curl_easy_reset nor those options again
** (~7k instructions a request). plain 0: the handle must be reset. */
typedef struct Prof {
  int64_t max_body;
  int follow, flags;
  uint8_t plain, https;
} Prof;

/* An easy handle and what csp keeps beside it (the request holds the same fields meanwhile). */
typedef struct Handle {
  CURL *e;
  Prof prof;             /* what it still has set (plain 0: it was reset) */
  char *url;             /* the URL its last plain request was set with, or NULL */
  CURLU *uh;             /* that URL parsed, set as CURLOPT_CURLU (NULL with url) */
  uint32_t upre;         /* url's "scheme://authority" length if url is curl's normal form of
                         ** uh (a new path and query may then be set as parts), else 0 */
} Handle;

typedef struct Multi {
  csp_Sched *S;
  CURLM *m;              /* NULL until the first request, and after close_idle */
  CURLSH *h1;            /* the connection cache of requests that cannot multiplex (http:,
                         ** https: with http_version "1.1"): curl keys connections by host
                         ** and port, so one HTTP/1 response there would mark that host's h2
                         ** connection as not multiplexing for every later request (curl
                         ** 7.88): Go keys by scheme too, and keeps its one h2 connection */
  csp_TimerNode tn;      /* curl's timeout; waiters = &nwait */
  uint32_t nwait;        /* requests a goroutine is parked on */
  long nattached;        /* easy handles in m */
  long nsock;            /* connection sockets curl holds open */
  Poll *polls;           /* every poll handle, for ref/unref */
  Handle spare[64];      /* easy handles of finished requests, for the next ones */
  int nspare;
  struct curl_slist *headers; /* the header list of requests with no lines of their own */
  struct curl_slist *headers_body; /* the same, for those sending a body */
  Sock *socks;           /* by descriptor: the connection sockets curl opened */
  int nsocks;            /* length of socks */
  struct Req *unpause;   /* body readers wanting more: resumed by the next timer fire */
  struct Req *dhead, *dtail; /* requests dialling a new connection, oldest first */
  long ndial, ndial_set; /* their number; as last added to CURLMOPT_MAXCONNECTS */
  char *cafile, *capath; /* $SSL_CERT_FILE (if readable) and $SSL_CERT_DIR, read once */
  uint8_t env_read;
  int8_t cafile_alone;   /* httpopt.c's cafile_alone: -1 until the first TLS options */
  uint8_t noproxy;       /* no proxy variable curl reads is set: curl is told so, rather than
                         ** reading five each request (Go reads them once per process too) */
} Multi;

/* A connection socket curl opened (through csp_httpcurl_open_cb; closed through close_cb). */
struct Sock {
  uint8_t open;
  uint8_t h1;            /* an HTTP/1 response completed on it: it idles between requests */
  uint8_t stirred;       /* readable while it idled (bytes, a hang-up): never sent on again */
  int lport;             /* its local port once looked up (the prereq callback names a
                         ** connection by its ports), 0 before */
  Poll *poll;            /* its poll handle, kept while the connection idles in the pool */
};

struct Poll {
  uv_poll_t h;           /* first member: freed by free() in the close callback */
  Multi *M;              /* NULL once closing */
  curl_socket_t fd;
  int events;            /* what the poll watches now: unchanged requests cost no syscall */
  uint8_t want;          /* curl watches the socket (0: an idle pooled connection) */
  Poll *next, *prev;
};

#define SINK_CHUNK (256 * 1024)      /* a sink receives the body in pieces of about this size */
#define HEADER_MAX (64 * 1024)       /* response header section (each block, trailers apart) */


/* A request: a Lua userdata (user value 1 anchors a string body curl reads in place). Attached
** (in m) from creation until done or cancelled; dropping it (result, close, __gc) detaches it
** and gives its easy handle back, so curl never holds a pointer to a collected record.
** With a body reader the request returns at the last header block and the body's stream (st)
** goes to a reader conn, which anchors the request until it is closed. */
typedef struct Req {
  const void *tag;
  Multi *M;               /* NULL once released (__gc) */
  CURL *e;                /* NULL once dropped */
  struct curl_slist *hdrs;  /* the caller's header lines (NULL: M->headers is used) */
  Prof prof;              /* with url, uh and upre: Handle's fields for e */
  char *url;
  CURLU *uh;
  uint32_t upre;
  csp_Req wr;             /* the goroutine parked in req:wait (free_fn frees nothing: the
                          ** record is Lua's, and detached from curl before it is collected) */
  uint8_t attached, parked, done, sink, cancelled;
  uint8_t weak;           /* the parked goroutine does not keep the loop alive (a watcher) */
  uint8_t too_large, hdr_too_large, recv_paused, send_paused, need, up_eof;
  uint8_t in_trailers;    /* after the blank line ending the last header block */
  uint8_t nobody;         /* HEAD: a Content-Length promises no body */
  uint8_t streamed;       /* body from a producer (read callback) */
  uint8_t stale, retried; /* prereq_cb found stray bytes on the connection; made again once */
  uint8_t ready;          /* body reader: the last header block is in, the request may return */
  uint8_t handed;         /* body reader: the stream belongs to a reader conn */
  uint8_t unpausing;      /* body reader: on M->unpause */
  uint8_t reading;        /* body reader: a reader waits, counted in M->nwait */
  uint8_t dialing;        /* on M's dial queue: opened a socket, not yet connected */
  struct Req *dnext, *dprev;
  uint64_t deadline;      /* uv_hrtime when opts.timeout runs out, 0 for none */
  int open_errno;         /* socket() failed with it */
  int follow;             /* redirects followed at most */
  CURLcode result;
  int64_t max_body;       /* -1: none */
  int64_t got;            /* body bytes received */
  csp_Buf body, head, trail, up;
  size_t up_off, hblock;
  csp_Stream *st;         /* body reader: the body's bytes; NULL once its conn closed */
  struct Req *unext;      /* next on M->unpause */
  char err[CURL_ERROR_SIZE];
  char cl[24];            /* the block's Content-Length */
  char bad[160];          /* a framing error found in the headers, Go's wording */
  char cmsg[64];          /* why the caller cancelled (its context's error) */
} Req;

/* Registry key of the per-scheduler Multi box. */
extern const char csp_http_multi_key;

/* httpdl.c */
void csp_httpdl_load(lua_State *L);   /* binds and initialises libcurl (once per process); raises */
int csp_httpdl_h2(void);              /* the loaded libcurl speaks HTTP/2 */

/* httpcurl.c */
void csp_httpcurl_multi_refs(Multi *M, int on);   /* the polls and timer keep the loop alive or not */
void csp_httpcurl_req_unpark(Req *r);
void csp_httpcurl_timer_fire(csp_Sched *S, csp_TimerNode *t);
/* curl's callbacks, set on each easy handle */
curl_socket_t csp_httpcurl_open_cb(void *u, curlsocktype purpose, struct curl_sockaddr *a);
int csp_httpcurl_close_cb(void *u, curl_socket_t fd);
int csp_httpcurl_prereq_cb(void *u, char *rip, char *lip, int rport, int lport);
size_t csp_httpcurl_write_cb(char *p, size_t size, size_t n, void *u);
size_t csp_httpcurl_header_cb(char *p, size_t size, size_t n, void *u);
size_t csp_httpcurl_read_cb(char *p, size_t size, size_t n, void *u);
void csp_httpcurl_req_finish(Req *r, CURLcode result);
void csp_httpcurl_req_dialed(Req *r);        /* off the dial queue (connected, done, dropped) */
void csp_httpcurl_req_wake(Req *r);          /* wakes the parked goroutine (no curl call) */
CURLM *csp_httpcurl_multi_get(lua_State *L, Multi *M);   /* the multi handle, made on first use */
void csp_httpcurl_multi_close(Multi *M);
Multi *csp_httpcurl_multi_of(lua_State *L);   /* this scheduler's Multi */
int csp_httpcurl_multi_gc(lua_State *L);

/* httpresp.c */
int csp_httpresp_result(lua_State *L, Req *r, int urlidx);  /* req:result's values */
int csp_httpresp_fail(lua_State *L, Req *r);      /* nil, message (no 'Get "URL": '), code */
void csp_httpresp_open(lua_State *L);             /* the headers' metatable */
void csp_http_req_drop(Req *r);                   /* http.c: detached, easy handle given back */

/* httpopt.c */
enum { F_PRODUCER = 1, F_SINK = 2, F_DECODE = 4, F_READER = 8 };  /* _new's flags */
lua_Integer csp_httpopt_int(lua_State *L, const char *k, lua_Integer def, lua_Integer none);
int csp_httpopt_setup(lua_State *L, Req *r, const char *method, const char *url, int flags);
void csp_httpopt_give_back(Req *r);
void csp_httpopt_handle_free(Handle *h);

/* httpbody.c */
extern const csp_StreamSrc csp_httpbody_src;      /* the hooks of a response body's stream */
void csp_httpbody_unlist(Req *r);                 /* off M->unpause */
void csp_httpbody_unref(Req *r);                  /* its reader no longer holds the loop */
void csp_httpbody_end(Req *r);                    /* the transfer ended: readers wake */

#endif
