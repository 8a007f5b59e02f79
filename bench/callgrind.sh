#!/usr/bin/env bash
# Instructions per operation of a bench/<name>.lua workload, load-independent: runs the
# workload's own program under callgrind (all threads) at two counts N1 < N2 (its `local N =`
# line replaced) and prints (total(N2) - total(N1)) / (N2 - N1), which cancels start-up and exit.
# Usage: bench/callgrind.sh [-C tree] name N1 N2   (tree: a checkout with build/csp/core.so,
# e.g. a `git worktree add /tmp/old COMMIT` built with make, to compare commits).
set -eu
tree=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = -C ]; then tree=$(cd "$2" && pwd); shift 2; fi
[ $# -eq 3 ] || { echo "usage: $0 [-C tree] name N1 N2" >&2; exit 2; }
name=$1 n1=$2 n2=$3
[ -f "$tree/bench/$name.lua" ] || { echo "no $tree/bench/$name.lua" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind not found" >&2; exit 1; }
export LUA_PATH="$tree/lua/?.lua;$tree/lua/?/init.lua;;" LUA_CPATH="$tree/build/?.so;;"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
total() {
  sed -E "s/^local N = .*/local N = $1/" "$tree/bench/$name.lua" >"$tmp/w.lua"
  (cd "$tree" && valgrind --tool=callgrind --callgrind-out-file="$tmp/out" lua5.4 "$tmp/w.lua" \
    >/dev/null 2>&1)
  awk '/^(summary|totals):/ {print $2; exit}' "$tmp/out"
}
a=$(total "$n1")
b=$(total "$n2")
echo "$name $(( (b - a) / (n2 - n1) )) instructions per op ($n1: $a, $n2: $b)"
