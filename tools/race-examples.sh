#!/usr/bin/env bash
# `make race`, examples part: runs every example that ends by itself under the race detector
# (CSP_RACE=1), with its normal arguments, and fails if any reports a data race (or, for the
# examples listed below, exits non-zero). Servers and clients (chat, clock, reverb, netcat,
# crawl, *_http) are driven by the suite's specs, which `make race` runs with CSP_RACE=1 too.
# bank_race.lua and memo1.lua must be reported (exit 66): that is their point.
set -u
cd "$(dirname "$0")/.." || exit 1
export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;"
export LUA_CPATH="${LUA_CPATH:-$PWD/build/?.so;;}"
export CSP_RACE=1
LUA=${LUA:-lua5.4}
tmp=$(mktemp -d /tmp/csp-race.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Arguments that make an example end quickly; "-" marks one that needs a peer (skipped here).
declare -A ARGS=(
  [sieve.lua]="20" [countdown1.lua]="3 0.01" [countdown2.lua]="0.05" [countdown3.lua]="3 0.01"
  [countdown3_tick.lua]="3 0.01"
  [du1.lua]="lua spec" [du2.lua]="-v lua spec" [du3.lua]="-v lua spec" [du4.lua]="-v lua spec"
  [chat.lua]="-" [clock1.lua]="-" [clock2.lua]="-" [reverb1.lua]="-" [reverb2.lua]="-"
  [netcat1.lua]="-" [netcat2.lua]="-" [netcat3.lua]="-" [netcat3_halfclose.lua]="-" [crawl1.lua]="-"
  [crawl2.lua]="-" [crawl3.lua]="-" [crawl3_deadlock.lua]="-" [memo_http.lua]="-" [mirrored_http.lua]="-"
  [du.lua]="-" [links.lua]="-" [demo.lua]="-" [flags.lua]="-" [memotest.lua]="-" [banktest.lua]="-"
  [thumbnails.lua]="-"
  [trace.lua]="$tmp/trace.json"
)
fail=0 n=0 skipped=()
for f in examples/*.lua; do
  name=$(basename "$f")
  args=${ARGS[$name]-}
  if [ "$args" = "-" ]; then skipped+=("$name"); continue; fi
  # shellcheck disable=SC2086  # args are words
  timeout -k 2 60 "$LUA" "$f" $args </dev/null >"$tmp/out" 2>"$tmp/err"
  rc=$?
  n=$((n + 1))
  if [ "$name" = bank_race.lua ] || [ "$name" = memo1.lua ]; then
    if [ $rc = 66 ] && grep -q "WARNING: DATA RACE" "$tmp/err"; then
      echo "ok    $name: its race is reported (exit 66)"
    else
      echo "FAIL  $name: expected a race report and exit 66, got exit $rc"; fail=1
    fi
  elif grep -q "WARNING: DATA RACE" "$tmp/err" || [ $rc = 66 ]; then
    echo "FAIL  $name $args: data race"; cat "$tmp/err"; fail=1
  elif [ $rc = 124 ]; then
    echo "skip  $name $args: did not end within 60 s (needs a peer or input?)"
  elif [ $rc != 0 ] && [ -n "${ARGS[$name]+x}" ]; then
    echo "FAIL  $name $args: exit $rc"; tail -n 5 "$tmp/err"; fail=1
  else
    echo "ok    $name $args (exit $rc)"
  fi
done
echo "race: $n examples run under CSP_RACE=1; skipped (driven by the specs): ${skipped[*]}"
[ $fail = 0 ] && echo "race: no data race in the examples" || echo "race: FAILED"
exit $fail
