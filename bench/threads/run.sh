#!/usr/bin/env bash
# Thread benchmarks (issue 15) beside their Go twins with GOMAXPROCS=2, same run: cross-thread
# ping-pong (target <= 1.5x Go's round trip), cross-thread buffered stream cap 1024 (>= 0.5x Go's
# items/s), the CPU-bound job farm on 2 threads against 1 (>= 1.8x; Go's farm at P=2 and P=1
# beside it), du5 against GNU du and its Go twin (bench/du's tree).
# Env: BENCH_RUNS (default 3, median reported), BENCH_QUICK=1 (smaller counts),
#      DU_TREE (a tree from bench/du/mktree.lua: du5 is timed against GNU du and Go on it),
#      BENCH_CHRT=1 (every timed run but the C floor under chrt -f 10: SCHED_FIFO, quieter on a
#      shared machine).
# Beside xpingpong: the hardware floor (floor/pingpong.c: two pthreads handing one atomic back
# and forth, spinning, or spinning then parking on a futex) and Go with each goroutine locked to
# its own OS thread (go/pplocked), which crosses threads as csp does; Go's plain P=2 never does.
set -u
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-3}
command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }
mkdir -p build/bench
go build -o build/bench/pingpong ./bench/go/pingpong/main.go || exit 1
go build -o build/bench/xbuffered ./bench/threads/go/xbuffered/main.go || exit 1
go build -o build/bench/xfarm ./bench/threads/go/xfarm/main.go || exit 1
go build -o build/bench/du5 ./bench/threads/go/du5/main.go || exit 1
go build -o build/bench/pplocked ./bench/threads/go/pplocked/main.go || exit 1
${CC:-gcc} -O2 -pthread -o build/bench/floor bench/threads/floor/pingpong.c || exit 1
FIFO=()
[ "${BENCH_CHRT:-0}" = 1 ] && FIFO=(chrt -f 10)
# The C floor never runs under SCHED_FIFO: two real-time threads spinning on the only two vCPUs
# livelocked (2026-12-06), and a plain kill could not get a CPU to stop them. Killed at 60 s.
floor() { timeout -s KILL 60 build/bench/floor "$@"; }
load0=$(cut -d' ' -f1 /proc/loadavg)

val() { grep -m1 '^RESULT ' | awk '{ print $3 }'; }
med() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A R
for ((r = 1; r <= RUNS; r++)); do
  R[xpp]+="$("${FIFO[@]}" "$LUA" bench/threads/xpingpong.lua | val) "
  R[gpp]+="$(GOMAXPROCS=2 "${FIFO[@]}" build/bench/pingpong | val) "
  R[gppl]+="$(GOMAXPROCS=2 "${FIFO[@]}" build/bench/pplocked | val) "
  R[fspin]+="$(floor spin | val) "
  R[fpin]+="$(floor spin pin | val) "
  R[fpark]+="$(floor park | val) "
  R[xbuf]+="$("${FIFO[@]}" "$LUA" bench/threads/xbuffered.lua | val) "
  R[gbuf]+="$(GOMAXPROCS=2 "${FIFO[@]}" build/bench/xbuffered | val) "
  R[f1]+="$(CSP_THREADS=1 "${FIFO[@]}" "$LUA" bench/threads/xfarm.lua | val) "
  R[f2]+="$(CSP_THREADS=2 "${FIFO[@]}" "$LUA" bench/threads/xfarm.lua | val) "
  R[g1]+="$(GOMAXPROCS=1 "${FIFO[@]}" build/bench/xfarm | val) "
  R[g2]+="$(GOMAXPROCS=2 "${FIFO[@]}" build/bench/xfarm | val) "
done
m() { tr ' ' '\n' <<<"${R[$1]}" | grep . | med; }
echo "median of $RUNS, $(nproc) CPUs${FIFO[*]:+, under ${FIFO[*]}}, load average $load0 before, $(cut -d' ' -f1 /proc/loadavg) after"
awk -v a="$(m xpp)" -v b="$(m gpp)" 'BEGIN { r = a / b; printf "xpingpong  csp %.0f ns  go P=2 %.0f ns  ratio %.2f (target <= 1.5: %s)\n", a, b, r, (r <= 1.5) ? "met" : "MISSED" }'
awk -v l="$(m gppl)" -v s="$(m fspin)" -v p="$(m fpin)" -v k="$(m fpark)" -v b="$(m gpp)" 'BEGIN {
  printf "           go locked threads %.0f ns; floor spin %.0f ns, pinned %.0f ns, spin+futex %.0f ns; floor/go P=2 %.2f\n", l, s, p, k, s / b }'
awk -v a="$(m xbuf)" -v b="$(m gbuf)" 'BEGIN { r = a / b; printf "xbuffered  csp %.0f items/s  go P=2 %.0f items/s  ratio %.2f (target >= 0.5: %s)\n", a, b, r, (r >= 0.5) ? "met" : "MISSED" }'
awk -v a="$(m f2)" -v b="$(m f1)" -v c="$(m g2)" -v d="$(m g1)" 'BEGIN {
  r = a / b
  printf "xfarm      csp 2 threads %.0f jobs/s  1 thread %.0f jobs/s  speed-up %.2f (target >= 1.8: %s)\n", a, b, r, (r >= 1.8) ? "met" : "MISSED"
  printf "           go P=2 %.0f jobs/s  P=1 %.0f jobs/s  speed-up %.2f; csp/go at 2: %.2f\n", c, d, c / d, a / c }'
if [ -n "${DU_TREE:-}" ]; then  # a tree made by bench/du/mktree.lua
  for cmd in "$LUA examples/du5.lua -b" "build/bench/du5 -b"; do  # they must agree first
    [ "$($cmd "$DU_TREE")" = "$(GOMAXPROCS=2 build/bench/du5 -b "$DU_TREE")" ] || { echo "$cmd disagrees" >&2; exit 1; }
  done
  for ((r = 1; r <= RUNS; r++)); do
    R[du5]+="$(wall "$LUA" examples/du5.lua -b "$DU_TREE") "
    R[godu5]+="$(wall env GOMAXPROCS=2 build/bench/du5 -b "$DU_TREE") "
    R[gnu]+="$(wall du -s --apparent-size -b "$DU_TREE") "
  done
  awk -v a="$(m du5)" -v g="$(m godu5)" -v b="$(m gnu)" 'BEGIN { r = a / b; printf "du5        %d ms  go du5 P=2 %d ms  GNU du %d ms  ratio to GNU %.2f (target < 1: %s), to go %.2f\n", a, g, b, r, (r < 1) ? "met" : "MISSED", a / g }'
fi
