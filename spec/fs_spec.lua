-- csp.fs: API.md "I/O (libuv)" fs rows and issue 5. Every call runs on libuv's thread pool, from
-- the main thread (which runs the scheduler inline) and from goroutines, and returns the outside
-- world's failures Go style: nil, "op path: message", "ECODE". Bad arguments raise.
local csp = require "csp"
local util = require "spec.helpers.util"
local raises, in_go = util.raises, util.in_go
local fs = csp.fs

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "command failed: " .. cmd)
end

local function q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function put(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local IS_ROOT = io.popen("id -u"):read("l") == "0"

local T -- a fresh directory for this file's tests
setup(function()
  T = io.popen("mktemp -d /tmp/csp-fs-spec.XXXXXX"):read("l")
  put(T .. "/a.txt", "hello\n")
  put(T .. "/empty", "")
  sh(("mkdir %s/sub %s/emptydir && touch %s/sub/x"):format(q(T), q(T), q(T)))
  sh(("cd %s && ln -s a.txt link && ln -s nowhere dangling && ln -s loop2 loop1 && ln -s loop1 loop2")
    :format(q(T)))
end)

teardown(function()
  if T then os.execute(("chmod -R u+rwx %s; rm -rf %s"):format(q(T), q(T))) end
end)

-- Asserts the Go-style failure triple: nil, "<op> <path>: <text>", code.
local function fails(op, path, text, code, ...)
  local v, err, ecode = ...
  assert.is_nil(v)
  assert.are.equal(("%s %s: %s"):format(op, path, text), err)
  assert.are.equal(code, ecode)
end

describe("csp.fs.readdir", function()
  local want = {
    { "a.txt", "file" }, { "dangling", "link" }, { "empty", "file" }, { "emptydir", "dir" },
    { "link", "link" }, { "loop1", "link" }, { "loop2", "link" }, { "sub", "dir" },
  }
  local function check(list)
    assert.are.equal(#want, #list)
    for i, w in ipairs(want) do
      assert.are.same({ name = w[1], type = w[2] }, list[i])
    end
  end

  it("lists name and type of every entry, sorted by name, without . and ..", function()
    check(assert(fs.readdir(T)))
  end)

  it("works from a goroutine", function()
    in_go(function() check(assert(fs.readdir(T))) end)
  end)

  it("gives an empty table for an empty directory", function()
    assert.are.same({}, fs.readdir(T .. "/emptydir"))
  end)

  it("tells a missing directory and a file apart", function()
    fails("open", T .. "/missing", "no such file or directory", "ENOENT", fs.readdir(T .. "/missing"))
    -- a file: Go's open succeeds and its getdents fails; a file in the path: open fails
    fails("readdirent", T .. "/a.txt", "not a directory", "ENOTDIR", fs.readdir(T .. "/a.txt"))
    fails("open", T .. "/a.txt/x", "not a directory", "ENOTDIR", fs.readdir(T .. "/a.txt/x"))
  end)

  it("reports a directory it may not read (not as root: root reads anything)", function()
    if IS_ROOT then
      pending("running as root")
      return
    end
    sh(("mkdir %s/locked && chmod 000 %s/locked"):format(q(T), q(T)))
    fails("open", T .. "/locked", "permission denied", "EACCES", fs.readdir(T .. "/locked"))
    sh(("chmod 700 %s/locked && rmdir %s/locked"):format(q(T), q(T)))
  end)
end)

describe("csp.fs.stat and csp.fs.lstat", function()
  it("stat follows a symlink, lstat describes the link itself", function()
    local st = assert(fs.stat(T .. "/link"))
    assert.are.equal("file", st.type)
    assert.are.equal(6, st.size)
    assert.are.equal("link", st.name)
    local lst = assert(fs.lstat(T .. "/link"))
    assert.are.equal("link", lst.type)
    assert.are.equal(#"a.txt", lst.size)
  end)

  it("has size, type, mode, mtime and the other lstat fields", function()
    sh(("chmod 640 %s/a.txt && touch -m -d @1000000000.5 %s/a.txt"):format(q(T), q(T)))
    local st = assert(fs.stat(T .. "/a.txt"))
    assert.are.equal("a.txt", st.name)
    assert.are.equal("file", st.type)
    assert.are.equal(6, st.size)
    assert.are.equal(tonumber("640", 8), st.mode)
    assert.are.equal(1000000000.5, st.mtime)
    for _, k in ipairs{ "atime", "ctime", "ino", "dev", "nlink", "uid", "gid", "blocks" } do
      assert.are.equal("number", type(st[k]), k)
    end
    assert.are.equal(1, st.nlink)
    assert.are.equal("dir", fs.stat(T).type)
    assert.are.equal("dir", fs.stat(T .. "/sub/").type)
    assert.are.equal("sub", fs.stat(T .. "/sub/").name)
  end)

  it("works from a goroutine", function()
    in_go(function()
      assert.are.equal(6, assert(fs.stat(T .. "/a.txt")).size)
      assert.are.equal("link", assert(fs.lstat(T .. "/dangling")).type)
    end)
  end)

  it("returns ENOENT for a missing path and a dangling link, ELOOP for a link loop", function()
    fails("stat", T .. "/missing", "no such file or directory", "ENOENT", fs.stat(T .. "/missing"))
    fails("lstat", T .. "/missing", "no such file or directory", "ENOENT", fs.lstat(T .. "/missing"))
    fails("stat", T .. "/dangling", "no such file or directory", "ENOENT", fs.stat(T .. "/dangling"))
    fails("stat", T .. "/loop1", "too many levels of symbolic links", "ELOOP", fs.stat(T .. "/loop1"))
    assert.are.equal("link", fs.lstat(T .. "/loop1").type)
    fails("stat", T .. "/a.txt/x", "not a directory", "ENOTDIR", fs.stat(T .. "/a.txt/x"))
  end)
end)

describe("csp.fs.dirstat", function()
  it("returns every entry with its lstat fields, sorted, links not followed", function()
    local list = assert(fs.dirstat(T))
    local names = {}
    for i, e in ipairs(list) do
      names[i] = e.name
      local lst = assert(fs.lstat(T .. "/" .. e.name))
      for _, k in ipairs{ "type", "size", "mode", "mtime", "ino", "nlink", "blocks" } do
        assert.are.equal(lst[k], e[k], e.name .. "." .. k)
      end
    end
    assert.are.same({ "a.txt", "dangling", "empty", "emptydir", "link", "loop1", "loop2", "sub" }, names)
  end)

  it("reads a directory of 10000 files in one call, from a goroutine", function()
    local dir, total = T .. "/many", 0
    sh("mkdir " .. q(dir))
    for i = 1, 10000 do
      put(("%s/f%05d"):format(dir, i), ("x"):rep(i % 100))
      total = total + i % 100
    end
    in_go(function()
      local list = assert(fs.dirstat(dir))
      assert.are.equal(10000, #list)
      local sum = 0
      for i, e in ipairs(list) do
        assert.are.equal(("f%05d"):format(i), e.name)
        assert.are.equal("file", e.type)
        sum = sum + e.size
      end
      assert.are.equal(total, sum)
    end)
    sh("rm -rf " .. q(dir))
  end)

  it("fails as readdir does", function()
    fails("open", T .. "/missing", "no such file or directory", "ENOENT", fs.dirstat(T .. "/missing"))
    fails("readdirent", T .. "/link", "not a directory", "ENOTDIR", fs.dirstat(T .. "/link"))
    assert.are.same({}, fs.dirstat(T .. "/emptydir"))
  end)
end)

describe("csp.fs.dirstat(dir, \"summary\")", function()
  it("counts and sums the entries that are not directories, and names the subdirectories", function()
    local s = assert(fs.dirstat(T, "summary"))
    local files, size, blocks, dirs = 0, 0, 0, {}
    for _, e in ipairs(assert(fs.dirstat(T))) do
      if e.type == "dir" then
        dirs[#dirs + 1] = e.name
      else
        files, size, blocks = files + 1, size + e.size, blocks + e.blocks
      end
    end
    assert.are.equal(6, files) -- a.txt, empty and four links, not followed
    assert.are.same({ "emptydir", "sub" }, dirs)
    assert.are.same({ files = files, size = size, blocks = blocks, dirs = dirs }, s)
    assert.are.same(s, assert(fs.dirstat(T, "summary")))
    assert.are.same(assert(fs.dirstat(T)), assert(fs.dirstat(T, "entries")))
  end)

  it("sums a directory of 10000 files and 100 subdirectories in one call, from a goroutine", function()
    local dir, total, want = T .. "/sum", 0, {}
    sh("mkdir " .. q(dir))
    for i = 1, 10000 do
      put(("%s/f%05d"):format(dir, i), ("x"):rep(i % 100))
      total = total + i % 100
    end
    for i = 100, 1, -1 do want[i] = ("d%03d"):format(i) end
    sh(("cd %s && mkdir %s"):format(q(dir), table.concat(want, " ")))
    in_go(function()
      local s = assert(fs.dirstat(dir, "summary"))
      assert.are.equal(10000, s.files)
      assert.are.equal(total, s.size)
      assert.are.same(want, s.dirs) -- sorted, as Go's ReadDir
    end)
    sh("rm -rf " .. q(dir))
  end)

  it("fails as dirstat does; an empty directory sums to zero", function()
    fails("open", T .. "/missing", "no such file or directory", "ENOENT", fs.dirstat(T .. "/missing", "summary"))
    fails("readdirent", T .. "/link", "not a directory", "ENOTDIR", fs.dirstat(T .. "/link", "summary"))
    assert.are.same({ files = 0, size = 0, blocks = 0, dirs = {} }, fs.dirstat(T .. "/emptydir", "summary"))
  end)

  it("raises for a form it does not know", function()
    assert.matches("bad argument #2 to 'dirstat' (invalid option 'sizes')",
      raises(function() fs.dirstat(T, "sizes") end), 1, true)
    assert.matches("bad argument #2 to 'dirstat' (string expected, got table)",
      raises(function() fs.dirstat(T, {}) end), 1, true)
  end)
end)

describe("csp.fs.readfile and csp.fs.writefile", function()
  it("round-trip any bytes, empty and large files included", function()
    local bin = {}
    for i = 0, 255 do bin[#bin + 1] = string.char(i) end
    bin = table.concat(bin):rep(5000) -- 1.28 MB with every byte value, NULs included
    assert.is_true(fs.writefile(T .. "/bin", bin))
    assert.are.equal(bin, fs.readfile(T .. "/bin"))
    assert.is_true(fs.writefile(T .. "/bin", ""))
    assert.are.equal("", fs.readfile(T .. "/bin"))
    assert.are.equal("", fs.readfile(T .. "/empty"))
    assert.are.equal("hello\n", fs.readfile(T .. "/link"))
  end)

  it("writefile truncates an existing file and creates with the given permissions", function()
    put(T .. "/long", ("y"):rep(1000))
    in_go(function()
      assert.is_true(fs.writefile(T .. "/long", "short"))
      assert.are.equal("short", fs.readfile(T .. "/long"))
      assert.is_true(fs.writefile(T .. "/private", "s", tonumber("600", 8)))
    end)
    assert.are.equal(tonumber("600", 8), fs.stat(T .. "/private").mode)
  end)

  it("name the failing call and the path", function()
    fails("open", T .. "/missing", "no such file or directory", "ENOENT", fs.readfile(T .. "/missing"))
    fails("read", T .. "/sub", "is a directory", "EISDIR", fs.readfile(T .. "/sub"))
    fails("open", T .. "/nodir/f", "no such file or directory", "ENOENT",
      fs.writefile(T .. "/nodir/f", "x"))
    fails("open", T .. "/sub", "is a directory", "EISDIR", fs.writefile(T .. "/sub", "x"))
  end)

  it("report a file they may not open (not as root)", function()
    if IS_ROOT then
      pending("running as root")
      return
    end
    put(T .. "/secret", "s")
    sh(("chmod 000 %s/secret"):format(q(T)))
    fails("open", T .. "/secret", "permission denied", "EACCES", fs.readfile(T .. "/secret"))
    fails("open", T .. "/secret", "permission denied", "EACCES", fs.writefile(T .. "/secret", "x"))
  end)
end)

describe("csp.fs arguments", function()
  it("raise for a missing or wrong argument", function()
    local function has(sub, msg) assert.matches(sub, msg, 1, true) end
    has("bad argument #1 to 'stat' (string expected, got no value)", raises(function() fs.stat() end))
    has("bad argument #1 to 'readdir' (string expected, got table)", raises(function() fs.readdir({}) end))
    has("bad argument #1 to 'dirstat'", raises(function() fs.dirstat(nil) end))
    has("bad argument #2 to 'writefile'", raises(function() fs.writefile(T .. "/w") end))
    has("bad argument #3 to 'writefile'", raises(function() fs.writefile(T .. "/w", "x", -1) end))
    has("bad argument #3 to 'writefile'", raises(function() fs.writefile(T .. "/w", "x", "rw") end))
    assert.is_nil(fs.stat(T .. "/w")) -- none of them wrote anything
  end)

  it("return EINVAL for a path with a NUL byte, as Go does", function()
    local v, err, code = fs.readfile(T .. "/a.txt\0x")
    assert.is_nil(v)
    assert.are.equal("open " .. T .. "/a.txt\0x: invalid argument", err) -- the whole path, as Go's
    assert.are.equal("EINVAL", code)
    assert.are.same({ nil, "lstat a\0b: invalid argument", "EINVAL" }, { fs.lstat("a\0b") })
  end)

  it("raise when called where a goroutine cannot block", function()
    in_go(function()
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        fs.stat(T)
        return a < b
      end)
      assert.is_false(ok)
      assert.matches("attempt to block in a non-yieldable context", err, 1, true)
    end)
  end)
end)

describe("csp.fs and the scheduler", function()
  -- A FIFO's open blocks until the other end opens: a readfile on it holds a pool thread
  -- until a writefile comes, whatever the timing. Every test below opens both ends, which
  -- takes two pool threads at once.
  local fifo
  local ONE_THREAD = (tonumber(os.getenv("UV_THREADPOOL_SIZE")) or 4) < 2
  before_each(function()
    fifo = T .. "/fifo"
    os.remove(fifo)
    os.remove(fifo .. ".w")
    sh("mkfifo " .. q(fifo) .. " " .. q(fifo .. ".w"))
  end)

  it("a goroutine waiting in fs does not block the others", function()
    if ONE_THREAD then return pending("UV_THREADPOOL_SIZE=1: one pool thread cannot open both ends") end
    local got = csp.chan(1)
    csp.go(function() got:send(fs.readfile(fifo)) end)
    local ping, pong = csp.chan(), csp.chan()
    csp.go(function()
      for v in ping:range() do pong:send(v + 1) end
    end)
    local ok, err = pcall(function()
      for i = 1, 100 do
        ping:send(i)
        assert.are.equal(i + 1, pong:recv())
      end
    end)
    ping:close()
    local early, _, ready = got:try_recv()
    assert.is_false(ready, "readfile returned before the FIFO had a writer: " .. tostring(early))
    assert.is_true(fs.writefile(fifo, "through the fifo")) -- releases the reader in any case
    assert(ok, err)
    assert.are.equal("through the fifo", got:recv())
  end)

  it("the main thread waiting in fs runs the goroutines meanwhile", function()
    if ONE_THREAD then return pending("UV_THREADPOOL_SIZE=1: one pool thread cannot open both ends") end
    local steps = csp.chan(10)
    csp.go(function()
      for i = 1, 3 do
        steps:send(i)
        csp.gosched()
      end
      assert(fs.writefile(fifo, "from a goroutine"))
    end)
    assert.are.equal("from a goroutine", fs.readfile(fifo))
    assert.are.equal(3, steps:len())
  end)

  it("calls blocked for good on a FIFO do not keep the process from ending (Go's exits)", function()
    -- libuv joins its pool threads at exit: lua_close interrupts the blocked calls first. Six
    -- calls: more than the pool's threads, so two never started. 124 is timeout's status.
    local r = require("spec.helpers.run").run(([[
      local csp = require "csp"
      local fifo = %q
      for _ = 1, 3 do csp.go(function() csp.fs.readfile(fifo) end) end
      for _ = 1, 3 do csp.go(function() csp.fs.writefile(fifo .. ".w", "x") end) end
      csp.gosched()
      print("main ends")
    ]]):format(fifo), nil, 10)
    assert.are.same({ 0, "main ends\n", "" }, { r.code, r.stdout, r.stderr })
  end)

  it("many goroutines at once: more calls than pool threads, each gets its own result", function()
    local dir = T .. "/par"
    sh("mkdir " .. q(dir))
    for i = 1, 200 do put(("%s/%d"):format(dir, i), ("z"):rep(i)) end
    local wg, sizes = csp.waitgroup(), {}
    for i = 1, 200 do
      wg:go(function()
        sizes[i] = assert(fs.stat(("%s/%d"):format(dir, i))).size
        assert.are.equal(("z"):rep(i), fs.readfile(("%s/%d"):format(dir, i)))
      end)
    end
    wg:wait()
    for i = 1, 200 do assert.are.equal(i, sizes[i]) end
    sh("rm -rf " .. q(dir))
  end)

  it("a panic that cuts main's wait short leaves the runtime usable", function()
    csp.go(function() error("boom") end)
    local ok, err = pcall(fs.readfile, T .. "/a.txt")
    assert.is_false(ok)
    assert.matches("goroutine %d+: .*boom", err)
    -- The abandoned request completes on its own; later calls are not confused by it.
    for _ = 1, 3 do assert.are.equal("hello\n", fs.readfile(T .. "/a.txt")) end
  end)

  after_each(function()
    os.remove(fifo)
  end)
end)
