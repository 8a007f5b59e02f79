/* httpdl.c: libcurl loaded at the first HTTP request (dlopen), not at `require "csp"`. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http.h"

/* Linked, libcurl and the ~30 libraries it pulls in (OpenSSL, GnuTLS for librtmp, Kerberos,
** LDAP...) cost every process ~20 ms of CPU at load whether it makes a request or not. So
** core.so does not link it: each curl function csp calls is defined below under curl's own
** name (hidden, so csp's calls bind here) and forwards to the library's, bound once per
** process by csp_httpdl_load, under pthread_once (every csp.thread state loads csp: the first
** request of any of them loads and initialises curl, the others wait for it). No curl call
** can come before: every one needs an easy or multi handle, made after the load. */

#define CURL_SONAME "libcurl.so.4"

static struct {
  CURLcode (*global_init)(long);
  curl_version_info_data *(*version_info)(CURLversion);
  CURL *(*easy_init)(void);
  void (*easy_cleanup)(CURL *);
  void (*easy_reset)(CURL *);
  CURLcode (*easy_pause)(CURL *, int);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  const char *(*easy_strerror)(CURLcode);
  CURLM *(*multi_init)(void);
  CURLMcode (*multi_cleanup)(CURLM *);
  CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
  CURLMcode (*multi_add_handle)(CURLM *, CURL *);
  CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
  CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
  CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
  CURLMsg *(*multi_info_read)(CURLM *, int *);
  CURLSH *(*share_init)(void);
  CURLSHcode (*share_cleanup)(CURLSH *);
  CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
  CURLU *(*url)(void);
  void (*url_cleanup)(CURLU *);
  CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
  CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
  void (*free)(void *);
} fn;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_err[256];  /* empty once libcurl is bound and initialised */
static int has_h2;          /* the library speaks HTTP/2 (a build without nghttp2 does not) */

static int httpdl_bind(void *h, const char *lib, void *slot, const char *name) {
  void *f = dlsym(h, name);
  if (f == NULL) snprintf(load_err, sizeof load_err, "http: %s has no %s", lib, name);
  else memcpy(slot, &f, sizeof f);  /* a data pointer to a function pointer, as POSIX allows */
  return f != NULL;
}

#define BIND(f) ok = ok && httpdl_bind(h, lib, &fn.f, "curl_" #f)

/* $CSP_LIBCURL, when set, names the library instead (another build, another soname). */
static void httpdl_load(void) {
  const char *path = getenv("CSP_LIBCURL"), *lib = path != NULL && *path ? path : CURL_SONAME;
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  int ok = 1;
  if (h == NULL) {
    snprintf(load_err, sizeof load_err, "http: cannot load libcurl: %s", dlerror());
    return;
  }
  BIND(global_init); BIND(version_info); BIND(easy_init); BIND(easy_cleanup); BIND(easy_reset);
  BIND(easy_pause); BIND(easy_setopt); BIND(easy_getinfo); BIND(easy_strerror); BIND(multi_init);
  BIND(multi_cleanup); BIND(multi_setopt); BIND(multi_add_handle); BIND(multi_remove_handle);
  BIND(multi_assign); BIND(multi_socket_action); BIND(multi_info_read); BIND(share_init);
  BIND(share_cleanup); BIND(share_setopt); BIND(slist_append); BIND(slist_free_all); BIND(url);
  BIND(url_cleanup); BIND(url_set); BIND(url_get); BIND(free);
  if (ok && fn.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    snprintf(load_err, sizeof load_err, "http: curl_global_init failed");
  if (ok) has_h2 = (fn.version_info(CURLVERSION_NOW)->features & CURL_VERSION_HTTP2) != 0;
  /* never dlclosed: curl's global state lives until the process ends */
}

/* Raises the load's error in every state that tries (a missing libcurl is not retried). */
void csp_httpdl_load(lua_State *L) {
  pthread_once(&load_once, httpdl_load);
  if (load_err[0] != '\0') luaL_error(L, "%s", load_err);
}

/* Whether the loaded libcurl speaks HTTP/2 (after csp_httpdl_load). */
int csp_httpdl_h2(void) {
  return has_h2;
}

/* ---------------------------------------------------------------- the forwarders */

CURL *curl_easy_init(void) { return fn.easy_init(); }
void curl_easy_cleanup(CURL *e) { fn.easy_cleanup(e); }
void curl_easy_reset(CURL *e) { fn.easy_reset(e); }
CURLcode curl_easy_pause(CURL *e, int mask) { return fn.easy_pause(e, mask); }
const char *curl_easy_strerror(CURLcode c) { return fn.easy_strerror(c); }
CURLM *curl_multi_init(void) { return fn.multi_init(); }
CURLMcode curl_multi_cleanup(CURLM *m) { return fn.multi_cleanup(m); }
CURLMcode curl_multi_add_handle(CURLM *m, CURL *e) { return fn.multi_add_handle(m, e); }
CURLMcode curl_multi_remove_handle(CURLM *m, CURL *e) { return fn.multi_remove_handle(m, e); }
CURLMcode curl_multi_assign(CURLM *m, curl_socket_t s, void *p) { return fn.multi_assign(m, s, p); }
CURLMsg *curl_multi_info_read(CURLM *m, int *left) { return fn.multi_info_read(m, left); }
CURLSH *curl_share_init(void) { return fn.share_init(); }
CURLSHcode curl_share_cleanup(CURLSH *s) { return fn.share_cleanup(s); }
void curl_slist_free_all(struct curl_slist *l) { fn.slist_free_all(l); }
CURLU *curl_url(void) { return fn.url(); }
void curl_url_cleanup(CURLU *u) { fn.url_cleanup(u); }
void curl_free(void *p) { fn.free(p); }

CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t s, int ev, int *running) {
  return fn.multi_socket_action(m, s, ev, running);
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s) {
  return fn.slist_append(l, s);
}

