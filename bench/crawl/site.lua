-- Generates and serves the benchmark site (spec/helpers/site.lua) and leaves the server running.
-- usage: lua5.4 bench/crawl/site.lua PAGES SEED [tls]
-- Prints: base-url root-dir server-pid start-url host reachable-count (reachable on that host)
-- and, with tls (https, h2 by ALPN, a CA made by openssl), the CA file.
local dir = arg[0]:match("^(.*)/bench/crawl/[^/]*$") or "."
local site = dofile(dir .. "/spec/helpers/site.lua")
local s = site.start(assert(tonumber(arg[1])), tonumber(arg[2] or 1), { keep = true, tls = arg[3] == "tls" })
local n = 0
for _ in pairs(site.reachable(s, { s.start_url }, { host = s.host })) do n = n + 1 end
print(s.base, s.root, s.pid, s.start_url, s.host, n, s.ca or "-")
