/* net.c: tcp listen, accept and dial; names resolved on libuv's thread pool. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conn.h"

#define BACKLOG 4096  /* the kernel clamps it to net.core.somaxconn */
#define MAXADDR 8     /* addresses of one name tried by dial */

static const char ln_tag = 0;

/* C memory, the handle first: freed (by free) in its close callback. */
typedef struct Listen {
  uv_tcp_t tcp;
  csp_Sched *S;
  csp_WaitQ aq;        /* goroutines in accept */
  int pending;         /* libuv holds an accepted descriptor for us */
  int err;             /* an accept error to report */
} Listen;

typedef struct Listener {
  const void *tag;
  Listen *l;           /* NULL once closed */
  char net[8];
  char addr[64];
} Listener;

/* One listen or dial in progress: a request (wait.c) whose memory outlives a timed-out wait
** until libuv's callback has run. */
enum { P_NONE, P_GAI, P_CONNECT };

typedef struct NetReq {
  csp_Req req;         /* first member: free_fn gets the NetReq */
  csp_Sched *S;
  csp_G *g;            /* the caller, when the request may park */
  char op;             /* 'd'ial or 'l'isten */
  uint8_t phase;       /* request in flight, or the one whose result waits for the goroutine */
  uint8_t nohost;      /* ":port": Go names the address so in a dial's error */
  int status;
  int family;
  int port;
  uint64_t deadline;
  uv_getaddrinfo_t gai;
  struct addrinfo *res;
  uv_connect_t creq;
  csp_Stream *s;       /* being connected */
  struct sockaddr_storage addrs[MAXADDR];
  int naddr, next;
  char net[8];
  char addr[256];      /* as given */
  char host[256];
  char last[64];       /* last address tried */
} NetReq;

/* ---------------------------------------------------------------- addresses */

static const char *check_net(lua_State *L, int *family) {
  size_t n;
  const char *net = luaL_checklstring(L, 1, &n);
  if (strlen(net) != n) luaL_argerror(L, 1, "unknown network (a NUL byte in it)");
  else if (strcmp(net, "tcp") == 0) *family = AF_UNSPEC;
  else if (strcmp(net, "tcp4") == 0) *family = AF_INET;
  else if (strcmp(net, "tcp6") == 0) *family = AF_INET6;
  else luaL_argerror(L, 1, lua_pushfstring(L, "unknown network %s", net));
  return net;
}

/* A service name for a port ("http"), looked up as Go does: lower-cased, in /etc/services (a
** local file, read on the loop thread); NULL or "unknown port". */
static const char *service_port(const char *name, int *port) {
  char lower[64], buf[1024];
  struct servent se, *res = NULL;
  size_t i;
  for (i = 0; i < sizeof lower - 1 && name[i]; i++)
    lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] - 'A' + 'a' : name[i]);
  lower[i] = '\0';
  if (name[i] != '\0' || getservbyname_r(lower, "tcp", &se, buf, sizeof buf, &res) != 0 || res == NULL)
    return "unknown port";
  *port = ntohs((uint16_t)res->s_port);
  return NULL;
}

/* Splits "host:port", "[v6]:port" or ":port" (Go's net.SplitHostPort); NULL or the complaint.
** The port as Go's parsePort takes it: empty is 0, a sign may lead the digits ("-1" is an
** invalid port, not a service name). */
static const char *split_hostport(const char *a, char *host, size_t hsz, int *port) {
  const char *colon, *p;
  size_t hl;
  long v = 0;
  int neg = 0;
  if (a[0] == '[') {
    const char *end = strchr(a, ']');
    if (end == NULL) return "missing ']' in address";
    if (end[1] != ':') return end[1] ? "unexpected ']' in address" : "missing port in address";
    hl = (size_t)(end - a - 1);
    if (hl >= hsz) return "address too long";
    memcpy(host, a + 1, hl);
    colon = end + 1;
  } else {
    colon = strrchr(a, ':');
    if (colon == NULL) return "missing port in address";
    if (memchr(a, ':', (size_t)(colon - a)) != NULL) return "too many colons in address";
    hl = (size_t)(colon - a);
    if (hl >= hsz) return "address too long";
    memcpy(host, a, hl);
  }
  host[hl] = '\0';
  p = colon + 1;
  if ((*p == '+' || *p == '-') && p[1] != '\0' && p[1 + strspn(p + 1, "0123456789")] == '\0')
    neg = *p++ == '-';
  else if (p[strspn(p, "0123456789")] != '\0') return service_port(p, port);
  for (; *p; p++) {
    if ((v = v * 10 + (*p - '0')) > 65535) return "invalid port";
  }
  if (neg && v != 0) return "invalid port";
  *port = (int)v;
  return NULL;
}

