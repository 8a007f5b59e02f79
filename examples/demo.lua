-- A tour of the examples: runs each one as a subprocess with the same interpreter and
-- shows its output under a one-line header, then two network scenes: the chat server with two
-- scripted clients, and clock2 serving two clients at once. To add an example, add one line to
-- EXAMPLES (stdin: a shell command piped into it; status: the exit status it must end with;
-- images: it needs the JPEGs the demo makes in a temporary directory, as IMAGES).
-- Under the race detector (`make race` runs the specs, this demo among them, with CSP_RACE=1)
-- memo1's race is reported and it exits 66, as `go test -race` fails; "report" only reports.
local RACE = os.getenv("CSP_RACE") or ""
local RACE_EXIT = (RACE ~= "" and RACE ~= "0" and RACE ~= "report") and 66 or nil

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
  { "countdown2.lua", "1", "select: launch after 1 s unless return is pressed", stdin = "sleep 1.5" },
  { "countdown3.lua", "5 0.2", "select per tick with abort; the ticker is stopped", stdin = "sleep 1.5" },
  { "countdown3.lua", "5 0.2", "the same with stdin at its end (</dev/null): aborts at once, as in Go",
    stdin = "true" },
  { "du1.lua", "-h csrc lua spec", "du v1: one walker goroutine sends each file size to main" },
  { "du2.lua", "-v -h csrc lua spec", "du v2: -v prints totals every 500 ms (select + tick)" },
  { "du3.lua", "-h csrc lua spec", "du v3: a goroutine per directory, 20-token semaphore" },
  { "du4.lua", "-h csrc lua spec", "du v4: du3 that input on stdin cancels (none comes here)",
    stdin = "sleep 0.5" },
  { "thumbnails.lua", "1 IMAGES", "makeThumbnails1: one ImageMagick process after the other",
    images = true },
  { "thumbnails.lua", "6 IMAGES", "makeThumbnails6: a goroutine per file, WaitGroup + closer",
    images = true },
  { "thumbnails.lua", "4 IMAGES/missing.jpg IMAGES", "makeThumbnails4: the first error returns, "
    .. "the other senders leak", images = true },
  { "bank1.lua", "", "bank1: the balance confined to a teller goroutine, 1000 customers" },
  { "bank2.lua", "", "bank2: the balance guarded by csp.mutex, unlocked by <close>" },
  { "bank3.lua", "3", "bank3: Withdraw relocks the mutex: the deadlock report", status = 1 },
  { "bank4.lua", "", "bank4: the fix, deposit assumes the lock is held" },
  { "bank_rw.lua", "", "bank_rw: Balance under rwmutex:rlock, readers share it" },
  { "icons.lua", "", "lazy icons: RWMutex double-checked, then csp.once; 100 callers" },
  { "pool.lua", "", "sync.Pool: how many buffers 1000 uses need" },
  { "memo1.lua", "", "memo1: no lock: duplicate calls (the table stays intact)", status = RACE_EXIT },
  { "memo2.lua", "", "memo2: a mutex around the call: serialised" },
  { "memo3.lua", "", "memo3: two-phase locking: concurrent, duplicate calls" },
  { "memo4.lua", "-http", "memo4: duplicate suppression, over csp.http.get of a local server" },
  { "memo5.lua", "", "memo5: a monitor goroutine owns the cache" },
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

-- The JPEGs for the thumbnail examples, made once with ImageMagick; nil if it is missing.
local images
local function make_images()
  if images ~= nil then return images end
  images = false
  local d = io.popen("mktemp -d"):read("l")
  local cmd = ("cd %s && for i in 1 2 3 4; do convert -size 1600x1200 plasma:fractal -quality 85 "
    .. "photo$i.jpg & done; wait; ls photo4.jpg >/dev/null 2>&1"):format(quote(d))
  if d and os.execute(cmd) then images = d end
  return images
end

local failed = 0
local function check(ok, how, code, want)
  if (want or 0) == 0 and ok then return end
  if how == "exit" and code == want then return end
  failed = failed + 1
  print(("  FAILED (%s %s)"):format(how, code))
