-- Seed 2.6.4, memo4: duplicate suppression. The cache maps a key to an entry; the first
-- goroutine to ask for a key installs the entry (under the lock), calls f unlocked, stores the
-- result and closes the entry's ready channel, a broadcast; later callers wait on ready.
-- Concurrent (total about one call) and f runs once per key (10 calls). csp.memo is this.
-- Usage: lua5.4 examples/memo4.lua [-http] [-delay SECONDS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local memotest = require "memotest"
local opts = memotest.args("memo4.lua", "an entry with a ready channel: duplicate suppression")

local Memo = {}
Memo.__index = Memo

local function New(f)
  return setmetatable({ f = f, mu = csp.mutex(), cache = {} }, Memo)
end

function Memo:get(key)
  self.mu:lock()
  local e = self.cache[key]
  if e == nil then
    -- This is the first request for this key.
    -- This goroutine becomes responsible for computing
    -- the value and broadcasting the ready condition.
    e = { ready = csp.chan() }
    self.cache[key] = e
    self.mu:unlock()

    e.value, e.err = self.f(key)

    e.ready:close()  -- broadcast ready condition
  else
    -- This is a repeat request for this key.
    self.mu:unlock()

    e.ready:recv()  -- wait for ready condition
  end
  return e.value, e.err
end

memotest.run("memo4: entry with a ready channel (duplicate suppression)", New, opts)
