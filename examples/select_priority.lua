-- Seed 1.8.5 priority in select: both workers of the note, each preferring ch1 jobs over ch2 jobs.
-- Version 1 (nested select with default) keeps the priority but never blocks: when idle it
-- spins, burning CPU. Go preempts the spinning goroutine; in csp a select with a default is a
-- non-blocking call, which never lets another goroutine run, so the others wait until the
-- worker gives up (this one gives up; Go's spins forever).
-- Version 2 (the labelled loop) parks in select when idle, and after taking a ch2 job it
-- first drains ch1.
local csp = require "csp"

-- Version 1. Go's loop spins forever; this one gives up after `spins` idle rounds.
local function worker(ch1, ch2, spins)
  local idle = 0
  while idle < spins do
    csp.select{
      csp.recv(ch1, function(job1) print(job1) end),
      default = function()
        csp.select{
          csp.recv(ch2, function(job2) print(job2) end),
          default = function() idle = idle + 1 end,
        }
      end,
    }
  end
  print(("worker: nothing to do, spun %d times without blocking"):format(idle))
end

-- Version 2.
local function worker2(ch1, ch2)
  while true do
    csp.select{
      csp.recv(ch1, function(job1) print(job1) end),
      csp.recv(ch2, function(job2)
        while true do -- Go's `priority:` loop
          local i, job1 = csp.select{ csp.recv(ch1), default = true }
          if i == 0 then break end -- break priority
          print(job1)
        end
        print(job2)
      end),
    }
  end
end

-- Buffered channels holding three jobs each, so both cases are ready at once.
local function jobs()
  local ch1, ch2 = csp.chan(8), csp.chan(8)
  for i = 1, 3 do
    ch2:send("job2 #" .. i)
    ch1:send("job1 #" .. i)
  end
  return ch1, ch2
end

print("== version 1: nested select with default (busy loop) ==")
local ch1, ch2 = jobs()
local wg = csp.waitgroup()
wg:go(worker, ch1:receiver(), ch2:receiver(), 100000)
-- Runnable all along, yet it runs only once the spinning worker has ended.
wg:go(function() print("bystander: ran only once the spinning worker gave up") end)
wg:wait()

print("== version 2: labelled loop (blocks when idle) ==")
ch1, ch2 = jobs()
local id = csp.go(worker2, ch1:receiver(), ch2:receiver())
csp.gosched() -- worker2 handles every job, then parks
print("worker2 idle: " .. (csp.dump():match("goroutine " .. id .. " %[[^%]]*%]") or "?"))
ch2:send("job2 #4") -- arrives first...
ch1:send("job1 #4") -- ...but this one is handled first
csp.gosched()
-- worker2 stays parked in select; it is abandoned when main ends, as in Go.