/* A numeric host: fills sa; 0 if it is a name. */
static int numeric_addr(const char *host, int port, struct sockaddr_storage *sa) {
  memset(sa, 0, sizeof *sa);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)sa) == 0) return 1;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)sa) == 0) return 1;
  return 0;
}

/* Keeps the resolved addresses of the wanted family, IPv4 first (Go prefers it for listen). */
static void collect_addrs(NetReq *r) {
  for (int pass = 0; pass < 2; pass++) {
    int fam = pass == 0 ? AF_INET : AF_INET6;
    if (r->family != AF_UNSPEC && r->family != fam) continue;
    for (struct addrinfo *ai = r->res; ai != NULL && r->naddr < MAXADDR; ai = ai->ai_next) {
      if (ai->ai_family != fam) continue;
      memcpy(&r->addrs[r->naddr], ai->ai_addr, ai->ai_addrlen);
      if (fam == AF_INET) ((struct sockaddr_in *)&r->addrs[r->naddr])->sin_port = htons((uint16_t)r->port);
      else ((struct sockaddr_in6 *)&r->addrs[r->naddr])->sin6_port = htons((uint16_t)r->port);
      r->naddr++;
    }
  }
  uv_freeaddrinfo(r->res);
  r->res = NULL;
}

/* ---------------------------------------------------------------- requests */

static void req_free(NetReq *r) {
  if (r->res) uv_freeaddrinfo(r->res);
  if (r->s) csp_stream_discard(r->s);
  free(r);
}

/* free_fn of the request's wait: nobody will come for the result. */
static void req_release(csp_Req *q) {
  req_free((NetReq *)(void *)q);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  NetReq *r = (NetReq *)req->data;
  r->status = status;
  r->res = res;
  csp_req_done(&r->req, 0);
}

static void connect_cb(uv_connect_t *req, int status) {
  NetReq *r = (NetReq *)req->data;
  r->status = status;
  csp_req_done(&r->req, 0);
}

static int net_k(lua_State *L, int status, lua_KContext ctx);

static int net_park(lua_State *L, NetReq *r) {
  if (r->deadline) csp_wait_deadline(L, r->g, r->deadline);
  return csp_req_park(L, &r->req, r->g, "IO wait", (lua_KContext)r, net_k);
}

static int req_error(lua_State *L, NetReq *r, const char *fmt, int code) {
  csp_fail(L, uv_err_name(code), fmt, r->op == 'd' ? "dial" : "listen", r->net,
           r->last[0] ? r->last : r->addr, csp_strerror(code));
  req_free(r);
  return 3;
}

/* ---------------------------------------------------------------- listen */

static void ln_settle(Listen *l) {
  if (l->aq.head) uv_ref((uv_handle_t *)&l->tcp);
  else uv_unref((uv_handle_t *)&l->tcp);
}

static void ln_conn_cb(uv_stream_t *h, int status) {
  Listen *l = (Listen *)h;
  csp_Waiter *w;
  if (status < 0) l->err = status;
  else l->pending = 1;
  if ((w = csp_wq_take(&l->aq)) != NULL) csp_sched_ready(l->S, w->g, 0);
  ln_settle(l);
}

static int listen_on(lua_State *L, NetReq *r, const struct sockaddr *sa) {
  Listener *u = (Listener *)lua_newuserdatauv(L, sizeof *u, 0);
  Listen *l;
  struct sockaddr_storage ss;
  int e, len = sizeof ss;
  memset(u, 0, sizeof *u);
  u->tag = &ln_tag;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ln_tag);
  lua_setmetatable(L, -2);
  snprintf(u->net, sizeof u->net, "%s", r->net);
  csp_conn_addrname(sa, r->last, sizeof r->last);
  if ((l = calloc(1, sizeof *l)) == NULL) {
    req_free(r);
    return luaL_error(L, "not enough memory");
  }
  l->S = r->S;
  uv_tcp_init(r->S->loop, &l->tcp);
  e = uv_tcp_bind(&l->tcp, sa, 0);
  if (e == 0) e = uv_listen((uv_stream_t *)&l->tcp, BACKLOG, ln_conn_cb);
  if (e != 0) {
    uv_close((uv_handle_t *)&l->tcp, csp_close_free);
    return req_error(L, r, "%s %s %s: bind: %s", e);
  }
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) == 0)
    csp_conn_addrname((struct sockaddr *)&ss, u->addr, sizeof u->addr);
  uv_unref((uv_handle_t *)&l->tcp);
  u->l = l;
  req_free(r);
  return 1;
}

