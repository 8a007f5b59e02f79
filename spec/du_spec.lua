-- The seed's du programs (examples/du1..du4.lua, issue 5), run as real processes on a real tree:
-- nested and empty directories, symlinks (to a file, to a directory, dangling, a loop, one back
-- to the root), a FIFO, odd names, 10000 files in one directory, and a directory nobody may read
-- (when not root). Every version must report what `find ROOT ! -type d -printf '%s\n'` sums:
-- the lstat sizes of all non-directories, symlinks not followed.
local csp = require "csp"

local helpers = require "spec.helpers.run"
local root_dir, q, slurp = helpers.root, helpers.quote, helpers.slurp

local function sh(cmd)
  assert(os.execute(cmd), "command failed: " .. cmd)
end

local function put(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local IS_ROOT = io.popen("id -u"):read("l") == "0"
-- The child finds this tree's modules (under make asan, the sanitized build).
local ENV = helpers.env .. " "

local T, R -- the temp dir, and the tree's root in it
local want -- { files =, bytes = } from find
local MANY = 0 -- bytes in many/: file i has i % 251 bytes
for i = 1, 10000 do MANY = MANY + i % 251 end

-- Runs a shell command line (with the environment above) under a time limit; returns stdout,
-- stderr and the exit status.
local function run(cmdline, limit)
  local out, err = T .. "/out", T .. "/err"
  local _, _, code = os.execute(("%stimeout %d sh -c %s >%s 2>%s"):format(
    ENV, limit or 60, q(cmdline), q(out), q(err)))
  return slurp(out), slurp(err), code
end

-- stdin: a file to read; by default /dev/null, but for du4, whose end of input cancels the
-- walk (as in Go), a FIFO opened read-write: open, and nothing ever arrives.
local function du(version, args, stdin)
  local redirect = stdin and "<" .. q(stdin) or version == 4 and "<>" .. q(T .. "/idle") or "</dev/null"
  return run(("lua5.4 %s/examples/du%d.lua %s %s"):format(q(root_dir), version, args, redirect))
end

local function exact(files, bytes)
  return ("%d files  %d bytes\n"):format(files, bytes)
end

setup(function()
  T = io.popen("mktemp -d \"${TMPDIR:-/tmp}/csp-du-spec.XXXXXX\""):read("l")
  sh(("mkfifo %s/idle"):format(q(T)))
  R = T .. "/tree"
  sh(("mkdir -p %s/nested/a/b/c/d/e %s/empty1 %s/empty2/empty3 %s/many %s/'odd name'"):format(
    q(R), q(R), q(R), q(R), q(R)))
  local path = R .. "/nested"
  for depth, d in ipairs{ "", "a", "b", "c", "d", "e" } do
    if d ~= "" then path = path .. "/" .. d end
    for i = 1, depth do put(("%s/f%d"):format(path, i), ("n"):rep(depth * 1000 + i)) end
  end
  for i = 1, 10000 do put(("%s/many/f%05d"):format(R, i), ("m"):rep(i % 251)) end
  put(R .. "/odd name/é ü.txt", "unicode\n")
  put(R .. "/top.txt", ("t"):rep(12345))
  sh(("cd %s && ln -s top.txt filelink && ln -s nested dirlink && ln -s nowhere dangling"
    .. " && ln -s loop2 loop1 && ln -s loop1 loop2 && ln -s .. up && mkfifo fifo"):format(q(R)))
  if not IS_ROOT then
    sh(("mkdir %s/locked && touch %s/locked/hidden && chmod 000 %s/locked"):format(q(R), q(R), q(R)))
  end
  local files, bytes = 0, 0
  for size in io.popen(("find %s ! -type d -printf '%%s\\n' 2>/dev/null"):format(q(R))):lines() do
    files, bytes = files + 1, bytes + tonumber(size)
  end
  want = { files = files, bytes = bytes }
  assert(files > 10000, "the tree was not built")
end)

teardown(function()
  if T then os.execute(("chmod -R u+rwx %s 2>/dev/null; rm -rf %s"):format(q(T), q(T))) end
end)

describe("du examples on a real tree", function()
  for version = 1, 4 do
    it(("du%d: -b prints the sum of every non-directory's lstat size"):format(version), function()
      local out, err, code = du(version, "-b " .. q(R))
      assert.are.equal(0, code, err)
      assert.are.equal(exact(want.files, want.bytes), out)
      if IS_ROOT then
        assert.are.equal("", err)
      else
        assert.are.equal(("du: open %s/locked: permission denied\n"):format(R), err)
      end
    end)
  end

  it("default output is GB with one decimal, -h picks a unit", function()
    local out = du(3, q(R))
    assert.are.equal(("%d files  %.1f GB\n"):format(want.files, want.bytes / 1e9), out)
    out = du(1, "-h " .. q(R .. "/many"))
    assert.are.equal(("10000 files  %.1f MB\n"):format(MANY / 1e6), out)
    out = du(2, "-h " .. q(R .. "/odd name"))
    assert.are.equal("1 files  8 B\n", out)
    out = du(4, "-h " .. q(R .. "/empty1"))
    assert.are.equal("0 files  0 B\n", out)
  end)

  it("du3: several roots are walked in parallel and summed", function()
    local out = du(3, ("-b %s %s %s"):format(q(R .. "/many"), q(R .. "/nested"), q(R .. "/top.txt")))
    -- top.txt is no directory: Go's ReadDir fails on it, and so does the walk of that root.
    assert.are.equal(exact(10000 + 21, MANY + 91056), out) -- nested: depth d has d files of d*1000+i
  end)

  it("a missing root is reported on stderr and the others are still walked", function()
    local out, err, code = du(2, ("-b %s/missing %s/nested/a/b/c/d/e"):format(q(R), q(R)))
    assert.are.equal(0, code)
    assert.are.equal(("du: open %s/missing: no such file or directory\n"):format(R), err)
    assert.are.equal(exact(6, 6 * 6000 + 21), out)
  end)

  it("an unknown flag prints the usage and exits with status 2", function()
    local out, err, code = du(1, "-x .")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.matches("flag provided but not defined: -x\nusage: du1.lua", err, 1, true)
  end)
end)

describe("du2 -v", function()
  -- Progress lines come every 500 ms, so a walk must last over a second for some to appear:
  -- the many/ directory is given as a root k times, k doubling until the walk takes that long.
  it("prints running totals during a long walk, and none without -v", function()
    local k, out, elapsed = 4
    repeat
      k = k * 2
      local t0 = csp.now()
      out = du(2, "-v -b " .. (q(R .. "/many") .. " "):rep(k))
      elapsed = csp.now() - t0
    until elapsed > 1.2 or k >= 1024
    assert.is_true(elapsed > 1.2, "the walk never took long enough")
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.is_true(#lines >= 2, "no progress line in a walk of " .. elapsed .. " s:\n" .. out)
    assert.are.equal(exact(10000 * k, MANY * k), lines[#lines] .. "\n")
    local last = 0
    for i = 1, #lines - 1 do
      local n, b = lines[i]:match("^(%d+) files  (%d+) bytes$")
      assert.is_truthy(n, lines[i])
      assert.is_true(tonumber(n) >= last and tonumber(n) <= 10000 * k and tonumber(b) <= MANY * k)
      last = tonumber(n)
    end
    -- Without -v the tick channel is nil: a walk as long prints the totals only.
    local err, code
    out, err, code = du(2, "-b " .. (q(R .. "/many") .. " "):rep(k))
    assert.are.equal(exact(10000 * k, MANY * k), out, ("exit %s, stderr: %s"):format(code, err))
  end)
end)

describe("du4 cancellation", function()
  -- Cancelled, du4 prints no totals (Go's main returns), only the -v progress lines before it.
  local function check_cancelled(out, err, code)
    assert.are.equal(0, code, err)
    err = err:gsub("du: open [^\n]*: permission denied\n", "") -- locked/, when not root
    assert.are.equal("du: cancelled, goroutines left: 1\n", err)
  end

  it("a byte already waiting on stdin cancels the walk as it starts", function()
    local out, err, code = run(("printf x | lua5.4 %s/examples/du4.lua -b %s"):format(q(root_dir), q(R)))
    check_cancelled(out, err, code)
    assert.are.equal("", out)
  end)

  it("a byte sent mid-walk cancels it; main drains the walkers and nothing is left behind", function()
    -- du4 -v walks the tree 200 times over (many seconds); its stdin and stdout are FIFOs: the
    -- script sends the byte once the first progress line shows the walk under way.
    local roots = (q(R) .. " "):rep(200)
    local F = T .. "/fifos/"
    local script = table.concat({
      ("rm -rf %s && mkdir %s && mkfifo %sin %sout"):format(q(F), q(F), q(F), q(F)),
      ("lua5.4 %s/examples/du4.lua -v -b %s <%sin >%sout 2>%serr &"):format(
        q(root_dir), roots, q(F), q(F), q(F)),
      ("exec 3>%sin 4<%sout"):format(q(F), q(F)),
      "IFS= read -r first <&4 && echo \"$first\"",
      "printf x >&3",
      "cat <&4",
      "wait $!; st=$?",
      ("cat %serr >&2; exit $st"):format(q(F)),
    }, "\n")
    local out, err, code = run(script, 20)
    check_cancelled(out, err, code)
    -- progress lines only, the first before the byte was sent; none reaches the whole walk
    local lines = 0
    for n in out:gmatch("([^\n]*)\n") do
      lines = lines + 1
      n = tonumber(n:match("^(%d+) files  %d+ bytes$"))
      assert.is_true(n ~= nil and n < 200 * want.files, out)
    end
    assert.is_true(lines >= 1, out)
  end)

  it("the end of input cancels too, as Go's os.Stdin.Read returning does", function()
    local out, err, code = du(4, "-b " .. (q(R) .. " "):rep(200), "/dev/null")
    check_cancelled(out, err, code)
    assert.are.equal("", out)
  end)

  it("with stdin open and no input it walks everything, as du3", function()
    local out, err, code = du(4, "-b " .. q(R))
    assert.are.equal(0, code, err)
    assert.are.equal(exact(want.files, want.bytes), out)
  end)
end)
