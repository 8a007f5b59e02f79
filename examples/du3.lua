-- Seed 1.9.4, du version 3: a goroutine per directory, counted by a WaitGroup; a closer
-- goroutine closes fileSizes when the count drops to zero; a 20-token semaphore channel
-- bounds the directories being read at once. The roots are walked in parallel.
-- Usage: lua5.4 examples/du3.lua [-v] [-h] [-b] [DIR...]   (-v progress every 500 ms)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
local csp = require "csp"

local USAGE = "usage: du3.lua [-v] [-h] [-b] [DIR...]"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local du = require "du" -- the command line and the report line, shared by du1-du4

local flags, roots = du.args(arg, { v = true, h = true, b = true }, USAGE)
local join = du.join

local function print_disk_usage(nfiles, nbytes)
  du.print_disk_usage(flags, nfiles, nbytes)
end

-- sema is a counting semaphore for limiting concurrency in dirents.
local sema = csp.chan(20)

-- The entries of dir with their lstat fields (one trip to the thread pool); none on error.
local function dirents(dir)
  sema:send(true) -- acquire token
  local entries, err = csp.fs.dirstat(dir)
  sema:recv() -- release token
  if not entries then
    io.stderr:write("du: ", err, "\n")
    return {}
  end
  return entries
end

local function walk_dir(dir, n, file_sizes)
  local _ <close> = csp.defer(n.done, n)
  for _, entry in ipairs(dirents(dir)) do
    if entry.type == "dir" then
      n:add(1)
      csp.go(walk_dir, join(dir, entry.name), n, file_sizes)
    else
      file_sizes:send(entry.size)
    end
  end
end

-- Traverse each root of the file tree in parallel.
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

-- Print the results periodically; without -v the tick case is a nil channel: never ready.
local tick = flags.v and csp.tick(0.5) or nil
local cases = { csp.recv(file_sizes), csp.recv(tick) }
local nfiles, nbytes = 0, 0
while true do
  local i, size, ok = csp.select(cases)
  if i == 1 then
    if not ok then break end -- fileSizes was closed
    nfiles = nfiles + 1
    nbytes = nbytes + size
  else
    print_disk_usage(nfiles, nbytes)
  end
end
print_disk_usage(nfiles, nbytes) -- final totals
