-- Seed 1.10, du version 4: du3 that can be cancelled. Input on stdin closes `done` (a close is
-- a broadcast: every receive on done is ready from then on). Walkers poll cancelled() before
-- reading a directory, acquiring the semaphore is a select with done, and main, on done, drains
-- fileSizes so that every walker can finish, then returns without totals, as Go's does. The
-- book checks that nothing is left with a panic, whose dump shows only main; here one line on
-- stderr says how many goroutines are left (1: main). As in Go, where
-- os.Stdin.Read returning (a byte or EOF) cancels, the end of input cancels too:
-- `du4.lua DIR </dev/null` stops at once; keep stdin open (a terminal, a pipe) to walk it all.
-- Usage: lua5.4 examples/du4.lua [-v] [-h] [-b] [DIR...]   (-v progress every 500 ms)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
-- As du3, each directory is read with dirstat's "summary" form and sent to main as one message.
local csp = require "csp"

local USAGE = "usage: du4.lua [-v] [-h] [-b] [DIR...]"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local du = require "du" -- the command line and the report line, shared by du1-du4

local flags, roots = du.args(arg, { v = true, h = true, b = true }, USAGE)
local join = du.join

local function print_disk_usage(nfiles, nbytes)
  du.print_disk_usage(flags, nfiles, nbytes)
end

local done = csp.chan()

local function cancelled()
  return csp.select{ csp.recv(done), default = true } == 1
end

-- Cancel traversal when input is detected (a byte, or the end of input).
csp.go(function()
  csp.stdin:read(1)
  done:close()
end)

-- sema is a counting semaphore for limiting concurrency in dirents.
local sema = csp.chan(20)

local EMPTY = { files = 0, size = 0, dirs = {} }

-- dir summed up: {files=, size=, dirs={names}} (one trip to the thread pool); empty on error or
-- once cancelled.
local function dirents(dir)
  if csp.select{ csp.send(sema, true), csp.recv(done) } == 2 then
    return EMPTY -- cancelled
  end
  local sum, err = csp.fs.dirstat(dir, "summary")
  sema:recv() -- release token
  if not sum then
    io.stderr:write("du: ", err, "\n")
    return EMPTY
  end
  return sum
end

-- Sends the files of dir (a count and their total size) on file_sizes, a goroutine per subdirectory.
local function walk_dir(dir, n, file_sizes)
  local _ <close> = csp.defer(n.done, n)
  if cancelled() then return end
  local sum = dirents(dir)
  for _, name in ipairs(sum.dirs) do
    n:add(1)
    csp.go(walk_dir, join(dir, name), n, file_sizes)
  end
  if sum.files > 0 then file_sizes:send(sum) end
end

local file_sizes = csp.chan()
local n = csp.waitgroup()
for _, root in ipairs(roots) do
  n:add(1)
  csp.go(walk_dir, root, n, file_sizes)
end
csp.go(function()
  n:wait()
  file_sizes:close()
end)

local tick = flags.v and csp.tick(0.5) or nil
local cases = { csp.recv(done), csp.recv(file_sizes), csp.recv(tick) }
local nfiles, nbytes = 0, 0
while true do
  local i, sum, ok = csp.select(cases)
  if i == 1 then
    -- Drain fileSizes to allow existing goroutines to finish.
    for _ in file_sizes:range() do end
    -- Only main is left: every walker and the closer have returned, the stdin reader too.
    io.stderr:write(("du: cancelled, goroutines left: %d\n"):format(csp.numgoroutine()))
    return
  elseif i == 2 then
    if not ok then break end -- fileSizes was closed
    nfiles = nfiles + sum.files
    nbytes = nbytes + sum.size
  else
    print_disk_usage(nfiles, nbytes)
  end
end
print_disk_usage(nfiles, nbytes) -- final totals
