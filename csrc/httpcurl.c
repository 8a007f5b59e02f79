/* httpcurl.c: libcurl's multi handle driven by the scheduler's loop: its sockets on uv_poll, its
** timeout on the timer heap, curl's callbacks filling requests, and finished requests waking. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>
#include "http.h"

const char csp_http_multi_key = 0;

#define CONN_MAX 64L  /* connections curl keeps, idle or busy, besides those dialling */

/* ---------------------------------------------------------------- keeping the loop alive */

void csp_httpcurl_multi_refs(Multi *M, int on) {
  for (Poll *p = M->polls; p != NULL; p = p->next) {
    if (on) uv_ref((uv_handle_t *)&p->h);
    else uv_unref((uv_handle_t *)&p->h);
  }
  if (M->tn.pos) M->S->ntimed += on ? 1 : -1;  /* as wait.c does for a timer channel's node */
}

void csp_httpcurl_req_unpark(Req *r) {
  if (!r->parked) return;
  r->parked = 0;
  if (!r->weak && --r->M->nwait == 0) csp_httpcurl_multi_refs(r->M, 0);
}

/* Wakes the goroutine parked on r (callable from inside curl's callbacks: no curl call here). */
void csp_httpcurl_req_wake(Req *r) {
  if (!r->parked) return;
  csp_httpcurl_req_unpark(r);
  csp_req_done(&r->wr, 0);  /* a wait cut by a caught panic let go of r: nobody to wake */
}

/* ---------------------------------------------------------------- curl's callbacks */

static void multi_action(Multi *M, curl_socket_t fd, int flags);

/* The connection socket fd, or NULL when curl did not open it through open_cb (a resolver's). */
static Sock *sock_of(Multi *M, curl_socket_t fd) {
  return fd >= 0 && fd < M->nsocks && M->socks[fd].open ? &M->socks[fd] : NULL;
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  Poll *p = (Poll *)h;
  int flags = 0;
  if (!p->want) {  /* an idle pooled connection became readable (closed by the server...) */
    Sock *k = sock_of(p->M, p->fd);
    if (k != NULL) k->stirred = 1;
    uv_poll_stop(h);
    p->events = 0;
    return;
  }
  /* An error on the socket: curl reads or writes it and meets the error itself, which gives
  ** the caller its errno (connection reset...) rather than a bare "select/poll returned error". */
  if (status < 0) flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  multi_action(p->M, p->fd, flags);  /* p may be closed from here on */
}

static Poll *poll_new(Multi *M, curl_socket_t fd) {
  Poll *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  if (uv_poll_init_socket(M->S->loop, &p->h, fd) != 0) {
    free(p);
    return NULL;
  }
  p->M = M;
  p->fd = fd;
  p->next = M->polls;
  if (M->polls) M->polls->prev = p;
  M->polls = p;
  if (M->nwait == 0) uv_unref((uv_handle_t *)&p->h);
  return p;
}

static void poll_free(Poll *p) {
  Multi *M = p->M;
  if (p->prev) p->prev->next = p->next;
  else M->polls = p->next;
  if (p->next) p->next->prev = p->prev;
  p->M = NULL;
  uv_poll_stop(&p->h);
  uv_close((uv_handle_t *)&p->h, csp_close_free);
}

/* Lets go of connection socket fd's record and poll. curl 7.88 closes a socket that never
** connected (its transfer removed or timed out while dialling) without the close callback
** (curl PR 11439, fixed in 8.2): such a record goes when curl stops watching the socket, or
** when the kernel gives its number to a new one. */
static void sock_gone(Multi *M, curl_socket_t fd) {
  Sock *k = &M->socks[fd];
  if (k->poll != NULL) poll_free(k->poll);
  k->open = 0;
  k->poll = NULL;
  M->nsock--;
}

