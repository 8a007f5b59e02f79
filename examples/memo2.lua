-- Seed 2.6.2, memo2: one mutex held for the whole get, the slow call included. Safe, but every
-- get waits for the one before it: the calls are serialised (the total time is about 10 times
-- one call) and the cache brings no concurrency.
-- Usage: lua5.4 examples/memo2.lua [-http] [-delay SECONDS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local memotest = require "memotest"
local opts = memotest.args("memo2.lua", "a mutex around the whole get: serialised")

local Memo = {}
Memo.__index = Memo

local function New(f)
  return setmetatable({ f = f, mu = csp.mutex(), cache = {} }, Memo)
end

-- Get is concurrency-safe.
function Memo:get(key)
  self.mu:lock()
  local res = self.cache[key]
  if res == nil then
    local value, err = self.f(key)
    res = { value = value, err = err }
    self.cache[key] = res
  end
  self.mu:unlock()
  return res.value, res.err
end

memotest.run("memo2: one mutex held around the call (serialised)", New, opts)
