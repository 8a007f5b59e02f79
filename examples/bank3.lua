-- Seed 2.2.1, the incorrect Withdraw: it holds the mutex and calls Deposit and Balance, which
-- lock it again. A mutex is not reentrant (neither in Go nor here), so the first Withdraw waits
-- for itself forever, and every other goroutine then waits for it. Go's runtime reports
-- "all goroutines are asleep - deadlock!"; so does csp, naming the wait (sync.Mutex.Lock) and
-- the goroutine holding the mutex, and the script exits with status 1. See bank4.lua for the fix.
-- Usage: lua5.4 examples/bank3.lua [GOROUTINES]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("bank3.lua [GOROUTINES]", "the incorrect Withdraw: a deadlock")
f:arg("goroutines", "int", 1000, "customers, each depositing 100 and withdrawing 60", { min = 1 })
local opts = f:parse(arg)

local mu = csp.mutex()  -- guards balance
local balance = 0

local function Deposit(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  balance = balance + amount
end

local function Balance()
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  return balance
end

-- NOTE: incorrect!
local function Withdraw(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  Deposit(-amount)  -- locks mu again: blocks forever
  if Balance() < 0 then
    Deposit(amount)
    return false  -- insufficient funds
  end
  return true
end

local wg = csp.waitgroup()
for _ = 1, opts.goroutines do
  wg:go(function()
    Deposit(100)
    Withdraw(60)
  end)
end
print(("%d goroutines deposit 100 and withdraw 60 each; Withdraw relocks the mutex...")
  :format(opts.goroutines))
io.stdout:flush()
wg:wait()  -- never returns: raises the deadlock report
print(("balance: %d"):format(Balance()))
