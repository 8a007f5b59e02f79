#!/usr/bin/env bash
# Runs a command (the busted suite) against a module built with -fsanitize=address,undefined.
# lua5.4 itself is not instrumented, so the ASan runtime must be preloaded; LD_PRELOAD is
# inherited through busted's re-exec (lua -> sh -> lua5.4 for --lua) and by anything a spec
# spawns. Reports go to per-process files as well as being searched for in the output, so a
# report from a child whose stderr a spec swallowed still fails the run. (UBSan ignores
# log_path when the ASan runtime hosts it and writes to stderr: the output is searched too.)
# Usage: tools/asan-run.sh CMD [ARGS...]
# tools/lsan.supp names the leaks that are not csp's (OpenSSL's per-thread state).
# ASAN_LEAKS=1 turns leak detection on (a diagnostic, off by default: uninstrumented programs
# that specs spawn report their own leaks too). It also preloads a no-op dlclose, because Lua
# unloads csp/core.so in lua_close, before LeakSanitizer runs, which would leave its frames
# unsymbolized.
set -uo pipefail

cc=${CC:-gcc}
asan=$("$cc" -print-file-name=libasan.so)
ubsan=$("$cc" -print-file-name=libubsan.so)
for lib in "$asan" "$ubsan"; do
  case $lib in /*) ;; *) echo "asan-run: $cc does not know $lib" >&2; exit 2 ;; esac
done

logdir=${ASAN_LOG_DIR:-build-asan/reports}
rm -rf "$logdir" && mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
out="$logdir/output.txt"

leaks=${ASAN_LEAKS:-0}
preload="$asan $ubsan"
if [ "$leaks" = 1 ]; then
  printf 'int dlclose(void *h) { (void)h; return 0; }\n' |
    "$cc" -shared -fPIC -x c -o "$logdir/nodlclose.so" - || exit 2
  preload="$preload $logdir/nodlclose.so"
fi
# Only for the command: tee, find and grep below must not run under the sanitizer.
preload="$preload${LD_PRELOAD:+ $LD_PRELOAD}"
asan_opts="detect_leaks=$leaks:abort_on_error=1:halt_on_error=1:disable_coredump=1:\
log_path=$logdir/asan:log_exe_name=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
ubsan_opts="halt_on_error=1:print_stacktrace=1:log_path=$logdir/ubsan:log_exe_name=1\
${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# LSAN_OPTIONS reaches children whose ASAN_OPTIONS a spec replaces (spec/helpers/run.lua).
lsan_opts="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp:print_suppressions=0\
${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

env LD_PRELOAD="$preload" ASAN_OPTIONS="$asan_opts" UBSAN_OPTIONS="$ubsan_opts" LSAN_OPTIONS="$lsan_opts" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

pattern='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'
found=0
for f in $(find "$logdir" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) | sort); do
  echo "=== $f"; cat "$f"
  grep -Eq "$pattern" "$f" && found=1
done
grep -Eq "$pattern" "$out" && found=1
if [ "$found" = 1 ]; then
  echo "asan-run: sanitizer report (see above; logs in $logdir)" >&2
  [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
