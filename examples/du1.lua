-- Seed 1.9.2, du version 1: one background goroutine walks the roots and sends the size of
-- every file on an unbuffered channel; main sums them and prints the totals at the end.
-- Usage: lua5.4 examples/du1.lua [-h] [-b] [DIR...]   (-h human units, -b exact bytes)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
local csp = require "csp"

local USAGE = "usage: du1.lua [-h] [-b] [DIR...]"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local du = require "du" -- the command line and the report line, shared by du1-du4

local flags, roots = du.args(arg, { h = true, b = true }, USAGE)

local function print_disk_usage(nfiles, nbytes)
  du.print_disk_usage(flags, nfiles, nbytes)
end

local walk_dir = du.walk_dir -- the sequential walk of version 1, as in the seed

local file_sizes = csp.chan()
csp.go(function()
  for _, root in ipairs(roots) do walk_dir(root, file_sizes) end
  file_sizes:close()
end)

local nfiles, nbytes = 0, 0
for size in file_sizes:range() do
  nfiles = nfiles + 1
  nbytes = nbytes + size
end
print_disk_usage(nfiles, nbytes)