/* A connection socket keeps its poll handle while it idles in the pool, still reading: the
** next request on it costs no epoll_ctl (nor a handle), and an event while it idles only stops
** the poll. Writable is always ready: that stops at once. Sockets curl did not open through
** open_cb (so whose close csp does not see) lose their poll when curl stops watching them. */
static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
  Multi *M = (Multi *)userp;
  Poll *p = (Poll *)socketp;
  Sock *k = sock_of(M, fd);
  int events = 0;
  (void)e;
  if (p == NULL && k != NULL) p = k->poll;
  if (what == CURL_POLL_REMOVE) {
    if (p == NULL) return 0;
    if (socketp != NULL) curl_multi_assign(M->m, fd, NULL);
    if (k == NULL) {
      poll_free(p);
    } else {
      p->want = 0;
      if (p->events & UV_WRITABLE) {  /* connecting, maybe closed already (sock_gone) */
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
          sock_gone(M, fd);
          return 0;
        }
        uv_poll_stop(&p->h);
        p->events = 0;
      }
    }
    return 0;
  }
  if (p == NULL) {
    if ((p = poll_new(M, fd)) == NULL) return -1;
    if (k != NULL) k->poll = p;
  }
  if (socketp == NULL) curl_multi_assign(M->m, fd, p);
  p->want = 1;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  if (events != p->events || !uv_is_active((uv_handle_t *)&p->h)) {
    p->events = events;
    uv_poll_start(&p->h, events, poll_cb);
  }
  return 0;
}

/* Body readers that found their buffer empty resume here, outside any Lua call: curl hands
** over what it held back at once, in the write callback, which wakes them. */
void csp_httpcurl_timer_fire(csp_Sched *S, csp_TimerNode *t) {
  Multi *M = (Multi *)((char *)t - offsetof(Multi, tn));
  (void)S;
  while (M->unpause != NULL) {
    Req *r = M->unpause;
    M->unpause = r->unext;
    r->unpausing = 0;
    if (r->attached && r->recv_paused) {
      r->recv_paused = 0;
      curl_easy_pause(r->e, CURLPAUSE_CONT);
    }
  }
  multi_action(M, CURL_SOCKET_TIMEOUT, 0);
}

/* curl's one timeout, on the heap. A 0 is never acted on here: the node is due at once and
** fires from the scheduler's next heap run, outside any curl call. */
static int timer_cb(CURLM *m, long ms, void *userp) {
  Multi *M = (Multi *)userp;
  (void)m;
  if (M->tn.pos) csp_timer_del(M->S, &M->tn);
  if (ms >= 0) csp_timer_add(NULL, M->S, &M->tn, uv_hrtime() + (uint64_t)ms * 1000000u);
  return 0;
}

/* Makes room in M->socks for descriptor fd; 0 without memory. */
static int socks_grow(Multi *M, curl_socket_t fd) {
  int n = M->nsocks ? M->nsocks : 64;
  Sock *ns;
  while (n <= fd) n *= 2;
  if ((ns = realloc(M->socks, (size_t)n * sizeof *ns)) == NULL) return 0;
  memset(ns + M->nsocks, 0, (size_t)(n - M->nsocks) * sizeof *ns);
  M->socks = ns;
  M->nsocks = n;
  return 1;
}

/* ---------------------------------------------------------------- requests still dialling */

/* A listener's accept queue holds backlog + 1 connections (6 for python's http.server): in a
** burst, the SYN of every connection past those is dropped (ListenOverflows) and its dial waits
** for the retransmission, 1 s later, when most handshakes land on a full queue again and their
** requests go unacknowledged for seconds (60 concurrent gets: 10-25 timed out at 5 s). Go
** dials as many and overflows as many, but its request takes whichever comes first, its dial
** or a connection to the host going idle (Transport.queueForIdleConn): its 60 gets ran on the
** 6 accepted connections. A curl transfer is bound to the connection it opens, so a request
** still dialling is made again when a connection to its origin goes idle: curl reuses that
** one and closes the half-open one. Nothing has been sent yet (the prereq callback, which
** takes it off the queue, runs before the request goes out), so this holds for any method. */
static void dial_queue(Req *r) {
  Multi *M = r->M;
  if (r->dialing) return;  /* a second address, or the other family's socket */
  r->dialing = 1;
  M->ndial++;
  r->dnext = NULL;
  r->dprev = M->dtail;
  if (M->dtail != NULL) M->dtail->dnext = r;
  else M->dhead = r;
  M->dtail = r;
}

