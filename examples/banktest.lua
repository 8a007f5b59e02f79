-- The bank programs' common driver (like gopl.io/ch9/bank1's bank_test.go): n customer
-- goroutines each deposit 100 and withdraw 60, then the final balance is printed; it is exact
-- when the bank is safe for concurrent use.
local csp = require "csp"

local M = {}

--- drive(n, bank): bank has Deposit(amount), Withdraw(amount) -> ok, Balance() -> balance.
function M.drive(n, bank)
  local refused = 0
  local wg = csp.waitgroup()
  for _ = 1, n do
    wg:go(function()
      bank.Deposit(100)
      if not bank.Withdraw(60) then refused = refused + 1 end
    end)
  end
  wg:wait()
  print(("%d goroutines deposited 100 and withdrew 60 each (%d withdrawals refused)")
    :format(n, refused))
  print(("balance: %d"):format(bank.Balance()))
end

return M
