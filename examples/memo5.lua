-- Seed 2.6.5, memo5: the cache confined to a monitor goroutine (the server). get sends a
-- request {key, response channel}; for the first request of a key the server creates the entry
-- and starts a goroutine that calls f and closes ready; for every request it starts a goroutine
-- that waits for ready and delivers the result. No lock: f runs once per key, concurrently.
-- Usage: lua5.4 examples/memo5.lua [-http] [-delay SECONDS]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local memotest = require "memotest"
local opts = memotest.args("memo5.lua", "a monitor goroutine owns the cache")

local Memo = {}
Memo.__index = Memo

local function call(e, f, key)
  -- Evaluate the function.
  e.value, e.err = f(key)
  -- Broadcast the ready condition.
  e.ready:close()
end

local function deliver(e, response)
  -- Wait for the ready condition.
  e.ready:recv()
  -- Send the result to the client.
  response:send({ value = e.value, err = e.err })
end

local function server(requests, f)
  local cache = {}
  for req in requests:range() do
    local e = cache[req.key]
    if e == nil then
      -- This is the first request for this key.
      e = { ready = csp.chan() }
      cache[req.key] = e
      csp.go(call, e, f, req.key)  -- call f(key)
    end
    csp.go(deliver, e, req.response)
  end
end

-- New returns a memoization of f. Clients must subsequently call close.
local function New(f)
  local memo = setmetatable({ requests = csp.chan() }, Memo)
  csp.go(server, memo.requests:receiver(), f)
  return memo
end

function Memo:get(key)
  local response = csp.chan()
  self.requests:send({ key = key, response = response:sender() })
  local res = response:recv()
  return res.value, res.err
end

function Memo:close() self.requests:close() end

memotest.run("memo5: a monitor goroutine owns the cache", New, opts)
