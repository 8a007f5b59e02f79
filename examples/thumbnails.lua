-- Seed 1.6, concurrent loops: makeThumbnails1..7 over examples/thumbnail.lua (ImageMagick
-- through csp.exec), selected by VERSION:
--   1  sequential: one thumbnail after the other;
--   2  `go` for each file without waiting (NOTE: incorrect): returns at once, nothing is made;
--   3  a goroutine per file, main waits for one event per file on a channel (errors ignored);
--   4  returns the first error, leaving the remaining senders blocked forever on the unbuffered
--      errors channel: a goroutine leak, shown with the deadlock report csp.run() raises for them;
--   5  a buffered channel with room for every result: the first error returns, nobody leaks;
--   6  file names come from a channel (their count unknown in advance): a WaitGroup counts the
--      workers, a closer goroutine waits for it and closes sizes, main sums the sizes;
--   7  version 6 over worker threads (csp.parallel, one per core, CSP_THREADS caps them): names
--      and sizes go through xchans. The resizing already runs in convert processes on every
--      core, so threads do not make it faster here: they pay off when the work is Lua's own.
-- Prints the thumbnails made, their total bytes and the wall time. Thumbnails are separate
-- processes, so versions 3-6 use every core: on 2 cores version 6 runs about twice as fast as
-- version 1 on large JPEGs.
-- Usage: lua5.4 examples/thumbnails.lua VERSION FILE...
local csp = require "csp"
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/?.lua;" .. package.path
local thumbnail = require "thumbnail"
local f = require("flags").new("thumbnails.lua VERSION FILE...",
  "makeThumbnails1..7 of seed 1.6: NAME.thumb.jpg beside each image, at most 128x128")
f:arg("version", "int", nil, "1 to 7", { min = 1 })
f:rest("FILE", 1)
local opts = f:parse(arg)
if opts.version == nil or opts.version > 7 then
  f:fail("VERSION must be 1 to 7")
end

local function log(...)
  io.stderr:write(table.concat({ ... }, " "), "\n")
end

-- makeThumbnails makes thumbnails of the specified files.
local function makeThumbnails1(filenames)
  for _, name in ipairs(filenames) do
    local _, err = thumbnail.image_file(name)
    if err then log(err) end
  end
end

-- NOTE: incorrect!
local function makeThumbnails2(filenames)
  for _, name in ipairs(filenames) do
    csp.go(thumbnail.image_file, name)  -- NOTE: ignoring errors
  end
end

-- makeThumbnails3 makes thumbnails of the specified files in parallel.
local function makeThumbnails3(filenames)
  local ch = csp.chan()
  for _, name in ipairs(filenames) do
    csp.go(function()
      thumbnail.image_file(name)  -- NOTE: ignoring errors
      ch:send(true)
    end)
  end
  -- Wait for goroutines to complete.
  for _ = 1, #filenames do ch:recv() end
end

-- makeThumbnails4 makes thumbnails for the specified files in parallel.
-- It returns an error if any step failed.
local function makeThumbnails4(filenames)
  local errors = csp.chan()
  for _, name in ipairs(filenames) do
    csp.go(function()
      local _, err = thumbnail.image_file(name)
      errors:send(err or false)
    end)
  end
  for _ = 1, #filenames do
    local err = errors:recv()
    if err then
      return err  -- NOTE: incorrect: goroutine leak!
    end
  end
  return nil
end

