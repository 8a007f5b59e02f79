-- csp.url: RFC 3986 parse, resolve (section 5.2, every example of 5.4) and format (5.3).
local csp = require "csp"
local url = csp.url

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

local BASE = "http://a/b/c/d;p?q"

-- RFC 3986 section 5.4.1.
local normal = {
  { "g:h", "g:h" }, { "g", "http://a/b/c/g" }, { "./g", "http://a/b/c/g" },
  { "g/", "http://a/b/c/g/" }, { "/g", "http://a/g" }, { "//g", "http://g" },
  { "?y", "http://a/b/c/d;p?y" }, { "g?y", "http://a/b/c/g?y" }, { "#s", "http://a/b/c/d;p?q#s" },
  { "g#s", "http://a/b/c/g#s" }, { "g?y#s", "http://a/b/c/g?y#s" }, { ";x", "http://a/b/c/;x" },
  { "g;x", "http://a/b/c/g;x" }, { "g;x?y#s", "http://a/b/c/g;x?y#s" }, { "", "http://a/b/c/d;p?q" },
  { ".", "http://a/b/c/" }, { "./", "http://a/b/c/" }, { "..", "http://a/b/" },
  { "../", "http://a/b/" }, { "../g", "http://a/b/g" }, { "../..", "http://a/" },
  { "../../", "http://a/" }, { "../../g", "http://a/g" },
}

-- RFC 3986 section 5.4.2 (a strict parser: "http:g" keeps its scheme).
local abnormal = {
  { "../../../g", "http://a/g" }, { "../../../../g", "http://a/g" },
  { "/./g", "http://a/g" }, { "/../g", "http://a/g" }, { "g.", "http://a/b/c/g." },
  { ".g", "http://a/b/c/.g" }, { "g..", "http://a/b/c/g.." }, { "..g", "http://a/b/c/..g" },
  { "./../g", "http://a/b/g" }, { "./g/.", "http://a/b/c/g/" }, { "g/./h", "http://a/b/c/g/h" },
  { "g/../h", "http://a/b/c/h" }, { "g;x=1/./y", "http://a/b/c/g;x=1/y" },
  { "g;x=1/../y", "http://a/b/c/y" }, { "g?y/./x", "http://a/b/c/g?y/./x" },
  { "g?y/../x", "http://a/b/c/g?y/../x" }, { "g#s/./x", "http://a/b/c/g#s/./x" },
  { "g#s/../x", "http://a/b/c/g#s/../x" }, { "http:g", "http:g" },
}

describe("url.resolve", function()
  it("passes every normal example of RFC 3986 section 5.4.1", function()
    for _, c in ipairs(normal) do
      assert.are.equal(c[2], url.resolve(BASE, c[1]), "ref " .. c[1])
    end
  end)

  it("passes every abnormal example of RFC 3986 section 5.4.2", function()
    for _, c in ipairs(abnormal) do
      assert.are.equal(c[2], url.resolve(BASE, c[1]), "ref " .. c[1])
    end
  end)

  it("merges against an authority with an empty path, and removes dots from absolute refs", function()
    assert.are.equal("http://h/x", url.resolve("http://h", "x"))
    assert.are.equal("http://h?q", url.resolve("http://h", "?q"))
    assert.are.equal("https:/c", url.resolve("http://h/a", "https:/b/../c"))
    assert.are.equal("https://o/p", url.resolve("http://h/a/b", "https://o/x/../p"))
    assert.are.equal("http://o/q?x#f", url.resolve("http://h/a/b?z", "//o/./q?x#f"))
    assert.are.equal("mailto:x@y", url.resolve("http://h/", "mailto:x@y"))
  end)

  it("drops the base's fragment and keeps a query only when the ref has no path", function()
    assert.are.equal("http://h/a?b", url.resolve("http://h/a?b#frag", ""))
    assert.are.equal("http://h/c", url.resolve("http://h/a?b#frag", "c"))
  end)

  it("returns nil, err, \"EINVAL\" for a relative base or a bad ref; raises for non-strings", function()
    local r, err, code = url.resolve("/a/b", "c")
    assert.is_nil(r)
    assert.matches("not absolute", err)
    assert.are.equal("EINVAL", code)
    r, err, code = url.resolve(BASE, "ht tp:x")
    assert.is_nil(r)
    assert.is_string(err)
    assert.are.equal("EINVAL", code)
    assert.matches("bad argument #1 to 'resolve'", raises(url.resolve, nil, "x"))
    assert.matches("bad argument #2 to 'resolve'", raises(url.resolve, BASE, 3))
  end)
end)

