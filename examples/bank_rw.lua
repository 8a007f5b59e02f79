-- Seed 2.2.2, bank with a read-write mutex: Balance takes only the readers' lock (rlock), so
-- readers share the balance while writers (Deposit, Withdraw) take it alone. 1000 goroutines
-- read the balance, deposit 100 and withdraw 60 each; the readers hold the lock across a
-- yield, so many of them are inside at once (counted), never with a writer. Final balance: exact.
-- Usage: lua5.4 examples/bank_rw.lua [GOROUTINES]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("bank_rw.lua [GOROUTINES]", "Balance under rwmutex:rlock()")
f:arg("goroutines", "int", 1000, "customers, each depositing 100 and withdrawing 60", { min = 1 })
local opts = f:parse(arg)

local mu = csp.rwmutex()  -- guards balance
local balance = 0
local readers, max_readers, writer_with_readers = 0, 0, false

local function Balance()
  mu:rlock()  -- readers lock
  local _ <close> = csp.defer(mu.runlock, mu)
  readers = readers + 1
  if readers > max_readers then max_readers = readers end
  csp.gosched()  -- other readers may come in meanwhile; writers wait
  readers = readers - 1
  return balance
end

local function write(amount)
  if readers > 0 then writer_with_readers = true end
  local b = balance
  csp.gosched()
  balance = b + amount
end

local function Deposit(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  write(amount)
end

local function Withdraw(amount)
  mu:lock()
  local _ <close> = csp.defer(mu.unlock, mu)
  if balance < amount then return false end  -- insufficient funds
  write(-amount)
  return true
end

local refused = 0
local wg = csp.waitgroup()
for _ = 1, opts.goroutines do
  wg:go(function()
    Balance()
    Deposit(100)
    if not Withdraw(60) then refused = refused + 1 end
  end)
end
wg:wait()
print(("%d goroutines read the balance, deposited 100 and withdrew 60 each (%d withdrawals refused)")
  :format(opts.goroutines, refused))
print(("readers inside at once: up to %d; a writer inside with readers: %s")
  :format(max_readers, writer_with_readers and "yes" or "never"))
print(("balance: %d"):format(Balance()))