/* ---------------------------------------------------------------- dial */

/* Continues a listen or dial after its last step: name resolved, or a connect finished. */
static int net_step(lua_State *L, NetReq *r) {
  int e;
  if (r->phase == P_GAI) {
    r->phase = P_NONE;
    if (r->status < 0) {
      csp_fail(L, uv_err_name(r->status), "%s %s: lookup %s: %s", r->op == 'd' ? "dial" : "listen",
               r->net, r->host, r->status == UV_EAI_NONAME ? "no such host" : csp_strerror(r->status));
      req_free(r);
      return 3;
    }
    collect_addrs(r);
    if (r->naddr == 0) {
      csp_fail(L, "EAI_ADDRFAMILY", "%s %s: lookup %s: no suitable address found",
               r->op == 'd' ? "dial" : "listen", r->net, r->host);
      req_free(r);
      return 3;
    }
  } else if (r->phase == P_CONNECT) {
    r->phase = P_NONE;
    if (r->status == 0) {
      csp_Stream *s = r->s;
      r->s = NULL;
      req_free(r);
      csp_conn_push(L, s);
      return 1;
    }
    csp_stream_discard(r->s);
    r->s = NULL;
    r->next++;
  }
  if (r->op == 'l') return listen_on(L, r, (struct sockaddr *)&r->addrs[0]);
  while (r->next < r->naddr) {
    const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[r->next];
    csp_Stream *s = csp_stream_alloc(r->S, CSP_ST_TCP);
    if (r->nohost) snprintf(r->last, sizeof r->last, ":%d", r->port);
    else csp_conn_addrname(sa, r->last, sizeof r->last);
    if (s == NULL) {
      req_free(r);
      return luaL_error(L, "not enough memory");
    }
    uv_tcp_init(r->S->loop, &s->u.tcp);
    r->creq.data = r;
    if ((e = uv_tcp_connect(&r->creq, &s->u.tcp, sa, connect_cb)) == 0) {
      r->s = s;
      r->phase = P_CONNECT;
      return net_park(L, r);
    }
    csp_stream_discard(s);
    r->status = e;
    r->next++;
  }
  return req_error(L, r, "%s %s %s: connect: %s", r->status);
}

static int net_k(lua_State *L, int status, lua_KContext ctx) {
  NetReq *r = (NetReq *)ctx;
  csp_G *g = r->g;
  int done;
  if (status == LUA_YIELD) csp_sched_checkresume(L, g);
  csp_wait_undeadline(g);
  done = csp_req_end(&r->req);
  if (g->wake == CSP_WAKE_TIMEOUT) {
    csp_fail(L, "ETIMEDOUT", "%s %s %s: i/o timeout", r->op == 'd' ? "dial" : "listen", r->net,
             r->addr);
    if (done) {
      req_free(r);
    } else if (r->phase == P_CONNECT) {  /* still in flight: its callback frees r */
      csp_stream_discard(r->s);
      r->s = NULL;
    } else {
      uv_cancel((uv_req_t *)&r->gai);
    }
    return 3;
  }
  return net_step(L, r);
}

