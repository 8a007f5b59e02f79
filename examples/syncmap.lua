-- Seed 2.3.2, sync.Map with real threads: 2 threads x 10 goroutines store keys into one
-- csp.syncmap concurrently (Go's plain map would need a mutex), then main loads, uses
-- load_or_store, deletes, and ranges over what is left.
-- Usage: lua5.4 examples/syncmap.lua
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"

local m = csp.syncmap()

-- Each thread stores keys "t<thread>-<n>" -> n from 10 goroutines of its own.
local function store_keys(m, t)
  local csp = require "csp"
  local wg = csp.waitgroup()
  for n = 1, 10 do
    wg:add(1)
    csp.go(function()
      m:store(("t%d-%d"):format(t, n), n)
      wg:done()
    end)
  end
  wg:wait()
end

local threads = {}
for t = 1, 2 do threads[t] = csp.thread(store_keys, m, t) end
for t = 1, 2 do threads[t]:join() end

local v, ok = m:load("t1-7")
print("load t1-7:", v, ok)
print("load_or_store t2-3:", m:load_or_store("t2-3", 99))
print("load_or_store new:", m:load_or_store("new", 99))
m:delete("new")

local keys = {}
m:range(function(k, val)
  keys[#keys + 1] = k .. "=" .. val
  return true -- false would stop the range
end)
table.sort(keys)
print(#keys .. " keys: " .. table.concat(keys, " "))