CURLUcode curl_url_set(CURLU *u, CURLUPart what, const char *part, unsigned int flags) {
  return fn.url_set(u, what, part, flags);
}

CURLUcode curl_url_get(CURLU *u, CURLUPart what, char **part, unsigned int flags) {
  return fn.url_get(u, what, part, flags);
}

/* The variadic ones take their one argument by the option's type range, as curl reads it:
** long below OBJECTPOINT, a pointer (object or function) up to OFF_T, curl_off_t up to BLOB,
** then a blob pointer. The names are parenthesised: curl's typecheck macros stay out. */
#define SETOPT_FORWARD(call, o, ap)                                            \
  ((o) < CURLOPTTYPE_OBJECTPOINT ? call(va_arg(ap, long))                      \
   : (o) < CURLOPTTYPE_OFF_T     ? call(va_arg(ap, void *))                    \
   : (o) < CURLOPTTYPE_BLOB      ? call(va_arg(ap, curl_off_t))                \
                                 : call(va_arg(ap, void *)))

CURLcode (curl_easy_setopt)(CURL *e, CURLoption o, ...) {
  CURLcode rc;
  va_list ap;
  va_start(ap, o);
#define CALL(v) fn.easy_setopt(e, o, v)
  rc = SETOPT_FORWARD(CALL, o, ap);
#undef CALL
  va_end(ap);
  return rc;
}

CURLMcode (curl_multi_setopt)(CURLM *m, CURLMoption o, ...) {
  CURLMcode rc;
  va_list ap;
  va_start(ap, o);
#define CALL(v) fn.multi_setopt(m, o, v)
  rc = SETOPT_FORWARD(CALL, o, ap);
#undef CALL
  va_end(ap);
  return rc;
}

/* Every CURLINFO_* takes a pointer to the result. */
CURLcode (curl_easy_getinfo)(CURL *e, CURLINFO i, ...) {
  CURLcode rc;
  va_list ap;
  va_start(ap, i);
  rc = fn.easy_getinfo(e, i, va_arg(ap, void *));
  va_end(ap);
  return rc;
}

/* CURLSHOPT_SHARE and _UNSHARE take an int (a CURL_LOCK_DATA_*); the others a pointer. */
CURLSHcode (curl_share_setopt)(CURLSH *s, CURLSHoption o, ...) {
  CURLSHcode rc;
  va_list ap;
  va_start(ap, o);
  if (o == CURLSHOPT_SHARE || o == CURLSHOPT_UNSHARE) rc = fn.share_setopt(s, o, va_arg(ap, int));
  else rc = fn.share_setopt(s, o, va_arg(ap, void *));
  va_end(ap);
  return rc;
}
