-- Seed 1.9.2, du version 1: one background goroutine walks the roots and sends the size of
-- every file on an unbuffered channel; main sums them and prints the totals at the end.
-- Usage: lua5.4 examples/du1.lua [-h] [-b] [DIR...]   (-h human units, -b exact bytes)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
local csp = require "csp"

local USAGE = "usage: du1.lua [-h] [-b] [DIR...]"

-- Go's flag package: flags first, "--" or the first non-flag ends them.
local function parse(argv, known)
  local flags, roots, i = {}, {}, 1
  while argv[i] and argv[i] ~= "-" and argv[i]:sub(1, 1) == "-" do
    local a = argv[i]
    i = i + 1
    if a == "--" then break end
    local name = a:match("^%-%-?(.+)$")
    if not known[name] then
      io.stderr:write("flag provided but not defined: ", a, "\n", USAGE, "\n")
      os.exit(2)
    end
    flags[name] = true
  end
  for j = i, #argv do roots[#roots + 1] = argv[j] end
  if #roots == 0 then roots[1] = "." end
  return flags, roots
end

local flags, roots = parse(arg, { h = true, b = true })

local function human(n)
  local units, u = { "B", "kB", "MB", "GB", "TB", "PB", "EB" }, 1
  if n < 1000 then return ("%d B"):format(n) end
  while n >= 1000 and u < #units do n, u = n / 1000, u + 1 end
  return ("%.1f %s"):format(n, units[u])
end

local function print_disk_usage(nfiles, nbytes)
  if flags.b then
    print(("%d files  %d bytes"):format(nfiles, nbytes))
  elseif flags.h then
    print(("%d files  %s"):format(nfiles, human(nbytes)))
  else
    print(("%d files  %.1f GB"):format(nfiles, nbytes / 1e9))
  end
end

local function join(dir, name)
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

local function walk_dir(dir, file_sizes)
  for _, entry in ipairs(dirents(dir)) do
    if entry.type == "dir" then
      walk_dir(join(dir, entry.name), file_sizes)
    else
      file_sizes:send(entry.size)
    end
  end
end

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