void csp_httpcurl_req_dialed(Req *r) {
  Multi *M = r->M;
  if (!r->dialing) return;
  r->dialing = 0;
  M->ndial--;
  if (r->dprev != NULL) r->dprev->dnext = r->dnext;
  else M->dhead = r->dnext;
  if (r->dnext != NULL) r->dnext->dprev = r->dprev;
  else M->dtail = r->dprev;
  r->dnext = r->dprev = NULL;
}

/* The length of "scheme://authority" at the start of curl's URL u, 0 if none. */
static size_t origin_len(const char *u) {
  const char *p = u != NULL ? strstr(u, "://") : NULL;
  return p == NULL ? 0 : (size_t)(p + 3 - u) + strcspn(p + 3, "/?#");
}

/* done's transfer left its HTTP/1 connection idle: the oldest request dialling the same origin
** is added again, to take it. Not one that followed a redirect: curl would start it over from
** its first URL. */
static void dial_handover(Multi *M, CURL *done) {
  char *u = NULL, *v;
  size_t n;
  long redirs;
  Req *r;
  if (M->dhead == NULL || curl_easy_getinfo(done, CURLINFO_EFFECTIVE_URL, &u) != CURLE_OK ||
      (n = origin_len(u)) == 0)
    return;
  for (r = M->dhead; r != NULL; r = r->dnext) {
    if (!r->retried && curl_easy_getinfo(r->e, CURLINFO_EFFECTIVE_URL, &v) == CURLE_OK &&
        origin_len(v) == n && strncasecmp(u, v, n) == 0 &&
        curl_easy_getinfo(r->e, CURLINFO_REDIRECT_COUNT, &redirs) == CURLE_OK && redirs == 0)
      break;
  }
  if (r == NULL) return;
  csp_httpcurl_req_dialed(r);
  curl_multi_remove_handle(M->m, r->e);
  if (r->deadline) {  /* curl would count the timeout afresh */
    uint64_t now = uv_hrtime();
    long ms = r->deadline > now ? (long)((r->deadline - now) / 1000000u) : 0;
    curl_easy_setopt(r->e, CURLOPT_TIMEOUT_MS, ms > 0 ? ms : 1L);
  }
  if (curl_multi_add_handle(M->m, r->e) == CURLM_OK) return;
  r->attached = 0;
  M->nattached--;
  csp_httpcurl_req_finish(r, CURLE_OUT_OF_MEMORY);
}

curl_socket_t csp_httpcurl_open_cb(void *u, curlsocktype purpose, struct curl_sockaddr *a) {
  Req *r = (Req *)u;
  Multi *M = r->M;
  curl_socket_t fd;
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd == CURL_SOCKET_BAD) {
    r->open_errno = errno;  /* curl reports no errno for this: Go's "socket: too many open files" */
    return fd;
  }
  if (fd >= M->nsocks && !socks_grow(M, fd)) {
    close(fd);
    r->open_errno = ENOMEM;
    return CURL_SOCKET_BAD;
  }
  if (M->socks[fd].open) sock_gone(M, fd);  /* the number was free: closed behind csp's back */
  M->socks[fd].open = 1;
  M->socks[fd].h1 = 0;
  M->socks[fd].stirred = 0;
  M->socks[fd].lport = 0;
  M->socks[fd].poll = NULL;
  M->nsock++;
  if (purpose == CURLSOCKTYPE_IPCXN) dial_queue(r);
  return fd;
}

/* The poll goes before the descriptor: libuv must never watch a closed one. */
int csp_httpcurl_close_cb(void *u, curl_socket_t fd) {
  Multi *M = (Multi *)u;
  if (sock_of(M, fd) != NULL) sock_gone(M, fd);
  return close(fd);
}

