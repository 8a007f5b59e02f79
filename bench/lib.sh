# bench/lib.sh: what every bench/*/run.sh shares. Sourced (`. "$(dirname "$0")/../lib.sh"`):
# moves to the repository root, points lua5.4 at this tree's csp (CSP_BUILD: the directory that
# holds csp/core.so, default build), keeps Go's cache under build/, and defines wall, median, result, ratio and rounds.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
LUA=${LUA:-lua5.4}
BUILD_DIR=${CSP_BUILD:-$ROOT/build}
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$BUILD_DIR/?.so;;"
export GOCACHE="$ROOT/build/gocache" GO111MODULE=on GOFLAGS='' GOTOOLCHAIN=local
[ -f "$BUILD_DIR/csp/core.so" ] || { echo "$BUILD_DIR/csp/core.so missing: run make" >&2; exit 1; }
mkdir -p build/bench

# wall CMD...: runs CMD with its output discarded, prints its wall time in ms (nothing on failure).
wall() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1 || { echo "FAIL: $*" >&2; return 1; }
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

# median "v1 v2 ...": the median of the numbers in the list, or FAIL when there are none.
median() {
  tr ' ' '\n' <<<"$1" | grep -E '^[0-9.]+$' | sort -g |
    awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "FAIL") }'
}

# result NAME <<<"$out": the value of the program's "RESULT NAME value ..." line (nothing if none).
result() { awk -v k="$1" '$2 == k {print $3}'; }

# ratio A B: A / B to two decimals, or "-" unless both are positive numbers.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "-" }'; }

# rounds FN SCRIPT GOBIN: $RUNS interleaved rounds, each calling FN NAME CMD... for csp
# (lua5.4 SCRIPT), the Go twin GOBIN with GOMAXPROCS=1 and with every CPU, named as in NAMES.
NAMES=(csp "go P=1" "go P=$(nproc)")
rounds() {
  local fn=$1 script=$2 gobin=$3 r
  for ((r = 1; r <= RUNS; r++)); do
    echo "round $r/$RUNS" >&2
    "$fn" csp "$LUA" "$script"
    "$fn" "go P=1" env GOMAXPROCS=1 "$gobin"
    "$fn" "go P=$(nproc)" env -u GOMAXPROCS "$gobin"
  done
}
