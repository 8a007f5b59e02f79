-- The thread examples (examples/syncmap.lua, atomic.lua, du5.lua, sieve_par.lua) as real
-- subprocesses, checked where their output is deterministic.
local run = require "spec.helpers.run"

local function example(name, args, env)
  local f = assert(io.open(run.root .. "/examples/" .. name))
  f:close()
  local r = run.run(("arg = { [0] = %q %s }\ndofile(%q)"):format(
    run.root .. "/examples/" .. name, args and (", " .. args) or "", run.root .. "/examples/" .. name),
    env, 60)
  assert.equal(0, r.code, name .. " failed:\n" .. r.stderr)
  return r.stdout
end

-- Tagged #subprocess: make tsan leaves them out (shells crash with libtsan preloaded).
describe("thread examples #subprocess", function()
  it("syncmap: 20 keys stored from 2 threads, load_or_store's loaded flag", function()
    local out = example("syncmap.lua")
    assert.matches("load t1%-7:\t7\ttrue", out)
    assert.matches("load_or_store t2%-3:\t3\ttrue", out)
    assert.matches("load_or_store new:\t99\tfalse", out)
    assert.matches("20 keys: t1%-10=10 t1%-1=1", out)
  end)

  it("atomic: exact with add and cas, updates lost with load then store", function()
    local out = example("atomic.lua")
    assert.matches("atomic add:       2000 %(expected 2000%)", out)
    assert.matches("cas loop:         2000 %(expected 2000%)", out)
    local lost = tonumber(out:match("load%+store:%s+(%d+)"))
    assert.is_true(lost < 2000, out)
    assert.matches("config now:\t3\t127.0.0.1:8003", out)
    assert.matches("store nil:\tfalse\tsync/atomic: store of nil value into Value", out)
  end)

  it("du5: the same totals as du3 over a tree, with one or more threads", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute(("mkdir -p %s/a/b %s/c && printf 12345 > %s/a/b/f && printf 1 > %s/c/g && printf 12 > %s/h")
      :format(dir, dir, dir, dir, dir)))
    local a = example("du5.lua", ("%q, %q"):format("-b", dir))
    local b = example("du5.lua", ("%q, %q"):format("-b", dir), { CSP_THREADS = "1" })
    os.execute("rm -rf " .. dir)
    assert.equal("3 files  8 bytes\n", a)  -- directories are walked, not counted, as in du3
    assert.equal(a, b)
  end)

  it("sieve_par: the primes below N, the same on 1 thread", function()
    assert.equal("1229 primes below 10000 (largest 9973) on 1 threads\n",
      example("sieve_par.lua", '"10000", "500"', { CSP_THREADS = "1" }))
    assert.matches("^1229 primes below 10000 %(largest 9973%)", example("sieve_par.lua", '"10000", "500"'))
  end)
end)
