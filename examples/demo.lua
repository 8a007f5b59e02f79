-- A tour of the examples: runs each one as a subprocess with the same interpreter and
-- shows its output under a one-line header. To add an example, add one line to EXAMPLES.
local EXAMPLES = {
  -- file, arguments, header
  { "gosched.lua", "", "runtime.Gosched: main yields, the goroutine prints first" },
  { "goexit.lua", "", "runtime.Goexit: the goroutine ends, its defers still run" },
  { "select_evenodd.lua", "", "select on a 1-slot buffer: always 0 2 4 6 8" },
  { "pipeline.lua", "", "pipeline over directional channels: squares of 0..99" },
  { "mirrored.lua", "", "mirroredQuery: the quickest of three mirrors wins" },
  { "mirrored_leak.lua", "", "mirroredQuery, unbuffered: two goroutines leak" },
  { "select_priority.lua", "", "priority in select: busy loop vs labelled loop" },
  { "sieve.lua", "20", "concurrent prime sieve: the first 20 primes" },
  { "countdown1.lua", "5 0.2", "countdown paced by csp.tick (5 ticks of 0.2 s)" },
  { "countdown2.lua", "1", "select: launch after 1 s unless return is pressed" },
  { "countdown3.lua", "5 0.2", "select per tick with abort; the ticker is stopped" },
  { "du1.lua", "-h csrc lua spec", "du v1: one walker goroutine sends each file size to main" },
  { "du2.lua", "-v -h csrc lua spec", "du v2: -v prints totals every 500 ms (select + tick)" },
  { "du3.lua", "-h csrc lua spec", "du v3: a goroutine per directory, 20-token semaphore" },
  { "du4.lua", "-h csrc lua spec", "du v4: du3 that a byte on stdin cancels" },
}

local MAX_LINES = 24 -- longer outputs are shown as their head and tail

local dir = (arg and arg[0] or "examples/demo.lua"):match("^(.*)/[^/]*$") or "."
local root = dir .. "/.."
local lua = "lua5.4"
if arg then -- the interpreter running this script
  local i = -1
  while arg[i - 1] do i = i - 1 end
  lua = arg[i]
end

local function quote(s)
  return "'" .. s:gsub("'", [['\'']]) .. "'"
end

-- The tree's modules come first; ";;" keeps the default paths after them.
local env = ("LUA_PATH=%s LUA_CPATH=%s "):format(
  quote(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. (os.getenv("LUA_PATH") or ";;")),
  quote(root .. "/build/?.so;" .. (os.getenv("LUA_CPATH") or ";;")))

local function show(out)
  local lines = {}
  for line in out:gmatch("[^\n]*") do lines[#lines + 1] = line end
  if lines[#lines] == "" then lines[#lines] = nil end
  for i, line in ipairs(lines) do
    if #lines <= MAX_LINES or i <= MAX_LINES // 2 or i > #lines - MAX_LINES // 2 then
      print("  " .. line)
    elseif i == MAX_LINES // 2 + 1 then
      print(("  ... (%d more lines)"):format(#lines - MAX_LINES))
    end
  end
end

local failed = 0
for _, ex in ipairs(EXAMPLES) do
  local file, args, header = ex[1], ex[2], ex[3]
  print(("== %s: %s"):format(file, header))
  io.stdout:flush()
  local p = assert(io.popen(env .. quote(lua) .. " " .. quote(dir .. "/" .. file) .. " " .. args .. " 2>&1"))
  show(p:read("a"))
  local ok, how, code = p:close()
  if not ok then
    failed = failed + 1
    print(("  FAILED (%s %s)"):format(how, code))
  end
  print()
end
if failed > 0 then
  print(("%d example(s) failed"):format(failed))
  os.exit(1)
end
