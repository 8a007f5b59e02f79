#!/usr/bin/env bash
# Chat fan-out benchmark: one Go load generator (bench/chat/loadgen: 200 clients, 10 of them
# talking in a closed loop) against examples/chat.lua and the seed's Go chat (bench/chat/gochat,
# GOMAXPROCS=1 and default). Prints deliveries/s (lines received by all clients) and the
# server's CPU time per delivery. Env: CHAT_CLIENTS (200), CHAT_TALKERS (10), CHAT_SECS (5).
set -u
. "$(dirname "$0")/../lib.sh"
CLIENTS=${CHAT_CLIENTS:-200}
TALKERS=${CHAT_TALKERS:-10}
SECS=${CHAT_SECS:-5}
[ "${BENCH_QUICK:-0}" != 0 ] && SECS=1

go build -o build/bench/chat-loadgen ./bench/chat/loadgen/main.go || exit 1
go build -o build/bench/chat-go ./bench/chat/gochat/main.go || exit 1

declare -A DPS CPU
ORDER=()

bench() {
  local name=$1 port pid out
  shift
  port=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768-)
  "$@" "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do nc -z 127.0.0.1 "$port" 2>/dev/null && break; sleep 0.05; done
  out=$(GOMAXPROCS=1 build/bench/chat-loadgen -addr "127.0.0.1:$port" -c "$CLIENTS" -s "$TALKERS" \
    -d "${SECS}s" -pid "$pid")
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  ORDER+=("$name")
  DPS[$name]=$(awk '/^RESULT chat-deliveries/ {print $3}' <<<"$out")
  CPU[$name]=$(awk '/^RESULT chat-cpu/ {print $3}' <<<"$out")
  echo "$name: ${DPS[$name]:-FAIL} deliveries/s" >&2
}

bench "csp (examples/chat.lua)" "$LUA" examples/chat.lua
bench "go P=1" env GOMAXPROCS=1 build/bench/chat-go
bench "go P=$(nproc)" env -u GOMAXPROCS build/bench/chat-go

printf '\nChat fan-out: %d clients, %d talking, %d s, load generator GOMAXPROCS=1\n' "$CLIENTS" "$TALKERS" "$SECS"
printf '| server | deliveries/s | server CPU us/delivery | deliveries vs go P=1 |\n|---|---|---|---|\n'
for name in "${ORDER[@]}"; do
  printf '| %s | %s | %s | %s |\n' "$name" "${DPS[$name]:-FAIL}" "${CPU[$name]:--}" \
    "$(ratio "${DPS[$name]:-0}" "${DPS[go P=1]:-0}")"
done
