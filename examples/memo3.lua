-- Seed 2.6.3, memo3: two-phase locking. The lookup and the update each take the lock, the slow
-- call runs between them unlocked: gets of different keys overlap again (total about one call),
-- but several goroutines that miss the same key all call f, and the last store wins:
-- duplicate calls show in the count (20 for 10 keys).
-- Usage: lua5.4 examples/memo3.lua [-http] [-delay SECONDS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local memotest = require "memotest"
local opts = memotest.args("memo3.lua", "two-phase locking: concurrent, with duplicate calls")

local Memo = {}
Memo.__index = Memo

local function New(f)
  return setmetatable({ f = f, mu = csp.mutex(), cache = {} }, Memo)
end

function Memo:get(key)
  self.mu:lock()
  local res = self.cache[key]
  self.mu:unlock()
  if res == nil then
    local value, err = self.f(key)
    res = { value = value, err = err }
    -- Between the two critical sections, several goroutines
    -- may race to compute f(key) and update the map.
    self.mu:lock()
    self.cache[key] = res
    self.mu:unlock()
  end
  return res.value, res.err
end

memotest.run("memo3: two-phase locking (duplicate calls)", New, opts)
