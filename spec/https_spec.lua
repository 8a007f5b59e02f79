-- https and HTTP/2 through libcurl, against a local nginx (TLS with h2 by ALPN) whose CA and
-- server certificate are made at test time by openssl (spec/helpers/tls.lua).
local csp = require "csp"
local util = require "spec.helpers.util"
local site = require "spec.helpers.site"
local proc = require "spec.helpers.run"
local tls = require "spec.helpers.tls"

local ASAN = util.ASAN

local rss_kb = util.rss_kb

describe("csp.http over TLS (nginx)", function()
  local s
  setup(function() s = site.start(30, 7, { tls = true }) end)
  teardown(function()
    csp.http.close_idle()
    if s then s.stop() end
  end)
  after_each(function() csp.http.close_idle() end)

  it("refuses a certificate it cannot verify", function()
    local r, err, code = csp.http.get(s.start_url, { timeout = 10 })
    assert.is_nil(r)
    assert.equal(('Get "%s": '):format(s.start_url), err:sub(1, #s.start_url + 8))
    assert.matches("x509: certificate signed by unknown authority", err)
    assert.equal("EX509", code)
  end)

  it("accepts it with insecure = true, or with cainfo naming the CA", function()
    local r = assert(csp.http.get(s.start_url, { timeout = 10, insecure = true }))
    assert.equal(200, r.status)
    r = assert(csp.http.get(s.start_url, { timeout = 10, cainfo = s.ca }))
    assert.equal(200, r.status)
    assert.matches("<h1>page 1</h1>", r.body)
  end)

  it("speaks HTTP/2 by default and HTTP/1.1 when asked", function()
    local r = assert(csp.http.get(s.start_url, { timeout = 10, cainfo = s.ca }))
    assert.equal("HTTP/2.0", r.proto)
    r = assert(csp.http.request { url = s.start_url, timeout = 10, cainfo = s.ca, http_version = "1.1" })
    assert.equal("HTTP/1.1", r.proto)
    assert.equal("OK", r.reason)
    r = assert(csp.http.request { url = s.start_url, timeout = 10, cainfo = s.ca, http_version = "2" })
    assert.equal("HTTP/2.0", r.proto)
  end)

  it("with a libcurl built without HTTP/2 speaks HTTP/1.1, and refuses http_version = \"2\"", function()
    -- spec/helpers/noh2curl.c: the system libcurl as a build without nghttp2 shows itself
    local lib = proc.cc(s.root .. "/libcurl-noh2.so", "noh2curl.c", "-shared -fPIC -Wl,--no-as-needed -lcurl -ldl")
    local r = proc.run(([[
      local csp = require "csp"
      local url, ca = %q, %q
      local wg, got = csp.waitgroup(), {}
      for i = 1, 4 do  -- concurrent: each on a connection of its own, as HTTP/1.1 needs
        wg:go(function() got[i] = assert(csp.http.get(url, { timeout = 10, cainfo = ca })).proto end)
      end
      wg:wait()
      print(table.concat(got, " "))
      local r = assert(csp.http.request { url = url, timeout = 10, cainfo = ca, http_version = "1.1" })
      print(r.status, r.proto)
      print(csp.http.request { url = url, timeout = 10, cainfo = ca, http_version = "2" })
    ]]):format(s.start_url, s.ca), { CSP_LIBCURL = lib, no_proxy = "*" })
    assert.equal(("HTTP/1.1 HTTP/1.1 HTTP/1.1 HTTP/1.1\n200\tHTTP/1.1\n"
      .. 'nil\tGet "%s": http: HTTP/2 requested, and this libcurl has no HTTP/2\tEPROTONOSUPPORT\n')
      :format(s.start_url), r.stdout, r.stderr)
  end)

  it("multiplexes concurrent requests to one host on one connection", function()
    assert(csp.http.get(s.start_url, { timeout = 10, cainfo = s.ca }))  -- the connection is h2
    local wg, got = csp.waitgroup(), {}
    for i = 1, 30 do
      wg:go(function()
        got[i] = assert(csp.http.get(s.base .. site.path(i), { timeout = 10, cainfo = s.ca }))
      end)
    end
    wg:wait()
    for i = 1, 30 do assert.equal("HTTP/2.0", got[i].proto) end
    assert.equal(1, csp.http.idle_count())
  end)

  -- curl keys connections by host and port only: an HTTP/1 answer on the same port (here a
  -- plain http:// link to the TLS port) marked the h2 connection as not multiplexing, and every
  -- later concurrent request opened a TLS connection of its own (30 here).
  it("keeps multiplexing after an HTTP/1 answer on the same host and port", function()
    local function wave(extra)
      local wg, got = csp.waitgroup(), {}
      for i = 1, 30 do
        wg:go(function()
          got[i] = assert(csp.http.get(s.base .. site.path(i), { timeout = 10, cainfo = s.ca }))
        end)
        if i == 15 and extra then wg:go(extra) end
      end
      wg:wait()
      for i = 1, 30 do assert.equal("HTTP/2.0", got[i].proto) end
    end
    assert(csp.http.get(s.start_url, { timeout = 10, cainfo = s.ca }))
    -- whether curl met the mark while its h2 connection was busy depends on timing: 3 rounds
    for _ = 1, 3 do
      wave(function()
        local plain = assert(csp.http.get((s.start_url:gsub("^https:", "http:")), { timeout = 10 }))
        assert.equal(400, plain.status)  -- nginx: "plain HTTP request was sent to HTTPS port"
      end)
      wave()
      assert.equal(1, csp.http.idle_count())
    end
  end)

  it("streams a 64 MB body over h2 through a body reader in bounded memory", function()
    local mb = ASAN and 16 or 64
    assert(os.execute(("truncate -s %dM %s/www/big.bin"):format(mb, s.root)))
    -- lua5.4 starts in generational mode, whose collector (5.4.4) can skip collecting for a long
    -- while after a big object died (an earlier spec's): the 64 KB strings read would pile up.
    -- The transfer's own memory is what this measures.
    local mode = collectgarbage("incremental")
    local _ <close> = csp.defer(collectgarbage, mode)
    collectgarbage()
    local before = rss_kb()
    local r = assert(csp.http.get(s.base .. "/big.bin", { timeout = 60, cainfo = s.ca, stream = true }))
    assert.same({ 200, "HTTP/2.0" }, { r.status, r.proto })
    local total, peak, n = 0, 0, 0
    for piece in function() return r.body_reader:read(64 * 1024) end do
      total, n = total + #piece, n + 1
      if n % 64 == 0 then peak = math.max(peak, rss_kb() - before) end
    end
    r.body_reader:close()
    assert.equal(mb * 1024 * 1024, total)
    if not ASAN then assert.is_true(peak < 24 * 1024, ("RSS grew %d KB"):format(peak)) end
    -- the connection stays usable for the next streams
    assert.equal(200, assert(csp.http.get(s.start_url, { timeout = 10, cainfo = s.ca })).status)
  end)

  it("follows a redirect over TLS (a /d/ page)", function()
    local r = assert(csp.http.get(s.base .. "/d/5", { timeout = 10, cainfo = s.ca }))
    assert.same({ 200, s.base .. "/d/5/" }, { r.status, r.url })
  end)

  it("honours SSL_CERT_FILE and SSL_CERT_DIR as Go does", function()
    local code = ([[
      local csp = require "csp"
      local r, err = csp.http.get(%q, { timeout = 10 })
      print(r and r.status or err)
    ]]):format(s.start_url)
    local r = proc.run(code, { SSL_CERT_FILE = s.ca, no_proxy = "*" })
    assert.equal("200\n", r.stdout, r.stderr)
    -- a directory of hashed certificates, as c_rehash (openssl rehash) makes
    local dir = s.root .. "/certs"
    assert(os.execute(("mkdir -p %s && cp %s %s/ && openssl rehash %s 2>/dev/null"):format(dir, s.ca, dir, dir)))
    r = proc.run(code, { SSL_CERT_DIR = dir, SSL_CERT_FILE = "/nonexistent", no_proxy = "*" })
    assert.equal("200\n", r.stdout, r.stderr)
    r = proc.run(code, { no_proxy = "*" })
    assert.matches("x509", r.stdout)
  end)

  it("verifies every new connection against the CA file it read once, a cainfo= file alone", function()
    -- a system-sized file (Debian's bundle and the test CA): curl keeps what it read in the
    -- multi handle (csrc/httpopt.c cafile_alone), so each connection after the first uses it
    local bundle = s.root .. "/bundle.pem"
    local f = assert(io.open(bundle, "w"))
    f:write(proc.slurp("/etc/ssl/certs/ca-certificates.crt"), proc.slurp(s.ca))
    f:close()
    local code = ([[
      local csp = require "csp"
      local out = {}
      for i = 1, 4 do  -- each on a new connection
        local r, err = csp.http.get(%q, { timeout = 10, http_version = "1.1",
          headers = { Connection = "close" } })
        out[i] = r and r.status or err
      end
      -- cainfo= is the whole trust store of its request (Go's RootCAs), the kept one aside
      for _, ca in ipairs { "/etc/ssl/certs/ca-certificates.crt", %q } do
        local r, err, code = csp.http.get(%q, { timeout = 10, cainfo = ca })
        out[#out + 1] = r and r.status or code
      end
      print(table.concat(out, " "))
    ]]):format(s.start_url, s.root .. "/missing.pem", s.start_url)
    local r = proc.run(code, { SSL_CERT_FILE = bundle, SSL_CERT_DIR = "", no_proxy = "*" })
    assert.equal("200 200 200 200 EX509 EX509\n", r.stdout, r.stderr)
  end)
end)

describe("csp.http over TLS with HTTP/1.1: keep-alive framing (issue 9.4)", function()
  -- A python3 TLS server (ALPN: http/1.1 only). On a connection's first request, for /same or
  -- /separate, it sends a response and a forged one after it: in the same write (one TLS record:
  -- curl sees the excess and drops the connection) or in a record of its own (it waits in the
  -- socket for the next request). Any other request gets "real". It ends with its stdin.
  local SERVER = [[
import os, socket, ssl, sys, threading
cert, key, portfile = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
def resp(body):
    return ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode()
def serve(c):
    f, n = c.makefile("rb"), 0
    while True:
        line = f.readline()
        if not line:
            break
        while f.readline() not in (b"\r\n", b"\n", b""):
            pass
        n += 1
        if n == 1 and b" /same " in line:
            c.sendall(resp("ok") + resp("forged"))
        elif n == 1 and b" /separate " in line:
            c.sendall(resp("ok"))
            c.sendall(resp("forged"))
        else:
            c.sendall(resp("real"))
    c.close()
def accept():
    while True:
        s, _ = ls.accept()
        try:
            c = ctx.wrap_socket(s, server_side=True)
        except (ssl.SSLError, OSError):
            continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
with open(portfile + ".tmp", "w") as pf:
    pf.write(str(ls.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
sys.stdin.read()
]]
  local dir, certs, server, base

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. proc.quote(dir)))
    certs = tls.make(dir)
    local f = assert(io.open(dir .. "/forge.py", "w"))
    f:write(SERVER)
    f:close()
    server = assert(io.popen(("env -u LD_PRELOAD python3 %s %s %s %s"):format(proc.quote(dir .. "/forge.py"),
      proc.quote(certs.cert), proc.quote(certs.key), proc.quote(dir .. "/port")), "w"))
    local port
    for _ = 1, 1000 do   -- the server writes its port once it listens
      local pf = io.open(dir .. "/port")
      if pf then
        port = pf:read("a")
        pf:close()
        break
      end
      csp.sleep(0.01)
    end
    base = "https://127.0.0.1:" .. assert(port, "the python3 TLS server did not start")
  end)

  after_each(function() csp.http.close_idle() end)

  teardown(function()
    csp.http.close_idle()
    if server then server:close() end
    if dir then os.execute("rm -rf " .. proc.quote(dir)) end
  end)

  for _, mode in ipairs { "separate", "same" } do
    it("a forged response after the first (" .. mode .. " record) is never read as the next", function()
      local r = assert(csp.http.get(base .. "/" .. mode, { timeout = 10, cainfo = certs.ca }))
      assert.same({ "ok", "HTTP/1.1" }, { r.body, r.proto })
      csp.sleep(0.05)  -- let the forged bytes reach the client's socket: the case under test
      assert.equal("real", assert(csp.http.get(base .. "/next", { timeout = 10, cainfo = certs.ca })).body)
      -- a connection that stays clean is reused
      local idle = csp.http.idle_count()
      assert.equal("real", assert(csp.http.get(base .. "/again", { timeout = 10, cainfo = certs.ca })).body)
      assert.equal(idle, csp.http.idle_count())
    end)
  end
end)