/* Parses the arguments into a new request; pushes nil, err and returns NULL on a bad address.
** The goroutine is taken first when the request will park (blocking may raise: nothing leaks). */
static NetReq *req_new(lua_State *L, char op, double timeout) {
  csp_Sched *S = csp_sched_get(L);
  int family = AF_UNSPEC, port = 0;
  const char *net = check_net(L, &family);
  size_t alen;
  const char *addr = luaL_checklstring(L, 2, &alen);
  const char *bad;
  char host[256];
  struct sockaddr_storage sa;
  csp_G *g = NULL;
  NetReq *r;
  int nohost;
  if (strlen(addr) != alen) {  /* the address would be read up to the NUL */
    csp_fail(L, "EINVAL", "%s %s: address with a NUL byte", op == 'd' ? "dial" : "listen", net);
    return NULL;
  }
  if (op == 'd' && alen == 0) {
    csp_fail(L, "EINVAL", "dial %s: missing address", net);
    return NULL;
  }
  if (alen == 0) {  /* listen "": every interface, a free port (Go) */
    host[0] = '\0';
  } else if ((bad = split_hostport(addr, host, sizeof host, &port)) != NULL) {
    if (strcmp(bad, "unknown port") == 0) {  /* Go's DNSError for the service lookup */
      csp_fail(L, "ENOENT", "%s %s: lookup tcp/%s: unknown port", op == 'd' ? "dial" : "listen", net,
               strrchr(addr, ':') + 1);
      return NULL;
    }
    if (strcmp(bad, "invalid port") == 0) addr = strrchr(addr, ':') + 1;  /* Go names the port */
    csp_fail(L, "EINVAL", "%s %s: address %s: %s", op == 'd' ? "dial" : "listen", net, addr, bad);
    return NULL;
  }
  nohost = host[0] == '\0';
  if (nohost) {  /* all interfaces; dialing ":port" means the local system (Go) */
    const char *any = op == 'l' ? (family == AF_INET ? "0.0.0.0" : "::")
                                : (family == AF_INET6 ? "::1" : "127.0.0.1");
    snprintf(host, sizeof host, "%s", any);
  }
  if (op == 'd' || !numeric_addr(host, port, &sa)) g = csp_sched_self(L, S);
  if ((r = calloc(1, sizeof *r)) == NULL) {
    luaL_error(L, "not enough memory");
    return NULL;
  }
  r->g = g;
  r->req.free_fn = req_release;
  r->S = S;
  r->op = op;
  r->family = family;
  r->port = port;
  r->nohost = (uint8_t)nohost;
  snprintf(r->net, sizeof r->net, "%s", net);
  snprintf(r->addr, sizeof r->addr, "%s", addr);
  snprintf(r->host, sizeof r->host, "%s", host);
  if (timeout != 0) {  /* a negative or NaN timeout is already past */
    r->deadline = uv_hrtime() + csp_timer_secs(timeout);
    if (r->deadline == 0) r->deadline = 1;
  }
  return r;
}

/* Starts: a numeric host needs no lookup; a name is resolved on the thread pool. */
static int net_start(lua_State *L, NetReq *r) {
  struct addrinfo hints;
  int e;
  if (numeric_addr(r->host, r->port, &r->addrs[0])) {
    int fam = r->addrs[0].ss_family;
    if (r->family != AF_UNSPEC && r->family != fam) {
      csp_fail(L, "EAI_ADDRFAMILY", "%s %s: address %s: no suitable address found",
               r->op == 'd' ? "dial" : "listen", r->net, r->addr);
      req_free(r);
      return 3;
    }
    r->naddr = 1;
    return net_step(L, r);
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_family = r->family;
  hints.ai_socktype = SOCK_STREAM;
  r->gai.data = r;
  r->phase = P_GAI;
  if ((e = uv_getaddrinfo(r->S->loop, &r->gai, gai_cb, r->host, NULL, &hints)) != 0) {
    r->status = e;
    return net_step(L, r);
  }
  return net_park(L, r);
}

/* csp.net.dial(network, address [, {timeout = seconds}]) -> conn | nil, err, code */
static int net_dial(lua_State *L) {
  NetReq *r;
  double timeout = 0;
  if (lua_istable(L, 3)) {
    if (lua_getfield(L, 3, "timeout") != LUA_TNIL) {
      timeout = lua_tonumber(L, -1);
      if (lua_type(L, -1) != LUA_TNUMBER || timeout != timeout)
        luaL_argerror(L, 3, lua_pushfstring(L, "field 'timeout': number expected, got %s",
                                            timeout != timeout ? "nan" : luaL_typename(L, -1)));
    }
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 3)) {
    luaL_typeerror(L, 3, "table");
  }
  if ((r = req_new(L, 'd', timeout)) == NULL) return 3;
  return net_start(L, r);
}

