#!/usr/bin/env bash
# HTTP client benchmark (issue 6): csp.http.get (bench/http/get.lua) against Go's net/http
# client (bench/http/goget, GOMAXPROCS=1 and default) fetching a 1 KB file over keep-alive from
# one local nginx on 127.0.0.1 (temporary prefix and config), in the same run.
# Each client: N sequential gets on one connection, then 8 goroutines doing N/8 gets each, then
# the same with a distinct URL per request (par8u: URL?i=K, the same file).
# Env: BENCH_RUNS (3; rounds interleaved, median reported), BENCH_QUICK=1 (N=2000, else 20000),
#      HTTP_N (overrides N), CSP_BUILD (directory holding csp/core.so, default build).
set -u
. "$(dirname "$0")/../lib.sh"
RUNS=${BENCH_RUNS:-3}
N=20000
[ "${BENCH_QUICK:-0}" != 0 ] && N=2000
N=${HTTP_N:-$N}

command -v go >/dev/null || { echo "go not found: apt-get install golang-go" >&2; exit 1; }
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null) ||
  { echo "nginx missing: apt-get install nginx" >&2; exit 1; }
# chrt -o 0: the Go toolchain under SCHED_FIFO (the script run by chrt -f) can spin for many
# minutes on a loaded machine; only the timed programs should inherit the real-time policy.
GOCACHE="$ROOT/build/gocache" GO111MODULE=off GOFLAGS='' GOTOOLCHAIN=local \
  chrt -o 0 go build -o build/bench/http-goget bench/http/goget/main.go || { echo "go build failed" >&2; exit 1; }

# nginx on a free port, serving www/1k.bin (1024 bytes) from a temporary prefix.
DIR=$(mktemp -d /tmp/csp-httpbench.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  for _ in $(seq 200); do kill -0 "$PID" 2>/dev/null || break; sleep 0.01; done
  rm -rf "$DIR"
}
trap cleanup EXIT
mkdir -p "$DIR/www" "$DIR/tmp"
head -c 1024 /dev/urandom >"$DIR/www/1k.bin"
PORT=$("$LUA" -e 'local csp = require "csp"
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  print(ln:addr():match(":(%d+)$")) ln:close()')
cat >"$DIR/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $DIR/tmp;
  proxy_temp_path $DIR/tmp;
  fastcgi_temp_path $DIR/tmp;
  uwsgi_temp_path $DIR/tmp;
  scgi_temp_path $DIR/tmp;
  server {
    listen 127.0.0.1:$PORT;
    root $DIR/www;
    location = /status { stub_status; }  # accepted connections, to show keep-alive reuse
  }
}
CONF
chmod -R a+rX "$DIR"  # nginx workers run as nobody
"$NGINX" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" >"$DIR/server.log" 2>&1 </dev/null &
PID=$!
URL="http://127.0.0.1:$PORT/1k.bin"
for _ in $(seq 200); do curl -sf -o /dev/null "$URL" 2>/dev/null && break
  nc -z 127.0.0.1 "$PORT" 2>/dev/null && break; sleep 0.02; done
kill -0 "$PID" 2>/dev/null || { echo "nginx did not start: $(cat "$DIR"/server.log "$DIR"/error.log)" >&2; exit 1; }
echo "nginx $PID serving $URL, N=$N, $RUNS runs" >&2

accepts() { curl -s "http://127.0.0.1:$PORT/status" | awk 'NR == 3 {print $1}'; }
declare -A SEQ PAR PARU CPU CPUP CPUPU CONNS
# run NAME CMD...: one run, appending its numbers to the NAME lists.
run() {
  local name=$1 out a0
  shift
  a0=$(accepts)
  out=$("$@" "$URL" "$N") || { echo "FAIL: $name" >&2; return 1; }
  CONNS[$name]+=" $(($(accepts) - a0 - 1))"  # minus the status request's own connection
  SEQ[$name]+=" $(result http_seq <<<"$out")"
  PAR[$name]+=" $(result http_par8 <<<"$out")"
  PARU[$name]+=" $(result http_par8u <<<"$out")"
  CPU[$name]+=" $(result http_seq_cpu <<<"$out")"
  CPUP[$name]+=" $(result http_par8_cpu <<<"$out")"
  CPUPU[$name]+=" $(result http_par8u_cpu <<<"$out")"
}
rounds run bench/http/get.lua build/bench/http-goget

declare -A MS MP MPU MC MCP MCPU
for name in "${NAMES[@]}"; do
  MS[$name]=$(median "${SEQ[$name]:-}") MP[$name]=$(median "${PAR[$name]:-}")
  MC[$name]=$(median "${CPU[$name]:-}") MCP[$name]=$(median "${CPUP[$name]:-}")
  MPU[$name]=$(median "${PARU[$name]:-}") MCPU[$name]=$(median "${CPUPU[$name]:-}")
  echo "RESULT http_seq_${name// /_} ${MS[$name]} req/s  runs:${SEQ[$name]:-}"
  echo "RESULT http_par8_${name// /_} ${MP[$name]} req/s  runs:${PAR[$name]:-}"
  echo "RESULT http_par8u_${name// /_} ${MPU[$name]} req/s  runs:${PARU[$name]:-}"
  echo "connections opened per run by $name:${CONNS[$name]:-}"
done
echo
echo "GET of a 1 KB file over keep-alive, nginx (1 worker) on 127.0.0.1, N=$N, $(nproc) CPUs, median of $RUNS"
echo "CPU us/req: client process user+sys per request, seq / par8 / par8u. csp/Go(P=1): req/s ratio, seq / par8 / par8u (higher is better)."
echo
echo "| client | seq req/s | par8 req/s | par8u req/s | CPU us/req | csp/Go(P=1) |"
echo "|---|---|---|---|---|---|"
for name in "${NAMES[@]}"; do
  printf '| %s | %s | %s | %s | %s / %s / %s | %s / %s / %s |\n' "$name" "${MS[$name]}" "${MP[$name]}" \
    "${MPU[$name]}" "${MC[$name]}" "${MCP[$name]}" "${MCPU[$name]}" \
    "$(ratio "${MS[csp]}" "${MS[$name]}")" "$(ratio "${MP[csp]}" "${MP[$name]}")" \
    "$(ratio "${MPU[csp]}" "${MPU[$name]}")"
done
