-- memotest: the driver shared by memo1-memo5 (like gopl.io/ch9/memotest). The memoized
-- function is slow: by default it sleeps DELAY seconds and returns a value made from the key;
-- with -http it is a real csp.http.get of a local URL, served by a small HTTP server in this
-- process that answers after DELAY. Either way it counts its calls. The keys come with
-- duplicates (10 keys, each twice) and all 20 gets run at once, each in its own goroutine;
-- the driver prints every get's time, the total time and how many times the function ran.
local csp = require "csp"
local flags = require "flags"

local M = {}

local KEYS = { "golang.org", "godoc.org", "play.golang.org", "gopl.io", "lua.org",
               "libuv.org", "go.dev", "pkg.go.dev", "luarocks.org", "debian.org" }

-- A tiny HTTP/1.1 server on 127.0.0.1:0: GET /KEY answers "page of KEY" after delay.
local function serve(delay)
  local ln = assert(csp.net.listen("tcp", "127.0.0.1:0"))
  local function handle(c)
    local _ <close> = c
    while true do
      local line = c:read_line()
      if not line then return end
      local path = line:match("^GET (%S+) HTTP/1%.%d$")
      repeat
        local h = c:read_line()
        if h == nil then return end
      until h == ""
      csp.sleep(delay)
      local body = "page of " .. (path or "?"):sub(2) .. "\n"
      if not c:write(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s")
          :format(#body, body)) then return end
    end
  end
  csp.go(function()
    while true do
      local c = ln:accept()
      if not c then return end
      csp.go(handle, c)
    end
  end)
  return "http://" .. ln:addr() .. "/"
end

-- The command line of memoN.lua: [-http] [-delay SECONDS].
function M.args(name, about)
  local f = flags.new(name .. " [-http] [-delay SECONDS]", about)
  f:flag("http", "bool", false, "the function is csp.http.get of a local URL (a server in this process)")
  f:flag("delay", "number", 0.1, "how long one call of the function takes", { positive = true, meta = "SECONDS" })
  return f:parse(arg)
end

-- Runs the driver over New (New(f) -> memo with memo:get(key) -> value, err; memo:close()
-- if it has one) and prints what happened.
function M.run(title, New, opts)
  local calls = 0
  local f, prefix
  if opts.http then
    prefix = serve(opts.delay)
    f = function(key)  -- httpGetBody
      calls = calls + 1
      local resp, err = csp.http.get(key)
      if not resp then return nil, err end
      return resp.body
    end
  else
    prefix = "/"
    f = function(key)
      calls = calls + 1
      csp.sleep(opts.delay)
      return "page of " .. key:sub(2) .. "\n"
    end
  end
  local memo = New(f)
  print(title)
  local t0 = csp.now()
  local wg = csp.waitgroup()
  local keys = {}
  for _ = 1, 2 do
    for _, k in ipairs(KEYS) do keys[#keys + 1] = prefix .. k end
  end
  local bad = 0
  for _, key in ipairs(keys) do
    wg:go(function()
      local start = csp.now()
      local value, err = memo:get(key)
      if not value then
        bad = bad + 1
        io.stderr:write(key, ": ", tostring(err), "\n")
        return
      end
      if value ~= "page of " .. key:match("[^/]*$") .. "\n" then bad = bad + 1 end
      print(("  %-38s %5.0f ms  %d bytes"):format(key, (csp.now() - start) * 1000, #value))
    end)
  end
  wg:wait()
  local total = csp.now() - t0
  if memo.close then memo:close() end
  print(("%d gets of %d keys by %d concurrent goroutines in %.0f ms; f called %d times%s")
    :format(#keys, #KEYS, #keys, total * 1000, calls, bad > 0 and (", %d wrong"):format(bad) or ""))
  return calls, total
end

return M
