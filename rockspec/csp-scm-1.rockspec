rockspec_format = "3.0"
package = "csp"
version = "scm-1"
-- `luarocks make rockspec/csp-scm-1.rockspec` builds from the working tree and never fetches;
-- the url only names where a source rock would come from.
source = {
   url = "git+file://.",
}
description = {
   summary = "Go's concurrency model for Lua 5.4: goroutines, channels, select, timers, sync on libuv",
   license = "MIT",
}
dependencies = {
   "lua >= 5.4, < 5.5",
}
external_dependencies = {
   LIBUV = { header = "uv.h", library = "uv" },
   GUMBO = { header = "gumbo.h", library = "gumbo" },
   -- Debian keeps curl.h in the multiarch include directory, which luarocks does not search.
   CURL = { library = "curl" },
   URIPARSER = { header = "uriparser/Uri.h", library = "uriparser" },
}
-- The Makefile builds csp.core from every csrc/*.c and installs every lua/csp/**/*.lua,
-- so files added there need no change here. BUILD keeps the rock's objects out of build/.
build = {
   type = "make",
   variables = {
      BUILD = "build-rock/obj",
   },
   build_variables = {
      CC = "$(CC)",
      CFLAGS = "$(CFLAGS)",
      WARN = "-Wall -Wextra -Wno-unused-parameter",
      LUA_INCDIR = "$(LUA_INCDIR)",
      LIBUV_INCDIR = "$(LIBUV_INCDIR)",
      LIBUV_LIBDIR = "$(LIBUV_LIBDIR)",
      GUMBO_INCDIR = "$(GUMBO_INCDIR)",
      GUMBO_LIBDIR = "$(GUMBO_LIBDIR)",
      CURL_INCDIR = "$(CURL_INCDIR)",
      CURL_LIBDIR = "$(CURL_LIBDIR)",
      URIPARSER_INCDIR = "$(URIPARSER_INCDIR)",
      URIPARSER_LIBDIR = "$(URIPARSER_LIBDIR)",
   },
   install_variables = {
      INST_LUADIR = "$(LUADIR)",
      INST_LIBDIR = "$(LIBDIR)",
   },
}
