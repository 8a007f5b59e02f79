#!/usr/bin/env bash
# TCP echo benchmark: one Go load generator (bench/echo/loadgen) drives, in turn, the csp echo
# server (echo.lua), the Go twin (goecho, GOMAXPROCS=1 and default), the floor (uvecho.c: libuv
# in C, no Lua) and a raw luv callback server (luv_echo.lua, when lua-luv is installed): 100
# connections, 64-byte lines, 5 s each.
# Prints requests/s, p50/p99 latency and the server's CPU time per request (from /proc).
# Env: ECHO_CONNS (100), ECHO_SIZE (64), ECHO_SECS (5), BENCH_QUICK=1 (1 s).
set -u
. "$(dirname "$0")/../lib.sh"
CONNS=${ECHO_CONNS:-100}
SIZE=${ECHO_SIZE:-64}
SECS=${ECHO_SECS:-5}
[ "${BENCH_QUICK:-0}" != 0 ] && SECS=1

go build -o build/bench/echo-loadgen ./bench/echo/loadgen/main.go || exit 1
go build -o build/bench/echo-go ./bench/echo/goecho/main.go || exit 1
${CC:-gcc} -O2 -o build/bench/echo-uv bench/echo/uvecho.c $(pkg-config --cflags --libs libuv) ||
  exit 1

declare -A RPS P50 P99 CPU
ORDER=()

# bench NAME CMD...: starts the server CMD on a free port, loads it, stops it.
bench() {
  local name=$1 port pid out
  shift
  port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768-)
  "$@" "127.0.0.1:$port" &
  pid=$!
  for _ in $(seq 100); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.05; done
  out=$(GOMAXPROCS=1 build/bench/echo-loadgen -addr "127.0.0.1:$port" -c "$CONNS" -size "$SIZE" \
    -d "${SECS}s" -pid "$pid" -name x)
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  ORDER+=("$name")
  RPS[$name]=$(awk '/^RESULT x-rps/ {print $3}' <<<"$out")
  P50[$name]=$(awk '/^RESULT x-p50/ {print $3}' <<<"$out")
  P99[$name]=$(awk '/^RESULT x-p99/ {print $3}' <<<"$out")
  CPU[$name]=$(awk '/^RESULT x-cpu/ {print $3}' <<<"$out")
  echo "$name: ${RPS[$name]:-FAIL} req/s" >&2
}

bench "csp" "$LUA" bench/echo/echo.lua
bench "go P=1" env GOMAXPROCS=1 build/bench/echo-go
bench "go P=$(nproc)" env -u GOMAXPROCS build/bench/echo-go
bench "libuv in C (floor)" build/bench/echo-uv
if "$LUA" -e 'require "luv"' 2>/dev/null; then
  bench "luv callbacks" "$LUA" bench/echo/luv_echo.lua
else
  echo "(lua-luv not installed: no luv row; apt-get install lua-luv)" >&2
fi

printf '\nTCP echo: %d connections, %d-byte lines, %d s, load generator GOMAXPROCS=1\n' "$CONNS" "$SIZE" "$SECS"
printf '| server | req/s | p50 us | p99 us | server CPU us/req | CPU vs csp | CPU vs go P=1 |\n'
printf '|---|---|---|---|---|---|---|\n'
for name in "${ORDER[@]}"; do
  r=$(ratio "${CPU[$name]:-0}" "${CPU[csp]:-0}")
  g=$(ratio "${CPU[$name]:-0}" "${CPU[go P=1]:-0}")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${RPS[$name]:-FAIL}" "${P50[$name]:--}" \
    "${P99[$name]:--}" "${CPU[$name]:--}" "$r" "$g"
done
