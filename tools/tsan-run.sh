#!/usr/bin/env bash
# Runs a command (the thread specs) against a module built with -fsanitize=thread. lua5.4 is
# not instrumented, so the TSan runtime is preloaded (inherited through busted's re-exec and by
# the children specs spawn); each Lua state is only ever touched by its own thread, so what TSan
# checks is csp's C: shared objects, xchan queues, ports, refcounts. Any report fails the run.
# Usage: tools/tsan-run.sh CMD [ARGS...]
set -uo pipefail

cc=${CC:-gcc}
tsan=$("$cc" -print-file-name=libtsan.so)
case $tsan in /*) ;; *) echo "tsan-run: $cc does not know libtsan.so" >&2; exit 2 ;; esac

logdir=${TSAN_LOG_DIR:-build-tsan/reports}
rm -rf "$logdir" && mkdir -p "$logdir"
logdir=$(cd "$logdir" && pwd)
out="$logdir/output.txt"

opts="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$(pwd)/tools/tsan.supp:log_path=$logdir/tsan:log_exe_name=1\
${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
env LD_PRELOAD="$tsan${LD_PRELOAD:+ $LD_PRELOAD}" TSAN_OPTIONS="$opts" "$@" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}

pattern='WARNING: ThreadSanitizer|ERROR: ThreadSanitizer'
found=0
for f in $(find "$logdir" -type f -name 'tsan.*' | sort); do
  echo "=== $f"; cat "$f"
  grep -Eq "$pattern" "$f" && found=1
done
grep -Eq "$pattern" "$out" && found=1
if [ "$found" = 1 ]; then
  echo "tsan-run: ThreadSanitizer report (see above; logs in $logdir)" >&2
  [ "$rc" = 0 ] && rc=1
fi
exit "$rc"
