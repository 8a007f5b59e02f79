#!/usr/bin/env bash
# Side-by-side benchmarks of the csp core against Go (GOMAXPROCS=1 and default).
# Env: BENCH_RUNS (runs per workload, default 3; the median is reported),
#      BENCH_QUICK=1 (counts 10x smaller, for smoke tests),
#      BENCH_ONLY="pingpong sieve" (Lua script names to run; default all).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
RUNS=${BENCH_RUNS:-3}
LUA=${LUA:-lua5.4}
NPROC=$(nproc)
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$ROOT/build/?.so;;"
export GOCACHE="$ROOT/build/gocache" GO111MODULE=on GOFLAGS='' GOTOOLCHAIN=local

# label | Lua script | Go program | target (csp / go P=1) | Lua's floor (bench/floor/<name>.lua)
# The floor is the workload's Lua loops with csp taken out (methods that only return or yield,
# coroutines resumed from C; the sieve's keeps bare channels for its order of switches): what
# any runtime of Lua coroutines pays before doing any work.
# A target below floor/go cannot be met on this Lua; the table says so.
ROWS=(
  "pingpong|pingpong|pingpong|0.6|pingpong"
  "pingpong (main blocking)|pingpong_main|pingpong|-|-"
  "buffered|buffered|buffered|1.5|buffered"
  "buffered (range)|buffered_range|buffered|1.2|buffered_range"
  "spawn|spawn|spawn|0.3|-"
  "spawn (batch 1000)|spawn_batch|spawn_batch|0.3|-"
  "parked memory|parked|parked|0.4|parked"
  "select|select|select|0.8|select"
  "select (floor with its reads)|select|select|0.8|select_reads"
  "sieve|sieve|sieve|0.8|sieve"
  "timers CPU|timers|timers|0.5|timers"
  "mutex uncontended|mutex|mutex|3.0|mutex"
  "mutex (cached)|mutex_cached|mutex|3.0|mutex_cached"
  "mutex handoff|mutex_handoff|mutex_handoff|1.0|mutex_handoff"
  "waitgroup|waitgroup|waitgroup|-|-"
  "memo hit|memo_hit|memo_hit|2.0|-"
)

[ -f build/csp/core.so ] || { echo "build/csp/core.so missing: run make" >&2; exit 1; }
command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }

mkdir -p build/bench
for dir in bench/go/*/; do
  name=$(basename "$dir")
  go build -o "build/bench/$name" "./$dir/main.go" || { echo "go build $name failed" >&2; exit 1; }
done
# shellcheck disable=SC2046
${CC:-gcc} -O2 -shared -fPIC $(pkg-config --cflags lua5.4) -o build/bench/floor.so bench/floor/floor.c ||
  { echo "building bench/floor/floor.c failed" >&2; exit 1; }

declare -A VALS UNIT
selected() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

# run KEY CMD...: runs once, appends the RESULT value to VALS[KEY] (or FAIL).
run() {
  local key=$1 out err line
  shift
  err=$(mktemp)
  out=$(timeout 300 "$@" 2>"$err")
  local rc=$?
  line=$(grep -m1 '^RESULT ' <<<"$out")
  if [ $rc -ne 0 ] || [ -z "$line" ]; then
    local why="exit $rc"
    [ $rc -gt 128 ] && why+=" (SIG$(kill -l $((rc - 128)) 2>/dev/null))"
    echo "FAIL ($key, $why): $*" >&2
    tail -n 5 "$err" >&2
    VALS[$key]+=" FAIL"
  else
    read -r _ _ val unit <<<"$line"
    VALS[$key]+=" $val"
    UNIT[$key]=$unit
  fi
  rm -f "$err"
}

# Rounds are interleaved (every workload once per round) so that a burst of
# steal time on the VM hits one run of several workloads, not all runs of one.
for ((r = 1; r <= RUNS; r++)); do
  echo "round $r/$RUNS" >&2
  declare -A done_go=() done_csp=()
  for row in "${ROWS[@]}"; do
    IFS='|' read -r _ lua gop _ floor <<<"$row"
    selected "$lua" || continue
    if [ -z "${done_csp[$lua]:-}" ]; then  # a workload on two rows (two floors) runs once
      done_csp[$lua]=1
      run "csp:$lua" "$LUA" "bench/$lua.lua"
    fi
    [ "$floor" = - ] || run "floor:$floor" "$LUA" "bench/floor/$floor.lua"
    if [ -z "${done_go[$gop]:-}" ]; then
      done_go[$gop]=1
      run "go1:$gop" env GOMAXPROCS=1 "build/bench/$gop"
      run "goN:$gop" env -u GOMAXPROCS "build/bench/$gop"
    fi
  done
done

# median of the numeric values (FAIL entries ignored); FAIL if none.
median() {
  tr ' ' '\n' <<<"$1" | grep -E '^[0-9.eE+-]+$' | sort -g |
    awk '{ v[NR] = $1 } END {
      if (NR == 0) { print "FAIL"; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
cell() { [ "$1" = FAIL ] && echo FAIL || echo "$1 $2"; }

echo
echo "csp vs Go: $($LUA -v 2>&1 | cut -d' ' -f1-2), $(go version | cut -d' ' -f3), $NPROC CPUs," \
  "core.so $(sha1sum build/csp/core.so | cut -c1-8) ($(date -r build/csp/core.so '+%F %T')), median of $RUNS run(s)${BENCH_QUICK:+, BENCH_QUICK=$BENCH_QUICK}"
fmt="%-18s | %-15s | %-15s | %-15s | %-11s | %-6s | %-15s | %-10s | %s\n"
# shellcheck disable=SC2059
printf "$fmt" workload csp "go P=1" "go P=$NPROC" "csp/go(P=1)" target "Lua's floor" "floor/go" "met?"
for row in "${ROWS[@]}"; do
  IFS='|' read -r label lua gop target floor <<<"$row"
  selected "$lua" || continue
  c=$(median "${VALS[csp:$lua]:-}")
  g1=$(median "${VALS[go1:$gop]:-}")
  gn=$(median "${VALS[goN:$gop]:-}")
  f=-
  [ "$floor" = - ] || f=$(median "${VALS[floor:$floor]:-}")
  unit=${UNIT[csp:$lua]:-${UNIT[go1:$gop]:-}}
  ratio=- met=- fratio=-
  if [ "$c" != FAIL ] && [ "$g1" != FAIL ]; then
    read -r ratio met < <(awk -v c="$c" -v g="$g1" -v t="$target" \
      'BEGIN { r = c / g; printf "%.2f %s\n", r, (t == "-" ? "-" : (r <= t + 0 ? "yes" : "NO")) }')
  fi
  if [ "$f" != - ] && [ "$f" != FAIL ] && [ "$g1" != FAIL ]; then
    fratio=$(awk -v f="$f" -v g="$g1" 'BEGIN { printf "%.2f", f / g }')
    [ "$met" = NO ] && awk -v r="$fratio" -v t="$target" 'BEGIN { exit !(r > t + 0) }' &&
      met="NO: floor above target"
  fi
  # shellcheck disable=SC2059
  printf "$fmt" "$label" "$(cell "$c" "$unit")" "$(cell "$g1" "$unit")" "$(cell "$gn" "$unit")" \
    "$ratio" "$([ "$target" = - ] && echo "(none)" || echo "<= $target")" \
    "$([ "$f" = - ] && echo - || cell "$f" "$unit")" "$fratio" "$met"
done
