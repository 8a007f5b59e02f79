#!/usr/bin/env bash
# thumbnails: examples/thumbnails.lua version 1 (sequential) against version 6 (a goroutine per
# file, one ImageMagick process each) on 8 JPEGs of 2400x1800 made here; wall time medians and
# the speed-up. The claim to check: >= 1.6x on 2 cores (the processes run in parallel).
# Env: BENCH_RUNS (default 3), THUMBS (number of images, default 8).
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-3}
N=${THUMBS:-8}
command -v convert >/dev/null || { echo "convert missing: apt-get install imagemagick" >&2; exit 1; }
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
for ((i = 1; i <= N; i++)); do
  convert -size 2400x1800 plasma:fractal -quality 90 "$DIR/photo$i.jpg" &
done
wait
declare -A T
for ((r = 1; r <= RUNS; r++)); do
  for v in 1 6; do
    T[$v]+=" $(wall "$LUA" examples/thumbnails.lua "$v" "$DIR"/photo*[0-9].jpg)"
  done
done
v1=$(median "${T[1]}") v6=$(median "${T[6]}")
echo "thumbnails of $N JPEGs 2400x1800, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), median of $RUNS:"
echo "version 1 (sequential): $v1 ms   version 6 (parallel): $v6 ms   speed-up: $(awk -v a="$v1" -v b="$v6" 'BEGIN { printf "%.2fx", a / b }') (target >= 1.6x)"
