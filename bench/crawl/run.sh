#!/usr/bin/env bash
# Crawler benchmark (issue 6): examples/crawl3.lua against its Go twin (bench/crawl/crawl3.go:
# the seed's crawl3, same 20 workers, net/http + golang.org/x/net/html from Debian's
# golang-golang-x-net-dev) crawling one generated site (spec/helpers/site.lua) served by a
# local nginx, in the same run: wall time, Go with GOMAXPROCS=1 and with all CPUs.
# Env: CRAWL_TLS=1 (the site over https, nginx with h2; both crawlers trust its CA through
#      SSL_CERT_FILE, Go's net/http as csp), CRAWL_PAGES (default 5000), CRAWL_SEED (default 1), BENCH_RUNS (default 5; rounds
#      interleaved, median reported), CSP_BUILD (directory holding csp/core.so, default build).
# Prints one RESULT line per program (median wall ms) and a table with the ratio and target
# (crawl3.lua <= 1.0x Go crawl3 at P=1).
set -u
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-5}
PAGES=${CRAWL_PAGES:-5000}
SEED=${CRAWL_SEED:-1}

command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }
[ -d /usr/share/gocode/src/golang.org/x/net/html ] ||
  { echo "golang.org/x/net/html missing: apt-get install golang-golang-x-net-dev" >&2; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
  echo "nginx missing (apt-get install nginx): serving with python3 -m http.server" >&2
# GOPATH mode: Debian installs x/net as GOPATH sources, not as a module.
# chrt -o 0: the Go toolchain under SCHED_FIFO (the script run by chrt -f) can spin for many
# minutes on a loaded machine; only the timed programs should inherit the real-time policy.
GOCACHE="$ROOT/build/gocache" GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS='' \
  chrt -o 0 go build -o build/bench/crawl3 bench/crawl/crawl3.go || { echo "go build crawl3 failed" >&2; exit 1; }

TLS=
[ "${CRAWL_TLS:-0}" != 0 ] && TLS=tls
read -r BASE SITE PID START HOST WANT CA < <("$LUA" bench/crawl/site.lua "$PAGES" "$SEED" $TLS) ||
  { echo "site did not start" >&2; exit 1; }
[ -n "$TLS" ] && export SSL_CERT_FILE="$CA"
trap 'kill "$PID" 2>/dev/null; sleep 0.2; rm -rf "$SITE"' EXIT
echo "site: $PAGES pages at $BASE ($SITE), $WANT URLs reachable on $HOST" >&2

LUA_CMD=("$LUA" examples/crawl3.lua -host "$HOST" "$START")
GO_CMD=(build/bench/crawl3 -host "$HOST" "$START")

# Both must print the same set of URLs, of the expected size, before any is timed.
a=$("${LUA_CMD[@]}" 2>/dev/null | sort | md5sum)
b=$("${GO_CMD[@]}" 2>/dev/null | sort | md5sum)
n=$("${LUA_CMD[@]}" 2>/dev/null | sort -u | wc -l)
[ "$a" = "$b" ] || { echo "crawl3.lua and Go crawl3 printed different URLs" >&2; exit 1; }
[ "$n" = "$WANT" ] || { echo "crawl3.lua printed $n URLs, want $WANT" >&2; exit 1; }

declare -A T
for ((r = 1; r <= RUNS; r++)); do
  echo "round $r/$RUNS" >&2
  T[lua]+=" $(wall "${LUA_CMD[@]}")"
  T[go1]+=" $(GOMAXPROCS=1 wall "${GO_CMD[@]}")"
  T[gon]+=" $(wall "${GO_CMD[@]}")"
done

lua=$(median "${T[lua]}") go1=$(median "${T[go1]}") gon=$(median "${T[gon]}")
echo "RESULT crawl3_lua $lua ms"
echo "RESULT crawl3_go_p1 $go1 ms"
echo "RESULT crawl3_go $gon ms"
echo
echo "crawl3 over $WANT URLs ($PAGES-page site, nginx on 127.0.0.1${TLS:+, https}), 20 workers, $(nproc) CPUs, median of $RUNS"
printf "%-28s | %8s | %s\n" program "wall ms" "runs (ms)"
printf "%-28s | %8s | %s\n" "crawl3.lua (csp)" "$lua" "${T[lua]# }"
printf "%-28s | %8s | %s\n" "Go crawl3 (GOMAXPROCS=1)" "$go1" "${T[go1]# }"
printf "%-28s | %8s | %s\n" "Go crawl3 (GOMAXPROCS=$(nproc))" "$gon" "${T[gon]# }"
awk -v l="$lua" -v g="$go1" 'BEGIN {
  printf "crawl3.lua / Go crawl3 (P=1) = %.2f (target <= 1.0: %s)\n", l / g, (l <= g ? "met" : "NOT met")
}'
