-- csp.html.links: gumbo-parsed <a href> links, resolved (RFC 3986, <base href>) and filtered.
local csp = require "csp"
-- Until init.lua installs it (the lead's line), install it the same way here.
if not csp.html.links then csp.html.links = require("csp.html")(csp) end
local links = csp.html.links

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

local PAGE = "http://example.com/dir/page.html"

describe("html.links", function()
  it("resolves relative, absolute and protocol-relative links in document order", function()
    local body = [[<!DOCTYPE html>
<html><head><title>t</title><link href="/style.css" rel=stylesheet></head>
<body>
  <p><a href="other.html">rel</a> <a href="../up.html">up</a> <a href="/root">root</a>
  <a href="http://other.org/x?y=1">abs</a> <a href="//cdn.example.net/lib">proto</a>
  <a href="https://secure.example.com/">https</a> <a href="?q=2">query</a>
  <a name="no-href">anchor</a> <img src="/img.png"> <area href="/area">
</body></html>]]
    assert.are.same({
      "http://example.com/dir/other.html", "http://example.com/up.html", "http://example.com/root",
      "http://other.org/x?y=1", "http://cdn.example.net/lib", "https://secure.example.com/",
      "http://example.com/dir/page.html?q=2",
    }, links(body, PAGE))
  end)

  it("honours the first <base href>, itself resolved against the page URL", function()
    local body = [[<html><head><base href="/other/base/"><base href="http://ignored/">
      </head><body><a href="x">x</a><a href="../y">y</a><a href="/z">z</a>
      <a href="http://abs/">abs</a></body></html>]]
    assert.are.same({ "http://example.com/other/base/x", "http://example.com/other/y",
                      "http://example.com/z", "http://abs/" }, links(body, PAGE))
    local abs = [[<head><base href="https://b.example/q/r"></head><a href="s">s</a><a href="">e</a>]]
    assert.are.same({ "https://b.example/q/s" }, links(abs, PAGE))
  end)

  it("ignores a <base> without href, and a base after the links still applies (HTML's rule)", function()
    assert.are.same({ "http://example.com/dir/a" },
      links([[<base target=_top><a href="a">a</a>]], PAGE))
    assert.are.same({ "http://late/a" },
      links([[<body><a href="a">a</a><base href="http://late/"></body>]], PAGE))
  end)

  it("drops same-document references and non-http(s) schemes; strips fragments", function()
    local body = [[<a href="#top">t</a><a href="">empty</a><a href="mailto:a@b.c">m</a>
      <a href="javascript:void(0)">js</a><a href="ftp://f/x">ftp</a><a href="data:text/plain,x">d</a>
      <a href="tel:+1">tel</a><a href="page2.html#sec">p2</a><a href="HTTP://UP.Example/P#x">up</a>
      <a href="http:no-host">nohost</a><a href="http:///path">emptyhost</a>]]
    assert.are.same({ "http://example.com/dir/page2.html", "http://up.example/P" }, links(body, PAGE))
  end)

  it("keeps duplicates, decodes character references and trims attribute whitespace", function()
    local body = "<a href='a?x=1&amp;y=2'>1</a><a href=\"  a?x=1&y=2\n\">2</a>" ..
                 "<a href='b\n c'>3</a><a href='/p q/\"r\"'>4</a>"
    assert.are.same({
      "http://example.com/dir/a?x=1&y=2", "http://example.com/dir/a?x=1&y=2",
      "http://example.com/dir/b%20c", "http://example.com/p%20q/%22r%22",
    }, links(body, PAGE))
  end)

  it("percent-encodes what RFC 3986 disallows, and drops links that still do not parse", function()
    local body = [[<a href="/a[]?b[]=1">1</a><a href="/%zz%41">2</a><a href="/é">3</a>
      <a href="http://bad host/">4</a><a href="http://h:notaport/">5</a>]]
    assert.are.same({ "http://example.com/a%5B%5D?b%5B%5D=1", "http://example.com/%25zz%41",
                      "http://example.com/%C3%A9" }, links(body, PAGE))
  end)

  it("finds links in malformed HTML the way an HTML5 parser does", function()
    local body = [[<TABLE><A HREF=one>x</A><tr><td><a href=two>y</a></table>
      <p><a href="three"><a href="four">nested</p><div><a href=five</div>
      <!-- <a href="commented"> --><script>var s = '<a href="script">';</script>
      <svg><a href="svg-a"></a></svg><template><a href="tpl"></a></template><a href='six]]
    assert.are.same({
      "http://example.com/dir/one", "http://example.com/dir/two", "http://example.com/dir/three",
      "http://example.com/dir/four", "http://example.com/dir/five%3C/div",
      "http://example.com/dir/svg-a", "http://example.com/dir/tpl",
    }, links(body, PAGE))
  end)

  it("returns an empty list for documents without links", function()
    assert.are.same({}, links("", PAGE))
    assert.are.same({}, links("just text", PAGE))
    assert.are.same({}, links("<html><body><p>hi</body></html>", PAGE))
  end)

  it("raises for bad arguments", function()
    assert.matches("bad argument #1 to 'links' %(string expected, got nil%)", raises(links, nil, PAGE))
    assert.matches("bad argument #1 to 'links'", raises(links, 42, PAGE))
    assert.matches("bad argument #2 to 'links' %(string expected", raises(links, "", {}))
    assert.matches("absolute URL expected", raises(links, "", "/relative"))
    assert.matches("absolute URL expected", raises(links, "", "http://bad host/"))
    assert.matches("absolute URL expected", raises(links, "", "http://h:99999/"))
    assert.matches("bad argument #1 .*string expected", raises(csp.html._hrefs, 1))
  end)

  describe("on hostile input", function()
    it("survives random bytes and random tag soup", function()
      local rng = 12345
      local function rand(n)  -- a small LCG: the same inputs on every run
        rng = (rng * 1103515245 + 12345) % 2147483648
        return rng % n
      end
      local pieces = { "<a href=", "<a href='", "\"", "'", ">", "</a>", "<base href=", "<table>",
                       "<tr>", "<td>", "<svg>", "<math>", "<template>", "</template>", "<script>",
                       "<!--", "-->", "&amp;", "&#x0;", "&", "\0", "\255\254", "<b><i>", "</b>",
                       "<!DOCTYPE", "<![CDATA[", "<select><option>", "<frameset>", "x", " ", "#", "/" }
      for _ = 1, 300 do
        local bytes = {}
        for i = 1, rand(400) do bytes[i] = string.char(rand(256)) end
        local soup = {}
        for i = 1, rand(200) do soup[i] = pieces[rand(#pieces) + 1] end
        for _, body in ipairs { table.concat(bytes), table.concat(soup) } do
          local l = links(body, PAGE)
          for _, u in ipairs(l) do
            assert.is_table(csp.url.parse(u), u)
            assert.matches("^https?://", u)
            assert.is_nil(u:find("#", 1, true), u)
          end
        end
      end
    end)

    it("handles huge attributes and many links", function()
      local big = ("x"):rep(2 * 1024 * 1024)
      assert.are.same({ "http://example.com/dir/" .. big }, links("<a href='" .. big .. "'>", PAGE))
      local l = links(("<p><a href=/n>n</a>"):rep(20000), PAGE)
      assert.are.equal(20000, #l)
      assert.are.equal("http://example.com/n", l[20000])
    end)

    it("trims long runs of whitespace in an href in linear time (issue 9.7)", function()
      -- the old trailing-space pattern was quadratic: 40k spaces took 5 s, these 400k ~8 min
      local sp = (" "):rep(400000)
      local t0 = os.clock()
      assert.are.same({ "http://example.com/dir/a%20%20%20b" },
        links("<a href='" .. sp .. "a   b" .. sp .. "'>x</a>", PAGE))
      assert.are.same({ "http://example.com/dir/c" }, links("<a href='c" .. sp .. "\n'>x</a>", PAGE))
      assert.is_true(os.clock() - t0 < 10, "took " .. (os.clock() - t0) .. " s of CPU")
    end)

    it("parses only the first max_bytes bytes", function()
      local page = "<a href=/a>a</a>" .. ("x"):rep(100) .. "<a href=/b>b</a>"
      assert.are.same({ "http://example.com/a" }, links(page, PAGE, { max_bytes = 50 }))
      assert.are.equal(2, #links(page, PAGE, { max_bytes = false }))
      assert.are.equal(2, #links(page, PAGE))
      assert.has_error(function() links(page, PAGE, { max_bytes = -1 }) end)
      assert.has_error(function() links(page, PAGE, 5) end)
    end)

    it("parses a 100k-deep page on the thread pool while other goroutines keep running", function()
      local deep = ("<div>"):rep(100000) .. "<a href=deep>d</a>"
      local done, ticks, worst = csp.chan(), 0, 0
      csp.go(function()
        local tk = csp.ticker(0.02)
        local last = csp.now()
        while csp.select { csp.recv(done), csp.recv(tk.c) } ~= 1 do
          local now = csp.now()
          worst = math.max(worst, now - last)
          last, ticks = now, ticks + 1
        end
        tk:stop()
      end)
      local t0 = csp.now()
      local l = links(deep, PAGE)
      local took = csp.now() - t0
      done:close()
      assert.are.same({ "http://example.com/dir/deep" }, l)
      -- generous: the parse takes seconds; a parse on the scheduler thread would give 0 ticks
      assert.is_true(ticks >= took / 0.02 / 4, ("%d ticks in %.1f s"):format(ticks, took))
      assert.is_true(worst < 1, ("a tick came %.2f s late"):format(worst))
    end)

    it("handles deep nesting without exhausting the C stack", function()
      -- gumbo's tree building is quadratic in the depth of <div>s, so this stays at 10,000;
      -- <span> nesting is cheap and goes deeper: 500,000 levels (past 256 KiB, the tree is
      -- malloc'd) crashed gumbo_destroy_output, which recurses once per level.
      local deep = ("<div>"):rep(10000) .. "<a href=deep>d</a>"
      assert.are.same({ "http://example.com/dir/deep" }, links(deep, PAGE))
      deep = ("<span>"):rep(500000) .. "<a href=deeper>d</a>"
      assert.are.same({ "http://example.com/dir/deeper" }, links(deep, PAGE))
      assert.are.equal(30000, #links(("<a href=a><b><i>"):rep(30000), PAGE))
    end)
  end)
end)
