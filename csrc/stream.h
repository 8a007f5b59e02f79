/* stream.h: the buffered byte stream (tcp, pipe, tty, file), used by stream.c, stdio.c, conn.c,
** connio.c, net.c and procspawn.c. */
#ifndef CSP_STREAM_H
#define CSP_STREAM_H

#include "csp.h"
#include "buf.h"

#define CSP_LINEMAX 65536  /* default longest line read_line returns */

enum { CSP_ST_TCP, CSP_ST_PIPE, CSP_ST_TTY, CSP_ST_FILE, CSP_ST_SRC };

typedef struct csp_Stream csp_Stream;

/* A source stream (CSP_ST_SRC: an HTTP response body) has no handle: its producer puts bytes
** into the buffer (csp_stream_put, waking the readers) and sets rerr at its end; these tell it
** what the reader side does. */
typedef struct csp_StreamSrc {
  void (*want)(csp_Stream *s);               /* a reader found the buffer empty: produce more */
  void (*settle)(csp_Stream *s);             /* readers started or stopped waiting (s->rq) */
  int (*fail)(lua_State *L, csp_Stream *s);  /* pushes nil, message, code for rerr (not EOF) */
  void (*close)(csp_Stream *s);              /* the stream closes: stop producing, let go of s */
} csp_StreamSrc;

/* C memory, the libuv handle first: freed in its close callback, never by the collector. A file
** (CSP_ST_FILE: a regular file on the thread pool) has no handle: freed once nothing is in flight. */
struct csp_Stream {
  union { uv_handle_t h; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; uv_tty_t tty; } u;
  csp_Sched *S;
  uint8_t kind;
  uint8_t reading;   /* uv_read_start in effect, or a file read on the pool */
  uint8_t wbusy;     /* the write slot is taken: a write in flight, or done and not taken back */
  uint8_t closed;
  uint8_t skip;      /* read_line drops bytes up to the next newline (rest of a too-long line) */
  uint8_t shut;      /* close_write started */
  int fd;            /* stdio: the descriptor; -1 otherwise */
  int rerr;          /* sticky: UV_EOF or the read error */
  int wstatus, sstatus;
  csp_Buf rb;        /* read buffer */
  size_t scan;       /* the first scan bytes of rb hold no newline */
  size_t rat;        /* a file read in flight: the offset in rb it reads into */
  size_t linemax;
  uint64_t rdl, wdl; /* deadlines, uv_hrtime() ns; 0 = none */
  csp_WaitQ rq;      /* readers waiting for data */
  csp_WaitQ wq;      /* writers waiting for their turn */
  csp_WaitQ sq;      /* close_write waiting for the shutdown */
  csp_Req wr;        /* the write in flight: its writer waits on it (free_fn frees the slot) */
  const char *wp;    /* file writes: what is left */
  size_t wlen;
  size_t wsent;      /* the write in flight: bytes its writer knew were out when it started */
  uint8_t wcancel;   /* its writer timed out: a file write stops at the current chunk */
  uv_write_t wreq;
  uv_shutdown_t sreq;
  uv_fs_t rfs, wfs;
  const csp_StreamSrc *src;  /* CSP_ST_SRC: its producer's hooks, and the producer */
  void *srcdata;
};

/* A new stream of that kind (handle not initialised); NULL without memory. */
csp_Stream *csp_stream_alloc(csp_Sched *S, int kind);
/* Closes a stream that no conn owns yet (a failed dial). */
void csp_stream_discard(csp_Stream *s);

/* uv_write of p[0..len), 4 GiB or more included (uv_buf_t lengths are unsigned int). */
int csp_stream_write(uv_write_t *req, uv_stream_t *h, const char *p, size_t len, uv_write_cb cb);

/* Pieces of at most csp_stream_bufmax bytes go to libuv (uv_buf_t lengths are unsigned int);
** CSP_BUFMAX in the environment lowers it so specs can check the splitting. */
#define CSP_BUFMAX_DEFAULT ((size_t)1 << 30)
extern size_t csp_stream_bufmax;

/* The buffer: drops n bytes from its head; starts reading ahead (0 or an error). */
void csp_stream_take(csp_Stream *s, size_t n);
/* A source's producer: appends p[0..n) (0 without memory); the level above which it pauses. */
int csp_stream_put(csp_Stream *s, const char *p, size_t n);
size_t csp_stream_hw(csp_Stream *s);
int csp_stream_start_read(csp_Stream *s);
/* Refs the handle while a reader waits, unrefs it otherwise. */
void csp_stream_settle(csp_Stream *s);
void csp_stream_wake_all(csp_Sched *S, csp_WaitQ *q, int how);
/* Wakes the next writer waiting for its turn. */
void csp_stream_wake_turn(csp_Stream *s);
/* Closes s: waiters wake (wake) or are unlinked (from __gc); memory goes when libuv is done. */
void csp_stream_close(csp_Stream *s, int wake);
/* The write slot is free again (its writer took the result back, or left): the next writer goes. */
void csp_stream_write_end(csp_Stream *s);
/* Write completions: the next file chunk on the pool, a stream write, a shutdown. */
int csp_stream_file_write(csp_Stream *s);
void csp_stream_write_cb(uv_write_t *req, int status);
void csp_stream_shutdown_cb(uv_shutdown_t *req, int status);

/* stdio.c: opens descriptor fd (0..2) as a stream (NULL and *err on failure); releases it. */
csp_Stream *csp_stdio_open(lua_State *L, int fd, int *err);
void csp_stdio_release(int fd);

/* Puts /dev/null on standard descriptors that are closed, before the loop opens any descriptor. */
void csp_stdio_guard(void);

#endif
