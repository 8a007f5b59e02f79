-- csp.http.get of a 1 KB page over keep-alive (issue 6 benchmark), driven by bench/http/run.sh.
-- usage: lua5.4 bench/http/get.lua URL [N]
-- seq: N sequential gets on one pooled keep-alive connection.
-- par8: 8 goroutines each doing N/8 gets (connections taken from and returned to the pool).
-- par8u: the same with a distinct URL per request (URL?i=K: nginx serves the same file), so no
-- client can reuse a parsed URL from the request before.
-- Every response must be 200 with a 1024-byte body. Prints requests/s and the process CPU time
-- (os.clock: user+sys of all threads) per request for each variant.
local csp = require "csp"

local url = assert(arg[1], "usage: get.lua URL [N]")
local q = os.getenv("BENCH_QUICK")
local N = tonumber(arg[2]) or ((q and q ~= "" and q ~= "0") and 2000 or 20000)
local PAR = 8
local get = csp.http.get

local function check(r, err)
  if not r then error("get: " .. tostring(err)) end
  if r.status ~= 200 or #r.body ~= 1024 then
    error(("get: status %s, body %d bytes"):format(r.status, #r.body))
  end
end

local now = csp.now

local function measure(name, f)
  local c0, t0 = os.clock(), now()
  f()
  local c1, t1 = os.clock(), now()
  print(("RESULT http_%s %.0f req/s"):format(name, N / (t1 - t0)))
  print(("RESULT http_%s_cpu %.2f us/req"):format(name, (c1 - c0) * 1e6 / N))
end

csp.run(function()
  check(get(url))  -- warm-up: opens the connection the sequential run reuses
  measure("seq", function()
    for _ = 1, N do check(get(url)) end
  end)
  local function par8(name, distinct)
    measure(name, function()
      local wg = csp.waitgroup()
      for w = 1, PAR do
        wg:go(function()
          for i = 1, N // PAR do
            check(get(distinct and ("%s?i=%d"):format(url, w * N + i) or url))
          end
        end)
      end
      wg:wait()
    end)
  end
  par8("par8", false)
  par8("par8u", true)
  csp.http.close_idle()
end)
