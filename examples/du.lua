-- du: what du1-du4 share, as Go's versions share the flag package and printDiskUsage: the
-- command line (flags first: -v, -h, -b; then the roots, default "."), the report line
-- (`N files  X.X GB`, -h human units, -b bytes), path joining, and version 1's sequential walk
-- that version 2 keeps; du3 and du4 have their own concurrent walks, what those versions show.
local csp = require "csp"
local flagset = require "flags"

local M = {}

local HELP = { v = "print running totals every 500 ms", h = "human-readable sizes (kB, MB, GB)",
               b = "exact byte counts" }

-- The command line, with examples/flags.lua (Go's flag package): the bool flags named in known,
-- then the roots (default "."). usage is "usage: NAME ..."; returns flags, roots.
function M.args(argv, known, usage)
  local f = flagset.new(usage:match("^usage: (.*)$") or usage, "disk usage of the files below each DIR")
  for _, name in ipairs{ "v", "h", "b" } do
    if known[name] then f:flag(name, "bool", false, HELP[name]) end
  end
  local opts = f:rest("DIR", 0):parse(argv)
  local roots = opts.rest
  if #roots == 0 then roots[1] = "." end
  return opts, roots
end

local function human(n)
  local units, u = { "B", "kB", "MB", "GB", "TB", "PB", "EB" }, 1
  if n < 1000 then return ("%d B"):format(n) end
  while n >= 1000 and u < #units do n, u = n / 1000, u + 1 end
  return ("%.1f %s"):format(n, units[u])
end

-- The report line for the flags given.
function M.print_disk_usage(flags, nfiles, nbytes)
  if flags.b then
    print(("%d files  %d bytes"):format(nfiles, nbytes))
  elseif flags.h then
    print(("%d files  %s"):format(nfiles, human(nbytes)))
  else
    print(("%d files  %.1f GB"):format(nfiles, nbytes / 1e9))
  end
end

function M.join(dir, name)
  return dir:sub(-1) == "/" and dir .. name or dir .. "/" .. name
end

-- The entries of dir with their lstat fields (one trip to the thread pool); none on error.
local function dirents(dir)
  local entries, err = csp.fs.dirstat(dir)
  if not entries then
    io.stderr:write("du: ", err, "\n")
    return {}
  end
  return entries
end

-- Version 1's walk (du2 keeps it): sends the size of every file below dir on file_sizes.
function M.walk_dir(dir, file_sizes)
  for _, entry in ipairs(dirents(dir)) do
    if entry.type == "dir" then
      M.walk_dir(M.join(dir, entry.name), file_sizes)
    else
      file_sizes:send(entry.size)
    end
  end
end

return M
