-- Seed 2.1, bank1 (gopl.io/ch9/bank1): the balance is confined to one monitor goroutine, the
-- teller; Deposit, Withdraw and Balance are requests sent to it over channels ("do not
-- communicate by sharing memory; share memory by communicating"). Withdraw is gopl's
-- exercise 9.1: a request carrying its own reply channel.
-- Driven by 1000 goroutines that each deposit 100 and withdraw 60: the final balance is exact.
-- Usage: lua5.4 examples/bank1.lua [GOROUTINES]
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local f = require("flags").new("bank1.lua [GOROUTINES]", "the teller monitor goroutine")
f:arg("goroutines", "int", 1000, "customers, each depositing 100 and withdrawing 60", { min = 1 })
local opts = f:parse(arg)

local deposits = csp.chan()     -- send amount to deposit
local balances = csp.chan()     -- receive balance
local withdrawals = csp.chan()  -- send { amount, reply = chan }

local function Deposit(amount) deposits:send(amount) end
local function Balance() return (balances:recv()) end
local function Withdraw(amount)
  local reply = csp.chan()
  withdrawals:send({ amount = amount, reply = reply })
  return (reply:recv())
end

local function teller()
  local balance = 0  -- balance is confined to teller goroutine
  while true do
    csp.select{
      csp.recv(deposits, function(amount) balance = balance + amount end),
      csp.send(balances, balance),
      csp.recv(withdrawals, function(w)
        local ok = balance >= w.amount
        if ok then balance = balance - w.amount end
        w.reply:send(ok)
      end),
    }
  end
end

csp.go(teller)  -- start the monitor goroutine

require("banktest").drive(opts.goroutines,
  { Deposit = Deposit, Withdraw = Withdraw, Balance = Balance })
