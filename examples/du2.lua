-- Seed 1.9.3, du version 2: as version 1, and with -v main also prints the running totals
-- every 500 ms: a select over the sizes and a ticker channel, which stays nil without -v (a
-- nil channel's case is never ready, so the select then just receives sizes).
-- Usage: lua5.4 examples/du2.lua [-v] [-h] [-b] [DIR...]   (-h human units, -b exact bytes)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
local csp = require "csp"

local USAGE = "usage: du2.lua [-v] [-h] [-b] [DIR...]"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local du = require "du" -- the command line and the report line, shared by du1-du4

local flags, roots = du.args(arg, { v = true, h = true, b = true }, USAGE)

local function print_disk_usage(nfiles, nbytes)
  du.print_disk_usage(flags, nfiles, nbytes)
end

local walk_dir = du.walk_dir -- the sequential walk of version 1, as in the seed

local file_sizes = csp.chan()
csp.go(function()
  for _, root in ipairs(roots) do walk_dir(root, file_sizes) end
  file_sizes:close()
end)

-- Print the results periodically.
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
