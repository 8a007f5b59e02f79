-- Seed 2.4 with real threads: 2 threads x 1000 goroutines each add 1 to a shared counter.
--   atomic.int add: exact (2000);
--   load then store through a syncmap (no atomicity between the two): updates are lost,
--   because other goroutines and the other thread run between the read and the write;
--   a compare-and-swap loop: exact again.
-- Then 2.4.2: atomic.value holds a config table swapped whole; nil and a change of type raise.
-- Usage: lua5.4 examples/atomic.lua
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"

local N_THREADS, N_GOROUTINES = 2, 1000

-- Runs add(shared) from N_GOROUTINES goroutines in each of N_THREADS threads; waits for them.
local function count(add, shared)
  local ts = {}
  for i = 1, N_THREADS do
    ts[i] = csp.thread(function(code, shared, n)
      local csp = require "csp"
      local add = load(code, "=add", "b")
      local wg = csp.waitgroup()
      for _ = 1, n do
        wg:add(1)
        csp.go(function() add(shared); wg:done() end)
      end
      wg:wait()
    end, string.dump(add), shared, N_GOROUTINES)
  end
  for i = 1, N_THREADS do ts[i]:join() end
end

local expected = N_THREADS * N_GOROUTINES

-- 2.4.1 AddInt64
local n = csp.atomic.int()
count(function(n) n:add(1) end, n)
print(("atomic add:       %d (expected %d)"):format(n:load(), expected))

-- Without atomicity: read, yield (as any blocking call would), write back.
local m = csp.syncmap()
m:store("n", 0)
count(function(m)
  local v = m:load("n")
  require("csp").gosched()
  m:store("n", v + 1)
end, m)
print(("load+store:       %d (expected %d: updates lost)"):format(m:load("n"), expected))

-- CompareAndSwapInt64 in a loop: the read-modify-write retried until no one came between.
local c = csp.atomic.int()
count(function(c)
  repeat
    local v = c:load()
    require("csp").gosched()
  until c:cas(v, v + 1)
end, c)
print(("cas loop:         %d (expected %d)"):format(c:load(), expected))

-- 2.4.2 atomic.Value: readers in another thread see one whole config or the next.
local config = csp.atomic.value()
config:store({ version = 1, addr = "127.0.0.1:8000" })
local reader = csp.thread(function(config, seen)
  local csp = require "csp"
  local last = 0
  while last < 3 do
    local cfg = config:load()
    if cfg.version ~= last then last = cfg.version; seen:send(cfg.version .. " " .. cfg.addr) end
    csp.sleep(0.001)
  end
end, config, csp.xchan(3))
for v = 2, 3 do config:store({ version = v, addr = "127.0.0.1:800" .. v }) end
reader:join()
print("config now:", config:load().version, config:load().addr)
print("store nil:", pcall(config.store, config, nil))
print("store a string:", pcall(config.store, config, "x"))
