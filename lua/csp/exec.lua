-- csp.exec: runs a process (Go's exec.Command(...).Output with Stderr captured too). The core
-- starts it (core._spawn: posix_spawn, pipes and a pidfd on the loop) and parks the caller in
-- p:wait(); this file checks the arguments and watches opts.ctx, killing the process on cancel.
local core = require "csp.core"
local check = require "csp.check"
local context = require "csp.context"

local chan, select, recv, spawn = core.chan, core.select, core.recv, core._spawn
local go = core._go_internal or core.go  -- the watcher is csp's own: not counted, not dumped
local Context = getmetatable(context.background())
local typename = check.typename

local M = {}

-- nil if t is an array of strings, else what is wrong, for argument `what`.
local function strings(t, what)
  for i = 1, #t do
    local v = t[i]
    if type(v) ~= "string" then
      return ("%s[%d]: string expected, got %s"):format(what, i, typename(v))
    end
  end
end

-- Runs as csp's own goroutine until the process has exited (exited is closed) or done fires.
local function watch(done, exited, p)
  if select { recv(done), recv(exited) } == 1 then p:kill() end
end

local closer = { __close = function(c) c[1]:close() end }

--- exec(cmd [, args [, opts]]) -> {status=, signal=, stdout=, stderr=} or nil, err, code.
function M.exec(cmd, args, opts)
  check.type(cmd, "string", 1, "exec")
  if args ~= nil then
    check.type(args, "table", 2, "exec")
    local bad = strings(args, "args")
    check.arg(not bad, 2, "exec", bad)
  end
  opts = check.opts(opts, 3, "exec")
  check.field(opts, "stdin", "string", 3, "exec")
  check.field(opts, "cwd", "string", 3, "exec")
  local env, ctx = check.field(opts, "env", "table", 3, "exec"), opts.ctx
  local bad = env and strings(env, "field 'env'")
  check.arg(not bad, 3, "exec", bad)
  if ctx ~= nil then
    check.fieldarg(getmetatable(ctx) == Context, "ctx", 3, "exec",
      "context expected, got " .. typename(ctx))
    local err = ctx:err()
    -- Go: Start under a cancelled context fails with its error; the code tells which one
    if err then return nil, err, err == "context canceled" and "ECANCELED" or "ETIMEDOUT" end
  end
  local done = ctx and ctx:done()
  local p, err, code = spawn(cmd, args, opts)
  if not p then return nil, err, code end
  if done then
    local exited <close> = setmetatable({ chan() }, closer)  -- ends the watcher on every path
    go(watch, done, exited[1], p)
    return p:wait()
  end
  return p:wait()
end

return M
