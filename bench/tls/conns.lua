-- TLS connection set-up (bench/tls/run.sh): N sequential https GETs, each on a new connection
-- (HTTP/1.1, "Connection: close"), verified against $SSL_CERT_FILE (a system-sized CA file).
-- usage: lua5.4 bench/tls/conns.lua URL N; prints wall ms and process CPU ms per request.
local csp = require "csp"

local url, N = assert(arg[1], "usage: conns.lua URL N"), tonumber(arg[2]) or 200
local opts = { http_version = "1.1", headers = { Connection = "close" }, timeout = 10 }

csp.run(function()
  local c0, t0 = os.clock(), csp.now()
  for _ = 1, N do
    local r, err = csp.http.get(url, opts)
    if not r or r.status ~= 200 then error("get: " .. tostring(err or r.status)) end
  end
  local c1, t1 = os.clock(), csp.now()
  print(("RESULT tls_conn %.3f ms/req"):format((t1 - t0) * 1e3 / N))
  print(("RESULT tls_conn_cpu %.3f ms/req"):format((c1 - c0) * 1e3 / N))
end)
