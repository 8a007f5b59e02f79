/* stdio.c: the standard descriptors as streams: guarding closed ones, opening them on first use,
** restoring their flags when the last user closes and at exit. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "stream.h"

/* ---------------------------------------------------------------- stdio descriptors */
/* libuv makes a descriptor non-blocking (and may reopen a tty): the flags it had are put back
** when the last stream on it closes, and at exit. */
static int stdio_users[3], stdio_flags[3], stdio_atexit;
static pthread_mutex_t stdio_mu = PTHREAD_MUTEX_INITIALIZER;  /* csp.threads share them */

static void stdio_restore(void) {
  for (int fd = 0; fd < 3; fd++) {
    if (stdio_users[fd] > 0) fcntl(fd, F_SETFL, stdio_flags[fd]);
    stdio_users[fd] = 0;
  }
  uv_tty_reset_mode();
}

static void stdio_acquire(int fd) {
  pthread_mutex_lock(&stdio_mu);
  if (stdio_users[fd]++ == 0) stdio_flags[fd] = fcntl(fd, F_GETFL);
  if (!stdio_atexit) {
    stdio_atexit = 1;
    atexit(stdio_restore);  /* also runs if the library is unloaded (glibc ties it to the DSO) */
  }
  pthread_mutex_unlock(&stdio_mu);
}

void csp_stdio_release(int fd) {
  pthread_mutex_lock(&stdio_mu);
  if (stdio_users[fd] > 0 && --stdio_users[fd] == 0) {
    fcntl(fd, F_SETFL, stdio_flags[fd]);
    uv_tty_reset_mode();
  }
  pthread_mutex_unlock(&stdio_mu);
}

/* Standard descriptors that were closed when csp was first loaded: /dev/null stands in for them
** (libuv asserts that none of its own descriptors is 0, 1 or 2, and would otherwise get one),
** and csp.stdin/stdout/stderr report them closed. */
static uint8_t stdio_was_closed[3];

void csp_stdio_guard(void) {
  for (int fd = 0; fd < 3; fd++) {
    int nfd;
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    stdio_was_closed[fd] = 1;
    nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);  /* the lowest free: fd itself */
    if (nfd >= 0 && nfd != fd) {
      dup2(nfd, fd);
      close(nfd);
    }
  }
}

csp_Stream *csp_stdio_open(lua_State *L, int fd, int *err) {
  csp_Sched *S = csp_sched_get(L);
  uv_handle_type t = stdio_was_closed[fd] ? UV_UNKNOWN_HANDLE : uv_guess_handle(fd);
  int kind, r = 0;
  csp_Stream *s;
  struct stat st;
  switch (t) {
    case UV_TTY: kind = CSP_ST_TTY; break;
    case UV_NAMED_PIPE: kind = CSP_ST_PIPE; break;
    case UV_TCP: kind = CSP_ST_TCP; break;
    case UV_FILE: kind = CSP_ST_FILE; break;
    default:  /* a directory or a block device reads as a file: read(2) has its say (EISDIR) */
      if (t != UV_UNKNOWN_HANDLE || stdio_was_closed[fd] || fstat(fd, &st) != 0 ||
          !(S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))) {
        *err = UV_EBADF;
        return NULL;
      }
      kind = CSP_ST_FILE;
  }
  if ((s = csp_stream_alloc(S, kind)) == NULL) {
    *err = UV_ENOMEM;
    return NULL;
  }
  stdio_acquire(fd);
  s->fd = fd;
  switch (kind) {
    case CSP_ST_TTY:
      if (uv_tty_init(S->loop, &s->u.tty, fd, fd == 0) != 0) s->kind = CSP_ST_FILE;  /* not registered */
      break;
    case CSP_ST_PIPE:
      uv_pipe_init(S->loop, &s->u.pipe, 0);
      r = uv_pipe_open(&s->u.pipe, fd);
      break;
    case CSP_ST_TCP:
      uv_tcp_init(S->loop, &s->u.tcp);
      r = uv_tcp_open(&s->u.tcp, fd);
      break;
  }
  if (r != 0) {
    *err = r;
    csp_stdio_release(fd);
    s->fd = -1;
    csp_stream_discard(s);
    return NULL;
  }
  if (s->kind != CSP_ST_FILE) uv_unref(&s->u.h);
  return s;
}

/* ---------------------------------------------------------------- conn objects */
