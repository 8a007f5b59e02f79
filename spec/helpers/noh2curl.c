/* noh2curl: the system libcurl as a build without HTTP/2 (no nghttp2) shows itself, for
** CSP_LIBCURL in https_spec. curl 7.88's setopt.c, built without USE_HTTP2, refuses
** CURLOPT_HTTP_VERSION >= CURL_HTTP_VERSION_2_0 with CURLE_UNSUPPORTED_PROTOCOL, and
** curl_version_info leaves CURL_VERSION_HTTP2 out. Every other curl_* is the real one: this
** library is linked against libcurl, and dlsym on its handle searches its dependencies. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <curl/curl.h>

CURLcode (curl_easy_setopt)(CURL *e, CURLoption o, ...) {
  CURLcode (*real)(CURL *, CURLoption, ...);
  void *f = dlsym(RTLD_NEXT, "curl_easy_setopt");
  CURLcode rc;
  va_list ap;
  *(void **)&real = f;
  va_start(ap, o);
  if (o == CURLOPT_HTTP_VERSION) {
    long v = va_arg(ap, long);
    rc = v >= CURL_HTTP_VERSION_2_0 ? CURLE_UNSUPPORTED_PROTOCOL : real(e, o, v);
  } else if (o < CURLOPTTYPE_OBJECTPOINT) {
    rc = real(e, o, va_arg(ap, long));
  } else if (o < CURLOPTTYPE_OFF_T) {
    rc = real(e, o, va_arg(ap, void *));
  } else if (o < CURLOPTTYPE_BLOB) {
    rc = real(e, o, va_arg(ap, curl_off_t));
  } else {
    rc = real(e, o, va_arg(ap, void *));
  }
  va_end(ap);
  return rc;
}

curl_version_info_data *curl_version_info(CURLversion v) {
  static curl_version_info_data copy;
  curl_version_info_data *(*real)(CURLversion);
  *(void **)&real = dlsym(RTLD_NEXT, "curl_version_info");
  copy = *real(v);
  copy.features &= ~CURL_VERSION_HTTP2;
  return &copy;
}
