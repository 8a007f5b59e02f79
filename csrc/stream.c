/* stream.c: the byte buffer over libuv (tcp, pipe, tty; regular files on the thread pool): memory,
** read-ahead into the buffer, write and shutdown completions. No Lua values here. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "stream.h"

#define BUF_READ 2048   /* smallest free space worth handing to a read */
/* ---------------------------------------------------------------- large buffers */

/* uv_buf_t lengths are unsigned int: a string of 4 GiB or more goes out in pieces of at most
** csp_stream_bufmax bytes (CSP_BUFMAX, a debug knob, lowers it so specs can check the splitting). */
#define CSP_BUFMAX_DEFAULT ((size_t)1 << 30)
#define NBUF_STACK 8
size_t csp_stream_bufmax = CSP_BUFMAX_DEFAULT;

static unsigned bufs_count(size_t len) {
  return len == 0 ? 1 : (unsigned)((len + csp_stream_bufmax - 1) / csp_stream_bufmax);
}

/* Fills b[0..n) with the pieces of p[0..len), n = bufs_count(len). */
static void bufs_fill(uv_buf_t *b, unsigned n, const char *p, size_t len) {
  for (unsigned i = 0; i < n; i++) {
    size_t k = len < csp_stream_bufmax ? len : csp_stream_bufmax;
    b[i] = uv_buf_init((char *)p, (unsigned)k);
    p += k;
    len -= k;
  }
}

/* uv_write of p[0..len) in pieces (libuv copies the array of more than 4). */
int csp_stream_write(uv_write_t *req, uv_stream_t *h, const char *p, size_t len, uv_write_cb cb) {
  uv_buf_t small[NBUF_STACK] = {{0}}, *b = small;
  unsigned n = bufs_count(len);
  int r;
  if (n > NBUF_STACK && (b = malloc(n * sizeof *b)) == NULL) return UV_ENOMEM;
  bufs_fill(b, n, p, len);
  r = uv_write(req, h, b, n, cb);
  if (b != small) free(b);
  return r;
}

/* ---------------------------------------------------------------- stream memory */

static void wr_release(csp_Req *q);

csp_Stream *csp_stream_alloc(csp_Sched *S, int kind) {
  csp_Stream *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->S = S;
  s->kind = (uint8_t)kind;
  s->fd = -1;
  s->linemax = CSP_LINEMAX;
  s->wr.free_fn = wr_release;
  return s;
}

static void st_free(csp_Stream *s) {
  csp_buf_free(&s->rb);
  free(s);
}

/* A closed file stream goes once the pool holds none of its buffers (streams with a handle go
** in its close callback). */
static void st_release(csp_Stream *s) {
  if (s->kind == CSP_ST_FILE && !s->reading && !s->wbusy) st_free(s);
}

static void st_close_cb(uv_handle_t *h) {
  st_free((csp_Stream *)h);
}

void csp_stream_discard(csp_Stream *s) {
  s->closed = 1;
  if (!uv_is_closing(&s->u.h)) uv_close(&s->u.h, st_close_cb);  /* else the teardown's walk */
}

/* The handle keeps the program alive only while a goroutine waits to read from it (writes,
** connects and shutdowns are libuv requests: active while in flight). */
void csp_stream_settle(csp_Stream *s) {
  if (s->closed) return;
  if (s->kind == CSP_ST_SRC) {
    s->src->settle(s);
    return;
  }
  if (s->kind == CSP_ST_FILE) return;
  if (s->rq.head) uv_ref(&s->u.h);
  else uv_unref(&s->u.h);
}

void csp_stream_wake_all(csp_Sched *S, csp_WaitQ *q, int how) {
  csp_Waiter *w;
  while ((w = csp_wq_take(q)) != NULL) {
    w->g->wake = (uint8_t)how;
    csp_sched_ready(S, w->g, 0);
  }
}

void csp_stream_wake_turn(csp_Stream *s) {
  csp_Waiter *w = csp_wq_take(&s->wq);
  if (w) csp_sched_ready(s->S, w->g, 0);
}

/* Closes s: parked goroutines wake (or, from __gc, are merely unlinked) and the memory goes
** in the close callback, or once the thread pool is done with a file's buffers. */
void csp_stream_close(csp_Stream *s, int wake) {
  csp_WaitQ *qs[3] = {&s->rq, &s->wq, &s->sq};
  s->closed = 1;
  for (int i = 0; i < 3; i++) {
    if (wake) csp_stream_wake_all(s->S, qs[i], CSP_WAKE_CLOSED);
    else csp_wq_detach(qs[i]);
  }
  if (csp_req_drop(&s->wr, wake ? CSP_WAKE_CLOSED : -1)) s->wbusy = 0;  /* done, not taken back */
  if (s->fd >= 0) csp_stdio_release(s->fd);
  if (s->kind == CSP_ST_SRC) {
    s->src->close(s);
    st_free(s);
    return;
  }
  if (s->kind == CSP_ST_FILE) st_release(s);
  else uv_close(&s->u.h, st_close_cb);
}

/* ---------------------------------------------------------------- reading */

/* Reading stops once this much is buffered: enough for the longest line plus its newline. */
static size_t st_hw(csp_Stream *s) {
  return s->linemax + 1 > 65536 ? s->linemax + 1 : 65536;
}

