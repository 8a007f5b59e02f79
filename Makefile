# csp: build, test, demo, bench. Every target works from a fresh Debian 12 clone.
LUA      ?= lua5.4
BUSTED   ?= busted
CC       ?= gcc
PKGS      = lua5.4 libuv
DEBS      = lua5.4 liblua5.4-dev libuv1-dev lua-busted lua-check luarocks libgumbo-dev pkg-config gcc make \
            netcat-openbsd netbase python3 cppcheck valgrind imagemagick \
            libcurl4-openssl-dev libcurl4 liburiparser-dev openssl nginx \
            golang-go golang-golang-x-net-dev
CFLAGS   ?= -O2 -g
WARN     ?= -Wall -Wextra -Werror -Wno-unused-parameter
# csrc/html.c wraps libgumbo; link it only once that file exists.
ifneq ($(wildcard csrc/html.c),)
PKGS     += gumbo
endif
PKGS     += libcurl liburiparser
# The interpreter provides the Lua symbols: link libuv, gumbo, uriparser, never liblua; libcurl
# is not linked either: csrc/httpdl.c loads it at the first HTTP request (20 ms less per require).
PKGCFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS      = $(shell pkg-config --libs $(filter-out lua5.4 libcurl,$(PKGS)) 2>/dev/null) -pthread
# Set by luarocks (rockspec build_variables); empty in a plain build.
LUA_INCDIR   ?=
LIBUV_INCDIR ?=
LIBUV_LIBDIR ?=
GUMBO_INCDIR ?=
GUMBO_LIBDIR ?=
CURL_INCDIR  ?=
CURL_LIBDIR  ?=
URIPARSER_INCDIR ?=
URIPARSER_LIBDIR ?=
EXTRA_I   = $(addprefix -I,$(LUA_INCDIR) $(LIBUV_INCDIR) $(GUMBO_INCDIR) $(CURL_INCDIR) $(URIPARSER_INCDIR))
EXTRA_L   = $(addprefix -L,$(LIBUV_LIBDIR) $(GUMBO_LIBDIR) $(CURL_LIBDIR) $(URIPARSER_LIBDIR))
SRC       = $(wildcard csrc/*.c)
HDR       = $(wildcard csrc/*.h)
BUILD    ?= build
# `make test SPECS=spec/x_spec.lua` (or asan, valgrind) runs some specs only; CI runs them all.
SPECS    ?= spec
SO        = $(BUILD)/csp/core.so
export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH := $(CURDIR)/build/?.so;;

# Sanitizer build: its own tree, so it never replaces build/csp/core.so. No -Werror there:
# sanitizer instrumentation makes GCC warn spuriously, and the plain build already enforces it.
ASAN_BUILD  = build-asan
ASAN_CFLAGS = -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_WARN   = -Wall -Wextra -Wno-unused-parameter
# 1 = LeakSanitizer too (leaks at lua_close fail the run); see tools/asan-run.sh.
ASAN_LEAKS ?= 0
# The core specs again with CSP_GCSTRESS=1 (a collector step before every resume, a full,
# stack-shrinking collection every 1024): unsized stack pushes show up under ASan. Bounded.
GCSTRESS_SPECS = spec/chan_spec.lua spec/select_spec.lua spec/sync_spec.lua spec/sched_spec.lua \
                 spec/time_spec.lua spec/robust_spec.lua spec/gc_spec.lua
GCSTRESS_TIMEOUT ?= 900
# ThreadSanitizer build for the cross-thread parts (make tsan): the thread specs, in-process
# (a shell started with libtsan preloaded crashes, so specs spawning processes are left out).
TSAN_BUILD  = build-tsan
TSAN_CFLAGS = -O1 -g -fsanitize=thread -fno-omit-frame-pointer
TSAN_SPECS  = spec/thread_spec.lua spec/xchan_spec.lua spec/xchan_gosuite_spec.lua spec/syncmap_spec.lua spec/atomic_spec.lua \
              spec/thread_examples_spec.lua

# install: where `luarocks make` (or a packager) puts the modules.
PREFIX      ?= /usr/local
INST_LUADIR ?= $(PREFIX)/share/lua/5.4
INST_LIBDIR ?= $(PREFIX)/lib/lua/5.4
# rock: luarocks tree used by the packaging check (empty = the default, system-wide tree).
ROCK_TREE   ?= $(CURDIR)/build-rock/tree

# race: the race detector (CSP_RACE=1) over every example that ends by itself and over the suite
# (whose specs drive the servers and clients too); a data race report anywhere fails.
.PHONY: all deps deps-check test demo asan tsan race valgrind lint lint-lua lint-c bench rock install env clean

all: $(SO)

# The module is rebuilt when a source, a header, this Makefile or the compile command (CC, CFLAGS,
# WARN, ... given on the command line) changes: $(BUILD)/.cmd holds the last command, rewritten
# only when it differs, so an unchanged build stays up to date.
SO_CMD = $(CC) $(CFLAGS) $(WARN) -std=c11 -D_GNU_SOURCE -pthread -fPIC -fno-plt -fvisibility=hidden -shared $(PKGCFLAGS) $(EXTRA_I) -o $(SO) $(SRC) $(EXTRA_L) $(LIBS)

$(BUILD)/.cmd: FORCE
	@mkdir -p $(@D)
	@echo '$(SO_CMD)' | cmp -s - $@ || echo '$(SO_CMD)' > $@

$(SO): $(SRC) $(HDR) Makefile $(BUILD)/.cmd | deps-check
	@mkdir -p $(@D)
	$(SO_CMD)

FORCE:

# Installs the Debian packages that are missing (as root), or says the command to run.
deps:
	@missing=$$(for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing packages; run: sudo apt-get install -y $$missing"; exit 1; fi; \
	fi

deps-check:
	@pkg-config --exists $(PKGS) || $(MAKE) --no-print-directory deps

# Absolute paths: `eval "$$(make -s -C /path/to/csp env)"` works from any directory.
env:
	@echo 'export LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;"'
	@echo 'export LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"'

test: deps
	@$(MAKE) --no-print-directory all
	$(BUSTED) --lua=$(LUA) $(SPECS)

demo: deps
	@$(MAKE) --no-print-directory all
	$(LUA) examples/demo.lua

# The whole suite against an ASan+UBSan build; any sanitizer report fails (see tools/asan-run.sh).
asan: deps
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" WARN="$(ASAN_WARN)" all
	LUA_CPATH="$(CURDIR)/$(ASAN_BUILD)/?.so;;" ASAN_LEAKS=$(ASAN_LEAKS) bash tools/asan-run.sh $(BUSTED) --lua=$(LUA) $(SPECS)
	CSP_GCSTRESS=1 LUA_CPATH="$(CURDIR)/$(ASAN_BUILD)/?.so;;" ASAN_LEAKS=$(ASAN_LEAKS) \
	  ASAN_LOG_DIR=$(ASAN_BUILD)/reports-gcstress bash tools/asan-run.sh \
	  timeout -k 10 $(GCSTRESS_TIMEOUT) $(BUSTED) --lua=$(LUA) --exclude-tags=heavy $(GCSTRESS_SPECS)

# The thread specs against a ThreadSanitizer build; any report fails (see tools/tsan-run.sh).
tsan: deps
	@$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) CFLAGS="$(TSAN_CFLAGS)" WARN="$(ASAN_WARN)" all
	LUA_CPATH="$(CURDIR)/$(TSAN_BUILD)/?.so;;" bash tools/tsan-run.sh $(LUA) $$(command -v $(BUSTED)) --exclude-tags=subprocess,onethread $(TSAN_SPECS)

race: deps
	@$(MAKE) --no-print-directory all
	@bash tools/race-examples.sh; ex=$$?; \
	CSP_RACE=1 $(BUSTED) --lua=$(LUA) spec; st=$$?; \
	[ $$ex = 0 ] && [ $$st = 0 ]

# The suite (or SPECS) under memcheck, in one lua5.4 process (busted without --lua does not
# re-exec). The whole of it takes over an hour on 2 vCPUs: SPECS picks a concept's specs.
valgrind: deps
	@$(MAKE) --no-print-directory all
	valgrind --error-exitcode=99 --trace-children=no --leak-check=no --track-origins=yes \
	  --suppressions=tools/valgrind.supp -q $(LUA) $$(command -v $(BUSTED)) $(SPECS)

lint: lint-lua lint-c

lint-lua:
	luacheck --codes lua spec examples $(wildcard bench/*.lua bench/*/*.lua)