static int sock_lport(curl_socket_t fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

/* Issue 9.4: bytes a server sent past the end of the last response sit in an idle HTTP/1
** connection; sent on it, the next request would read them as its answer (curl only checks an
** idle connection for a hang-up). Right before a request goes out on a connection that served
** an HTTP/1 response, any byte already waiting condemns it: shut down (curl closes it) and the
** request is made again on a fresh connection. Over TLS too: after a response's last record
** nothing is due until the next request (a close_notify means the connection is closing
** anyway). h2 connections are not checked: they carry frames while idle, and frame every
** response by stream.
** An idle connection's poll keeps reading (socket_cb): what arrived by the loop's last poll
** set k->stirred, so no syscall is needed. Bytes arriving since then are not seen, as in Go,
** whose idle connection's read loop waits on the same poller; a socket whose poll stopped
** (it was waiting to write), or that curl still watches, is peeked at instead. */
static int sock_stale(Sock *k, curl_socket_t fd) {
  char c;
  if (k->stirred) return 1;
  if (k->poll != NULL && !k->poll->want && (k->poll->events & UV_READABLE) &&
      uv_is_active((uv_handle_t *)&k->poll->h))
    return 0;
  return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

int csp_httpcurl_prereq_cb(void *u, char *rip, char *lip, int rport, int lport) {
  Req *r = (Req *)u;
  Multi *M = r->M;
  (void)rip; (void)lip; (void)rport;
  csp_httpcurl_req_dialed(r);
  for (int fd = 0; fd < M->nsocks; fd++) {
    Sock *k = &M->socks[fd];
    if (!k->open) continue;
    if (k->lport == 0) k->lport = sock_lport(fd);
    if (k->lport != lport) continue;
    if (k->h1 && sock_stale(k, fd)) {
      shutdown(fd, SHUT_RDWR);
      r->stale = 1;
      return CURL_PREREQFUNC_ABORT;
    }
    break;
  }
  return CURL_PREREQFUNC_OK;
}

/* A body reader's bytes go to its stream; over the stream's bound the transfer pauses until a
** reader empties it (csp_httpbody_src's want). */
static size_t write_stream(Req *r, const char *p, size_t len) {
  csp_Stream *st = r->st;
  if (csp_buf_len(&st->rb) >= csp_stream_hw(st)) {
    r->recv_paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  if (r->max_body >= 0 && r->got + (int64_t)len > r->max_body) {
    r->too_large = 1;
    return 0;
  }
  if (!csp_stream_put(st, p, len)) return 0;
  r->got += (int64_t)len;
  if (!r->ready) {  /* the first body byte: the headers are all in */
    r->ready = 1;
    csp_httpcurl_req_wake(r);
  }
  csp_stream_wake_all(r->M->S, &st->rq, CSP_WAKE_OK);
  return len;
}

size_t csp_httpcurl_write_cb(char *p, size_t size, size_t n, void *u) {
  Req *r = (Req *)u;
  size_t len = size * n;
  if (r->st != NULL) return write_stream(r, p, len);
  if (r->sink && csp_buf_len(&r->body) >= SINK_CHUNK) {  /* the goroutine has not taken it */
    r->recv_paused = 1;
    csp_httpcurl_req_wake(r);
    return CURL_WRITEFUNC_PAUSE;
  }
  if (r->max_body >= 0 && r->got + (int64_t)len > r->max_body) {
    r->too_large = 1;
    return 0;
  }
  if (!csp_buf_put(&r->body, p, len)) return 0;
  r->got += (int64_t)len;
  if (r->sink && csp_buf_len(&r->body) >= SINK_CHUNK) csp_httpcurl_req_wake(r);
  return len;
}

/* The status code of the header block being read (its first line), 0 if none. */
static int block_status(Req *r) {
  size_t len = csp_buf_len(&r->head);
  const char *p = csp_buf_data(&r->head), *sp = len > 0 ? memchr(p, ' ', len) : NULL;
  int code = 0;
  if (sp == NULL) return 0;
  for (sp++; sp < p + len && *sp >= '0' && *sp <= '9' && code < 1000; sp++)
    code = code * 10 + (*sp - '0');
  return code;
}

/* Whether the header block just ended is the response's last: not a 1xx, nor a 3xx curl may
** follow (one it does not follow shows as a body or as the end). */
static int block_final(Req *r) {
  int code = block_status(r);
  return code >= 200 && !(r->follow > 0 && code >= 300 && code < 400);
}

/* Go refuses a Content-Length that is not a number, or repeated with another value (response
** splitting); curl would take one of them. The first value of the block is kept in r->cl. */
static int cl_check(Req *r, const char *v, size_t n) {
  size_t i = 0, j;
  uint64_t x = 0;  /* Go's ParseUint(v, 10, 63): past 2^63-1 is bad (curl ignores it) */
  while (i < n && (v[i] == ' ' || v[i] == '\t')) i++;
  while (n > i && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  for (j = i; j < n && x <= INT64_MAX; j++) {
    if (v[j] < '0' || v[j] > '9') break;
    x = x * 10 + (uint64_t)(v[j] - '0');  /* x <= 2^63-1 before: no wrap */
  }
  if (j < n || n == i || x > INT64_MAX || n - i >= sizeof r->cl) {
    snprintf(r->bad, sizeof r->bad, "bad Content-Length \"%.*s\"", (int)(n - i > 40 ? 40 : n - i), v + i);
    return 0;
  }
  if (r->max_body >= 0 && (int64_t)x > r->max_body && !r->nobody && block_final(r) &&
      block_status(r) != 204 && block_status(r) != 304) {  /* a body that cannot fit: fail early */
    r->too_large = 1;
    return 0;
  }
  if (r->cl[0] && (strlen(r->cl) != n - i || memcmp(r->cl, v + i, n - i) != 0)) {
    snprintf(r->bad, sizeof r->bad, "http: message cannot contain multiple Content-Length headers; got \"%s\" and \"%.*s\"",
             r->cl, (int)(n - i), v + i);
    return 0;
  }
  memcpy(r->cl, v + i, n - i);
  r->cl[n - i] = '\0';
  return 1;
}

/* Header lines, raw: a line "HTTP/..." starts a new block (redirects, 1xx), so only the last
** block is kept; lines after its blank line are trailers. */
size_t csp_httpcurl_header_cb(char *p, size_t size, size_t n, void *u) {
  Req *r = (Req *)u;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    csp_buf_clear(&r->head);
    csp_buf_clear(&r->trail);
    r->hblock = 0;
    r->in_trailers = 0;
    r->cl[0] = '\0';
  }
  if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
    r->in_trailers = 1;
    if (r->st != NULL && !r->ready && block_final(r)) {
      r->ready = 1;
      csp_httpcurl_req_wake(r);
    }
    return len;
  }
  if (!r->in_trailers && len > 15 && strncasecmp(p, "content-length:", 15) == 0 && !cl_check(r, p + 15, len - 15))
    return 0;
  if ((r->hblock += len) > HEADER_MAX) {
    r->hdr_too_large = 1;
    return 0;
  }
  if (!csp_buf_put(r->in_trailers ? &r->trail : &r->head, p, len)) return 0;
  return len;
}

size_t csp_httpcurl_read_cb(char *p, size_t size, size_t n, void *u) {
  Req *r = (Req *)u;
  size_t want = size * n, have = csp_buf_len(&r->up) - r->up_off;
  if (have > 0) {
    if (have > want) have = want;
    memcpy(p, csp_buf_data(&r->up) + r->up_off, have);
    r->up_off += have;
    return have;
  }
  if (r->up_eof) return 0;
  r->need = 1;
  r->send_paused = 1;
  csp_httpcurl_req_wake(r);
  return CURL_READFUNC_PAUSE;
}

/* ---------------------------------------------------------------- the multi handle */

void csp_httpcurl_req_finish(Req *r, CURLcode result) {
  csp_httpcurl_req_dialed(r);
  if (r->stale && !r->retried && r->attached) {
    r->retried = 1;
    r->stale = 0;
    curl_multi_remove_handle(r->M->m, r->e);
    csp_buf_clear(&r->head);
    csp_buf_clear(&r->trail);
    r->hblock = 0;
    curl_easy_setopt(r->e, CURLOPT_FRESH_CONNECT, 1L);
    if (curl_multi_add_handle(r->M->m, r->e) == CURLM_OK) return;
    r->attached = 0;
    r->M->nattached--;
  }
  if (r->attached) {
    r->attached = 0;
    r->M->nattached--;
    curl_multi_remove_handle(r->M->m, r->e);
  }
  r->done = 1;
  r->result = result;
  if (r->st != NULL) csp_httpbody_end(r);
  csp_httpcurl_req_wake(r);
}

/* Notes whether the connection of a transfer just done (if curl keeps it) served HTTP/1; if
** so it idles now, and a request still dialling its origin takes it. */
static void sock_served(Multi *M, CURL *e) {
  curl_socket_t fd = CURL_SOCKET_BAD;
  long ver = 0;
  Sock *k;
  if (curl_easy_getinfo(e, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || (k = sock_of(M, fd)) == NULL) return;
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &ver);
  k->h1 = ver != CURL_HTTP_VERSION_2_0 && ver != CURL_HTTP_VERSION_3;
  if (k->h1) dial_handover(M, e);
}

/* Drives curl for one event, then completes what finished. Never called from a curl callback. */
static void multi_action(Multi *M, curl_socket_t fd, int flags) {
  int running, left;
  CURLMsg *msg;
  if (M == NULL || M->m == NULL) return;
  /* curl's bound on its cache counts every connection, and past it closes the oldest idle one:
  ** with 300 requests dialling, each connection going idle was closed, not handed over. Those
  ** still dialling are not counted (curl refuses the call from inside its callbacks). */
  if (M->ndial != M->ndial_set) {
    M->ndial_set = M->ndial;
    curl_multi_setopt(M->m, CURLMOPT_MAXCONNECTS, CONN_MAX + M->ndial);
  }
  curl_multi_socket_action(M->m, fd, flags, &running);
  while ((msg = curl_multi_info_read(M->m, &left)) != NULL) {
    Req *r = NULL;
    if (msg->msg != CURLMSG_DONE) continue;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (msg->data.result == CURLE_OK) sock_served(M, msg->easy_handle);
    if (r != NULL) csp_httpcurl_req_finish(r, msg->data.result);
  }
}

CURLM *csp_httpcurl_multi_get(lua_State *L, Multi *M) {
  if (M->m != NULL) return M->m;
  csp_httpdl_load(L);  /* libcurl itself, once per process */
  if ((M->m = curl_multi_init()) == NULL) luaL_error(L, "not enough memory");
  curl_multi_setopt(M->m, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(M->m, CURLMOPT_SOCKETDATA, M);
  curl_multi_setopt(M->m, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(M->m, CURLMOPT_TIMERDATA, M);
  curl_multi_setopt(M->m, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(M->m, CURLMOPT_MAXCONNECTS, CONN_MAX);
  M->ndial_set = 0;
  if (M->h1 == NULL && (M->h1 = curl_share_init()) != NULL &&
      curl_share_setopt(M->h1, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
    curl_share_cleanup(M->h1);
    M->h1 = NULL;
  }
  if (M->h1 == NULL) {
    curl_multi_cleanup(M->m);
    M->m = NULL;
    luaL_error(L, "not enough memory");
  }
  return M->m;
}

/* Closes every connection (and the multi handle itself; the next request makes a new one). */
void csp_httpcurl_multi_close(Multi *M) {
  if (M->m == NULL) return;
  while (M->nspare > 0) csp_httpopt_handle_free(&M->spare[--M->nspare]);
  /* sockets of the cache are closed by the cleanup, through csp_httpcurl_close_cb */
  curl_multi_cleanup(M->m);  /* its socket callbacks close the polls */
  M->m = NULL;
  /* A done request whose result was not taken yet still holds an easy handle on the share:
  ** then the share (and its connections) stays for the next multi, or until lua_close. */
  if (curl_share_cleanup(M->h1) == CURLSHE_OK) M->h1 = NULL;
  if (M->tn.pos) csp_timer_del(M->S, &M->tn);
}

Multi *csp_httpcurl_multi_of(lua_State *L) {
  Multi **box;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &csp_http_multi_key);
  box = (Multi **)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (*box == NULL || (*box)->S->closing) csp_sched_gone(L);  /* finalized, or its loop gone */
  return *box;
}

int csp_httpcurl_multi_gc(lua_State *L) {
  Multi **box = (Multi **)lua_touserdata(L, 1);
  if (*box != NULL) {
    csp_httpcurl_multi_close(*box);
    if ((*box)->headers != NULL) curl_slist_free_all((*box)->headers);  /* set once curl loaded */
    if ((*box)->headers_body != NULL) curl_slist_free_all((*box)->headers_body);
    free((*box)->socks);
    free((*box)->cafile);
    free((*box)->capath);
    free(*box);
    *box = NULL;
  }
  return 0;
}