size_t csp_stream_hw(csp_Stream *s) {
  return st_hw(s);
}

/* A source's bytes: the buffer grows past the bound if it must (its producer pauses there). */
int csp_stream_put(csp_Stream *s, const char *p, size_t n) {
  return csp_buf_put(&s->rb, p, n);
}

void csp_stream_take(csp_Stream *s, size_t n) {
  csp_buf_take(&s->rb, n);
  s->scan = 0;
}

static void st_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  csp_Stream *s = (csp_Stream *)h;
  size_t room = csp_buf_room(&s->rb, BUF_READ, st_hw(s));
  (void)suggested;
  *b = uv_buf_init(room ? s->rb.p + s->rb.tail : NULL, (unsigned)room);
}

static void st_read_cb(uv_stream_t *h, ssize_t n, const uv_buf_t *b) {
  csp_Stream *s = (csp_Stream *)h;
  (void)b;
  if (n == 0) return;  /* EAGAIN */
  if (n > 0) {
    s->rb.tail += (size_t)n;
    if (csp_buf_len(&s->rb) < st_hw(s)) goto wake;
  } else if (n != UV_ENOBUFS || csp_buf_len(&s->rb) < st_hw(s)) {
    s->rerr = (int)n;  /* EOF, an error, or no memory for the buffer */
  }
  uv_read_stop(h);     /* end of stream, or the buffer is full: the kernel holds the rest */
  s->reading = 0;
wake:
  csp_stream_wake_all(s->S, &s->rq, CSP_WAKE_OK);
  csp_stream_settle(s);
}

static void fs_read_cb(uv_fs_t *req) {
  csp_Stream *s = (csp_Stream *)req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  s->reading = 0;
  if (s->closed) {
    st_release(s);
    return;
  }
  if (n > 0) {  /* a reader may have emptied the buffer meanwhile: it starts again at 0 */
    if (s->rat != s->rb.tail) memmove(s->rb.p + s->rb.tail, s->rb.p + s->rat, (size_t)n);
    s->rb.tail += (size_t)n;
  } else {
    s->rerr = n == 0 ? UV_EOF : (int)n;
  }
  csp_stream_wake_all(s->S, &s->rq, CSP_WAKE_OK);
}

/* Starts reading ahead (a stream keeps reading until its buffer is full); 0 or an error. */
int csp_stream_start_read(csp_Stream *s) {
  int r;
  if (s->reading || s->rerr) return 0;
  if (s->kind == CSP_ST_SRC) {
    s->src->want(s);
    return 0;
  }
  if (s->kind == CSP_ST_FILE) {
    size_t room = csp_buf_room(&s->rb, BUF_READ, st_hw(s));
    uv_buf_t b;
    if (room == 0) return UV_ENOBUFS;
    b = uv_buf_init(s->rb.p + s->rb.tail, (unsigned)room);
    s->rat = s->rb.tail;
    s->rfs.data = s;
    r = uv_fs_read(s->S->loop, &s->rfs, s->fd, &b, 1, -1, fs_read_cb);
  } else {
    r = uv_read_start(&s->u.s, st_alloc_cb, st_read_cb);
  }
  if (r == 0) s->reading = 1;
  return r;
}

/* ---------------------------------------------------------------- write */

void csp_stream_write_end(csp_Stream *s) {
  s->wbusy = 0;
  if (s->closed) st_release(s);
  else csp_stream_wake_turn(s);
}

/* free_fn of the write's request: its writer left (a deadline, a close, a cancelled wait). */
static void wr_release(csp_Req *q) {
  csp_stream_write_end((csp_Stream *)(void *)((char *)q - offsetof(csp_Stream, wr)));
}

static void wr_complete(csp_Stream *s, int status) {
  if (status == 0) s->wsent += s->wlen;
  s->wlen = 0;
  s->wstatus = status;
  csp_req_done(&s->wr, 0);  /* its writer takes the status, or (gone) wr_release frees the slot */
}

void csp_stream_write_cb(uv_write_t *req, int status) {
  wr_complete((csp_Stream *)req->data, status);
}

static void fs_write_cb(uv_fs_t *req) {
  csp_Stream *s = (csp_Stream *)req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (n > 0 && (size_t)n < s->wlen && !s->wcancel && !s->closed) {  /* short write or next piece */
    int r;
    s->wp += n;
    s->wlen -= (size_t)n;
    s->wsent += (size_t)n;
    if ((r = csp_stream_file_write(s)) == 0) return;
    n = r;
  } else if (n == 0) {
    n = UV_EIO;
  }
  wr_complete(s, n < 0 ? (int)n : 0);
}

int csp_stream_file_write(csp_Stream *s) {
  uv_buf_t b = uv_buf_init((char *)s->wp, (unsigned)(s->wlen < csp_stream_bufmax ? s->wlen : csp_stream_bufmax));
  s->wfs.data = s;
  return uv_fs_write(s->S->loop, &s->wfs, s->fd, &b, 1, -1, fs_write_cb);
}

void csp_stream_shutdown_cb(uv_shutdown_t *req, int status) {
  csp_Stream *s = (csp_Stream *)req->data;
  if (s->closed) return;
  s->sstatus = status;
  csp_stream_wake_all(s->S, &s->sq, CSP_WAKE_OK);
}
