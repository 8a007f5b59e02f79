-- Seed 1.5.4 unidirectional channels: counter -> squarer -> printer prints the squares of
-- 0..99 in order; each stage gets only the view it needs (ch:sender() is chan<-,
-- ch:receiver() is <-chan), so e.g. printer cannot send or close.
local csp = require "csp"

local function counter(out)
  for x = 0, 99 do
    out:send(x)
  end
  out:close()
end

local function squarer(out, src)
  for v in src:range() do
    out:send(v * v)
  end
  out:close()
end

local function printer(src)
  for v in src:range() do
    print(v)
  end
end

local naturals = csp.chan()
local squares = csp.chan()
csp.go(counter, naturals:sender())
csp.go(squarer, squares:sender(), naturals:receiver())
printer(squares:receiver())