end

for _, ex in ipairs(EXAMPLES) do
  local file, args, header = ex[1], ex[2], ex[3]
  print(("== %s: %s"):format(file, header))
  io.stdout:flush()
  if ex.images then
    local d = make_images()
    if not d then
      print("  (skipped: ImageMagick's convert is not installed)")
      goto next
    end
    args = args:gsub("IMAGES(%S*)", function(rest)
      return rest == "" and quote(d) .. "/photo[0-9].jpg" or quote(d .. rest)
    end)
  end
  do
    local cmd = env .. quote(lua) .. " " .. quote(dir .. "/" .. file) .. " " .. args .. " 2>&1"
    if ex.stdin then cmd = ex.stdin .. " | " .. cmd end
    local p = assert(io.popen(cmd))
    show(p:read("a"))
    local ok, how, code = p:close()
    check(ok, how, code, ex.status)
  end
  ::next::
  print()
end
if images then os.execute("rm -rf " .. quote(images)) end

-- The network scenes run in this process, with csp: the servers are subprocesses on free
-- ports, the clients are goroutines here.
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
local csp = require "csp"

local function free_addr()
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local addr = ln:addr()
  ln:close()
  return addr
end

-- Starts examples/<file> as a server on a free port; returns its address and a stop function.
local function server(file, ...)
  local addr = free_addr()
  local pidf = os.tmpname()
  os.execute(("%s%s %s %s %s </dev/null >/dev/null 2>&1 & echo $! >%s"):format(env, quote(lua),
    quote(dir .. "/" .. file), addr, table.concat({ ... }, " "), quote(pidf)))
  local pid = io.open(pidf):read("l")
  os.remove(pidf)
  for _ = 1, 500 do
    local c = csp.net.dial("tcp", addr)
    if c then
      c:close()
      break
    end
    csp.sleep(0.01)
  end
  return addr, function() os.execute("kill " .. pid .. " 2>/dev/null") end
end

local function scene(file, header, play)
  print(("== %s: %s"):format(file, header))
  io.stdout:flush()
  local ok, err = pcall(play)
  if not ok then check(false, "error", err) end
  print()
end

scene("chat.lua", "two scripted clients, alice and bob, talk through the broadcaster", function()
  local addr, stop = server("chat.lua")
  local _ <close> = csp.defer(stop)
  local function client(name)
    local c = assert(csp.net.dial("tcp", addr))
    c:set_read_deadline(csp.now() + 10)
    return { name = name, c = c,
             hear = function(self) print(("  %-6s| %s"):format(self.name, assert(self.c:read_line()))) end,
             say = function(self, line)
               print(("  %-6s> %s"):format(self.name, line))
               self.c:write(line, "\n")
             end }
  end
  local alice = client("alice")
  alice:hear()                       -- You are ...
  local bob = client("bob")
  bob:hear()
  alice:hear()                       -- bob has arrived
  alice:say("Hi!")
  alice:hear() bob:hear()
  bob:say("Hi yourself.")
  alice:hear() bob:hear()
  print("  alice  (leaves)")
  alice.c:close()
  bob:hear()                         -- alice has left
  bob.c:close()
end)

scene("clock2.lua", "two clients at once, each gets the time every 0.3 s", function()
  local addr, stop = server("clock2.lua", "0.3")
  local _ <close> = csp.defer(stop)
  local wg = csp.waitgroup()
  local t0 = csp.now()
  for i = 1, 2 do
    wg:go(function()
      local c = assert(csp.net.dial("tcp", addr))
      local _ <close> = c
      c:set_read_deadline(csp.now() + 10)
      for _ = 1, 3 do
        local line = assert(c:read_line())
        print(("  client %d at +%.1f s: %s"):format(i, csp.now() - t0, line))
      end
    end)
  end
  wg:wait()
end)

if failed > 0 then
  print(("%d example(s) failed"):format(failed))
  os.exit(1)
end
