/* uvecho.c: the echo benchmark's floor: a TCP echo server in C on libuv, no Lua. Each chunk read
** goes back at once (uv_try_write, else a queued uv_write of a copy): the least any runtime on
** libuv does per request, with one read and one write a 64-byte line as csp's server makes.
** Usage: uvecho host:port */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct Write {
  uv_write_t req;
  char data[];
} Write;

static void on_close(uv_handle_t *h) {
  free(h);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  static char slab[65536];  /* one connection is served at a time: the loop is single-threaded */
  (void)h;
  (void)hint;
  *buf = uv_buf_init(slab, sizeof slab);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (n == 0) return;
  uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
  int sent = uv_try_write(s, &b, 1);
  if (sent == (int)n) return;
  if (sent < 0) sent = 0;
  Write *w = malloc(sizeof *w + (size_t)(n - sent));
  if (w == NULL) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  memcpy(w->data, buf->base + sent, (size_t)(n - sent));
  b = uv_buf_init(w->data, (unsigned)(n - sent));
  if (uv_write(&w->req, s, &b, 1, on_written) != 0) free(w);
}

static void on_conn(uv_stream_t *ln, int status) {
  uv_tcp_t *c;
  if (status < 0 || (c = malloc(sizeof *c)) == NULL) return;
  uv_tcp_init(ln->loop, c);
  uv_tcp_nodelay(c, 1);  /* as csp and Go */
  if (uv_accept(ln, (uv_stream_t *)c) != 0 ||
      uv_read_start((uv_stream_t *)c, on_alloc, on_read) != 0)
    uv_close((uv_handle_t *)c, on_close);
}

int main(int argc, char **argv) {
  char host[256];
  int port;
  struct sockaddr_in addr;
  uv_tcp_t ln;
  if (argc != 2 || sscanf(argv[1], "%255[^:]:%d", host, &port) != 2) {
    fprintf(stderr, "usage: uvecho host:port\n");
    return 2;
  }
  uv_tcp_init(uv_default_loop(), &ln);
  if (uv_ip4_addr(host, port, &addr) != 0 ||
      uv_tcp_bind(&ln, (const struct sockaddr *)&addr, 0) != 0 ||
      uv_listen((uv_stream_t *)&ln, 511, on_conn) != 0) {
    fprintf(stderr, "uvecho: cannot listen on %s\n", argv[1]);
    return 1;
  }
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
