#!/usr/bin/env bash
# du benchmark (issue 5): examples/du3.lua against the seed's Go du3 (bench/go/du3, same
# 20-token semaphore) and GNU `du -s --apparent-size`, on one generated tree with a warm cache.
# Env: DU_FILES (default 200000), DU_DIRS (leaf directories, default 20000),
#      DU_TREE (where the tree lives, default build/du-tree-FILES-DIRS; built once, then reused),
#      BENCH_RUNS (runs per program, default 5; rounds interleaved, median reported),
#      UV_THREADPOOL_SIZE (passed through to du3.lua; libuv's default is 4),
#      CSP_BUILD (directory holding csp/core.so, default build).
# Go du3 runs at the default GOMAXPROCS and at GOMAXPROCS=1 (issue 14 compares with P=1).
# Prints one RESULT line per program (median wall ms) and a table with the ratios and targets
# (du3.lua <= 1.0x GNU du, <= 0.8x Go du3).
set -u
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-5}
FILES=${DU_FILES:-200000}
DIRS=${DU_DIRS:-20000}
TREE=${DU_TREE:-$ROOT/build/du-tree-$FILES-$DIRS}

command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }
go build -o build/bench/du3 ./bench/go/du3/main.go || { echo "go build du3 failed" >&2; exit 1; }

if [ ! -f "$TREE/.complete" ]; then
  echo "building $TREE ($FILES files in $DIRS directories)..." >&2
  rm -rf "$TREE"
  "$LUA" bench/du/mktree.lua "$TREE" "$FILES" "$DIRS" >&2 || exit 1
  touch "$TREE/.complete"
fi

# The three must agree before any of them is timed (du counts directories too: not compared).
want=$(find "$TREE" ! -type d -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d files  %d bytes", n, s }')
for cmd in "$LUA examples/du3.lua -b" "build/bench/du3 -b"; do
  got=$($cmd "$TREE")
  [ "$got" = "$want" ] || { echo "$cmd: got '$got', want '$want'" >&2; exit 1; }
done
du -s --apparent-size "$TREE" >/dev/null  # warm the cache

declare -A T
# ms of wall time for one run of the command (output discarded)
for ((r = 1; r <= RUNS; r++)); do
  echo "round $r/$RUNS" >&2
  T[lua]+=" $(wall "$LUA" examples/du3.lua -b "$TREE")"
  T[go]+=" $(wall build/bench/du3 -b "$TREE")"
  T[go1]+=" $(wall env GOMAXPROCS=1 build/bench/du3 -b "$TREE")"
  T[du]+=" $(wall du -s --apparent-size "$TREE")"
done

lua=$(median "${T[lua]}") go=$(median "${T[go]}") go1=$(median "${T[go1]}") du=$(median "${T[du]}")
echo "RESULT du3_lua $lua ms"
echo "RESULT du3_go $go ms"
echo "RESULT du3_go_p1 $go1 ms"
echo "RESULT du_gnu $du ms"
echo
echo "du on $FILES files in $DIRS directories ($TREE), warm cache, $(nproc) CPUs," \
  "UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-4 (default)}, median of $RUNS"
printf "%-28s | %8s | %s\n" program "wall ms" "runs (ms)"
printf "%-28s | %8s | %s\n" "du3.lua (csp)" "$lua" "${T[lua]# }"
printf "%-28s | %8s | %s\n" "Go du3 (GOMAXPROCS=$(nproc))" "$go" "${T[go]# }"
printf "%-28s | %8s | %s\n" "Go du3 (GOMAXPROCS=1)" "$go1" "${T[go1]# }"
printf "%-28s | %8s | %s\n" "du -s --apparent-size" "$du" "${T[du]# }"
awk -v l="$lua" -v g="$go" -v g1="$go1" -v d="$du" 'BEGIN {
  printf "du3.lua / GNU du = %.2f (target <= 1.0: %s)\n", l / d, (l <= d ? "met" : "NOT met")
  printf "du3.lua / Go du3 = %.2f (target <= 0.8: %s)\n", l / g, (l <= 0.8 * g ? "met" : "NOT met")
  printf "du3.lua / Go du3 (GOMAXPROCS=1) = %.2f (target <= 0.8: %s)\n", l / g1, (l <= 0.8 * g1 ? "met" : "NOT met")
}'
