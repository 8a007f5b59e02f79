-- du: what du1-du4 share, as Go's versions share the flag package and printDiskUsage: the
-- command line (flags first: -v, -h, -b; then the roots, default "."), the report line
-- (`N files  X.X GB`, -h human units, -b bytes), path joining, and version 1's sequential walk
-- that version 2 keeps; du3 and du4 have their own concurrent walks, what those versions show.
local csp = require "csp"

local M = {}

-- Go's flag package: flags first, "--" or the first non-flag ends them.
local function parse(argv, known, usage)
  local flags, roots, i = {}, {}, 1
  while argv[i] and argv[i] ~= "-" and argv[i]:sub(1, 1) == "-" do
    local a = argv[i]
    i = i + 1
    if a == "--" then break end
    local name = a:match("^%-%-?(.+)$")
    if not known[name] then
      io.stderr:write("flag provided but not defined: ", a, "\n", usage, "\n")
      os.exit(2)
    end
    flags[name] = true
  end
  for j = i, #argv do roots[#roots + 1] = argv[j] end
  if #roots == 0 then roots[1] = "." end
  return flags, roots
end

-- args(arg, known, usage) -> flags, roots
M.args = parse

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
