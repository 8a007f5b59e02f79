/* fs.c: filesystem operations on libuv's thread pool (readdir, stat, dirstat, readfile, writefile). */
#include "csp.h"

void csp_fs_open(lua_State *L) {
  (void)L;
}
