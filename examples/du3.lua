-- Seed 1.9.4, du version 3: a goroutine per directory, counted by a WaitGroup; a closer
-- goroutine closes fileSizes when the count drops to zero; a 20-token semaphore channel
-- bounds the directories being read at once. The roots are walked in parallel.
-- Usage: lua5.4 examples/du3.lua [-v] [-h] [-b] [DIR...]   (-v progress every 500 ms)
-- Symlinks are not followed: their own (lstat) size counts, as with Go's ioutil.ReadDir.
local csp = require "csp"

local USAGE = "usage: du3.lua [-v] [-h] [-b] [DIR...]"

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

local flags, roots = parse(arg, { v = true, h = true, b = true })

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
