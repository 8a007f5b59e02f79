#!/usr/bin/env bash
# TLS connection set-up: bench/tls/conns.lua against its Go twin (conns.go, GOMAXPROCS=1 and
# default), N sequential https GETs each on a new connection to a local nginx (the crawl site
# over TLS), both verifying against one CA file the size of Debian's system bundle (the bundle
# plus the site's CA, as $SSL_CERT_FILE): what a crawler of many hosts pays per new host.
# Env: BENCH_RUNS (3; interleaved, median), TLS_N (requests per run, default 200), CSP_BUILD.
set -u
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-3}
N=${TLS_N:-200}
command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }
GOCACHE="$ROOT/build/gocache" GO111MODULE=off GOFLAGS='' \
  chrt -o 0 go build -o build/bench/tls-conns bench/tls/conns.go || { echo "go build failed" >&2; exit 1; }

read -r BASE SITE PID START HOST WANT CA < <("$LUA" bench/crawl/site.lua 10 1 tls) ||
  { echo "site did not start" >&2; exit 1; }
trap 'kill "$PID" 2>/dev/null; sleep 0.2; rm -rf "$SITE"' EXIT
cat /etc/ssl/certs/ca-certificates.crt "$CA" >"$SITE/bundle.pem" 2>/dev/null || cp "$CA" "$SITE/bundle.pem"
export SSL_CERT_FILE="$SITE/bundle.pem"
unset SSL_CERT_DIR
echo "site at $START, CA file of $(grep -c 'BEGIN CERTIFICATE' "$SITE/bundle.pem") certificates, N=$N" >&2

declare -A W C
one() {  # one NAME CMD...: a run, its numbers appended to NAME's lists
  local name=$1 out
  shift
  out=$("$@" "$START" "$N") || { echo "FAIL: $name" >&2; return 1; }
  W[$name]+=" $(result tls_conn <<<"$out")"
  C[$name]+=" $(result tls_conn_cpu <<<"$out")"
}
rounds one bench/tls/conns.lua build/bench/tls-conns
echo
echo "https GET on a new connection each (HTTP/1.1, TLS 1.3, nginx on 127.0.0.1), N=$N, median of $RUNS"
echo "| client | wall ms/req | CPU ms/req | csp/Go(P=1) wall |"
echo "|---|---|---|---|"
for name in "${NAMES[@]}"; do
  w=$(median "${W[$name]:-}") c=$(median "${C[$name]:-}")
  echo "RESULT tls_conn_${name// /_} $w ms/req" >&2
  printf '| %s | %s | %s | %s |\n' "$name" "$w" "$c" "$(ratio "$(median "${W[csp]}")" "$w")"
done
