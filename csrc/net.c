/* net.c: tcp listen, accept and dial, name resolution. */
#include "csp.h"

void csp_net_open(lua_State *L) {
  (void)L;
}
