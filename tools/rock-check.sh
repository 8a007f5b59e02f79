#!/usr/bin/env bash
# Packaging check for rockspec/csp-scm-1.rockspec:
#   luarocks make -> require from outside the work tree -> pack a binary rock -> remove ->
#   install the .rock file alone (no server) -> require again -> remove.
# Usage: tools/rock-check.sh [TREE]   TREE empty = luarocks' default tree (system-wide as root).
set -euo pipefail
cd "$(dirname "$0")/.."

tree=${1:-}
lr=(luarocks --lua-version=5.4)
[ -n "$tree" ] && lr+=("--tree=$tree")
spec=rockspec/csp-scm-1.rockspec
top=$(pwd)
work=$(mktemp -d)

cleanup() {
  "${lr[@]}" remove csp >/dev/null 2>&1 || true
  rm -rf "$work" build-rock/obj
}
trap cleanup EXIT

if "${lr[@]}" show csp >/dev/null 2>&1; then
  echo "rock-check: csp is already installed in this tree; remove it first" >&2
  trap - EXIT; rm -rf "$work"; exit 1
fi

# Runs in an empty directory with the tree's module paths only: a copy found in the work
# tree's lua/ or build/ would make the check pass for the wrong reason.
check() {
  local lpath lcpath
  if [ -n "$tree" ]; then
    lpath="$("${lr[@]}" path --lr-path);;"
    lcpath="$("${lr[@]}" path --lr-cpath);;"
  fi
  (cd "$work" && env -u LUA_PATH -u LUA_CPATH ${lpath:+LUA_PATH="$lpath"} ${lcpath:+LUA_CPATH="$lcpath"} \
     TOP="$top" MODS="$mods" lua5.4 - <<'LUA'
local top = os.getenv("TOP")
local csp = require "csp"
assert(type(csp) == "table", "require 'csp' did not return a table")
local function where(name, path)
  local f = assert(package.searchpath(name, path))
  for _, d in ipairs{ "/lua/", "/build/", "/build-asan/" } do
    assert(f:sub(1, #top + #d) ~= top .. d, name .. " resolved in the work tree: " .. f)
  end
  return f
end
print("  csp.core -> " .. where("csp.core", package.cpath))
for name in os.getenv("MODS"):gmatch("%S+") do
  print("  " .. name .. " -> " .. where(name, package.path))
  require(name)
end
local ch = csp.chan(1)
ch:send(42)
assert(ch:recv() == 42, "a buffered send/recv through the installed module failed")
LUA
  )
}

# Every lua/csp/**/*.lua as a module name: lua/csp/init.lua is csp, lua/csp/x/y.lua is csp.x.y.
mods=$(cd lua && find csp -name '*.lua' | sort | sed -e 's#/init\.lua$##' -e 's#\.lua$##' -e 's#/#.#g' | tr '\n' ' ')

echo "rock-check: luarocks make ($spec)"
"${lr[@]}" make "$spec"
check

echo "rock-check: pack, remove, install the packed rock alone"
(cd "$work" && "${lr[@]}" pack csp scm-1)
rock=$(ls "$work"/csp-scm-1.*.rock)
"${lr[@]}" remove csp
# An empty server list: the install must come from the file with nothing fetched.
"${lr[@]}" install --only-server="$work/no-server" "$rock"
check
echo "rock-check: ok ($(basename "$rock"))"
