-- examples/thumbnail.lua (the helper) and examples/thumbnails.lua (makeThumbnails1-6 of seed
-- 1.6) on real JPEGs that ImageMagick makes here at run time, in a temporary directory.
local csp = require "csp"
local run = require "spec.helpers.run"
local quote, root, ENV = run.quote, run.root, run.env

package.path = root .. "/examples/?.lua;" .. package.path
local thumbnail = require "thumbnail"

local function sh(cmd)
  assert(os.execute(cmd), "command failed: " .. cmd)
end

local function size_of(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

local T, IMAGES
setup(function()
  T = io.popen("mktemp -d \"${TMPDIR:-/tmp}/csp-thumbs.XXXXXX\""):read("l")
  -- landscape, portrait, small (not enlarged), and a name with a space
  sh(("cd %s && convert -size 900x600 plasma:fractal wide.jpg && convert -size 300x700 gradient:red-blue tall.jpg"
    .. " && convert -size 60x40 xc:green small.jpg && cp wide.jpg 'odd name.jpg'"
    .. " && echo 'not an image' > text.jpg"):format(quote(T)))
  IMAGES = { T .. "/wide.jpg", T .. "/tall.jpg", T .. "/small.jpg", T .. "/odd name.jpg" }
end)

teardown(function()
  if T then os.execute("rm -rf " .. quote(T)) end
end)

local function dims(path)
  local p = io.popen("identify -format '%w %h' " .. quote(path) .. " 2>/dev/null")
  local w, h = p:read("a"):match("^(%d+) (%d+)")
  p:close()
  return tonumber(w), tonumber(h)
end

describe("thumbnail.image_file", function()
  it("writes NAME.thumb.jpg beside the image, at most 128x128, keeping the aspect ratio", function()
    assert.are.equal(T .. "/wide.thumb.jpg", thumbnail.image_file(T .. "/wide.jpg"))
    assert.are.same({ 128, 85 }, { dims(T .. "/wide.thumb.jpg") })
    assert.are.equal(T .. "/tall.thumb.jpg", thumbnail.image_file(T .. "/tall.jpg"))
    assert.are.same({ 55, 128 }, { dims(T .. "/tall.thumb.jpg") })
    assert.are.equal(T .. "/small.thumb.jpg", thumbnail.image_file(T .. "/small.jpg"))
    assert.are.same({ 60, 40 }, { dims(T .. "/small.thumb.jpg") })  -- never enlarged
    assert.are.equal(T .. "/odd name.thumb.jpg", thumbnail.image_file(T .. "/odd name.jpg"))
  end)

  it("a missing file or one that is no image: nil and ImageMagick's message", function()
    local thumb, err = thumbnail.image_file(T .. "/missing.jpg")
    assert.is_nil(thumb)
    assert.matches("^thumbnail " .. T:gsub("%p", "%%%0") .. "/missing%.jpg: .*unable to open image", err)
    assert.matches("No such file or directory", err)
    thumb, err = thumbnail.image_file(T .. "/text.jpg")
    assert.is_nil(thumb)
    assert.matches("^thumbnail .*/text%.jpg: ", err)
    assert.is_nil(size_of(T .. "/missing.thumb.jpg"))
  end)

  it("several goroutines make thumbnails at once", function()
    local wg, made = csp.waitgroup(), 0
    for _, img in ipairs(IMAGES) do
      wg:go(function() if thumbnail.image_file(img) then made = made + 1 end end)
    end
    wg:wait()
    assert.are.equal(#IMAGES, made)
  end)

  it("a bad argument raises", function()
    assert.has_error(function() thumbnail.image_file(nil) end,
      "bad argument #1 to 'image_file' (string expected, got nil)")
  end)
end)

describe("thumbnails.lua VERSION FILE...", function()
  local function thumbnails(args)
    local errf = os.tmpname()
    local p = assert(io.popen(("cd %s && %s timeout 60 lua5.4 examples/thumbnails.lua %s 2>%s"):format(
      quote(root), ENV, args, quote(errf))))
    local out = p:read("a")
    local _, _, code = p:close()
    local f = io.open(errf)
    local err = f:read("a")
    f:close()
    os.remove(errf)
    return out, code, err
  end

  local function files(list)
    local q = {}
    for _, name in ipairs(list) do q[#q + 1] = quote(name) end
    return table.concat(q, " ")
  end

  local function expected_bytes()
    local total = 0
    for _, img in ipairs(IMAGES) do total = total + assert(size_of(thumbnail.thumb_name(img))) end
    return total
  end

  for _, v in ipairs{ 1, 3, 5, 6, 7 } do
    it(("version %d makes every thumbnail and reports their total size"):format(v), function()
      local out, code, err = thumbnails(v .. " " .. files(IMAGES))
      assert.are.equal(0, code, err)
      local n, bytes = out:match("^version " .. v .. ": (%d+) of 4 thumbnails made, (%d+) bytes, %d+ ms")
      assert.are.equal("4", n, out)
      assert.are.equal(expected_bytes(), tonumber(bytes))
      if v == 6 then
        assert.matches("%(makeThumbnails6 summed " .. bytes .. " bytes%)", out)
      elseif v == 7 then
        assert.matches("%(makeThumbnails7 summed " .. bytes .. " bytes on %d+ threads%)", out)
      elseif v == 5 then
        assert.matches("\nmakeThumbnails5: 4 thumbnails\ngoroutines left after the others finish: 1 %(main%)\n$", out)
      end
    end)
  end

  it("version 2 returns at once and nothing is made", function()
    local out, code = thumbnails("2 " .. files(IMAGES))
    assert.are.equal(0, code)
    assert.matches("^version 2: 0 of 4 thumbnails made, 0 bytes", out)
    assert.matches("its goroutines never ran", out)
    for _, img in ipairs(IMAGES) do assert.is_nil(size_of(thumbnail.thumb_name(img))) end
  end)

  it("version 4 returns the first error and leaks the remaining senders", function()
    -- every file fails: the first error returns, the other four can never send
    local missing = {}
    for i = 1, 5 do missing[i] = T .. "/missing" .. i .. ".jpg" end
    local out, code, err = thumbnails("4 " .. files(missing))
    assert.are.equal(0, code, err)
    assert.matches("\nmakeThumbnails4: thumbnail .*/missing%d%.jpg: .*unable to open image", out)
    assert.matches("\ngoroutines leaked: 4, blocked forever in chan send %(live goroutines: 5, main included%)\n", out)
    assert.matches("\ngoroutine %d+ %[chan send%]:\n", out)
  end)

  it("version 5 returns the first error and leaks nothing; version 6 logs errors and sums the rest", function()
    local list = { T .. "/missing.jpg", IMAGES[1], IMAGES[2] }
    local out, code = thumbnails("5 " .. files(list))
    assert.are.equal(0, code)
    assert.matches("\nmakeThumbnails5: thumbnail .*/missing%.jpg: ", out)
    assert.matches("\ngoroutines left after the others finish: 1 %(main%)\n$", out)
    local err
    out, code, err = thumbnails("6 " .. files(list))
    assert.are.equal(0, code)
    assert.matches("^version 6: 2 of 3 thumbnails made", out)
    assert.matches("^thumbnail .*/missing%.jpg: .*unable to open image", err)
  end)
end)
