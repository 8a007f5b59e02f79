-- Test certificates made at test time with openssl: a CA and a server certificate it signs,
-- valid for 127.0.0.1 and localhost (P-256 keys: quick to make).
--
--   local tls = require "spec.helpers.tls"
--   local t = tls.make(dir)   -- t.ca (CA certificate, PEM), t.cert, t.key (the server's)
local M = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.make(dir)
  local d = quote(dir)
  local key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  local script = table.concat({
    "set -e", "cd " .. d,
    "openssl req -x509 " .. key .. " -keyout ca.key -out ca.pem -days 2 -subj /CN=csp-test-ca",
    "openssl req " .. key .. " -keyout server.key -out server.csr -subj /CN=localhost",
    "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >server.ext",
    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem " ..
      "-days 2 -extfile server.ext",
  }, "\n")
  assert(os.execute("(" .. script .. ") >" .. d .. "/openssl.log 2>&1"), "openssl failed")
  return { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
end

return M
