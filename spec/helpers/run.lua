-- Runs a Lua chunk in a separate lua5.4 process that loads this tree's csp, for behaviour that
-- ends the process (uncaught panics, deadlock at top level, exit status) or depends on the
-- environment it starts with (CSP_SEED).
local M = {}

-- The repository root, from this file's own path (spec/helpers/run.lua), so the child finds
-- lua/ and build/ whatever LUA_PATH the parent was started with.
local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/spec/helpers/[^/]+$")
  if dir == nil or dir == "" then dir = "." end
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The module path for children: the parent's LUA_CPATH (under `make asan` the sanitized build),
-- made absolute, or this tree's build/.
local function cpath(dir)
  local cp = os.getenv("LUA_CPATH")
  if not cp then return dir .. "/build/?.so;;" end
  return (cp:gsub("[^;]+", function(t)
    if t:sub(1, 1) == "/" then return t end
    return (os.getenv("PWD") or ".") .. "/" .. t
  end))
end

M.root = root()
M.quote = quote
-- "LUA_PATH=... LUA_CPATH=...": a shell prefix that makes a child lua5.4 load this tree.
M.env = ("LUA_PATH=%s LUA_CPATH=%s"):format(
  quote(M.root .. "/lua/?.lua;" .. M.root .. "/lua/?/init.lua;;"), quote(cpath(M.root)))

-- slurp(path) -> the file's contents, "" when it does not exist (yet): for the specs that run
-- a child in the background and poll the file its exit status goes to.
function M.slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- The file's contents (it must exist), then removes it.
local function take(path)
  local s = assert(io.open(path, "rb")):read("a")
  os.remove(path)
  return s
end

-- cc(out, src, flags) -> out: compiles spec/helpers/<src> with gcc -O1 and flags (a shell
-- fragment) into out, outside any sanitizer (gcc must not run with ASan preloaded); raises with
-- the compiler's output if it fails.
function M.cc(out, src, flags)
  local p = io.popen(("env -u LD_PRELOAD gcc -O1 -o %s %s %s 2>&1")
    :format(quote(out), quote(M.root .. "/spec/helpers/" .. src), flags))
  local msg = p:read("a")
  assert(p:close(), msg)
  return out
end

-- run(code [, env [, timeout]]) -> { code = exit status, stdout = ..., stderr = ... }
-- env: table of extra environment variables; CSP_SEED is unset unless given there.
-- timeout: seconds before the child is killed (status 124), default 20.
function M.run(code, env, timeout)
  local dir = root()
  local script, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(code)
  f:close()
  local vars = {
    "LUA_PATH=" .. quote(dir .. "/lua/?.lua;" .. dir .. "/lua/?/init.lua;;"),
    "LUA_CPATH=" .. quote(cpath(dir)),  -- under asan, the same sanitized build
  }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
  local cmd = string.format("env -u CSP_SEED %s timeout -k 2 %d lua5.4 %s >%s 2>%s",
    table.concat(vars, " "), timeout or 20, quote(script), quote(out), quote(err))
  local _, how, status = os.execute(cmd)
  os.remove(script)
  return {
    code = how == "exit" and status or 128 + status,
    stdout = take(out),
    stderr = take(err),
  }
end

-- checked(code [, env]) -> stdout: runs code in a child (60 s) that must exit 0; under `make asan`
-- the child checks its own leaks at exit (LeakSanitizer) and any sanitizer report fails.
function M.checked(code, env)
  env = env or {}
  if require("spec.helpers.util").ASAN then
    env.ASAN_OPTIONS = "detect_leaks=1:halt_on_error=1:log_path=stderr"
  end
  local r = M.run(code, env, 60)
  assert(not r.stderr:find("Sanitizer", 1, true), r.stderr)
  assert(r.code == 0, r.stderr)
  return r.stdout
end

return M