/* csp.net.listen(network, address) -> listener | nil, err, code */
static int net_listen(lua_State *L) {
  NetReq *r = req_new(L, 'l', 0);
  if (r == NULL) return 3;
  return net_start(L, r);
}

/* ---------------------------------------------------------------- listener methods */

static Listener *ln_check(lua_State *L) {
  return (Listener *)csp_checktag(L, 1, &ln_tag, sizeof(Listener), "csp.listener");
}

static int ln_error(lua_State *L, Listener *u, int code) {
  return csp_fail(L, uv_err_name(code), "accept %s %s: %s", u->net, u->addr, csp_strerror(code));
}

static int accept_k(lua_State *L, int status, lua_KContext ctx);

static int accept_run(lua_State *L, Listener *u) {
  Listen *l = u->l;
  csp_G *g;
  int e;
  if (l == NULL) {
    return csp_fail(L, "EBADF", "accept %s %s: use of closed network connection", u->net, u->addr);
  }
  if (l->pending) {
    csp_Stream *s = csp_stream_alloc(l->S, CSP_ST_TCP);
    if (s == NULL) return luaL_error(L, "not enough memory");
    uv_tcp_init(l->S->loop, &s->u.tcp);
    e = uv_accept((uv_stream_t *)&l->tcp, &s->u.s);
    l->pending = 0;
    if (e == 0) {
      csp_conn_push(L, s);
      return 1;
    }
    csp_stream_discard(s);
    if (e != UV_EAGAIN) return ln_error(L, u, e);
  }
  if (l->err) {
    e = l->err;
    l->err = 0;
    return ln_error(L, u, e);
  }
  g = csp_sched_self(L, l->S);
  g->w.caseidx = 0;
  csp_wq_push(&l->aq, &g->w);
  ln_settle(l);
  return csp_sched_park(L, g, "IO wait", (lua_KContext)g, accept_k);
}

static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  Listener *u = (Listener *)lua_touserdata(L, 1);
  if (status == LUA_YIELD) csp_sched_checkresume(L, (csp_G *)ctx);
  if (u->l) ln_settle(u->l);
  return accept_run(L, u);
}

static int ln_accept(lua_State *L) {
  Listener *u = ln_check(L);
  CSP_PREEMPT(L, csp_sched_get(L), ln_accept);
  lua_settop(L, 1);
  return accept_run(L, u);
}

static int ln_addr(lua_State *L) {
  lua_pushstring(L, ln_check(L)->addr);
  return 1;
}

static void ln_shut(Listen *l, int wake) {
  csp_Waiter *w;
  while ((w = csp_wq_take(&l->aq)) != NULL) {
    if (wake) {
      w->g->wake = CSP_WAKE_CLOSED;
      csp_sched_ready(l->S, w->g, 0);
    }
  }
  uv_close((uv_handle_t *)&l->tcp, csp_close_free);
}

/* ln:close(): a goroutine blocked in accept gets nil, err. */
static int ln_close(lua_State *L) {
  Listener *u = ln_check(L);
  Listen *l = u->l;
  if (l == NULL) {
    return csp_fail(L, "EBADF", "close %s %s: use of closed network connection", u->net, u->addr);
  }
  u->l = NULL;
  ln_shut(l, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int ln_gc(lua_State *L) {
  Listener *u = (Listener *)lua_touserdata(L, 1);
  if (u->l) {
    Listen *l = u->l;
    u->l = NULL;
    ln_shut(l, 0);
  }
  return 0;
}

static int ln_tostring(lua_State *L) {
  Listener *u = ln_check(L);
  lua_pushfstring(L, "csp.listener (%s %s%s)", u->net, u->addr, u->l ? "" : ", closed");
  return 1;
}

/* Stack: [module, sched]. */
void csp_net_open(lua_State *L) {
  static const luaL_Reg funcs[] = {{"listen", net_listen}, {"dial", net_dial}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
    {"accept", ln_accept}, {"addr", ln_addr}, {"close", ln_close}, {NULL, NULL}
  };
  static const luaL_Reg meta[] = {
    {"__gc", ln_gc}, {"__close", ln_close}, {"__tostring", ln_tostring}, {NULL, NULL}
  };
  csp_newmeta(L, "csp.listener", methods, meta);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ln_tag);

  lua_createtable(L, 0, 2);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, funcs, 1);
  lua_setfield(L, -3, "net");

  csp_conn_open(L);
}