describe("url.parse", function()
  it("splits a full URI into its components", function()
    assert.are.same({
      scheme = "https", userinfo = "u:p%20w", host = "example.com", port = 8443,
      path = "/a/b;c", query = "x=1&y=/?", fragment = "frag/?",
    }, url.parse("HTTPS://u:p%20w@Example.COM:8443/a/b;c?x=1&y=/?#frag/?"))
  end)

  it("leaves absent components nil, the path a string, and an empty port nil", function()
    assert.are.same({ path = "" }, url.parse(""))
    assert.are.same({ path = "a/b", query = "" }, url.parse("a/b?"))
    assert.are.same({ path = "", fragment = "" }, url.parse("#"))
    assert.are.same({ scheme = "http", host = "h", path = "" }, url.parse("http://h:"))
    assert.are.same({ scheme = "file", host = "", path = "/etc/x" }, url.parse("file:///etc/x"))
    assert.are.same({ scheme = "mailto", path = "a@b.c" }, url.parse("mailto:a@b.c"))
    assert.are.same({ host = "g", path = "/x" }, url.parse("//g/x"))
    assert.are.equal("integer", math.type(url.parse("http://h:80/").port))
  end)

  it("accepts IP literals and keeps their brackets", function()
    assert.are.same({ scheme = "http", host = "[::1]", port = 8080, path = "/" },
      url.parse("http://[::1]:8080/"))
    for _, h in ipairs { "[2001:db8::7]", "[::ffff:192.0.2.1]", "[1:2:3:4:5:6:7:8]", "[v7.x:y]",
                         "[fe80::]", "192.0.2.16" } do
      local t, err = url.parse("ldap://" .. h .. "/c=GB")
      assert.is_table(t, err)
      assert.are.equal(h:lower(), t.host)
    end
  end)

  it("returns nil, err, \"EINVAL\" for strings that are not URI references", function()
    for _, s in ipairs {
      "1http://h/", "ht tp://h/", "http://h:port/", "http://h:99999/", "http://h:1:2/",
      "http://[::1/", "http://[1:2:3:4:5:6:7:8:9]/", "http://[1::2::3]/", "http://[::g]/",
      "http://[v.x]/", "http://u@v@h/", "http://h h/", "http://h/a b", "http://h/%zz",
      "http://h/%4", "http://h/?q=<x>", "http://h/#a#b", "a:b:c d", "x y:z", "/a\0b",
      "http://h/\xff", "http://[::1]x/",
    } do
      local t, err, code = url.parse(s)
      assert.is_nil(t, s)
      assert.is_string(err, s)
      assert.matches("^parse ", err)
      assert.are.equal("EINVAL", code, s)
    end
  end)

  it("raises for a non-string", function()
    assert.matches("bad argument #1 to 'parse'", raises(url.parse, {}))
  end)

  -- html.links checks its base URL with _absolute, which builds no table.
  it("agrees with _absolute on which strings are absolute URLs", function()
    for _, s in ipairs {
      "http://h/", "HTTPS://H:8080/p?q#f", "mailto:a@b", "urn:x", "http://h:/", "http://h:65535/",
      "http://h:65536/", "http://h:99999/", "http://h:000080/", "http://[::1]:80/", "//h/p", "/p",
      "p", "", "?q", "#f", "1http://h/", "http://h h/", "/a\0b", "http://h/\xff", "a:b:c d",
    } do
      local t = url.parse(s)
      assert.are.equal(t ~= nil and t.scheme ~= nil, url._absolute(s), s)
    end
    assert.matches("bad argument #1 to '_absolute'", raises(url._absolute, nil))
  end)
end)

describe("url.format", function()
  it("recomposes what parse splits", function()
    for _, s in ipairs {
      "https://u:p@example.com:8443/a/b;c?x=1&y=/?#frag", "mailto:a@b.c", "//g/x", "a/b?", "#", "",
      "file:///etc/x", "http://[::1]:8080/", "../g;x?y#s", "http://a/b/c/d;p?q",
    } do
      assert.are.equal(s, url.format(assert(url.parse(s))))
    end
  end)

  it("keeps a path from reading as an authority or a scheme", function()
    assert.are.equal("http://h/p", url.format { scheme = "http", host = "h", path = "p" })
    assert.are.equal("x:/.//y", url.format { scheme = "x", path = "//y" })
    assert.are.equal("./a:b", url.format { path = "a:b" })
    assert.are.same({ path = "./a:b" }, url.parse(url.format { path = "a:b" }))
  end)

  it("raises for bad components", function()
    assert.matches("table expected", raises(url.format, "http://h/"))
    assert.matches("field 'host'", raises(url.format, { host = 1 }))
    assert.matches("field 'port'", raises(url.format, { host = "h", port = 1.5 }))
    assert.matches("without host", raises(url.format, { port = 80 }))
  end)
end)
