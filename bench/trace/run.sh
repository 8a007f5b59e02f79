#!/usr/bin/env bash
# The execution trace's cost: bench/pingpong.lua untraced, with CSP_TRACE=out.json and with
# CSP_TRACE=out.pftrace (issue 13: within 2x). Runs alternate; each reports its ns per round trip
# (wall) and the CPU time of the whole process (user+sys: the writer thread and the kernel's
# writes included), medians, and the ratios to the untraced run. The trace goes to build/bench/.
# Env: BENCH_RUNS (default 5), BENCH_QUICK=1 (10x fewer round trips).
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-5}
OUT=build/bench/trace-out

# one MODE: "ns/op cpu-seconds" of one run (MODE: none, json, pftrace)
one() {
  local env=() t
  [ "$1" = none ] || env=(CSP_TRACE="$OUT.$1")
  t=$( { env "${env[@]}" /usr/bin/time -f "TIME %U %S" "$LUA" bench/pingpong.lua >build/bench/trace-stdout; } 2>&1 |
    awk '/^TIME/ { print $2 + $3 }')
  rm -f "$OUT.$1"
  echo "$(awk '/^RESULT/ { print $3 }' build/bench/trace-stdout) $t"
}

declare -A ns cpu
for ((r = 1; r <= RUNS; r++)); do
  for m in none json pftrace; do
    read -r a b <<<"$(one $m)"
    ns[$m]+=" $a" cpu[$m]+=" $b"
  done
done
printf "%-9s | %-9s | %-6s | %-9s | %-6s | %s\n" trace "ns/op" ratio "CPU s" ratio "met? (<= 2)"
n0=$(median "${ns[none]}") c0=$(median "${cpu[none]}")
for m in none json pftrace; do
  n=$(median "${ns[$m]}") c=$(median "${cpu[$m]}")
  awk -v m="$m" -v n="$n" -v c="$c" -v n0="$n0" -v c0="$c0" 'BEGIN {
    if (n == "FAIL" || c == "FAIL") { printf "%-9s | FAIL\n", m; exit }
    rn = n / n0; rc = c / c0
    printf "%-9s | %-9s | %-6.2f | %-9s | %-6.2f | %s\n", m, n, rn, c, rc, (rn <= 2 && rc <= 2 ? "yes" : "NO") }'
done
