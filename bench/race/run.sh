#!/usr/bin/env bash
# The race detector's cost: the channel workloads with CSP_RACE=1 against the same without it
# (issue 13: within 5x; Go's -race costs 2-20x). pingpong and buffered touch no watched
# variable (the cost is the clocks carried by every channel operation); pingpong_globals also
# updates a global on every message, so each access is checked and records its location.
# Env: BENCH_RUNS (default 3, the median is reported), BENCH_QUICK=1 (10x smaller counts).
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-3}
result() { "$@" 2>/dev/null | awk '/^RESULT/ { print $3 }'; }
printf "%-17s | %-12s | %-12s | %-6s | %s\n" workload "csp ns/op" "CSP_RACE=1" ratio "met? (<= 5)"
for w in pingpong buffered pingpong_globals; do
  off="" on=""
  for ((r = 1; r <= RUNS; r++)); do
    off+=" $(result env -u CSP_RACE "$LUA" "bench/$w.lua")"
    on+=" $(result env CSP_RACE=1 "$LUA" "bench/$w.lua")"
  done
  a=$(median "$off") b=$(median "$on")
  awk -v w="$w" -v a="$a" -v b="$b" 'BEGIN {
    if (a == "FAIL" || b == "FAIL") { printf "%-17s | %-12s | %-12s | FAIL\n", w, a, b; exit }
    r = b / a; printf "%-17s | %-12s | %-12s | %-6.2f | %s\n", w, a, b, r, (r <= 5 ? "yes" : "NO") }'
done