-- makeThumbnails5 makes thumbnails for the specified files in parallel.
-- It returns the generated file names in an arbitrary order,
-- or an error if any step failed.
local function makeThumbnails5(filenames)
  local ch = csp.chan(#filenames)
  for _, name in ipairs(filenames) do
    csp.go(function()
      local thumbfile, err = thumbnail.image_file(name)
      ch:send({ thumbfile = thumbfile, err = err })
    end)
  end
  local thumbfiles = {}
  for _ = 1, #filenames do
    local it = ch:recv()
    if it.err then return nil, it.err end
    thumbfiles[#thumbfiles + 1] = it.thumbfile
  end
  return thumbfiles
end

-- makeThumbnails6 makes thumbnails for each file received from the channel.
-- It returns the number of bytes occupied by the files it creates.
local function makeThumbnails6(filenames)
  local sizes = csp.chan()
  local wg = csp.waitgroup()  -- number of working goroutines
  for name in filenames:range() do
    wg:add(1)
    -- worker
    csp.go(function()
      local _ <close> = csp.defer(wg.done, wg)
      local thumb, err = thumbnail.image_file(name)
      if not thumb then
        log(err)
        return
      end
      local info = csp.fs.stat(thumb)  -- OK to ignore error
      sizes:send(info and info.size or 0)
    end)
  end

  -- closer
  csp.go(function()
    wg:wait()
    sizes:close()
  end)

  local total = 0
  for size in sizes:range() do total = total + size end
  return total
end

-- makeThumbnails7: version 6's workers in threads. Each runs thumb_size (no upvalues: it is
-- sent as bytecode) on the names it receives and sends the size back.
local function thumb_size(name)
  local csp = require "csp" -- luacheck: ignore 431
  local thumb, err = require("thumbnail").image_file(name)
  if not thumb then
    io.stderr:write(err, "\n")
    return 0
  end
  local info = csp.fs.stat(thumb)  -- OK to ignore error
  return info and info.size or 0
end

local function makeThumbnails7(filenames)
  local sizes = csp.xchan(64)
  csp.go(csp.parallel, 0, thumb_size, filenames, sizes)  -- closes sizes once every name is done
  local total = 0
  for size in sizes:range() do total = total + size end
  return total
end

local files = opts.rest

-- The thumbnails that exist now, and their total size; read with plain io (no blocking call),
-- so that checking never lets a goroutine run.
local function made()
  local n, bytes = 0, 0
  for _, name in ipairs(files) do
    local fh = io.open(thumbnail.thumb_name(name), "rb")
    if fh then
      n, bytes = n + 1, bytes + fh:seek("end")
      fh:close()
    end
  end
  return n, bytes
end

-- Start afresh: remove the thumbnails an earlier run made (never one of the input files).
local inputs = {}
for _, name in ipairs(files) do inputs[name] = true end
for _, name in ipairs(files) do
  local thumb = thumbnail.thumb_name(name)
  if not inputs[thumb] then os.remove(thumb) end
end

local t0 = csp.now()
local function report(extra)
  local n, bytes = made()
  print(("version %d: %d of %d thumbnails made, %d bytes, %.0f ms%s")
    :format(opts.version, n, #files, bytes, (csp.now() - t0) * 1000, extra or ""))
end

local v = opts.version
if v == 1 then
  makeThumbnails1(files)
  report()
elseif v == 2 then
  makeThumbnails2(files)
  report()
  print("makeThumbnails2 returned without waiting: its goroutines never ran (main ends here, "
    .. "so they are abandoned)")
elseif v == 3 then
  makeThumbnails3(files)
  report()
elseif v == 4 then
  local err = makeThumbnails4(files)
  report()
  print("makeThumbnails4: " .. tostring(err or "no error"))
  -- Wait for the workers: the ones that finished after the error can never send, so csp.run
  -- ends in a deadlock report listing them.
  local ok, msg = pcall(csp.run)
  local leaked = 0
  if not ok then
    for _ in tostring(msg):gmatch("goroutine %d+ %[chan send%]") do leaked = leaked + 1 end
  end
  print(("goroutines leaked: %d, blocked forever in chan send (live goroutines: %d, main included)")
    :format(leaked, csp.numgoroutine()))
  if leaked > 0 then  -- the first of them, as the report shows it
    print((tostring(msg):match("\n\n(goroutine %d+ %[chan send%]:.-)\n\n") or ""))
  end
elseif v == 5 then
  local thumbs, err = makeThumbnails5(files)
  report()
  print(thumbs and ("makeThumbnails5: %d thumbnails"):format(#thumbs) or ("makeThumbnails5: " .. err))
  csp.run()  -- every worker can send into the buffer and end: nothing is left
  print(("goroutines left after the others finish: %d (main)"):format(csp.numgoroutine()))
elseif v == 6 then
  local names = csp.chan()
  csp.go(function()
    for _, name in ipairs(files) do names:send(name) end
    names:close()
  end)
  local total = makeThumbnails6(names)
  report((" (makeThumbnails6 summed %d bytes)"):format(total))
else
  local names = csp.xchan()
  csp.go(function()
    for _, name in ipairs(files) do names:send(name) end
    names:close()
  end)
  local total = makeThumbnails7(names)
  report((" (makeThumbnails7 summed %d bytes on %d threads)"):format(total, csp.maxthreads()))
end
