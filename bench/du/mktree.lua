-- Builds the du benchmark tree: ROOT/aNN/bNN/cNNN, FILES files spread evenly over DIRS leaf
-- directories (20 top directories, 10 below each, the rest below those), sizes 0..8191 bytes.
-- Usage: lua5.4 bench/du/mktree.lua ROOT [FILES [DIRS]]   (defaults 200000 and 20000)
local root, nfiles, ndirs = arg[1], tonumber(arg[2] or 200000), tonumber(arg[3] or 20000)
assert(root and nfiles and ndirs and ndirs >= 200, "usage: mktree.lua ROOT [FILES [DIRS]]")

local leaves = {}
local per_mid = ndirs // 200
for a = 0, 19 do
  for b = 0, 9 do
    for c = 0, per_mid - 1 do
      leaves[#leaves + 1] = ("%s/a%02d/b%02d/c%04d"):format(root, a, b, c)
    end
  end
end

-- One mkdir -p for all of them (through xargs): a process per directory would dominate.
local p = assert(io.popen("xargs mkdir -p", "w"))
for _, d in ipairs(leaves) do p:write(d, "\n") end
assert(p:close(), "mkdir failed")

local seed, total = 12345, 0
for i = 1, nfiles do
  local dir = leaves[(i - 1) % #leaves + 1]
  seed = (seed * 1103515245 + 12345) % 2147483648
  local size = seed % 8192
  local f = assert(io.open(("%s/f%06d"):format(dir, i), "wb"))
  f:write(("x"):rep(size))
  f:close()
  total = total + size
end
print(("%d files in %d leaf directories, %d bytes"):format(nfiles, #leaves, total))