# cppcheck sees lua.h (for its macros) but no system header: LLONG_MAX stands in for the
# <limits.h> that luaconf.h checks. uv.h and gumbo.h are in /usr/include, which stays unseen.
# readdirCalled is off: glibc deprecates readdir_r, and readdir on a stream of one's own is safe.
# Then issue 11's shape rules: no C file over 600 lines, no handle closed by a cast free(),
# core.so exports luaopen_csp_core alone, only module.c sets a metamethod or __mode by hand.
lint-c: $(SO)
	@big=$$(wc -l csrc/*.c | awk '$$2 != "total" && $$1 > 600 {print $$2}'); \
	  [ -z "$$big" ] || { echo "lint-c: over 600 lines: $$big"; exit 1; }
	@! grep -n '(uv_close_cb) *free' csrc/*.c || { echo "lint-c: use csp_close_free"; exit 1; }
	@! grep -nE '(lua_setfield|lua_pushliteral|lua_pushstring)\(.*"__(gc|index|newindex|close|mode)"' \
	  $$(ls csrc/*.c | grep -v module.c) || { echo "lint-c: metatables via csp_newmeta (module.c)"; exit 1; }
	@syms=$$(nm -D --defined-only $(SO) | awk '$$2 == "T" {print $$3}'); \
	  [ "$$syms" = luaopen_csp_core ] || { echo "lint-c: core.so exports: $$syms"; exit 1; }
	cppcheck -q --std=c11 --enable=warning,performance,portability --error-exitcode=1 \
	  --inline-suppr --suppress=missingIncludeSystem --suppress=readdirCalled --library=posix -D_GNU_SOURCE \
	  -DLLONG_MAX=9223372036854775807LL $(shell pkg-config --cflags-only-I lua5.4 2>/dev/null) -Icsrc csrc

# Go and x/net are in DEBS (make deps installs them: the Go twins of the benchmarks need them).
bench: all
	@command -v go >/dev/null || $(MAKE) --no-print-directory deps DEBS=golang-go
	@$(MAKE) --no-print-directory deps DEBS="golang-golang-x-net-dev nginx"
	bash bench/run.sh
	bash bench/echo/run.sh
	bash bench/chat/run.sh
	bash bench/du/run.sh
	bash bench/crawl/run.sh
	CRAWL_TLS=1 bash bench/crawl/run.sh
	bash bench/http/run.sh
	bash bench/tls/run.sh
	bash bench/race/run.sh

install: all
	@cd lua && find csp -name '*.lua' | sort | while read -r f; do \
	  echo "install $$f -> $(DESTDIR)$(INST_LUADIR)/$$f"; \
	  install -D -m 644 "$$f" "$(DESTDIR)$(INST_LUADIR)/$$f" || exit 1; done
	install -D -m 755 $(SO) $(DESTDIR)$(INST_LIBDIR)/csp/core.so

# Packaging check: luarocks make, require from elsewhere, pack a binary rock, reinstall it
# from the file alone (no network), require again, uninstall.
rock: deps
	@bash tools/rock-check.sh "$(ROCK_TREE)"

clean:
	rm -rf build $(ASAN_BUILD) $(TSAN_BUILD) build-rock
