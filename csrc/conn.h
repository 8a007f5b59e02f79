/* conn.h: the csp.conn userdata, shared by conn.c (the userdata) and connio.c (its reads and writes). */
#ifndef CSP_CONN_H
#define CSP_CONN_H

#include "stream.h"

/* The Lua side of a stream. s is NULL once closed, or while a stdio stream is not opened yet
** (lazy >= 0: its descriptor): opening stdio makes it non-blocking, so only its users pay. */
typedef struct csp_Conn {
  const void *tag;
  csp_Stream *s;
  int lazy;
  int isnet;
  char name[136];      /* for messages: "tcp 127.0.0.1:8000->127.0.0.1:41234", "/dev/stdin" */
  char laddr[64], raddr[64];
} csp_Conn;

extern const char csp_conn_tag;
csp_Stream *csp_conn_stdio(lua_State *L, csp_Conn *c, int *err);

/* The conn at argument 1. Inline, as the stream below: every method starts with both. */
static inline csp_Conn *csp_conn_check(lua_State *L) {
  return (csp_Conn *)csp_checktag(L, 1, &csp_conn_tag, sizeof(csp_Conn), "csp.conn");
}

/* The conn's stream, opening stdio on first use; NULL when closed (or *err: stdio failed). */
static inline csp_Stream *csp_conn_stream(lua_State *L, csp_Conn *c, int *err) {
  *err = 0;
  if (c->s != NULL || c->lazy < 0) return c->s;
  return csp_conn_stdio(L, c, err);
}

/* conn.c: c:close(); op's failure with a libuv code, and on a closed conn. */
int csp_conn_close(lua_State *L);
int csp_conn_err(lua_State *L, csp_Conn *c, const char *op, int code);
int csp_conn_errclosed(lua_State *L, csp_Conn *c, const char *op);

/* Pushes a conn owning s (a connected tcp stream); names it from its addresses. */
void csp_conn_push(lua_State *L, csp_Stream *s);
/* Formats a socket address as Go does: 1.2.3.4:80, [::1]:80. */
void csp_conn_addrname(const struct sockaddr *sa, char *out, size_t size);
/* Registers the conn type and csp.stdin/stdout/stderr (stack: [module, sched]). */
void csp_conn_open(lua_State *L);

/* connio.c: the methods that read and write (they park). */
int csp_connio_read(lua_State *L);
int csp_connio_read_line(lua_State *L);
int csp_connio_lines(lua_State *L);
int csp_connio_set_max_line(lua_State *L);
int csp_connio_write(lua_State *L);
int csp_connio_close_write(lua_State *L);

#endif
