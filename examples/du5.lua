-- du version 5: du3's walk (a goroutine per directory, a 20-token semaphore) in one walker
-- thread per core (csp.parallel): main lists each root and sends its subdirectories as jobs;
-- a worker walks a whole subtree in its own scheduler and sends back one {files, bytes} total,
-- so the per-file traffic stays inside each thread. CSP_THREADS caps the thread count.
-- Usage: lua5.4 examples/du5.lua [-v] [-h] [-b] [DIR...]   (-v progress every 500 ms)
-- luacheck: ignore 431 432 433 (functions run by csp.thread take their own copies, by design)
local csp = require "csp"

local USAGE = "usage: du5.lua [-v] [-h] [-b] [DIR...]"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local du = require "du" -- the command line and the report line, shared by du1-du5

local flags, roots = du.args(arg, { v = true, h = true, b = true }, USAGE)

-- Runs in a worker thread (no upvalues: it is sent as bytecode): du3's walk of one subtree, with
-- du3's dirstat "summary" form (files counted and summed in C, only subdirectory names in Lua).
local function walk_tree(dir)
  local csp = require "csp"
  local dirstat = csp.fs.dirstat
  local sema = csp.chan(20)
  local files, bytes = 0, 0
  local n = csp.waitgroup()
  local function walk_dir(d)
    local _ <close> = csp.defer(n.done, n)
    sema:send(true)
    local sum, err = dirstat(d, "summary")
    sema:recv()
    if not sum then
      io.stderr:write("du: ", err, "\n")
      return
    end
    local prefix = d:sub(-1) == "/" and d or d .. "/"
    for _, name in ipairs(sum.dirs) do
      n:add(1)
      csp.go(walk_dir, prefix .. name)
    end
    files, bytes = files + sum.files, bytes + sum.size
  end
  n:add(1)
  csp.go(walk_dir, dir)
  n:wait()
  return { files, bytes }
end

local jobs, totals = csp.xchan(1024), csp.xchan(1024)
csp.go(csp.parallel, 0, walk_tree, jobs, totals)
csp.go(function()
  for _, root in ipairs(roots) do
    local entries, err = csp.fs.dirstat(root)
    if not entries then
      io.stderr:write("du: ", err, "\n")
    else
      local files, bytes = 0, 0
      for _, entry in ipairs(entries) do
        if entry.type == "dir" then jobs:send(du.join(root, entry.name))
        else files, bytes = files + 1, bytes + entry.size end
      end
      totals:send({ files, bytes })
    end
  end
  jobs:close()
end)

local tick = flags.v and csp.tick(0.5) or nil
local cases = { csp.recv(totals), csp.recv(tick) }
local nfiles, nbytes = 0, 0
while true do
  local i, t, ok = csp.select(cases)
  if i == 1 then
    if not ok then break end -- every worker ended: parallel closed totals
    nfiles, nbytes = nfiles + t[1], nbytes + t[2]
  else
    du.print_disk_usage(flags, nfiles, nbytes)
  end
end
du.print_disk_usage(flags, nfiles, nbytes)
